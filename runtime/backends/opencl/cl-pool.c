/* The opencl backend's pooling, LRN and copy ops (kernels/pool.cl): one work-item per output
   element, backward passes as gathers (an argmax or per-channel term into scratch first, then
   one work-item per dx element), copies with their dims collapsed first so contiguous runs
   become plain buffer copies or long rows. */
#include <string.h>

#include "cl-ops.h"
#include "kiln/ops.h"

/* Work-group size for the 1-D kernels; kiln_cl_launch shrinks it where the device says so. */
#define POOL_WG 256

static kiln_status launch_1d(kiln_cl_ctx *cl, cl_kernel k, const char *name, cl_ulong total) {
    size_t global = (size_t)total, local = POOL_WG;
    return kiln_cl_launch(cl, k, name, 1, &global, &local);
}

/* Rows of a 2-D grid share a work-group's uniform values; short rows waste little of 64. */
static kiln_status launch_rows(kiln_cl_ctx *cl, cl_kernel k, const char *name,
                               const size_t global[2]) {
    const size_t local[2] = {64, 1};
    return kiln_cl_launch(cl, k, name, 2, global, local);
}

/* ---- pooling ---- */

/* pool.cl's int16 geometry (see there) and whether the node is max pooling. */
static cl_int16 pool_geometry(const kiln_tensor *node, const kiln_tensor *x,
                              const kiln_tensor *pooled, cl_int *is_max) {
    kiln_pool2d_params p;
    memcpy(&p, node->op_params, sizeof p);
    cl_int16 g;
    memset(&g, 0, sizeof g);
    const cl_int v[13] = {(cl_int)x->shape[2],
                          (cl_int)x->shape[3],
                          (cl_int)pooled->shape[2],
                          (cl_int)pooled->shape[3],
                          p.kernel_h,
                          p.kernel_w,
                          p.stride_h,
                          p.stride_w,
                          p.pad_t,
                          p.pad_l,
                          p.pad_b,
                          p.pad_r,
                          p.count_include_pad};
    memcpy(g.s, v, sizeof v);
    *is_max = p.type == KILN_POOL_MAX;
    return g;
}

/* Windows tile the input (stride == kernel, no padding): pool.cl's *_tiles kernels apply. */
static int tiled(const kiln_tensor *node) {
    kiln_pool2d_params p;
    memcpy(&p, node->op_params, sizeof p);
    return p.stride_h == p.kernel_h && p.stride_w == p.kernel_w && !p.pad_t && !p.pad_b &&
           !p.pad_l && !p.pad_r;
}

/* One work-item per (output row, plane) of `pooled`; see pool.cl. */
static kiln_status launch_tiles(kiln_cl_ctx *cl, cl_kernel k, const char *name,
                                const kiln_tensor *pooled) {
    const size_t global[2] = {(size_t)pooled->shape[2],
                              (size_t)(pooled->shape[0] * pooled->shape[1])},
                 local[2] = {1, 16};
    return kiln_cl_launch(cl, k, name, 2, global, local);
}

kiln_status kiln_cl_pool2d(kiln_backend_t be, kiln_tensor *dst) {
    kiln_cl_ctx *cl = kiln_cl(be);
    const kiln_tensor *x = dst->src[0];
    cl_int is_max;
    cl_int16 g = pool_geometry(dst, x, dst, &is_max);
    cl_mem xm = kiln_cl_mem(x), ym = kiln_cl_mem(dst);
    cl_ulong xo = kiln_cl_off(x), yo = kiln_cl_off(dst),
             total = (cl_ulong)kiln_tensor_nelements(dst);
    cl_kernel k;
    kiln_status st;
    if (tiled(dst) && total) {
        const char *name = "pool2d_fwd_tiles";
        cl_ulong planes = (cl_ulong)(dst->shape[0] * dst->shape[1]);
        if ((st = kiln_cl_get_kernel(cl, "pool.cl", name, "", &k)) ||
            (st =
                 kiln_cl_args(k, name, 7, sizeof xm, &xm, sizeof xo, &xo, sizeof ym, &ym, sizeof yo,
                              &yo, sizeof g, &g, sizeof is_max, &is_max, sizeof planes, &planes)))
            return st;
        return launch_tiles(cl, k, name, dst);
    }
    st = kiln_cl_get_kernel(cl, "pool.cl", "pool2d_fwd", "", &k);
    if (!st)
        st = kiln_cl_args(k, "pool2d_fwd", 7, sizeof xm, &xm, sizeof xo, &xo, sizeof ym, &ym,
                          sizeof yo, &yo, sizeof g, &g, sizeof is_max, &is_max, sizeof total,
                          &total);
    return st ? st : launch_1d(cl, k, "pool2d_fwd", total);
}

