/* Elementwise, activation, dropout, conversion and optimizer cases: sizes that match no vector
   width (1, 7, 1000, 4099), 2-D and 4-D bias_add, every activation on positive and mixed-sign
   inputs, dropout masks compared bit for bit, in-place forms, and gradient checks of ADD, MUL,
   BIAS_ADD, ACT (through ACT_BWD) and DROPOUT (through DROPOUT_BWD). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bench-cases.h"
#include "harness.h"
#include "philox.h"

typedef struct ew_case {
    int op; /* kiln_op */
    int ndim;
    int64_t shape[4]; /* of the main input (x, a, dy, grad; u8 [N,H,W,C]) */
    float lo, hi;     /* range of the main input */
    int in_place;     /* the destination is source 0 */
    int gap;          /* inputs pushed at least GAP away from 0 (relu/leaky kinks) */
    int velocity;     /* sgd_update: src2 given */
    _Alignas(8) unsigned char params[KILN_MAX_OP_PARAMS];
} ew_case;

#define GAP 0.05f

static int64_t numel(const ew_case *e) {
    int64_t n = 1;
    for (int d = 0; d < e->ndim; d++) n *= e->shape[d];
    return n;
}

/* Moves every element of in[idx] out of (-GAP, GAP), keeping its sign. */
static kiln_status push_from_zero(kiln_tensor *t, int64_t n) {
    float buf[4099];
    if (n > (int64_t)(sizeof buf / sizeof buf[0])) return KILN_INTERNAL;
    kiln_status st = kiln_tensor_get(t, buf, (size_t)n * 4);
    if (st) return st;
    for (int64_t i = 0; i < n; i++) buf[i] += buf[i] < 0 ? -GAP : GAP;
    return kiln_tensor_set(t, buf, (size_t)n * 4);
}

static kiln_status ew_build(const tcase *c, tctx *x) {
    const ew_case *e = (const void *)c->p;
    const int64_t *sh = e->shape;
    int nd = e->ndim;
    kiln_status st = kiln_case_input(c, x, 0, e->op == KILN_OP_U8_TO_F32 ? KILN_U8 : KILN_F32, nd,
                                     sh, e->lo, e->hi);
    if (st) return st;
    unsigned mask = 0x1;
    int random_out = 0;
    switch (e->op) {
    case KILN_OP_ADD:
    case KILN_OP_MUL:
        st = kiln_case_input(c, x, 1, KILN_F32, nd, sh, -1, 1);
        mask = 0x3;
        break;
    case KILN_OP_BIAS_ADD:
        st = kiln_case_input(c, x, 1, KILN_F32, 1, &sh[1], -1, 1);
        mask = 0x3;
        break;
    case KILN_OP_AXPBY: {
        kiln_axpby_params p;
        memcpy(&p, e->params, sizeof p);
        random_out = p.beta != 0.0f;
        break;
    }
    case KILN_OP_ACT_BWD:
        /* in0 is dy; x is in1, with the case's range. */
        if ((st = kiln_case_input(c, x, 1, KILN_F32, nd, sh, e->lo, e->hi))) return st;
        if (e->gap) st = push_from_zero(&x->in[1], numel(e));
        mask = 0x3;
        break;
    case KILN_OP_ACT:
        if (e->gap) st = push_from_zero(&x->in[0], numel(e));
        break;
    case KILN_OP_SGD_UPDATE:
        if (e->velocity) {
            st = kiln_case_input(c, x, 2, KILN_F32, nd, sh, -1, 1);
            mask = 0x5;
        }
        random_out = 1;
        break;
    case KILN_OP_ADAM_UPDATE:
        if ((st = kiln_case_input(c, x, 1, KILN_F32, nd, sh, -0.1f, 0.1f))) return st;
        st = kiln_case_input(c, x, 2, KILN_F32, nd, sh, 0.0f, 0.01f); /* v >= 0 */
        mask = 0x7;
        random_out = 1;
        break;
    default:
        break;
    }
    if (st) return st;
    if (e->in_place) {
        kiln_case_output_is_input(x, 0);
    } else if (e->op == KILN_OP_U8_TO_F32) {
        int64_t out[4] = {sh[0], sh[3], sh[1], sh[2]};
        st = kiln_case_output(c, x, KILN_F32, 4, out, 0);
    } else if (e->op == KILN_OP_SUM_SQUARES) {
        int64_t one = 1;
        st = kiln_case_output(c, x, KILN_F32, 1, &one, 0);
    } else {
        st = kiln_case_output(c, x, KILN_F32, nd, sh, random_out);
    }
    if (st) return st;
    kiln_case_node(x, (kiln_op)e->op, e->params, sizeof e->params, mask);
    return KILN_OK;
}

