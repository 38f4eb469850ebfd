/* local.c: `baton k8s local`: the flags, and the plan of what each pod runs.
 *
 * A pod runs its framework container's command + args with the env `baton k8s render` gives
 * it, as the operator would, plus what a container would have: HOSTNAME=<pod>, a PATH (the
 * baton binary's examples/ folder and folder first, then the caller's), HOME, and the
 * caller's BATON_* and sanitizer variables (so BATON_DEBUG reaches the pods; the pod's own
 * env wins). Kubernetes' $(VAR) references in command and args are expanded from that env
 * ($$ is a literal $, unknown references stay as written). argv[0] `baton` is this binary; a
 * bare program name is looked up on the pod's PATH. A container without command runs
 * `baton ARGS` (k8s/Dockerfile's entrypoint).
 *
 * --set-args "A B" replaces the container's args (Kubernetes semantics: the command stays);
 * --add-args "A B" appends to command + args, which for `baton run -- PROG ARGS` means to the
 * program's args. Both split on blanks, apply to every pod, and may be repeated.
 *
 * Volumes: each volumeMount of the container is a directory of its own pod,
 * <workdir>/<pod>/<volume>[/<subPath>] (subPathExpr expanded from the pod's env), made before
 * the pod starts, as kubelet makes an emptyDir and its subPath; whatever the volume's type.
 * A path at or below a mountPath (the deepest one wins) in an argument, an "--opt=PATH"
 * argument or an env value is pointed there. Paths the program builds itself are not: the
 * real mountPath is not mounted (that would mean making directories outside the work dir).
 *
 * Loopback mode (no --netns): the service names do not resolve on this machine and every pod
 * would want the same port, so each pod gets 127.0.0.1 and a port P of its own (P + 1, the
 * store's port, is free too). In every env value, <pod>[.<ns>.svc[.domain]][:port] becomes
 * 127.0.0.1[:P of that pod]; MASTER_PORT and PET_MASTER_PORT become the master pod's P.
 * HOSTNAME keeps the pod name. What was rewritten is printed. With --netns nothing is
 * rewritten: each pod has its own address and the names resolve (local_net.c).
 */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "k8s/k8s_impl.h"
#include "k8s/local.h"

static const char usage_line[] =
    "usage: baton k8s local [--netns] [--set-args \"ARGS\"] [--add-args \"ARGS\"] "
    "[--timeout SEC] [--seed N] [--order POD,...] [--stagger SEC] [--workdir DIR] "
    "[--baton PATH] [--runtime RUNTIME.yaml] JOB.yaml";

struct local_args {
    const char *job, *baton, *workdir, *order, *runtime;
    const char *set_args[16], *add_args[16];
    int nset, nadd;
    struct bt__local l;
};

/* A number flag's value in [lo, hi]; -1 with a message when it is not one. */
static int num_arg(const char *flag, const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "baton k8s local: %s '%s' is not a number in [%g, %g]\n", flag, v, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

static int parse_value(struct local_args *a, const char *s, const char *v)
{
    double x;
    if (!strcmp(s, "--set-args") || !strcmp(s, "--add-args")) {
        int set = !strcmp(s, "--set-args");
        if ((set ? a->nset : a->nadd) >= 16) {
            fprintf(stderr, "baton k8s local: %s given more than 16 times\n", s);
            return 2;
        }
        (set ? a->set_args : a->add_args)[(set ? a->nset++ : a->nadd++)] = v;
    } else if (!strcmp(s, "--timeout") || !strcmp(s, "--stagger")) {
        if (num_arg(s, v, 0, 1e6, &x))
            return 2;
        *(!strcmp(s, "--timeout") ? &a->l.timeout_s : &a->l.stagger_s) = x;
    } else if (!strcmp(s, "--seed")) {
        if (num_arg(s, v, 0, 4294967295.0, &x))
            return 2;
        a->l.seed = (unsigned)x;
    } else if (!strcmp(s, "--order")) {
        a->order = v;
    } else if (!strcmp(s, "--workdir")) {
        a->workdir = v;
    } else if (!strcmp(s, "--runtime")) {
        a->runtime = v;
    } else {
        a->baton = v;
    }
    return 0;
}

static int parse_args(int argc, char **argv, struct local_args *a)
{
    static const char *const valued[] = {"--set-args", "--add-args", "--timeout", "--seed",
                                         "--order",    "--stagger",  "--workdir", "--baton",
                                         "--runtime",  NULL};
    a->l.seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        int k = 0;
        while (valued[k] && strcmp(s, valued[k]))
            k++;
        if (valued[k]) {
            if (i + 1 >= argc) {
                fprintf(stderr, "baton k8s local: %s needs a value\n%s\n", s, usage_line);
                return 2;
            }
            if (parse_value(a, s, argv[++i]))
                return 2;
        } else if (!strcmp(s, "--netns")) {
            a->l.netns = 1;
        } else if (s[0] == '-' && s[1]) {
            fprintf(stderr, "baton k8s local: unknown option '%s'\n%s\n", s, usage_line);
            return 2;
        } else if (a->job) {
            fprintf(stderr, "baton k8s local: one JOB.yaml at a time ('%s' is extra)\n", s);
            return 2;
        } else {
            a->job = s;
        }
    }
    if (!a->job) {
        fprintf(stderr, "baton k8s local: no JOB.yaml\n%s\n", usage_line);
        return 2;
    }
    return 0;
}

