/* kiln SGEMM: C = alpha * op(A) * op(B) + beta * C, row-major, fp32, strided batched.
 *
 * BLIS-style split:
 *   kiln_gemm_pack_a/_b  copy op(A) (op(B)^T) into contiguous panels of TILE_M (TILE_N)
 *                        rows, k-major inside a panel, zero-padded to a whole panel.
 *                        They absorb transposes, leading dimensions, element offsets and
 *                        ragged edges so the hot loop never sees them.
 *   kiln_gemm_compute    one work-item owns a TILE_M x TILE_N block of C held in
 *                        registers and streams one A panel and one B panel through it:
 *                        per k step it loads TILE_N contiguous B values as vectors and
 *                        broadcasts TILE_M A values, i.e. TILE_M * TILE_N / VEC_N vector
 *                        FMAs per TILE_M + TILE_N / VEC_N loads. It can also read A, and
 *                        a non-transposed B, in place (strided addressing) when packing
 *                        would cost more than it saves; the host decides.
 * No local memory and no barriers: PoCL runs a work-group as a plain loop on one core,
 * and on a CPU the L1/L2 caches do what local memory would do on a GPU. On a GPU the
 * same code is correct, just not tuned (kiln uses CLBlast there).
 *
 * Panel layout produced by the pack kernel (per batch entry):
 *   panel t, k index p, lane r  ->  dst[(t * K + p) * width + r]
 * with width = TILE_M for A and TILE_N for B; the host keeps both in sync through the
 * build options below.
 *
 * OpenCL C 1.2, no extensions.
 */

/* Rows of C per work-item (register tile height). */
#ifndef TILE_M
#define TILE_M 8
#endif
/* Columns of C per work-item (register tile width); multiple of VEC_N. */
#ifndef TILE_N
#define TILE_N 32
#endif
/* Vector width for B loads / C accumulators: 1, 2, 4, 8 or 16. On AVX-512 float16 is
 * one zmm register. */
#ifndef VEC_N
#define VEC_N 16
#endif
/* Hand-unroll factor of the k loop in the compute kernel (1 = no unrolling). */
#ifndef K_UNROLL
#define K_UNROLL 4
#endif

#if TILE_N % VEC_N != 0
#error "TILE_N must be a multiple of VEC_N"
#endif
#define NVEC (TILE_N / VEC_N)

#define KILN_CAT_(a, b) a##b
#define KILN_CAT(a, b) KILN_CAT_(a, b)

#if VEC_N == 1
typedef float vec_t;
#define VLOAD(i, p) ((p)[(i)])
#define VSTORE(x, i, p) ((p)[(i)] = (x))
#elif VEC_N == 2 || VEC_N == 4 || VEC_N == 8 || VEC_N == 16
typedef KILN_CAT(float, VEC_N) vec_t;
#define VLOAD(i, p) KILN_CAT(vload, VEC_N)((i), (p))
#define VSTORE(x, i, p) KILN_CAT(vstore, VEC_N)((x), (i), (p))
#else
#error "VEC_N must be 1, 2, 4, 8 or 16"
#endif

/* Pack a `rows` x `k` matrix X (element (r, p) at src[off + r*rs + p*ks]) into panels
 * of W rows. One work-item writes one k index of one panel: W contiguous floats, so
 * stores stream; the strided side of the read is whichever of rs/ks is not 1. Rows past
 * `rows` are written as zeros so the compute kernel needs no edge tests in its k loop
 * (zeros contribute nothing to the dot products). W is a compile-time constant (one
 * kernel per operand) so the copy unrolls into straight vector code.
 * Grid: (>= k, panels, batch). */
