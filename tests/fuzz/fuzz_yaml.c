/* fuzz_yaml.c: the YAML reader (k8s/ytree.c) and the Kubernetes job parser (k8s/job.c and
 * what it calls: replica specs, runPolicy, TrainJob) on the input as a job file.
 *
 * The bytes are loaded as a YAML stream (up to 8 documents) and emitted again, then parsed
 * as a job (PyTorchJob, TFJob, MPIJob, JAXJob, Indexed Job, TrainJob); a job that parses is
 * rendered and its notes written, all to /dev/null. The first byte picks the gang scheduler
 * option (none, volcano, scheduler-plugins).
 */
#include <string.h>

#include "fuzz_util.h"
#include "k8s/k8s.h"
#include "k8s/ytree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *null;
    static const char *const gangs[] = {NULL, "volcano", "scheduler-plugins"};
    if (!null) {
        fz_quiet();
        null = fopen("/dev/null", "w");
    }
    if (size < 1)
        return 0;
    const char *buf = (const char *)data + 1;
    size_t len = size - 1;
    struct bt__yn *docs[8];
    size_t n = 0;
    struct bt__err err = {0};
    if (bt__yn_load(buf, len, "fuzz.yaml", docs, 8, &n, &err) == BT_OK) {
        (void)bt__yn_emit(null, docs, n, &err);
        for (size_t i = 0; i < n; i++)
            bt__yn_free(docs[i]);
    }
    struct bt__k8s_opts opts = {.gang_scheduler = gangs[data[0] % 3]};
    struct bt__k8s_job job;
    memset(&err, 0, sizeof(err));
    if (bt__k8s_job_parse(buf, len, "fuzz.yaml", &opts, &job, &err) == BT_OK) {
        (void)bt__k8s_job_emit(&job, null, &err);
        bt__k8s_job_notes(&job, &opts, null, "N: ");
    } else if (!err.msg[0]) {
        abort(); /* every refusal says why */
    }
    bt__k8s_job_free(&job);
    return 0;
}
