/* Internal: opencl backend op implementations, one file per op family (cl-<family>.c,
   kernels in kernels/<family>.cl). */
#ifndef KILN_CL_OPS_H
#define KILN_CL_OPS_H

#include "../../ops-impl.h"
#include "cl-impl.h"

/* kiln_cl_<name> for every op in ops.def (cl-backend.c's table). An op without a kernel yet
   is named here after the list, `#define kiln_cl_<name> NULL`: its table entry is then empty
   and the op runs through the host fallback. Without that line a missing implementation fails
   the link, so none is lost unnoticed. */
#define X(e, family, name, wmask) kiln_status kiln_cl_##name(kiln_backend_t be, kiln_tensor *dst);
#include "kiln/ops.def"
#undef X

/* The GEMM tiles chosen for this device, as text. */
kiln_status kiln_cl_gemm_describe(kiln_backend_t be, char *buf, size_t n);

/* Convolution geometry shared by the opencl and clblast convolutions (cl-conv.c). */
typedef struct kiln_cl_conv_geom {
    size_t n, c, h, w, o, kh, kw, oh, ow, groups, cg, og;
    size_t k;   /* rows of the column matrix per group: C/g * KH * KW */
    size_t ohw; /* OH * OW */
    kiln_conv2d_params p;
} kiln_cl_conv_geom;
void kiln_cl_conv_decode(const kiln_tensor *dst, const kiln_tensor *x, const kiln_tensor *w,
                         const kiln_tensor *y, kiln_cl_conv_geom *g);
/* A convolution's three passes (the tiled, edge and Winograd forms name them so). */
enum { KILN_CL_TILE_FORWARD, KILN_CL_TILE_BACKWARD_DATA, KILN_CL_TILE_BACKWARD_FILTER };
/* The geometry of the convolution that the pass's node dst computes (its sources in the
   order of ops.def: x, w; dy, w; x, dy). */
void kiln_cl_conv_decode_pass(const kiln_tensor *dst, int pass, kiln_cl_conv_geom *g);
/* A matrix operand in elements: (batch x) rows x cols at mem[off + b*stride + r*ld + c]. */
typedef struct {
    cl_mem mem;
    size_t off, ld, stride; /* stride 0: the same matrix for every batch entry */
} kiln_cl_mat;
/* Runs the backend's GEMM op (kiln's, or CLBlast's on the clblast backend) on raw buffers by
   dressing them as tensors: c = a(^T) b(^T) + beta c, batched. */
kiln_status kiln_cl_conv_gemm(kiln_backend_t be, int ta, int tb, size_t m, size_t n, size_t k,
                              size_t batch, float beta, kiln_cl_mat a, kiln_cl_mat b,
                              kiln_cl_mat c);
/* Enqueues k over the 3-D grid (g0, g1, g2): fixed 8 x 8 x 1 work-groups with the CPU forms,
   the work-group size left to the driver elsewhere. */
kiln_status kiln_cl_conv_launch(kiln_backend_t be, cl_kernel k, const char *name, size_t g0,
                                size_t g1, size_t g2);
/* The algorithm choices for convolutions (KILN_TUNE_CONV over the device type's defaults). */
typedef struct {
    size_t direct_max_c;
    int tile;
    int tile_set; /* KILN_TUNE_CONV names TILE: auto then measures no other than that form */
    int winograd; /* -1: where auto measures it faster; 0: never; the output block, 2 (F(2x2),
                     WINOGRAD=1) or 4 (F(4x4), the backward filter F(2x2)): wherever it applies */
    int edge;     /* the tiled form's edge tiles: -1 where auto measures them faster; 0: never;
                     1: wherever the tiled form runs */
    int tile_p, tile_o, vw; /* the tiled form's tile (conv-tile.cl); 0: the device's */
    int row;                /* ROW: forward and backward-data products over row tiles (1), the
                               pixel tiles (0), or the device's choice (-1) */
} kiln_cl_conv_tune;
kiln_status kiln_cl_conv_tune_get(kiln_backend_t be, kiln_cl_conv_tune *t);
/* Winograd F(2x2, 3x3) and F(4x4, 3x3) (cl-conv-winograd.c, kernels/winograd.cl): 3x3, stride 1,
   dilation 1, one group. As op implementations, so that auto can weigh them against the backend's
   own (the backend's own convolutions also take them with WINOGRAD=1). */
