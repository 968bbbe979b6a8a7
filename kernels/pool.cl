/* kiln pooling, local response normalization and strided copies.
 *
 * One work-item per output element, on a 1-D grid (LRN: {pixels, images x channels}); the
 * host rounds the grid up to whole work-groups, so every kernel guards its index. Reductions run in the same order as the
 * cpu reference (windows in row-major order, gradient contributions in output order), so
 * max pooling and its gradient agree with it to the bit.
 *
 * Backward passes are gathers: each dx element sums the contributions that reach it, so
 * there are no atomics, no races and a fixed summation order. Max pooling's backward first
 * records each window's argmax (kernel pool2d_argmax) so the gather tests one integer per
 * window instead of rescanning it.
 *
 * OpenCL C 1.2, no extensions.
 */

/* Splits n into (n / d, n % d), returning the remainder. 32-bit division when the operands
 * fit (64-bit division is emulated on GPUs and several times slower on CPUs). Written without
 * %: compilers pair a division with a remainder of the same operands through LLVM's freeze
 * instruction, which Oclgrind's uninitialized-value checker cannot interpret. */
ulong split(ulong n, ulong d, ulong *q) {
    if ((n | d) <= 0xffffffffUL) {
        const uint q32 = (uint)n / (uint)d;
        *q = q32;
        return (uint)n - q32 * (uint)d;
    }
    *q = n / d;
    return n - *q * d;
}

/* Pooling geometry, one int16 argument:
 *   s0 H   s1 W   s2 OH  s3 OW  s4 KH  s5 KW  s6 SH  s7 SW
 *   s8 PT  s9 PL  sa PB  sb PR  sc count_include_pad */

/* The input rows [h0, h1) and columns [w0, w1) of window (i, j); returns its avg divisor. */
float pool_window(const int16 g, int i, int j, int *h0, int *h1, int *w0, int *w1) {
    const int hs = i * g.s6 - g.s8, ws = j * g.s7 - g.s9;
    const int he = hs + g.s4, we = ws + g.s5;
    *h0 = max(hs, 0);
    *w0 = max(ws, 0);
    *h1 = min(he, g.s0);
    *w1 = min(we, g.s1);
    if (g.sc) /* the window clipped to input plus padding */
        return (float)((min(he, g.s0 + g.sa) - hs) * (min(we, g.s1 + g.sb) - ws));
    return (float)((*h1 - *h0) * (*w1 - *w0));
}

/* The first maximum in row-major window order; a NaN beats any number (the first NaN wins). */
int window_argmax(const __global float *plane, int w, int h0, int h1, int w0, int w1) {
    int best = h0 * w + w0;
    float m = plane[best];
    for (int ih = h0; ih < h1; ih++)
        for (int iw = w0; iw < w1; iw++) {
            const float v = plane[ih * w + iw];
            if (v > m || (isnan(v) && !isnan(m))) {
                m = v;
                best = ih * w + iw;
            }
        }
    return best;
}

/* y[N,C,OH,OW] from x[N,C,H,W]. */
__kernel void pool2d_fwd(const __global float *restrict x, ulong x_off, __global float *restrict y,
                         ulong y_off, const int16 g, int is_max, ulong total) {
    const ulong gid = get_global_id(0);
    if (gid >= total)
        return;
    ulong r, plane;
    const int j = (int)split(gid, (ulong)g.s3, &r);
    const int i = (int)split(r, (ulong)g.s2, &plane);
    const __global float *xp = x + x_off + plane * (ulong)g.s0 * (ulong)g.s1;
    int h0, h1, w0, w1;
    const float div = pool_window(g, i, j, &h0, &h1, &w0, &w1);
    float out;
    if (is_max) {
        out = xp[window_argmax(xp, g.s1, h0, h1, w0, w1)];
    } else {
        float s = 0.0f;
        for (int ih = h0; ih < h1; ih++)
            for (int iw = w0; iw < w1; iw++)
                s += xp[ih * g.s1 + iw];
        out = s / div;
    }
    y[y_off + gid] = out;
}