kiln_status kiln_cl_pool2d_bwd(kiln_backend_t be, kiln_tensor *dst) {
    kiln_cl_ctx *cl = kiln_cl(be);
    const kiln_tensor *dy = dst->src[0], *x = dst->src[1];
    cl_int is_max;
    cl_int16 g = pool_geometry(dst, x, dy, &is_max);
    cl_mem dym = kiln_cl_mem(dy), xm = kiln_cl_mem(x), dxm = kiln_cl_mem(dst);
    cl_ulong dyo = kiln_cl_off(dy), xo = kiln_cl_off(x), dxo = kiln_cl_off(dst);
    cl_ulong nout = (cl_ulong)kiln_tensor_nelements(dy), nin = (cl_ulong)kiln_tensor_nelements(dst);
    kiln_status st = KILN_OK;
    cl_kernel k;
    if (tiled(dst) && nout) {
        const char *name = "pool2d_bwd_tiles";
        cl_ulong planes = (cl_ulong)(dy->shape[0] * dy->shape[1]);
        if ((st = kiln_cl_get_kernel(cl, "pool.cl", name, "", &k)) ||
            (st = kiln_cl_args(k, name, 9, sizeof dym, &dym, sizeof dyo, &dyo, sizeof xm, &xm,
                               sizeof xo, &xo, sizeof dxm, &dxm, sizeof dxo, &dxo, sizeof g, &g,
                               sizeof is_max, &is_max, sizeof planes, &planes)))
            return st;
        return launch_tiles(cl, k, name, dy);
    }
    /* avg never reads arg; any valid buffer fills the slot. */
    cl_mem arg = dym;
    if (is_max && nout) {
        if ((st = kiln_cl_get_scratch(cl, (size_t)nout * sizeof(cl_int), &arg)) ||
            (st = kiln_cl_get_kernel(cl, "pool.cl", "pool2d_argmax", "", &k)) ||
            (st = kiln_cl_args(k, "pool2d_argmax", 5, sizeof xm, &xm, sizeof xo, &xo, sizeof arg,
                               &arg, sizeof g, &g, sizeof nout, &nout)) ||
            (st = launch_1d(cl, k, "pool2d_argmax", nout)))
            return st;
    }
    if ((st = kiln_cl_get_kernel(cl, "pool.cl", "pool2d_bwd", "", &k)) ||
        (st = kiln_cl_args(k, "pool2d_bwd", 8, sizeof dym, &dym, sizeof dyo, &dyo, sizeof arg, &arg,
                           sizeof dxm, &dxm, sizeof dxo, &dxo, sizeof g, &g, sizeof is_max, &is_max,
                           sizeof nin, &nin)))
        return st;
    return launch_1d(cl, k, "pool2d_bwd", nin);
}

/* ---- local response normalization ---- */

/* pool.cl's (C, H*W, size, N*C) and (alpha/size, beta, k, 2 alpha beta/size), and the grid
   {H*W, N*C} with work-groups along the pixels. */
static void lrn_geometry(const kiln_tensor *node, const kiln_tensor *x, cl_int4 *d, cl_float4 *f,
                         size_t global[2]) {
    kiln_lrn_params p;
    memcpy(&p, node->op_params, sizeof p);
    memset(d, 0, sizeof *d);
    d->s[0] = (cl_int)x->shape[1];
    d->s[1] = (cl_int)(x->shape[2] * x->shape[3]);
    d->s[2] = p.size;
    d->s[3] = (cl_int)(x->shape[0] * x->shape[1]);
    global[0] = (size_t)d->s[1];
    global[1] = (size_t)d->s[3];
    f->s[0] = p.alpha / (float)p.size;
    f->s[1] = p.beta;
    f->s[2] = p.k;
    f->s[3] = 2.0f * p.alpha * p.beta / (float)p.size;
}

kiln_status kiln_cl_lrn(kiln_backend_t be, kiln_tensor *dst) {
    kiln_cl_ctx *cl = kiln_cl(be);
    const kiln_tensor *x = dst->src[0];
    cl_int4 d;
    cl_float4 f;
    size_t global[2];
    lrn_geometry(dst, x, &d, &f, global);
    cl_mem xm = kiln_cl_mem(x), ym = kiln_cl_mem(dst);
    cl_ulong xo = kiln_cl_off(x), yo = kiln_cl_off(dst);
    cl_kernel k;
    kiln_status st = kiln_cl_get_kernel(cl, "pool.cl", "lrn_fwd", "", &k);
    if (!st)
        st = kiln_cl_args(k, "lrn_fwd", 6, sizeof xm, &xm, sizeof xo, &xo, sizeof ym, &ym,
                          sizeof yo, &yo, sizeof d, &d, sizeof f, &f);
    return st ? st : launch_rows(cl, k, "lrn_fwd", global);
}