/* ---- double-precision forwards of the gradient-checked ops ---- */

static double act64(const kiln_act_params *p, double x) {
    switch (p->type) {
    case KILN_ACT_RELU:
        return x > 0 ? x : 0;
    case KILN_ACT_LEAKY_RELU:
        return x > 0 ? x : p->alpha * x;
    case KILN_ACT_ELU:
        return x > 0 ? x : p->alpha * expm1(x);
    case KILN_ACT_SIGMOID:
        return 1 / (1 + exp(-x));
    case KILN_ACT_TANH:
        return tanh(x);
    default:
        return 0.5 * x * erfc(-x / sqrt(2.0));
    }
}

static void ew_forward_f64(const tcase *c, double *const *in, double *out) {
    const ew_case *e = (const void *)c->p;
    int64_t n = numel(e);
    switch (e->op) {
    case KILN_OP_ADD:
        for (int64_t i = 0; i < n; i++) out[i] = in[0][i] + in[1][i];
        break;
    case KILN_OP_MUL:
        for (int64_t i = 0; i < n; i++) out[i] = in[0][i] * in[1][i];
        break;
    case KILN_OP_BIAS_ADD: {
        int64_t ch = e->shape[1], inner = n / (e->shape[0] * ch);
        for (int64_t i = 0; i < n; i++) out[i] = in[0][i] + in[1][(i / inner) % ch];
        break;
    }
    case KILN_OP_ACT: {
        kiln_act_params p;
        memcpy(&p, e->params, sizeof p);
        for (int64_t i = 0; i < n; i++) out[i] = act64(&p, in[0][i]);
        break;
    }
    case KILN_OP_DROPOUT: {
        kiln_dropout_params p;
        memcpy(&p, e->params, sizeof p);
        for (int64_t i = 0; i < n; i++) {
            uint32_t w[4];
            kiln_dropout_words(p.seed_lo, p.seed_hi, p.offset_lo, p.offset_hi, (uint64_t)i / 4, w);
            out[i] = w[i % 4] >= p.threshold ? in[0][i] / (1.0 - p.p) : 0.0;
        }
        break;
    }
    default:
        break;
    }
}

/* ---- backward with backend ops ---- */

static kiln_status ones(kiln_backend_t be, kiln_tensor *t, int64_t rows, int64_t cols) {
    int64_t shape[2] = {rows, cols};
    kiln_status st = kiln_tensor_alloc(t, be, KILN_F32, 2, shape);
    if (st) return st;
    size_t n = (size_t)(rows * cols);
    float buf[4099];
    if (n > sizeof buf / sizeof buf[0]) return KILN_INTERNAL;
    for (size_t i = 0; i < n; i++) buf[i] = 1.0f;
    return kiln_tensor_set(t, buf, n * 4);
}

/* db[c] = sum over n and the inner dims of dy[n, c, ...], as two GEMMs with ones (this family
   does not depend on the conv family's BIAS_GRAD): t[N*C] = dy[N*C, inner] 1, db = 1^T t[N, C]. */
static kiln_status bias_grad_gemm(kiln_backend_t be, kiln_tensor *dy, kiln_tensor *db) {
    int64_t nb = dy->shape[0], ch = dy->shape[1], inner = kiln_tensor_nelements(dy) / (nb * ch);
    kiln_tensor one_i, one_n, t, dyv, tv, dbv;
    memset(&one_i, 0, sizeof one_i);
    memset(&one_n, 0, sizeof one_n);
    memset(&t, 0, sizeof t);
    int64_t tshape[2] = {nb * ch, 1};
    kiln_status st;
    if ((st = ones(be, &one_i, inner, 1)) || (st = ones(be, &one_n, 1, nb)) ||
        (st = kiln_tensor_alloc(&t, be, KILN_F32, 2, tshape)))
        goto done;
    int64_t s1[2] = {nb * ch, inner}, s2[2] = {nb, ch}, s3[2] = {1, ch};
    int64_t st1[2] = {inner * 4, 4}, st2[2] = {ch * 4, 4}, st3[2] = {ch * 4, 4};
    if ((st = kiln_tensor_view(&dyv, dy, 2, s1, st1, 0)) ||
        (st = kiln_gemm(be, 0, 0, 1.0f, &dyv, &one_i, 0.0f, &t)) ||
        (st = kiln_tensor_view(&tv, &t, 2, s2, st2, 0)) ||
        (st = kiln_tensor_view(&dbv, db, 2, s3, st3, 0)))
        goto done;
    st = kiln_gemm(be, 0, 0, 1.0f, &one_n, &tv, 0.0f, &dbv);
done:
    kiln_tensor_release(&one_i);
    kiln_tensor_release(&one_n);
    kiln_tensor_release(&t);
    return st;
}

