/* Convolution kernels (NCHW, fp32): the pieces around kiln's GEMM, and a direct kernel.
 *
 * The GEMM path works on a chunk of nb images at once in a "wide" layout: the column matrix
 * is col[C*KH*KW][nb*OH*OW] (row (c*KH + kh)*KW + kw, column n*OH*OW + oh*OW + ow), so one
 * GEMM per group has nb*OH*OW columns even when a deep layer's OH*OW is tiny (2x2 in VGG at
 * 32x32). The GEMM result [O][nb*OH*OW] is then permuted to NCHW by conv_transpose01, which
 * also adds the bias; the same kernel gathers dy into [O][nb*OH*OW] for the backward passes.
 *
 * conv_col2im is the gather form of the adjoint (each dx element sums the column entries that
 * read it), so it needs no atomics, is deterministic and overwrites dx.
 *
 * Geometry travels as one int16: */
#define G_C  geo.s0 /* input channels (all groups) */
#define G_H  geo.s1
#define G_W  geo.s2
#define G_KH geo.s3
#define G_KW geo.s4
#define G_OH geo.s5
#define G_OW geo.s6
#define G_SH geo.s7 /* stride */
#define G_SW geo.s8
#define G_PT geo.s9 /* padding top / left (bottom / right only shape OH, OW) */
#define G_PL geo.sa
#define G_DH geo.sb /* dilation */
#define G_DW geo.sc
#define G_O  geo.sd /* output channels (all groups) */
#define G_G  geo.se /* groups */
#define G_NB geo.sf /* images in this chunk */
/* OpenCL C 1.2, no extensions. All offsets are in elements. */

/* Output channels per work-item of conv_direct (registers: one accumulator each). */
#ifndef DIRECT_OB
#define DIRECT_OB 8
#endif
/* Neighbouring output pixels per work-item of conv_direct. */
#ifndef DIRECT_PX
#define DIRECT_PX 4
#endif

/* One work-item fills one output row (all OW columns) of one column-matrix row for one
 * image: the index arithmetic (divisions included) is paid once per row rather than per
 * element, which is what limits a CPU device; the inner loop is a strided copy. x: the
 * chunk's first image. Grid: (OH, C*KH*KW, nb). */
__kernel void conv_im2col(const __global float *x, ulong x_off, __global float *col,
                          ulong col_off, int16 geo)
{
    const int oh = (int)get_global_id(0), row = (int)get_global_id(1);
    const int n = (int)get_global_id(2);
    if (oh >= G_OH || row >= G_C * G_KH * G_KW || n >= G_NB) return;
    /* q = a / b, r = a - q * b rather than %: LLVM turns a div/rem pair into a freeze
       instruction that Oclgrind cannot check. */
    const int t = row / G_KW, kw = row - t * G_KW;
    const int c = t / G_KH, kh = t - c * G_KH;
    const int iy = oh * G_SH - G_PT + kh * G_DH;
    const ulong ohw = (ulong)G_OH * G_OW;
    __global float *out = col + col_off + (ulong)row * (ohw * G_NB) + n * ohw + (ulong)oh * G_OW;
    if (iy < 0 || iy >= G_H) {
        for (int ow = 0; ow < G_OW; ow++) out[ow] = 0.0f;
        return;
    }
    const __global float *in = x + x_off + ((ulong)(n * G_C + c) * G_H + iy) * G_W;
    const int x0 = kw * G_DW - G_PL;
    /* Columns whose input lies left of, inside and right of the image. */
    const int lo = x0 >= 0 ? 0 : min(G_OW, (-x0 + G_SW - 1) / G_SW);
    const int hi = max(lo, min(G_OW, x0 >= G_W ? 0 : (G_W - 1 - x0) / G_SW + 1));
    for (int ow = 0; ow < lo; ow++) out[ow] = 0.0f;
    for (int ow = lo; ow < hi; ow++) out[ow] = in[x0 + ow * G_SW];
    for (int ow = hi; ow < G_OW; ow++) out[ow] = 0.0f;
}

