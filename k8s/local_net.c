/* local_net.c: the network of `baton k8s local --netns`: one namespace per pod, as on a
 * cluster where every pod has its own address and finds the others by name.
 *
 * Layout, for the run with pid P and pods 0..n-1 (in the job's order):
 *   namespace bt-P-hub holds the bridge br-btP and the hub ends v0..v(n-1) of the veths;
 *   namespace bt-P-i holds eth0 (the other end), 198.51.100.(i+2)/24, and lo.
 * The bridge lives in its own namespace so the host's interfaces, routes and firewall are
 * never touched, and removing the namespaces removes every veth and the bridge with them.
 *
 * Names: /etc/netns/bt-P-i/hosts, which `ip netns exec` bind-mounts over /etc/hosts for the
 * pod, starts with localhost and the pod's own name (what kubelet writes). When a pod has
 * started, bt__local_net_publish appends "ADDR <pod> <pod>.<ns>.svc <pod>.<ns>.svc.cluster.local"
 * to every pod's file, so its name resolves from then on, as a headless Service's does once its
 * pod is up. The files are appended to in place with one write(): the bind mount holds the
 * inode, so a rename would go unseen, and a reader sees the old end or the whole new line
 * (the file size moves after the data is in place). /etc/netns/bt-P-i/resolv.conf points at
 * 127.0.0.1 with one attempt, so a name not yet published fails at once instead of waiting
 * for an unreachable DNS server.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "k8s/local.h"

/* Runs `ip WORDS...` (fmt expands to blank-separated words); 0 when it exited 0. When loud,
 * a failure prints the command (ip prints its own reason). */
static int ip(int loud, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int ip(int loud, const char *fmt, ...)
{
    char cmd[512], *argv[24];
    int argc = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    char copy[512];
    snprintf(copy, sizeof(copy), "%s", cmd);
    argv[argc++] = "ip";
    for (char *save = NULL, *w = strtok_r(copy, " ", &save); w && argc < 23;
         w = strtok_r(NULL, " ", &save))
        argv[argc++] = w;
    argv[argc] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        if (!loud)
            dup2(null, 2);
        execvp("ip", argv);
        _exit(127);
    }
    int st = 0;
    while (pid > 0 && waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    int ok = pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (!ok && loud)
        fprintf(stderr, "baton k8s local: 'ip %s' failed%s\n", cmd,
                pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 127 ? " (is iproute2 installed?)"
                                                                   : "");
    return ok ? 0 : -1;
}

static int write_file(const char *path, int flags, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC | flags, 0644);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text)); /* one write: readers see all of it or none */
    int rc = n == (ssize_t)strlen(text) ? 0 : -1;
    return close(fd) == 0 ? rc : -1;
}

/* /etc/netns/<ns>/hosts and resolv.conf for pod p. */
static int pod_files(const struct bt__local_pod *p)
{
    char path[128], text[512];
    mkdir("/etc/netns", 0755);
    snprintf(path, sizeof(path), "/etc/netns/%s", p->ns);
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return -1;
    snprintf(path, sizeof(path), "/etc/netns/%s/resolv.conf", p->ns);
    if (write_file(path, O_CREAT | O_TRUNC,
                   "# baton k8s local: no DNS server in the pod namespaces; names are in "
                   "/etc/hosts\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n"))
        return -1;
    snprintf(path, sizeof(path), "/etc/netns/%s/hosts", p->ns);
    snprintf(text, sizeof(text),
             "# baton k8s local: a pod's names are added here once that pod has started\n"
             "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n",
             p->addr, p->k->name);
    return write_file(path, O_CREAT | O_TRUNC, text);
}