/* ---- small string vectors ---- */

struct vec {
    char **v;
    size_t n, cap;
    int oom;
};

static void vec_push(struct vec *x, char *s)
{
    if (!s || x->oom) {
        x->oom = 1;
        free(s);
        return;
    }
    if (x->n + 2 > x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 16;
        char **nv = realloc(x->v, cap * sizeof(*nv));
        if (!nv) {
            x->oom = 1;
            free(s);
            return;
        }
        x->v = nv;
        x->cap = cap;
    }
    x->v[x->n++] = s;
    x->v[x->n] = NULL;
}

static void vec_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* Sets NAME=value in an envp vector, replacing an earlier NAME. */
static void env_set(struct vec *e, const char *name, const char *value)
{
    size_t n = strlen(name);
    char *s = malloc(n + strlen(value) + 2);
    if (s)
        sprintf(s, "%s=%s", name, value);
    for (size_t i = 0; s && i < e->n; i++)
        if (!strncmp(e->v[i], name, n) && e->v[i][n] == '=') {
            free(e->v[i]);
            e->v[i] = s;
            return;
        }
    vec_push(e, s);
}

static const char *env_get(const struct vec *e, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = e->n; i > 0; i--)
        if (!strncmp(e->v[i - 1], name, n) && e->v[i - 1][n] == '=')
            return e->v[i - 1] + n + 1;
    return NULL;
}

/* ---- the loopback rewrite ---- */

static int name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

/* v with every <pod>[.domain][:port] of the job replaced by 127.0.0.1[:P]; malloc'd. */
static char *loopback_value(const struct bt__local *l, const char *v)
{
    size_t cap = strlen(v) + 1, n = 0;
    char *out = malloc(cap);
    for (size_t i = 0; out && v[i];) {
        const struct bt__local_pod *hit = NULL;
        size_t len = 0;
        for (size_t p = 0;
             !hit && (i == 0 || (!name_char(v[i - 1]) && v[i - 1] != '.')) && p < l->npods; p++) {
            len = strlen(l->pods[p].k->name);
            if (!strncmp(v + i, l->pods[p].k->name, len) && !name_char(v[i + len]))
                hit = &l->pods[p];
        }
        char rep[32];
        size_t j = i + 1;
        if (hit) {
            j = i + len;
            if (v[j] == '.')
                while (name_char(v[j]) || v[j] == '.')
                    j++;
            size_t d = v[j] == ':' ? strspn(v + j + 1, "0123456789") : 0;
            snprintf(rep, sizeof(rep), d ? "127.0.0.1:%d" : "127.0.0.1", hit->port);
            j += d ? d + 1 : 0;
        } else {
            snprintf(rep, sizeof(rep), "%c", v[i]);
        }
        size_t rl = strlen(rep);
        if (n + rl + 1 > cap) {
            char *no = realloc(out, cap = (n + rl + 1) * 2);
            if (!no)
                free(out);
            out = no;
            if (!out)
                break;
        }
        memcpy(out + n, rep, rl);
        n += rl;
        i = j;
    }
    if (out)
        out[n] = '\0';
    return out;
}