#define KILN_GEMM_PACK(NAME, W)                                                             \
    __kernel void NAME(const __global float *restrict src, ulong off, ulong rs, ulong ks,   \
                       ulong stride, __global float *restrict dst, ulong dst_off,           \
                       ulong dst_stride, uint rows, uint k)                                 \
    {                                                                                       \
        const uint p = (uint)get_global_id(0);                                              \
        const uint t = (uint)get_global_id(1);                                              \
        const ulong bt = get_global_id(2);                                                  \
        if (p >= k)                                                                         \
            return;                                                                         \
        const __global float *s = src + off + bt * stride + (ulong)p * ks;                  \
        __global float *d = dst + dst_off + bt * dst_stride + ((ulong)t * k + p) * (W);     \
        const uint r0 = t * (W);                                                            \
        const uint valid = rows - r0 < (W) ? rows - r0 : (W);                               \
        s += (ulong)r0 * rs;                                                                \
        if (valid == (W) && rs == 1) {                                                      \
            _Pragma("unroll") for (int r = 0; r < (W); ++r) d[r] = s[r];                    \
        } else {                                                                            \
            _Pragma("unroll") for (int r = 0; r < (W); ++r)                                 \
                d[r] = (uint)r < valid ? s[(ulong)r * rs] : 0.0f;                           \
        }                                                                                   \
    }

KILN_GEMM_PACK(kiln_gemm_pack_a, TILE_M)
KILN_GEMM_PACK(kiln_gemm_pack_b, TILE_N)

/* Compute one TILE_M x TILE_N block of C.
 *
 * Operands are addressed through strides so the same code reads packed panels or the
 * caller's matrices directly (the host skips packing where it buys nothing, e.g. a
 * non-transposed A is already k-contiguous per row):
 *   op(A)(ti*TILE_M + r, p)  at  a[a_off + ti*a_ps + r*a_rs + p*a_ks]
 *   op(B)(p, tj*TILE_N + c)  at  b[b_off + tj*b_ps + p*b_ks + c]       (unit column stride)
 * Packed A: a_ps = k*TILE_M, a_rs = 1, a_ks = TILE_M. Direct row-major A: a_ps =
 * TILE_M*lda, a_rs = lda, a_ks = 1. Packed B: b_ps = k*TILE_N, b_ks = TILE_N. Direct
 * row-major B: b_ps = TILE_N, b_ks = ldb.
 * Rows of A past m are clamped to row m-1 (valid memory, results discarded). Packed B
 * panels are zero-padded to TILE_N columns (b_padded = 1); for B read in place, the
 * ragged last column of tiles loads lane by lane with clamping, since a vector load
 * could run past the end of the buffer.
 *
 * Grid: (>= ceil(m/TILE_M), >= ceil(n/TILE_N), batch); dimension 0 walks down M so
 * that consecutive work-groups (which PoCL hands to a core in order) reuse the same B
 * panel from cache while A streams. A stride of 0 broadcasts an operand. */
/* One k step: TILE_M broadcasts of A against NVEC vectors of B. */
#define KILN_GEMM_KSTEP(LOAD_B)                                                             \
    {                                                                                       \
        vec_t bv[NVEC];                                                                     \
        LOAD_B;                                                                             \
        _Pragma("unroll") for (int i = 0; i < TILE_M; ++i)                                  \
        {                                                                                   \
            const vec_t av = (vec_t)(a[ar[i]]);                                             \
            _Pragma("unroll") for (int v = 0; v < NVEC; ++v) acc[i][v] =                    \
                KILN_MADD(av, bv[v], acc[i][v]);                                            \
        }                                                                                   \
        a += a_ks;                                                                          \
        b += b_ks;                                                                          \
    }

/* Unrolled by hand: "#pragma unroll N" on a loop with a runtime trip count is not
 * honoured by every compiler (PoCL's LLVM refuses it with a warning). */
#define KILN_GEMM_KLOOP(LOAD_B)                                                             \
    {                                                                                       \
        uint p = 0;                                                                         \
        for (; p + K_UNROLL <= kk; p += K_UNROLL)                                           \
            _Pragma("unroll") for (int u_ = 0; u_ < K_UNROLL; ++u_) KILN_GEMM_KSTEP(LOAD_B) \
        for (; p < kk; ++p)                                                                 \
            KILN_GEMM_KSTEP(LOAD_B)                                                         \
    }

#define KILN_LOAD_B_VEC _Pragma("unroll") for (int v = 0; v < NVEC; ++v) bv[v] = VLOAD(v, b)

