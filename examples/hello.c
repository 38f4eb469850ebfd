/* hello.c: the smallest baton program: join the job, wait for everyone, say hello.
 *
 *   baton run -n 2 -- build/examples/hello
 */
#include <stdio.h>

#include "baton.h"

int main(void)
{
    bt_comm *comm;
    int rank, size, rc = bt_init(&comm);
    if (rc != BT_OK) {
        fprintf(stderr, "hello: bt_init: %s: %s\n", bt_strerror(rc), bt_last_error(NULL));
        return 1;
    }
    bt_comm_rank(comm, &rank);
    bt_comm_size(comm, &size);
    rc = bt_barrier(comm);
    if (rc != BT_OK) {
        fprintf(stderr, "hello: bt_barrier: %s: %s\n", bt_strerror(rc), bt_last_error(comm));
        bt_finalize(comm);
        return 1;
    }
    printf("hello from rank %d of %d\n", rank, size);
    return bt_finalize(comm) == BT_OK ? 0 : 1;
}