kiln_status kiln_cl_lrn_bwd(kiln_backend_t be, kiln_tensor *dst) {
    kiln_cl_ctx *cl = kiln_cl(be);
    const kiln_tensor *dy = dst->src[0], *x = dst->src[1];
    cl_int4 d;
    cl_float4 f;
    size_t global[2];
    lrn_geometry(dst, x, &d, &f, global);
    cl_mem dym = kiln_cl_mem(dy), xm = kiln_cl_mem(x), dxm = kiln_cl_mem(dst), t;
    cl_ulong dyo = kiln_cl_off(dy), xo = kiln_cl_off(x), dxo = kiln_cl_off(dst);
    size_t total = (size_t)kiln_tensor_nelements(dst);
    if (!total) return KILN_OK;
    cl_kernel k;
    kiln_status st;
    if ((st = kiln_cl_get_scratch(cl, total * sizeof(cl_float), &t)) ||
        (st = kiln_cl_get_kernel(cl, "pool.cl", "lrn_bwd_t", "", &k)) ||
        (st = kiln_cl_args(k, "lrn_bwd_t", 7, sizeof dym, &dym, sizeof dyo, &dyo, sizeof xm, &xm,
                           sizeof xo, &xo, sizeof t, &t, sizeof d, &d, sizeof f, &f)) ||
        (st = launch_rows(cl, k, "lrn_bwd_t", global)) ||
        (st = kiln_cl_get_kernel(cl, "pool.cl", "lrn_bwd_dx", "", &k)) ||
        (st = kiln_cl_args(k, "lrn_bwd_dx", 9, sizeof dym, &dym, sizeof dyo, &dyo, sizeof xm, &xm,
                           sizeof xo, &xo, sizeof t, &t, sizeof dxm, &dxm, sizeof dxo, &dxo,
                           sizeof d, &d, sizeof f, &f)))
        return st;
    return launch_rows(cl, k, "lrn_bwd_dx", global);
}

/* ---- copies ---- */

/* dst = src over any element-aligned strides. Dims of size 1 are dropped and neighbours that
   are contiguous in both tensors merged, so a contiguous copy becomes clEnqueueCopyBuffer and
   a channel slice a few long rows. */
static kiln_status copy_strided(kiln_cl_ctx *cl, const kiln_tensor *src, const kiln_tensor *dst) {
    cl_ulong es = (cl_ulong)kiln_dtype_size(src->dtype), n = (cl_ulong)kiln_tensor_nelements(src);
    if (!n) return KILN_OK;
    cl_ulong4 shape, ss, ds;
    memset(&shape, 0, sizeof shape);
    memset(&ss, 0, sizeof ss);
    memset(&ds, 0, sizeof ds);
    int m = 0;
    for (int d = 0; d < src->ndim; d++) {
        if (src->shape[d] == 1) continue;
        cl_ulong sh = (cl_ulong)src->shape[d], s = (cl_ulong)src->stride[d] / es;
        cl_ulong t = (cl_ulong)dst->stride[d] / es;
        if (m && ss.s[m - 1] == s * sh && ds.s[m - 1] == t * sh) {
            shape.s[m - 1] *= sh;
            ss.s[m - 1] = s;
            ds.s[m - 1] = t;
            continue;
        }
        shape.s[m] = sh;
        ss.s[m] = s;
        ds.s[m] = t;
        m++;
    }
    cl_ulong so = kiln_cl_off(src), dof = kiln_cl_off(dst);
    cl_mem sm = kiln_cl_mem(src), dm = kiln_cl_mem(dst);
    if (m == 0 || (m == 1 && ss.s[0] == 1 && ds.s[0] == 1)) {
        cl_int err = clEnqueueCopyBuffer(cl->queue, sm, dm, (size_t)(so * es), (size_t)(dof * es),
                                         (size_t)(n * es), 0, NULL, NULL);
        return err == CL_SUCCESS
                   ? KILN_OK
                   : kiln_cl_fail(err, "copy of %llu bytes", (unsigned long long)(n * es));
    }
    /* Right-align the kept dims in the kernel's 4. */
    for (int d = 3; d >= 0; d--) {
        int from = d - (4 - m);
        shape.s[d] = from >= 0 ? shape.s[from] : 1;
        ss.s[d] = from >= 0 ? ss.s[from] : 0;
        ds.s[d] = from >= 0 ? ds.s[from] : 0;
    }
    const char *name = es == 1 ? "copy_u8" : "copy_u32";
    cl_kernel k;
    kiln_status st = kiln_cl_get_kernel(cl, "pool.cl", name, "", &k);
    if (!st)
        st = kiln_cl_args(k, name, 8, sizeof sm, &sm, sizeof so, &so, sizeof dm, &dm, sizeof dof,
                          &dof, sizeof shape, &shape, sizeof ss, &ss, sizeof ds, &ds, sizeof n, &n);
    return st ? st : launch_1d(cl, k, name, n);
}

kiln_status kiln_cl_copy(kiln_backend_t be, kiln_tensor *dst) {
    return copy_strided(kiln_cl(be), dst->src[0], dst);
}

kiln_status kiln_cl_concat(kiln_backend_t be, kiln_tensor *dst) {
    int64_t at = 0;
    kiln_status st = KILN_OK;
    for (int i = 0; !st && i < KILN_MAX_SRC && dst->src[i]; i++) {
        kiln_tensor part;
        kiln_concat_part(dst, i, &at, &part);
        st = copy_strided(kiln_cl(be), dst->src[i], &part);
    }
    return st;
}
