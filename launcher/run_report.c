/* run_report.c: a worker's end in words: exit code or signal name, and a hint where the cause
 * is usually the same (SIGKILL: the OOM killer; SIGSEGV: a crash; 127: not found). */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "launcher/run.h"

static const struct {
    int sig;
    const char *name;
} sig_names[] = {
    {SIGHUP, "SIGHUP"},   {SIGINT, "SIGINT"},   {SIGQUIT, "SIGQUIT"}, {SIGILL, "SIGILL"},
    {SIGTRAP, "SIGTRAP"}, {SIGABRT, "SIGABRT"}, {SIGBUS, "SIGBUS"},   {SIGFPE, "SIGFPE"},
    {SIGKILL, "SIGKILL"}, {SIGUSR1, "SIGUSR1"}, {SIGSEGV, "SIGSEGV"}, {SIGUSR2, "SIGUSR2"},
    {SIGPIPE, "SIGPIPE"}, {SIGALRM, "SIGALRM"}, {SIGTERM, "SIGTERM"}, {SIGXCPU, "SIGXCPU"},
    {SIGXFSZ, "SIGXFSZ"}, {SIGSYS, "SIGSYS"},
};

const char *bt__signal_name(int sig)
{
    static __thread char buf[24];
    for (size_t i = 0; i < sizeof(sig_names) / sizeof(sig_names[0]); i++)
        if (sig_names[i].sig == sig)
            return sig_names[i].name;
    snprintf(buf, sizeof(buf), "signal %d", sig);
    return buf;
}

int bt__run_exit_status(int wstatus)
{
    if (WIFEXITED(wstatus))
        return WEXITSTATUS(wstatus);
    if (WIFSIGNALED(wstatus))
        return 128 + WTERMSIG(wstatus);
    return BT_RUN_EXIT_LAUNCHER;
}

static const char *signal_hint(int sig)
{
    switch (sig) {
    case SIGKILL: return "possibly killed for memory (OOM); check dmesg or kubectl describe pod";
    case SIGSEGV:
    case SIGBUS:
    case SIGILL:
    case SIGFPE:
        return "the program crashed; for a backtrace run it with `ulimit -c unlimited` and "
               "open the core in gdb, or rebuild with -fsanitize=address";
    case SIGABRT: return "abort() or a failed assert; its message is in the rank's output above";
    case SIGTERM:
    case SIGINT:
        return "something outside baton stopped it (the kubelet on pod deletion, a job "
               "scheduler, a person)";
    case SIGXCPU: return "CPU time limit reached (ulimit -t)";
    default: return NULL;
    }
}

static const char *exit_hint(int code)
{
    switch (code) {
    case 127: return "command not found (by the program or a script it runs); check PATH";
    case 126: return "permission denied or not executable";
    default: return NULL;
    }
}

void bt__run_describe(const struct bt__run *r, const struct bt__worker *w, char *out, size_t n)
{
    int st = w->status, len;
    const char *hint;
    if (w->ps_index >= 0)
        len = snprintf(out, n, "ps server %d (node %d, host %s, pid %d) ", w->ps_index,
                       r->spec.node_rank, r->host, (int)w->pid);
    else
        len = snprintf(out, n, "rank %d (node %d, host %s, pid %d) ", w->rank, r->spec.node_rank,
                       r->host, (int)w->pid);
    if (len < 0 || (size_t)len >= n)
        return;
    if (WIFSIGNALED(st)) {
        hint = signal_hint(WTERMSIG(st));
        len += snprintf(out + len, n - len, "was killed by %s%s", bt__signal_name(WTERMSIG(st)),
                        WCOREDUMP(st) ? " (core dumped)" : "");
    } else if (WEXITSTATUS(st) == 127 && w->loader_err[0]) {
        snprintf(out + len, n - len,
                 "could not start: the dynamic loader said \"%s\" (exit code "
                 "127); hint: install that library or add its folder to LD_LIBRARY_PATH "
                 "(`ldd PROGRAM` lists what is missing)",
                 w->loader_err);
        return;
    } else {
        char msg[256];
        hint = exit_hint(WEXITSTATUS(st));
        len += snprintf(out + len, n - len, "exited with code %d", WEXITSTATUS(st));
        bt__run_torch_error_msg(r, w, msg, sizeof(msg)); /* a @record-decorated program's */
        if (msg[0] && len > 0 && (size_t)len < n)
            len += snprintf(out + len, n - len, " (%s)", msg);
    }
    if (len > 0 && (size_t)len < n && hint)
        snprintf(out + len, n - len, "; hint: %s", hint);
    else if (len > 0 && (size_t)len < n && r->o.tag_output)
        snprintf(out + len, n - len, "; its output is above, tagged %.*s", (int)strlen(w->tag) - 1,
                 w->tag);
}