__kernel void kiln_gemm_compute(const __global float *restrict a, ulong a_off,
                                ulong a_stride, ulong a_ps, ulong a_rs, ulong a_ks,
                                const __global float *restrict b, ulong b_off,
                                ulong b_stride, ulong b_ps, ulong b_ks, uint b_padded,
                                __global float *c,
                                ulong c_off, ulong ldc, ulong c_stride, uint m, uint n,
                                uint k, float alpha, float beta)
{
    const uint ti = (uint)get_global_id(0);
    const uint tj = (uint)get_global_id(1);
    const ulong bt = get_global_id(2);
    /* The grid is padded up to a multiple of the work-group size; no barriers follow,
     * so returning early is safe. */
    if (ti >= (m + TILE_M - 1) / TILE_M || tj >= (n + TILE_N - 1) / TILE_N)
        return;
    const uint i0 = ti * TILE_M, j0 = tj * TILE_N;
    const uint rows = m - i0 < TILE_M ? m - i0 : TILE_M;
    const uint cols = n - j0 < TILE_N ? n - j0 : TILE_N;

    a += a_off + bt * a_stride + (ulong)ti * a_ps;
    b += b_off + bt * b_stride + (ulong)tj * b_ps;
    ulong ar[TILE_M];
#pragma unroll
    for (int i = 0; i < TILE_M; ++i)
        ar[i] = (ulong)((uint)i < rows ? (uint)i : rows - 1) * a_rs;

    vec_t acc[TILE_M][NVEC];
#pragma unroll
    for (int i = 0; i < TILE_M; ++i)
#pragma unroll
        for (int v = 0; v < NVEC; ++v)
            acc[i][v] = (vec_t)(0.0f);

    /* BLAS semantics: alpha == 0 must not touch A or B (they may hold Inf/NaN). */
    const uint kk = alpha == 0.0f ? 0u : k;
    if (cols == TILE_N || b_padded) {
        KILN_GEMM_KLOOP(KILN_LOAD_B_VEC)
    } else {
        uint bc[TILE_N];
#pragma unroll
        for (int j = 0; j < TILE_N; ++j)
            bc[j] = (uint)j < cols ? (uint)j : cols - 1;
        /* Gather through a private array so it works for any VEC_N. */
#define KILN_LOAD_B_LANES                                                                   \
    {                                                                                       \
        float lane_[TILE_N];                                                                \
        _Pragma("unroll") for (int j_ = 0; j_ < TILE_N; ++j_) lane_[j_] = b[bc[j_]];        \
        _Pragma("unroll") for (int v = 0; v < NVEC; ++v) bv[v] = VLOAD(v, lane_);           \
    }
        KILN_GEMM_KLOOP(KILN_LOAD_B_LANES)
    }

    __global float *cp = c + c_off + bt * c_stride + (ulong)i0 * ldc + j0;
    /* beta == 0 must not read C: it may be uninitialised (NaN) memory. */
    const int read_c = beta != 0.0f;
    if (cols == TILE_N) {
#pragma unroll
        for (int i = 0; i < TILE_M; ++i) {
            if ((uint)i < rows) {
                __global float *row = cp + (ulong)i * ldc;
#pragma unroll
                for (int v = 0; v < NVEC; ++v) {
                    vec_t r = alpha * acc[i][v];
                    if (read_c)
                        r += beta * VLOAD(v, row);
                    VSTORE(r, v, row);
                }
            }
        }
    } else {
        /* Ragged right edge: lanes are addressed through a private copy (works for any
         * VEC_N). Loops over i and v are fully unrolled so acc[][] is only indexed by
         * constants and stays in registers. */
#pragma unroll
        for (int i = 0; i < TILE_M; ++i) {
            if ((uint)i >= rows)
                continue;
            __global float *row = cp + (ulong)i * ldc;
#pragma unroll
            for (int v = 0; v < NVEC; ++v) {
                float lane[VEC_N];
                VSTORE(acc[i][v], 0, lane);
#pragma unroll
                for (int e = 0; e < VEC_N; ++e) {
                    const uint j = (uint)(v * VEC_N + e);
                    if (j < cols) {
                        float r = alpha * lane[e];
                        if (read_c)
                            r += beta * row[j];
                        row[j] = r;
                    }
                }
            }
        }
    }
}
