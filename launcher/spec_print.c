/* spec_print.c: the spec as a human-readable report and as one JSON object (`baton spec`). */
#include <stdio.h>

#include "launcher/spec.h"

static void json_str(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", out);
        else if (*p < 0x20)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

static void json_kv_str(FILE *out, const char *key, const char *val)
{
    fprintf(out, ",\"%s\":", key);
    json_str(out, val);
}

void bt__spec_print_json(const struct bt__spec *s, FILE *out)
{
    fputs("{\"source\":", out);
    json_str(out, bt__spec_source_name(s->source));
    json_kv_str(out, "job_id", s->job_id);
    json_kv_str(out, "role", bt__role_name(s->role));
    fprintf(out, ",\"node_rank\":%d,\"nnodes\":%d,\"nproc_per_node\":%d,\"world_size\":%d",
            s->node_rank, s->nnodes, s->nproc_per_node, s->world_size);
    fprintf(out, ",\"first_rank\":%d,\"elastic\":%s,\"nnodes_min\":%d,\"nnodes_max\":%d",
            s->first_rank, s->elastic ? "true" : "false", s->nnodes_min, s->nnodes_max);
    json_kv_str(out, "rdzv_host", s->rdzv_host);
    fprintf(out, ",\"rdzv_port\":%d", s->rdzv_port);
    json_kv_str(out, "master_addr", s->master_addr);
    fprintf(out, ",\"master_port\":%d,\"max_restarts\":%d,\"tf_task_index\":%d", s->master_port,
            s->max_restarts, s->tf_task_index);
    json_kv_str(out, "tf_cluster", s->tf_cluster_json);
    fprintf(out, ",\"nps\":%d,\"ps_hosts\":[", s->nps);
    for (int i = 0; i < s->nps; i++) {
        if (i)
            fputc(',', out);
        json_str(out, s->ps_hosts[i]);
    }
    fputc(']', out);
    json_kv_str(out, "from", s->from);
    fputs("}\n", out);
}

static void print_nproc(const struct bt__spec *s, FILE *out)
{
    if (s->nproc_per_node > 0)
        fprintf(out, "  %-15s %d\n", "nproc per node", s->nproc_per_node);
    else
        fprintf(out, "  %-15s auto (one per GPU, else %s)\n", "nproc per node",
                s->nproc_cpu ? "one per CPU" : "1");
    if (s->world_size > 0)
        fprintf(out, "  %-15s %d\n", "world size", s->world_size);
    else
        fprintf(out, "  %-15s %s\n", "world size",
                s->elastic ? "set by the rendezvous" : "known once nproc per node is resolved");
    if (s->first_rank >= 0)
        fprintf(out, "  %-15s %d\n", "first rank", s->first_rank);
}

static void print_tf(const struct bt__spec *s, FILE *out)
{
    if (s->tf_task_index >= 0)
        fprintf(out, "  %-15s %s %d\n", "tf task", bt__role_name(s->role), s->tf_task_index);
    if (s->nps > 0) {
        fprintf(out, "  %-15s", "ps");
        for (int i = 0; i < s->nps; i++)
            fprintf(out, "%s%s", i ? ", " : " ", s->ps_hosts[i]);
        fputc('\n', out);
    }
}

void bt__spec_print(const struct bt__spec *s, FILE *out)
{
    fprintf(out, "baton spec\n  %-15s %s\n  %-15s %s\n  %-15s %s\n", "source",
            bt__spec_source_name(s->source), "job id", s->job_id, "role", bt__role_name(s->role));
    if (s->node_rank >= 0)
        fprintf(out, "  %-15s %d of %d node(s)\n", "node rank", s->node_rank, s->nnodes);
    else
        fprintf(out, "  %-15s none (%s), %d node(s) run workers\n", "node rank",
                bt__role_name(s->role), s->nnodes);
    if (s->elastic)
        fprintf(out, "  %-15s %d..%d nodes, ranks assigned by the rendezvous\n", "elastic",
                s->nnodes_min, s->nnodes_max);
    print_nproc(s, out);
    if (s->rdzv_port)
        fprintf(out, "  %-15s %s:%d (baton's store)\n", "rendezvous", s->rdzv_host, s->rdzv_port);
    else
        fprintf(out, "  %-15s %s:any free port (baton's store)\n", "rendezvous", s->rdzv_host);
    if (s->master_port)
        fprintf(out, "  %-15s %s:%d (MASTER_ADDR:MASTER_PORT for the program)\n", "master",
                s->master_addr, s->master_port);
    else
        fprintf(out, "  %-15s %s, port chosen by baton run\n", "master", s->master_addr);
    if (s->max_restarts >= 0)
        fprintf(out, "  %-15s %d\n", "max restarts", s->max_restarts);
    print_tf(s, out);
    fprintf(out, "  %-15s %s\n", "from", s->from[0] ? s->from : "defaults (no cluster env found)");
}
