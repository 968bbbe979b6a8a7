/* Elementwise, dropout, conversion and optimizer ops on the host: the reference every other
   backend is compared with. Validation guarantees contiguous tensors of matching shapes, so
   everything is a loop over flat element numbers. */
#include <math.h>
#include <string.h>

#include "../../philox.h"
#include "cpu-ops.h"

static float *f32(const kiln_tensor *t) {
    return (float *)kiln_tensor_host_data(t);
}

static size_t count(const kiln_tensor *t) {
    return (size_t)kiln_tensor_nelements(t);
}

kiln_status kiln_cpu_add(kiln_backend_t be, kiln_tensor *dst) {
    const float *a = f32(dst->src[0]), *b = f32(dst->src[1]);
    float *y = f32(dst);
    for (size_t i = 0, n = count(dst); i < n; i++) y[i] = a[i] + b[i];
    return KILN_OK;
}

kiln_status kiln_cpu_mul(kiln_backend_t be, kiln_tensor *dst) {
    const float *a = f32(dst->src[0]), *b = f32(dst->src[1]);
    float *y = f32(dst);
    for (size_t i = 0, n = count(dst); i < n; i++) y[i] = a[i] * b[i];
    return KILN_OK;
}

kiln_status kiln_cpu_bias_add(kiln_backend_t be, kiln_tensor *dst) {
    const float *x = f32(dst->src[0]), *b = f32(dst->src[1]);
    float *y = f32(dst);
    size_t outer = (size_t)dst->shape[0], ch = (size_t)dst->shape[1], inner = 1;
    for (int d = 2; d < dst->ndim; d++) inner *= (size_t)dst->shape[d];
    for (size_t o = 0; o < outer; o++)
        for (size_t c = 0; c < ch; c++) {
            size_t base = (o * ch + c) * inner;
            for (size_t i = 0; i < inner; i++) y[base + i] = x[base + i] + b[c];
        }
    return KILN_OK;
}

kiln_status kiln_cpu_axpby(kiln_backend_t be, kiln_tensor *dst) {
    kiln_axpby_params p;
    memcpy(&p, dst->op_params, sizeof p);
    const float *x = f32(dst->src[0]);
    float *y = f32(dst);
    size_t n = count(dst);
    if (p.beta == 0.0f)
        for (size_t i = 0; i < n; i++) y[i] = p.alpha * x[i];
    else
        for (size_t i = 0; i < n; i++) y[i] = p.alpha * x[i] + p.beta * y[i];
    return KILN_OK;
}

/* The forms of kernels/eltwise.cl, which avoid cancellation in the tails: sigmoid and the
   sech^2 of tanh' from e = exp(-|x|) (never overflows). gelu is the erf form of ops.h. */
static float act_f(int type, float alpha, float x) {
    switch (type) {
    case KILN_ACT_RELU:
        return x > 0.0f ? x : 0.0f;
    case KILN_ACT_LEAKY_RELU:
        return x > 0.0f ? x : alpha * x;
    case KILN_ACT_ELU:
        return x > 0.0f ? x : alpha * expm1f(x);
    case KILN_ACT_SIGMOID: {
        float e = expf(-fabsf(x)), s = 1.0f / (1.0f + e);
        return x >= 0.0f ? s : e * s;
    }
    case KILN_ACT_TANH:
        return tanhf(x);
    default: /* KILN_ACT_GELU */
        return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    }
}

static float act_df(int type, float alpha, float x) {
    switch (type) {
    case KILN_ACT_RELU:
        return x > 0.0f ? 1.0f : 0.0f;
    case KILN_ACT_LEAKY_RELU:
        return x > 0.0f ? 1.0f : alpha;
    case KILN_ACT_ELU:
        return x > 0.0f ? 1.0f : alpha * expf(x);
    case KILN_ACT_SIGMOID: {
        float e = expf(-fabsf(x)), d = 1.0f + e;
        return e / (d * d);
    }
    case KILN_ACT_TANH: {
        float e = expf(-2.0f * fabsf(x)), d = 1.0f + e;
        return 4.0f * e / (d * d);
    }
    default: /* KILN_ACT_GELU: Phi(x) + x phi(x) */
        return 0.5f * (1.0f + erff(x * 0.70710678118654752f)) +
               x * 0.39894228040143268f * expf(-0.5f * x * x);
    }
}

kiln_status kiln_cpu_act(kiln_backend_t be, kiln_tensor *dst) {
    kiln_act_params p;
    memcpy(&p, dst->op_params, sizeof p);
    const float *x = f32(dst->src[0]);
    float *y = f32(dst);
    for (size_t i = 0, n = count(dst); i < n; i++) y[i] = act_f(p.type, p.alpha, x[i]);
    return KILN_OK;
}

kiln_status kiln_cpu_act_bwd(kiln_backend_t be, kiln_tensor *dst) {
    kiln_act_params p;
    memcpy(&p, dst->op_params, sizeof p);
    const float *dy = f32(dst->src[0]), *x = f32(dst->src[1]);
    float *dx = f32(dst);
    for (size_t i = 0, n = count(dst); i < n; i++) dx[i] = dy[i] * act_df(p.type, p.alpha, x[i]);
    return KILN_OK;
}

