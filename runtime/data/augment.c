/* Augmentation: the spec parser, the geometry (one crop box + one output size), the
   antialiased separable resampler, and the pixel tokens run on the output image. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend-impl.h"
#include "data/data-impl.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KILN_X86_AVX2 1 /* an AVX2 row filter, picked at run time */
#include <immintrin.h>
#endif

typedef enum {
    T_RRC,
    T_RESIZE,
    T_SIZE,
    T_CENTER,
    T_CROP,
    T_FLIP,
    T_PADCROP,
    T_ROTATE,
    T_TRANSLATE,
    T_JITTER,
    T_ERASE,
    T_CUTOUT
} tok_kind;

typedef enum { FILL_CONSTANT, FILL_REFLECT, FILL_WRAP, FILL_NEAREST } fill_mode;

typedef struct tok {
    tok_kind k;
    int w, h;
    double a[4];
    fill_mode fill;
} tok;

struct kiln_augment {
    tok *t;
    int n;
    int out_w, out_h; /* 0 when the size depends on the image */
};

static const struct {
    const char *name;
    tok_kind k;
    int geometry;
} names[] = {{"rrc", T_RRC, 1},         {"resize", T_RESIZE, 1}, {"size", T_SIZE, 1},
             {"center", T_CENTER, 1},   {"crop", T_CROP, 1},     {"flip", T_FLIP, 0},
             {"padcrop", T_PADCROP, 0}, {"rotate", T_ROTATE, 0}, {"translate", T_TRANSLATE, 0},
             {"jitter", T_JITTER, 0},   {"erase", T_ERASE, 0},   {"cutout", T_CUTOUT, 0}};

static int parse_num(const char *s, double *v) {
    char *end;
    if (!*s) return 0;
    *v = strtod(s, &end);
    return *end == 0 && isfinite(*v);
}

static int parse_int(const char *s, int *v, int lo, int hi) {
    double d;
    if (!parse_num(s, &d) || d != floor(d) || d < lo || d > hi) return 0;
    *v = (int)d;
    return 1;
}

/* "N" or "WxH" */
static int parse_dims(const char *s, int *w, int *h) {
    const char *x = strchr(s, 'x');
    if (!x) return parse_int(s, w, 1, 16384) && (*h = *w, 1);
    char a[32];
    if ((size_t)(x - s) >= sizeof(a)) return 0;
    memcpy(a, s, (size_t)(x - s));
    a[x - s] = 0;
    return parse_int(a, w, 1, 16384) && parse_int(x + 1, h, 1, 16384);
}

static int parse_range(const char *s, double *lo, double *hi) {
    const char *d = strchr(s + 1, '-');
    if (!d) return 0;
    char a[64];
    if ((size_t)(d - s) >= sizeof(a)) return 0;
    memcpy(a, s, (size_t)(d - s));
    a[d - s] = 0;
    return parse_num(a, lo) && parse_num(d + 1, hi) && *lo > 0 && *lo <= *hi;
}

static int parse_fill(const char *s, fill_mode *f) {
    static const char *fills[] = {"constant", "reflect", "wrap", "nearest"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, fills[i])) return *f = (fill_mode)i, 1;
    return 0;
}

/* Parses one token (already split at ':' into args[0..nargs)). */
static int parse_tok(tok *t, char **args, int nargs) {
    double lo, hi;
    switch (t->k) {
    case T_RRC:
        t->a[0] = 0.08, t->a[1] = 1.0, t->a[2] = 3.0 / 4.0, t->a[3] = 4.0 / 3.0;
        if (nargs < 1 || nargs > 3 || !parse_int(args[0], &t->w, 1, 16384)) return 0;
        t->h = t->w;
        if (nargs >= 2) {
            if (!parse_range(args[1], &lo, &hi) || hi > 1) return 0;
            t->a[0] = lo, t->a[1] = hi;
        }
        if (nargs >= 3) {
            if (!parse_range(args[2], &lo, &hi)) return 0;
            t->a[2] = lo, t->a[3] = hi;
        }
        return 1;
    case T_RESIZE:
        return nargs == 1 && parse_int(args[0], &t->w, 1, 16384);
    case T_SIZE:
    case T_CENTER:
    case T_CROP:
        return nargs == 1 && parse_dims(args[0], &t->w, &t->h);
    case T_FLIP:
        if (nargs < 1 || nargs > 2) return 0;
        t->w = strchr(args[0], 'h') != NULL;
        t->h = strchr(args[0], 'v') != NULL;
        if (strspn(args[0], "hv") != strlen(args[0]) || !(t->w || t->h)) return 0;
        t->a[0] = 0.5;
        return nargs < 2 || (parse_num(args[1], &t->a[0]) && t->a[0] >= 0 && t->a[0] <= 1);
    case T_PADCROP:
    case T_CUTOUT:
        return nargs == 1 && parse_int(args[0], &t->w, 0, 16384);
    case T_ROTATE:
    case T_TRANSLATE:
        t->fill = FILL_REFLECT;
        if (nargs < 1 || nargs > 2 || !parse_num(args[0], &t->a[0]) || t->a[0] < 0 || t->a[0] > 1)
            return 0;
        return nargs < 2 || parse_fill(args[1], &t->fill);
    case T_JITTER:
        if (nargs < 1 || nargs > 3) return 0;
        for (int i = 0; i < 3; i++) {
            if (!parse_num(args[i < nargs ? i : 0], &t->a[i]) || t->a[i] < 0 || t->a[i] > 1)
                return 0;
        }
        return 1;
    case T_ERASE:
        return nargs == 1 && parse_num(args[0], &t->a[0]) && t->a[0] >= 0 && t->a[0] <= 1;
    }
    return 0;
}

