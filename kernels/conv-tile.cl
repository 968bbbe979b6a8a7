/* Convolutions as register-tiled implicit GEMMs for CPU devices (NCHW, fp32).
 *
 * The im2col path (conv.cl) writes a column matrix 9x the input for a 3x3 layer and then
 * streams it through the GEMM once per TILE_M rows of weights; with the few output channels
 * of a narrow network that traffic, not arithmetic, sets the speed on a CPU. Here a
 * work-item owns a TILE_P x TILE_O block of the output (TILE_P output pixels, TILE_O output
 * channels held as vectors) and reads its inputs straight from a zero-padded copy of
 * the input: per kernel tap it loads TILE_P input values (broadcast) and TILE_O/VW weight
 * vectors for TILE_P * TILE_O / VW vector multiply-adds, like kiln's GEMM kernel, with no
 * column matrix at all.
 *
 *   conv_tile_pad     xp = x with PT/PL rows/columns of zeros before and enough after that
 *                     every tap of every output pixel lands inside xp (no bounds tests in the
 *                     hot loop); negative pads crop.
 *   conv_tile_pack_w  wp[g][(ic*KH + kh)*KW + kw][OPAD]: the weights of group g with output
 *                     channels contiguous and zero-padded to a whole tile. `flip` packs the
 *                     transposed, spatially flipped weights that turn the backward-data pass
 *                     of a stride-1 convolution into a forward one over the padded dy.
 *   conv_tile         the product. Output pixels are numbered across images (p = n*OH*OW +
 *                     oh*OW + ow), so the deep layers of a small input (2x2, 1x1) still
 *                     fill every lane.
 *   conv_tile_row     the same product over row tiles: a tile's lanes are consecutive
 *                     output columns of one row, read from one pointer (rows that fill them).
 *   conv_tile_edge    the same product over position-major tiles (p = (oh*OW + ow)*N + n):
 *                     a tile's TILE_P lanes are images at one output position, so every lane
 *                     has the same taps inside the input and the tile skips the rest. On the
 *                     small maps of a network's deep layers most of the work of conv_tile is
 *                     multiplying zeros (a 3x3 map under a 3x3 kernel with padding 1: 49 of 81
 *                     taps are inside); this form reads x itself, unpadded, and does only the
 *                     49.
 *   conv_tile_dw      the filter gradient: a TILE_P x TILE_O block of dW^T (TILE_P rows
 *                     (ic, kh, kw), TILE_O output channels) summed over every output pixel,
 *                     reading dy transposed to [pixel][OPAD] (conv_tile_dyt) as vectors.
 *   conv_tile_dw_edge the same in the edge form: the rows of a block are TILE_P input
 *                     channels at one tap, so the pixels whose tap lands inside x form one
 *                     rectangle, and the block sums over that rectangle only.
 *
 * Compile-time geometry (build options): KH, KW, SH, SW, DH, DW; the tile: TILE_P, TILE_O,
 * VW. OpenCL C 1.2. */

#ifndef KH
#define KH 3
#endif
#ifndef KW
#define KW 3
#endif
#ifndef SH
#define SH 1
#endif
#ifndef SW
#define SW 1
#endif
#ifndef DH
#define DH 1
#endif
#ifndef DW
#define DW 1
#endif
/* Output pixels and output channels per work-item, and the vector width of the
 * output-channel accumulators; the host picks them from the device's SIMD width so that the
 * accumulators, a row of weights and a broadcast fit the vector registers (8 x 32 in float16
 * for AVX-512's 32, 6 x 16 in float8 for AVX2's 16), and float4 vectors elsewhere
 * (Oclgrind's checkers do not handle float16). */
#ifndef TILE_P
#define TILE_P 8
#endif
#ifndef TILE_O
#define TILE_O 32
#endif
#ifndef VW
#define VW 16
#endif
#if TILE_O % VW != 0
#error "TILE_O must be a multiple of VW"
#endif
#define NV (TILE_O / VW)
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
typedef CAT(float, VW) vec_t;
#define VLOAD(i, p) CAT(vload, VW)((i), (p))
#define VSTORE(x, i, p) CAT(vstore, VW)((x), (i), (p))

