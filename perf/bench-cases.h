/* The op shapes `kiln bench` times, in one list shared with the op test harness:
   tests/cases-{gemm,conv,pool,eltwise}.c register every shape below as a harness case (the
   network layers at the smallest benchmark input and a test-sized batch), so each geometry the
   benchmark times is also compared with the cpu backend on every backend by
   test-backend-ops. The networks follow frontend/zoo (alexnet: torchvision widths, 3x3/2
   max pooling with ceil; vgg16 and vgg16-narrow: 3x3 convolutions, 2x2/2 pooling). Header
   only: the test program and the CLI are separate executables. */
#ifndef KILN_BENCH_CASES_H
#define KILN_BENCH_CASES_H

#include <stdio.h>
#include <string.h>

/* (Functions, not arrays: an array a file does not use would be an unused-variable warning.) */

/* GEMM sweep, M x N x K: square sizes, a VGG 3x3 layer as im2col GEMM (64 filters, 56x56,
   64 channels x 9) and a fully connected layer (batch 64, 4096 -> 4096, as W x^T). Returns 0
   past the end. */
static inline int kiln_bench_gemm_shape(int i, int mnk[3]) {
    static const int s[][3] = {
        {256, 256, 256}, {512, 512, 512}, {1024, 1024, 1024}, {64, 3136, 576}, {4096, 64, 4096}};
    if (i < 0 || i >= (int)(sizeof s / sizeof s[0])) return 0;
    memcpy(mnk, s[i], sizeof s[i]);
    return 1;
}

enum { KILN_BENCH_ALEXNET, KILN_BENCH_VGG16, KILN_BENCH_VGG16N, KILN_BENCH_NNETS };
static inline const char *kiln_bench_net_name(int net) {
    return net == KILN_BENCH_ALEXNET ? "alexnet" : net == KILN_BENCH_VGG16 ? "vgg16" : "vgg16n";
}
/* The benchmark's input sizes (0 past the end). */
static inline int kiln_bench_input(int i) {
    return i == 0 ? 32 : i == 1 ? 64 : i == 2 ? 224 : 0;
}
/* The inputs at which the harness registers a network's layers (0 past the end): every one for
   AlexNet (about 0.7 GFLOP an image at 224), the first for the VGGs (tens of GFLOP at 224). */
static inline int kiln_bench_test_input(int net, int i) {
    return net == KILN_BENCH_ALEXNET ? kiln_bench_input(i) : i == 0 ? kiln_bench_input(0) : 0;
}

/* One layer of a network at one input size: a convolution (k > 0) or the max pooling in front
   of the next convolution (pool_k > 0, k == 0). Batch is the caller's. */
typedef struct kiln_bench_layer {
    int net, input;
    char name[12]; /* conv1, b1c1, pool2 ... */
    int c, h, w;   /* input */
    int o, k, s, p;
    int pool_k, pool_s; /* max pooling window and stride (ceil mode) */
} kiln_bench_layer;

static inline int kiln_bench_pool_out(int s, int k, int st) {
    if (s < k) return 0;
    int o = (s - k + st - 1) / st + 1;
    return (o - 1) * st >= s ? o - 1 : o; /* the last window starts inside the input */
}

/* The conv and pooling layers of `net` at `input` x `input`, in order; returns how many. */
static inline int kiln_bench_net_layers(int net, int input, kiln_bench_layer *out, int cap) {
    int n = 0, s = input;
    if (net == KILN_BENCH_ALEXNET) {
        static const struct {
            const char *name;
            int c, o, k, st, p, pool_after;
        } a[] = {{"conv1", 3, 64, 11, 4, 2, 1},
                 {"conv2", 64, 192, 5, 1, 2, 1},
                 {"conv3", 192, 384, 3, 1, 1, 0},
                 {"conv4", 384, 256, 3, 1, 1, 0},
                 {"conv5", 256, 256, 3, 1, 1, 1}};
        for (int i = 0; i < 5 && s >= 1 && n < cap; i++) {
            out[n] = (kiln_bench_layer){net,    input,  "",      a[i].c, s, s,
                                        a[i].o, a[i].k, a[i].st, a[i].p, 0, 0};
            snprintf(out[n++].name, sizeof out[0].name, "%s", a[i].name);
            s = (s + 2 * a[i].p - a[i].k) / a[i].st + 1;
            if (a[i].pool_after && s >= 3 && n < cap) {
                out[n] = (kiln_bench_layer){net, input, "", a[i].o, s, s, 0, 0, 0, 0, 3, 2};
                snprintf(out[n++].name, sizeof out[0].name, "pool%u", (unsigned char)(i + 1));
                s = kiln_bench_pool_out(s, 3, 2);
            }
        }
        return n;
    }
    static const int convs[5] = {2, 2, 3, 3, 3};
    static const int wide[5] = {64, 128, 256, 512, 512}, narrow[5] = {32, 64, 96, 128, 128};
    const int *width = net == KILN_BENCH_VGG16 ? wide : narrow;
    int c = 3;
    for (int b = 0; b < 5 && s >= 1; b++) {
        for (int j = 0; j < convs[b] && n < cap; j++) {
            out[n] = (kiln_bench_layer){net, input, "", c, s, s, width[b], 3, 1, 1, 0, 0};
            snprintf(out[n++].name, sizeof out[0].name, "b%uc%u", (unsigned char)(b + 1),
                     (unsigned char)(j + 1));
            c = width[b];
        }
        if (s >= 2 && n < cap) {
            out[n] = (kiln_bench_layer){net, input, "", c, s, s, 0, 0, 0, 0, 2, 2};
            snprintf(out[n++].name, sizeof out[0].name, "pool%u", (unsigned char)(b + 1));
        }
        s = kiln_bench_pool_out(s, 2, 2);
    }
    return n;
}

/* The fused uint8 -> float conversion of a batch of NHWC images: the two training-step
   batches and an ImageNet-size one, {N, H, W, C}. Returns 0 past the end. */
static inline int kiln_bench_convert_shape(int i, int nhwc[4]) {
    static const int s[][4] = {{64, 32, 32, 3}, {32, 64, 64, 3}, {32, 224, 224, 3}};
    if (i < 0 || i >= (int)(sizeof s / sizeof s[0])) return 0;
    memcpy(nhwc, s[i], sizeof s[i]);
    return 1;
}

#endif
