/* Op parameters and convenience entry points. Every op is also reachable as a tensor node:
   set dst->op, dst->src[] and memcpy the params struct into dst->op_params, then
   kiln_compute(be, dst). Tensors are NCHW f32 and contiguous unless stated. */
#ifndef KILN_OPS_H
#define KILN_OPS_H

#include <stdint.h>

#include "kiln/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- convolution ----
   CONV2D:            src0 x[N,C,H,W], src1 w[O,C/groups,KH,KW], src2 bias[O] or NULL
                      -> y[N,O,OH,OW], OH = (H + pad_t + pad_b - dil_h*(KH-1) - 1)/stride_h + 1
   CONV2D_BWD_DATA:   src0 dy[N,O,OH,OW], src1 w -> dx[N,C,H,W] (overwritten)
   CONV2D_BWD_FILTER: src0 x, src1 dy -> dw[O,C/groups,KH,KW] (overwritten)
   BIAS_GRAD:         src0 dy[N,C,...] (2 to 4 dims) -> db[C] = sum over all dims but 1 */
typedef struct kiln_conv2d_params {
    int32_t stride_h, stride_w;
    int32_t pad_t, pad_b, pad_l, pad_r;
    int32_t dil_h, dil_w;
    int32_t groups;
} kiln_conv2d_params;

/* ---- pooling ----
   POOL2D:     src0 x[N,C,H,W] -> y[N,C,OH,OW]
               OH = floor_or_ceil((H + pad_t + pad_b - KH)/stride_h) + 1; with ceil_mode the
               last window must start inside the input or top padding (PyTorch's rule).
               max: padding never wins; ties go to the first element in row-major window order.
               avg: divides by the window area clipped to input+padding when count_include_pad,
               else by the number of input elements in the window.
   POOL2D_BWD: src0 dy[N,C,OH,OW], src1 x -> dx[N,C,H,W] (overwritten); max routes each dy to
               its window's argmax (same tie rule), avg spreads it evenly.
   Global average pooling is POOL2D avg with the kernel the size of the input. */
typedef enum { KILN_POOL_MAX, KILN_POOL_AVG } kiln_pool_type;
typedef struct kiln_pool2d_params {
    int32_t type; /* kiln_pool_type */
    int32_t kernel_h, kernel_w;
    int32_t stride_h, stride_w;
    int32_t pad_t, pad_b, pad_l, pad_r;
    int32_t ceil_mode;
    int32_t count_include_pad;
} kiln_pool2d_params;

/* ---- local response normalization (across channels, AlexNet / PyTorch semantics) ----
   LRN:     src0 x[N,C,H,W] -> y = x / (k + alpha/size * sum_{c' in window(c)} x[c']^2)^beta,
            window(c) = [c - size/2, c + (size-1)/2] clipped to [0, C)
   LRN_BWD: src0 dy, src1 x -> dx (overwritten) */
typedef struct kiln_lrn_params {
    int32_t size;
    float alpha, beta, k;
} kiln_lrn_params;

/* ---- copies ----
   COPY:   src0 (any strides, up to 4 dims, f32/i32/u8) -> dst (any strides), same shape/dtype
   CONCAT: src0..src{n-1} (n <= 6) concatenated along dim `axis` -> dst */
typedef struct kiln_concat_params {
    int32_t axis;
} kiln_concat_params;

/* ---- elementwise ----
   ADD:      src0 a, src1 b (same shape) -> a + b
   MUL:      src0 a, src1 b (same shape) -> a * b
   BIAS_ADD: src0 x[N,C,...] (2 to 4 dims), src1 b[C] -> x + b broadcast along dim 1
   AXPBY:    src0 x (same shape as dst) -> dst = alpha * x + beta * dst (beta == 0: dst is not
             read). With alpha = s, beta = 0 and x == dst it scales in place.
   ACT:      src0 x -> f(x);  ACT_BWD: src0 dy, src1 x -> dy * f'(x)
             gelu is the exact erf form: x * 0.5 * (1 + erf(x / sqrt(2))). */
typedef struct kiln_axpby_params {
    float alpha, beta;
} kiln_axpby_params;
typedef enum {
    KILN_ACT_RELU,
    KILN_ACT_LEAKY_RELU, /* alpha: negative slope */
    KILN_ACT_ELU,        /* alpha */
    KILN_ACT_SIGMOID,
    KILN_ACT_TANH,
    KILN_ACT_GELU,
} kiln_act_type;
typedef struct kiln_act_params {
    int32_t type; /* kiln_act_type */
    float alpha;
} kiln_act_params;

/* ---- dropout ----
   DROPOUT:     src0 x -> y = keep ? x / (1 - p) : 0
   DROPOUT_BWD: src0 dy -> dx = keep ? dy / (1 - p) : 0  (same params: same mask)
   keep for element i (row-major index) is decided by Philox4x32-10 with key (seed_lo,
   seed_hi) and counter (lo, hi, 0, 0) of the 64-bit sum offset + i / 4 (offset = offset_hi:
   offset_lo): output word i % 4, kept when word >= threshold, threshold = (uint32)(p * 2^32)
   (computed by kiln_dropout). Bit-identical on every backend and device. */
