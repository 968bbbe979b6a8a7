/* Convolution cases: every geometry runs as conv2d, conv2d_bwd_data and conv2d_bwd_filter
   (compared across backends); the small ones also check conv2d's gradients w.r.t. x, w and
   bias computed with the backward ops and bias_grad. Geometries cover batch 1 and > 1,
   channels 1..64, 1x1 to 11x11 kernels, strides with odd sizes, padding larger than 1 and
   asymmetric, dilation, groups, and a case large enough for the opencl backend to split the
   batch into several workspace chunks. */
#include <stdio.h>
#include <string.h>

#include "bench-cases.h"
#include "harness.h"

typedef struct conv_case {
    int n, c, h, w, o, kh, kw, bias;
    kiln_conv2d_params p;
} conv_case;

static int64_t out_h(const conv_case *k) {
    return kiln_conv2d_out_size(k->h, k->kh, k->p.stride_h, k->p.pad_t, k->p.pad_b, k->p.dil_h);
}
static int64_t out_w(const conv_case *k) {
    return kiln_conv2d_out_size(k->w, k->kw, k->p.stride_w, k->p.pad_l, k->p.pad_r, k->p.dil_w);
}

static kiln_status input_x(const tcase *c, tctx *x, int idx) {
    const conv_case *k = (const void *)c->p;
    int64_t s[4] = {k->n, k->c, k->h, k->w};
    return kiln_case_input(c, x, idx, KILN_F32, 4, s, -1, 1);
}
static kiln_status input_w(const tcase *c, tctx *x, int idx) {
    const conv_case *k = (const void *)c->p;
    int64_t s[4] = {k->o, k->c / k->p.groups, k->kh, k->kw};
    return kiln_case_input(c, x, idx, KILN_F32, 4, s, -1, 1);
}
static kiln_status input_dy(const tcase *c, tctx *x, int idx) {
    const conv_case *k = (const void *)c->p;
    int64_t s[4] = {k->n, k->o, out_h(k), out_w(k)};
    return kiln_case_input(c, x, idx, KILN_F32, 4, s, -1, 1);
}

static kiln_status conv_build(const tcase *c, tctx *x) {
    const conv_case *k = (const void *)c->p;
    int64_t ys[4] = {k->n, k->o, out_h(k), out_w(k)}, bs[1] = {k->o};
    kiln_status st;
    if ((st = input_x(c, x, 0)) || (st = input_w(c, x, 1)) ||
        (k->bias && (st = kiln_case_input(c, x, 2, KILN_F32, 1, bs, -1, 1))) ||
        (st = kiln_case_output(c, x, KILN_F32, 4, ys, 0)))
        return st;
    kiln_case_node(x, KILN_OP_CONV2D, &k->p, sizeof k->p, k->bias ? 0x7 : 0x3);
    return KILN_OK;
}

static kiln_status bwd_data_build(const tcase *c, tctx *x) {
    const conv_case *k = (const void *)c->p;
    int64_t xs[4] = {k->n, k->c, k->h, k->w};
    kiln_status st;
    if ((st = input_dy(c, x, 0)) || (st = input_w(c, x, 1)) ||
        (st = kiln_case_output(c, x, KILN_F32, 4, xs, 0)))
        return st;
    kiln_case_node(x, KILN_OP_CONV2D_BWD_DATA, &k->p, sizeof k->p, 0x3);
    return KILN_OK;
}

static kiln_status bwd_filter_build(const tcase *c, tctx *x) {
    const conv_case *k = (const void *)c->p;
    int64_t ws[4] = {k->o, k->c / k->p.groups, k->kh, k->kw};
    kiln_status st;
    if ((st = input_x(c, x, 0)) || (st = input_dy(c, x, 1)) ||
        (st = kiln_case_output(c, x, KILN_F32, 4, ws, 0)))
        return st;
    kiln_case_node(x, KILN_OP_CONV2D_BWD_FILTER, &k->p, sizeof k->p, 0x3);
    return KILN_OK;
}

