/* One table of op cases, run on every available backend and compared with the cpu backend
   (normalized error, NaN/Inf check, untouched padding), plus gradient checks against finite
   differences computed in double on the host.

   usage: test-backend-ops [-b BACKEND] [-o OP] [-c TEXT] [-s] [-v] [-g]
     -b  only this backend (cpu, opencl, clblast)   -o  only this op family (gemm, ...)
     -c  only cases whose name contains TEXT
     -s  small cases only (for Oclgrind)            -v  print every case
     -g  gradient checks only                        KILN_DEVICE restricts the devices. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-util.h"
#include "kiln/kiln.h"

#define MAX_IN 6

typedef struct tcase tcase;

/* The tensors of one case on one backend. in[] are the op's sources (views into bufs). */
typedef struct tctx {
    kiln_backend_t be;
    kiln_tensor in[MAX_IN];
    int nin;
    kiln_tensor out; /* the node: op, params, src -> in[] */
    kiln_buffer_t out_buf;
    kiln_buffer_t bufs[MAX_IN + 1];
    int nbufs;
} tctx;

typedef struct op_kind {
    const char *family;
    /* Builds the inputs (deterministic from the case) and the node on x->be. */
    kiln_status (*build)(const tcase *c, tctx *x);
    /* Optional, for gradient checks: forward in double on host copies of the logical inputs
       (contiguous), and the input gradients of sum(R * out) computed with backend ops. */
    void (*forward_f64)(const tcase *c, double *const *in, double *out);
    kiln_status (*backward)(const tcase *c, tctx *x, kiln_tensor *dout, kiln_tensor *grads);
    int ngrad; /* how many leading inputs have gradients */
} op_kind;

typedef struct gemm_case {
    int m, n, k, ta, tb, batch, pad, bcast_a, bcast_b, nan_c;
    float alpha, beta;
} gemm_case;

struct tcase {
    const op_kind *kind;
    char name[128];
    int small; /* cheap enough for Oclgrind and gradient checks */
    union {
        gemm_case gemm;
    } p;
};

/* ---- helpers ---- */

/* Inputs depend only on the case, so every backend sees the same data. */
static uint64_t case_seed(const tcase *c, int tensor) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const char *s = c->name; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h * 31 + (uint64_t)tensor;
}

/* A buffer of `elems` floats filled from the seed (or NaN), owned by x. */
static kiln_status new_buffer(tctx *x, size_t elems, uint64_t seed, int nan_fill,
                              kiln_buffer_t *out) {
    size_t bytes = elems * sizeof(float);
    kiln_status st = kiln_buffer_alloc(x->be, bytes, out);
    if (st) return st;
    x->bufs[x->nbufs++] = *out;
    float *h = malloc(bytes);
    if (!h) return KILN_OUT_OF_MEMORY;
    if (nan_fill)
        for (size_t i = 0; i < elems; i++) h[i] = NAN;
    else
        kiln_fill_uniform(h, elems, seed);
    kiln_tensor whole;
    int64_t shape[1] = {(int64_t)elems};
    kiln_tensor_init(&whole, KILN_F32, 1, shape);
    st = kiln_tensor_bind(&whole, *out, 0);
    if (!st) st = kiln_tensor_set(&whole, h, bytes);
    free(h);
    return st;
}

/* A (batch x) rows x cols matrix view with optional padding: row stride cols+3, offset 5. */
static kiln_status matrix(tctx *x, kiln_tensor *t, int batch, int rows, int cols, int pad,
                          uint64_t seed, int nan_fill, const char *name) {
    size_t ld = (size_t)cols + (pad ? 3 : 0), off = pad ? 5 : 0;
    size_t elems = off + (size_t)batch * (size_t)rows * ld + (pad ? 2 : 0);
    kiln_buffer_t buf;
    kiln_status st = new_buffer(x, elems, seed, nan_fill, &buf);
    if (st) return st;
    int64_t shape[3] = {batch, rows, cols};
    int64_t stride[3] = {(int64_t)(rows * ld * 4), (int64_t)(ld * 4), 4};
    int nd = batch > 1 ? 3 : 2;
    kiln_tensor_init(t, KILN_F32, nd, nd == 3 ? shape : shape + 1);
    memcpy(t->stride, nd == 3 ? stride : stride + 1, sizeof(int64_t) * (size_t)nd);
    snprintf(t->name, sizeof t->name, "%s", name);
    return kiln_tensor_bind(t, buf, off * 4);
}