/* arg[N,C,OH,OW]: each window's argmax as an index into its input plane. */
__kernel void pool2d_argmax(const __global float *restrict x, ulong x_off,
                            __global int *restrict arg, const int16 g, ulong total) {
    const ulong gid = get_global_id(0);
    if (gid >= total)
        return;
    ulong r, plane;
    const int j = (int)split(gid, (ulong)g.s3, &r);
    const int i = (int)split(r, (ulong)g.s2, &plane);
    int h0, h1, w0, w1;
    pool_window(g, i, j, &h0, &h1, &w0, &w1);
    arg[gid] = window_argmax(x + x_off + plane * (ulong)g.s0 * (ulong)g.s1, g.s1, h0, h1, w0, w1);
}

/* dx[N,C,H,W] from dy[N,C,OH,OW]: is_max sums the dy of the windows whose argmax (arg) is this
 * element, otherwise every window containing it contributes dy / divisor. Windows containing
 * input row h: i*SH - PT <= h <= i*SH - PT + KH - 1. */
__kernel void pool2d_bwd(const __global float *restrict dy, ulong dy_off,
                         const __global int *restrict arg, __global float *restrict dx,
                         ulong dx_off, const int16 g, int is_max, ulong total) {
    const ulong gid = get_global_id(0);
    if (gid >= total)
        return;
    ulong r, plane;
    const int w = (int)split(gid, (ulong)g.s1, &r);
    const int h = (int)split(r, (ulong)g.s0, &plane);
    const int lo_h = h + g.s8 - g.s4 + 1, lo_w = w + g.s9 - g.s5 + 1;
    const int i0 = lo_h <= 0 ? 0 : (lo_h + g.s6 - 1) / g.s6;
    const int j0 = lo_w <= 0 ? 0 : (lo_w + g.s7 - 1) / g.s7;
    const int i1 = min((h + g.s8) / g.s6, g.s2 - 1);
    const int j1 = min((w + g.s9) / g.s7, g.s3 - 1);
    const ulong base = plane * (ulong)g.s2 * (ulong)g.s3;
    const int me = h * g.s1 + w;
    float acc = 0.0f;
    for (int i = i0; i <= i1; i++)
        for (int j = j0; j <= j1; j++) {
            const ulong o = base + (ulong)(i * g.s3 + j);
            if (is_max) {
                if (arg[o] == me)
                    acc += dy[dy_off + o];
            } else {
                int h0, h1, w0, w1;
                acc += dy[dy_off + o] / pool_window(g, i, j, &h0, &h1, &w0, &w1);
            }
        }
    dx[dx_off + gid] = acc;
}

/* Tiled pooling: windows that tile the input (stride == kernel, no padding; VGG's and
 * AlexNet-style 2x2/2 pooling). Work-item (output row i, plane) walks the row's windows, so
 * the backward pass writes each dx element exactly once from its own window (a scatter with
 * no overlap, hence no races and no argmax buffer) and a CPU runs long contiguous loops
 * instead of one tiny work-item per element. Same results as pool2d_fwd/pool2d_bwd: the same
 * argmax rule, dx zero outside every window (rows and columns past the last floor-mode
 * window). Grid: {OH, N*C}. */
__kernel void pool2d_fwd_tiles(const __global float *restrict x, ulong x_off,
                               __global float *restrict y, ulong y_off, const int16 g, int is_max,
                               ulong planes) {
    const int i = (int)get_global_id(0);
    const ulong plane = get_global_id(1);
    if (i >= g.s2 || plane >= planes)
        return;
    const __global float *xp = x + x_off + plane * (ulong)g.s0 * (ulong)g.s1;
    __global float *yr = y + y_off + (plane * (ulong)g.s2 + (ulong)i) * (ulong)g.s3;
    for (int j = 0; j < g.s3; j++) {
        int h0, h1, w0, w1;
        const float div = pool_window(g, i, j, &h0, &h1, &w0, &w1);
        if (is_max) {
            yr[j] = xp[window_argmax(xp, g.s1, h0, h1, w0, w1)];
        } else {
            float s = 0.0f;
            for (int ih = h0; ih < h1; ih++)
                for (int iw = w0; iw < w1; iw++)
                    s += xp[ih * g.s1 + iw];
            yr[j] = s / div;
        }
    }
}

