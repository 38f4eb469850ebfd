/* fuzz_xs.c: the reader of the records each node publishes in the store for node 0's job-wide
 * straggler and call-shape looks (launcher/run_flight.c, l/<generation>/xs/<node>): bytes
 * another launcher sent, so any value must parse into whole sections or be refused, never read
 * past its end, leak or leave a section that the looks would trip on (unsorted calls, a name
 * without its NUL, more records than a node publishes).
 */
#include "launcher/run.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (bt__run_flight_xs_check(data, size) < 0)
        abort();
    return 0;
}