/* ---- gemm ---- */

static kiln_status gemm_build(const tcase *c, tctx *x) {
    const gemm_case *g = &c->p.gemm;
    int ra = g->ta ? g->k : g->m, ca = g->ta ? g->m : g->k;
    int rb = g->tb ? g->n : g->k, cb = g->tb ? g->k : g->n;
    kiln_status st;
    if ((st = matrix(x, &x->in[0], g->bcast_a ? 1 : g->batch, ra, ca, g->pad, case_seed(c, 0), 0,
                     "A")) ||
        (st = matrix(x, &x->in[1], g->bcast_b ? 1 : g->batch, rb, cb, g->pad, case_seed(c, 1), 0,
                     "B")) ||
        (st = matrix(x, &x->in[2], g->batch, g->m, g->n, g->pad, case_seed(c, 2), g->nan_c, "C")))
        return st;
    x->nin = 3;
    x->out = x->in[2];
    x->out_buf = x->in[2].buffer;
    x->out.op = KILN_OP_GEMM;
    x->out.src[0] = &x->in[0];
    x->out.src[1] = &x->in[1];
    kiln_gemm_params p = {g->ta, g->tb, g->alpha, g->beta};
    memcpy(x->out.op_params, &p, sizeof p);
    return KILN_OK;
}

static void gemm_forward_f64(const tcase *c, double *const *in, double *out) {
    const gemm_case *g = &c->p.gemm;
    for (int i = 0; i < g->m; i++)
        for (int j = 0; j < g->n; j++) {
            double s = 0;
            for (int l = 0; l < g->k; l++) {
                double a = g->ta ? in[0][l * g->m + i] : in[0][i * g->k + l];
                double b = g->tb ? in[1][j * g->k + l] : in[1][l * g->n + j];
                s += a * b;
            }
            /* beta == 0 ignores C, as BLAS does (C may hold NaN). */
            out[i * g->n + j] = g->alpha * s + (g->beta != 0 ? g->beta * in[2][i * g->n + j] : 0);
        }
}

/* dop(A) = alpha dC op(B)^T and dop(B) = alpha op(A)^T dC, written for each transpose. */
static kiln_status gemm_backward(const tcase *c, tctx *x, kiln_tensor *dc, kiln_tensor *grads) {
    const gemm_case *g = &c->p.gemm;
    kiln_tensor *a = &x->in[0], *b = &x->in[1];
    kiln_status st = g->ta ? kiln_gemm(x->be, g->tb, 1, g->alpha, b, dc, 0.0f, &grads[0])
                           : kiln_gemm(x->be, 0, !g->tb, g->alpha, dc, b, 0.0f, &grads[0]);
    if (st) return st;
    return g->tb ? kiln_gemm(x->be, 1, g->ta, g->alpha, dc, a, 0.0f, &grads[1])
                 : kiln_gemm(x->be, !g->ta, 0, g->alpha, a, dc, 0.0f, &grads[1]);
}

static const op_kind gemm_kind = {"gemm", gemm_build, gemm_forward_f64, gemm_backward, 2};

/* ---- the case table ---- */

static tcase *cases;
static int ncases, cap_cases;

