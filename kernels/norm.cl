/* kiln batch normalization, softmax cross-entropy and accuracy.
 *
 * Batch normalization reduces per channel over N*H*W. x is viewed as N blocks of [C, HW];
 * element e (0 <= e < M = N*HW) of channel c lives at (e / HW * C + c) * HW + e % HW.
 * The reductions are two-stage: the host splits each channel into G chunks, one
 * work-group per (chunk, channel) reduces its chunk through local memory and writes one
 * partial; with G > 1 a merge kernel combines the G partials of each channel. With G == 1
 * the partials already are the [2,C] result, so small problems take one launch.
 *
 * Every kernel reads its work-group size at run time and folds any width, and the
 * grouped kernels skip groups past their work (the launcher may shrink the work-group and
 * so add groups). Softmax rows get one work-group each.
 *
 * OpenCL C 1.2, f32, no extensions.
 */

/* A reduction of v over the work-group whose result every item gets. s holds
 * get_local_size(0) elements. The fold halves the live width rounding up, so any
 * work-group size works. */
#define KILN_GROUP_REDUCE(NAME, T, COMBINE)                                                 \
    T NAME(T v, __local T *s)                                                               \
    {                                                                                       \
        const uint l = get_local_id(0);                                                     \
        uint w = get_local_size(0);                                                         \
        s[l] = v;                                                                           \
        barrier(CLK_LOCAL_MEM_FENCE);                                                       \
        while (w > 1) {                                                                     \
            const uint h = (w + 1) / 2;                                                     \
            if (l < w - h) {                                                                \
                const T a = s[l], b = s[l + h];                                             \
                s[l] = COMBINE;                                                             \
            }                                                                               \
            barrier(CLK_LOCAL_MEM_FENCE);                                                   \
            w = h;                                                                          \
        }                                                                                   \
        const T r = s[0];                                                                   \
        /* Before anyone overwrites s for the next reduction. */                            \
        barrier(CLK_LOCAL_MEM_FENCE);                                                       \
        return r;                                                                           \
    }

KILN_GROUP_REDUCE(group_sum, float, a + b)
KILN_GROUP_REDUCE(group_count, uint, a + b)
KILN_GROUP_REDUCE(group_max, float, b > a ? b : a)

/* Offset of element e of channel c. */
ulong bn_index(uint e, uint C, uint c, uint hw)
{
    const uint b = e / hw;
    return ((ulong)b * C + c) * hw + (e - b * hw);
}

/* ---- batch statistics and parameter gradients: grid (>= G * wg, C), work-group (wg, 1) ----
 * Chunk g of channel c covers elements [g * chunk, min(m, (g + 1) * chunk)); the host picks
 * chunk and G so that no chunk is empty. Partial p of channel c and chunk g is stored at
 * part[part_off + (p * C + c) * G + g]. */

#define KILN_BN_CHUNK                                                                       \
    const uint g = get_group_id(0), c = get_group_id(1);                                    \
    if (g >= G || c >= C)                                                                   \
        return;                                                                             \
    const uint l = get_local_id(0), wg = get_local_size(0);                                 \
    const uint start = g * chunk, end = min(m, start + chunk);                              \
    __global float *out = part + part_off + (ulong)c * G + g;                               \
    const ulong out_stride = (ulong)C * G;

/* (mean, biased variance) of a chunk in two passes: the centered second pass keeps the
 * variance's precision when the mean is large against the spread (E[x^2] - E[x]^2 loses
 * it all in float). The second read of the chunk mostly hits in cache. */
__kernel void kiln_bn_stats_partial(const __global float *x, ulong x_off, uint C, uint hw,
                                    uint m, uint chunk, uint G, __global float *part,
                                    ulong part_off, __local float *scratch)
{
    KILN_BN_CHUNK
    x += x_off;
    float s = 0.0f;
    for (uint e = start + l; e < end; e += wg)
        s += x[bn_index(e, C, c, hw)];
    const float n = (float)(end - start);
    const float mean = group_sum(s, scratch) / n;
    float q = 0.0f;
    for (uint e = start + l; e < end; e += wg) {
        const float d = x[bn_index(e, C, c, hw)] - mean;
        q += d * d;
    }
    const float var = group_sum(q, scratch) / n;
    if (l == 0) {
        out[0] = mean;
        out[out_stride] = var;
    }
}