/* The tile's accumulators (TILE_P lanes x NV vectors), all lanes starting from the row at bk. */
#define TILE_ACC_INIT(acc, bk)                                                                 \
    vec_t acc[TILE_P][NV];                                                                     \
    _Pragma("unroll") for (int v_ = 0; v_ < NV; v_++) {                                        \
        const vec_t b_ = VLOAD(v_, (bk));                                                      \
        _Pragma("unroll") for (int l_ = 0; l_ < TILE_P; l_++) acc[l_][v_] = b_;                \
    }
/* The same, all zero. */
#define TILE_ACC_ZERO(acc)                                                                     \
    vec_t acc[TILE_P][NV];                                                                     \
    _Pragma("unroll") for (int l_ = 0; l_ < TILE_P; l_++)                                      \
        _Pragma("unroll") for (int v_ = 0; v_ < NV; v_++) acc[l_][v_] = (vec_t)(0.0f);
/* One step of the product: the TILE_O values at wr (as vectors) times each lane's scalar
 * lane[l][at], into acc. */
#define TILE_MADD(acc, wr, lane, at)                                                           \
    do {                                                                                       \
        vec_t w_[NV];                                                                          \
        _Pragma("unroll") for (int v_ = 0; v_ < NV; v_++) w_[v_] = VLOAD(v_, (wr));            \
        _Pragma("unroll") for (int l_ = 0; l_ < TILE_P; l_++) {                                \
            const vec_t x_ = (vec_t)((lane)[l_][(at)]);                                        \
            _Pragma("unroll") for (int v_ = 0; v_ < NV; v_++) acc[l_][v_] =                    \
                KILN_MADD(x_, w_[v_], acc[l_][v_]);                                            \
        }                                                                                      \
    } while (0)
/* The same with the lanes' scalars SW apart from one pointer: xr[l * SW] for lane l. */
#define TILE_MADD_ROW(acc, wr, xr)                                                             \
    do {                                                                                       \
        vec_t w_[NV];                                                                          \
        _Pragma("unroll") for (int v_ = 0; v_ < NV; v_++) w_[v_] = VLOAD(v_, (wr));            \
        _Pragma("unroll") for (int l_ = 0; l_ < TILE_P; l_++) {                                \
            const vec_t x_ = (vec_t)((xr)[l_ * SW]);                                           \
            _Pragma("unroll") for (int v_ = 0; v_ < NV; v_++) acc[l_][v_] =                    \
                KILN_MADD(x_, w_[v_], acc[l_][v_]);                                            \
        }                                                                                      \
    } while (0)
/* acc as plain floats, out[TILE_P][TILE_O]. */
#define TILE_ACC_STORE(acc, out)                                                               \
    float out[TILE_P][TILE_O];                                                                 \
    _Pragma("unroll") for (int l_ = 0; l_ < TILE_P; l_++)                                      \
        _Pragma("unroll") for (int v_ = 0; v_ < NV; v_++) VSTORE(acc[l_][v_], v_, out[l_]);

/* xp[plane][Hp][Wp] from x[plane][H][W]: one work-item per plane, row by row, so the
 * interior of a row is a plain contiguous copy a CPU vectorises.
 * d: s0 H, s1 W, s2 Hp, s3 Wp, s4 PT, s5 PL. Grid: {planes}. */