static tcase *add_case(const op_kind *kind) {
    if (ncases == cap_cases) {
        cap_cases = cap_cases ? cap_cases * 2 : 64;
        tcase *grown = realloc(cases, sizeof *cases * (size_t)cap_cases);
        if (!grown) abort();
        cases = grown;
    }
    tcase *c = &cases[ncases++];
    memset(c, 0, sizeof *c);
    c->kind = kind;
    return c;
}

static void add_gemm(gemm_case g) {
    tcase *c = add_case(&gemm_kind);
    c->p.gemm = g;
    if (!c->p.gemm.batch) c->p.gemm.batch = 1;
    g = c->p.gemm;
    snprintf(c->name, sizeof c->name,
             "gemm m=%d n=%d k=%d ta=%d tb=%d alpha=%g beta=%g batch=%d%s%s%s%s", g.m, g.n, g.k,
             g.ta, g.tb, g.alpha, g.beta, g.batch, g.pad ? " padded" : "",
             g.bcast_a ? " bcastA" : "", g.bcast_b ? " bcastB" : "", g.nan_c ? " C=NaN" : "");
    c->small = (long)g.m * g.n * g.k * g.batch <= 4096;
}

static void make_cases(void) {
    static const int sizes[][3] = {{1, 1, 1},      {3, 5, 7},     {7, 3, 5},
                                   {16, 16, 16},   {1, 300, 17},  {300, 1, 17},
                                   {127, 129, 65}, {64, 96, 128}, {33, 65, 257}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (int t = 0; t < 4; t++)
            add_gemm((gemm_case){.m = sizes[i][0],
                                 .n = sizes[i][1],
                                 .k = sizes[i][2],
                                 .ta = t & 1,
                                 .tb = t >> 1,
                                 .alpha = 1.0f});
    /* beta != 0, alpha != 1, and beta == 0 must not read C (NaN there must vanish). */
    add_gemm((gemm_case){.m = 13, .n = 7, .k = 3, .alpha = -0.7f, .beta = 0.5f});
    add_gemm((gemm_case){.m = 127, .n = 129, .k = 65, .ta = 1, .alpha = 1.5f, .beta = -1.0f});
    add_gemm((gemm_case){.m = 33, .n = 17, .k = 9, .alpha = 1.0f, .nan_c = 1});
    add_gemm((gemm_case){.m = 3, .n = 5, .k = 7, .tb = 1, .alpha = 2.0f, .nan_c = 1});
    /* Leading dimensions and offsets. */
    add_gemm((gemm_case){.m = 3, .n = 5, .k = 7, .pad = 1, .alpha = 1.0f, .beta = 0.25f});
    add_gemm((gemm_case){.m = 127, .n = 129, .k = 65, .ta = 1, .tb = 1, .pad = 1, .alpha = 1.0f});
    add_gemm((gemm_case){
        .m = 5, .n = 4, .k = 3, .ta = 1, .tb = 0, .pad = 1, .alpha = 0.5f, .beta = 1.0f});
    /* Strided batches and broadcasts. */
    add_gemm((gemm_case){.m = 3, .n = 5, .k = 7, .batch = 3, .alpha = 1.0f});
    add_gemm((gemm_case){
        .m = 31, .n = 17, .k = 29, .batch = 4, .ta = 1, .pad = 1, .alpha = 1.0f, .beta = 0.5f});
    add_gemm((gemm_case){.m = 20, .n = 9, .k = 11, .batch = 3, .bcast_a = 1, .alpha = 1.0f});
    add_gemm(
        (gemm_case){.m = 9, .n = 20, .k = 11, .batch = 5, .bcast_b = 1, .tb = 1, .alpha = 1.0f});
    /* Larger than any tile: exercises the blocked paths. */
    add_gemm((gemm_case){.m = 300, .n = 257, .k = 513, .alpha = 1.0f});
    add_gemm((gemm_case){.m = 64, .n = 784, .k = 576, .tb = 1, .alpha = 1.0f});
}

/* ---- running ---- */

typedef struct {
    char label[160];
    kiln_backend_t be;
} backend_entry;

static void free_ctx(tctx *x) {
    for (int i = 0; i < x->nbufs; i++) kiln_buffer_free(x->bufs[i]);
    x->nbufs = 0;
}

/* The whole output buffer (padding included: it must come back untouched). */
static float *run_case(const tcase *c, kiln_backend_t be, size_t *n) {
    tctx x;
    memset(&x, 0, sizeof x);
    x.be = be;
    float *h = NULL;
    kiln_status st = c->kind->build(c, &x);
    if (!st) st = kiln_compute(be, &x.out);
    if (!st) {
        *n = kiln_buffer_size(x.out_buf) / sizeof(float);
        h = malloc(*n * sizeof *h);
        kiln_tensor whole;
        int64_t shape[1] = {(int64_t)*n};
        kiln_tensor_init(&whole, KILN_F32, 1, shape);
        st = h ? kiln_tensor_bind(&whole, x.out_buf, 0) : KILN_OUT_OF_MEMORY;
        if (!st) st = kiln_tensor_get(&whole, h, *n * sizeof *h);
    }
    if (st) {
        printf("  %s [%s]: FAILED: %s: %s\n", c->name, kiln_backend_name(be), kiln_status_name(st),
               kiln_last_error());
        free(h);
        h = NULL;
    }
    free_ctx(&x);
    return h;
}

static double nmse(const float *a, const float *ref, size_t n, int *nonfinite) {
    double num = 0, den = 0;
    *nonfinite = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) != !isfinite(ref[i])) (*nonfinite)++;
        if (!isfinite(a[i]) || !isfinite(ref[i])) continue;
        double d = (double)a[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? num / den : num;
}

