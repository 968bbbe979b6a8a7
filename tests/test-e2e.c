/* A few SGD steps of a tiny conv net (conv+bias, relu, max pool, dense, softmax
   cross-entropy) on every backend: the losses must agree with the cpu backend's and fall. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-util.h"
#include "kiln/kiln.h"

enum { N = 4, C = 3, H = 8, W = 8, O = 4, PH = 4, PW = 4, K = 3, FLAT = O * PH * PW, STEPS = 6 };

/* Only tensors: release() walks the struct as an array of them. */
typedef struct {
    kiln_tensor x, labels, w1, b1, c1, a1, p1, w2, b2, logits, loss;
    kiln_tensor dlogits, dw2, db2, dflat, da1, dc1, dw1, db1, dx;
    kiln_tensor v[4]; /* momentum for w1, b1, w2, b2 */
} net;

#define T(name, ...)                                                                               \
    do {                                                                                           \
        int64_t s_[] = {__VA_ARGS__};                                                              \
        st = kiln_tensor_alloc(&n->name, be, KILN_F32, (int)(sizeof s_ / sizeof s_[0]), s_);       \
        if (st) return st;                                                                         \
    } while (0)

static kiln_status set_uniform(kiln_tensor *t, uint64_t seed, float scale) {
    size_t n = (size_t)kiln_tensor_nelements(t);
    float *h = malloc(n * sizeof *h);
    if (!h) return KILN_OUT_OF_MEMORY;
    kiln_fill_uniform(h, n, seed);
    for (size_t i = 0; i < n; i++) h[i] *= scale;
    kiln_status st = kiln_tensor_set(t, h, n * sizeof *h);
    free(h);
    return st;
}

static kiln_status build(net *n, kiln_backend_t be) {
    kiln_status st;
    memset(n, 0, sizeof *n);
    T(x, N, C, H, W);
    T(w1, O, C, K, K);
    T(b1, O);
    T(c1, N, O, H, W);
    T(a1, N, O, H, W);
    T(p1, N, O, PH, PW);
    T(w2, FLAT, 3);
    T(b2, 3);
    T(logits, N, 3);
    T(loss, N);
    T(dlogits, N, 3);
    T(dw2, FLAT, 3);
    T(db2, 3);
    T(dflat, N, FLAT);
    T(da1, N, O, H, W);
    T(dc1, N, O, H, W);
    T(dw1, O, C, K, K);
    T(db1, O);
    T(dx, N, C, H, W);
    int64_t ls[1] = {N};
    if ((st = kiln_tensor_alloc(&n->labels, be, KILN_I32, 1, ls))) return st;
    int32_t labels[N] = {0, 2, 1, 2};
    if ((st = kiln_tensor_set(&n->labels, labels, sizeof labels))) return st;
    kiln_tensor *params[4] = {&n->w1, &n->b1, &n->w2, &n->b2};
    for (int i = 0; i < 4; i++) {
        if ((st = kiln_tensor_alloc(&n->v[i], be, KILN_F32, params[i]->ndim, params[i]->shape)))
            return st;
        size_t bytes = (size_t)kiln_tensor_nelements(params[i]) * 4;
        float *zero = calloc(1, bytes);
        st = zero ? kiln_tensor_set(&n->v[i], zero, bytes) : KILN_OUT_OF_MEMORY;
        free(zero);
        if (st) return st;
    }
    if ((st = set_uniform(&n->x, 1, 1.0f)) || (st = set_uniform(&n->w1, 2, 0.5f)) ||
        (st = set_uniform(&n->b1, 3, 0.1f)) || (st = set_uniform(&n->w2, 4, 0.2f)) ||
        (st = set_uniform(&n->b2, 5, 0.1f)))
        return st;
    return KILN_OK;
}