__kernel void conv_tile_pad(const __global float *restrict x, ulong x_off,
                            __global float *restrict xp, ulong xp_off, const int8 d,
                            ulong planes) {
    const ulong plane = get_global_id(0);
    if (plane >= planes)
        return;
    /* Columns [c0, c1) of xp come from x; the rest are zeros. */
    const int c0 = clamp(d.s5, 0, d.s3), c1 = clamp(d.s5 + d.s1, c0, d.s3);
    const int skip = d.s5 < 0 ? -d.s5 : 0; /* a negative pad crops the first columns */
    for (int r = 0; r < d.s2; r++) {
        __global float *dst = xp + xp_off + (plane * (ulong)d.s2 + (ulong)r) * (ulong)d.s3;
        const int ir = r - d.s4;
        if (ir < 0 || ir >= d.s0) {
            for (int s = 0; s < d.s3; s++)
                dst[s] = 0.0f;
            continue;
        }
        const __global float *src =
            x + x_off + (plane * (ulong)d.s0 + (ulong)ir) * (ulong)d.s1 + skip;
        for (int s = 0; s < c0; s++)
            dst[s] = 0.0f;
        for (int s = c0; s < c1; s++)
            dst[s] = src[s - c0];
        for (int s = c1; s < d.s3; s++)
            dst[s] = 0.0f;
    }
}

/* w[O][Cg][KH][KW] -> wp, followed by one row per group of the bias (zeros without one),
 * which conv_tile starts its accumulators from. d: s0 IC (per group), s1 OC (per group),
 * s2 OPAD, s3 flip, s4 Cg (w's second dimension), s5 Og (w's output channels per group),
 * s6 groups. Grid: {OPAD, IC*KH*KW + 1, groups}. */
__kernel void conv_tile_pack_w(const __global float *restrict w, ulong w_off,
                               const __global float *restrict bias, ulong bias_off,
                               int has_bias, __global float *restrict wp, ulong wp_off,
                               const int8 d) {
    const int oc = (int)get_global_id(0), k = (int)get_global_id(1), g = (int)get_global_id(2);
    const int taps = KH * KW;
    if (oc >= d.s2 || k > d.s0 * taps || g >= d.s6)
        return;
    if (k == d.s0 * taps) {
        const ulong at = wp_off + ((ulong)d.s6 * d.s0 * taps + g) * d.s2 + oc;
        wp[at] = has_bias && oc < d.s1 ? bias[bias_off + g * d.s1 + oc] : 0.0f;
        return;
    }
    const int ic = k / taps, t = k - ic * taps;
    float v = 0.0f;
    if (oc < d.s1) {
        /* forward: W[g*Og + oc][ic][t]; flipped: W[g*Og + ic][oc][taps - 1 - t] */
        const int o = g * d.s5 + (d.s3 ? ic : oc), c = d.s3 ? oc : ic;
        v = w[w_off + ((ulong)o * d.s4 + c) * taps + (d.s3 ? taps - 1 - t : t)];
    }
    wp[wp_off + ((ulong)g * d.s0 * taps + k) * d.s2 + oc] = v;
}

/* y[N][OC*G][OH][OW] (+ bias) from xp (padded, IC*G channels) and wp (with its bias rows).
 * d: s0 IC (per group), s1 OC (per group), s2 OPAD, s3 groups, s4 Hp, s5 Wp, s6 OH, s7 OW.
 * Grid: {ceil(N*OH*OW / TILE_P), OPAD/TILE_O * groups}. */