/* The definition, in double, straight from ops.h. */
static void conv_forward_f64(const tcase *c, double *const *in, double *out) {
    const conv_case *k = (const void *)c->p;
    const kiln_conv2d_params *p = &k->p;
    int64_t oh = out_h(k), ow = out_w(k), cg = k->c / p->groups, og = k->o / p->groups;
    for (int n = 0; n < k->n; n++)
        for (int o = 0; o < k->o; o++) {
            int64_t g = o / og;
            for (int64_t y = 0; y < oh; y++)
                for (int64_t xo = 0; xo < ow; xo++) {
                    double s = in[2] ? in[2][o] : 0.0;
                    for (int64_t ci = 0; ci < cg; ci++)
                        for (int i = 0; i < k->kh; i++)
                            for (int j = 0; j < k->kw; j++) {
                                int64_t iy = y * p->stride_h - p->pad_t + i * p->dil_h;
                                int64_t ix = xo * p->stride_w - p->pad_l + j * p->dil_w;
                                if (iy < 0 || iy >= k->h || ix < 0 || ix >= k->w) continue;
                                s += in[0][((n * k->c + g * cg + ci) * k->h + iy) * k->w + ix] *
                                     in[1][((o * cg + ci) * k->kh + i) * k->kw + j];
                            }
                    out[((n * k->o + o) * oh + y) * ow + xo] = s;
                }
        }
}

static kiln_status conv_backward(const tcase *c, tctx *x, kiln_tensor *dy, kiln_tensor *grads) {
    const conv_case *k = (const void *)c->p;
    kiln_status st;
    if ((st = kiln_conv2d_bwd_data(x->be, &k->p, dy, &x->in[1], &grads[0])) ||
        (st = kiln_conv2d_bwd_filter(x->be, &k->p, &x->in[0], dy, &grads[1])))
        return st;
    return k->bias ? kiln_bias_grad(x->be, dy, &grads[2]) : KILN_OK;
}

static const op_kind conv_kind = {.family = "conv",
                                  .build = conv_build,
                                  .forward_f64 = conv_forward_f64,
                                  .backward = conv_backward,
                                  .grad_mask = 0x7};
static const op_kind bwd_data_kind = {.family = "conv", .build = bwd_data_build};
static const op_kind bwd_filter_kind = {.family = "conv", .build = bwd_filter_build};

static void add(conv_case k) {
    kiln_conv2d_params *p = &k.p;
    if (!p->stride_h) p->stride_h = 1;
    if (!p->stride_w) p->stride_w = p->stride_h;
    if (!p->dil_h) p->dil_h = 1;
    if (!p->dil_w) p->dil_w = p->dil_h;
    if (!p->groups) p->groups = 1;
    if (!k.kw) k.kw = k.kh;
    /* Gradient checks cost two double forwards per input element; Oclgrind runs these too. */
    double macs =
        (double)k.n * k.o * (double)(out_h(&k) * out_w(&k)) * (k.c / p->groups) * k.kh * k.kw;
    double elems = (double)k.n * k.c * k.h * k.w + (double)k.o * (k.c / p->groups) * k.kh * k.kw;
    int small = macs * elems <= 4e6 && macs <= 20000;
    char shape[160];
    snprintf(shape, sizeof shape,
             "n=%d c=%d h=%d w=%d o=%d k=%dx%d s=%dx%d p=%d,%d,%d,%d d=%dx%d g=%d", k.n, k.c, k.h,
             k.w, k.o, k.kh, k.kw, p->stride_h, p->stride_w, p->pad_t, p->pad_b, p->pad_l, p->pad_r,
             p->dil_h, p->dil_w, p->groups);
    kiln_add_case(&conv_kind, &k, sizeof k, small, "conv2d %s%s", shape, k.bias ? " bias" : "");
    if (k.bias) return; /* the backward ops do not see the bias */
    kiln_add_case(&bwd_data_kind, &k, sizeof k, small, "conv2d_bwd_data %s", shape);
    kiln_add_case(&bwd_filter_kind, &k, sizeof k, small, "conv2d_bwd_filter %s", shape);
}

/* Adds the geometry with and without bias (the bias-free one carries the backward cases). */
static void add2(conv_case k) {
    k.bias = 0;
    add(k);
    k.bias = 1;
    add(k);
}