/* The pod whose name is name, or its first DNS label (<pod>.<subdomain> of a TrainJob). */
static const struct bt__local_pod *pod_named(const struct bt__local *l, const char *name)
{
    size_t n = name ? strcspn(name, ".") : 0;
    for (size_t i = 0; name && i < l->npods; i++)
        if (strlen(l->pods[i].k->name) == n && !strncmp(l->pods[i].k->name, name, n))
            return &l->pods[i];
    return NULL;
}

/* A port P on 127.0.0.1 with P + 1 free as well, held open in fds[0..1] until the caller
 * closes them (so no two pods get the same one). 0 when none was found. */
static int port_pair(int fds[2])
{
    for (int attempt = 0; attempt < 50; attempt++) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t al = sizeof(a);
        fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        fds[1] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fds[0] >= 0 && fds[1] >= 0 && bind(fds[0], (void *)&a, sizeof(a)) == 0 &&
            getsockname(fds[0], (void *)&a, &al) == 0 && ntohs(a.sin_port) < 65535) {
            a.sin_port = htons((uint16_t)(ntohs(a.sin_port) + 1));
            if (bind(fds[1], (void *)&a, sizeof(a)) == 0)
                return ntohs(a.sin_port) - 1;
        }
        close(fds[0]);
        close(fds[1]);
    }
    fds[0] = fds[1] = -1;
    return 0;
}

static int assign_addresses(struct bt__local *l)
{
    int *fds = calloc(l->npods * 2, sizeof(int)), rc = 0;
    if (!fds)
        return -1;
    for (size_t i = 0; i < l->npods; i++) {
        struct bt__local_pod *p = &l->pods[i];
        if (l->netns) {
            snprintf(p->addr, sizeof(p->addr), "198.51.100.%zu", i + 2);
            snprintf(p->ns, sizeof(p->ns), "bt-%d-%zu", (int)getpid(), i);
            continue;
        }
        snprintf(p->addr, sizeof(p->addr), "127.0.0.1");
        if (!(p->port = port_pair(fds + 2 * i))) {
            fprintf(stderr, "baton k8s local: no two free neighbouring ports on 127.0.0.1\n");
            rc = -1;
        }
    }
    for (size_t i = 0; !l->netns && i < 2 * l->npods; i++)
        if (fds[i] > 0)
            close(fds[i]);
    free(fds);
    return rc;
}

/* ---- argv and env of one pod ---- */

/* s with $(VAR) expanded from env as Kubernetes does; malloc'd. */
static char *expand(const char *s, const struct vec *env)
{
    size_t cap = strlen(s) + 1, n = 0;
    char *out = malloc(cap);
    for (size_t i = 0; out && s[i];) {
        const char *val = NULL;
        size_t skip = 1, vl;
        if (s[i] == '$' && s[i + 1] == '$') {
            val = "$";
            skip = 2;
        } else if (s[i] == '$' && s[i + 1] == '(' && strchr(s + i, ')')) {
            size_t nl = (size_t)(strchr(s + i, ')') - (s + i)) - 2;
            char name[256];
            snprintf(name, sizeof(name), "%.*s", (int)nl, s + i + 2);
            val = nl < sizeof(name) ? env_get(env, name) : NULL;
            skip = val ? nl + 3 : 1;
        }
        vl = val ? strlen(val) : 1;
        if (n + vl + 1 > cap) {
            char *no = realloc(out, cap = (n + vl + 1) * 2);
            if (!no)
                free(out);
            if (!(out = no))
                break;
        }
        memcpy(out + n, val ? val : s + i, vl);
        n += vl;
        i += skip;
    }
    if (out)
        out[n] = '\0';
    return out;
}

/* ---- volumes ---- */

/* The length of mountPath mp without trailing slashes (at least 1). */
static size_t mount_len(const char *mp)
{
    size_t n = strlen(mp);
    while (n > 1 && mp[n - 1] == '/')
        n--;
    return n;
}

