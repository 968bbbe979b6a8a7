/* The opencl backend's elementwise, dropout, conversion and optimizer ops (kernels in
   kernels/eltwise.cl). Validation guarantees contiguous tensors of matching shapes. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../../philox.h"
#include "cl-ops.h"

/* Work-items per group for the elementwise kernels; kiln_cl_launch shrinks it where the
   device or kernel wants fewer, and the kernels guard the rounded-up tail. */
#define ELTWISE_WG 256

/* (size, pointer) pairs for kiln_cl_args; the compound literals live until the call returns. */
/* clang-format off */
#define MEM(t)   sizeof(cl_mem), &(cl_mem){kiln_cl_mem(t)}
#define OFF(t)   sizeof(cl_ulong), &(cl_ulong){kiln_cl_off(t)}
#define ULONG(v) sizeof(cl_ulong), &(cl_ulong){(cl_ulong)(v)}
#define UINT(v)  sizeof(cl_uint), &(cl_uint){(cl_uint)(v)}
#define INT(v)   sizeof(cl_int), &(cl_int){(cl_int)(v)}
#define FLOAT(v) sizeof(cl_float), &(cl_float){(cl_float)(v)}
/* clang-format on */

/* Parameters per work-item of the SGD update: with the CPU forms 8 consecutive ones as
   vectors (the largest layer of AlexNet, 16.8M parameters on a 2-core Zen 3: 19.9 -> 9.4 ms).
   The one program of the plain kernels carries the option, so it is built once. */
#define SGD_VEC_CPU 8 /* eltwise.cl vectorises SGD_VEC == 8 */
#define STR_(x)     #x
#define STR(x)      STR_(x)
static size_t sgd_vec(kiln_backend_t be) {
    return kiln_cl(be)->cpu_kernels ? SGD_VEC_CPU : 1;
}

static kiln_status get(kiln_backend_t be, const char *name, cl_kernel *k) {
    return kiln_cl_get_kernel(kiln_cl(be), "eltwise.cl", name,
                              sgd_vec(be) > 1 ? "-DSGD_VEC=" STR(SGD_VEC_CPU) : NULL, k);
}

static kiln_status launch(kiln_backend_t be, cl_kernel k, const char *name, size_t items) {
    size_t local = ELTWISE_WG;
    return kiln_cl_launch(kiln_cl(be), k, name, 1, &items, &local);
}

static size_t count(const kiln_tensor *t) {
    return (size_t)kiln_tensor_nelements(t);
}

static kiln_status binary(kiln_backend_t be, kiln_tensor *dst, int op) {
    const char *name = "kiln_binary";
    const kiln_tensor *a = dst->src[0], *b = dst->src[1];
    cl_kernel k;
    kiln_status st = get(be, name, &k);
    if (!st)
        st = kiln_cl_args(k, name, 8, INT(op), MEM(a), OFF(a), MEM(b), OFF(b), MEM(dst), OFF(dst),
                          ULONG(count(dst)));
    return st ? st : launch(be, k, name, count(dst));
}

kiln_status kiln_cl_add(kiln_backend_t be, kiln_tensor *dst) {
    return binary(be, dst, 0);
}

kiln_status kiln_cl_mul(kiln_backend_t be, kiln_tensor *dst) {
    return binary(be, dst, 1);
}

kiln_status kiln_cl_bias_add(kiln_backend_t be, kiln_tensor *dst) {
    const char *name = "kiln_bias_add";
    const kiln_tensor *x = dst->src[0], *b = dst->src[1];
    size_t inner = 1;
    for (int d = 2; d < dst->ndim; d++) inner *= (size_t)dst->shape[d];
    cl_kernel k;
    kiln_status st = get(be, name, &k);
    if (!st)
        st = kiln_cl_args(k, name, 9, MEM(x), OFF(x), MEM(b), OFF(b), MEM(dst), OFF(dst),
                          ULONG(count(dst)), ULONG(dst->shape[1]), ULONG(inner));
    return st ? st : launch(be, k, name, count(dst));
}

kiln_status kiln_cl_axpby(kiln_backend_t be, kiln_tensor *dst) {
    const char *name = "kiln_axpby";
    const kiln_tensor *x = dst->src[0];
    kiln_axpby_params p;
    memcpy(&p, dst->op_params, sizeof p);
    cl_kernel k;
    kiln_status st = get(be, name, &k);
    if (!st)
        st = kiln_cl_args(k, name, 7, MEM(x), OFF(x), MEM(dst), OFF(dst), ULONG(count(dst)),
                          FLOAT(p.alpha), FLOAT(p.beta));
    return st ? st : launch(be, k, name, count(dst));
}

