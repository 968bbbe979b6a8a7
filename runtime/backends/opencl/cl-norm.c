/* The opencl backend's batch normalization, softmax cross-entropy and accuracy
   (kernels/norm.cl). */
#include <stdint.h>
#include <string.h>

#include "../../ops-impl.h"
#include "cl-ops.h"

/* The widest work-group of a reduction; past it, more chunks per channel pay off better
   than deeper trees. */
#define REDUCE_WG_MAX 256
/* Elements per work-item of a chunk before a channel is split into another chunk... */
#define CHUNK_PER_ITEM 32
/* ...and the most chunks per channel (the merge walks them serially). */
#define CHUNKS_MAX 128

/* Kernel arguments set in order; the first failure sticks. */
typedef struct argset {
    cl_kernel k;
    const char *name;
    cl_uint i;
    kiln_status st;
} argset;

static void arg(argset *a, size_t size, const void *v) {
    if (a->st) return;
    cl_int err = clSetKernelArg(a->k, a->i, size, v);
    if (err != CL_SUCCESS) a->st = kiln_cl_fail(err, "kernel %s: argument %u", a->name, a->i);
    a->i++;
}

static void arg_buf(argset *a, cl_mem mem, cl_ulong off) {
    arg(a, sizeof mem, &mem);
    arg(a, sizeof off, &off);
}

static void arg_tensor(argset *a, const kiln_tensor *t) {
    arg_buf(a, kiln_cl_mem(t), kiln_cl_off(t));
}

static void arg_uint(argset *a, cl_uint v) {
    arg(a, sizeof v, &v);
}

static void arg_float(argset *a, float v) {
    arg(a, sizeof v, &v);
}

static kiln_status get_kernel(kiln_backend_t be, const char *name, argset *a) {
    memset(a, 0, sizeof *a);
    a->name = name;
    return kiln_cl_get_kernel(kiln_cl(be), "norm.cl", name, NULL, &a->k);
}

/* The widest power-of-two work-group up to `want` that the device and this kernel accept,
   with one 4-byte element of local memory per work-item: queried, never assumed. */
static size_t reduce_wg(kiln_cl_ctx *cl, cl_kernel k, size_t want) {
    size_t dev_max = 0, kern_max = 0, item_max[3] = {0, 0, 0};
    cl_ulong local_mem = 0, kern_local = 0;
    clGetDeviceInfo(cl->device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof dev_max, &dev_max, NULL);
    clGetDeviceInfo(cl->device, CL_DEVICE_MAX_WORK_ITEM_SIZES, sizeof item_max, item_max, NULL);
    clGetDeviceInfo(cl->device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof local_mem, &local_mem, NULL);
    clGetKernelWorkGroupInfo(k, cl->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof kern_max, &kern_max,
                             NULL);
    clGetKernelWorkGroupInfo(k, cl->device, CL_KERNEL_LOCAL_MEM_SIZE, sizeof kern_local,
                             &kern_local, NULL);
    size_t limit = want;
    if (dev_max && dev_max < limit) limit = dev_max;
    if (kern_max && kern_max < limit) limit = kern_max;
    if (item_max[0] && item_max[0] < limit) limit = item_max[0];
    if (local_mem > kern_local && (local_mem - kern_local) / 4 < limit)
        limit = (size_t)((local_mem - kern_local) / 4);
    size_t wg = 1;
    while (wg * 2 <= limit) wg *= 2;
    return wg;
}

/* x as N blocks of [C, HW]; M = N * HW elements per channel. The kernels index with 32 bits
   within a tensor. */
typedef struct bn_dims {
    cl_uint c, hw, rows, m;
} bn_dims;

static kiln_status bn_dims_of(const kiln_tensor *x, const char *op, bn_dims *d) {
    if (kiln_tensor_nelements(x) > (int64_t)UINT32_MAX)
        return kiln_shape_error(x, op, "x", "more than 2^32 elements are not supported");
    cl_uint n = (cl_uint)x->shape[0];
    d->c = (cl_uint)x->shape[1];
    d->hw = x->ndim == 4 ? (cl_uint)(x->shape[2] * x->shape[3]) : 1;
    d->rows = n * d->c;
    d->m = n * d->hw;
    return KILN_OK;
}