__kernel void pool2d_bwd_tiles(const __global float *restrict dy, ulong dy_off,
                               const __global float *restrict x, ulong x_off,
                               __global float *restrict dx, ulong dx_off, const int16 g,
                               int is_max, ulong planes) {
    const int i = (int)get_global_id(0);
    const ulong plane = get_global_id(1);
    if (i >= g.s2 || plane >= planes)
        return;
    const ulong pbase = plane * (ulong)g.s0 * (ulong)g.s1;
    const __global float *xp = x + x_off + pbase;
    __global float *dxp = dx + dx_off + pbase;
    const __global float *dyr = dy + dy_off + (plane * (ulong)g.s2 + (ulong)i) * (ulong)g.s3;
    /* This item's band of input rows; the last row of windows also owns the rows below. */
    const int r0 = i * g.s6, r1 = i == g.s2 - 1 ? g.s0 : min(r0 + g.s4, g.s0);
    const int c_end = min(g.s3 * g.s7, g.s1); /* columns past it belong to no window */
    for (int j = 0; j < g.s3; j++) {
        int h0, h1, w0, w1;
        const float div = pool_window(g, i, j, &h0, &h1, &w0, &w1);
        const float d = dyr[j];
        if (is_max) {
            const int a = window_argmax(xp, g.s1, h0, h1, w0, w1);
            for (int ih = r0; ih < r1; ih++)
                for (int iw = w0; iw < w1; iw++)
                    dxp[ih * g.s1 + iw] = ih * g.s1 + iw == a ? d : 0.0f;
        } else {
            for (int ih = r0; ih < r1; ih++)
                for (int iw = w0; iw < w1; iw++)
                    dxp[ih * g.s1 + iw] = ih < h1 ? d / div : 0.0f;
        }
    }
    for (int ih = r0; ih < r1; ih++)
        for (int iw = c_end; iw < g.s1; iw++)
            dxp[ih * g.s1 + iw] = 0.0f;
}

/* ---- local response normalization across channels ----
 * d: s0 C, s1 H*W, s2 size, s3 N*C;  f: s0 alpha/size, s1 beta, s2 k, s3 2*alpha*beta/size.
 * window(c) = [c - size/2, c + (size-1)/2] clipped to [0, C). */

/* k + alpha/size * sum of x^2 over window(c); col points at channel 0 of this pixel. */
float lrn_scale(const __global float *col, int c, const int4 d, const float4 f) {
    const int lo = max(c - d.s2 / 2, 0), hi = min(c + (d.s2 - 1) / 2, d.s0 - 1);
    float s = 0.0f;
    for (int k = lo; k <= hi; k++) {
        const float v = col[(ulong)k * (ulong)d.s1];
        s += v * v;
    }
    return f.s2 + f.s0 * s;
}

/* s^-beta for s > 0 (k > 0 and alpha >= 0 are validated), within a few ulp of the cpu's
 * powf. pow costs several times the rest of the op on PoCL; the usual betas (0.75 in AlexNet
 * and PyTorch's default, 0.5) reduce to square roots, the others go through exp2/log2.
 * beta is uniform, so the branches do not diverge. */
float pow_neg(float s, float beta) {
    if (beta == 0.75f)
        return rsqrt(s) * rsqrt(sqrt(s));
    if (beta == 0.5f)
        return rsqrt(s);
    return exp2(-beta * log2(s));
}