/* ACT and ACT_BWD: the kernels of the program built for this activation type. */
static kiln_status act(kiln_backend_t be, kiln_tensor *dst, const char *name, int nsrc) {
    kiln_act_params p;
    memcpy(&p, dst->op_params, sizeof p);
    char options[32];
    snprintf(options, sizeof options, "-DACT_TYPE=%d", (int)p.type);
    const kiln_tensor *a = dst->src[0], *b = dst->src[nsrc - 1];
    cl_kernel k;
    kiln_status st = kiln_cl_get_kernel(kiln_cl(be), "eltwise.cl", name, options, &k);
    if (st) return st;
    st = nsrc == 1 ? kiln_cl_args(k, name, 6, FLOAT(p.alpha), MEM(a), OFF(a), MEM(dst), OFF(dst),
                                  ULONG(count(dst)))
                   : kiln_cl_args(k, name, 8, FLOAT(p.alpha), MEM(a), OFF(a), MEM(b), OFF(b),
                                  MEM(dst), OFF(dst), ULONG(count(dst)));
    return st ? st : launch(be, k, name, count(dst));
}

kiln_status kiln_cl_act(kiln_backend_t be, kiln_tensor *dst) {
    return act(be, dst, "kiln_act", 1);
}

kiln_status kiln_cl_act_bwd(kiln_backend_t be, kiln_tensor *dst) {
    return act(be, dst, "kiln_act_bwd", 2);
}

/* DROPOUT and DROPOUT_BWD apply the same mask and scale to their one source. */
static kiln_status dropout(kiln_backend_t be, kiln_tensor *dst) {
    const char *name = "kiln_dropout";
    const kiln_tensor *x = dst->src[0];
    kiln_dropout_params p;
    memcpy(&p, dst->op_params, sizeof p);
    cl_kernel k;
    kiln_status st = get(be, name, &k);
    if (!st)
        st = kiln_cl_args(k, name, 11, MEM(x), OFF(x), MEM(dst), OFF(dst), ULONG(count(dst)),
                          UINT(p.threshold), FLOAT(kiln_dropout_scale(p.p)), UINT(p.seed_lo),
                          UINT(p.seed_hi), UINT(p.offset_lo), UINT(p.offset_hi));
    return st ? st : launch(be, k, name, (count(dst) + 3) / 4);
}

kiln_status kiln_cl_dropout(kiln_backend_t be, kiln_tensor *dst) {
    return dropout(be, dst);
}

kiln_status kiln_cl_dropout_bwd(kiln_backend_t be, kiln_tensor *dst) {
    return dropout(be, dst);
}

kiln_status kiln_cl_u8_to_f32(kiln_backend_t be, kiln_tensor *dst) {
    const char *name = "kiln_u8_to_f32";
    const kiln_tensor *x = dst->src[0];
    kiln_convert_params p;
    memcpy(&p, dst->op_params, sizeof p);
    cl_float4 scale, bias;
    for (int c = 0; c < 4; c++) {
        scale.s[c] = p.scale[c];
        bias.s[c] = p.bias[c];
    }
    cl_kernel k;
    kiln_status st = get(be, name, &k);
    if (!st)
        st = kiln_cl_args(k, name, 8, MEM(x), OFF(x), MEM(dst), OFF(dst),
                          ULONG(x->shape[1] * x->shape[2]), UINT(x->shape[3]), sizeof scale, &scale,
                          sizeof bias, &bias);
    if (st) return st;
    /* (pixel, channel, image): dims 1 and 2 get work-groups of 1, exactly their size. */
    size_t global[3] = {(size_t)(x->shape[1] * x->shape[2]), (size_t)x->shape[3],
                        (size_t)x->shape[0]};
    size_t local[3] = {ELTWISE_WG, 1, 1};
    return kiln_cl_launch(kiln_cl(be), k, name, 3, global, local);
}

/* Stage-1 work-items: enough elements each to amortize the launch, enough of them to fill
   every compute unit; stage 2 adds them in one work-group. */
#define SSQ_MIN_PER_ITEM 16
#define SSQ_ITEMS_PER_CU 2048
#define SSQ_MAX_PARTS    (1u << 20)

