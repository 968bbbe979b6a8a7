/* Attribute values of the model format (frontend/MODEL-FORMAT.md): integers, sizes, floats
   and fractions, lists, booleans and words, checked against each attribute's spec and range.
   Shared by the text parser, the programmatic builders and the lint. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/backend-impl.h"
#include "model-impl.h"

/* [s, end) without surrounding blanks into buf (64 bytes); its length, or 0 when empty or
   too long for a number. */
static size_t trimmed(const char *s, const char *end, char buf[64]) {
    size_t n = (size_t)(end - s);
    while (n && isspace((unsigned char)*s)) s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    if (!n || n >= 64) return 0;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return n;
}

static int parse_int(const char *s, const char *end, int64_t *out) {
    char buf[64];
    size_t n = trimmed(s, end, buf);
    if (!n) return -1;
    for (size_t i = buf[0] == '-' ? 1 : 0; i < n; i++)
        if (!isdigit((unsigned char)buf[i])) return -1;
    errno = 0;
    long long v = strtoll(buf, NULL, 10);
    if (errno) return -1;
    *out = v;
    return 0;
}

static int parse_float(const char *s, const char *end, double *out) {
    char buf[64];
    if (!trimmed(s, end, buf)) return -1;
    char *e;
    double num = strtod(buf, &e);
    if (e == buf) return -1;
    if (*e == '/') { /* a fraction such as 1/255 */
        char *d = e + 1;
        double den = strtod(d, &e);
        if (e == d || den == 0) return -1;
        num /= den;
    }
    if (*e || !isfinite(num)) return -1;
    *out = num;
    return 0;
}

/* Up to max numbers separated by sep ('x' or ','). */
static int split_nums(const char *s, char sep, int is_int, int max, km_attr_val *v) {
    v->n = 0;
    const char *p = s;
    for (;;) {
        const char *q = strchr(p, sep);
        const char *end = q ? q : p + strlen(p);
        if (v->n == max) return -1;
        int bad = is_int ? parse_int(p, end, &v->i[v->n]) : parse_float(p, end, &v->f[v->n]);
        if (bad) return -1;
        /* Saturated: converting a double beyond int64's range is undefined. */
        if (!is_int)
            v->i[v->n] = v->f[v->n] >= 0x1p63    ? INT64_MAX
                         : v->f[v->n] <= -0x1p63 ? INT64_MIN
                                                 : (int64_t)v->f[v->n];
        v->n++;
        if (!q) return 0;
        p = q + 1;
    }
}

static int check_range(const km_attr_spec *s, const km_attr_val *v, int is_int, char *why,
                       size_t n) {
    for (int k = 0; k < v->n; k++) {
        double x = is_int ? (double)v->i[k] : v->f[k];
        if (x < s->min || x > s->max) {
            snprintf(why, n, "%g is out of range [%g, %g]", x, s->min, s->max);
            return -1;
        }
    }
    return 0;
}

int km_parse_value(const km_attr_spec *s, const char *text, km_attr_val *v, char *why, size_t n) {
    const char *t = text;
    while (isspace((unsigned char)*t)) t++;
    v->n = 0;
    v->e = 0;
    switch (s->kind) {
    case KM_INT:
        if (split_nums(t, 'x', 1, 1, v)) {
            snprintf(why, n, "expected an integer");
            return -1;
        }
        return check_range(s, v, 1, why, n);
    case KM_PAIR:
        if (split_nums(t, 'x', 1, 2, v)) {
            snprintf(why, n, "expected a size such as 3 or 3x5 (height x width)");
            return -1;
        }
        if (v->n == 1) v->i[v->n++] = v->i[0];
        return check_range(s, v, 1, why, n);
    case KM_DIMS:
        if (split_nums(t, 'x', 1, 3, v)) {
            snprintf(why, n, "expected sizes such as 28x28x1 or 512");
            return -1;
        }
        return check_range(s, v, 1, why, n);
    case KM_PAD:
        if (!strcmp(t, "valid")) {
            v->n = 4;
            v->i[0] = v->i[1] = v->i[2] = v->i[3] = 0;
            return 0;
        }
        if (!strcmp(t, "same")) {
            v->e = 1;
            return 0;
        }
        if (split_nums(t, 'x', 1, 4, v) || v->n == 3) {
            snprintf(why, n, "expected valid, same, P, PHxPW or TxBxLxR");
            return -1;
        }
        if (check_range(s, v, 1, why, n)) return -1;
        if (v->n == 1) v->i[1] = v->i[0];
        if (v->n <= 2) { /* h x w -> top, bottom, left, right */
            int64_t ph = v->i[0], pw = v->i[1];
            v->i[0] = v->i[1] = ph;
            v->i[2] = v->i[3] = pw;
        }
        v->n = 4;
        return 0;
    case KM_FLOAT:
        if (split_nums(t, '\n', 0, 1, v)) {
            snprintf(why, n, "expected a number (0.5, 1e-4, 1/255)");
            return -1;
        }
        return check_range(s, v, 0, why, n);
    case KM_FLOATS: {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", t);
        char *b = buf;
        size_t l = strlen(b);
        if (b[0] == '[') {
            if (l < 2 || b[l - 1] != ']') {
                snprintf(why, n, "unclosed '['");
                return -1;
            }
            b[l - 1] = '\0';
            b++;
        }
        if (split_nums(b, ',', 0, KM_MAX_VALS, v)) {
            snprintf(why, n, "expected a number or a list such as [0.5, 0.25] (at most %d)",
                     KM_MAX_VALS);
            return -1;
        }
        return check_range(s, v, 0, why, n);
    }
    case KM_BOOL:
        if (!strcmp(t, "true") || !strcmp(t, "yes") || !strcmp(t, "1"))
            v->e = 1;
        else if (!strcmp(t, "false") || !strcmp(t, "no") || !strcmp(t, "0"))
            v->e = 0;
        else {
            snprintf(why, n, "expected true or false");
            return -1;
        }
        return 0;
    case KM_ENUM: {
        int idx = 0;
        size_t tl = strlen(t);
        for (const char *c = s->choices; *c; idx++) {
            const char *bar = strchr(c, '|');
            size_t cl = bar ? (size_t)(bar - c) : strlen(c);
            if (cl == tl && !strncmp(c, t, cl)) {
                v->e = idx;
                return 0;
            }
            if (!bar) break;
            c = bar + 1;
        }
        snprintf(why, n, "expected one of %s", s->choices);
        return -1;
    }
    }
    snprintf(why, n, "internal: unknown attribute kind");
    return -1;
}