kiln_status kiln_augment_parse(const char *spec, kiln_augment_t *out) {
    *out = NULL;
    kiln_augment_t a = calloc(1, sizeof(*a));
    char *copy = strdup(spec ? spec : "");
    if (!a || !copy) {
        free(a);
        free(copy);
        return kiln_error(KILN_OUT_OF_MEMORY, "augment spec");
    }
    kiln_status st = KILN_OK;
    int cap = 0, fixed = 0, seen_pixel = 0;
    double cw = 0, ch = 0;
    for (char *save = NULL, *item = strtok_r(copy, ",", &save); item;
         item = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*item)) item++;
        size_t il = strlen(item);
        while (il && isspace((unsigned char)item[il - 1])) item[--il] = 0;
        if (!*item) continue;
        char token[256];
        snprintf(token, sizeof(token), "%s", item);
        char *args[8];
        int nargs = 0;
        char *colon = strchr(item, ':');
        if (colon) *colon = 0;
        for (char *p = colon ? colon + 1 : NULL; p && nargs < 8;) {
            args[nargs++] = p;
            char *c = strchr(p, ':');
            if (c) *c = 0;
            p = c ? c + 1 : NULL;
        }
        int found = -1;
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            if (!strcmp(item, names[i].name)) found = (int)i;
        if (found < 0) {
            st = kiln_error(KILN_INVALID_ARGUMENT,
                            "augment spec: unknown token '%s' (known: rrc, resize, size, center, "
                            "crop, flip, padcrop, rotate, translate, jitter, erase, cutout)",
                            token);
            break;
        }
        if (a->n == cap) {
            cap = cap ? cap * 2 : 8;
            tok *t = realloc(a->t, (size_t)cap * sizeof(*t));
            if (!t) {
                st = kiln_error(KILN_OUT_OF_MEMORY, "augment spec");
                break;
            }
            a->t = t;
        }
        tok *t = &a->t[a->n];
        memset(t, 0, sizeof(*t));
        t->k = names[found].k;
        if (!parse_tok(t, args, nargs)) {
            st = kiln_error(KILN_INVALID_ARGUMENT, "augment spec: bad arguments in '%s'", token);
            break;
        }
        if (names[found].geometry && seen_pixel) {
            st = kiln_error(KILN_INVALID_ARGUMENT,
                            "augment spec: geometry token '%s' after a pixel token (geometry "
                            "comes first)",
                            token);
            break;
        }
        if (t->k == T_RRC && a->n > 0) {
            st = kiln_error(KILN_INVALID_ARGUMENT, "augment spec: '%s' must be the first token",
                            token);
            break;
        }
        seen_pixel |= !names[found].geometry;
        /* Track whether the output size is known without the image. */
        switch (t->k) {
        case T_RRC:
        case T_SIZE:
        case T_CENTER:
        case T_CROP:
            fixed = 1, cw = t->w, ch = t->h;
            break;
        case T_RESIZE:
            if (fixed) {
                double s = t->w / (cw < ch ? cw : ch);
                double nw = cw <= ch ? t->w : floor(cw * s), nh = cw <= ch ? floor(ch * s) : t->w;
                cw = nw, ch = nh;
            }
            break;
        default:
            break;
        }
        a->n++;
    }
    free(copy);
    if (st != KILN_OK) {
        kiln_augment_free(a);
        return st;
    }
    a->out_w = fixed ? (int)cw : 0;
    a->out_h = fixed ? (int)ch : 0;
    *out = a;
    return KILN_OK;
}

void kiln_augment_free(kiln_augment_t a) {
    if (!a) return;
    free(a->t);
    free(a);
}

void kiln_augment_output_size(kiln_augment_t a, int *width, int *height) {
    *width = a->out_w;
    *height = a->out_h;
}

/* ---- geometry ---- */

static void rrc_pick(const tok *t, double W, double H, kiln_rng *r, double *x, double *y, double *w,
                     double *h) {
    double area = W * H;
    double lr0 = log(t->a[2]), lr1 = log(t->a[3]);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * kiln_rng_range(r, t->a[0], t->a[1]);
        double ar = exp(kiln_rng_range(r, lr0, lr1));
        double cw = round(sqrt(target * ar)), chh = round(sqrt(target / ar));
        if (cw > 0 && cw <= W && chh > 0 && chh <= H) {
            *y = (double)kiln_rng_below(r, (uint64_t)(H - chh) + 1);
            *x = (double)kiln_rng_below(r, (uint64_t)(W - cw) + 1);
            *w = cw, *h = chh;
            return;
        }
    }
    double in_ratio = W / H, cw = W, chh = H;
    if (in_ratio < t->a[2])
        cw = W, chh = round(W / t->a[2]);
    else if (in_ratio > t->a[3])
        chh = H, cw = round(H * t->a[3]);
    *w = cw, *h = chh;
    *x = round((W - cw) / 2), *y = round((H - chh) / 2);
}