void conv_tile_one(const __global float *restrict xp, ulong xp_off,
                   const __global float *restrict wp, ulong wp_off, __global float *restrict y,
                   ulong y_off, const int8 d, uint npix, uint t, int g, int o0) {
    const uint ohw = (uint)(d.s6 * d.s7);
    const ulong hpwp = (ulong)d.s4 * (ulong)d.s5;
    const int icall = d.s0 * d.s3;
    /* Each lane's first input element (channel 0 of its group, tap (0, 0)); lanes past the
     * last pixel repeat it (their results are not stored). */
    const __global float *xl[TILE_P];
    ulong yl[TILE_P];
    /* Divide once for the first pixel, then step (ow, oh, n) lane by lane. */
    const uint p0 = t * TILE_P;
    uint n = p0 / ohw, r = p0 - n * ohw;
    uint oh = r / (uint)d.s7, ow = r - oh * (uint)d.s7;
#pragma unroll
    for (int l = 0; l < TILE_P; l++) {
        xl[l] = xp + xp_off + ((ulong)n * icall + (ulong)g * d.s0) * hpwp +
                (ulong)(oh * SH) * d.s5 + ow * SW;
        yl[l] = (ulong)n * (ulong)(d.s1 * d.s3) * ohw + r;
        if (p0 + (uint)l + 1 < npix) {
            r++;
            if (++ow == (uint)d.s7) {
                ow = 0;
                if (++oh == (uint)d.s6) {
                    oh = 0;
                    r = 0;
                    n++;
                }
            }
        }
    }
    const __global float *wk = wp + wp_off + (ulong)g * d.s0 * KH * KW * d.s2 + o0;
    const __global float *bk = wp + wp_off + ((ulong)d.s3 * d.s0 * KH * KW + g) * d.s2 + o0;
    TILE_ACC_INIT(acc, bk)
    for (int ic = 0; ic < d.s0; ic++) {
#pragma unroll
        for (int kh = 0; kh < KH; kh++)
#pragma unroll
            for (int kw = 0; kw < KW; kw++) {
                TILE_MADD(acc, wk, xl, kh * DH * d.s5 + kw * DW);
                wk += d.s2;
            }
#pragma unroll
        for (int l = 0; l < TILE_P; l++)
            xl[l] += hpwp;
    }
    const int nvalid = min(TILE_O, d.s1 - o0);
    const int npx = (int)min((uint)TILE_P, npix - t * TILE_P);
    const ulong ybase = y_off + (ulong)(g * d.s1 + o0) * ohw;
    TILE_ACC_STORE(acc, v)
    if (npx == TILE_P && yl[TILE_P - 1] - yl[0] == TILE_P - 1) {
        /* The usual case: the tile's pixels are consecutive in one image, so each output
         * channel takes one TILE_P-wide store. */
        for (int o = 0; o < nvalid; o++) {
#if TILE_P == 8
            vstore8((float8)(v[0][o], v[1][o], v[2][o], v[3][o], v[4][o], v[5][o], v[6][o],
                             v[7][o]),
                    0, y + ybase + yl[0] + (ulong)o * ohw);
#else
            __global float *yo = y + ybase + yl[0] + (ulong)o * ohw;
#pragma unroll
            for (int l = 0; l < TILE_P; l++)
                yo[l] = v[l][o];
#endif
        }
        return;
    }
    for (int l = 0; l < npx; l++)
        for (int o = 0; o < nvalid; o++)
            y[ybase + yl[l] + (ulong)o * ohw] = v[l][o];
}

/* Work-item (i, z) computes pixel tiles [i*per, (i+1)*per) of output-channel tile z: a few
 * tiles per item amortise the per-work-group cost of a CPU runtime and reuse the weights. */
__kernel void conv_tile(const __global float *restrict xp, ulong xp_off,
                        const __global float *restrict wp, ulong wp_off,
                        __global float *restrict y, ulong y_off, const int8 d, uint npix,
                        uint per) {
    const uint i = (uint)get_global_id(0);
    const int z = (int)get_global_id(1), notile = d.s2 / TILE_O;
    if (z >= notile * d.s3)
        return;
    const int g = z / notile, o0 = (z - g * notile) * TILE_O;
    for (uint t = i * per; t < (i + 1) * per && t * TILE_P < npix; t++)
        conv_tile_one(xp, xp_off, wp, wp_off, y, y_off, d, npix, t, g, o0);
}

/* Row tiles: the TILE_P lanes of a tile are consecutive output columns of one output row, so
 * at every tap their inputs are TILE_P values SW apart behind one pointer. conv_tile's lanes
 * may cross rows and images and so keep a pointer each, TILE_P general registers that a
 * larger tile cannot spare; here the lanes are immediate offsets, and each output channel
 * takes one TILE_P-wide store. A row whose width is not a multiple of TILE_P ends in a
 * partial tile: its extra lanes read the slack that xp's rows carry (the host pads them to
 * tpr * TILE_P columns of output) and are not stored.
 * d: as conv_tile; tpr: tiles per output row. */
