/* What the opencl backend's convolution algorithms share (cl-conv.c, cl-conv-tile.c,
   cl-conv-winograd.c, and the clblast backend's): the geometry, the GEMM on raw buffers and
   the algorithm choices. */
#include <stdlib.h>
#include <string.h>

#include "cl-ops.h"

/* Input channels per group up to which conv2d runs the direct kernel, by device type.
   Measured on PoCL (2-core AVX-512): im2col + kiln's GEMM beats the direct kernel 1.5-4x in
   CPU time on every first layer tried (3->32 3x3 at 32x32, 3->64 11x11/4 at 64x64, 1->32 5x5
   at 28x28), so CPU devices never take it. On GPUs the direct kernel avoids writing and
   re-reading a column matrix 9 to 363 rows tall for 3 input channels; that default is not
   measured here. KILN_TUNE_CONV (below) overrides both. */
#ifndef KILN_CONV_DIRECT_MAX_C_CPU
#define KILN_CONV_DIRECT_MAX_C_CPU 0
#endif
#ifndef KILN_CONV_DIRECT_MAX_C_GPU
#define KILN_CONV_DIRECT_MAX_C_GPU 4
#endif
void kiln_cl_conv_decode(const kiln_tensor *dst, const kiln_tensor *x, const kiln_tensor *w,
                         const kiln_tensor *y, kiln_cl_conv_geom *g) {
    memcpy(&g->p, dst->op_params, sizeof g->p);
    g->n = (size_t)x->shape[0];
    g->c = (size_t)x->shape[1];
    g->h = (size_t)x->shape[2];
    g->w = (size_t)x->shape[3];
    g->o = (size_t)w->shape[0];
    g->kh = (size_t)w->shape[2];
    g->kw = (size_t)w->shape[3];
    g->oh = (size_t)y->shape[2];
    g->ow = (size_t)y->shape[3];
    g->groups = (size_t)g->p.groups;
    g->cg = g->c / g->groups;
    g->og = g->o / g->groups;
    g->k = g->cg * g->kh * g->kw;
    g->ohw = g->oh * g->ow;
}

void kiln_cl_conv_decode_pass(const kiln_tensor *dst, int pass, kiln_cl_conv_geom *g) {
    const kiln_tensor *a = dst->src[0], *b = dst->src[1];
    if (pass == KILN_CL_TILE_BACKWARD_DATA) /* dx from dy (src 0) and w (src 1) */
        kiln_cl_conv_decode(dst, dst, b, a, g);
    else if (pass == KILN_CL_TILE_BACKWARD_FILTER) /* dw from x (src 0) and dy (src 1) */
        kiln_cl_conv_decode(dst, a, dst, b, g);
    else
        kiln_cl_conv_decode(dst, a, b, dst, g);
}

kiln_status kiln_cl_conv_gemm(kiln_backend_t be, int ta, int tb, size_t m, size_t n, size_t k,
                              size_t batch, float beta, kiln_cl_mat a, kiln_cl_mat b,
                              kiln_cl_mat c) {
    kiln_op_fn fn = be->ops[KILN_OP_GEMM];
    if (!fn) return kiln_error(KILN_UNSUPPORTED, "conv: backend %s has no GEMM", be->name);
    const kiln_cl_mat *ms[3] = {&a, &b, &c};
    const size_t rows[3] = {ta ? k : m, tb ? n : k, m}, cols[3] = {ta ? m : k, tb ? k : n, n};
    struct kiln_buffer bufs[3];
    kiln_tensor t[3];
    for (int i = 0; i < 3; i++) {
        size_t nb = ms[i]->stride ? batch : 1;
        size_t end = ms[i]->off + (nb - 1) * ms[i]->stride + (rows[i] - 1) * ms[i]->ld + cols[i];
        bufs[i] = (struct kiln_buffer){be, ms[i]->mem, end * sizeof(float)};
        memset(&t[i], 0, sizeof t[i]);
        t[i].dtype = KILN_F32;
        t[i].ndim = 3;
        t[i].shape[0] = (int64_t)nb;
        t[i].shape[1] = (int64_t)rows[i];
        t[i].shape[2] = (int64_t)cols[i];
        t[i].stride[0] = (int64_t)(ms[i]->stride * sizeof(float));
        t[i].stride[1] = (int64_t)(ms[i]->ld * sizeof(float));
        t[i].stride[2] = sizeof(float);
        t[i].buffer = &bufs[i];
        t[i].offset = ms[i]->off * sizeof(float);
    }
    kiln_gemm_params p = {ta, tb, 1.0f, beta};
    t[2].op = KILN_OP_GEMM;
    memcpy(t[2].op_params, &p, sizeof p);
    t[2].src[0] = &t[0];
    t[2].src[1] = &t[1];
    return fn(be, &t[2]);
}