void kiln_augment_geometry(kiln_augment_t a, int src_w, int src_h, kiln_rng *r, kiln_geometry *g) {
    double bx = 0, by = 0, bw = src_w, bh = src_h; /* box in source coordinates */
    double cw = src_w, ch = src_h;                 /* current output size */
    for (int i = 0; i < a->n; i++) {
        const tok *t = &a->t[i];
        double sx = 0, sy = 0, sw = cw, sh = ch, nw = cw, nh = ch; /* sub-box of current */
        switch (t->k) {
        case T_RRC:
            rrc_pick(t, cw, ch, r, &sx, &sy, &sw, &sh);
            nw = t->w, nh = t->h;
            break;
        case T_RESIZE:
            if (cw <= ch)
                nw = t->w, nh = floor(t->w * ch / cw);
            else
                nh = t->w, nw = floor(t->w * cw / ch);
            if (nw < 1) nw = 1;
            if (nh < 1) nh = 1;
            break;
        case T_SIZE:
            nw = t->w, nh = t->h;
            break;
        case T_CENTER:
            sw = nw = t->w, sh = nh = t->h;
            sx = round((cw - t->w) / 2), sy = round((ch - t->h) / 2);
            break;
        case T_CROP:
            sw = nw = t->w, sh = nh = t->h;
            sx = cw > t->w ? (double)kiln_rng_below(r, (uint64_t)(cw - t->w) + 1)
                           : round((cw - t->w) / 2);
            sy = ch > t->h ? (double)kiln_rng_below(r, (uint64_t)(ch - t->h) + 1)
                           : round((ch - t->h) / 2);
            break;
        default:
            continue;
        }
        double fx = bw / cw, fy = bh / ch;
        bx += sx * fx, by += sy * fy, bw = sw * fx, bh = sh * fy;
        cw = nw, ch = nh;
    }
    g->x = bx, g->y = by, g->w = bw, g->h = bh;
    g->out_w = (int)cw, g->out_h = (int)ch;
}

/* ---- resampling ---- */

#define WBITS 14

typedef struct coeffs {
    int *start, *count;
    int16_t *w;
    int taps;
} coeffs;

/* PIL-style triangle filter coefficients for n outputs over [b0, b0 + bl) of an axis of
   length len; indexes are clamped to the edge. */
static int make_coeffs(coeffs *c, int n, int len, double b0, double bl) {
    double f = bl / n, support = f > 1 ? f : 1, inv = 1 / support;
    c->taps = (int)ceil(support) * 2 + 2;
    c->start = malloc((size_t)n * sizeof(int));
    c->count = malloc((size_t)n * sizeof(int));
    c->w = calloc((size_t)n * (size_t)c->taps, sizeof(int16_t));
    double *tmp = malloc((size_t)c->taps * sizeof(double));
    if (!c->start || !c->count || !c->w || !tmp) {
        free(tmp);
        return 0;
    }
    for (int i = 0; i < n; i++) {
        double center = b0 + (i + 0.5) * f;
        int lo = (int)floor(center - support), hi = (int)ceil(center + support);
        if (hi - lo > c->taps) hi = lo + c->taps;
        /* Clamp into [0, len): accumulate weights of taps outside onto the edge pixels. */
        int clo = lo < 0 ? 0 : lo > len - 1 ? len - 1 : lo;
        int chi = hi - 1 < 0 ? 0 : hi - 1 > len - 1 ? len - 1 : hi - 1;
        int m = chi - clo + 1;
        for (int k = 0; k < m; k++) tmp[k] = 0;
        double total = 0;
        for (int j = lo; j < hi; j++) {
            double d = fabs((j + 0.5 - center) * inv);
            double wt = d < 1 ? 1 - d : 0;
            int jj = j < 0 ? 0 : j > len - 1 ? len - 1 : j;
            tmp[jj - clo] += wt;
            total += wt;
        }
        if (total <= 0) { /* box entirely outside: nearest edge pixel */
            int jj = (int)floor(center);
            jj = jj < 0 ? 0 : jj > len - 1 ? len - 1 : jj;
            clo = jj, m = 1, tmp[0] = 1, total = 1;
        }
        /* Integer weights that sum exactly to 1 << WBITS. */
        int sum = 0, big = 0;
        double scale = (1 << WBITS) / total;
        for (int k = 0; k < m; k++) {
            int v = (int)(tmp[k] * scale + 0.5); /* weights are >= 0: rounds half up */
            c->w[(size_t)i * c->taps + k] = (int16_t)v;
            sum += v;
            if (tmp[k] > tmp[big]) big = k;
        }
        int16_t *w = c->w + (size_t)i * c->taps;
        w[big] = (int16_t)(w[big] + ((1 << WBITS) - sum));
        /* Zero taps at the ends cost a full pass each: drop them. */
        int k0 = 0;
        while (m > 1 && w[m - 1] == 0) m--;
        while (k0 < m - 1 && w[k0] == 0) k0++;
        if (k0) {
            memmove(w, w + k0, (size_t)(m - k0) * sizeof(*w));
            memset(w + m - k0, 0, (size_t)k0 * sizeof(*w));
        }
        c->start[i] = clo + k0;
        c->count[i] = m - k0;
    }
    free(tmp);
    return 1;
}

static void free_coeffs(coeffs *c) {
    free(c->start);
    free(c->count);
    free(c->w);
}

#define WHALF (1 << (WBITS - 1))

/* Set by tests: 0 runs the plain C loops even where the CPU has AVX2. */
static int use_simd = 1;
void kiln_resample_set_simd(int on) {
    use_simd = on;
}