static kiln_status ew_backward(const tcase *c, tctx *x, kiln_tensor *dout, kiln_tensor *grads) {
    const ew_case *e = (const void *)c->p;
    kiln_backend_t be = x->be;
    kiln_status st;
    switch (e->op) {
    case KILN_OP_ADD:
        if ((st = kiln_axpby(be, 1.0f, dout, 0.0f, &grads[0]))) return st;
        return kiln_axpby(be, 1.0f, dout, 0.0f, &grads[1]);
    case KILN_OP_MUL:
        if ((st = kiln_mul(be, dout, &x->in[1], &grads[0]))) return st;
        return kiln_mul(be, dout, &x->in[0], &grads[1]);
    case KILN_OP_BIAS_ADD:
        if ((st = kiln_axpby(be, 1.0f, dout, 0.0f, &grads[0]))) return st;
        return bias_grad_gemm(be, dout, &grads[1]);
    case KILN_OP_ACT: {
        kiln_act_params p;
        memcpy(&p, e->params, sizeof p);
        return kiln_act_bwd(be, &p, dout, &x->in[0], &grads[0]);
    }
    case KILN_OP_DROPOUT: {
        kiln_dropout_params p;
        memcpy(&p, e->params, sizeof p);
        return kiln_dropout_bwd(be, p.p, (uint64_t)p.seed_hi << 32 | p.seed_lo,
                                (uint64_t)p.offset_hi << 32 | p.offset_lo, dout, &grads[0]);
    }
    default:
        return KILN_INTERNAL;
    }
}

static const op_kind grad2_kind = {.family = "eltwise",
                                   .build = ew_build,
                                   .forward_f64 = ew_forward_f64,
                                   .backward = ew_backward,
                                   .grad_mask = 0x3};
static const op_kind grad1_kind = {.family = "eltwise",
                                   .build = ew_build,
                                   .forward_f64 = ew_forward_f64,
                                   .backward = ew_backward,
                                   .grad_mask = 0x1};
/* Masks must agree bit for bit: any flipped element shows as a normalized error of ~1/n. */
static const op_kind dropout_kind = {.family = "eltwise",
                                     .build = ew_build,
                                     .forward_f64 = ew_forward_f64,
                                     .backward = ew_backward,
                                     .grad_mask = 0x1,
                                     .max_nmse = 1e-20};
static const op_kind dropout_bwd_kind = {.family = "eltwise", .build = ew_build, .max_nmse = 1e-20};
static const op_kind plain_kind = {.family = "eltwise", .build = ew_build};

/* Small cases are gradient-checked and run under Oclgrind. */
#define SMALL_N 1000

static void add(const op_kind *kind, ew_case e, const void *params, size_t psize,
                const char *what) {
    if (params) memcpy(e.params, params, psize);
    char dims[64];
    int len = 0;
    for (int d = 0; d < e.ndim; d++)
        len += snprintf(dims + len, sizeof dims - (size_t)len, "%s%lld", d ? "," : "",
                        (long long)e.shape[d]);
    int small = numel(&e) <= SMALL_N;
    /* An in-place node overwrites its input: nothing to differentiate against. */
    if (e.in_place && kind->backward) kind = &plain_kind;
    kiln_add_case(kind, &e, sizeof e, small, "%s [%s]%s%s", kiln_op_name((kiln_op)e.op), dims, what,
                  e.in_place ? " in-place" : "");
}

