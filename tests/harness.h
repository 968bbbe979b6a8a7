/* The op test harness: one table of op cases (tests/cases-<family>.c), each run on every
   backend and compared with the cpu backend, and gradient-checked against finite differences
   of a double-precision forward. harness.c keeps the table and builds cases,
   test-backend-ops.c is the runner, test-ops-registry.c checks every op has cases. */
#ifndef KILN_TEST_HARNESS_H
#define KILN_TEST_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/kiln.h"

#define KILN_CASE_MAX_IN 6

typedef struct tcase tcase;

/* The tensors of one case on one backend. in[] are the op's sources (possibly strided views
   into bufs); out is the node (op, params, src -> in[]). */
typedef struct tctx {
    kiln_backend_t be;
    kiln_tensor in[KILN_CASE_MAX_IN];
    int nin;
    kiln_tensor out;
    kiln_buffer_t out_buf;
    kiln_buffer_t bufs[KILN_CASE_MAX_IN + 2];
    int nbufs;
} tctx;

typedef struct op_kind {
    /* What -o matches (besides the op name), e.g. "conv". */
    const char *family;
    /* Builds the inputs (deterministic from the case name) and the node on x->be. */
    kiln_status (*build)(const tcase *c, tctx *x);
    /* Optional, for gradient checks: the forward in double on contiguous copies of the
       inputs (in[i] NULL for absent ones), writing the contiguous output... */
    void (*forward_f64)(const tcase *c, double *const *in, double *out);
    /* ...and the gradients of sum(dout * out) for the inputs in grad_mask, computed with
       backend ops into grads[i] (contiguous, shaped like in[i]). */
    kiln_status (*backward)(const tcase *c, tctx *x, kiln_tensor *dout, kiln_tensor *grads);
    unsigned grad_mask;
    double max_nmse;     /* forward tolerance vs cpu; 0 = 5e-7 */
    double max_grad_err; /* relative L2 error vs finite differences; 0 = 1e-4 */
    double fd_eps;       /* finite-difference step; 0 = 1e-4 (relative to |x| when > 1) */
    int allow_nonfinite; /* outputs may be NaN/Inf (else any non-finite output fails) */
} op_kind;

struct tcase {
    const op_kind *kind;
    char name[192];
    int small;                        /* cheap enough for Oclgrind and gradient checks */
    _Alignas(8) unsigned char p[256]; /* the kind's own parameters */
};

/* Registers a case; `params` (size <= 256) is copied into c->p. */
tcase *kiln_add_case(const op_kind *kind, const void *params, size_t size, int small,
                     const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

/* Inputs depend only on the case name and tensor index, so every backend sees the same. */
uint64_t kiln_case_seed(const tcase *c, int tensor);

/* in[idx] = a contiguous tensor filled uniformly in [lo, hi) (i32/u8: integers in [lo, hi)). */
kiln_status kiln_case_input(const tcase *c, tctx *x, int idx, kiln_dtype dtype, int ndim,
                            const int64_t *shape, float lo, float hi);
/* A (batch x) rows x cols f32 matrix view into in[idx]; padded: row stride cols + 3 and an
   offset of 5 elements, the padding filled too (it must come back untouched). */
kiln_status kiln_case_matrix(const tcase *c, tctx *x, int idx, int batch, int rows, int cols,
                             int padded, int nan_fill);
/* The output: a contiguous tensor prefilled with NaN (an element an op forgets to write
   fails the finiteness check), unless `init_random` (for ops that read their destination). */
kiln_status kiln_case_output(const tcase *c, tctx *x, kiln_dtype dtype, int ndim,
                             const int64_t *shape, int init_random);
/* Uses in[idx] (already built) as the destination too (in-place ops). */
void kiln_case_output_is_input(tctx *x, int idx);
/* Makes x->out the node: op, params, and src[i] = &in[i] for each bit i of src_mask. */
void kiln_case_node(tctx *x, kiln_op op, const void *params, size_t size, unsigned src_mask);

/* Frees the buffers a case's build allocated on x->be. */
void kiln_case_release(tctx *x);

/* The table, filled with every family's cases on the first call: *n cases in registration
   order. kiln_cases_free empties it. */
const tcase *kiln_cases(int *n);
void kiln_cases_free(void);

/* Family registration, one per tests/cases-<family>.c, called by kiln_cases. */
void kiln_cases_gemm(void);
void kiln_cases_conv(void);
void kiln_cases_pool(void);
void kiln_cases_eltwise(void);
void kiln_cases_norm(void);

#endif