static int have_avx2(void) {
#ifdef KILN_X86_AVX2
    return use_simd && __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

#ifdef KILN_X86_AVX2
/* vrow's sums (below) with pmaddwd on pairs of rows interleaved as 16-bit words, 32 bytes a
   step: vrow's C loops compile to widening multiplies and shuffles at about half this speed.
   Unpack and pack both work within 128-bit lanes, so they cancel and the bytes come out in
   order. Bit-identical to the C loops, which other CPUs run. */
enum { AVX2_MAX_TAPS = 32 };
__attribute__((target("avx2"))) static void vrow_avx2(const uint8_t *b, size_t stride,
                                                      const int16_t *w, int n, size_t bytes,
                                                      uint8_t *restrict o) {
    __m256i wv[AVX2_MAX_TAPS / 2];
    const uint8_t *r[AVX2_MAX_TAPS];
    int pairs = (n + 1) / 2;
    for (int k = 0; k < pairs; k++) {
        int w1 = 2 * k + 1 < n ? w[2 * k + 1] : 0;
        wv[k] = _mm256_set1_epi32((int)((uint32_t)(uint16_t)w[2 * k] | (uint32_t)w1 << 16));
        r[2 * k] = b + (size_t)(2 * k) * stride;
        r[2 * k + 1] = 2 * k + 1 < n ? r[2 * k] + stride : r[2 * k];
    }
    const __m256i z = _mm256_setzero_si256(), half = _mm256_set1_epi32(WHALF);
    size_t i = 0;
    for (; i + 32 <= bytes; i += 32) {
        __m256i s0 = half, s1 = half, s2 = half, s3 = half;
        for (int k = 0; k < pairs; k++) {
            __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)(r[2 * k] + i));
            __m256i c = _mm256_loadu_si256((const __m256i *)(const void *)(r[2 * k + 1] + i));
            __m256i lo = _mm256_unpacklo_epi8(a, c), hi = _mm256_unpackhi_epi8(a, c);
            s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(_mm256_unpacklo_epi8(lo, z), wv[k]));
            s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(_mm256_unpackhi_epi8(lo, z), wv[k]));
            s2 = _mm256_add_epi32(s2, _mm256_madd_epi16(_mm256_unpacklo_epi8(hi, z), wv[k]));
            s3 = _mm256_add_epi32(s3, _mm256_madd_epi16(_mm256_unpackhi_epi8(hi, z), wv[k]));
        }
        __m256i p0 = _mm256_packs_epi32(_mm256_srai_epi32(s0, WBITS), _mm256_srai_epi32(s1, WBITS));
        __m256i p1 = _mm256_packs_epi32(_mm256_srai_epi32(s2, WBITS), _mm256_srai_epi32(s3, WBITS));
        _mm256_storeu_si256((__m256i *)(void *)(o + i), _mm256_packus_epi16(p0, p1));
    }
    for (; i < bytes; i++) {
        int32_t v = WHALF;
        for (int k = 0; k < n; k++) v += w[k] * r[k][i];
        o[i] = (uint8_t)(v >> WBITS);
    }
}
#endif

/* Output row = taps of rows b, b + stride, ... with weights w (n of them, summing to
   1 << WBITS and never negative, so the result needs no clamping). The fixed-tap loops
   vectorize (16-bit widening multiplies); wider filters accumulate four taps at a time. */
#define TAPS2(i) (w0 * b0[i] + w1 * b1[i])
#define TAPS3(i) (TAPS2(i) + w2 * b2[i])
#define TAPS4(i) (TAPS3(i) + w3 * b3[i])
static void vrow(const uint8_t *b, size_t stride, const int16_t *w, int n, size_t bytes,
                 uint8_t *restrict o, int32_t *restrict acc) {
    if (n == 1) { /* the single weight is 1 << WBITS */
        memcpy(o, b, bytes);
        return;
    }
#ifdef KILN_X86_AVX2
    if (n <= AVX2_MAX_TAPS && have_avx2()) {
        vrow_avx2(b, stride, w, n, bytes, o);
        return;
    }
#endif
    const uint8_t *restrict b0 = b, *restrict b1 = b + stride;
    const uint8_t *restrict b2 = b1 + (n > 2 ? stride : 0), *restrict b3 =
                                                                b2 + (n > 3 ? stride : 0);
    int16_t w0 = w[0], w1 = w[1], w2 = n > 2 ? w[2] : 0, w3 = n > 3 ? w[3] : 0;
    if (n == 2) {
        for (size_t i = 0; i < bytes; i++) o[i] = (uint8_t)((TAPS2(i) + WHALF) >> WBITS);
        return;
    }
    if (n == 3) {
        for (size_t i = 0; i < bytes; i++) o[i] = (uint8_t)((TAPS3(i) + WHALF) >> WBITS);
        return;
    }
    if (n == 4) {
        for (size_t i = 0; i < bytes; i++) o[i] = (uint8_t)((TAPS4(i) + WHALF) >> WBITS);
        return;
    }
    for (size_t i = 0; i < bytes; i++) acc[i] = TAPS4(i) + WHALF;
    for (int k = 4; k < n; k += 4) {
        /* Taps past n get weight 0 on a row that exists. */
        b0 = b + (size_t)k * stride;
        b1 = k + 1 < n ? b0 + stride : b0;
        b2 = k + 2 < n ? b1 + stride : b1;
        b3 = k + 3 < n ? b2 + stride : b2;
        w0 = w[k], w1 = k + 1 < n ? w[k + 1] : 0, w2 = k + 2 < n ? w[k + 2] : 0;
        w3 = k + 3 < n ? w[k + 3] : 0;
        if (k + 4 < n)
            for (size_t i = 0; i < bytes; i++) acc[i] += TAPS4(i);
        else
            for (size_t i = 0; i < bytes; i++) o[i] = (uint8_t)((acc[i] + TAPS4(i)) >> WBITS);
    }
}
#undef TAPS2
#undef TAPS3
#undef TAPS4

