/* fuzz_spec.c: the cluster-spec sources of launcher/spec*.c (TF_CONFIG, the PyTorch, MPI,
 * Slurm, JAX, Trainer v2, Indexed Job and BATON_* env) on env values from the input.
 *
 * The input is the environment, one NAME=VALUE per line (a line without '=' is skipped), seen
 * through the getenv function bt__spec_detect takes, so the process env is never touched. The
 * first byte picks the source (auto-detect, or --spec with one source forced); a detected
 * spec is printed as text and JSON to /dev/null, which reads every field.
 */
#include <string.h>

#include "fuzz_util.h"
#include "launcher/spec.h"

#define FZ_MAX_VARS 64

struct fz_env {
    const char *name[FZ_MAX_VARS], *value[FZ_MAX_VARS];
    int n;
};

static const char *fz_getenv(const char *name, void *arg)
{
    const struct fz_env *e = arg;
    for (int i = e->n - 1; i >= 0; i--) /* the last one wins, as in a pod's env */
        if (!strcmp(e->name[i], name))
            return e->value[i];
    return NULL;
}

/* Splits text (NUL-terminated, modified) into e. */
static void fz_split(char *text, struct fz_env *e)
{
    for (char *line = text, *next; line && e->n < FZ_MAX_VARS; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char *eq = strchr(line, '=');
        if (!eq || eq == line)
            continue;
        *eq = '\0';
        e->name[e->n] = line;
        e->value[e->n++] = eq + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *null;
    if (!null) {
        fz_quiet();
        null = fopen("/dev/null", "w");
    }
    if (size < 1 || size > 256 * 1024)
        return 0;
    char *text = malloc(size);
    if (!text)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    struct fz_env env = {.n = 0};
    fz_split(text, &env);
    struct bt__spec_flags flags;
    bt__spec_flags_init(&flags);
    int nsrc = BT_SPEC_TRAINER_V2 + 1; /* auto, then each source but flags */
    flags.source = (enum bt__spec_source)(data[0] % nsrc);
    struct bt__spec spec;
    struct bt__err err = {0};
    if (bt__spec_detect(&flags, fz_getenv, &env, &spec, &err) == BT_OK) {
        bt__spec_print(&spec, null);
        bt__spec_print_json(&spec, null);
    } else if (!err.msg[0]) {
        abort(); /* every refusal says why */
    }
    free(text);
    return 0;
}
