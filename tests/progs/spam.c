/* spam.c: prints many lines of varied length fast through stdio (so writes split lines at
 * buffer boundaries), for the launcher's output-tagging test. Usage: spam LINES MAXLEN [LONG]
 *
 * Each line is "S <rank> <i> <len> <len letters> E" (every 7th on stderr); with LONG, a last
 * line on stdout of "L<rank>:" and LONG 'x' characters, longer than the launcher's buffer.
 * tests/t_launch.sh checks every line arrives intact under its own rank's tag.
 */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    const char *r = getenv("BATON_RANK");
    int rank = r ? atoi(r) : 0;
    int lines = argc > 1 ? atoi(argv[1]) : 1000, maxlen = argc > 2 ? atoi(argv[2]) : 3000;
    long longlen = argc > 3 ? atol(argv[3]) : 0;
    setvbuf(stderr, NULL, _IOFBF, 1000); /* split lines at odd places, few syscalls */
    unsigned seed = 2654435761u * (unsigned)(rank + 1);
    for (int i = 0; i < lines; i++) {
        seed = seed * 1103515245u + 12345u;
        int len = 1 + (int)((seed >> 8) % (unsigned)maxlen);
        FILE *f = i % 7 == 3 ? stderr : stdout;
        fprintf(f, "S %d %d %d ", rank, i, len);
        for (int j = 0; j < len; j++)
            fputc('a' + (i + j) % 26, f);
        fputs(" E\n", f);
    }
    if (longlen > 0) {
        printf("L%d:", rank);
        for (long j = 0; j < longlen; j++)
            putchar('x');
        putchar('\n');
    }
    return 0;
}