typedef struct kiln_dropout_params {
    float p;
    uint32_t threshold;
    uint32_t seed_lo, seed_hi;
    uint32_t offset_lo, offset_hi;
} kiln_dropout_params;

/* ---- conversion ----
   U8_TO_F32: src0 u8[N,H,W,C] (C <= 4, HWC as decoded) -> dst f32[N,C,H,W],
              y = x * scale[c] + bias[c]. Rescale 1/255: scale = 1/255, bias = 0.
              Normalize: scale = 1/(255 std[c]), bias = -mean[c]/std[c]. */
typedef struct kiln_convert_params {
    float scale[4];
    float bias[4];
} kiln_convert_params;

/* ---- optimizers ----
   SUM_SQUARES: src0 x (any shape) -> dst[1] = sum x^2 (accumulated in at least f32 with
                pairwise/blocked reduction)
   SGD_UPDATE:  dst param (updated in place), src0 grad, src1 (unused, NULL), src2 velocity
                (updated in place; ignored when momentum == 0):
                g = grad * grad_scale + weight_decay * param
                v = momentum * v + g;  step = nesterov ? g + momentum * v : v
                param -= lr * step
   ADAM_UPDATE: dst param, src0 grad, src1 m, src2 v (m and v updated in place):
                g = grad * grad_scale (+ weight_decay * param when !decoupled)
                m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
                mhat = m / (1 - b1^t);  vhat = v / (1 - b2^t)
                param -= lr * (mhat / (sqrt(vhat) + eps) + (decoupled ? weight_decay * param : 0))
                (decoupled = AdamW) */
typedef struct kiln_sgd_params {
    float lr, momentum, weight_decay, grad_scale;
    int32_t nesterov;
} kiln_sgd_params;
typedef struct kiln_adam_params {
    float lr, beta1, beta2, eps, weight_decay, grad_scale;
    int32_t step; /* t >= 1 */
    int32_t decoupled;
} kiln_adam_params;

/* ---- batch normalization (per channel over N,H,W; x has 2 or 4 dims, dim 1 = C) ----
   BATCHNORM_STATS:      src0 x -> dst[2,C] = (mean, biased variance)
   BATCHNORM:            src0 x, src1 stats[2,C] (mean, var), src2 gamma[C], src3 beta[C]
                         -> y = (x - mean) / sqrt(var + eps) * gamma + beta. Inference passes
                         the running (mean, var) as stats.
   BATCHNORM_BWD_PARAMS: src0 dy, src1 x, src2 stats -> dst[2,C] = (dgamma, dbeta) =
                         (sum dy * xhat, sum dy)
   BATCHNORM_BWD:        src0 dy, src1 x, src2 stats, src3 gamma, src4 dparams[2,C]
                         -> dx = gamma * invstd / M * (M dy - dbeta - xhat dgamma), M = N*H*W
                         (training mode: the statistics are functions of x)
   Running statistics are updated with AXPBY. */
typedef struct kiln_bn_params {
    float eps;
} kiln_bn_params;

/* ---- loss and accuracy ----
   SOFTMAX_XENT:     src0 logits[N,K], src1 labels i32[N] -> loss[N] (per sample):
                     -sum_j t_j log softmax(logits)_j, t = (1 - s) onehot + s / K
   SOFTMAX_XENT_BWD: src0 logits, src1 labels -> dlogits[N,K] = scale * (softmax - t)
   ACCURACY:         src0 logits[N,K], src1 labels i32[N] -> f32[N]: 1 when the label's rank
                     < top_k, rank = #{j : l_j > l_y} + #{j < y : l_j == l_y}; else 0.
   A label outside [0, K) gives a NaN loss, a zero gradient row and accuracy 0 on every
   backend (the data pipeline rejects such labels before they are uploaded). */
typedef struct kiln_xent_params {
    float label_smoothing;
    float scale; /* backward only, usually 1/N */
} kiln_xent_params;
typedef struct kiln_accuracy_params {
    int32_t top_k;
} kiln_accuracy_params;

/* ---- convenience entry points (validate, build the node, compute) ---- */
kiln_status kiln_conv2d(kiln_backend_t be, const kiln_conv2d_params *p, kiln_tensor *x,
                        kiln_tensor *w, kiln_tensor *bias, kiln_tensor *y);
kiln_status kiln_conv2d_bwd_data(kiln_backend_t be, const kiln_conv2d_params *p, kiln_tensor *dy,
                                 kiln_tensor *w, kiln_tensor *dx);
kiln_status kiln_conv2d_bwd_filter(kiln_backend_t be, const kiln_conv2d_params *p, kiln_tensor *x,
                                   kiln_tensor *dy, kiln_tensor *dw);
