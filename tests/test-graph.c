/* The graph layer: autograd through conv+bias, batch norm, relu, max pooling, concat, a
   residual add, reshape, dense and the loss, checked against finite differences of the
   graph's own forward on the cpu backend; the memory plan shares storage; and the graph's
   gradients are the same on every backend. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-util.h"
#include "kiln/graph.h"
#include "check.h"
#include "kiln/kiln.h"

enum { N = 3, C = 2, H = 6, W = 6, O = 3, CLS = 4 };

typedef struct {
    kiln_graph_t g;
    kiln_tensor *x, *labels, *loss;
} net;

/* x -> conv(+b) -> bn -> relu -> [maxpool, avgpool] concat -> + residual 1x1 conv of the
   pooled input -> flatten -> dense(+b) -> softmax cross-entropy */
static kiln_status build(net *n) {
    kiln_status st = kiln_graph_init(&n->g);
    if (st) return st;
    kiln_graph_t g = n->g;
    int64_t xs[4] = {N, C, H, W}, ls[1] = {N}, ws[4] = {O, C, 3, 3}, bs[1] = {O};
    n->x = kiln_graph_input(g, "x", KILN_F32, 4, xs);
    n->labels = kiln_graph_input(g, "labels", KILN_I32, 1, ls);
    kiln_tensor *w1 = kiln_graph_param(g, "w1", 4, ws), *b1 = kiln_graph_param(g, "b1", 1, bs);
    kiln_tensor *gamma = kiln_graph_param(g, "gamma", 1, bs),
                *beta = kiln_graph_param(g, "beta", 1, bs);
    kiln_conv2d_params cp = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    int64_t cs[4] = {N, O, H, W};
    kiln_tensor *src3[3] = {n->x, w1, b1};
    kiln_tensor *c1 =
        kiln_graph_op(g, "c1", KILN_OP_CONV2D, &cp, sizeof cp, 3, src3, KILN_F32, 4, cs);
    int64_t ss[2] = {2, O};
    kiln_tensor *stats =
        kiln_graph_op(g, "stats", KILN_OP_BATCHNORM_STATS, NULL, 0, 1, &c1, KILN_F32, 2, ss);
    kiln_bn_params bp = {1e-5f};
    kiln_tensor *src4[4] = {c1, stats, gamma, beta};
    kiln_tensor *bn =
        kiln_graph_op(g, "bn", KILN_OP_BATCHNORM, &bp, sizeof bp, 4, src4, KILN_F32, 4, cs);
    kiln_act_params ap = {KILN_ACT_RELU, 0};
    kiln_tensor *r = kiln_graph_op(g, "r", KILN_OP_ACT, &ap, sizeof ap, 1, &bn, KILN_F32, 4, cs);
    kiln_pool2d_params mp = {
        .type = KILN_POOL_MAX, .kernel_h = 2, .kernel_w = 2, .stride_h = 2, .stride_w = 2};
    kiln_pool2d_params vp = mp;
    vp.type = KILN_POOL_AVG;
    int64_t psz[4] = {N, O, H / 2, W / 2}, cat[4] = {N, 2 * O, H / 2, W / 2};
    kiln_tensor *pm =
        kiln_graph_op(g, "pm", KILN_OP_POOL2D, &mp, sizeof mp, 1, &r, KILN_F32, 4, psz);
    kiln_tensor *pa =
        kiln_graph_op(g, "pa", KILN_OP_POOL2D, &vp, sizeof vp, 1, &r, KILN_F32, 4, psz);
    kiln_concat_params ccp = {1};
    kiln_tensor *srcc[2] = {pm, pa};
    kiln_tensor *cc =
        kiln_graph_op(g, "cat", KILN_OP_CONCAT, &ccp, sizeof ccp, 2, srcc, KILN_F32, 4, cat);
    /* Residual: a 1x1 convolution of the pooled input, added. */
    int64_t xps[4] = {N, C, H / 2, W / 2}, w2s[4] = {2 * O, C, 1, 1};
    kiln_tensor *xp =
        kiln_graph_op(g, "xp", KILN_OP_POOL2D, &vp, sizeof vp, 1, &n->x, KILN_F32, 4, xps);
    kiln_tensor *w2 = kiln_graph_param(g, "w2", 4, w2s);
    kiln_conv2d_params one = {1, 1, 0, 0, 0, 0, 1, 1, 1};
    kiln_tensor *src2[3] = {xp, w2, NULL};
    kiln_tensor *sc =
        kiln_graph_op(g, "sc", KILN_OP_CONV2D, &one, sizeof one, 3, src2, KILN_F32, 4, cat);
    kiln_tensor *sum_src[2] = {cc, sc};
    kiln_tensor *sum = kiln_graph_op(g, "sum", KILN_OP_ADD, NULL, 0, 2, sum_src, KILN_F32, 4, cat);
    int64_t fs[2] = {N, 2 * O * (H / 2) * (W / 2)}, w3s[2] = {fs[1], CLS}, b3s[1] = {CLS},
            lg[2] = {N, CLS};
    kiln_tensor *flat = kiln_graph_reshape(g, sum, 2, fs);
    kiln_tensor *w3 = kiln_graph_param(g, "w3", 2, w3s), *b3 = kiln_graph_param(g, "b3", 1, b3s);
    kiln_gemm_params gp = {0, 0, 1.0f, 0.0f};
    kiln_tensor *mm_src[2] = {flat, w3};
    kiln_tensor *mm =
        kiln_graph_op(g, "mm", KILN_OP_GEMM, &gp, sizeof gp, 2, mm_src, KILN_F32, 2, lg);
    kiln_tensor *ba_src[2] = {mm, b3};
    kiln_tensor *logits =
        kiln_graph_op(g, "logits", KILN_OP_BIAS_ADD, NULL, 0, 2, ba_src, KILN_F32, 2, lg);
    kiln_xent_params xp2 = {0.1f, 1.0f};
    kiln_tensor *xs_src[2] = {logits, n->labels};
    n->loss = kiln_graph_op(g, "loss", KILN_OP_SOFTMAX_XENT, &xp2, sizeof xp2, 2, xs_src, KILN_F32,
                            1, ls);
    kiln_graph_keep(g, n->loss);
    return kiln_graph_backward(g, n->loss, 1.0f);
}