/* The volumeMount of c whose mountPath is path or the deepest one above it; NULL when none. */
static const struct bt__yn *mount_of(const struct bt__yn *c, const char *path, size_t *len)
{
    const struct bt__yn *vm = bt__yn_get(c, "volumeMounts"), *best = NULL;
    *len = 0;
    for (size_t i = 0; vm && vm->kind == BT_YN_SEQ && i < vm->n; i++) {
        const char *mp = bt__yn_gets(vm->v[i], "mountPath");
        size_t ml = mp && mp[0] == '/' ? mount_len(mp) : 0;
        if (ml < 2 || !bt__yn_gets(vm->v[i], "name") || strncmp(path, mp, ml) ||
            (path[ml] && path[ml] != '/') || ml <= *len)
            continue;
        best = vm->v[i];
        *len = ml;
    }
    return best;
}

/* <workdir>/<pod>/<volume>[/<subPath>] of volumeMount vm into buf (subPathExpr expanded from
 * env); -1 with a message when the subPath is absolute or climbs out with "..". */
static int volume_dir(const struct local_args *a, const struct bt__local_pod *p,
                      const struct bt__yn *vm, const struct vec *env, char *buf, size_t n)
{
    const char *sub = bt__yn_gets(vm, "subPath"), *expr = bt__yn_gets(vm, "subPathExpr");
    char *x = !sub && expr ? expand(expr, env) : NULL;
    sub = x ? x : sub ? sub : "";
    int bad = sub[0] == '/' || !strcmp(sub, "..") || !strncmp(sub, "../", 3) ||
              strstr(sub, "/../") || (strlen(sub) >= 3 && !strcmp(sub + strlen(sub) - 3, "/.."));
    if (bad)
        fprintf(stderr,
                "baton k8s local: pod %s: volumeMount %s: subPath '%s' must be a relative "
                "path that stays inside the volume\n",
                p->k->name, bt__yn_gets(vm, "name"), sub);
    int len = snprintf(buf, n, "%s/%s/%s%s%s", a->workdir, p->k->name, bt__yn_gets(vm, "name"),
                       sub[0] ? "/" : "", sub);
    free(x);
    return bad || len < 0 || (size_t)len >= n ? -1 : 0;
}

/* mkdir -p path (0755); -1 with errno set when a part cannot be made. */
static int mkdirs(const char *path)
{
    char buf[PATH_MAX];
    int n = snprintf(buf, sizeof(buf), "%s", path);
    if (n < 0 || (size_t)n >= sizeof(buf)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *s = buf + 1;; s++) {
        if (*s && *s != '/')
            continue;
        char end = *s;
        *s = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -1;
        if (!end)
            return 0;
        *s = end;
    }
}

/* Makes the directory of every volumeMount of the pod's container and prints where each is;
 * -2 for an invalid subPath, -1 when a directory cannot be made (both with a message). */
static int make_volumes(const struct local_args *a, const struct bt__local_pod *p,
                        const struct bt__yn *c, const struct vec *env)
{
    const struct bt__yn *vm = bt__yn_get(c, "volumeMounts");
    char dir[PATH_MAX];
    for (size_t i = 0; vm && vm->kind == BT_YN_SEQ && i < vm->n; i++) {
        const char *mp = bt__yn_gets(vm->v[i], "mountPath");
        if (!mp || !bt__yn_gets(vm->v[i], "name"))
            continue;
        if (volume_dir(a, p, vm->v[i], env, dir, sizeof(dir)))
            return -2;
        if (mkdirs(dir)) {
            fprintf(stderr, "baton k8s local: pod %s: volume dir %s: %s\n", p->k->name, dir,
                    strerror(errno));
            return -1;
        }
        printf("baton k8s local:   %-24s %s is %s\n", p->k->name, mp, dir);
    }
    return 0;
}

/* s with a path at or below a mountPath pointed at the volume's dir (also the value of an
 * "--opt=PATH" argument); malloc'd. */
static char *map_volume(const struct local_args *a, const struct bt__local_pod *p,
                        const struct bt__yn *c, const struct vec *env, const char *s)
{
    const char *eq = s[0] == '-' ? strchr(s, '=') : NULL, *path = eq ? eq + 1 : s;
    size_t ml;
    const struct bt__yn *vm = mount_of(c, path, &ml);
    char dir[PATH_MAX];
    if (!vm || volume_dir(a, p, vm, env, dir, sizeof(dir)))
        return strdup(s);
    size_t n = (size_t)(path - s) + strlen(dir) + strlen(path + ml) + 1;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%.*s%s%s", (int)(path - s), s, dir, path + ml);
    return out;
}