/* The algorithm choices: KILN_TUNE_CONV="DIRECT_MAX_C=n,TILE=0|1,WINOGRAD=0|1|4,EDGE=0|1,
   TILE_P=p,TILE_O=o,VW=v" over the defaults (the device type's; TILE follows KILN_KERNELS;
   Winograd and the tiled form's edge tiles where auto measures them faster; the tile's shape
   from the device's SIMD width). */
kiln_status kiln_cl_conv_tune_get(kiln_backend_t be, kiln_cl_conv_tune *t) {
    int cpu = be->device.type == KILN_DEVICE_CPU;
    memset(t, 0, sizeof *t);
    t->direct_max_c = cpu ? KILN_CONV_DIRECT_MAX_C_CPU : KILN_CONV_DIRECT_MAX_C_GPU;
    t->tile = kiln_cl(be)->cpu_kernels;
    t->winograd = -1;
    t->edge = -1;
    t->row = -1;
    const char *v = getenv("KILN_TUNE_CONV");
    enum { DIRECT, TILE, WINO, EDGE, TP, TO, VW, ROW, NNAMES };
    static const char *names[NNAMES] = {
        "DIRECT_MAX_C=", "TILE=", "WINOGRAD=", "EDGE=", "TILE_P=", "TILE_O=", "VW=", "ROW="};
    for (const char *p = v; p && *p;) {
        int which = -1;
        for (int i = 0; i < NNAMES; i++)
            if (!strncmp(p, names[i], strlen(names[i]))) which = i;
        const char *num = which < 0 ? p : p + strlen(names[which]);
        char *end = NULL;
        unsigned long n = *num >= '0' && *num <= '9' ? strtoul(num, &end, 10) : 0;
        int bad = which < 0 || !end || (*end && *end != ',');
        bad = bad || ((which == TILE || which == EDGE || which == ROW) && n > 1) ||
              (which == WINO && n > 1 && n != 4) || (which == TP && (n < 1 || n > 16)) ||
              (which == TO && (n < 1 || n > 64)) ||
              (which == VW && n != 1 && n != 2 && n != 4 && n != 8 && n != 16);
        if (bad)
            return kiln_error(KILN_INVALID_ARGUMENT,
                              "KILN_TUNE_CONV='%s' is not valid (names: DIRECT_MAX_C=n, TILE=0|1, "
                              "WINOGRAD=0|1|4, EDGE=0|1, TILE_P=1..16, TILE_O=1..64, "
                              "VW=1|2|4|8|16, ROW=0|1)",
                              v);
        if (which == DIRECT)
            t->direct_max_c = n;
        else if (which == TILE) {
            t->tile = (int)n;
            t->tile_set = 1;
        } else if (which == EDGE)
            t->edge = (int)n;
        else if (which == TP)
            t->tile_p = (int)n;
        else if (which == TO)
            t->tile_o = (int)n;
        else if (which == VW)
            t->vw = (int)n;
        else if (which == ROW)
            t->row = (int)n;
        else /* stored as the output block: WINOGRAD=1 is F(2x2) */
            t->winograd = n == 1 ? 2 : (int)n;
        p = *end ? end + 1 : end;
    }
    return KILN_OK;
}

/* With the CPU forms the work-group is fixed: PoCL compiles a kernel once per work-group
   size, and left to the driver every grid got its own (9-15 builds of each Winograd
   transform for the narrow VGG16, about 30 s of its first training step on two cores). The
   kernels launched here bounds-check dimensions 0 and 1, which round up; dimension 2 stays
   whole. */
kiln_status kiln_cl_conv_launch(kiln_backend_t be, cl_kernel k, const char *name, size_t g0,
                                size_t g1, size_t g2) {
    const size_t global[3] = {g0, g1, g2}, local[3] = {8, 8, 1};
    return kiln_cl_launch(kiln_cl(be), k, name, 3, global, kiln_cl(be)->cpu_kernels ? local : NULL);
}