/* (dgamma, dbeta) = (sum dy * xhat, sum dy) of a chunk. */
__kernel void kiln_bn_bwd_params_partial(const __global float *dy, ulong dy_off,
                                         const __global float *x, ulong x_off,
                                         const __global float *stats, ulong stats_off, float eps,
                                         uint C, uint hw, uint m, uint chunk, uint G,
                                         __global float *part, ulong part_off,
                                         __local float *scratch)
{
    KILN_BN_CHUNK
    dy += dy_off;
    x += x_off;
    stats += stats_off;
    const float mean = stats[c], invstd = 1.0f / sqrt(stats[C + c] + eps);
    float sg = 0.0f, sb = 0.0f;
    for (uint e = start + l; e < end; e += wg) {
        const ulong i = bn_index(e, C, c, hw);
        sg += dy[i] * (x[i] - mean);
        sb += dy[i];
    }
    sg = group_sum(sg, scratch);
    sb = group_sum(sb, scratch);
    if (l == 0) {
        out[0] = sg * invstd;
        out[out_stride] = sb;
    }
}

/* ---- merges: one work-item per channel, partials in chunk order ---- */

/* Chan et al.'s pairwise combination of (count, mean, M2): every term is non-negative, so
 * merging loses no more precision than the chunks had. */
__kernel void kiln_bn_stats_merge(const __global float *part, ulong part_off, uint C, uint G,
                                  uint m, uint chunk, __global float *dst, ulong dst_off)
{
    const uint c = get_global_id(0);
    if (c >= C)
        return;
    part += part_off + (ulong)c * G;
    const ulong var_at = (ulong)C * G;
    float n = 0.0f, mean = 0.0f, m2 = 0.0f;
    for (uint g = 0; g < G; ++g) {
        const float nb = (float)min(chunk, m - g * chunk), tot = n + nb;
        const float delta = part[g] - mean;
        mean += delta * (nb / tot);
        m2 += part[var_at + g] * nb + delta * delta * (n * nb / tot);
        n = tot;
    }
    dst[dst_off + c] = mean;
    dst[dst_off + C + c] = m2 / n;
}

/* Plain sums of the partials (the parameter gradients); same signature as the stats merge. */
__kernel void kiln_bn_sum_merge(const __global float *part, ulong part_off, uint C, uint G,
                                uint m, uint chunk, __global float *dst, ulong dst_off)
{
    const uint c = get_global_id(0);
    if (c >= C)
        return;
    part += part_off + (ulong)c * G;
    const ulong at = (ulong)C * G;
    float s0 = 0.0f, s1 = 0.0f;
    for (uint g = 0; g < G; ++g) {
        s0 += part[g];
        s1 += part[at + g];
    }
    dst[dst_off + c] = s0;
    dst[dst_off + C + c] = s1;
}

/* ---- elementwise: grid (>= hw, >= rows = N * C), row r is channel r % C ---- */

__kernel void kiln_bn_forward(const __global float *x, ulong x_off, const __global float *stats,
                              ulong stats_off, const __global float *gamma, ulong gamma_off,
                              const __global float *beta, ulong beta_off, __global float *y,
                              ulong y_off, uint C, uint hw, uint rows, float eps)
{
    const uint i = get_global_id(0), r = get_global_id(1);
    if (i >= hw || r >= rows)
        return;
    const uint c = r % C;
    stats += stats_off;
    const float scale = gamma[gamma_off + c] / sqrt(stats[C + c] + eps);
    const ulong o = (ulong)r * hw + i;
    y[y_off + o] = (x[x_off + o] - stats[c]) * scale + beta[beta_off + c];
}

/* dx = gamma invstd (dy - dbeta / M - xhat dgamma / M): the training-mode gradient, where
 * the batch statistics are functions of x. */
__kernel void kiln_bn_backward(const __global float *dy, ulong dy_off, const __global float *x,
                               ulong x_off, const __global float *stats, ulong stats_off,
                               const __global float *gamma, ulong gamma_off,
                               const __global float *dparams, ulong dparams_off,
                               __global float *dx, ulong dx_off, uint C, uint hw, uint rows,
                               float eps, float m)
{
    const uint i = get_global_id(0), r = get_global_id(1);
    if (i >= hw || r >= rows)
        return;
    const uint c = r % C;
    stats += stats_off;
    dparams += dparams_off;
    const float invstd = 1.0f / sqrt(stats[C + c] + eps);
    const float k = gamma[gamma_off + c] * invstd;
    const float db = dparams[C + c] / m, dg = dparams[c] * invstd / m;
    const ulong o = (ulong)r * hw + i;
    dx[dx_off + o] = k * (dy[dy_off + o] - db - (x[x_off + o] - stats[c]) * dg);
}