/* Filters along the rows of `in`: output row y = taps of input rows start[y] - off ... */
static void vpass(const uint8_t *in, size_t in_stride, size_t bytes, const coeffs *cy, int dh,
                  int off, uint8_t *out, size_t out_stride, int32_t *acc) {
    for (int y = 0; y < dh; y++)
        vrow(in + (size_t)(cy->start[y] - off) * in_stride, in_stride, cy->w + (size_t)y * cy->taps,
             cy->count[y], bytes, out + (size_t)y * out_stride, acc);
}

/* out (cols x rows pixels of c bytes, packed) = transpose of in (rows x cols, row stride
   in_stride); in tiles so both sides stay in cache. Filtering along x then runs as a row pass
   (contiguous, vectorized) on the transposed image. */
static void transpose(const uint8_t *in, size_t in_stride, int rows, int cols, int c,
                      uint8_t *restrict out) {
    enum { T = 16 };
    size_t os = (size_t)rows * c;
    for (int y0 = 0; y0 < rows; y0 += T)
        for (int x0 = 0; x0 < cols; x0 += T) {
            int y1 = y0 + T < rows ? y0 + T : rows, x1 = x0 + T < cols ? x0 + T : cols;
            for (int y = y0; y < y1; y++) {
                const uint8_t *restrict r = in + (size_t)y * in_stride;
                uint8_t *o = out + (size_t)y * c;
                if (c == 3 && y + 1 < rows) {
                    /* 4-byte moves: the extra byte read is the next pixel's (or the next
                       row's), the extra byte written is pixel (x, y + 1)'s, written later. */
                    for (int x = x0; x < x1; x++) {
                        uint32_t v;
                        memcpy(&v, r + 3 * (size_t)x, 4);
                        memcpy(o + (size_t)x * os, &v, 4);
                    }
                } else if (c == 3) {
                    for (int x = x0; x < x1; x++) {
                        uint8_t *q = o + (size_t)x * os;
                        q[0] = r[3 * x], q[1] = r[3 * x + 1], q[2] = r[3 * x + 2];
                    }
                } else if (c == 1) {
                    for (int x = x0; x < x1; x++) o[(size_t)x * os] = r[x];
                } else {
                    for (int x = x0; x < x1; x++) memcpy(o + (size_t)x * os, r + (size_t)x * c, c);
                }
            }
        }
}

/* Transposes of 3-byte pixels through 4-byte ones, 8 x 8 pixels a step: scattered 3-byte
   moves cost more than the x pass itself. The x pass then filters 4-byte pixels (the fourth
   byte stays 0), which gives the same R, G, B sums. */

/* Pixels [r0, r1) x [c0, c1) of in (3-byte pixels) into out (transposed, 4-byte pixels, `rows`
   of them per out row). */
static void tr_in_rect(const uint8_t *in, size_t in_stride, int rows, int r0, int r1, int c0,
                       int c1, uint8_t *out) {
    for (int y = r0; y < r1; y++)
        for (int x = c0; x < c1; x++) {
            const uint8_t *p = in + (size_t)y * in_stride + (size_t)x * 3;
            uint8_t *q = out + ((size_t)x * rows + y) * 4;
            q[0] = p[0], q[1] = p[1], q[2] = p[2], q[3] = 0;
        }
}

/* Pixels [r0, r1) x [c0, c1) of in (4-byte pixels, `cols` a row) into out (transposed, packed
   3-byte pixels, `rows` per out row). */
static void tr_out_rect(const uint8_t *in, int rows, int cols, int r0, int r1, int c0, int c1,
                        uint8_t *out) {
    for (int y = r0; y < r1; y++)
        for (int x = c0; x < c1; x++) {
            const uint8_t *p = in + ((size_t)y * cols + x) * 4;
            uint8_t *q = out + ((size_t)x * rows + y) * 3;
            q[0] = p[0], q[1] = p[1], q[2] = p[2];
        }
}

#ifdef KILN_X86_AVX2
__attribute__((target("avx2"))) static inline void tr8x8(__m256i r[8]) {
    __m256i t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2x128_si256(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2x128_si256(u[i], u[i + 4], 0x31);
    }
}

__attribute__((target("avx2"))) static void tr_in_avx2(const uint8_t *in, size_t in_stride,
                                                       const uint8_t *in_end, int rows, int cols,
                                                       uint8_t *out) {
    /* 8 3-byte pixels (a 32-byte load) -> 8 4-byte pixels: pixels 4..7 to the upper lane */
    const __m256i spread = _mm256_setr_epi32(0, 1, 2, 3, 3, 4, 5, 6);
    const __m256i widen = _mm256_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1, 0,
                                           1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1);
    int rf = rows / 8 * 8, cf = cols / 8 * 8;
    size_t os = (size_t)rows * 4;
    for (int r0 = 0; r0 < rf; r0 += 8)
        for (int c0 = 0; c0 < cf; c0 += 8) {
            const uint8_t *p = in + (size_t)r0 * in_stride + (size_t)c0 * 3;
            if (p + 7 * in_stride + 32 > in_end) {
                tr_in_rect(in, in_stride, rows, r0, r0 + 8, c0, c0 + 8, out);
                continue;
            }
            __m256i r[8];
            for (int i = 0; i < 8; i++) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(p + i * in_stride));
                r[i] = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(v, spread), widen);
            }
            tr8x8(r);
            uint8_t *q = out + (size_t)c0 * os + (size_t)r0 * 4;
            for (int i = 0; i < 8; i++) _mm256_storeu_si256((__m256i *)(void *)(q + i * os), r[i]);
        }
    tr_in_rect(in, in_stride, rows, 0, rows, cf, cols, out);
    tr_in_rect(in, in_stride, rows, rf, rows, 0, cf, out);
}