kiln_status kiln_cl_sum_squares(kiln_backend_t be, kiln_tensor *dst) {
    kiln_cl_ctx *cl = kiln_cl(be);
    const kiln_tensor *x = dst->src[0];
    size_t n = count(x);
    size_t cap =
        (size_t)(be->device.compute_units ? be->device.compute_units : 1) * SSQ_ITEMS_PER_CU;
    if (cap > SSQ_MAX_PARTS) cap = SSQ_MAX_PARTS;
    size_t nparts = (n + SSQ_MIN_PER_ITEM - 1) / SSQ_MIN_PER_ITEM;
    if (nparts > cap) nparts = cap;
    if (nparts < 1) nparts = 1; /* an empty x still writes its sum, 0 */
    /* A device that caps a work-item's loop iterations gets more, shorter parts. */
    unsigned long budget = 0;
    kiln_status st = kiln_cl_loop_budget(cl, &budget);
    if (st) return st;
    if (budget && (n + nparts - 1) / nparts > budget) nparts = (n + budget - 1) / budget;
    size_t per = 0;
    if (cl->cpu_kernels) {
        size_t cus = be->device.compute_units ? be->device.compute_units : 1;
        per = (n + 4 * cus - 1) / (4 * cus);
        per = (per + 15) / 16 * 16;
        if (per < 4096) per = 4096;
        /* kiln_sum_squares_chunks loops 17 times per 16 elements */
        const size_t per_max = budget > 64 ? (budget - 64) / 17 * 16 : 0;
        if (budget && per > per_max) per = per_max;
        nparts = (n + per - 1) / per;
        if (nparts < 1) nparts = 1;
    }
    cl_mem part;
    cl_kernel k1, k2;
    if ((st = kiln_cl_get_scratch(cl, nparts * sizeof(float), &part)) ||
        (st = get(be, "kiln_sum_squares_parts", &k1)) || (st = get(be, "kiln_sum_parts", &k2)))
        return st;
    /* Interleaved on GPUs (coalesced); on CPUs one contiguous, vectorised chunk per core
       (a scalar work-item per chunk would be vectorised across items by PoCL: gathers). */
    if (cl->cpu_kernels) {
        if ((st = get(be, "kiln_sum_squares_chunks", &k1)) ||
            (st = kiln_cl_args(k1, "kiln_sum_squares_chunks", 6, MEM(x), OFF(x), ULONG(n),
                               ULONG(per), sizeof part, &part, UINT(nparts))))
            return st;
        size_t global = nparts, local = 1;
        if ((st = kiln_cl_launch(cl, k1, "kiln_sum_squares_chunks", 1, &global, &local))) return st;
    } else {
        size_t iters = (n + nparts - 1) / nparts;
        if ((st = kiln_cl_args(k1, "kiln_sum_squares_parts", 8, MEM(x), OFF(x), ULONG(n), ULONG(1),
                               ULONG(nparts), ULONG(iters), sizeof part, &part, UINT(nparts))) ||
            (st = launch(be, k1, "kiln_sum_squares_parts", nparts)))
            return st;
    }
    if ((st = kiln_cl_args(k2, "kiln_sum_parts", 5, sizeof part, &part, UINT(nparts), MEM(dst),
                           OFF(dst), (size_t)ELTWISE_WG * sizeof(float), NULL)))
        return st;
    return launch(be, k2, "kiln_sum_parts", ELTWISE_WG);
}

kiln_status kiln_cl_sgd_update(kiln_backend_t be, kiln_tensor *dst) {
    const char *name = "kiln_sgd_update";
    const kiln_tensor *g = dst->src[0];
    kiln_sgd_params p;
    memcpy(&p, dst->op_params, sizeof p);
    /* Without momentum the kernel never touches v; any valid buffer fills the slot. */
    const kiln_tensor *v = p.momentum != 0.0f ? dst->src[2] : dst;
    const size_t vec = sgd_vec(be);
    cl_kernel k;
    kiln_status st = get(be, name, &k);
    if (!st)
        st = kiln_cl_args(k, name, 12, MEM(dst), OFF(dst), MEM(g), OFF(g), MEM(v), OFF(v),
                          ULONG(count(dst)), FLOAT(p.lr), FLOAT(p.momentum), FLOAT(p.weight_decay),
                          FLOAT(p.grad_scale), INT(p.nesterov != 0));
    return st ? st : launch(be, k, name, (count(dst) + vec - 1) / vec);
}

kiln_status kiln_cl_adam_update(kiln_backend_t be, kiln_tensor *dst) {
    const char *name = "kiln_adam_update";
    const kiln_tensor *g = dst->src[0], *m = dst->src[1], *v = dst->src[2];
    kiln_adam_params p;
    memcpy(&p, dst->op_params, sizeof p);
    /* As the cpu reference computes them. */
    float bc1 = (float)(1.0 - pow(p.beta1, p.step)), bc2 = (float)(1.0 - pow(p.beta2, p.step));
    cl_kernel k;
    kiln_status st = get(be, name, &k);
    if (!st)
        st = kiln_cl_args(k, name, 18, MEM(dst), OFF(dst), MEM(g), OFF(g), MEM(m), OFF(m), MEM(v),
                          OFF(v), ULONG(count(dst)), FLOAT(p.lr), FLOAT(p.beta1), FLOAT(p.beta2),
                          FLOAT(p.eps), FLOAT(p.weight_decay), FLOAT(p.grad_scale), FLOAT(bc1),
                          FLOAT(bc2), INT(p.decoupled != 0));
    return st ? st : launch(be, k, name, count(dst));
}
