/* kiln elementwise, dropout, conversion and optimizer kernels.
 *
 * Every tensor is contiguous and addressed as (global T *base, ulong off) with off in
 * elements; the host launches with a fixed work-group size and rounds the global size up, so
 * every kernel guards its index. Work-item i handles element i (coalesced on GPUs; PoCL
 * vectorizes across work-items), except dropout (one Philox call = four elements),
 * u8_to_f32 (a (pixel, channel, image) range) and the reduction.
 *
 * OpenCL C 1.2, no extensions.
 */

/* ---- ADD / MUL ---- */

#define BINARY_ADD 0
#define BINARY_MUL 1

kernel void kiln_binary(int op, global const float *a, ulong a_off, global const float *b,
                        ulong b_off, global float *y, ulong y_off, ulong n) {
    ulong i = get_global_id(0);
    if (i >= n) return;
    float u = a[a_off + i], v = b[b_off + i];
    y[y_off + i] = op == BINARY_ADD ? u + v : u * v;
}

/* ---- BIAS_ADD: x[outer, C, inner] + b[C] ---- */

kernel void kiln_bias_add(global const float *x, ulong x_off, global const float *b, ulong b_off,
                          global float *y, ulong y_off, ulong n, ulong channels, ulong inner) {
    ulong i = get_global_id(0);
    if (i >= n) return;
    y[y_off + i] = x[x_off + i] + b[b_off + (i / inner) % channels];
}

/* ---- AXPBY: y = alpha x + beta y; y is not read when beta == 0 (it may hold NaN) ---- */

kernel void kiln_axpby(global const float *x, ulong x_off, global float *y, ulong y_off, ulong n,
                       float alpha, float beta) {
    ulong i = get_global_id(0);
    if (i >= n) return;
    float r = alpha * x[x_off + i];
    if (beta != 0.0f) r += beta * y[y_off + i];
    y[y_off + i] = r;
}

/* ---- ACT / ACT_BWD: one kernel pair, the activation chosen by the build option ACT_TYPE
   (a runtime switch keeps PoCL from vectorizing across work-items: 10x slower for relu). The
   forms avoid cancellation in the tails: sigmoid and tanh' from e = exp(-|x|), never
   overflowing; elu's expm1 by its series near 0 (PoCL's expm1 is a slow scalar call). ---- */

#define ACT_RELU       0
#define ACT_LEAKY_RELU 1
#define ACT_ELU        2
#define ACT_SIGMOID    3
#define ACT_TANH       4
#define ACT_GELU       5

#ifndef ACT_TYPE
#define ACT_TYPE ACT_RELU
#endif

/* expm1(x) for x <= 0: the series to x^4 (relative error < 2e-7) where exp(x) - 1 would
   cancel. */
float act_expm1(float x) {
    float series = x * (1.0f + x * (0.5f + x * (0.16666667f + x * 0.041666668f)));
    return x > -0.0625f ? series : exp(x) - 1.0f;
}

float act_f(float alpha, float x) {
#if ACT_TYPE == ACT_RELU
    return x > 0.0f ? x : 0.0f;
#elif ACT_TYPE == ACT_LEAKY_RELU
    return x > 0.0f ? x : alpha * x;
#elif ACT_TYPE == ACT_ELU
    return x > 0.0f ? x : alpha * act_expm1(x);
#elif ACT_TYPE == ACT_SIGMOID
    float e = exp(-fabs(x)), s = 1.0f / (1.0f + e);
    return x >= 0.0f ? s : e * s;
#elif ACT_TYPE == ACT_TANH
    return tanh(x);
#elif ACT_TYPE == ACT_GELU
    return 0.5f * x * (1.0f + erf(x * 0.70710678118654752f));
#else
#error "ACT_TYPE must be 0 to 5 (kiln_act_type)"
#endif
}