/* Analytic gradients on `be` against central differences of the double forward. */
static int gradcheck(const tcase *c, kiln_backend_t be, double *err_out) {
    tctx x;
    memset(&x, 0, sizeof x);
    x.be = be;
    int ok = 0;
    double *in64[MAX_IN] = {0};
    float *hf = NULL;
    kiln_tensor dout, grads[MAX_IN];
    memset(&dout, 0, sizeof dout);
    memset(grads, 0, sizeof grads);
    double *out64 = NULL, *r = NULL;
    kiln_status st = c->kind->build(c, &x);
    if (st) goto done;
    /* Logical (contiguous) copies of every input, in double. */
    for (int i = 0; i < x.nin; i++) {
        size_t n = (size_t)kiln_tensor_nelements(&x.in[i]);
        in64[i] = malloc(n * sizeof(double));
        float *full = malloc(kiln_buffer_size(x.in[i].buffer));
        kiln_tensor whole;
        int64_t ws[1] = {(int64_t)(kiln_buffer_size(x.in[i].buffer) / 4)};
        kiln_tensor_init(&whole, KILN_F32, 1, ws);
        kiln_tensor_bind(&whole, x.in[i].buffer, 0);
        if (!in64[i] || !full || kiln_tensor_get(&whole, full, kiln_buffer_size(x.in[i].buffer))) {
            free(full);
            goto done;
        }
        /* 2-D views only here: rows x cols with a row stride. */
        int64_t rows = x.in[i].shape[0], cols = x.in[i].ndim > 1 ? x.in[i].shape[1] : 1;
        int64_t ld = x.in[i].ndim > 1 ? x.in[i].stride[0] / 4 : 1;
        for (int64_t a = 0; a < rows; a++)
            for (int64_t b = 0; b < cols; b++)
                in64[i][a * cols + b] = full[x.in[i].offset / 4 + (size_t)(a * ld + b)];
        free(full);
    }
    size_t nout = (size_t)kiln_tensor_nelements(&x.out);
    out64 = malloc(nout * sizeof(double));
    r = malloc(nout * sizeof(double));
    hf = malloc(nout * sizeof(float));
    if (!out64 || !r || !hf) goto done;
    kiln_fill_uniform(hf, nout, case_seed(c, 99));
    for (size_t i = 0; i < nout; i++) r[i] = hf[i];
    if ((st = kiln_tensor_alloc(&dout, be, KILN_F32, x.out.ndim, x.out.shape)) ||
        (st = kiln_tensor_set(&dout, hf, nout * sizeof(float))))
        goto done;
    for (int i = 0; i < c->kind->ngrad; i++)
        if ((st = kiln_tensor_alloc(&grads[i], be, KILN_F32, x.in[i].ndim, x.in[i].shape)))
            goto done;
    if ((st = c->kind->backward(c, &x, &dout, grads))) goto done;
    double num = 0, den = 0;
    for (int i = 0; i < c->kind->ngrad; i++) {
        size_t n = (size_t)kiln_tensor_nelements(&grads[i]);
        float *g = malloc(n * sizeof(float));
        if (!g || kiln_tensor_get(&grads[i], g, n * sizeof(float))) {
            free(g);
            goto done;
        }
        for (size_t j = 0; j < n; j++) {
            double keep = in64[i][j], eps = 1e-4 * (fabs(keep) > 1 ? fabs(keep) : 1);
            double lp = 0, lm = 0;
            in64[i][j] = keep + eps;
            c->kind->forward_f64(c, in64, out64);
            for (size_t o = 0; o < nout; o++) lp += r[o] * out64[o];
            in64[i][j] = keep - eps;
            c->kind->forward_f64(c, in64, out64);
            for (size_t o = 0; o < nout; o++) lm += r[o] * out64[o];
            in64[i][j] = keep;
            double fd = (lp - lm) / (2 * eps), d = g[j] - fd;
            num += d * d;
            den += fd * fd;
        }
        free(g);
    }
    *err_out = den > 0 ? sqrt(num / den) : sqrt(num);
    ok = 1;
done:
    if (!ok && st)
        printf("  %s [%s]: gradient check FAILED: %s: %s\n", c->name, kiln_backend_name(be),
               kiln_status_name(st), kiln_last_error());
    for (int i = 0; i < MAX_IN; i++) {
        free(in64[i]);
        kiln_tensor_release(&grads[i]);
    }
    kiln_tensor_release(&dout);
    free(out64);
    free(r);
    free(hf);
    free_ctx(&x);
    return ok;
}