__attribute__((target("avx2"))) static void tr_out_avx2(const uint8_t *in, int rows, int cols,
                                                        uint8_t *out) {
    /* 8 4-byte pixels -> 24 packed bytes: 12 per lane, then the lanes joined */
    const __m256i narrow = _mm256_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1,
                                            0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1);
    const __m256i join = _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 7, 7);
    int rf = rows / 8 * 8, cf = cols / 8 * 8;
    size_t is = (size_t)cols * 4, os = (size_t)rows * 3;
    for (int c0 = 0; c0 < cf; c0 += 8)
        for (int r0 = 0; r0 < rf; r0 += 8) {
            const uint8_t *p = in + (size_t)r0 * is + (size_t)c0 * 4;
            __m256i r[8];
            for (int i = 0; i < 8; i++)
                r[i] = _mm256_loadu_si256((const __m256i *)(const void *)(p + i * is));
            tr8x8(r);
            uint8_t *q = out + (size_t)c0 * os + (size_t)r0 * 3;
            for (int i = 0; i < 8; i++) {
                __m256i v = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(r[i], narrow), join);
                _mm_storeu_si128((__m128i *)(void *)(q + i * os), _mm256_castsi256_si128(v));
                _mm_storel_epi64((__m128i *)(void *)(q + i * os + 16),
                                 _mm256_extracti128_si256(v, 1));
            }
        }
    tr_out_rect(in, rows, cols, 0, rows, cf, cols, out);
    tr_out_rect(in, rows, cols, rf, rows, 0, cf, out);
}
#endif

/* The transposes around the x pass: 4-byte pixels in between where `wide`. */
static void tr_in(const uint8_t *in, size_t in_stride, const uint8_t *in_end, int rows, int cols,
                  int c, int wide, uint8_t *out) {
#ifdef KILN_X86_AVX2
    if (wide) {
        tr_in_avx2(in, in_stride, in_end, rows, cols, out);
        return;
    }
#else
    (void)in_end, (void)wide;
#endif
    transpose(in, in_stride, rows, cols, c, out);
}

static void tr_out(const uint8_t *in, int rows, int cols, int c, int wide, uint8_t *out) {
#ifdef KILN_X86_AVX2
    if (wide) {
        tr_out_avx2(in, rows, cols, out);
        return;
    }
#else
    (void)wide;
#endif
    transpose(in, (size_t)cols * c, rows, cols, c, out);
}

static void span(const coeffs *c, int n, int *lo, int *hi) {
    *lo = c->start[0], *hi = c->start[0] + c->count[0];
    for (int i = 1; i < n; i++) {
        if (c->start[i] < *lo) *lo = c->start[i];
        if (c->start[i] + c->count[i] > *hi) *hi = c->start[i] + c->count[i];
    }
}

kiln_status kiln_resample(const uint8_t *src, int sw, int sh, int c, double bx, double by,
                          double bw, double bh, uint8_t *dst, int dw, int dh, kiln_scratch *s) {
    /* Exact copy when the box is an integer window of the same size. */
    if (bw == dw && bh == dh && bx == floor(bx) && by == floor(by) && bx >= 0 && by >= 0 &&
        bx + bw <= sw && by + bh <= sh) {
        for (int y = 0; y < dh; y++)
            memcpy(dst + (size_t)y * dw * c, src + (((size_t)by + y) * sw + (size_t)bx) * c,
                   (size_t)dw * c);
        return KILN_OK;
    }
    coeffs cx, cy;
    memset(&cx, 0, sizeof(cx));
    memset(&cy, 0, sizeof(cy));
    kiln_status st = KILN_OK;
    if (!make_coeffs(&cx, dw, sw, bx, bw) || !make_coeffs(&cy, dh, sh, by, bh)) {
        st = kiln_error(KILN_OUT_OF_MEMORY, "resample tables");
        goto done;
    }
    int xlo, xhi, ylo, yhi;
    span(&cx, dw, &xlo, &xhi);
    span(&cy, dh, &ylo, &yhi);
    size_t in_stride = (size_t)sw * c, out_row = (size_t)dw * c;
    size_t xn = (size_t)(xhi - xlo), yn = (size_t)(yhi - ylo), cc = (size_t)c;
    /* Both passes round to 8 bits in between (as PIL does); the first one reduces the rows:
       vertical first when it shrinks them. The x pass runs on a transposed image, whose
       pixels are 4 bytes where `wide`. */
    int vfirst = (size_t)dh < yn, wide = c == 3 && have_avx2();
    size_t tc = wide ? 4 : cc, rows = vfirst ? (size_t)dh : yn,
           cols = xn > (size_t)dw ? xn : (size_t)dw;
    size_t acc_n = cols * cc > rows * tc ? cols * cc : rows * tc;
    size_t b1 = (rows * cols * tc + 32 + 63) / 64 * 64;
    st = kiln_scratch_grow(s, 2 * b1 + acc_n * sizeof(int32_t));
    if (st != KILN_OK) goto done;
    uint8_t *t1 = s->p, *t2 = s->p + b1;
    int32_t *acc = (int32_t *)(void *)(s->p + 2 * b1);
    if (vfirst) {
        /* rows: dh x xn -> transposed xn x dh -> x pass dw x dh -> transposed dh x dw */
        vpass(src + (size_t)xlo * c, in_stride, xn * cc, &cy, dh, 0, t1, xn * cc, acc);
        tr_in(t1, xn * cc, t1 + b1, dh, (int)xn, c, wide, t2);
        vpass(t2, (size_t)dh * tc, (size_t)dh * tc, &cx, dw, xlo, t1, (size_t)dh * tc, acc);
        tr_out(t1, dw, dh, c, wide, dst);
    } else {
        /* region yn x xn -> xn x yn -> x pass dw x yn -> yn x dw -> y pass dh x dw */
        tr_in(src + (size_t)ylo * in_stride + (size_t)xlo * c, in_stride,
              src + (size_t)sh * in_stride, (int)yn, (int)xn, c, wide, t1);
        vpass(t1, yn * tc, yn * tc, &cx, dw, xlo, t2, yn * tc, acc);
        tr_out(t2, dw, (int)yn, c, wide, t1);
        vpass(t1, out_row, out_row, &cy, dh, ylo, dst, out_row, acc);
    }
done:
    free_coeffs(&cx);
    free_coeffs(&cy);
    return st;
}

