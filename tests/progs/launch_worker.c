/* launch_worker.c: a worker for the launcher tests (tests/t_launch*.sh); does what its flags
 * say, as rank BATON_RANK:
 *
 *   --pidfile DIR        write DIR/pid.<rank> (the pid, written atomically) first
 *   --term-mark DIR      on SIGTERM, create DIR/term.<rank>, then die by SIGTERM
 *   --ignore-term        ignore SIGTERM
 *   --env                print the env contract on one line: "ENV RANK=.. WORLD_SIZE=.. ..."
 *   --rank R             the rank that acts (default: none); --node N: every rank of node N
 *   --code C             ... exits with C after --delay MS (default 300)
 *   --signal S           ... raises signal S after --delay MS
 *   --fail-until N       rank 0 exits 7 while BATON_RESTART_COUNT < N
 *   --record MSG         ... first writes MSG to its error file (bt_error_record)
 *   --say MSG            ... writes MSG and a second line to stderr before it exits
 *   --also R:CODE:MS     rank R (too) exits with CODE after MS milliseconds
 *   --sleep SEC          the others (and the acting rank when it survives) sleep SEC, exit 0
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "baton.h"

static const char *term_dir;
static int my_rank;

static void on_term(int sig)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/term.%d", term_dir, my_rank);
    FILE *f = fopen(path, "w"); /* not async-signal-safe, but the process dies right after */
    if (f)
        fclose(f);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static int env_int(const char *name, int deflt)
{
    const char *v = getenv(name);
    return v && *v ? atoi(v) : deflt;
}

static void write_pid(const char *dir, int rank)
{
    char tmp[512], path[512];
    snprintf(tmp, sizeof(tmp), "%s/.pid.%d.tmp", dir, rank);
    snprintf(path, sizeof(path), "%s/pid.%d", dir, rank);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fprintf(f, "%d\n", (int)getpid());
    fclose(f);
    rename(tmp, path);
}

static void print_env(void)
{
    static const char *names[] = {
        "BATON_RANK",      "BATON_WORLD_SIZE", "BATON_LOCAL_RANK",    "BATON_LOCAL_WORLD_SIZE",
        "BATON_NODE_RANK", "BATON_NNODES",     "BATON_ROLE",          "BATON_RDZV",
        "BATON_JOB_ID",    "BATON_TOKEN",      "BATON_RESTART_COUNT", "RANK",
        "WORLD_SIZE",      "LOCAL_RANK",       "LOCAL_WORLD_SIZE",    "GROUP_RANK",
        "MASTER_ADDR",     "MASTER_PORT"};
    printf("ENV");
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *v = getenv(names[i]);
        printf(" %s=%s", names[i], v ? v : "(unset)");
    }
    printf("\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    const char *pidfile = NULL, *record = NULL, *say = NULL;
    int also_rank = -1, also_code = 0, also_ms = 0;
    int act_rank = -1, act_node = -1, code = -1, sig = 0, fail_until = 0, env = 0;
    double delay = 0.3, sleep_for = 0;
    my_rank = env_int("BATON_RANK", 0);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--env")) {
            env = 1;
            continue;
        }
        if (!strcmp(a, "--ignore-term")) {
            signal(SIGTERM, SIG_IGN);
            continue;
        }
        i++;
        if (!strcmp(a, "--pidfile"))
            pidfile = v;
        else if (!strcmp(a, "--term-mark"))
            term_dir = v;
        else if (!strcmp(a, "--rank"))
            act_rank = atoi(v);
        else if (!strcmp(a, "--node"))
            act_node = atoi(v);
        else if (!strcmp(a, "--code"))
            code = atoi(v);
        else if (!strcmp(a, "--signal"))
            sig = atoi(v);
        else if (!strcmp(a, "--delay"))
            delay = atof(v) / 1000.0;
        else if (!strcmp(a, "--fail-until"))
            fail_until = atoi(v);
        else if (!strcmp(a, "--record"))
            record = v;
        else if (!strcmp(a, "--say"))
            say = v;
        else if (!strcmp(a, "--also"))
            sscanf(v, "%d:%d:%d", &also_rank, &also_code, &also_ms);
        else if (!strcmp(a, "--sleep"))
            sleep_for = atof(v);
        else {
            fprintf(stderr, "launch_worker: unknown flag %s\n", a);
            return 2;
        }
    }
    if (term_dir)
        signal(SIGTERM, on_term);
    if (pidfile)
        write_pid(pidfile, my_rank);
    if (env)
        print_env();
    int restart = env_int("BATON_RESTART_COUNT", 0);
    if (fail_until && my_rank == 0 && restart < fail_until) {
        sleep_s(delay);
        fprintf(stderr, "failing on purpose in restart %d\n", restart);
        return 7;
    }
    if (fail_until)
        printf("restart %d ok\n", restart);
    int acts = my_rank == act_rank || (act_node >= 0 && env_int("BATON_NODE_RANK", 0) == act_node);
    if (my_rank == also_rank) {
        sleep_s(also_ms / 1000.0);
        return also_code;
    }
    if (acts && record && bt_error_record("%s", record) != BT_OK)
        fprintf(stderr, "launch_worker: bt_error_record failed\n");
    if (acts && (code >= 0 || sig)) {
        sleep_s(delay);
        if (say) {
            fprintf(stderr, "step 12: %s\nlaunch_worker: giving up\n", say);
            fflush(stderr);
        }
        if (sig) {
            signal(sig, SIG_DFL); /* a sanitizer's own SIGSEGV handler would exit 1 */
            raise(sig);
        }
        if (code >= 0)
            return code;
    }
    sleep_s(sleep_for);
    return 0;
}