float act_df(float alpha, float x) {
#if ACT_TYPE == ACT_RELU
    return x > 0.0f ? 1.0f : 0.0f;
#elif ACT_TYPE == ACT_LEAKY_RELU
    return x > 0.0f ? 1.0f : alpha;
#elif ACT_TYPE == ACT_ELU
    return x > 0.0f ? 1.0f : alpha * exp(x);
#elif ACT_TYPE == ACT_SIGMOID
    float e = exp(-fabs(x)), d = 1.0f + e;
    return e / (d * d);
#elif ACT_TYPE == ACT_TANH
    float e = exp(-2.0f * fabs(x)), d = 1.0f + e;
    return 4.0f * e / (d * d);
#else /* ACT_GELU: Phi(x) + x phi(x) */
    return 0.5f * (1.0f + erf(x * 0.70710678118654752f)) +
           x * 0.39894228040143268f * exp(-0.5f * x * x);
#endif
}

kernel void kiln_act(float alpha, global const float *x, ulong x_off, global float *y, ulong y_off,
                     ulong n) {
    ulong i = get_global_id(0);
    if (i >= n) return;
    y[y_off + i] = act_f(alpha, x[x_off + i]);
}

kernel void kiln_act_bwd(float alpha, global const float *dy, ulong dy_off, global const float *x,
                         ulong x_off, global float *dx, ulong dx_off, ulong n) {
    ulong i = get_global_id(0);
    if (i >= n) return;
    dx[dx_off + i] = dy[dy_off + i] * act_df(alpha, x[x_off + i]);
}

/* ---- Philox4x32-10: line for line the C copy in runtime/philox.h ---- */

#define KILN_PHILOX_M0 0xD2511F53u
#define KILN_PHILOX_M1 0xCD9E8D57u
#define KILN_PHILOX_W0 0x9E3779B9u /* golden ratio */
#define KILN_PHILOX_W1 0xBB67AE85u /* sqrt(3) - 1 */

/* Not mul_hi: PoCL leaves that a scalar call, 2.5x slower than the widening multiply. */
uint kiln_mulhi32(uint a, uint b) {
    return (uint)(((ulong)a * b) >> 32);
}

uint4 kiln_philox4x32_10(uint4 ctr, uint k0, uint k1) {
    uint c0 = ctr.x, c1 = ctr.y, c2 = ctr.z, c3 = ctr.w;
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k0 += KILN_PHILOX_W0;
            k1 += KILN_PHILOX_W1;
        }
        uint hi0 = kiln_mulhi32(KILN_PHILOX_M0, c0), lo0 = KILN_PHILOX_M0 * c0;
        uint hi1 = kiln_mulhi32(KILN_PHILOX_M1, c2), lo1 = KILN_PHILOX_M1 * c2;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    return (uint4)(c0, c1, c2, c3);
}

uint4 kiln_dropout_words(uint seed_lo, uint seed_hi, uint offset_lo, uint offset_hi, ulong q) {
    ulong c = ((((ulong)offset_hi) << 32) | offset_lo) + q;
    uint4 ctr = (uint4)((uint)c, (uint)(c >> 32), 0u, 0u);
    return kiln_philox4x32_10(ctr, seed_lo, seed_hi);
}

/* Exposes the generator itself, for the known-answer test (tests/test-philox.c). */
kernel void kiln_philox_test(global const uint *ctr_key, global uint *out, uint count) {
    uint i = (uint)get_global_id(0);
    if (i >= count) return;
    global const uint *in = ctr_key + 6 * i;
    uint4 r = kiln_philox4x32_10((uint4)(in[0], in[1], in[2], in[3]), in[4], in[5]);
    vstore4(r, i, out);
}

/* ---- DROPOUT / DROPOUT_BWD: y = word >= threshold ? x * scale : 0; work-item q owns
   elements 4q .. 4q+3, the four words of counter q ---- */