void conv_tile_row_one(const __global float *restrict xp, ulong xp_off,
                       const __global float *restrict wp, ulong wp_off, __global float *restrict y,
                       ulong y_off, const int8 d, uint tpr, uint t, int g, int o0) {
    const uint ohw = (uint)(d.s6 * d.s7);
    const ulong hpwp = (ulong)d.s4 * (ulong)d.s5;
    const int icall = d.s0 * d.s3;
    const uint row = t / tpr, n = row / (uint)d.s6, oh = row - n * (uint)d.s6;
    const int ow0 = (int)(t - row * tpr) * TILE_P;
    const __global float *xb = xp + xp_off + ((ulong)n * icall + (ulong)g * d.s0) * hpwp +
                               (ulong)(oh * SH) * d.s5 + ow0 * SW;
    const __global float *wk = wp + wp_off + (ulong)g * d.s0 * KH * KW * d.s2 + o0;
    const __global float *bk = wp + wp_off + ((ulong)d.s3 * d.s0 * KH * KW + g) * d.s2 + o0;
    TILE_ACC_INIT(acc, bk)
    for (int ic = 0; ic < d.s0; ic++) {
#pragma unroll
        for (int kh = 0; kh < KH; kh++)
#pragma unroll
            for (int kw = 0; kw < KW; kw++) {
                TILE_MADD_ROW(acc, wk, xb + kh * DH * d.s5 + kw * DW);
                wk += d.s2;
            }
        xb += hpwp;
    }
    const int nvalid = min(TILE_O, d.s1 - o0), npx = min(TILE_P, d.s7 - ow0);
    __global float *yb =
        y + y_off + ((ulong)n * (ulong)(d.s1 * d.s3) + (ulong)(g * d.s1 + o0)) * ohw +
        oh * (uint)d.s7 + (uint)ow0;
    TILE_ACC_STORE(acc, v)
    if (npx == TILE_P) {
        for (int o = 0; o < nvalid; o++) {
            __global float *yo = yb + (ulong)o * ohw;
#pragma unroll
            for (int l = 0; l < TILE_P; l++)
                yo[l] = v[l][o];
        }
        return;
    }
    for (int o = 0; o < nvalid; o++)
        for (int l = 0; l < npx; l++)
            yb[(ulong)o * ohw + l] = v[l][o];
}

/* conv_tile over row tiles: work-item (i, z) takes tiles [i*per, (i+1)*per) of the
 * ntiles = N*OH*tpr tiles of output-channel tile z. */
__kernel void conv_tile_row(const __global float *restrict xp, ulong xp_off,
                            const __global float *restrict wp, ulong wp_off,
                            __global float *restrict y, ulong y_off, const int8 d, uint ntiles,
                            uint per, uint tpr) {
    const uint i = (uint)get_global_id(0);
    const int z = (int)get_global_id(1), notile = d.s2 / TILE_O;
    if (z >= notile * d.s3)
        return;
    const int g = z / notile, o0 = (z - g * notile) * TILE_O;
    for (uint t = i * per; t < (i + 1) * per && t < ntiles; t++)
        conv_tile_row_one(xp, xp_off, wp, wp_off, y, y_off, d, tpr, t, g, o0);
}

/* First and last + 1 output index o in [0, n) whose input index o*s - a lies in [0, len). */
int2 edge_range(int a, int s, int len, int n) {
    const int lo = a <= 0 ? 0 : (a + s - 1) / s;
    const int hi = len - 1 + a < 0 ? 0 : min(n, (len - 1 + a) / s + 1);
    return (int2)(lo, max(lo, hi));
}

/* One position-major tile of conv_tile_edge: images n0 .. n0+TILE_P-1 (lanes past the last
 * image repeat it and are not stored) at output position pos. x[N][IC*G][H][W] unpadded;
 * d: as conv_tile but s4 H, s5 W; e: s0 N, s1 PT, s2 PL, s3 tiles per position. */