#define PAD(t, b, l, r) .pad_t = t, .pad_b = b, .pad_l = l, .pad_r = r
#define PAD1(v)         PAD(v, v, v, v)

typedef struct bias_case {
    int ndim;
    int64_t shape[4];
} bias_case;

static kiln_status bias_grad_build(const tcase *c, tctx *x) {
    const bias_case *b = (const void *)c->p;
    kiln_status st;
    if ((st = kiln_case_input(c, x, 0, KILN_F32, b->ndim, b->shape, -1, 1)) ||
        (st = kiln_case_output(c, x, KILN_F32, 1, &b->shape[1], 0)))
        return st;
    kiln_case_node(x, KILN_OP_BIAS_GRAD, NULL, 0, 0x1);
    return KILN_OK;
}

static const op_kind bias_grad_kind = {.family = "conv", .build = bias_grad_build};

static void add_bias(int ndim, int64_t a, int64_t b, int64_t c, int64_t d) {
    bias_case k = {ndim, {a, b, c, d}};
    char dims[64];
    int len = 0;
    for (int i = 0; i < ndim; i++)
        len += snprintf(dims + len, sizeof dims - (size_t)len, "%s%lld", i ? "x" : "",
                        (long long)k.shape[i]);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= k.shape[i];
    kiln_add_case(&bias_grad_kind, &k, sizeof k, n <= 4096, "bias_grad dy=%s", dims);
}