/* ---- softmax rows: grid (>= n * wg), one work-group per row ----
 * All three take (smoothing, scale, top_k) and ignore what they do not use. A label outside
 * [0, k) gives a NaN loss, a zero gradient row and accuracy 0. */

#define KILN_ROW                                                                            \
    const uint row = get_group_id(0);                                                       \
    if (row >= n)                                                                           \
        return;                                                                             \
    const uint l = get_local_id(0), wg = get_local_size(0);                                 \
    const __global float *lr = logits + l_off + (ulong)row * k;                             \
    const int y = labels[lab_off + row];                                                    \
    const int valid = y >= 0 && (uint)y < k;

/* log sum exp of a row through its maximum, so no exp overflows. */
float row_lse(const __global float *r, uint k, __local float *s)
{
    const uint l = get_local_id(0), wg = get_local_size(0);
    float mx = -INFINITY;
    for (uint j = l; j < k; j += wg)
        mx = r[j] > mx ? r[j] : mx;
    mx = group_max(mx, s);
    float e = 0.0f;
    for (uint j = l; j < k; j += wg)
        e += exp(r[j] - mx);
    return mx + log(group_sum(e, s));
}

/* loss = sum_j t_j (lse - l_j) with t = (1 - s) onehot + s / k: every term is >= 0. */
__kernel void kiln_softmax_xent(const __global float *logits, ulong l_off,
                                const __global int *labels, ulong lab_off, __global float *loss,
                                ulong loss_off, uint n, uint k, float smoothing, float scale,
                                uint top_k, __local float *scratch)
{
    KILN_ROW
    const float lse = row_lse(lr, k, scratch);
    float u = 0.0f;
    if (smoothing != 0.0f) {
        for (uint j = l; j < k; j += wg)
            u += lse - lr[j];
        u = group_sum(u, scratch);
    }
    if (l == 0)
        loss[loss_off + row] =
            valid ? (1.0f - smoothing) * (lse - lr[y]) + smoothing / (float)k * u : NAN;
}

/* dlogits = scale (softmax - t). */
__kernel void kiln_softmax_xent_bwd(const __global float *logits, ulong l_off,
                                    const __global int *labels, ulong lab_off,
                                    __global float *dl, ulong dl_off, uint n, uint k,
                                    float smoothing, float scale, uint top_k,
                                    __local float *scratch)
{
    KILN_ROW
    const float lse = row_lse(lr, k, scratch);
    __global float *dr = dl + dl_off + (ulong)row * k;
    const float base = smoothing / (float)k;
    /* A trip count uniform over the work-group with the bound as a guard inside: PoCL 3.1
     * ran this loop's body for work-items past k when it was written `j = l; j < k; j += wg`
     * after the last barrier, storing past the row. */
    for (uint j0 = 0; j0 < k; j0 += wg) {
        const uint j = j0 + l;
        if (j < k) {
            const float t = (int)j == y ? base + (1.0f - smoothing) : base;
            dr[j] = valid ? scale * (exp(lr[j] - lse) - t) : 0.0f;
        }
    }
}

/* Correct when rank(y) = #{j : l_j > l_y} + #{j < y : l_j == l_y} is below top_k. */
__kernel void kiln_accuracy(const __global float *logits, ulong l_off,
                            const __global int *labels, ulong lab_off, __global float *correct,
                            ulong correct_off, uint n, uint k, float smoothing, float scale,
                            uint top_k, __local float *scratch)
{
    KILN_ROW
    uint rank = 0;
    if (valid) {
        const float ly = lr[y];
        for (uint j = l; j < k; j += wg)
            rank += lr[j] > ly || ((int)j < y && lr[j] == ly);
    }
    rank = group_count(rank, (__local uint *)scratch);
    if (l == 0)
        correct[correct_off + row] = valid && rank < top_k ? 1.0f : 0.0f;
}
