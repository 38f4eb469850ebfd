/* run_ps.c: the parameter servers of a job started by `baton run`.
 *
 * `--ps N` (one machine, or several nodes): node 0's launcher starts N servers beside its
 * workers, as children running `baton ps --index I` (baton itself, from /proc/self/exe). They
 * are supervised like workers but are not ranks: output tagged "[psI] ", a server that fails
 * fails the job (the root cause names it), and once every worker of the job has exited 0 a
 * server that has not exited by itself gets SIGTERM (it checkpoints and exits 0). Servers
 * outlive a generation that another follows (--max-restarts, an elastic membership change):
 * only the workers restart, and a server that ended meanwhile is started again
 * (run_supervise.c, run_spawn.c). Every
 * worker of every node gets BATON_PS_SERVERS=N, so give every launcher the same --ps.
 * A server publishes ps/server/<I> = its address in the store (collectives/ps/server.c):
 * on one node the route to 127.0.0.1; with several nodes BATON_RDZV is the address the other
 * nodes use to reach node 0, so the server publishes node 0's address on that route.
 *
 * --rdzv-backend etcd: no launcher hosts a store for the whole job; the workers' store of a
 * generation is the one its node rank 0 hosts (run_elastic.c). So there the servers run on the
 * node at node rank 0 of the generation, whatever its identity, and publish in that node's
 * store: every launcher has the server slots, and only node rank 0 starts them. Node ranks are
 * stable, so node rank 0 stays node rank 0 while it lives, and its servers and its store stay
 * with it into every generation. When it is lost, its servers die with it (PR_SET_PDEATHSIG),
 * and the next generation's node rank 0 starts them again: they reload their shards from
 * BATON_PS_CKPT_DIR (a directory every node shares; with BATON_PS_CKPT_SYNC=1 every
 * acknowledged push is in it) and publish in its store, where the workers find them and declare
 * their keys again (the placement is computed the same way). A launcher that lost etcd stops
 * its servers with its workers (run_supervise.c): it rejoins like a new node.
 *
 * TFJob: a pod whose TF_CONFIG task type is "ps" runs no PROGRAM: `baton run` runs ps task
 * I's server in its own process, against the store the chief's launcher hosts, bound to the
 * port TF_CONFIG gives task I, and exits with the server's status (0 once every worker of the
 * current generation has closed or the chief said the job is done, or on SIGTERM). It serves
 * every generation of the job: the workers of a restarted or re-formed job find it at the same
 * key and keep its state (collectives/ps/server.c). Chief and workers get
 * BATON_PS_SERVERS = the number of ps tasks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "collectives/ps/ps.h"
#include "common/auth.h"
#include "common/sock.h"
#include "launcher/cmds.h"
#include "launcher/run.h"

static void endpoint(char *out, size_t n, const char *host, int port)
{
    snprintf(out, n, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
}

int bt__run_ps_setup(struct bt__run *r, struct bt__err *err)
{
    ssize_t len = readlink("/proc/self/exe", r->self_exe, sizeof(r->self_exe) - 1);
    if (r->nchild == r->nproc)
        return BT_OK;
    if (len <= 0)
        return bt__err_set(err, BT_ERR_SYSTEM,
                           "cannot find baton's own executable for --ps "
                           "(/proc/self/exe)");
    r->self_exe[len] = 0;
    for (int i = r->nproc; i < r->nchild; i++) {
        struct bt__worker *w = &r->w[i];
        /* Under etcd a slot may never start a server (not node rank 0): no fd 0 to close. */
        w->out.fd = w->err.fd = w->log_fd = w->flight_fd = -1;
        w->ps_index = i - r->nproc;
        snprintf(w->ps_argv_idx, sizeof(w->ps_argv_idx), "%d", w->ps_index);
        w->ps_argv[0] = "baton";
        w->ps_argv[1] = "ps";
        w->ps_argv[2] = "--index";
        w->ps_argv[3] = w->ps_argv_idx;
        w->ps_argv[4] = NULL;
        w->prog = r->self_exe;
        w->argv = w->ps_argv;
    }
    return BT_OK;
}

int bt__run_ps_here(const struct bt__run *r)
{
    return r->nchild > r->nproc && (!r->etcd || r->spec.node_rank == 0);
}

void bt__run_ps_rdzv(const struct bt__run *r, char *out, size_t n)
{
    if (r->etcd) /* node rank 0's store for workers: this node's own (bt__run_ps_here) */
        snprintf(out, n, "%s", r->rdzv_env);
    else if (r->spec.nnodes > 1 && r->spec.rdzv_host[0])
        endpoint(out, n, r->spec.rdzv_host, r->store_port);
    else
        snprintf(out, n, "%s", r->rdzv_env);
}

/* The port TF_CONFIG gives ps task `index`, or 0 (any) when BATON_PS_PORT says otherwise. */
static int tf_port(const struct bt__spec *s, int index)
{
    char host[BT_SPEC_HOST_MAX];
    int port = 0;
    if (getenv("BATON_PS_PORT") || index < 0 || index >= s->nps)
        return 0;
    if (bt__parse_endpoint(s->ps_hosts[index], host, sizeof(host), &port) != 0)
        return 0;
    return port > 0 ? port : 0;
}

int bt__run_ps_pod(struct bt__run *r)
{
    const struct bt__spec *s = &r->spec;
    struct bt__ps_server_cfg cfg;
    char rdzv[BT_SPEC_HOST_MAX + 16];
    int index = s->tf_task_index >= 0 ? s->tf_task_index : 0;
    if (gethostname(r->host, sizeof(r->host) - 1) != 0)
        snprintf(r->host, sizeof(r->host), "?");
    struct bt__err err = {0};
    int rc = bt__run_token(r, &err);
    if (rc != 0) {
        fprintf(stderr, "baton run: %s\n", err.msg);
        return rc;
    }
    endpoint(rdzv, sizeof(rdzv), s->rdzv_host, s->rdzv_port);
    bt__ps_server_cfg_env(&cfg);
    cfg.rdzv = rdzv;
    char wtoken[BT__AUTH_WORKER_TOKEN]; /* a ps server is a worker (run_spawn.c) */
    if (bt__auth_worker_token(r->token, wtoken) != 0) {
        fprintf(stderr, "baton run: cannot derive the worker token (OpenSSL HMAC)\n");
        return BT_RUN_EXIT_LAUNCHER;
    }
    cfg.token = wtoken;
    cfg.index = index;
    if (tf_port(s, index))
        cfg.port = tf_port(s, index);
    fprintf(stderr,
            "baton: %s is TF ps task %d of job '%s': running baton's parameter server (as "
            "`baton ps --index %d`, store %s); %s is not started on ps tasks\n",
            r->host, index, r->job_id, index, rdzv, r->o.argv[0]);
    return bt__ps_process_main(&cfg);
}
