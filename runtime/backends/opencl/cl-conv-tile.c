/* The opencl backend's tiled convolutions for CPU devices (kernels/conv-tile.cl): forward,
 * backward data (stride 1: a forward convolution of the padded dy with the flipped,
 * transposed weights) and backward filter, none of them materialising a column matrix. The
 * three passes also come in the edge form (conv_tile_edge, conv_tile_dw_edge), whose tiles
 * skip the taps that fall in the padding: auto weighs it where that is a tenth of the taps or
 * more (the small maps of deep layers), KILN_TUNE_CONV=EDGE=1 forces it.
 *
 * Buffers: the backend's scratch holds the packed weights (or dy transposed) and the padded
 * input for the length of one call; nothing else is allocated. */
#include <stdio.h>
#include <string.h>

#include "cl-ops.h"

/* conv_tile's work split: each work-item takes up to MAX_TILES_PER_ITEM tiles, keeping at
   least ITEMS_PER_CU work-items per compute unit. */
#define ITEMS_PER_CU       64
#define MAX_TILES_PER_ITEM 16

/* One tiled convolution "y = x (*) w" in the terms of conv-tile.cl: `ic`/`oc` channels per
   group, input planes h x w read through padding (pt, pl), output oh x ow. */
typedef struct {
    size_t n, groups, ic, oc, opad, h, w, oh, ow, hp, wp;
    long pt, pl;
    int kh, kw, sh, sw, dh, dw;
    size_t tp, to; /* the tile: TILE_P pixels (or rows) x TILE_O output channels */
    int vw;        /* its vector width, VW */
    int row_mode;  /* row tiles (conv_tile_row): 1 always, 0 never, -1 where they fill */
    int row;       /* this geometry takes them */
    size_t tpr;    /* their tiles per output row */
} tile_geom;

static size_t round_up(size_t x, size_t to) {
    return (x + to - 1) / to * to;
}

/* The tile's shape from the device's SIMD width (the preferred float vector, as PoCL reports
   it): the TILE_P x TILE_O/VW accumulators, TILE_O/VW weight vectors and a broadcast must fit
   the vector registers. AVX-512 has 32: 8 x 32 in float16 takes 16 + 2 + 1. AVX2 (and SSE)
   have 16, where that tile spills (3x slower steps on a 2-core Zen 3). There the filter
   gradient takes 6 x 16 in float8 (12 + 2 + 1, as the GEMM's tile, cl-gemm-launch.c); the
   forward form 4 x 16 (over row tiles where they fill, below), whose TILE_P lane pointers
   also fit the general registers and whose edge tiles divide the usual batches (vgg16n@32 forward
   and backward data on that Zen 3: about 0.8x the time of 6 x 16). Devices without the CPU forms'
   SIMD mapping (Oclgrind) get 8 x 32 in float4, which only has to be right. KILN_TUNE_CONV's
   TILE_P, TILE_O and VW override each (a TILE_O that is not a multiple of VW fails the kernel build
   with its log). */
static void tile_shape(kiln_backend_t be, int pass, tile_geom *t) {
    unsigned pv = be->device.pref_vec_float;
    t->row_mode = 0;
    if (be->device.type != KILN_DEVICE_CPU || pv < 4) {
        t->tp = 8, t->to = 32, t->vw = 4;
    } else if (pv >= 16) {
        t->tp = 8, t->to = 32, t->vw = 16;
    } else {
        t->vw = pv >= 8 ? 8 : 4;
        t->tp = pass == KILN_CL_TILE_BACKWARD_FILTER ? 6 : 4;
        t->to = 2 * (size_t)t->vw;
        t->row_mode = -1;
    }
    kiln_cl_conv_tune tn;
    if (kiln_cl_conv_tune_get(be, &tn)) return; /* reported where the choice is made */
    if (tn.tile_p) t->tp = (size_t)tn.tile_p;
    if (tn.tile_o) t->to = (size_t)tn.tile_o;
    if (tn.vw) t->vw = tn.vw;
    if (tn.row >= 0) t->row_mode = tn.row;
    if (pass == KILN_CL_TILE_BACKWARD_FILTER) t->row_mode = 0; /* conv_tile_dw has its own */
}

