/* The antialiased separable resampler of the augmentation (kiln_resample, data-impl.h):
   fixed-point filter coefficients per output pixel, a vertical pass over rows and a
   horizontal one over a transposed block, with an AVX2 row filter picked at run time. */
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