kiln_status kiln_scratch_grow(kiln_scratch *s, size_t n) {
    if (n <= s->cap) return KILN_OK;
    uint8_t *p = realloc(s->p, n);
    if (!p) return kiln_error(KILN_OUT_OF_MEMORY, "scratch of %zu bytes", n);
    s->p = p;
    s->cap = n;
    return KILN_OK;
}

/* ---- pixel tokens ---- */

static void flip_h(uint8_t *img, int w, int h, int c) {
    for (int y = 0; y < h; y++) {
        uint8_t *l = img + (size_t)y * w * c, *r = l + (size_t)(w - 1) * c;
        for (; l < r; l += c, r -= c)
            if (c == 3) {
                uint8_t t0 = l[0], t1 = l[1], t2 = l[2];
                l[0] = r[0], l[1] = r[1], l[2] = r[2];
                r[0] = t0, r[1] = t1, r[2] = t2;
            } else {
                for (int k = 0; k < c; k++) {
                    uint8_t t = l[k];
                    l[k] = r[k];
                    r[k] = t;
                }
            }
    }
}

static void flip_v(uint8_t *img, int w, int h, int c, uint8_t *scratch) {
    size_t row = (size_t)w * c;
    for (int y = 0; y < h / 2; y++) {
        memcpy(scratch, img + y * row, row);
        memcpy(img + y * row, img + (size_t)(h - 1 - y) * row, row);
        memcpy(img + (size_t)(h - 1 - y) * row, scratch, row);
    }
}

/* Maps a coordinate outside [0, n) by the fill mode; -1 for constant fill. */
static int fill_index(int i, int n, fill_mode f) {
    if (i >= 0 && i < n) return i;
    switch (f) {
    case FILL_NEAREST:
        return i < 0 ? 0 : n - 1;
    case FILL_WRAP:
        return ((i % n) + n) % n;
    case FILL_REFLECT: { /* d c b a | a b c d | d c b a */
        int p = 2 * n;
        i = ((i % p) + p) % p;
        return i < n ? i : p - 1 - i;
    }
    default:
        return -1;
    }
}

/* Inverse affine warp: output (x, y) samples input at m * (x, y, 1), bilinear. */
static void warp(uint8_t *img, int w, int h, int c, const double m[6], fill_mode f,
                 uint8_t *scratch) {
    memcpy(scratch, img, (size_t)w * h * c);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double sx = m[0] * (x + 0.5) + m[1] * (y + 0.5) + m[2] - 0.5;
            double sy = m[3] * (x + 0.5) + m[4] * (y + 0.5) + m[5] - 0.5;
            int x0 = (int)floor(sx), y0 = (int)floor(sy);
            double fx = sx - x0, fy = sy - y0;
            int xs[2] = {fill_index(x0, w, f), fill_index(x0 + 1, w, f)};
            int ys[2] = {fill_index(y0, h, f), fill_index(y0 + 1, h, f)};
            for (int k = 0; k < c; k++) {
                double v = 0;
                for (int j = 0; j < 2; j++)
                    for (int i = 0; i < 2; i++) {
                        double wt = (j ? fy : 1 - fy) * (i ? fx : 1 - fx);
                        if (xs[i] >= 0 && ys[j] >= 0)
                            v += wt * scratch[((size_t)ys[j] * w + xs[i]) * c + k];
                    }
                img[((size_t)y * w + x) * c + k] = (uint8_t)(v + 0.5 > 255 ? 255 : v + 0.5);
            }
        }
}

static uint8_t sat8(double v) {
    return (uint8_t)(v <= 0 ? 0 : v >= 255 ? 255 : v + 0.5);
}