/* Row tiles where the rows fill them: at least ROW_MIN_FILL of their lanes are output
   pixels. On a Zen 3 (4 x 16 tiles; the vgg16n and AlexNet layer sets of `kiln bench conv` at
   28, 32 and 64, three interleaved runs each) they took 0.65-0.95x the time of conv_tile on
   the maps of 4 to 64 columns that fill them, about the same on 7 columns (7 of 8 lanes), and
   up to 2.5x on the 1, 2 and 3 columns of the deepest layers. AVX-512's 8 x 32 tiles keep
   conv_tile unless ROW=1 (not measured there). */
#define ROW_MIN_FILL 0.85

static void finish_geom(tile_geom *t) {
    t->opad = round_up(t->oc, t->to);
    t->hp = (t->oh - 1) * (size_t)t->sh + (size_t)(t->kh - 1) * (size_t)t->dh + 1;
    t->wp = (t->ow - 1) * (size_t)t->sw + (size_t)(t->kw - 1) * (size_t)t->dw + 1;
    t->tpr = (t->ow + t->tp - 1) / t->tp;
    t->row = t->row_mode > 0 ||
             (t->row_mode < 0 && (double)t->ow >= ROW_MIN_FILL * (double)(t->tpr * t->tp));
    if (t->row) {
        /* slack for the extra lanes of each row's last tile */
        size_t wide =
            (t->tpr * t->tp - 1) * (size_t)t->sw + (size_t)(t->kw - 1) * (size_t)t->dw + 1;
        if (wide > t->wp) t->wp = wide;
    }
}

/* The forward (or, for that pass, filter-gradient) geometry of a convolution. */
static tile_geom forward_geom(kiln_backend_t be, const kiln_cl_conv_geom *g, int pass) {
    tile_geom t = {.n = g->n,
                   .groups = g->groups,
                   .ic = g->cg,
                   .oc = g->og,
                   .h = g->h,
                   .w = g->w,
                   .oh = g->oh,
                   .ow = g->ow,
                   .pt = g->p.pad_t,
                   .pl = g->p.pad_l,
                   .kh = (int)g->kh,
                   .kw = (int)g->kw,
                   .sh = g->p.stride_h,
                   .sw = g->p.stride_w,
                   .dh = g->p.dil_h,
                   .dw = g->p.dil_w};
    tile_shape(be, pass, &t);
    finish_geom(&t);
    return t;
}

/* Backward data of a stride-1 convolution as a forward one: dy (og channels, oh x ow) in,
   dx (cg channels, h x w) out, padded by dilation*(k-1) - pad before. */
static tile_geom backward_geom(kiln_backend_t be, const kiln_cl_conv_geom *g) {
    tile_geom t = forward_geom(be, g, KILN_CL_TILE_BACKWARD_DATA);
    t.ic = g->og;
    t.oc = g->cg;
    t.h = g->oh;
    t.w = g->ow;
    t.oh = g->h;
    t.ow = g->w;
    t.pt = (long)g->p.dil_h * (long)(g->kh - 1) - g->p.pad_t;
    t.pl = (long)g->p.dil_w * (long)(g->kw - 1) - g->p.pad_l;
    t.sh = t.sw = 1;
    finish_geom(&t);
    return t;
}

/* Loop iterations of one work-item, bounded as the GEMM's are (cl-gemm-launch.c): one per
   multiply-add lane of a tap or pixel step plus its loads, and the stores. */
static size_t step_iters(const tile_geom *t) {
    return t->tp * t->to + t->tp + t->to;
}

static size_t fixed_iters(const tile_geom *t) {
    return 3 * t->tp * t->to;
}

static size_t tile_item_iters(const tile_geom *t) {
    return t->ic * (size_t)t->kh * (size_t)t->kw * step_iters(t) + t->ic * t->tp + fixed_iters(t);
}

static size_t pad_item_iters(const tile_geom *t) {
    return t->hp * (t->wp + 3);
}