/* DROPOUT and DROPOUT_BWD apply the same mask and scale to their one source. */
static kiln_status dropout(kiln_tensor *dst) {
    kiln_dropout_params p;
    memcpy(&p, dst->op_params, sizeof p);
    const float *x = f32(dst->src[0]);
    float *y = f32(dst);
    float scale = kiln_dropout_scale(p.p);
    size_t n = count(dst);
    for (size_t q = 0; q * 4 < n; q++) {
        uint32_t w[4];
        kiln_dropout_words(p.seed_lo, p.seed_hi, p.offset_lo, p.offset_hi, q, w);
        for (size_t j = 0; j < 4 && q * 4 + j < n; j++) {
            size_t i = q * 4 + j;
            y[i] = w[j] >= p.threshold ? x[i] * scale : 0.0f;
        }
    }
    return KILN_OK;
}

kiln_status kiln_cpu_dropout(kiln_backend_t be, kiln_tensor *dst) {
    return dropout(dst);
}

kiln_status kiln_cpu_dropout_bwd(kiln_backend_t be, kiln_tensor *dst) {
    return dropout(dst);
}

kiln_status kiln_cpu_u8_to_f32(kiln_backend_t be, kiln_tensor *dst) {
    kiln_convert_params p;
    memcpy(&p, dst->op_params, sizeof p);
    const kiln_tensor *xt = dst->src[0];
    const uint8_t *x = kiln_tensor_host_data(xt);
    float *y = f32(dst);
    size_t nb = (size_t)xt->shape[0], hw = (size_t)(xt->shape[1] * xt->shape[2]);
    size_t ch = (size_t)xt->shape[3];
    for (size_t b = 0; b < nb; b++)
        for (size_t c = 0; c < ch; c++) {
            const uint8_t *src = x + b * hw * ch + c;
            float *out = y + (b * ch + c) * hw;
            for (size_t i = 0; i < hw; i++) out[i] = (float)src[i * ch] * p.scale[c] + p.bias[c];
        }
    return KILN_OK;
}

/* Float lanes within blocks bound the rounding error by the block length; the blocks are
   summed in double. */
#define SSQ_BLOCK 4096
#define SSQ_LANES 8

kiln_status kiln_cpu_sum_squares(kiln_backend_t be, kiln_tensor *dst) {
    const float *x = f32(dst->src[0]);
    size_t n = count(dst->src[0]);
    double total = 0.0;
    for (size_t b = 0; b < n; b += SSQ_BLOCK) {
        size_t end = n - b < SSQ_BLOCK ? n : b + SSQ_BLOCK;
        float lane[SSQ_LANES] = {0};
        size_t i = b;
        for (; i + SSQ_LANES <= end; i += SSQ_LANES)
            for (int l = 0; l < SSQ_LANES; l++) lane[l] += x[i + l] * x[i + l];
        for (; i < end; i++) lane[0] += x[i] * x[i];
        for (int l = 0; l < SSQ_LANES; l++) total += lane[l];
    }
    f32(dst)[0] = (float)total;
    return KILN_OK;
}

kiln_status kiln_cpu_sgd_update(kiln_backend_t be, kiln_tensor *dst) {
    kiln_sgd_params p;
    memcpy(&p, dst->op_params, sizeof p);
    float *w = f32(dst), *v = dst->src[2] ? f32(dst->src[2]) : NULL;
    const float *g = f32(dst->src[0]);
    for (size_t i = 0, n = count(dst); i < n; i++) {
        float gi = g[i] * p.grad_scale + p.weight_decay * w[i];
        float step = gi;
        if (p.momentum != 0.0f) {
            float vi = p.momentum * v[i] + gi;
            v[i] = vi;
            step = p.nesterov ? gi + p.momentum * vi : vi;
        }
        w[i] -= p.lr * step;
    }
    return KILN_OK;
}

kiln_status kiln_cpu_adam_update(kiln_backend_t be, kiln_tensor *dst) {
    kiln_adam_params p;
    memcpy(&p, dst->op_params, sizeof p);
    float *w = f32(dst), *m = f32(dst->src[1]), *v = f32(dst->src[2]);
    const float *g = f32(dst->src[0]);
    /* Bias corrections in double: beta^t underflows gracefully and 1 - beta^t keeps its
       digits for small t. */
    float bc1 = (float)(1.0 - pow(p.beta1, p.step)), bc2 = (float)(1.0 - pow(p.beta2, p.step));
    for (size_t i = 0, n = count(dst); i < n; i++) {
        float gi = g[i] * p.grad_scale;
        if (!p.decoupled) gi += p.weight_decay * w[i];
        float mi = p.beta1 * m[i] + (1.0f - p.beta1) * gi;
        float vi = p.beta2 * v[i] + (1.0f - p.beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float upd = (mi / bc1) / (sqrtf(vi / bc2) + p.eps);
        if (p.decoupled) upd += p.weight_decay * w[i];
        w[i] -= p.lr * upd;
    }
    return KILN_OK;
}