int main(int argc, char **argv) {
    const char *only_backend = NULL, *only_op = NULL, *only_case = NULL;
    int small = 0, verbose = 0, grad_only = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-b") && i + 1 < argc)
            only_backend = argv[++i];
        else if (!strcmp(argv[i], "-o") && i + 1 < argc)
            only_op = argv[++i];
        else if (!strcmp(argv[i], "-c") && i + 1 < argc)
            only_case = argv[++i];
        else if (!strcmp(argv[i], "-s"))
            small = 1;
        else if (!strcmp(argv[i], "-v"))
            verbose = 1;
        else if (!strcmp(argv[i], "-g"))
            grad_only = 1;
        else {
            fprintf(stderr, "usage: %s [-b cpu|opencl|clblast] [-o OP] [-c TEXT] [-s] [-v] [-g]\n",
                    argv[0]);
            return 2;
        }
    }
    if (only_backend && strcmp(only_backend, "cpu") && strcmp(only_backend, "opencl") &&
        strcmp(only_backend, "clblast")) {
        fprintf(stderr, "unknown backend '%s'; valid: cpu, opencl, clblast\n", only_backend);
        return 2;
    }
    make_cases();
    if (only_op) {
        int known = 0;
        for (int i = 0; i < ncases; i++) known |= !strcmp(cases[i].kind->family, only_op);
        if (!known) {
            fprintf(stderr, "unknown op '%s'; valid: gemm\n", only_op);
            return 2;
        }
    }

    /* The reference, then every backend on every OpenCL device (or KILN_DEVICE's). */
    backend_entry bes[64];
    int nb = 0;
    kiln_backend_t ref;
    if (kiln_backend_init("cpu", NULL, &ref)) {
        fprintf(stderr, "cannot start the cpu backend: %s\n", kiln_last_error());
        return 1;
    }
    if (!only_backend || !strcmp(only_backend, "cpu")) {
        snprintf(bes[nb].label, sizeof bes[nb].label, "cpu");
        bes[nb++].be = ref;
    }
    kiln_device_info *devs = NULL;
    int ndev = 0;
    kiln_devices_list(&devs, &ndev);
    const char *dspec = getenv("KILN_DEVICE");
    for (int d = 0; d < ndev; d++) {
        char idx[16];
        snprintf(idx, sizeof idx, "%d", d);
        if (dspec && *dspec) {
            kiln_selection sel;
            if (kiln_select("opencl", NULL, &sel) || sel.device_index != d) continue;
        }
        for (int k = 0; k < 2 && nb < 64; k++) {
            const char *name = k ? "clblast" : "opencl";
            if (only_backend && strcmp(only_backend, name)) continue;
            if (kiln_backend_init(name, idx, &bes[nb].be)) {
                printf("skipping %s on device %d: %s\n", name, d, kiln_last_error());
                continue;
            }
            snprintf(bes[nb].label, sizeof bes[nb].label, "%s@%s", name, devs[d].name);
            nb++;
        }
    }
    free(devs);

    int passed = 0, failed = 0;
    for (int b = 0; b < nb; b++) {
        int bp = 0, bf = 0, gp = 0, gf = 0;
        for (int i = 0; i < ncases; i++) {
            const tcase *c = &cases[i];
            if (only_op && strcmp(c->kind->family, only_op)) continue;
            if (small && !c->small) continue;
            if (only_case && !strstr(c->name, only_case)) continue;
            /* Forward: compare the whole output buffer with the cpu backend's. */
            if (!grad_only && bes[b].be != ref) {
                size_t n = 0, nr = 0;
                float *out = run_case(c, bes[b].be, &n), *want = run_case(c, ref, &nr);
                int ok = out && want && n == nr;
                int nonfinite = 0;
                double e = ok ? nmse(out, want, n, &nonfinite) : 0;
                ok = ok && e < 1e-9 + 5e-7 && !nonfinite;
                if (!ok && out && want)
                    printf("  %s [%s]: MISMATCH nmse=%.3e nonfinite=%d\n", c->name, bes[b].label, e,
                           nonfinite);
                else if (verbose && ok)
                    printf("  %s [%s]: ok nmse=%.3e\n", c->name, bes[b].label, e);
                ok ? bp++ : bf++;
                free(out);
                free(want);
            }
            /* Gradients: small, unbatched cases with a backward. */
            if (c->kind->backward && c->small && (c->kind != &gemm_kind || c->p.gemm.batch == 1)) {
                double err = 0;
                int ok = gradcheck(c, bes[b].be, &err);
                ok = ok && err < 1e-4;
                if (!ok)
                    printf("  %s [%s]: GRADIENT error %.3e\n", c->name, bes[b].label, err);
                else if (verbose)
                    printf("  %s [%s]: gradient ok err=%.3e\n", c->name, bes[b].label, err);
                ok ? gp++ : gf++;
            }
        }
        printf("%-60s forward %d passed, %d failed; gradients %d passed, %d failed\n", bes[b].label,
               bp, bf, gp, gf);
        passed += bp + gp;
        failed += bf + gf;
    }
    for (int b = 0; b < nb; b++)
        if (bes[b].be != ref) kiln_backend_free(bes[b].be);
    kiln_backend_free(ref);
    free(cases);
    printf("%d passed, %d failed\n", passed, failed);
    return failed || !passed ? 1 : 0;
}