kiln_status kiln_bias_grad(kiln_backend_t be, kiln_tensor *dy, kiln_tensor *db);
/* Output size of a convolution / pooling along one axis (0 or less when impossible). */
int64_t kiln_conv2d_out_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad_lo,
                             int64_t pad_hi, int64_t dilation);
int64_t kiln_pool2d_out_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad_lo,
                             int64_t pad_hi, int ceil_mode);

kiln_status kiln_pool2d(kiln_backend_t be, const kiln_pool2d_params *p, kiln_tensor *x,
                        kiln_tensor *y);
kiln_status kiln_pool2d_bwd(kiln_backend_t be, const kiln_pool2d_params *p, kiln_tensor *dy,
                            kiln_tensor *x, kiln_tensor *dx);
kiln_status kiln_lrn(kiln_backend_t be, const kiln_lrn_params *p, kiln_tensor *x, kiln_tensor *y);
kiln_status kiln_lrn_bwd(kiln_backend_t be, const kiln_lrn_params *p, kiln_tensor *dy,
                         kiln_tensor *x, kiln_tensor *dx);
kiln_status kiln_copy(kiln_backend_t be, kiln_tensor *src, kiln_tensor *dst);
kiln_status kiln_concat(kiln_backend_t be, int axis, kiln_tensor *const *srcs, int n,
                        kiln_tensor *dst);

kiln_status kiln_add(kiln_backend_t be, kiln_tensor *a, kiln_tensor *b, kiln_tensor *y);
kiln_status kiln_mul(kiln_backend_t be, kiln_tensor *a, kiln_tensor *b, kiln_tensor *y);
kiln_status kiln_bias_add(kiln_backend_t be, kiln_tensor *x, kiln_tensor *bias, kiln_tensor *y);
kiln_status kiln_axpby(kiln_backend_t be, float alpha, kiln_tensor *x, float beta, kiln_tensor *y);
kiln_status kiln_act(kiln_backend_t be, const kiln_act_params *p, kiln_tensor *x, kiln_tensor *y);
kiln_status kiln_act_bwd(kiln_backend_t be, const kiln_act_params *p, kiln_tensor *dy,
                         kiln_tensor *x, kiln_tensor *dx);
/* p in [0, 1); seed and offset select the mask (offset advances per step). */
kiln_status kiln_dropout(kiln_backend_t be, float p, uint64_t seed, uint64_t offset, kiln_tensor *x,
                         kiln_tensor *y);
kiln_status kiln_dropout_bwd(kiln_backend_t be, float p, uint64_t seed, uint64_t offset,
                             kiln_tensor *dy, kiln_tensor *dx);
kiln_status kiln_u8_to_f32(kiln_backend_t be, const kiln_convert_params *p, kiln_tensor *x,
                           kiln_tensor *y);
kiln_status kiln_sum_squares(kiln_backend_t be, kiln_tensor *x, kiln_tensor *out);
kiln_status kiln_sgd_update(kiln_backend_t be, const kiln_sgd_params *p, kiln_tensor *param,
                            kiln_tensor *grad, kiln_tensor *velocity);
kiln_status kiln_adam_update(kiln_backend_t be, const kiln_adam_params *p, kiln_tensor *param,
                             kiln_tensor *grad, kiln_tensor *m, kiln_tensor *v);

kiln_status kiln_batchnorm_stats(kiln_backend_t be, kiln_tensor *x, kiln_tensor *stats);
kiln_status kiln_batchnorm(kiln_backend_t be, const kiln_bn_params *p, kiln_tensor *x,
                           kiln_tensor *stats, kiln_tensor *gamma, kiln_tensor *beta,
                           kiln_tensor *y);
kiln_status kiln_batchnorm_bwd_params(kiln_backend_t be, const kiln_bn_params *p, kiln_tensor *dy,
                                      kiln_tensor *x, kiln_tensor *stats, kiln_tensor *dparams);
kiln_status kiln_batchnorm_bwd(kiln_backend_t be, const kiln_bn_params *p, kiln_tensor *dy,
                               kiln_tensor *x, kiln_tensor *stats, kiln_tensor *gamma,
                               kiln_tensor *dparams, kiln_tensor *dx);
kiln_status kiln_softmax_xent(kiln_backend_t be, const kiln_xent_params *p, kiln_tensor *logits,
                              kiln_tensor *labels, kiln_tensor *loss);
kiln_status kiln_softmax_xent_bwd(kiln_backend_t be, const kiln_xent_params *p, kiln_tensor *logits,
                                  kiln_tensor *labels, kiln_tensor *dlogits);
kiln_status kiln_accuracy(kiln_backend_t be, int top_k, kiln_tensor *logits, kiln_tensor *labels,
                          kiln_tensor *correct);

#ifdef __cplusplus
}
#endif
#endif