/* Work-item (pixel e, row n*C + c) of the grid {H*W, N*C}: a work-group shares its channel,
 * so loop bounds are uniform and loads contiguous across it. Sets c, the element's offset and
 * that of its pixel in channel 0; returns 0 for the grid's padding. */
int lrn_item(const int4 d, int *c, ulong *at, ulong *col) {
    const ulong e = get_global_id(0), row = get_global_id(1);
    if (e >= (ulong)d.s1 || row >= (ulong)d.s3)
        return 0;
    ulong n;
    *c = (int)split(row, (ulong)d.s0, &n);
    *at = row * (ulong)d.s1 + e;
    *col = n * (ulong)d.s0 * (ulong)d.s1 + e;
    return 1;
}

__kernel void lrn_fwd(const __global float *restrict x, ulong x_off, __global float *restrict y,
                      ulong y_off, const int4 d, const float4 f) {
    int c;
    ulong at, col;
    if (!lrn_item(d, &c, &at, &col))
        return;
    y[y_off + at] = x[x_off + at] * pow_neg(lrn_scale(x + x_off + col, c, d, f), f.s1);
}

/* t = dy * x * s^-beta / s: what channel c passes back to the channels in its window. */
__kernel void lrn_bwd_t(const __global float *restrict dy, ulong dy_off,
                        const __global float *restrict x, ulong x_off, __global float *restrict t,
                        const int4 d, const float4 f) {
    int c;
    ulong at, col;
    if (!lrn_item(d, &c, &at, &col))
        return;
    const float s = lrn_scale(x + x_off + col, c, d, f);
    t[at] = dy[dy_off + at] * x[x_off + at] * pow_neg(s, f.s1) / s;
}

/* dx_j = dy_j s_j^-beta - 2 alpha beta / size * x_j * sum of t_c, c in [j - (size-1)/2,
 * j + size/2] (the channels whose window holds j). */
__kernel void lrn_bwd_dx(const __global float *restrict dy, ulong dy_off,
                         const __global float *restrict x, ulong x_off,
                         const __global float *restrict t, __global float *restrict dx,
                         ulong dx_off, const int4 d, const float4 f) {
    int j;
    ulong at, col;
    if (!lrn_item(d, &j, &at, &col))
        return;
    const float s = lrn_scale(x + x_off + col, j, d, f);
    const int lo = max(j - (d.s2 - 1) / 2, 0), hi = min(j + d.s2 / 2, d.s0 - 1);
    float acc = 0.0f;
    for (int c = lo; c <= hi; c++)
        acc += t[col + (ulong)c * (ulong)d.s1];
    dx[dx_off + at] = dy[dy_off + at] * pow_neg(s, f.s1) - f.s3 * x[x_off + at] * acc;
}

/* ---- strided copies (up to 4 dims, strides in elements, any element type by size) ---- */

#define KILN_COPY(NAME, T)                                                                     \
    __kernel void NAME(const __global T *restrict src, ulong src_off, __global T *restrict dst, \
                       ulong dst_off, const ulong4 shape, const ulong4 ss, const ulong4 ds,     \
                       ulong total) {                                                          \
        const ulong gid = get_global_id(0);                                                    \
        if (gid >= total)                                                                      \
            return;                                                                            \
        ulong r2, r1, i0;                                                                      \
        const ulong i3 = split(gid, shape.s3, &r2);                                            \
        const ulong i2 = split(r2, shape.s2, &r1);                                             \
        const ulong i1 = split(r1, shape.s1, &i0);                                             \
        dst[dst_off + i0 * ds.s0 + i1 * ds.s1 + i2 * ds.s2 + i3 * ds.s3] =                     \
            src[src_off + i0 * ss.s0 + i1 * ss.s1 + i2 * ss.s2 + i3 * ss.s3];                  \
    }

KILN_COPY(copy_u8, uchar)
KILN_COPY(copy_u32, uint)
