/* cmds.h: the `baton` subcommands. Each takes the arguments after its name (argv[0] is the
 * subcommand's name) and returns the process exit status: 0, 2 for a usage error (after one
 * line on stderr saying what was wrong), or what the command's contract says. */
#ifndef BT_LAUNCHER_CMDS_H
#define BT_LAUNCHER_CMDS_H

int bt__cmd_run(int argc, char **argv);  /* launcher/run.c: start, supervise, report */
int bt__cmd_spec(int argc, char **argv); /* launcher/spec_cmd.c: print the derived spec */
int bt__cmd_topo(int argc, char **argv); /* launcher/topo_cmd.c: topology and binding plan */

/* Usage text of a subcommand, for `baton help CMD` (NULL when unknown). */
const char *bt__cmd_run_usage(void);
const char *bt__cmd_spec_usage(void);
const char *bt__cmd_topo_usage(void);
int bt__cmd_k8s(int argc, char **argv); /* k8s/cmd.c: render/apply/delete a Kubeflow job */
const char *bt__cmd_k8s_usage(void);

int bt__cmd_trace(int argc, char **argv); /* launcher/trace.c: analyse flight-recorder dumps */
const char *bt__cmd_trace_usage(void);

int bt__cmd_tune(int argc, char **argv); /* launcher/tune_cmd.c: measure the cost model */
const char *bt__cmd_tune_usage(void);

int bt__cmd_ps(int argc, char **argv); /* launcher/ps_cmd.c: run a parameter server */
const char *bt__cmd_ps_usage(void);
/* The parameter-server process (`baton ps`, `baton run` on a TF ps task): keeps large freed
 * buffers in the heap, stops on SIGTERM/SIGINT (checkpointing first), creates and runs the
 * server until every worker closed or the chief said done, destroys it. Returns an exit
 * status: 0, or 1 with the reason logged at WARN. */
struct bt__ps_server_cfg;
int bt__ps_process_main(const struct bt__ps_server_cfg *cfg);

#endif