void conv_tile_edge_one(const __global float *restrict x, ulong x_off,
                        const __global float *restrict wp, ulong wp_off,
                        __global float *restrict y, ulong y_off, const int8 d, const int4 e,
                        uint t, int g, int o0) {
    const uint tpp = (uint)e.s3, pos = t / tpp;
    const int n0 = (int)(t - pos * tpp) * TILE_P;
    const int oh = (int)pos / d.s7, ow = (int)pos - oh * d.s7;
    const ulong hw = (ulong)d.s4 * (ulong)d.s5;
    const int icall = d.s0 * d.s3, taps = KH * KW;
    const __global float *xl[TILE_P];
#pragma unroll
    for (int l = 0; l < TILE_P; l++)
        xl[l] = x + x_off + ((ulong)min(n0 + l, e.s0 - 1) * icall + (ulong)g * d.s0) * hw;
    const __global float *bk = wp + wp_off + ((ulong)d.s3 * d.s0 * taps + g) * d.s2 + o0;
    TILE_ACC_INIT(acc, bk)
    /* The taps inside the input form a rectangle [kh0, kh1) x [kw0, kw1). Channel by channel
     * (the lanes' planes stay in L1 across the taps) over that rectangle only. */
    const int ih0 = oh * SH - e.s1, iw0 = ow * SW - e.s2;
    const int2 rh = edge_range(-ih0, DH, d.s4, KH), rw = edge_range(-iw0, DW, d.s5, KW);
    const int kh0 = rh.x, kh1 = rh.y, kw0 = rw.x, kw1 = rw.y;
    const __global float *wk = wp + wp_off + (ulong)g * d.s0 * taps * d.s2 + o0;
    ulong at = (ulong)(ih0 + kh0 * DH) * d.s5 + (iw0 + kw0 * DW);
    for (int ic = 0; ic < d.s0; ic++) {
        for (int kh = kh0; kh < kh1; kh++) {
            const __global float *wr = wk + (kh * KW + kw0) * d.s2;
            ulong ar = at + (ulong)((kh - kh0) * DH) * d.s5;
            for (int kw = kw0; kw < kw1; kw++) {
                TILE_MADD(acc, wr, xl, ar);
                wr += d.s2;
                ar += DW;
            }
        }
        wk += taps * d.s2;
        at += hw;
    }
    const int nvalid = min(TILE_O, d.s1 - o0), nimg = min(TILE_P, e.s0 - n0);
    const ulong ohw = (ulong)d.s6 * (ulong)d.s7;
    TILE_ACC_STORE(acc, v)
    for (int l = 0; l < nimg; l++) {
        const ulong base =
            y_off + ((ulong)(n0 + l) * (ulong)(d.s1 * d.s3) + (ulong)(g * d.s1 + o0)) * ohw + pos;
        for (int o = 0; o < nvalid; o++)
            y[base + (ulong)o * ohw] = v[l][o];
    }
}

/* As conv_tile over position-major tiles: work-item (i, z) takes tiles [i*per, (i+1)*per) of
 * the ntiles = OH*OW * e.s3 tiles of output-channel tile z. e last: the arguments before it
 * are conv_tile's. */
__kernel void conv_tile_edge(const __global float *restrict x, ulong x_off,
                             const __global float *restrict wp, ulong wp_off,
                             __global float *restrict y, ulong y_off, const int8 d, uint ntiles,
                             uint per, const int4 e) {
    const uint i = (uint)get_global_id(0);
    const int z = (int)get_global_id(1), notile = d.s2 / TILE_O;
    if (z >= notile * d.s3)
        return;
    const int g = z / notile, o0 = (z - g * notile) * TILE_O;
    for (uint t = i * per; t < (i + 1) * per && t < ntiles; t++)
        conv_tile_edge_one(x, x_off, wp, wp_off, y, y_off, d, e, t, g, o0);
}

/* dyt[g][n][pixel][opad] from dy[N][oc*groups][ohw], output channels zero-padded to opad.
 * Grid: {ohw, N, groups}. */