static void jitter(uint8_t *img, int w, int h, int c, const double f[3]) {
    size_t n = (size_t)w * h;
    for (size_t i = 0; i < n * c; i++) img[i] = sat8(img[i] * f[0]);
    double mean = 0;
    for (size_t i = 0; i < n; i++)
        mean +=
            c == 3 ? 0.299 * img[3 * i] + 0.587 * img[3 * i + 1] + 0.114 * img[3 * i + 2] : img[i];
    mean /= (double)n;
    for (size_t i = 0; i < n * c; i++) img[i] = sat8((img[i] - mean) * f[1] + mean);
    if (c == 3)
        for (size_t i = 0; i < n; i++) {
            double g = 0.299 * img[3 * i] + 0.587 * img[3 * i + 1] + 0.114 * img[3 * i + 2];
            for (int k = 0; k < 3; k++) img[3 * i + k] = sat8((img[3 * i + k] - g) * f[2] + g);
        }
}

static void fill_rect(uint8_t *img, int w, int c, int x0, int y0, int x1, int y1, kiln_rng *r) {
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++)
            for (int k = 0; k < c; k++)
                img[((size_t)y * w + x) * c + k] = r ? (uint8_t)kiln_rng_u64(r) : 0;
}

void kiln_augment_pixels(kiln_augment_t a, uint8_t *img, int w, int h, int c, kiln_rng *r,
                         uint8_t *scratch) {
    for (int i = 0; i < a->n; i++) {
        const tok *t = &a->t[i];
        switch (t->k) {
        case T_FLIP: {
            int fh = t->w && kiln_rng_uniform(r) < t->a[0];
            int fv = t->h && kiln_rng_uniform(r) < t->a[0];
            if (fh) flip_h(img, w, h, c);
            if (fv) flip_v(img, w, h, c, scratch);
            break;
        }
        case T_PADCROP: {
            double dx = (double)kiln_rng_below(r, 2 * (uint64_t)t->w + 1) - t->w;
            double dy = (double)kiln_rng_below(r, 2 * (uint64_t)t->w + 1) - t->w;
            double m[6] = {1, 0, dx, 0, 1, dy};
            warp(img, w, h, c, m, FILL_CONSTANT, scratch);
            break;
        }
        case T_ROTATE: {
            double ang = kiln_rng_range(r, -t->a[0], t->a[0]) * 2 * M_PI;
            double cs = cos(ang), sn = sin(ang), cx = w / 2.0, cy = h / 2.0;
            double m[6] = {cs, -sn, cx - cs * cx + sn * cy, sn, cs, cy - sn * cx - cs * cy};
            warp(img, w, h, c, m, t->fill, scratch);
            break;
        }
        case T_TRANSLATE: {
            double dx = kiln_rng_range(r, -t->a[0], t->a[0]) * w;
            double dy = kiln_rng_range(r, -t->a[0], t->a[0]) * h;
            double m[6] = {1, 0, -dx, 0, 1, -dy};
            warp(img, w, h, c, m, t->fill, scratch);
            break;
        }
        case T_JITTER: {
            double f[3];
            for (int k = 0; k < 3; k++) f[k] = kiln_rng_range(r, 1 - t->a[k], 1 + t->a[k]);
            jitter(img, w, h, c, f);
            break;
        }
        case T_ERASE: {
            if (kiln_rng_uniform(r) >= t->a[0]) break;
            for (int attempt = 0; attempt < 10; attempt++) {
                double area = w * h * kiln_rng_range(r, 0.02, 0.33);
                double ar = exp(kiln_rng_range(r, log(0.3), log(3.3)));
                int ew = (int)round(sqrt(area * ar)), eh = (int)round(sqrt(area / ar));
                if (ew < 1 || eh < 1 || ew > w || eh > h) continue;
                int x0 = (int)kiln_rng_below(r, (uint64_t)(w - ew) + 1);
                int y0 = (int)kiln_rng_below(r, (uint64_t)(h - eh) + 1);
                fill_rect(img, w, c, x0, y0, x0 + ew, y0 + eh, r);
                break;
            }
            break;
        }
        case T_CUTOUT: {
            int cx = (int)kiln_rng_below(r, (uint64_t)w), cy = (int)kiln_rng_below(r, (uint64_t)h);
            int x0 = cx - t->w / 2, y0 = cy - t->w / 2, x1 = x0 + t->w, y1 = y0 + t->w;
            fill_rect(img, w, c, x0 < 0 ? 0 : x0, y0 < 0 ? 0 : y0, x1 > w ? w : x1, y1 > h ? h : y1,
                      NULL);
            break;
        }
        default:
            break;
        }
    }
}

kiln_status kiln_augment_apply(kiln_augment_t a, const uint8_t *src, int w, int h, int channels,
                               uint64_t seed, uint64_t epoch, uint64_t index, uint8_t *out,
                               int out_w, int out_h) {
    kiln_rng r = kiln_rng_make(seed, epoch, index);
    kiln_geometry g;
    kiln_augment_geometry(a, w, h, &r, &g);
    if (g.out_w != out_w || g.out_h != out_h)
        return kiln_error(KILN_SHAPE, "augment: output %dx%d, expected %dx%d", g.out_w, g.out_h,
                          out_w, out_h);
    kiln_scratch s = {NULL, 0};
    kiln_status st = kiln_resample(src, w, h, channels, g.x, g.y, g.w, g.h, out, out_w, out_h, &s);
    if (st == KILN_OK) st = kiln_scratch_grow(&s, (size_t)out_w * out_h * channels);
    if (st == KILN_OK) kiln_augment_pixels(a, out, out_w, out_h, channels, &r, s.p);
    free(s.p);
    return st;
}