kernel void kiln_dropout(global const float *x, ulong x_off, global float *y, ulong y_off, ulong n,
                         uint threshold, float scale, uint seed_lo, uint seed_hi, uint offset_lo,
                         uint offset_hi) {
    ulong q = get_global_id(0), i = q * 4;
    if (i >= n) return;
    uint4 w = kiln_dropout_words(seed_lo, seed_hi, offset_lo, offset_hi, q);
    if (i + 4 <= n) {
        /* vload4/vstore4 need only float alignment */
        float4 v = vload4(0, x + x_off + i) * scale;
        vstore4(select((float4)(0.0f), v, w >= (uint4)(threshold)), 0, y + y_off + i);
        return;
    }
    uint wt[3] = {w.x, w.y, w.z}; /* the partial last counter: at most 3 elements */
    for (uint j = 0; i + j < n; j++)
        y[y_off + i + j] = wt[j] >= threshold ? x[x_off + i + j] * scale : 0.0f;
}

/* ---- U8_TO_F32: x u8[N,H,W,C] -> y f32[N,C,H,W], y = x * scale[c] + bias[c] ---- */

float pick(float4 v, uint c) {
    return c == 0 ? v.x : c == 1 ? v.y : c == 2 ? v.z : v.w;
}

/* One work-item per output element, so the float writes are coalesced (4x the bytes of the
   reads). The range is (pixel, channel, image): no index division (which also keeps Oclgrind
   away from the `freeze` instructions LLVM emits for div/rem pairs). */
kernel void kiln_u8_to_f32(global const uchar *x, ulong x_off, global float *y, ulong y_off,
                           ulong hw, uint channels, float4 scale, float4 bias) {
    ulong p = get_global_id(0), b = get_global_id(2);
    uint c = (uint)get_global_id(1);
    if (p >= hw || c >= channels) return;
    float v = (float)x[x_off + (b * hw + p) * channels + c];
    y[y_off + (b * channels + c) * hw + p] = v * pick(scale, c) + pick(bias, c);
}

/* ---- SUM_SQUARES, two stages, no atomics ----
   Stage 1: work-item t of nparts sums x[t * t_stride + k * k_stride] for k < iters into
   part[t]. The host picks interleaved (t_stride 1, k_stride nparts: coalesced on GPUs) or
   contiguous chunks (t_stride chunk, k_stride 1: one stream per work-item, as CPUs want; PoCL
   runs a work-group as a loop over its work-items). Either covers [0, n) exactly once.
   Stage 2: one work-group adds the parts in local memory. A work-group may run with fewer
   work-items than asked for (the host retries smaller sizes), so stage 2 lets group 0 do all
   of it with whatever local size it got, and any other group leaves at once. */

kernel void kiln_sum_squares_parts(global const float *x, ulong x_off, ulong n, ulong t_stride,
                                   ulong k_stride, ulong iters, global float *part, uint nparts) {
    uint t = (uint)get_global_id(0);
    if (t >= nparts) return;
    float s = 0.0f;
    ulong i = t * t_stride;
    for (ulong k = 0; k < iters && i < n; k++, i += k_stride) {
        float v = x[x_off + i];
        s += v * v;
    }
    part[t] = s;
}

/* CPU form: item t sums the contiguous chunk [t*per, (t+1)*per) (per is a multiple of 16),
 * one stream per core, instead of one scalar per work-item; sixteen independent sums let the
 * compiler keep them in one vector register. */
kernel void kiln_sum_squares_chunks(global const float *x, ulong x_off, ulong n, ulong per,
                                    global float *part, uint nparts) {
    uint t = (uint)get_global_id(0);
    if (t >= nparts) return;
    ulong i = t * per, end = min(n, i + per);
    const global float *p = x + x_off;
    float a[16];
    for (int j = 0; j < 16; j++) a[j] = 0.0f;
    for (; i + 16 <= end; i += 16)
        for (int j = 0; j < 16; j++) a[j] = KILN_MADD(p[i + j], p[i + j], a[j]);
    float s = 0.0f;
    for (; i < end; i++) s += p[i] * p[i];
    for (int j = 0; j < 16; j++) s += a[j];
    part[t] = s;
}