__kernel void conv_tile_dyt(const __global float *restrict dy, ulong dy_off,
                            __global float *restrict dyt, uint ohw, uint nimg, uint oc,
                            uint opad, uint groups) {
    const uint r = (uint)get_global_id(0), n = (uint)get_global_id(1);
    const uint g = (uint)get_global_id(2);
    if (r >= ohw || n >= nimg || g >= groups)
        return;
    const ulong src = dy_off + ((ulong)n * oc * groups + (ulong)g * oc) * ohw + r;
    const ulong dst = (((ulong)g * nimg + n) * ohw + r) * opad;
    for (uint o = 0; o < opad; o++)
        dyt[dst + o] = 0.0f;
    for (uint o = 0; o < oc; o++)
        dyt[dst + o] = dy[src + (ulong)o * ohw];
}

/* dw[g*OC + o][ic][kh][kw] = sum over pixels p of dy[p][o] * xp[ic][tap(kh, kw) + at(p)].
 * Lanes are TILE_P consecutive rows k = (ic*KH + kh)*KW + kw of dW^T. The pixels are split
 * into chunks of `chunk` images (grid dimension 2) so that a chunk's slice of dyt stays in
 * cache while every k tile reads it; chunk c writes its partial sums at dw + c*part_stride
 * (conv_tile_sum adds them up when there is more than one).
 * d: as conv_tile. Grid: {ceil(IC*KH*KW / TILE_P), OPAD/TILE_O * groups, chunks}. */
__kernel void conv_tile_dw(const __global float *restrict xp, ulong xp_off,
                           const __global float *restrict dyt, __global float *restrict dw,
                           ulong dw_off, ulong part_stride, const int8 d, uint nimg,
                           uint chunk) {
    const int kt = (int)get_global_id(0), z = (int)get_global_id(1);
    const uint c = (uint)get_global_id(2);
    const int notile = d.s2 / TILE_O, taps = KH * KW, nk = d.s0 * taps;
    if (kt * TILE_P >= nk || z >= notile * d.s3 || c * chunk >= nimg)
        return;
    const int g = z / notile, o0 = (z - g * notile) * TILE_O;
    const ulong hpwp = (ulong)d.s4 * (ulong)d.s5;
    const int icall = d.s0 * d.s3;
    ulong kl[TILE_P];
#pragma unroll
    for (int l = 0; l < TILE_P; l++) {
        const int k = min(kt * TILE_P + l, nk - 1);
        const int ic = k / taps, tt = k - ic * taps, kh = tt / KW, kw = tt - kh * KW;
        kl[l] = (ulong)(g * d.s0 + ic) * hpwp + (ulong)(kh * DH) * d.s5 + kw * DW;
    }
    TILE_ACC_ZERO(acc)
    const uint ohw = (uint)(d.s6 * d.s7), n0 = c * chunk, n1 = min(nimg, n0 + chunk);
    const __global float *dp = dyt + ((ulong)g * nimg * ohw + (ulong)n0 * ohw) * d.s2 + o0;
    for (uint n = n0; n < n1; n++) {
        const __global float *xn = xp + xp_off + (ulong)n * icall * hpwp;
        for (int oh = 0; oh < d.s6; oh++) {
            /* Lane pointers per row, indexed by one shared column offset: base + index
             * addressing, no per-pixel offset arithmetic (which the compiler would otherwise
             * do in vector registers and extract lane by lane). */
            const __global float *xq[TILE_P];
#pragma unroll
            for (int l = 0; l < TILE_P; l++)
                xq[l] = xn + (ulong)(oh * SH) * d.s5 + kl[l];
            for (int ow = 0; ow < d.s7; ow++) {
                TILE_MADD(acc, dp, xq, ow * SW);
                dp += d.s2;
            }
        }
    }
    const int nvalid = min(TILE_O, d.s1 - o0);
    const int nrows = min(TILE_P, nk - kt * TILE_P);
    const ulong base = dw_off + c * part_stride + (ulong)(g * d.s1 + o0) * nk + kt * TILE_P;
#pragma unroll
    for (int l = 0; l < TILE_P; l++) {
        if (l >= nrows)
            continue;
        float v[TILE_O];
#pragma unroll
        for (int u = 0; u < NV; u++)
            VSTORE(acc[l][u], u, v);
        for (int o = 0; o < nvalid; o++)
            dw[base + (ulong)l + (ulong)o * nk] = v[o];
    }
}