static kiln_status init_values(net *n) {
    kiln_status st = KILN_OK;
    for (int i = 0; i < kiln_graph_param_count(n->g) && !st; i++) {
        kiln_tensor *p = kiln_graph_param_at(n->g, i);
        size_t k = (size_t)kiln_tensor_nelements(p);
        float *h = malloc(k * sizeof *h);
        if (!h) return KILN_OUT_OF_MEMORY;
        kiln_fill_uniform(h, k, 10 + (uint64_t)i);
        if (!strcmp(p->name, "gamma"))
            for (size_t j = 0; j < k; j++) h[j] = 1.0f + 0.2f * h[j];
        st = kiln_tensor_set(p, h, k * sizeof *h);
        free(h);
    }
    float x[N * C * H * W];
    kiln_fill_uniform(x, sizeof x / sizeof x[0], 3);
    int32_t labels[N] = {1, 3, 0};
    if (!st) st = kiln_tensor_set(n->x, x, sizeof x);
    if (!st) st = kiln_tensor_set(n->labels, labels, sizeof labels);
    return st;
}

static double mean_loss(net *n) {
    float l[N];
    if (kiln_graph_forward(n->g) || kiln_tensor_get(n->loss, l, sizeof l)) return NAN;
    double s = 0;
    for (int i = 0; i < N; i++) s += l[i];
    return s / N;
}

/* All parameter gradients, flattened in parameter order. */
static float *grads_of(net *n, size_t *count) {
    kiln_tensor *flat = kiln_graph_grads_flat(n->g);
    *count = (size_t)kiln_tensor_nelements(flat);
    float *h = malloc(*count * sizeof *h);
    if (h && (kiln_graph_forward(n->g) || kiln_graph_backward_run(n->g) ||
              kiln_tensor_get(flat, h, *count * sizeof *h))) {
        free(h);
        return NULL;
    }
    return h;
}