static kiln_status kernel(kiln_backend_t be, const tile_geom *t, const char *name, cl_kernel *k) {
    char opts[160];
    snprintf(opts, sizeof opts,
             "-DKH=%d -DKW=%d -DSH=%d -DSW=%d -DDH=%d -DDW=%d -DTILE_P=%zu -DTILE_O=%zu -DVW=%d",
             t->kh, t->kw, t->sh, t->sw, t->dh, t->dw, t->tp, t->to, t->vw);
    return kiln_cl_get_kernel(kiln_cl(be), "conv-tile.cl", name, opts, k);
}

static cl_int8 dims(const tile_geom *t) {
    cl_int8 d;
    memset(&d, 0, sizeof d);
    const size_t v[8] = {t->ic, t->oc, t->opad, t->groups, t->hp, t->wp, t->oh, t->ow};
    for (int i = 0; i < 8; i++) d.s[i] = (cl_int)v[i];
    return d;
}

/* xp (at element xp_off of buf) = the input padded for t. An input whose planes already
   have xp's shape (no padding) is read in place; *in and *in_off say where to read. */
static kiln_status pad(kiln_backend_t be, const tile_geom *t, cl_mem x, size_t x_off, cl_mem buf,
                       size_t xp_off, cl_mem *in, size_t *in_off) {
    if (!t->pt && !t->pl && t->hp == t->h && t->wp == t->w) {
        *in = x;
        *in_off = x_off;
        return KILN_OK;
    }
    *in = buf;
    *in_off = xp_off;
    cl_kernel k;
    cl_int8 d;
    memset(&d, 0, sizeof d);
    const long v[6] = {(long)t->h, (long)t->w, (long)t->hp, (long)t->wp, t->pt, t->pl};
    for (int i = 0; i < 6; i++) d.s[i] = (cl_int)v[i];
    cl_ulong xo = x_off, po = xp_off, planes = t->n * t->ic * t->groups;
    kiln_status st = kernel(be, t, "conv_tile_pad", &k);
    if (!st)
        st = kiln_cl_args(k, "conv_tile_pad", 6, sizeof x, &x, sizeof xo, &xo, sizeof buf, &buf,
                          sizeof po, &po, sizeof d, &d, sizeof planes, &planes);
    const size_t global = (size_t)planes, local = 1;
    return st ? st : kiln_cl_launch(kiln_cl(be), k, "conv_tile_pad", 1, &global, &local);
}

static size_t padded_elems(const tile_geom *t) {
    return t->n * t->ic * t->groups * t->hp * t->wp;
}

/* Fraction of the kernel taps of t's output pixels that land inside the input (1: no padding
   is read). Rows and columns count separately: the taps inside are their product. */
static double inside_fraction(const tile_geom *t) {
    size_t rows = 0, cols = 0;
    for (size_t o = 0; o < t->oh; o++)
        for (int k = 0; k < t->kh; k++) {
            long i = (long)o * t->sh - t->pt + (long)k * t->dh;
            rows += i >= 0 && i < (long)t->h;
        }
    for (size_t o = 0; o < t->ow; o++)
        for (int k = 0; k < t->kw; k++) {
            long i = (long)o * t->sw - t->pl + (long)k * t->dw;
            cols += i >= 0 && i < (long)t->w;
        }
    return (double)rows * (double)cols / ((double)(t->oh * t->ow) * (double)(t->kh * t->kw));
}

/* Work-items of one output-channel tile for `tiles` tiles: several tiles each, while leaving
   at least ITEMS_PER_CU items per compute unit for load balance, and within the device's
   loop cap. */
static kiln_status tiles_per_item(kiln_backend_t be, const tile_geom *t, size_t tiles,
                                  size_t otiles, size_t *per_out) {
    size_t cus = be->device.compute_units ? be->device.compute_units : 1;
    size_t per = tiles * otiles / (ITEMS_PER_CU * cus);
    per = per < 1 ? 1 : per > MAX_TILES_PER_ITEM ? MAX_TILES_PER_ITEM : per;
    unsigned long budget = 0;
    kiln_status st = kiln_cl_loop_budget(kiln_cl(be), &budget);
    if (st) return st;
    if (budget && per * tile_item_iters(t) > budget) /* kiln_cl_conv_tile_fits: one fits */
        per = budget / tile_item_iters(t) ? budget / tile_item_iters(t) : 1;
    *per_out = per;
    return KILN_OK;
}