void kiln_cases_conv(void) {
    /* spatial 1, the smallest convolution */
    add2((conv_case){.n = 1, .c = 1, .h = 1, .w = 1, .o = 1, .kh = 1});
    /* 1x1 (pointwise, the column matrix is the input), and 1x1 stride 2 */
    add2((conv_case){.n = 2, .c = 13, .h = 3, .w = 3, .o = 7, .kh = 1});
    add((conv_case){.n = 1, .c = 3, .h = 7, .w = 7, .o = 5, .kh = 1, .p = {.stride_h = 2}});
    /* 3x3 same padding, batch > 1, the first layer of a network (c=3) */
    add2((conv_case){.n = 2, .c = 3, .h = 5, .w = 5, .o = 4, .kh = 3, .p = {PAD1(1)}});
    /* stride 2 with odd, non-square sizes */
    add((conv_case){
        .n = 2, .c = 3, .h = 7, .w = 5, .o = 5, .kh = 3, .p = {.stride_h = 2, PAD1(1)}});
    add((conv_case){
        .n = 3, .c = 13, .h = 13, .w = 11, .o = 8, .kh = 3, .p = {.stride_h = 2, PAD1(1)}});
    /* 5x5, channels 7, non-square input */
    add2((conv_case){.n = 1, .c = 7, .h = 7, .w = 9, .o = 6, .kh = 5, .p = {PAD1(2)}});
    add((conv_case){.n = 2, .c = 7, .h = 13, .w = 11, .o = 12, .kh = 5, .bias = 1, .p = {PAD1(2)}});
    /* padding > 1: the output is larger than the input; a kernel larger than the input */
    add2((conv_case){.n = 1, .c = 2, .h = 4, .w = 3, .o = 2, .kh = 3, .p = {PAD1(3)}});
    add((conv_case){.n = 1, .c = 3, .h = 3, .w = 3, .o = 2, .kh = 5, .p = {PAD1(2)}});
    /* asymmetric padding (TensorFlow "same" with an even kernel or stride 2) */
    add2((conv_case){.n = 1, .c = 3, .h = 5, .w = 6, .o = 2, .kh = 3, .p = {PAD(0, 2, 1, 0)}});
    add((conv_case){
        .n = 2, .c = 3, .h = 8, .w = 8, .o = 4, .kh = 2, .p = {.stride_h = 2, PAD(0, 1, 0, 1)}});
    /* non-square kernel */
    add((conv_case){
        .n = 1, .c = 3, .h = 7, .w = 13, .o = 4, .kh = 1, .kw = 5, .p = {PAD(0, 0, 2, 2)}});
    /* dilation 2 */
    add2((conv_case){.n = 1, .c = 2, .h = 7, .w = 7, .o = 3, .kh = 3, .p = {PAD1(2), .dil_h = 2}});
    /* groups 2, and everything at once */
    add2((conv_case){.n = 2, .c = 4, .h = 6, .w = 6, .o = 4, .kh = 3, .p = {PAD1(1), .groups = 2}});
    add((conv_case){
        .n = 2, .c = 64, .h = 7, .w = 7, .o = 32, .kh = 3, .bias = 1, .p = {PAD1(1), .groups = 2}});
    add2((conv_case){.n = 2,
                     .c = 6,
                     .h = 13,
                     .w = 12,
                     .o = 4,
                     .kh = 3,
                     .p = {.stride_h = 2, PAD(1, 2, 2, 1), .dil_h = 2, .groups = 2}});
    /* AlexNet conv1 (11x11 stride 4, 3 -> 64) on a small input, and a tiny one */
    add2((conv_case){
        .n = 2, .c = 3, .h = 35, .w = 35, .o = 64, .kh = 11, .p = {.stride_h = 4, PAD1(2)}});
    add((conv_case){.n = 1,
                    .c = 3,
                    .h = 15,
                    .w = 15,
                    .o = 2,
                    .kh = 11,
                    .bias = 1,
                    .p = {.stride_h = 4, PAD1(2)}});
    /* single-channel input (MNIST), first VGG layer (3 -> 64 at 32x32) */
    add2((conv_case){.n = 4, .c = 1, .h = 32, .w = 32, .o = 8, .kh = 5, .p = {PAD1(2)}});
    add2((conv_case){.n = 2, .c = 3, .h = 32, .w = 32, .o = 64, .kh = 3, .p = {PAD1(1)}});
    /* 13 channels at 13x13, 64 channels at 32x32 (enough to split the batch into chunks) */
    add2((conv_case){.n = 2, .c = 13, .h = 13, .w = 13, .o = 16, .kh = 3, .p = {PAD1(1)}});
    add2((conv_case){.n = 8, .c = 64, .h = 32, .w = 32, .o = 64, .kh = 3, .p = {PAD1(1)}});
    /* 32 channels at 32x32: chunks of several images, the batch of 8 split as 3 + 3 + 2 */
    add((conv_case){.n = 8, .c = 32, .h = 32, .w = 32, .o = 32, .kh = 3, .p = {PAD1(1)}});
    /* batches that are not a whole number of edge tiles (8 images at one position): 9 on a
       2x2 map, 10 on a 3x3 one with 40 output channels (a partial channel tile) */
    add((conv_case){.n = 9, .c = 2, .h = 2, .w = 2, .o = 3, .kh = 3, .p = {PAD1(1)}});
    add((conv_case){.n = 10, .c = 16, .h = 3, .w = 3, .o = 40, .kh = 3, .p = {PAD1(1)}});
    /* a deep, small-spatial layer (VGG block 5 at 32x32 input) */
    add((conv_case){.n = 4, .c = 64, .h = 2, .w = 2, .o = 64, .kh = 3, .bias = 1, .p = {PAD1(1)}});

    /* every convolution `kiln bench` times (perf/bench-cases.h), at kiln_bench_test_input */
    for (int net = 0; net < KILN_BENCH_NNETS; net++)
        for (int in = 0; kiln_bench_test_input(net, in); in++) {
            kiln_bench_layer l[32];
            int nl = kiln_bench_net_layers(net, kiln_bench_test_input(net, in), l, 32);
            for (int i = 0; i < nl; i++)
                if (l[i].k)
                    add2((conv_case){.n = 3,
                                     .c = l[i].c,
                                     .h = l[i].h,
                                     .w = l[i].w,
                                     .o = l[i].o,
                                     .kh = l[i].k,
                                     .p = {.stride_h = l[i].s, PAD1(l[i].p)}});
        }

    add_bias(2, 5, 7, 0, 0);
    add_bias(3, 3, 4, 5, 0);
    add_bias(4, 2, 3, 5, 7);
    add_bias(4, 1, 13, 7, 7);
    add_bias(4, 8, 64, 32, 32);
    add_bias(2, 300, 1, 0, 0);
}