int kiln_cl_winograd_applies(const kiln_cl_conv_geom *g, int bwd);
int kiln_cl_supports_conv2d_winograd(kiln_backend_t be, const kiln_tensor *dst);
int kiln_cl_supports_conv2d_bwd_data_winograd(kiln_backend_t be, const kiln_tensor *dst);
int kiln_cl_supports_conv2d_bwd_filter_winograd(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_cl_conv2d_winograd(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cl_conv2d_winograd4(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cl_conv2d_bwd_data_winograd(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cl_conv2d_bwd_data_winograd4(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cl_conv2d_bwd_filter_winograd(kiln_backend_t be, kiln_tensor *dst);
/* m: the output block, 2 for F(2x2, 3x3) or 4 for F(4x4, 3x3). */
kiln_status kiln_cl_winograd_forward(kiln_backend_t be, const kiln_cl_conv_geom *g, int m,
                                     const kiln_tensor *x, const kiln_tensor *w,
                                     const kiln_tensor *bias, kiln_tensor *y);
kiln_status kiln_cl_winograd_backward_data(kiln_backend_t be, const kiln_cl_conv_geom *g, int m,
                                           const kiln_tensor *dy, const kiln_tensor *w,
                                           kiln_tensor *dx);
kiln_status kiln_cl_winograd_backward_filter(kiln_backend_t be, const kiln_cl_conv_geom *g,
                                             const kiln_tensor *x, const kiln_tensor *dy,
                                             kiln_tensor *dw);

/* The tiled implicit-GEMM convolutions (cl-conv-tile.c, kernels/conv-tile.cl): whether a
   convolution fits them (backward data: stride 1 only), and the three passes. */
/* *fits = whether the tiled form can run this pass of g on this device (index ranges, stride,
   the device's loop limit). */
kiln_status kiln_cl_conv_tile_fits(kiln_backend_t be, const kiln_cl_conv_geom *g, int pass,
                                   int *fits);
/* Whether the tiled form (TILE on, the CPU forms' default) takes this pass of node dst, with
   tn and g filled for the caller's own conditions: where auto's variants of it apply. */
int kiln_cl_conv_tile_runs(kiln_backend_t be, const kiln_tensor *dst, int pass,
                           kiln_cl_conv_tune *tn, kiln_cl_conv_geom *g);
/* *form = the tiled form that tn has this pass of g run: 1 the edge form (EDGE=1), 0 the
   tiled one (TILE=1), -1 neither (it does not fit, or TILE=0). */
kiln_status kiln_cl_conv_tile_form(kiln_backend_t be, const kiln_cl_conv_geom *g, int pass,
                                   const kiln_cl_conv_tune *tn, int *form);
/* The three passes; `edge`: in the edge form. */
kiln_status kiln_cl_conv_tile_forward(kiln_backend_t be, const kiln_cl_conv_geom *g, int edge,
                                      const kiln_tensor *x, const kiln_tensor *w,
                                      const kiln_tensor *bias, kiln_tensor *y);
kiln_status kiln_cl_conv_tile_backward_data(kiln_backend_t be, const kiln_cl_conv_geom *g, int edge,
                                            const kiln_tensor *dy, const kiln_tensor *w,
                                            kiln_tensor *dx);
/* im2col + GEMM as candidates of auto where the tiled form is the default (cl-conv.c). */
int kiln_cl_supports_conv2d_gemm(kiln_backend_t be, const kiln_tensor *dst);
int kiln_cl_supports_conv2d_bwd_data_gemm(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_cl_conv2d_gemm(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cl_conv2d_bwd_data_gemm(kiln_backend_t be, kiln_tensor *dst);
/* The edge form as candidates of auto (kiln_cl_variants). */
int kiln_cl_supports_conv2d_edge(kiln_backend_t be, const kiln_tensor *dst);
int kiln_cl_supports_conv2d_bwd_data_edge(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_cl_conv2d_edge(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cl_conv2d_bwd_data_edge(kiln_backend_t be, kiln_tensor *dst);
int kiln_cl_supports_conv2d_bwd_filter_edge(kiln_backend_t be, const kiln_tensor *dst);
kiln_status kiln_cl_conv2d_bwd_filter_edge(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_cl_conv_tile_backward_filter(kiln_backend_t be, const kiln_cl_conv_geom *g,
                                              int edge, const kiln_tensor *x, const kiln_tensor *dy,
                                              kiln_tensor *dw);

/* clblast backend: the ops CLBlast has routines for (clblast-<family>.c). */
kiln_status kiln_clblast_gemm(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_clblast_conv2d(kiln_backend_t be, kiln_tensor *dst);
kiln_status kiln_clblast_conv2d_bwd_data(kiln_backend_t be, kiln_tensor *dst);
/* Whether CLBlast's routines can express the convolution (else the opencl one runs it). */
int kiln_clblast_supports_conv2d(kiln_backend_t be, const kiln_tensor *dst);
int kiln_clblast_supports_conv2d_bwd_data(kiln_backend_t be, const kiln_tensor *dst);

#endif