/* y = conv(x, w) (+ bias) for t, w given as the convolution's own weight tensor and packed
   (flipped for the backward-data form); `edge`: conv_tile_edge on the unpadded x. */
static kiln_status run_tile(kiln_backend_t be, const tile_geom *t, const kiln_cl_conv_geom *g,
                            cl_mem x, size_t x_off, const kiln_tensor *w, int flip, int edge,
                            const kiln_tensor *bias, cl_mem y, size_t y_off) {
    kiln_cl_ctx *cl = kiln_cl(be);
    const size_t taps = (size_t)t->kh * (size_t)t->kw;
    /* the packed weights, then one bias row per group */
    const size_t wp_elems = round_up(t->groups * (t->ic * taps + 1) * t->opad, 16);
    cl_mem buf, in = x;
    size_t in_off = x_off;
    kiln_status st =
        kiln_cl_get_scratch(cl, (wp_elems + (edge ? 0 : padded_elems(t))) * sizeof(float), &buf);
    if (st) return st;
    if (!edge && (st = pad(be, t, x, x_off, buf, wp_elems, &in, &in_off))) return st;

    cl_kernel k;
    cl_int8 d = dims(t);
    d.s[3] = flip;
    d.s[4] = (cl_int)g->cg;
    d.s[5] = (cl_int)g->og;
    d.s[6] = (cl_int)t->groups;
    cl_mem wm = kiln_cl_mem(w), bm = bias ? kiln_cl_mem(bias) : wm;
    cl_ulong wo = kiln_cl_off(w), bo = bias ? kiln_cl_off(bias) : 0, zero = 0;
    cl_int has = bias != NULL;
    if ((st = kernel(be, t, "conv_tile_pack_w", &k)) ||
        (st = kiln_cl_args(k, "conv_tile_pack_w", 8, sizeof wm, &wm, sizeof wo, &wo, sizeof bm, &bm,
                           sizeof bo, &bo, sizeof has, &has, sizeof buf, &buf, sizeof zero, &zero,
                           sizeof d, &d)))
        return st;
    size_t gw[3] = {t->opad, t->ic * taps + 1, t->groups}, lw[3] = {t->to, 1, 1};
    if ((st = kiln_cl_launch(cl, k, "conv_tile_pack_w", 3, gw, lw))) return st;

    d = dims(t);
    const size_t otiles = t->opad / t->to * t->groups, npix = t->n * t->oh * t->ow;
    /* edge: TILE_P images at one position per tile, so ceil(n / TILE_P) tiles per position */
    const size_t tpp = (t->n + t->tp - 1) / t->tp;
    const int row = !edge && t->row;
    const size_t tiles = edge  ? t->oh * t->ow * tpp
                         : row ? t->n * t->oh * t->tpr
                               : (npix + t->tp - 1) / t->tp;
    size_t per;
    if ((st = tiles_per_item(be, t, tiles, otiles, &per))) return st;
    cl_uint u_per = (cl_uint)per, count = (cl_uint)(edge || row ? tiles : npix);
    cl_uint u_tpr = (cl_uint)t->tpr;
    cl_ulong io = in_off, yo = y_off;
    const char *name = edge ? "conv_tile_edge" : row ? "conv_tile_row" : "conv_tile";
    if ((st = kernel(be, t, name, &k))) return st;
    /* edge: the unpadded planes, and one more argument (last) */
    if (edge) {
        d.s[4] = (cl_int)t->h;
        d.s[5] = (cl_int)t->w;
    }
    cl_int4 e = {{(cl_int)t->n, (cl_int)t->pt, (cl_int)t->pl, (cl_int)tpp}};
    /* the last argument: edge's e or row's tiles per row */
    if ((st = kiln_cl_args(k, name, edge || row ? 10 : 9, sizeof in, &in, sizeof io, &io,
                           sizeof buf, &buf, sizeof zero, &zero, sizeof y, &y, sizeof yo, &yo,
                           sizeof d, &d, sizeof count, &count, sizeof u_per, &u_per,
                           row ? sizeof u_tpr : sizeof e, row ? (void *)&u_tpr : (void *)&e)))
        return st;
    size_t gc[2] = {(tiles + per - 1) / per, otiles}, lc[2] = {1, 1};
    return kiln_cl_launch(cl, k, name, 2, gc, lc);
}