static int conv_gcd(int a, int b)
{
    while (b) {
        const int t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* dx (the chunk's first image) from col, one work-item per dx row. Each element sums the
 * column entries that read it (the gather form of im2col's adjoint: no atomics, a fixed
 * order, dx overwritten). The taps that hit an element form an arithmetic progression:
 * iy + PT - kh*DH must be a multiple of SH, so kh steps by SH/gcd(SH,DH) while oy steps
 * down by DH/gcd (likewise along x); only the first tap needs a search, so a strided
 * 11x11 kernel visits its ~8 contributing taps rather than all 121. Grid: (H, C, nb). */
__kernel void conv_col2im(const __global float *col, ulong col_off, __global float *dx,
                          ulong dx_off, int16 geo)
{
    const int iy = (int)get_global_id(0), c = (int)get_global_id(1);
    const int n = (int)get_global_id(2);
    if (iy >= G_H || c >= G_C || n >= G_NB) return;
    const ulong ohw = (ulong)G_OH * G_OW, cols = ohw * G_NB;
    const __global float *base = col + col_off + (ulong)c * G_KH * G_KW * cols + n * ohw;
    __global float *out = dx + dx_off + ((ulong)(n * G_C + c) * G_H + iy) * G_W;
    const int gh = conv_gcd(G_SH, G_DH), steph = G_SH / gh, doy = G_DH / gh;
    const int gw = conv_gcd(G_SW, G_DW), stepw = G_SW / gw, dox = G_DW / gw;
    int kh0 = -1, oy0 = 0;
    for (int kh = 0; kh < min(steph, G_KH); kh++) {
        const int ty = iy + G_PT - kh * G_DH, q = ty / G_SH;
        if (ty < 0) break;
        if (q * G_SH == ty) {
            kh0 = kh;
            oy0 = q;
            break;
        }
    }
    for (int ix = 0; ix < G_W; ix++) {
        int kw0 = -1, ox0 = 0;
        for (int kw = 0; kh0 >= 0 && kw < min(stepw, G_KW); kw++) {
            const int tx = ix + G_PL - kw * G_DW, q = tx / G_SW;
            if (tx < 0) break;
            if (q * G_SW == tx) {
                kw0 = kw;
                ox0 = q;
                break;
            }
        }
        float acc = 0.0f;
        for (int kh = kh0, oy = oy0; kw0 >= 0 && kh < G_KH && oy >= 0; kh += steph, oy -= doy) {
            if (oy >= G_OH) continue;
            const __global float *src = base + (ulong)kh * G_KW * cols + (ulong)oy * G_OW;
            for (int kw = kw0, ox = ox0; kw < G_KW && ox >= 0; kw += stepw, ox -= dox)
                if (ox < G_OW) acc += src[(ulong)kw * cols + ox];
        }
        out[ix] = acc;
    }
}

/* dst[j][i][p] = src[i][j][p] (+ bias[i]) for i < d0, j < d1, p < plane. With d1 == 1 it is
 * an in-place bias add (src == dst, each element read and written by the same work-item).
 * Grid: (plane, d1, d0). */
__kernel void conv_transpose01(const __global float *src, ulong src_off, __global float *dst,
                               ulong dst_off, const __global float *bias, ulong bias_off,
                               int has_bias, uint d0, uint d1, uint plane)
{
    const uint p = (uint)get_global_id(0), j = (uint)get_global_id(1), i = (uint)get_global_id(2);
    if (p >= plane || j >= d1 || i >= d0) return;
    float v = src[src_off + ((ulong)i * d1 + j) * plane + p];
    if (has_bias) v += bias[bias_off + i];
    dst[dst_off + ((ulong)j * d0 + i) * plane + p] = v;
}

/* Direct convolution for inputs with few channels (a network's first layer), where the
 * column matrix would be long and thin. One work-item computes DIRECT_OB output channels of
 * DIRECT_PX neighbouring pixels of one row, a register tile: per kernel tap it loads
 * DIRECT_PX inputs and DIRECT_OB weights for DIRECT_OB * DIRECT_PX multiply-adds.
 * Grid: (ceil(OW / DIRECT_PX), OH, N * groups * nblk), nblk = ceil(O/groups / DIRECT_OB).
 * x and y are whole tensors (G_NB unused). */
__kernel void conv_direct(const __global float *x, ulong x_off, const __global float *w,
                          ulong w_off, const __global float *bias, ulong bias_off, int has_bias,
                          __global float *y, ulong y_off, int16 geo, int nblk, int nimg)
{
    const int ow0 = (int)get_global_id(0) * DIRECT_PX, oh = (int)get_global_id(1);
    const int z = (int)get_global_id(2);
    if (ow0 >= G_OW || oh >= G_OH || z >= nimg * G_G * nblk) return;
    const int t = z / nblk, blk = z - t * nblk;
    const int n = t / G_G, g = t - n * G_G;
    const int og = G_O / G_G, cg = G_C / G_G;
    const int o0 = g * og + blk * DIRECT_OB;
    const int nvalid = min(DIRECT_OB, og - blk * DIRECT_OB);
    const int npx = min(DIRECT_PX, G_OW - ow0);
    const int taps = cg * G_KH * G_KW;
    float acc[DIRECT_OB][DIRECT_PX];
    for (int b = 0; b < DIRECT_OB; b++)
        for (int q = 0; q < DIRECT_PX; q++) acc[b][q] = 0.0f;
    const int y0 = oh * G_SH - G_PT;
    for (int c = 0; c < cg; c++) {
        const ulong xplane = x_off + (ulong)(n * G_C + g * cg + c) * G_H * G_W;
        for (int kh = 0; kh < G_KH; kh++) {
            const int iy = y0 + kh * G_DH;
            const int yin = iy >= 0 && iy < G_H;
            const ulong xrow = xplane + (ulong)clamp(iy, 0, G_H - 1) * G_W;
            for (int kw = 0; kw < G_KW; kw++) {
                float xv[DIRECT_PX];
                for (int q = 0; q < DIRECT_PX; q++) {
                    const int ix = (ow0 + q) * G_SW - G_PL + kw * G_DW;
                    /* Clamped so the load stays in bounds; the select discards it. */
                    const float v = x[xrow + clamp(ix, 0, G_W - 1)];
                    xv[q] = yin && ix >= 0 && ix < G_W ? v : 0.0f;
                }
                const ulong wi = w_off + (ulong)o0 * taps + (c * G_KH + kh) * G_KW + kw;
                for (int b = 0; b < DIRECT_OB; b++) {
                    const float wv = w[wi + (ulong)min(b, nvalid - 1) * taps];
                    for (int q = 0; q < DIRECT_PX; q++)
                        acc[b][q] = KILN_MADD(xv[q], wv, acc[b][q]);
                }
            }
        }
    }
    const ulong ohw = (ulong)G_OH * G_OW;
    const ulong out = y_off + ((ulong)n * G_O + o0) * ohw + (ulong)oh * G_OW + ow0;
    for (int b = 0; b < DIRECT_OB; b++) {
        if (b >= nvalid) break;
        const float bv = has_bias ? bias[bias_off + o0 + b] : 0.0f;
        for (int q = 0; q < DIRECT_PX; q++)
            if (q < npx) y[out + b * ohw + q] = acc[b][q] + bv;
    }
}

/* The sum of one plane in four interleaved chains (a fixed order: both BIAS_GRAD forms give
 * the same plane sums). */
float plane_sum(const __global float *p, ulong plane)
{
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    ulong i = 0;
    for (; i + 4 <= plane; i += 4) {
        s0 += p[i];
        s1 += p[i + 1];
        s2 += p[i + 2];
        s3 += p[i + 3];
    }
    for (; i < plane; i++) s0 += p[i];
    return (s0 + s1) + (s2 + s3);
}

/* BIAS_GRAD, stage 1: part[n][c] = sum over the plane of dy[n][c]. Grid: (C, N). */
__kernel void bias_grad_rows(const __global float *dy, ulong dy_off, __global float *part,
                             ulong part_off, uint c, uint n, ulong plane)
{
    const uint ci = (uint)get_global_id(0), ni = (uint)get_global_id(1);
    if (ci >= c || ni >= n) return;
    part[part_off + (ulong)ni * c + ci] =
        plane_sum(dy + dy_off + ((ulong)ni * c + ci) * plane, plane);
}

/* CPU form, one stage: db[c] = sum over n (in order) of the plane sums of dy[n][c]; one
 * work-item per channel streams its planes (a work-item per plane would be vectorised across
 * planes, i.e. into strided gathers). Grid: (C). */
__kernel void bias_grad_planes(const __global float *dy, ulong dy_off, __global float *db,
                               ulong db_off, uint c, uint n, ulong plane)
{
    const uint ci = (uint)get_global_id(0);
    if (ci >= c) return;
    float s = 0.0f;
    for (uint ni = 0; ni < n; ni++) s += plane_sum(dy + dy_off + ((ulong)ni * c + ci) * plane, plane);
    db[db_off + ci] = s;
}

/* Stage 2: db[c] = sum over n of part[n][c], in order. Grid: (C). */
__kernel void bias_grad_cols(const __global float *part, ulong part_off, __global float *db,
                             ulong db_off, uint c, uint n)
{
    const uint ci = (uint)get_global_id(0);
    if (ci >= c) return;
    float s = 0.0f;
    for (uint ni = 0; ni < n; ni++) s += part[part_off + (ulong)ni * c + ci];
    db[db_off + ci] = s;
}
