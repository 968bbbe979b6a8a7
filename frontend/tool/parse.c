/* The flag parsers the CLI and the benchmarks share. */
#include <errno.h>
#include <stdlib.h>

#include "kiln-tool.h"

int kiln_cli_parse_int(const char *s, long long lo, long long hi, long long *out) {
    char *e;
    errno = 0;
    long long v = strtoll(s, &e, 10);
    if (e == s || *e || errno || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int kiln_cli_parse_input(const char *s, int *h, int *w, int *c) {
    int v[3] = {0, 0, 0}, n = 0;
    const char *p = s;
    while (*p && n < 3) {
        char *e;
        long x = strtol(p, &e, 10);
        if (e == p || x < 1 || x > 65536) return -1;
        v[n++] = (int)x;
        p = e;
        if (*p == 'x')
            p++;
        else if (*p)
            return -1;
    }
    if (*p || n < 2) return -1;
    *h = v[0], *w = v[1], *c = v[2];
    return 0;
}