kiln_status kiln_cl_conv_tile_fits(kiln_backend_t be, const kiln_cl_conv_geom *g, int pass,
                                   int *fits) {
    *fits = 0;
    /* 32-bit pixel and element indices inside the kernels */
    size_t pix = g->n * (g->oh * g->ow > g->h * g->w ? g->oh * g->ow : g->h * g->w);
    if (pix >= ((size_t)1 << 31) || g->n * g->c * (g->h + 64) * (g->w + 64) >= ((size_t)1 << 31))
        return KILN_OK;
    if (pass == KILN_CL_TILE_BACKWARD_DATA && (g->p.stride_h != 1 || g->p.stride_w != 1))
        return KILN_OK;
    unsigned long budget = 0;
    kiln_status st = kiln_cl_loop_budget(kiln_cl(be), &budget);
    if (st) return st;
    if (budget) {
        /* A device that caps loop iterations takes the tiled form only where one work-item's
           share fits (one tile; one image's pixels for the filter gradient); otherwise the
           im2col + GEMM form, whose GEMM splits k, runs. */
        tile_geom t =
            pass == KILN_CL_TILE_BACKWARD_DATA ? backward_geom(be, g) : forward_geom(be, g, pass);
        size_t item = pass == KILN_CL_TILE_BACKWARD_FILTER
                          ? t.oh * t.ow * step_iters(&t) + fixed_iters(&t)
                          : tile_item_iters(&t);
        if (item > budget || pad_item_iters(&t) > budget) return KILN_OK;
    }
    *fits = 1;
    return KILN_OK;
}

kiln_status kiln_cl_conv_tile_form(kiln_backend_t be, const kiln_cl_conv_geom *g, int pass,
                                   const kiln_cl_conv_tune *tn, int *form) {
    *form = -1;
    int fits = 0;
    kiln_status st =
        tn->tile || tn->edge > 0 ? kiln_cl_conv_tile_fits(be, g, pass, &fits) : KILN_OK;
    if (!st && fits) *form = tn->edge > 0 ? 1 : tn->tile ? 0 : -1;
    return st;
}

kiln_status kiln_cl_conv_tile_forward(kiln_backend_t be, const kiln_cl_conv_geom *g, int edge,
                                      const kiln_tensor *x, const kiln_tensor *w,
                                      const kiln_tensor *bias, kiln_tensor *y) {
    tile_geom t = forward_geom(be, g, KILN_CL_TILE_FORWARD);
    return run_tile(be, &t, g, kiln_cl_mem(x), kiln_cl_off(x), w, 0, edge, bias, kiln_cl_mem(y),
                    kiln_cl_off(y));
}

kiln_status kiln_cl_conv_tile_backward_data(kiln_backend_t be, const kiln_cl_conv_geom *g, int edge,
                                            const kiln_tensor *dy, const kiln_tensor *w,
                                            kiln_tensor *dx) {
    tile_geom t = backward_geom(be, g);
    return run_tile(be, &t, g, kiln_cl_mem(dy), kiln_cl_off(dy), w, 1, edge, NULL, kiln_cl_mem(dx),
                    kiln_cl_off(dx));
}

/* Bytes of dy (transposed) per pixel chunk of the filter gradient: small enough to stay in a
   core's L2 while every k tile of the chunk reads it. */
#define DW_CHUNK_BYTES ((size_t)256 << 10)