int main(void) {
    kiln_backend_t cpu;
    if (kiln_backend_init("cpu", NULL, &cpu)) {
        printf("%s\n0 passed, 1 failed\n", kiln_last_error());
        return 1;
    }
    net n;
    kiln_status st = build(&n);
    CHECK(st == KILN_OK, "build and backward");
    if (!st) st = kiln_graph_alloc(n.g, cpu);
    CHECK(st == KILN_OK, "alloc");
    if (!st) st = init_values(&n);
    kiln_graph_memory mem;
    kiln_graph_get_memory(n.g, &mem);
    CHECK(!st && mem.activations < mem.activations_naive,
          "the arena shares storage (%zu of %zu bytes)", mem.activations, mem.activations_naive);
    size_t ng = 0;
    float *g = st ? NULL : grads_of(&n, &ng);
    CHECK(g != NULL, "backward runs");
    /* Central differences on every parameter value. */
    kiln_tensor *pflat = kiln_graph_params_flat(n.g);
    size_t np = pflat ? (size_t)kiln_tensor_nelements(pflat) : 0;
    float *p = malloc((np ? np : 1) * sizeof *p);
    double num = 0, den = 0;
    if (g && p && np == ng && !kiln_tensor_get(pflat, p, np * sizeof *p)) {
        for (size_t i = 0; i < np; i++) {
            float keep = p[i], eps = 1e-2f;
            p[i] = keep + eps;
            kiln_tensor_set(pflat, p, np * sizeof *p);
            double lp = mean_loss(&n);
            p[i] = keep - eps;
            kiln_tensor_set(pflat, p, np * sizeof *p);
            double lm = mean_loss(&n);
            p[i] = keep;
            double fd = (lp - lm) / (2.0 * eps), d = g[i] - fd;
            num += d * d;
            den += fd * fd;
        }
        kiln_tensor_set(pflat, p, np * sizeof *p);
    }
    double rel = den > 0 ? sqrt(num / den) : 1;
    CHECK(g && rel < 2e-2, "graph gradients match finite differences (relative L2 error %.3e)",
          rel);

    /* The same graph on every OpenCL backend gives the same gradients. */
    const char *names[2] = {"opencl", "clblast"};
    for (int b = 0; b < 2 && g; b++) {
        kiln_backend_t be;
        if (kiln_backend_init(names[b], NULL, &be)) {
            printf("skipping %s: %s\n", names[b], kiln_last_error());
            continue;
        }
        net m;
        size_t mg = 0;
        float *h = NULL;
        if (!build(&m) && !kiln_graph_alloc(m.g, be) && !init_values(&m)) h = grads_of(&m, &mg);
        double e = 0, s = 0;
        for (size_t i = 0; h && i < mg && mg == ng; i++) {
            e += (h[i] - g[i]) * (double)(h[i] - g[i]);
            s += (double)g[i] * g[i];
        }
        CHECK(h && mg == ng && sqrt(e / s) < 1e-4, "%s gradients equal cpu's (%.3e)", names[b],
              s > 0 ? sqrt(e / s) : -1.0);
        free(h);
        kiln_graph_free(m.g);
        kiln_backend_free(be);
    }
    /* Errors: a parameter that does not reach the loss is named. */
    kiln_graph_t bad;
    kiln_graph_init(&bad);
    int64_t s2[2] = {2, 2}, s1[1] = {2};
    kiln_tensor *in = kiln_graph_input(bad, "in", KILN_F32, 2, s2);
    kiln_graph_param(bad, "orphan", 1, s1);
    kiln_tensor *lab = kiln_graph_input(bad, "lab", KILN_I32, 1, s1);
    kiln_tensor *src[2] = {in, lab};
    kiln_xent_params xp = {0, 1};
    kiln_tensor *loss =
        kiln_graph_op(bad, "loss", KILN_OP_SOFTMAX_XENT, &xp, sizeof xp, 2, src, KILN_F32, 1, s1);
    st = kiln_graph_backward(bad, loss, 1.0f);
    CHECK(st == KILN_INVALID_ARGUMENT && strstr(kiln_last_error(), "'orphan'"),
          "an unused parameter is named");
    kiln_graph_free(bad);

    free(g);
    free(p);
    kiln_graph_free(n.g);
    kiln_backend_free(cpu);
    return check_done();
}