/* Splits words (blank-separated) onto x. */
static void push_words(struct vec *x, const char *words)
{
    for (const char *w = words; *w;) {
        w += strspn(w, " \t\n");
        size_t n = strcspn(w, " \t\n");
        if (n)
            vec_push(x, strndup(w, n));
        w += n;
    }
}

/* The container's command + args, with --set-args/--add-args applied (strings not yet
 * expanded). */
static void raw_argv(const struct local_args *a, const struct bt__yn *c, struct vec *x)
{
    const struct bt__yn *cmd = bt__yn_get(c, "command"), *args = bt__yn_get(c, "args");
    if (!cmd || cmd->kind != BT_YN_SEQ || cmd->n == 0)
        vec_push(x, strdup("baton"));
    for (size_t i = 0; cmd && cmd->kind == BT_YN_SEQ && i < cmd->n; i++)
        vec_push(x, strdup(cmd->v[i]->kind == BT_YN_SCALAR ? cmd->v[i]->s : ""));
    for (size_t i = 0; !a->nset && args && args->kind == BT_YN_SEQ && i < args->n; i++)
        vec_push(x, strdup(args->v[i]->kind == BT_YN_SCALAR ? args->v[i]->s : ""));
    for (int i = 0; i < a->nset; i++)
        push_words(x, a->set_args[i]);
    for (int i = 0; i < a->nadd; i++)
        push_words(x, a->add_args[i]);
}

/* The first executable name in dirs (a PATH string), into buf; 0 when found. */
static int search_path(const char *dirs, const char *name, char *buf, size_t n)
{
    for (const char *d = dirs; *d;) {
        size_t len = strcspn(d, ":");
        snprintf(buf, n, "%.*s/%s", (int)len, d, name);
        if (len && access(buf, X_OK) == 0)
            return 0;
        d += len + (d[len] == ':');
    }
    return -1;
}

/* The base env: PATH, HOME, HOSTNAME, the caller's BATON_* and sanitizer knobs. */
static void base_env(const struct local_args *a, const struct bt__local_pod *p, struct vec *e)
{
    extern char **environ;
    char path[4 * PATH_MAX], dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", a->baton);
    *strrchr(dir, '/') = '\0';
    snprintf(path, sizeof(path), "%s/examples:%s:%.*s", dir, dir, PATH_MAX,
             getenv("PATH") ? getenv("PATH") : "/usr/local/bin:/usr/bin:/bin");
    env_set(e, "PATH", path);
    env_set(e, "HOME", getenv("HOME") ? getenv("HOME") : "/root");
    env_set(e, "HOSTNAME", p->k->name);
    for (char **v = environ; *v; v++)
        if (!strncmp(*v, "BATON_", 6) || !strncmp(*v, "ASAN_", 5) || !strncmp(*v, "UBSAN_", 6) ||
            !strncmp(*v, "LSAN_", 5))
            vec_push(e, strdup(*v));
}

/* Adds the pod's env (loopback-rewritten where needed) to e; names what changed in note. */
static void pod_env(const struct bt__local *l, const struct bt__local_pod *p, struct vec *e,
                    char *note, size_t nn)
{
    for (size_t i = 0; i < p->k->nenv; i++) {
        const struct bt__k8s_env *v = &p->k->env[i];
        if (!v->value) {
            snprintf(note + strlen(note), nn - strlen(note), " %s(valueFrom: not set)", v->name);
            continue;
        }
        char *val = l->netns ? strdup(v->value) : loopback_value(l, v->value);
        if (!l->netns && (!strcmp(v->name, "MASTER_PORT") || !strcmp(v->name, "PET_MASTER_PORT"))) {
            const struct bt__local_pod *m =
                pod_named(l, bt__k8s_pod_env(p->k, !strcmp(v->name, "MASTER_PORT")
                                                       ? "MASTER_ADDR"
                                                       : "PET_MASTER_ADDR"));
            if (m && val) {
                free(val);
                val = malloc(16);
                if (val)
                    snprintf(val, 16, "%d", m->port);
            }
        }
        if (val && strcmp(val, v->value))
            snprintf(note + strlen(note), nn - strlen(note), " %s", v->name);
        if (val)
            env_set(e, v->name, val);
        else
            e->oom = 1;
        free(val);
    }
}