static float bn_eps(const kiln_tensor *dst) {
    kiln_bn_params p;
    memcpy(&p, dst->op_params, sizeof p);
    return p.eps;
}

/* A per-channel reduction into dst[2,C]: kernel `partial` (inputs, optional eps, then the
   chunk arguments) over (chunk, channel) work-groups, then `merge` when a channel has more
   than one chunk. */
static kiln_status bn_reduce(kiln_backend_t be, kiln_tensor *dst, const char *partial,
                             const char *merge, kiln_tensor *const *in, int nin, const float *eps,
                             const bn_dims *d) {
    kiln_cl_ctx *cl = kiln_cl(be);
    argset a;
    kiln_status st = get_kernel(be, partial, &a);
    if (st) return st;
    size_t wg = reduce_wg(cl, a.k, REDUCE_WG_MAX);
    size_t per_chunk = wg * CHUNK_PER_ITEM;
    cl_uint chunks = (cl_uint)((d->m + per_chunk - 1) / per_chunk);
    if (chunks > CHUNKS_MAX) chunks = CHUNKS_MAX;
    if (chunks < 1) chunks = 1;
    /* Even chunks, none empty. */
    cl_uint chunk = (cl_uint)(((size_t)d->m + chunks - 1) / chunks);
    chunks = (cl_uint)(((size_t)d->m + chunk - 1) / chunk);

    /* One chunk: the partials are the result. */
    cl_mem part = kiln_cl_mem(dst);
    cl_ulong part_off = kiln_cl_off(dst);
    if (chunks > 1) {
        if ((st = kiln_cl_get_scratch(cl, (size_t)2 * d->c * chunks * sizeof(float), &part)))
            return st;
        part_off = 0;
    }
    for (int i = 0; i < nin; i++) arg_tensor(&a, in[i]);
    if (eps) arg_float(&a, *eps);
    arg_uint(&a, d->c);
    arg_uint(&a, d->hw);
    arg_uint(&a, d->m);
    arg_uint(&a, chunk);
    arg_uint(&a, chunks);
    arg_buf(&a, part, part_off);
    arg(&a, wg * sizeof(float), NULL);
    size_t global[2] = {chunks * wg, d->c}, local[2] = {wg, 1};
    if (a.st || (st = kiln_cl_launch(cl, a.k, partial, 2, global, local))) return a.st ? a.st : st;
    if (chunks == 1) return KILN_OK;

    if ((st = get_kernel(be, merge, &a))) return st;
    arg_buf(&a, part, 0);
    arg_uint(&a, d->c);
    arg_uint(&a, chunks);
    arg_uint(&a, d->m);
    arg_uint(&a, chunk);
    arg_tensor(&a, dst);
    size_t channels = d->c;
    return a.st ? a.st : kiln_cl_launch(cl, a.k, merge, 1, &channels, NULL);
}

kiln_status kiln_cl_batchnorm_stats(kiln_backend_t be, kiln_tensor *dst) {
    bn_dims d = {0, 0, 0, 0};
    kiln_status st = bn_dims_of(dst->src[0], "batchnorm_stats", &d);
    return st ? st
              : bn_reduce(be, dst, "kiln_bn_stats_partial", "kiln_bn_stats_merge", dst->src, 1,
                          NULL, &d);
}

kiln_status kiln_cl_batchnorm_bwd_params(kiln_backend_t be, kiln_tensor *dst) {
    bn_dims d = {0, 0, 0, 0};
    kiln_status st = bn_dims_of(dst->src[1], "batchnorm_bwd_params", &d);
    float eps = bn_eps(dst);
    return st ? st
              : bn_reduce(be, dst, "kiln_bn_bwd_params_partial", "kiln_bn_sum_merge", dst->src, 3,
                          &eps, &d);
}