kiln_status kiln_cl_conv_tile_backward_filter(kiln_backend_t be, const kiln_cl_conv_geom *g,
                                              int edge, const kiln_tensor *x, const kiln_tensor *dy,
                                              kiln_tensor *dw) {
    kiln_cl_ctx *cl = kiln_cl(be);
    tile_geom t = forward_geom(be, g, KILN_CL_TILE_BACKWARD_FILTER);
    const size_t ohw = t.oh * t.ow, npix = t.n * ohw, nk = t.ic * (size_t)t.kh * (size_t)t.kw;
    size_t chunk = DW_CHUNK_BYTES / (ohw * t.to * sizeof(float));
    chunk = chunk < 1 ? 1 : chunk > t.n ? t.n : chunk;
    unsigned long budget = 0;
    kiln_status st = kiln_cl_loop_budget(cl, &budget);
    if (st) return st;
    const size_t image_iters = ohw * step_iters(&t);
    if (budget && chunk * image_iters + fixed_iters(&t) > budget)
        chunk = budget / image_iters > 1 ? (budget - fixed_iters(&t)) / image_iters : 1;
    const size_t nchunks = (t.n + chunk - 1) / chunk;
    const size_t dw_elems = t.groups * t.oc * nk;
    const size_t dyt_elems = round_up(t.groups * npix * t.opad, 16);
    const size_t part_elems = nchunks > 1 ? round_up(nchunks * dw_elems, 16) : 0;
    cl_mem buf, in = kiln_cl_mem(x);
    size_t in_off = kiln_cl_off(x);
    st = kiln_cl_get_scratch(
        cl, (dyt_elems + part_elems + (edge ? 0 : padded_elems(&t))) * sizeof(float), &buf);
    if (st) return st;
    if (!edge && (st = pad(be, &t, kiln_cl_mem(x), kiln_cl_off(x), buf, dyt_elems + part_elems, &in,
                           &in_off)))
        return st;

    cl_kernel k;
    cl_int8 d = dims(&t);
    cl_mem dym = kiln_cl_mem(dy), dwm = kiln_cl_mem(dw);
    cl_ulong dyo = kiln_cl_off(dy), io = in_off;
    cl_uint nimg = (cl_uint)t.n, ch = (cl_uint)chunk, u_ohw = (cl_uint)ohw, u_oc = (cl_uint)t.oc,
            u_opad = (cl_uint)t.opad, u_groups = (cl_uint)t.groups;
    if ((st = kernel(be, &t, "conv_tile_dyt", &k)) ||
        (st = kiln_cl_args(k, "conv_tile_dyt", 8, sizeof dym, &dym, sizeof dyo, &dyo, sizeof buf,
                           &buf, sizeof u_ohw, &u_ohw, sizeof nimg, &nimg, sizeof u_oc, &u_oc,
                           sizeof u_opad, &u_opad, sizeof u_groups, &u_groups)))
        return st;
    size_t gt[3] = {ohw, t.n, t.groups}, lt[3] = {64, 1, 1};
    if ((st = kiln_cl_launch(cl, k, "conv_tile_dyt", 3, gt, lt))) return st;
    /* One chunk writes dw directly; several write partial sums that conv_tile_sum adds. */
    cl_mem out = nchunks > 1 ? buf : dwm;
    cl_ulong out_off = nchunks > 1 ? dyt_elems : kiln_cl_off(dw), part_stride = dw_elems;
    const char *name = edge ? "conv_tile_dw_edge" : "conv_tile_dw";
    if ((st = kernel(be, &t, name, &k))) return st;
    /* edge: blocks of TILE_P input channels at one tap, on the unpadded x */
    size_t rows =
        edge ? (t.ic + t.tp - 1) / t.tp * (size_t)t.kh * (size_t)t.kw : (nk + t.tp - 1) / t.tp;
    if (edge) {
        d.s[4] = (cl_int)t.h;
        d.s[5] = (cl_int)t.w;
    }
    cl_int2 e = {{(cl_int)t.pt, (cl_int)t.pl}};
    if ((st = kiln_cl_args(k, name, edge ? 10 : 9, sizeof in, &in, sizeof io, &io, sizeof buf, &buf,
                           sizeof out, &out, sizeof out_off, &out_off, sizeof part_stride,
                           &part_stride, sizeof d, &d, sizeof nimg, &nimg, sizeof ch, &ch, sizeof e,
                           &e)))
        return st;
    size_t gd[3] = {rows, t.opad / t.to * t.groups, nchunks}, ld[3] = {1, 1, 1};
    if ((st = kiln_cl_launch(cl, k, name, 3, gd, ld)) || nchunks == 1) return st;
    cl_ulong dwo = kiln_cl_off(dw), po = dyt_elems;
    cl_uint n = (cl_uint)dw_elems, parts = (cl_uint)nchunks;
    if ((st = kernel(be, &t, "conv_tile_sum", &k)) ||
        (st = kiln_cl_args(k, "conv_tile_sum", 6, sizeof buf, &buf, sizeof po, &po, sizeof dwm,
                           &dwm, sizeof dwo, &dwo, sizeof n, &n, sizeof parts, &parts)))
        return st;
    size_t gs = dw_elems, ls = 64;
    return kiln_cl_launch(cl, k, "conv_tile_sum", 1, &gs, &ls);
}