static ew_case flat(int op, int64_t n, float lo, float hi) {
    ew_case e;
    memset(&e, 0, sizeof e);
    e.op = op;
    e.ndim = 1;
    e.shape[0] = n;
    e.lo = lo;
    e.hi = hi;
    return e;
}

static ew_case shaped(int op, int ndim, const int64_t *shape, float lo, float hi) {
    ew_case e = flat(op, 1, lo, hi);
    e.ndim = ndim;
    memcpy(e.shape, shape, sizeof(int64_t) * (size_t)ndim);
    return e;
}

static const int64_t sizes[] = {1, 7, 1000, 4099};
#define NSIZES (sizeof sizes / sizeof sizes[0])
static const int64_t shape4[4] = {2, 3, 5, 7};

static void binary_cases(void) {
    static const int ops[2] = {KILN_OP_ADD, KILN_OP_MUL};
    for (int o = 0; o < 2; o++) {
        for (size_t s = 0; s < NSIZES; s++)
            add(&grad2_kind, flat(ops[o], sizes[s], -2, 2), NULL, 0, "");
        add(&grad2_kind, shaped(ops[o], 4, shape4, -2, 2), NULL, 0, "");
        ew_case e = flat(ops[o], 1000, -2, 2);
        e.in_place = 1;
        add(&plain_kind, e, NULL, 0, "");
    }
    static const int64_t b2[][4] = {{1, 1}, {5, 7}, {64, 10}, {3, 4099}};
    for (size_t i = 0; i < sizeof b2 / sizeof b2[0]; i++)
        add(&grad2_kind, shaped(KILN_OP_BIAS_ADD, 2, b2[i], -2, 2), NULL, 0, "");
    static const int64_t b3[3] = {2, 5, 9};
    add(&grad2_kind, shaped(KILN_OP_BIAS_ADD, 3, b3, -2, 2), NULL, 0, "");
    static const int64_t b4[][4] = {{2, 3, 5, 7}, {1, 16, 1, 1}, {3, 16, 9, 9}, {4, 33, 17, 19}};
    for (size_t i = 0; i < sizeof b4 / sizeof b4[0]; i++)
        add(&grad2_kind, shaped(KILN_OP_BIAS_ADD, 4, b4[i], -2, 2), NULL, 0, "");
    ew_case e = shaped(KILN_OP_BIAS_ADD, 4, shape4, -2, 2);
    e.in_place = 1;
    add(&plain_kind, e, NULL, 0, "");
}

static void axpby_cases(void) {
    static const kiln_axpby_params ps[] = {
        {1.0f, 0.0f}, {-0.5f, 0.0f}, {2.0f, 1.0f}, {0.3f, -0.9f}};
    char what[64];
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        snprintf(what, sizeof what, " alpha=%g beta=%g", ps[i].alpha, ps[i].beta);
        for (size_t s = 0; s < NSIZES; s++)
            add(&plain_kind, flat(KILN_OP_AXPBY, sizes[s], -2, 2), &ps[i], sizeof ps[i], what);
        /* x == dst: scaling in place (beta == 0) and alpha x + beta x. */
        ew_case e = flat(KILN_OP_AXPBY, 4099, -2, 2);
        e.in_place = 1;
        add(&plain_kind, e, &ps[i], sizeof ps[i], what);
    }
}