/* One forward/backward/update; returns the mean loss. */
static kiln_status step(net *n, kiln_backend_t be, double *mean_loss) {
    kiln_status st;
    kiln_conv2d_params cp = {.stride_h = 1,
                             .stride_w = 1,
                             .pad_t = 1,
                             .pad_b = 1,
                             .pad_l = 1,
                             .pad_r = 1,
                             .dil_h = 1,
                             .dil_w = 1,
                             .groups = 1};
    kiln_act_params relu = {.type = KILN_ACT_RELU};
    kiln_pool2d_params pp = {
        .type = KILN_POOL_MAX, .kernel_h = 2, .kernel_w = 2, .stride_h = 2, .stride_w = 2};
    kiln_xent_params xp = {.label_smoothing = 0.0f, .scale = 1.0f / N};
    kiln_sgd_params sp = {.lr = 0.1f, .momentum = 0.9f, .grad_scale = 1.0f};
    /* The pooled activations seen as a [N, FLAT] matrix, and its gradient as NCHW. */
    kiln_tensor flat, dp1;
    int64_t fs[2] = {N, FLAT}, ps[4] = {N, O, PH, PW};
    if ((st = kiln_tensor_view(&flat, &n->p1, 2, fs, NULL, 0)) ||
        (st = kiln_tensor_view(&dp1, &n->dflat, 4, ps, NULL, 0)))
        return st;
    if ((st = kiln_conv2d(be, &cp, &n->x, &n->w1, &n->b1, &n->c1)) ||
        (st = kiln_act(be, &relu, &n->c1, &n->a1)) || (st = kiln_pool2d(be, &pp, &n->a1, &n->p1)) ||
        (st = kiln_gemm(be, 0, 0, 1.0f, &flat, &n->w2, 0.0f, &n->logits)) ||
        (st = kiln_bias_add(be, &n->logits, &n->b2, &n->logits)) ||
        (st = kiln_softmax_xent(be, &xp, &n->logits, &n->labels, &n->loss)))
        return st;
    float loss[N];
    if ((st = kiln_tensor_get(&n->loss, loss, sizeof loss))) return st;
    *mean_loss = 0;
    for (int i = 0; i < N; i++) *mean_loss += loss[i] / N;
    if ((st = kiln_softmax_xent_bwd(be, &xp, &n->logits, &n->labels, &n->dlogits)) ||
        (st = kiln_gemm(be, 1, 0, 1.0f, &flat, &n->dlogits, 0.0f, &n->dw2)) ||
        (st = kiln_bias_grad(be, &n->dlogits, &n->db2)) ||
        (st = kiln_gemm(be, 0, 1, 1.0f, &n->dlogits, &n->w2, 0.0f, &n->dflat)) ||
        (st = kiln_pool2d_bwd(be, &pp, &dp1, &n->a1, &n->da1)) ||
        (st = kiln_act_bwd(be, &relu, &n->da1, &n->c1, &n->dc1)) ||
        (st = kiln_conv2d_bwd_filter(be, &cp, &n->x, &n->dc1, &n->dw1)) ||
        (st = kiln_bias_grad(be, &n->dc1, &n->db1)) ||
        (st = kiln_conv2d_bwd_data(be, &cp, &n->dc1, &n->w1, &n->dx)))
        return st;
    kiln_tensor *params[4] = {&n->w1, &n->b1, &n->w2, &n->b2};
    kiln_tensor *grads[4] = {&n->dw1, &n->db1, &n->dw2, &n->db2};
    for (int i = 0; i < 4; i++)
        if ((st = kiln_sgd_update(be, &sp, params[i], grads[i], &n->v[i]))) return st;
    return kiln_backend_synchronize(be);
}

static void release(net *n) {
    kiln_tensor *all = &n->x;
    for (size_t i = 0; i < sizeof *n / sizeof *all; i++) kiln_tensor_release(&all[i]);
}

static int run(kiln_backend_t be, double losses[STEPS]) {
    net n;
    kiln_status st = build(&n, be);
    for (int s = 0; !st && s < STEPS; s++) st = step(&n, be, &losses[s]);
    if (st) printf("%s: %s: %s\n", kiln_backend_name(be), kiln_status_name(st), kiln_last_error());
    release(&n);
    return st == KILN_OK;
}

int main(void) {
    const char *names[3] = {"cpu", "opencl", "clblast"};
    double ref[STEPS], got[STEPS];
    int passed = 0, failed = 0;
    for (int b = 0; b < 3; b++) {
        kiln_backend_t be;
        if (kiln_backend_init(names[b], NULL, &be)) {
            printf("skipping %s: %s\n", names[b], kiln_last_error());
            continue;
        }
        int ok = run(be, b ? got : ref);
        double worst = 0;
        for (int s = 0; ok && s < STEPS; s++) {
            double v = b ? got[s] : ref[s];
            printf("%-8s step %d loss %.6f\n", names[b], s, v);
            if (b) worst = fmax(worst, fabs(got[s] - ref[s]) / fmax(1e-6, fabs(ref[s])));
        }
        if (ok && !b) ok = ref[STEPS - 1] < ref[0]; /* it learns */
        if (ok && b) ok = worst < 1e-4;
        printf("%s: %s%s\n", names[b], ok ? "ok" : "FAILED",
               b ? (worst < 1e-4 ? "" : " (losses differ from cpu)") : "");
        ok ? passed++ : failed++;
        kiln_backend_free(be);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed || !passed ? 1 : 0;
}