kernel void kiln_sum_parts(global const float *part, uint nparts, global float *y, ulong y_off,
                           local float *scratch) {
    if (get_group_id(0) != 0) return;
    uint lid = get_local_id(0), lsz = get_local_size(0);
    float s = 0.0f;
    for (uint t = lid; t < nparts; t += lsz) s += part[t];
    scratch[lid] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint active = lsz; active > 1;) {
        uint upper = (active + 1) / 2;
        if (lid + upper < active) scratch[lid] += scratch[lid + upper];
        barrier(CLK_LOCAL_MEM_FENCE);
        active = upper;
    }
    if (lid == 0) y[y_off] = scratch[0];
}

/* ---- SGD_UPDATE: param w, velocity v (not touched when momentum == 0) ---- */

/* SGD_VEC consecutive elements per work-item (8 with the CPU forms: one AVX2 register per
   array instead of PoCL packing lanes of separate work-items; 1 elsewhere). */
#ifndef SGD_VEC
#define SGD_VEC 1
#endif
kernel void kiln_sgd_update(global float *restrict w, ulong w_off,
                            global const float *restrict g, ulong g_off,
                            global float *restrict v, ulong v_off, ulong n, float lr,
                            float momentum, float weight_decay, float grad_scale, int nesterov) {
    const ulong i0 = get_global_id(0) * SGD_VEC;
    if (i0 >= n) return;
    global float *wp = w + w_off + i0, *vp = v + v_off + i0;
    global const float *gp = g + g_off + i0;
#if SGD_VEC == 8
    if (i0 + 8 <= n) {
        const float8 wi = vload8(0, wp), gi_ = vload8(0, gp) * grad_scale + weight_decay * wi;
        float8 step = gi_;
        if (momentum != 0.0f) {
            const float8 vi = momentum * vload8(0, vp) + gi_;
            vstore8(vi, 0, vp);
            step = nesterov ? gi_ + momentum * vi : vi;
        }
        vstore8(wi - lr * step, 0, wp);
        return;
    }
#endif
    const uint m = n - i0 < SGD_VEC ? (uint)(n - i0) : SGD_VEC;
    for (uint e = 0; e < m; e++) {
        const float wi = wp[e], gi = gp[e] * grad_scale + weight_decay * wi;
        float step = gi;
        if (momentum != 0.0f) {
            const float vi = momentum * vp[e] + gi;
            vp[e] = vi;
            step = nesterov ? gi + momentum * vi : vi;
        }
        wp[e] = wi - lr * step;
    }
}

/* ---- ADAM_UPDATE (decoupled = AdamW); bc1, bc2 = 1 - beta^t from the host ---- */

kernel void kiln_adam_update(global float *w, ulong w_off, global const float *g, ulong g_off,
                             global float *m, ulong m_off, global float *v, ulong v_off, ulong n,
                             float lr, float beta1, float beta2, float eps, float weight_decay,
                             float grad_scale, float bc1, float bc2, int decoupled) {
    ulong i = get_global_id(0);
    if (i >= n) return;
    float wi = w[w_off + i];
    float gi = g[g_off + i] * grad_scale;
    if (!decoupled) gi += weight_decay * wi;
    float mi = beta1 * m[m_off + i] + (1.0f - beta1) * gi;
    float vi = beta2 * v[v_off + i] + (1.0f - beta2) * gi * gi;
    m[m_off + i] = mi;
    v[v_off + i] = vi;
    float upd = (mi / bc1) / (sqrt(vi / bc2) + eps);
    if (decoupled) upd += weight_decay * wi;
    w[w_off + i] = wi - lr * upd;
}