static void act_cases(void) {
    static const struct {
        int type;
        float alpha;
        const char *name;
    } acts[] = {{KILN_ACT_RELU, 0, "relu"},
                {KILN_ACT_LEAKY_RELU, 0.01f, "leaky_relu"},
                {KILN_ACT_LEAKY_RELU, 0.3f, "leaky_relu"},
                {KILN_ACT_ELU, 1.0f, "elu"},
                {KILN_ACT_ELU, 0.5f, "elu"},
                {KILN_ACT_SIGMOID, 0, "sigmoid"},
                {KILN_ACT_TANH, 0, "tanh"},
                {KILN_ACT_GELU, 0, "gelu"}};
    /* positive only, mixed sign (away from the kink), and a wide range into the tails */
    static const struct {
        float lo, hi;
        int gap;
        const char *name;
    } ranges[] = {{0.05f, 3.0f, 0, "pos"}, {-3.0f, 3.0f, 1, "mixed"}, {-30.0f, 30.0f, 1, "wide"}};
    char what[96];
    for (size_t a = 0; a < sizeof acts / sizeof acts[0]; a++) {
        kiln_act_params p = {acts[a].type, acts[a].alpha};
        for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
            snprintf(what, sizeof what, " %s alpha=%g %s", acts[a].name, acts[a].alpha,
                     ranges[r].name);
            for (size_t s = 0; s < NSIZES; s++) {
                /* The wide range is a forward check of the tails; small sizes suffice. */
                if (r == 2 && sizes[s] > 1000) continue;
                ew_case e = flat(KILN_OP_ACT, sizes[s], ranges[r].lo, ranges[r].hi);
                e.gap = ranges[r].gap;
                add(&grad1_kind, e, &p, sizeof p, what);
                e.op = KILN_OP_ACT_BWD;
                add(&plain_kind, e, &p, sizeof p, what);
            }
        }
        ew_case e = flat(KILN_OP_ACT, 1000, -3, 3);
        e.in_place = 1;
        snprintf(what, sizeof what, " %s alpha=%g mixed", acts[a].name, acts[a].alpha);
        add(&plain_kind, e, &p, sizeof p, what);
        e = shaped(KILN_OP_ACT, 4, shape4, -3, 3);
        e.gap = 1;
        add(&grad1_kind, e, &p, sizeof p, what);
    }
}

static kiln_dropout_params dropout_params(float p, uint64_t seed, uint64_t offset) {
    kiln_dropout_params d = {
        .p = p,
        .threshold = (uint32_t)((double)p * 4294967296.0),
        .seed_lo = (uint32_t)seed,
        .seed_hi = (uint32_t)(seed >> 32),
        .offset_lo = (uint32_t)offset,
        .offset_hi = (uint32_t)(offset >> 32),
    };
    return d;
}

static void dropout_cases(void) {
    static const float ps[] = {0.0f, 0.1f, 0.5f, 0.9f};
    /* the last offset's counters cross a 2^32 boundary inside the tensor */
    static const uint64_t so[][2] = {
        {0, 0}, {1234567, 42}, {0xdeadbeefcafef00dULL, 1ULL << 40}, {7, 0xffffff00ULL}};
    char what[128];
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
        for (size_t k = 0; k < sizeof so / sizeof so[0]; k++) {
            kiln_dropout_params d = dropout_params(ps[i], so[k][0], so[k][1]);
            snprintf(what, sizeof what, " p=%g seed=%llx offset=%llx", ps[i],
                     (unsigned long long)so[k][0], (unsigned long long)so[k][1]);
            for (size_t s = 0; s < NSIZES; s++) {
                add(&dropout_kind, flat(KILN_OP_DROPOUT, sizes[s], 0.5f, 1.5f), &d, sizeof d, what);
                add(&dropout_bwd_kind, flat(KILN_OP_DROPOUT_BWD, sizes[s], -1, 1), &d, sizeof d,
                    what);
            }
        }
    kiln_dropout_params d = dropout_params(0.5f, 99, 3);
    add(&dropout_kind, shaped(KILN_OP_DROPOUT, 4, shape4, -1, 1), &d, sizeof d, " p=0.5");
    ew_case e = flat(KILN_OP_DROPOUT, 4099, -1, 1);
    e.in_place = 1;
    add(&dropout_bwd_kind, e, &d, sizeof d, " p=0.5");
}

static void convert_cases(void) {
    static const int64_t shapes[][4] = {
        {1, 1, 1, 1}, {2, 5, 7, 1}, {2, 5, 7, 3}, {1, 31, 33, 3}, {3, 8, 9, 4}};
    const kiln_convert_params rescale = {{1 / 255.0f, 1 / 255.0f, 1 / 255.0f, 1 / 255.0f}, {0}};
    static const float mean[4] = {0.485f, 0.456f, 0.406f, 0.5f},
                       sd[4] = {0.229f, 0.224f, 0.225f, 0.25f};
    kiln_convert_params norm;
    for (int c = 0; c < 4; c++) {
        norm.scale[c] = 1.0f / (255.0f * sd[c]);
        norm.bias[c] = -mean[c] / sd[c];
    }
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        ew_case e = shaped(KILN_OP_U8_TO_F32, 4, shapes[i], 0, 256);
        add(&plain_kind, e, &rescale, sizeof rescale, " rescale");
        add(&plain_kind, e, &norm, sizeof norm, " mean/std");
    }
    /* the batches `kiln bench` converts (perf/bench-cases.h), at batch 2 */
    int b[4];
    for (int i = 0; kiln_bench_convert_shape(i, b); i++) {
        const int64_t shape[4] = {2, b[1], b[2], b[3]};
        add(&plain_kind, shaped(KILN_OP_U8_TO_F32, 4, shape, 0, 256), &norm, sizeof norm,
            " mean/std");
    }
}