int kiln_cl_conv_tile_runs(kiln_backend_t be, const kiln_tensor *dst, int pass,
                           kiln_cl_conv_tune *tn, kiln_cl_conv_geom *g) {
    if (kiln_cl_conv_tune_get(be, tn) || !tn->tile) return 0;
    kiln_cl_conv_decode_pass(dst, pass, g);
    int fits = 0;
    return g->n && !kiln_cl_conv_tile_fits(be, g, pass, &fits) && fits;
}

/* The edge form as a candidate of auto: with the CPU forms (like conv_tile, one work-item per
   tile: no GPU would run it well), where it runs and skips a tenth of the taps or more, and
   not switched off by EDGE=0. */
static int edge_supports(kiln_backend_t be, const kiln_tensor *dst, int pass) {
    kiln_cl_conv_tune tn;
    kiln_cl_conv_geom g;
    if (!kiln_cl_conv_tile_runs(be, dst, pass, &tn, &g) || !tn.edge) return 0;
    tile_geom t =
        pass == KILN_CL_TILE_BACKWARD_DATA ? backward_geom(be, &g) : forward_geom(be, &g, pass);
    return inside_fraction(&t) <= 0.9;
}

int kiln_cl_supports_conv2d_edge(kiln_backend_t be, const kiln_tensor *dst) {
    return edge_supports(be, dst, KILN_CL_TILE_FORWARD);
}

int kiln_cl_supports_conv2d_bwd_data_edge(kiln_backend_t be, const kiln_tensor *dst) {
    return edge_supports(be, dst, KILN_CL_TILE_BACKWARD_DATA);
}

kiln_status kiln_cl_conv2d_edge(kiln_backend_t be, kiln_tensor *dst) {
    kiln_cl_conv_geom g;
    kiln_cl_conv_decode_pass(dst, KILN_CL_TILE_FORWARD, &g);
    if (!g.n) return KILN_OK;
    return kiln_cl_conv_tile_forward(be, &g, 1, dst->src[0], dst->src[1], dst->src[2], dst);
}

kiln_status kiln_cl_conv2d_bwd_data_edge(kiln_backend_t be, kiln_tensor *dst) {
    kiln_cl_conv_geom g;
    kiln_cl_conv_decode_pass(dst, KILN_CL_TILE_BACKWARD_DATA, &g);
    if (!g.n) return KILN_OK;
    return kiln_cl_conv_tile_backward_data(be, &g, 1, dst->src[0], dst->src[1], dst);
}

int kiln_cl_supports_conv2d_bwd_filter_edge(kiln_backend_t be, const kiln_tensor *dst) {
    return edge_supports(be, dst, KILN_CL_TILE_BACKWARD_FILTER);
}

kiln_status kiln_cl_conv2d_bwd_filter_edge(kiln_backend_t be, kiln_tensor *dst) {
    kiln_cl_conv_geom g;
    kiln_cl_conv_decode_pass(dst, KILN_CL_TILE_BACKWARD_FILTER, &g);
    /* No images: dW is zero, which the backend's own op writes. */
    if (!g.n) return kiln_cl_conv2d_bwd_filter(be, dst);
    return kiln_cl_conv_tile_backward_filter(be, &g, 1, dst->src[0], dst->src[1], dst);
}