/* dw as conv_tile_dw, with block rows (ic0 + l, kh, kw): q = tap * ceil(IC/TILE_P) + channel
 * tile; lanes past the last channel repeat it and are not stored. x unpadded; d: as
 * conv_tile_dw but s4 H, s5 W; e (last: the arguments before it are conv_tile_dw's): s0 PT,
 * s1 PL.
 * Grid: {KH*KW * ceil(IC / TILE_P), OPAD/TILE_O * groups, chunks}. */
__kernel void conv_tile_dw_edge(const __global float *restrict x, ulong x_off,
                                const __global float *restrict dyt, __global float *restrict dw,
                                ulong dw_off, ulong part_stride, const int8 d, uint nimg,
                                uint chunk, const int2 e) {
    const int q = (int)get_global_id(0), z = (int)get_global_id(1);
    const uint c = (uint)get_global_id(2);
    const int notile = d.s2 / TILE_O, taps = KH * KW, nct = (d.s0 + TILE_P - 1) / TILE_P;
    if (q >= nct * taps || z >= notile * d.s3 || c * chunk >= nimg)
        return;
    const int tap = q / nct, ic0 = (q - tap * nct) * TILE_P, kh = tap / KW, kw = tap - kh * KW;
    const int g = z / notile, o0 = (z - g * notile) * TILE_O;
    const ulong hw = (ulong)d.s4 * (ulong)d.s5;
    const int icall = d.s0 * d.s3;
    /* output rows [r.x, r.y) and columns [s.x, s.y) whose tap lands inside x */
    const int a = e.s0 - kh * DH, b = e.s1 - kw * DW;
    const int2 r = edge_range(a, SH, d.s4, d.s6), s = edge_range(b, SW, d.s5, d.s7);
    ulong xl[TILE_P];
#pragma unroll
    for (int l = 0; l < TILE_P; l++)
        xl[l] = (ulong)(g * d.s0 + min(ic0 + l, d.s0 - 1)) * hw;
    TILE_ACC_ZERO(acc)
    const uint ohw = (uint)(d.s6 * d.s7), n0 = c * chunk, n1 = min(nimg, n0 + chunk);
    for (uint n = n0; n < n1; n++) {
        const __global float *xn = x + x_off + (ulong)n * icall * hw;
        for (int oh = r.x; oh < r.y; oh++) {
            const ulong row = (ulong)(oh * SH - a) * d.s5 + (ulong)(s.x * SW - b);
            const __global float *xq[TILE_P];
#pragma unroll
            for (int l = 0; l < TILE_P; l++)
                xq[l] = xn + xl[l] + row;
            const __global float *dp =
                dyt + (((ulong)g * nimg + n) * ohw + (ulong)oh * d.s7 + s.x) * d.s2 + o0;
            for (int ow = 0; ow < s.y - s.x; ow++) {
                TILE_MADD(acc, dp, xq, ow * SW);
                dp += d.s2;
            }
        }
    }
    const int nvalid = min(TILE_O, d.s1 - o0), nrows = min(TILE_P, d.s0 - ic0);
    const ulong base = dw_off + c * part_stride + ((ulong)(g * d.s1 + o0) * d.s0 + ic0) * taps + tap;
    TILE_ACC_STORE(acc, v)
    for (int l = 0; l < nrows; l++)
        for (int o = 0; o < nvalid; o++)
            dw[base + (ulong)l * taps + (ulong)o * d.s0 * taps] = v[l][o];
}

/* y[i] = sum over c < parts of x[c*n + i], in chunk order (deterministic). Grid: {n}. */
__kernel void conv_tile_sum(const __global float *restrict x, ulong x_off,
                            __global float *restrict y, ulong y_off, uint n, uint parts) {
    const uint i = (uint)get_global_id(0);
    if (i >= n)
        return;
    float s = 0.0f;
    for (uint c = 0; c < parts; c++)
        s += x[x_off + (ulong)c * n + i];
    y[y_off + i] = s;
}