/* Fills p->argv and p->envp; 0, or -1 (with a message), -2 for an invalid volumeMount. */
static int plan_pod(const struct local_args *a, struct bt__local *l, struct bt__local_pod *p)
{
    const struct bt__k8s_kind_info *ki = bt__k8s_kind_info(l->job->kind);
    const struct bt__yn *c = bt__k8s_container(bt__yn_get(p->k->pod, "spec"), ki->container);
    struct vec e = {0}, raw = {0}, x = {0};
    char note[1024] = "";
    base_env(a, p, &e);
    pod_env(l, p, &e, note, sizeof(note));
    int vr = make_volumes(a, p, c, &e);
    if (vr) {
        vec_free(e.v);
        return vr;
    }
    for (size_t i = 0; i < e.n; i++) { /* volume paths in env values */
        char *eq = strchr(e.v[i], '='), *m = eq ? map_volume(a, p, c, &e, eq + 1) : NULL;
        if (m && strcmp(m, eq + 1)) {
            char *name = strndup(e.v[i], (size_t)(eq - e.v[i]));
            if (name)
                env_set(&e, name, m);
            free(name);
        }
        free(m);
    }
    raw_argv(a, c, &raw);
    for (size_t i = 0; !raw.oom && i < raw.n; i++) {
        char *s = expand(raw.v[i], &e);
        vec_push(&x, s ? map_volume(a, p, c, &e, s) : NULL);
        free(s);
    }
    vec_free(raw.v);
    int rc = e.oom || x.oom || x.n == 0 ? -1 : 0;
    if (rc == 0 && !strcmp(x.v[0], "baton")) {
        free(x.v[0]);
        x.v[0] = strdup(a->baton);
    } else if (rc == 0 && !strchr(x.v[0], '/')) {
        char buf[PATH_MAX];
        if (search_path(env_get(&e, "PATH"), x.v[0], buf, sizeof(buf)) == 0) {
            free(x.v[0]);
            x.v[0] = strdup(buf);
        } else {
            fprintf(stderr, "baton k8s local: pod %s: program '%s' is not on its PATH (%s)\n",
                    p->k->name, x.v[0], env_get(&e, "PATH"));
            rc = 1;
        }
    }
    p->argv = x.v;
    p->envp = e.v;
    if (rc < 0)
        fprintf(stderr, "baton k8s local: out of memory\n");
    else if (rc == 0 && !l->netns)
        printf("baton k8s local:   %-24s 127.0.0.1 port %d (%d kept free for a store)%s%s\n",
               p->k->name, p->port, p->port + 1, note[0] ? "; rewrote" : "", note);
    else if (rc == 0 && note[0])
        printf("baton k8s local:   %s:%s\n", p->k->name, note);
    return rc ? -1 : 0;
}

/* ---- the start order ---- */

static int make_order(const struct local_args *a, struct bt__local *l)
{
    if (!(l->order = calloc(l->npods, sizeof(size_t))))
        return -1;
    size_t n = 0;
    unsigned char *used = calloc(l->npods, 1);
    if (!used)
        return -1;
    for (const char *o = a->order ? a->order : ""; *o;) {
        size_t len = strcspn(o, ",");
        size_t i = 0;
        while (i < l->npods &&
               (strlen(l->pods[i].k->name) != len || strncmp(l->pods[i].k->name, o, len)))
            i++;
        if (i == l->npods || used[i]) {
            fprintf(stderr, "baton k8s local: --order: '%.*s' is %s\n", (int)len, o,
                    i == l->npods ? "not a pod of this job" : "given twice");
            free(used);
            return 1;
        }
        used[i] = 1;
        l->order[n++] = i;
        o += len + (o[len] == ',');
    }
    size_t first_free = n;
    for (size_t i = 0; i < l->npods; i++)
        if (!used[i])
            l->order[n++] = i;
    unsigned s = l->seed ? l->seed : 1; /* Fisher-Yates over what --order left */
    for (size_t i = l->npods; i > first_free + 1; i--) {
        s = s * 1103515245u + 12345u;
        size_t j = first_free + (s >> 8) % (i - first_free), t = l->order[i - 1];
        l->order[i - 1] = l->order[j];
        l->order[j] = t;
    }
    free(used);
    printf("baton k8s local: start order (seed %u%s):", l->seed, a->order ? ", --order first" : "");
    for (size_t i = 0; i < l->npods; i++)
        printf(" %s", l->pods[l->order[i]].k->name);
    printf("\n");
    return 0;
}