static int pod_net(struct bt__local *l, size_t i)
{
    const struct bt__local_pod *p = &l->pods[i];
    if (ip(1, "netns add %s", p->ns) ||
        ip(1, "link add v%zu netns %s type veth peer name eth0 netns %s", i, l->hub, p->ns) ||
        ip(1, "-n %s link set v%zu master %s up", l->hub, i, l->bridge) ||
        ip(1, "-n %s addr add %s/24 dev eth0", p->ns, p->addr) ||
        ip(1, "-n %s link set eth0 up", p->ns) || ip(1, "-n %s link set lo up", p->ns))
        return -1;
    if (pod_files(p)) {
        fprintf(stderr, "baton k8s local: /etc/netns/%s: %s\n", p->ns, strerror(errno));
        return -1;
    }
    return 0;
}

int bt__local_net_up(struct bt__local *l)
{
    snprintf(l->hub, sizeof(l->hub), "bt-%d-hub", (int)getpid());
    snprintf(l->bridge, sizeof(l->bridge), "br-bt%d", (int)getpid());
    l->net_ready = 1;
    if (ip(1, "netns add %s", l->hub) ||
        ip(1, "-n %s link add %s type bridge", l->hub, l->bridge) ||
        ip(1, "-n %s link set %s up", l->hub, l->bridge))
        return -1;
    for (size_t i = 0; i < l->npods && !bt__local_signal; i++)
        if (pod_net(l, i))
            return -1;
    return bt__local_signal ? -1 : 0;
}

int bt__local_net_publish(struct bt__local *l, const struct bt__local_pod *pod)
{
    char line[1024], path[128];
    char host[2 * BT_K8S_NAME_MAX]; /* <pod>, or <host>.<subdomain> for a TrainJob's pod */
    const char *n = host, *ns = l->job->ns;
    snprintf(host, sizeof(host), "%s%s%s", pod->k->name, pod->k->subdomain[0] ? "." : "",
             pod->k->subdomain);
    snprintf(line, sizeof(line), "%s\t%s %s.%s.svc %s.%s.svc.cluster.local%s%s\n", pod->addr, n, n,
             ns, n, ns, pod->k->subdomain[0] ? " " : "", pod->k->subdomain[0] ? pod->k->name : "");
    int rc = 0;
    for (size_t i = 0; i < l->npods; i++) {
        snprintf(path, sizeof(path), "/etc/netns/%s/hosts", l->pods[i].ns);
        if (write_file(path, O_APPEND, line)) {
            fprintf(stderr, "baton k8s local: %s: %s\n", path, strerror(errno));
            rc = -1;
        }
    }
    return rc;
}

/* SIGKILLs every process whose network namespace is the one bound at /run/netns/<ns>. */
static void kill_in_ns(const char *ns)
{
    char path[300];
    struct stat want, st;
    snprintf(path, sizeof(path), "/run/netns/%s", ns);
    if (stat(path, &want) != 0)
        return;
    DIR *d = opendir("/proc");
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%s/ns/net", e->d_name);
        if (stat(path, &st) == 0 && st.st_ino == want.st_ino && st.st_dev == want.st_dev)
            kill((pid_t)atoi(e->d_name), SIGKILL);
    }
    if (d)
        closedir(d);
}

void bt__local_net_down(struct bt__local *l)
{
    char path[128];
    if (!l->net_ready)
        return;
    for (size_t i = 0; i < l->npods; i++)
        kill_in_ns(l->pods[i].ns);
    while (waitpid(-1, NULL, WNOHANG) > 0) /* what was ours (we are the subreaper) */
        ;
    for (size_t i = 0; i < l->npods; i++) {
        ip(0, "netns del %s", l->pods[i].ns);
        static const char *const files[] = {"hosts", "resolv.conf"};
        for (int f = 0; f < 2; f++) {
            snprintf(path, sizeof(path), "/etc/netns/%s/%s", l->pods[i].ns, files[f]);
            unlink(path);
        }
        snprintf(path, sizeof(path), "/etc/netns/%s", l->pods[i].ns);
        rmdir(path);
    }
    ip(0, "netns del %s", l->hub); /* takes the bridge and the hub ends of the veths along */
    l->net_ready = 0;
}
