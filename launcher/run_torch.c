/* run_torch.c: what makes `baton run` a drop-in for torchrun (docs/pytorch.md has the table).
 *
 * Three parts, each checked against torch 1.13's own source (torch/distributed/run.py,
 * elastic/agent/server/local_elastic_agent.py, elastic/multiprocessing/__init__.py):
 *
 *   - torchrun's flags (rows of launcher/flags.c) mapped before and after the spec is
 *     detected: --standalone (one node, a random run id), --master-addr/--master-port (the
 *     workers' MASTER_ADDR/MASTER_PORT; baton's store at the master port + 1 unless --rdzv
 *     says), --rdzv-id (the job id) (--rdzv-backend and --rdzv-endpoint: run.c),
 *     --nproc-per-node gpu;
 *   - the program: a PROGRAM ending in .py, -m MODULE and --run-path run under the Python
 *     interpreter with -u, as torchrun runs them (PYTHON_EXEC, else python3 from PATH);
 *     --no-python runs PROGRAM itself;
 *   - the env torchrun's agent gives each worker: TORCHELASTIC_RUN_ID, _RESTART_COUNT,
 *     _MAX_RESTARTS, _USE_AGENT_STORE, _ERROR_FILE (per rank: <dir>/attempt_<g>/<local
 *     rank>/error.json, the folders made by baton, as torchrun makes them), ROLE_NAME,
 *     ROLE_RANK, ROLE_WORLD_SIZE, NCCL_ASYNC_ERROR_HANDLING (1 unless set) and
 *     OMP_NUM_THREADS=1 when unset and more than one worker runs on the node.
 *
 * TORCHELASTIC_USE_AGENT_STORE is "False": torchrun's static backend hosts a c10d TCPStore at
 * MASTER_PORT for the workers ("True"); baton's store speaks its own protocol, so the workers'
 * rank 0 hosts the TCPStore, as under torchrun's c10d backend.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "launcher/flags.h"
#include "launcher/run.h"

/* What `python -m torch.distributed.run --run_path` does in the worker: runpy.run_path. */
static const char runpath_code[] = "import runpy, sys; sys.argv = sys.argv[1:]; "
                                   "runpy.run_path(sys.argv[0], run_name='__main__')";

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* A version-4 UUID, as torchrun's --standalone makes its run id. */
static void uuid4(char *out, size_t n)
{
    unsigned char b[16] = {0};
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
        for (size_t i = 0; i < sizeof(b); i++)
            b[i] = (unsigned char)(rand() >> 7);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, n, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

static int usage(const char *what)
{
    fprintf(stderr, "baton run: %s; see 'baton help run'\n", what);
    return 2;
}

int bt__run_torch_flags(struct bt__run_opts *o, int ngpu)
{
    struct bt__run_torch *t = &o->torch;
    static char rdzv[BT_SPEC_HOST_MAX + 8];
    if (o->flags.nproc_per_node == BT_FLAGS_NPROC_GPU) {
        if (ngpu < 1)
            return usage("--nproc-per-node gpu: no GPU on this node (torchrun: \"Cuda is not "
                         "available\"); give a number, cpu or auto");
        o->flags.nproc_per_node = ngpu;
    }
    if (t->standalone) {
        if (o->flags.nnodes > 1 || o->flags.node_rank > 0 || o->flags.rdzv)
            return usage("--standalone is one node: drop --nnodes, --node-rank and --rdzv");
        o->flags.source = BT_SPEC_STANDALONE;
    }
    if (t->module + t->no_python + t->run_path > 1 && !(t->run_path && t->no_python))
        return usage("-m/--module, --no-python and --run-path exclude each other");
    if (!o->flags.rdzv && (t->master_addr || t->master_port) && o->flags.nnodes > 1) {
        int port = t->master_port > 0 ? t->master_port : 29500; /* torchrun's default */
        snprintf(rdzv, sizeof(rdzv), "%s%s%s:%d",
                 strchr(t->master_addr ? t->master_addr : "", ':') ? "[" : "",
                 t->master_addr ? t->master_addr : "127.0.0.1",
                 strchr(t->master_addr ? t->master_addr : "", ':') ? "]" : "", port + 1);
        o->flags.rdzv = rdzv;
    }
    return 0;
}

void bt__run_torch_spec(struct bt__run *r)
{
    struct bt__run_torch *t = &r->o.torch;
    if (t->rdzv_id)
        snprintf(r->spec.job_id, sizeof(r->spec.job_id), "%s", t->rdzv_id);
    if (t->master_addr)
        snprintf(r->spec.master_addr, sizeof(r->spec.master_addr), "%s", t->master_addr);
    if (t->master_port > 0)
        r->spec.master_port = t->master_port;
    if (t->rdzv_id)
        snprintf(t->run_id, sizeof(t->run_id), "%s", t->rdzv_id);
    else if (t->standalone)
        uuid4(t->run_id, sizeof(t->run_id));
}

/* The interpreter torchrun would use: PYTHON_EXEC, else python3 (torchrun: sys.executable). */
static const char *python(void)
{
    const char *p = getenv("PYTHON_EXEC");
    return p && *p ? p : "python3";
}

int bt__run_torch_argv(struct bt__run_opts *o)
{
    struct bt__run_torch *t = &o->torch;
    char **a = o->argv;
    int n = 0, extra;
    while (a[n])
        n++;
    if (t->no_python && !t->run_path) {
        if (t->module)
            return usage("--no-python with -m: a module needs the Python interpreter");
        return 0;
    }
    if (!t->module && !t->run_path && !ends_with(a[0], ".py"))
        return 0; /* baton's own: PROGRAM is executed as it is */
    if (!t->module && access(a[0], F_OK) != 0) {
        fprintf(stderr, "baton run: %s: script not found (%s); hint: check the path after --\n",
                a[0], strerror(errno));
        return 127;
    }
    extra = t->run_path ? 4 : t->module ? 3 : 2;
    char **v = calloc((size_t)(n + extra + 1), sizeof(char *));
    if (!v)
        return usage("out of memory");
    v[0] = (char *)python();
    v[1] = (char *)"-u";
    if (t->run_path) {
        v[2] = (char *)"-c";
        v[3] = (char *)runpath_code; /* sys.argv: ["-c", script, args...] */
    } else if (t->module)
        v[2] = (char *)"-m";
    memcpy(v + extra, a, (size_t)n * sizeof(char *));
    t->argv_owned = v;
    o->argv = v;
    return 0;
}

/* mkdir -p of path (mode 700 for baton's own folders). */
static int mkdirs(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = mkdir(path, 0700);
        *p = '/';
        if (rc != 0 && errno != EEXIST)
            return -1;
    }
    return mkdir(path, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

int bt__run_torch_errdir(struct bt__run *r, struct bt__err *err)
{
    struct bt__run_torch *t = &r->o.torch;
    if (r->o.log_dir) {
        snprintf(t->errdir, sizeof(t->errdir), "%s/torchelastic", r->o.log_dir);
        if (mkdirs(t->errdir) != 0)
            return bt__err_set(err, BT_ERR_SYSTEM, "%s: %s", t->errdir, strerror(errno));
        return BT_OK;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(t->errdir, sizeof(t->errdir), "%s/baton-errors-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(t->errdir)) {
        int e = errno;
        t->errdir[0] = '\0';
        return bt__err_set(err, BT_ERR_SYSTEM, "TORCHELASTIC_ERROR_FILE's folder: mkdtemp: %s",
                           strerror(e));
    }
    t->errdir_temp = 1;
    return BT_OK;
}

/* <errdir>/attempt_<g>/<local rank>/error.json into out. */
static void error_file(const struct bt__run *r, int local_rank, char *out, size_t n)
{
    snprintf(out, n, "%s/attempt_%d/%d/error.json", r->o.torch.errdir, r->restart, local_rank);
}

int bt__run_torch_generation(struct bt__run *r, struct bt__err *err)
{
    char path[PATH_MAX + 64];
    if (!r->o.torch.errdir[0])
        return BT_OK;
    for (int i = 0; i < r->nproc; i++) {
        error_file(r, i, path, sizeof(path));
        unlink(path); /* a stale file of an earlier run in the same --log-dir */
        *strrchr(path, '/') = '\0';
        if (mkdirs(path) != 0)
            return bt__err_set(err, BT_ERR_SYSTEM, "%s: %s", path, strerror(errno));
    }
    return BT_OK;
}

int bt__run_torch_vars(const struct bt__run *r, const struct bt__worker *w, char **v)
{
    const struct bt__run_torch *t = &r->o.torch;
    int n = 0, ok = 1;
    char path[PATH_MAX + 64];
#define ADD(...) ok &= asprintf(&v[n++], __VA_ARGS__) >= 0
    ADD("TORCHELASTIC_RUN_ID=%s", t->run_id[0] ? t->run_id : r->job_id);
    ADD("TORCHELASTIC_RESTART_COUNT=%d", r->restart);
    ADD("TORCHELASTIC_MAX_RESTARTS=%d", r->o.max_restarts);
    ADD("TORCHELASTIC_USE_AGENT_STORE=False");
    ADD("ROLE_NAME=%s", t->role ? t->role : "default");
    ADD("ROLE_RANK=%d", w->rank);
    ADD("ROLE_WORLD_SIZE=%d", r->world_size);
    if (t->errdir[0]) {
        error_file(r, w->local_rank, path, sizeof(path));
        ADD("TORCHELASTIC_ERROR_FILE=%s", path);
    }
    if (!getenv("NCCL_ASYNC_ERROR_HANDLING"))
        ADD("NCCL_ASYNC_ERROR_HANDLING=1");
    if (!getenv("OMP_NUM_THREADS") && r->nproc > 1)
        ADD("OMP_NUM_THREADS=1");
#undef ADD
    return ok ? n : -1;
}

void bt__run_torch_omp_note(const struct bt__run *r)
{
    if (!getenv("OMP_NUM_THREADS") && r->nproc > 1)
        BT_INFO(LAUNCH,
                "OMP_NUM_THREADS=1 for each of the %d workers (it was unset and more than one "
                "worker runs on this node, as torchrun does); set it to tune",
                r->nproc);
}

/* The first line of the "message" of a @record error file, JSON-unescaped enough for a report
 * line (\n ends it, \" and \\ are kept as the character). */
void bt__run_torch_error_msg(const struct bt__run *r, const struct bt__worker *w, char *out,
                             size_t n)
{
    char path[PATH_MAX + 64], buf[8192];
    out[0] = '\0';
    if (!r->o.torch.errdir[0] || w->ps_index >= 0 || n < 2)
        return;
    error_file(r, w->local_rank, path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t got = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[got > 0 ? got : 0] = '\0';
    const char *m = strstr(buf, "\"message\": \"");
    if (!m)
        return;
    m += 12;
    size_t k = 0;
    for (; *m && *m != '"' && k + 1 < n; m++) {
        if (*m == '\\' && m[1]) {
            if (m[1] == 'n')
                break;
            m++;
        }
        out[k++] = *m;
    }
    out[k] = '\0';
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    remove(p);
    return 0;
}

void bt__run_torch_close(struct bt__run *r)
{
    struct bt__run_torch *t = &r->o.torch;
    if (t->errdir_temp && t->errdir[0])
        nftw(t->errdir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    t->errdir[0] = '\0';
    free(t->argv_owned);
    t->argv_owned = NULL;
}
