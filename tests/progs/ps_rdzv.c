/* ps_rdzv.c: a rendezvous store alone, for the parameter-server shell tests.
 * usage: ps_rdzv PORTFILE  (token from BATON_TOKEN). Writes the bound port to PORTFILE, then
 * serves until SIGTERM or SIGINT. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "rendezvous/store.h"

static struct bt__store_server *srv;

static void on_signal(int sig)
{
    (void)sig;
    bt__store_server_stop(srv);
}

int main(int argc, char **argv)
{
    struct bt__err err = {0};
    int port;
    const char *tok = getenv("BATON_TOKEN");
    if (argc != 2) {
        fprintf(stderr, "usage: ps_rdzv PORTFILE\n");
        return 2;
    }
    if (bt__store_server_create("127.0.0.1", 0, tok ? tok : "", &srv, &port, &err) != BT_OK) {
        fprintf(stderr, "ps_rdzv: %s\n", err.msg);
        return 1;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    FILE *f = fopen(argv[1], "w");
    if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0) {
        fprintf(stderr, "ps_rdzv: cannot write %s\n", argv[1]);
        return 1;
    }
    bt__store_server_run(srv);
    bt__store_server_destroy(srv);
    return 0;
}
