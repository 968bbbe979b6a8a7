/* The op harness's case list and case building (harness.h), shared by test-backend-ops and
   test-ops-registry. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-util.h"
#include "harness.h"

static tcase *cases;
static int ncases, cap_cases;

tcase *kiln_add_case(const op_kind *kind, const void *params, size_t size, int small,
                     const char *fmt, ...) {
    if (ncases == cap_cases) {
        cap_cases = cap_cases ? cap_cases * 2 : 128;
        tcase *grown = realloc(cases, sizeof *cases * (size_t)cap_cases);
        if (!grown) {
            fprintf(stderr, "out of memory registering cases\n");
            exit(1);
        }
        cases = grown;
    }
    tcase *c = &cases[ncases++];
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->small = small;
    if (size > sizeof c->p) {
        fprintf(stderr, "case parameters too large (%zu bytes)\n", size);
        exit(1);
    }
    memcpy(c->p, params, size);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->name, sizeof c->name, fmt, ap);
    va_end(ap);
    return c;
}

uint64_t kiln_case_seed(const tcase *c, int tensor) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const char *s = c->name; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h * 31 + (uint64_t)tensor;
}

static kiln_status add_buffer(tctx *x, size_t bytes, kiln_buffer_t *out) {
    if (x->nbufs == (int)(sizeof x->bufs / sizeof x->bufs[0])) return KILN_INTERNAL;
    kiln_status st = kiln_buffer_alloc(x->be, bytes ? bytes : 1, out);
    if (!st) x->bufs[x->nbufs++] = *out;
    return st;
}

/* Fills a whole buffer from host bytes. */
static kiln_status fill_buffer(kiln_buffer_t buf, const void *host, size_t bytes) {
    kiln_tensor whole;
    int64_t shape[1] = {(int64_t)bytes};
    kiln_tensor_init(&whole, KILN_U8, 1, shape);
    kiln_status st = kiln_tensor_bind(&whole, buf, 0);
    return st ? st : kiln_tensor_set(&whole, host, bytes);
}

static void fill_host(void *h, kiln_dtype dtype, size_t n, uint64_t seed, float lo, float hi,
                      int nan_fill) {
    float *f = malloc(n * sizeof *f);
    if (!f) return;
    kiln_fill_uniform(f, n, seed); /* [-1, 1) */
    for (size_t i = 0; i < n; i++) {
        double u = 0.5 * (f[i] + 1.0), v = lo + u * (hi - lo);
        switch (dtype) {
        case KILN_F32:
            ((float *)h)[i] = nan_fill ? NAN : (float)v;
            break;
        case KILN_I32:
            ((int32_t *)h)[i] = (int32_t)floor(v);
            break;
        case KILN_U8:
            ((uint8_t *)h)[i] = (uint8_t)floor(v);
            break;
        default:
            break;
        }
    }
    free(f);
}

static kiln_status new_tensor(const tcase *c, tctx *x, kiln_tensor *t, int seed_idx,
                              kiln_dtype dtype, int ndim, const int64_t *shape, float lo, float hi,
                              int nan_fill) {
    kiln_status st = kiln_tensor_init(t, dtype, ndim, shape);
    if (st) return st;
    size_t n = (size_t)kiln_tensor_nelements(t), bytes = n * kiln_dtype_size(dtype);
    kiln_buffer_t buf;
    if ((st = add_buffer(x, bytes, &buf))) return st;
    if ((st = kiln_tensor_bind(t, buf, 0))) return st;
    if (!bytes) return KILN_OK;
    void *h = malloc(bytes);
    if (!h) return KILN_OUT_OF_MEMORY;
    fill_host(h, dtype, n, kiln_case_seed(c, seed_idx), lo, hi, nan_fill);
    st = fill_buffer(buf, h, bytes);
    free(h);
    return st;
}

kiln_status kiln_case_input(const tcase *c, tctx *x, int idx, kiln_dtype dtype, int ndim,
                            const int64_t *shape, float lo, float hi) {
    if (idx >= x->nin) x->nin = idx + 1;
    kiln_status st = new_tensor(c, x, &x->in[idx], idx, dtype, ndim, shape, lo, hi, 0);
    snprintf(x->in[idx].name, sizeof x->in[idx].name, "in%d", idx);
    return st;
}

kiln_status kiln_case_matrix(const tcase *c, tctx *x, int idx, int batch, int rows, int cols,
                             int padded, int nan_fill) {
    if (idx >= x->nin) x->nin = idx + 1;
    size_t ld = (size_t)cols + (padded ? 3 : 0), off = padded ? 5 : 0;
    size_t elems = off + (size_t)batch * (size_t)rows * ld + (padded ? 2 : 0);
    kiln_buffer_t buf;
    kiln_status st = add_buffer(x, elems * 4, &buf);
    if (st) return st;
    float *h = malloc(elems * 4);
    if (!h) return KILN_OUT_OF_MEMORY;
    fill_host(h, KILN_F32, elems, kiln_case_seed(c, idx), -1, 1, nan_fill);
    st = fill_buffer(buf, h, elems * 4);
    free(h);
    if (st) return st;
    kiln_tensor *t = &x->in[idx];
    int64_t shape[3] = {batch, rows, cols};
    int64_t stride[3] = {(int64_t)((size_t)rows * ld * 4), (int64_t)(ld * 4), 4};
    int nd = batch > 1 ? 3 : 2;
    kiln_tensor_init(t, KILN_F32, nd, nd == 3 ? shape : shape + 1);
    memcpy(t->stride, nd == 3 ? stride : stride + 1, sizeof(int64_t) * (size_t)nd);
    snprintf(t->name, sizeof t->name, "in%d", idx);
    return kiln_tensor_bind(t, buf, off * 4);
}

kiln_status kiln_case_output(const tcase *c, tctx *x, kiln_dtype dtype, int ndim,
                             const int64_t *shape, int init_random) {
    kiln_status st = new_tensor(c, x, &x->out, 50, dtype, ndim, shape, -1, 1, !init_random);
    x->out_buf = x->out.buffer;
    snprintf(x->out.name, sizeof x->out.name, "out");
    return st;
}

void kiln_case_output_is_input(tctx *x, int idx) {
    x->out = x->in[idx];
    x->out_buf = x->in[idx].buffer;
}

void kiln_case_node(tctx *x, kiln_op op, const void *params, size_t size, unsigned src_mask) {
    x->out.op = op;
    memset(x->out.src, 0, sizeof x->out.src);
    for (int i = 0; i < KILN_MAX_SRC; i++)
        if (src_mask & (1u << i)) x->out.src[i] = &x->in[i];
    memset(x->out.op_params, 0, sizeof x->out.op_params);
    if (size) memcpy(x->out.op_params, params, size);
}

void kiln_case_release(tctx *x) {
    for (int i = 0; i < x->nbufs; i++) kiln_buffer_free(x->bufs[i]);
    x->nbufs = 0;
}

const tcase *kiln_cases(int *n) {
    if (!ncases) {
        kiln_cases_gemm();
        kiln_cases_conv();
        kiln_cases_pool();
        kiln_cases_eltwise();
        kiln_cases_norm();
    }
    *n = ncases;
    return cases;
}

void kiln_cases_free(void) {
    free(cases);
    cases = NULL;
    ncases = cap_cases = 0;
}