/* The elementwise passes: sources, dst, then (C, hw, rows, eps[, M]) over a (hw, rows) grid. */
static kiln_status bn_elementwise(kiln_backend_t be, kiln_tensor *dst, const char *name, int nin,
                                  int pass_m) {
    bn_dims d = {0, 0, 0, 0};
    argset a;
    kiln_status st = bn_dims_of(dst, kiln_op_name(dst->op), &d);
    if (st || (st = get_kernel(be, name, &a))) return st;
    for (int i = 0; i < nin; i++) arg_tensor(&a, dst->src[i]);
    arg_tensor(&a, dst);
    arg_uint(&a, d.c);
    arg_uint(&a, d.hw);
    arg_uint(&a, d.rows);
    arg_float(&a, bn_eps(dst));
    if (pass_m) arg_float(&a, (float)d.m);
    size_t global[2] = {d.hw, d.rows};
    return a.st ? a.st : kiln_cl_launch(kiln_cl(be), a.k, name, 2, global, NULL);
}

kiln_status kiln_cl_batchnorm(kiln_backend_t be, kiln_tensor *dst) {
    return bn_elementwise(be, dst, "kiln_bn_forward", 4, 0);
}

kiln_status kiln_cl_batchnorm_bwd(kiln_backend_t be, kiln_tensor *dst) {
    return bn_elementwise(be, dst, "kiln_bn_backward", 5, 1);
}

/* Softmax-row kernels: (logits, labels, dst, n, k, smoothing, scale, top_k, local), one
   work-group per row, as wide as the row up to the reduction limit. */
static kiln_status run_rows(kiln_backend_t be, kiln_tensor *dst, const char *name, float smoothing,
                            float scale, cl_uint top_k) {
    const kiln_tensor *logits = dst->src[0];
    if (kiln_tensor_nelements(logits) > (int64_t)UINT32_MAX)
        return kiln_shape_error(logits, kiln_op_name(dst->op), "logits",
                                "more than 2^32 elements are not supported");
    cl_uint n = (cl_uint)logits->shape[0], k = (cl_uint)logits->shape[1];
    argset a;
    kiln_status st = get_kernel(be, name, &a);
    if (st) return st;
    size_t want = 1;
    while (want < k && want < REDUCE_WG_MAX) want *= 2;
    size_t wg = reduce_wg(kiln_cl(be), a.k, want);
    arg_tensor(&a, logits);
    arg_tensor(&a, dst->src[1]);
    arg_tensor(&a, dst);
    arg_uint(&a, n);
    arg_uint(&a, k);
    arg_float(&a, smoothing);
    arg_float(&a, scale);
    arg_uint(&a, top_k);
    arg(&a, wg * sizeof(float), NULL);
    size_t global = (size_t)n * wg;
    return a.st ? a.st : kiln_cl_launch(kiln_cl(be), a.k, name, 1, &global, &wg);
}

kiln_status kiln_cl_softmax_xent(kiln_backend_t be, kiln_tensor *dst) {
    kiln_xent_params p;
    memcpy(&p, dst->op_params, sizeof p);
    return run_rows(be, dst, "kiln_softmax_xent", p.label_smoothing, p.scale, 0);
}

kiln_status kiln_cl_softmax_xent_bwd(kiln_backend_t be, kiln_tensor *dst) {
    kiln_xent_params p;
    memcpy(&p, dst->op_params, sizeof p);
    return run_rows(be, dst, "kiln_softmax_xent_bwd", p.label_smoothing, p.scale, 0);
}

kiln_status kiln_cl_accuracy(kiln_backend_t be, kiln_tensor *dst) {
    kiln_accuracy_params p;
    memcpy(&p, dst->op_params, sizeof p);
    return run_rows(be, dst, "kiln_accuracy", 0.0f, 0.0f, (cl_uint)p.top_k);
}