static void optim_cases(void) {
    static const int64_t big[] = {1 << 20, (1 << 20) + 3, 3000017};
    for (size_t s = 0; s < NSIZES; s++)
        add(&plain_kind, flat(KILN_OP_SUM_SQUARES, sizes[s], -2, 2), NULL, 0, "");
    for (size_t s = 0; s < sizeof big / sizeof big[0]; s++)
        add(&plain_kind, flat(KILN_OP_SUM_SQUARES, big[s], -2, 2), NULL, 0, "");
    /* all positive: no cancellation, the sum grows large against each term */
    add(&plain_kind, flat(KILN_OP_SUM_SQUARES, (1 << 20) + 3, 1, 3), NULL, 0, " offset");
    add(&plain_kind, shaped(KILN_OP_SUM_SQUARES, 4, shape4, -2, 2), NULL, 0, "");

    static const kiln_sgd_params sgd[] = {
        {0.1f, 0.0f, 0.0f, 1.0f, 0},   {0.1f, 0.9f, 0.0f, 1.0f, 0},   {0.1f, 0.9f, 0.0f, 1.0f, 1},
        {0.05f, 0.9f, 5e-4f, 1.0f, 0}, {0.05f, 0.9f, 5e-4f, 0.5f, 1}, {0.01f, 0.0f, 1e-2f, 2.0f, 0},
    };
    char what[160];
    for (size_t i = 0; i < sizeof sgd / sizeof sgd[0]; i++) {
        snprintf(what, sizeof what, " lr=%g momentum=%g nesterov=%d wd=%g grad_scale=%g", sgd[i].lr,
                 sgd[i].momentum, sgd[i].nesterov, sgd[i].weight_decay, sgd[i].grad_scale);
        for (size_t s = 0; s < NSIZES; s++) {
            ew_case e = flat(KILN_OP_SGD_UPDATE, sizes[s], -1, 1);
            e.velocity = 1;
            add(&plain_kind, e, &sgd[i], sizeof sgd[i], what);
            if (sgd[i].momentum == 0.0f) { /* no velocity at all */
                e.velocity = 0;
                snprintf(what + strlen(what), sizeof what - strlen(what), " no-velocity");
                add(&plain_kind, e, &sgd[i], sizeof sgd[i], what);
                what[strlen(what) - strlen(" no-velocity")] = '\0';
            }
        }
    }

    static const kiln_adam_params adam[] = {
        {1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 1.0f, 1, 0},
        {1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 1.0f, 10, 0},
        {1e-3f, 0.9f, 0.999f, 1e-8f, 1e-2f, 1.0f, 1, 0},
        {1e-3f, 0.9f, 0.999f, 1e-8f, 1e-2f, 0.5f, 10, 0},
        {1e-3f, 0.9f, 0.999f, 1e-8f, 1e-2f, 1.0f, 1, 1},
        {2e-3f, 0.8f, 0.99f, 1e-6f, 5e-2f, 2.0f, 10, 1},
    };
    for (size_t i = 0; i < sizeof adam / sizeof adam[0]; i++) {
        snprintf(what, sizeof what, " %s lr=%g b1=%g b2=%g eps=%g wd=%g grad_scale=%g step=%d",
                 adam[i].decoupled ? "adamw" : "adam", adam[i].lr, adam[i].beta1, adam[i].beta2,
                 adam[i].eps, adam[i].weight_decay, adam[i].grad_scale, (int)adam[i].step);
        for (size_t s = 0; s < NSIZES; s++)
            add(&plain_kind, flat(KILN_OP_ADAM_UPDATE, sizes[s], -1, 1), &adam[i], sizeof adam[i],
                what);
    }
}

void kiln_cases_eltwise(void) {
    binary_cases();
    axpby_cases();
    act_cases();
    dropout_cases();
    convert_cases();
    optim_cases();
}