/* ---- the command ---- */

static int setup(struct local_args *a, struct bt__local *l, struct bt__k8s_job *job)
{
    static char workdir[] = "/tmp/baton-k8s-local.XXXXXX";
    l->job = job;
    l->npods = job->npods;
    if (l->npods == 0 || l->npods > BT_LOCAL_MAX_PODS) {
        fprintf(stderr, "baton k8s local: job %s has %zu pods; this runs 1 to %d\n", job->name,
                l->npods, BT_LOCAL_MAX_PODS);
        return 2;
    }
    if (!a->workdir && !(a->workdir = mkdtemp(workdir))) {
        perror("baton k8s local: mkdtemp");
        return 1;
    }
    if (mkdir(a->workdir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "baton k8s local: --workdir %s: %s\n", a->workdir, strerror(errno));
        return 2;
    }
    l->workdir = a->workdir;
    if (!(l->pods = calloc(l->npods, sizeof(*l->pods))))
        return 1;
    for (size_t i = 0; i < l->npods; i++) {
        l->pods[i].k = &job->pods[i];
        l->pods[i].out_fd = -1;
        l->pods[i].node = -1;
    }
    if (assign_addresses(l))
        return 1;
    printf("baton k8s local: %s %s, %zu pods, %s; volumes under %s\n",
           bt__k8s_kind_info(job->kind)->kind, job->name, l->npods,
           l->netns ? "one network namespace each (198.51.100.0/24, names in "
                      "/etc/netns/<ns>/hosts once the pod has started)"
                    : "loopback mode: pod names and ports rewritten in the env as below",
           a->workdir);
    for (size_t i = 0; i < l->npods; i++) {
        int rc = plan_pod(a, l, &l->pods[i]);
        if (rc)
            return rc == -2 ? 2 : 1; /* -2: an invalid volumeMount */
    }
    return make_order(a, l) ? 2 : 0;
}

static void free_local(struct bt__local *l)
{
    for (size_t i = 0; l->pods && i < l->npods; i++) {
        vec_free(l->pods[i].argv);
        vec_free(l->pods[i].envp);
    }
    free(l->pods);
    free(l->order);
}

int bt__k8s_local(int argc, char **argv)
{
    static struct local_args a; /* static: the signal-time cleanup never needs it */
    char self[PATH_MAX];
    memset(&a, 0, sizeof(a));
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc;
    if (!a.baton) {
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        self[n > 0 ? n : 0] = '\0';
        a.baton = self;
    }
    if (!strchr(a.baton, '/') || access(a.baton, X_OK) != 0) {
        fprintf(stderr, "baton k8s local: --baton '%s' is not an executable path\n", a.baton);
        return 2;
    }
    if (a.l.netns && geteuid() != 0) {
        fprintf(stderr, "baton k8s local: --netns needs root (network namespaces); run it as "
                        "root, or leave out --netns for the loopback mode\n");
        return 2;
    }
    struct bt__k8s_job job;
    struct bt__err err = {0};
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct bt__k8s_opts opts = {.runtime = a.runtime};
    if (bt__k8s_job_load(a.job, &opts, &job, &err) != BT_OK) {
        fprintf(stderr, "baton k8s local: %s\n", err.msg);
        bt__k8s_job_free(&job);
        return err.code == BT_ERR_INVALID_USAGE ? 2 : 1;
    }
    prctl(PR_SET_CHILD_SUBREAPER, 1); /* orphaned pod processes come back to us for cleanup */
    rc = setup(&a, &a.l, &job);
    if (rc == 0)
        rc = bt__local_run(&a.l);
    free_local(&a.l);
    bt__k8s_job_free(&job);
    return rc;
}
