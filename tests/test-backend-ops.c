/* Runs every op case (tests/cases-*.c) on every available backend and compares it with the
   cpu backend (normalized error, NaN/Inf, untouched padding and in-place state), and checks
   gradients against central differences of the double-precision forward.

   usage: test-backend-ops [-b BACKEND[,OP=BACKEND...]] [-o OP] [-c TEXT] [-s] [-v] [-g]
     -b  only this backend (cpu, opencl, clblast)   -o  only this op or family (gemm, conv2d)
     -c  only cases whose name contains TEXT        -s  small cases only (for Oclgrind)
     -v  print every case                           -g  gradient checks only
   KILN_DEVICE restricts the OpenCL devices. The last line is "N passed, N failed". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-util.h"
#include "harness.h"

static kiln_status read_buffer(kiln_buffer_t buf, void *host) {
    kiln_tensor whole;
    int64_t shape[1] = {(int64_t)kiln_buffer_size(buf)};
    kiln_tensor_init(&whole, KILN_U8, 1, shape);
    kiln_status st = kiln_tensor_bind(&whole, buf, 0);
    return st ? st : kiln_tensor_get(&whole, host, kiln_buffer_size(buf));
}

/* Gathers a (possibly strided) tensor's elements as doubles, row-major. */
static void gather(const kiln_tensor *t, const unsigned char *buf, double *out) {
    int64_t n = kiln_tensor_nelements(t), idx[KILN_MAX_DIMS] = {0};
    for (int64_t e = 0; e < n; e++) {
        size_t off = t->offset;
        for (int d = 0; d < t->ndim; d++) off += (size_t)(idx[d] * t->stride[d]);
        switch (t->dtype) {
        case KILN_F32: {
            float v;
            memcpy(&v, buf + off, 4);
            out[e] = v;
            break;
        }
        case KILN_I32: {
            int32_t v;
            memcpy(&v, buf + off, 4);
            out[e] = v;
            break;
        }
        case KILN_U8:
            out[e] = buf[off];
            break;
        default:
            out[e] = 0;
        }
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->shape[d]) break;
            idx[d] = 0;
        }
    }
}

typedef struct {
    float *data; /* out buffer, then buffers of sources written in place, as floats */
    size_t n;
    int nonfinite_out; /* non-finite elements in the logical output */
} result;

static int run_case(const tcase *c, kiln_backend_t be, result *r) {
    tctx x;
    memset(&x, 0, sizeof x);
    memset(r, 0, sizeof *r);
    x.be = be;
    kiln_status st = c->kind->build(c, &x);
    if (!st) st = kiln_compute(be, &x.out);
    kiln_buffer_t bufs[KILN_MAX_SRC + 1];
    int nb = 0;
    if (!st) {
        bufs[nb++] = x.out_buf;
        unsigned w = kiln_op_written_srcs(x.out.op);
        for (int i = 0; i < KILN_MAX_SRC; i++)
            if ((w & (1u << i)) && x.out.src[i]) bufs[nb++] = x.out.src[i]->buffer;
        for (int i = 0; i < nb; i++) r->n += kiln_buffer_size(bufs[i]);
        r->data = malloc(r->n + 4);
        size_t at = 0;
        for (int i = 0; !st && r->data && i < nb; i++) {
            st = read_buffer(bufs[i], (unsigned char *)r->data + at);
            at += kiln_buffer_size(bufs[i]);
        }
        if (!r->data) st = KILN_OUT_OF_MEMORY;
        if (!st) {
            int64_t n = kiln_tensor_nelements(&x.out);
            double *o = malloc((size_t)(n ? n : 1) * sizeof *o);
            if (o) {
                gather(&x.out, (const unsigned char *)r->data, o);
                for (int64_t i = 0; i < n; i++) r->nonfinite_out += !isfinite(o[i]);
            }
            free(o);
        }
        r->n /= 4;
    }
    if (st) {
        printf("  %s [%s]: FAILED: %s: %s\n", c->name, kiln_backend_name(be), kiln_status_name(st),
               kiln_last_error());
        free(r->data);
        r->data = NULL;
    }
    kiln_case_release(&x);
    return st == KILN_OK;
}

static double nmse(const float *a, const float *ref, size_t n, int *mismatched_nonfinite) {
    double num = 0, den = 0;
    *mismatched_nonfinite = 0;
    for (size_t i = 0; i < n; i++) {
        int fa = isfinite(a[i]), fr = isfinite(ref[i]);
        if (!fa || !fr) {
            /* Non-finite must agree in kind: both NaN, or the same infinity. */
            if (fa != fr || (isnan(a[i]) != isnan(ref[i])) || (!isnan(a[i]) && a[i] != ref[i]))
                (*mismatched_nonfinite)++;
            continue;
        }
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
    double *in64[KILN_CASE_MAX_IN] = {0}, *out64 = NULL, *r = NULL;
    float *hf = NULL;
    kiln_tensor dout, grads[KILN_CASE_MAX_IN];
    memset(&dout, 0, sizeof dout);
    memset(grads, 0, sizeof grads);
    kiln_status st = c->kind->build(c, &x);
    if (st) goto done;
    for (int i = 0; i < x.nin; i++) {
        if (!x.in[i].buffer) continue;
        size_t n = (size_t)kiln_tensor_nelements(&x.in[i]);
        size_t bytes = kiln_buffer_size(x.in[i].buffer);
        unsigned char *full = malloc(bytes);
        in64[i] = malloc((n ? n : 1) * sizeof(double));
        if (!in64[i] || !full || (st = read_buffer(x.in[i].buffer, full))) {
            free(full);
            goto done;
        }
        gather(&x.in[i], full, in64[i]);
        free(full);
    }
    size_t nout = (size_t)kiln_tensor_nelements(&x.out);
    out64 = malloc(nout * sizeof(double));
    r = malloc(nout * sizeof(double));
    hf = malloc(nout * sizeof(float));
    if (!out64 || !r || !hf) goto done;
    kiln_fill_uniform(hf, nout, kiln_case_seed(c, 99));
    for (size_t i = 0; i < nout; i++) r[i] = hf[i];
    if ((st = kiln_tensor_alloc(&dout, be, KILN_F32, x.out.ndim, x.out.shape)) ||
        (st = kiln_tensor_set(&dout, hf, nout * sizeof(float))))
        goto done;
    for (int i = 0; i < x.nin; i++)
        if ((c->kind->grad_mask & (1u << i)) &&
            (st = kiln_tensor_alloc(&grads[i], be, KILN_F32, x.in[i].ndim, x.in[i].shape)))
            goto done;
    if ((st = c->kind->backward(c, &x, &dout, grads))) goto done;
    double num = 0, den = 0, step = c->kind->fd_eps > 0 ? c->kind->fd_eps : 1e-4;
    for (int i = 0; i < x.nin; i++) {
        if (!(c->kind->grad_mask & (1u << i))) continue;
        size_t n = (size_t)kiln_tensor_nelements(&grads[i]);
        float *g = malloc((n ? n : 1) * sizeof(float));
        if (!g || (st = kiln_tensor_get(&grads[i], g, n * sizeof(float)))) {
            free(g);
            goto done;
        }
        for (size_t j = 0; j < n; j++) {
            double keep = in64[i][j], eps = step * (fabs(keep) > 1 ? fabs(keep) : 1);
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
    if (!ok)
        printf("  %s [%s]: gradient check FAILED: %s: %s\n", c->name, kiln_backend_name(be),
               kiln_status_name(st), kiln_last_error());
    for (int i = 0; i < KILN_CASE_MAX_IN; i++) {
        free(in64[i]);
        kiln_tensor_release(&grads[i]);
    }
    kiln_tensor_release(&dout);
    free(out64);
    free(r);
    free(hf);
    kiln_case_release(&x);
    return ok;
}

typedef struct {
    char label[160];
    kiln_backend_t be;
} backend_entry;

static int case_selected(const tcase *c, const char *only_op, const char *only_case, int small) {
    if (small && !c->small) return 0;
    if (only_case && !strstr(c->name, only_case)) return 0;
    if (only_op) {
        size_t n = strcspn(c->name, " ");
        if (strcmp(c->kind->family, only_op) &&
            (strlen(only_op) != n || strncmp(c->name, only_op, n)))
            return 0;
    }
    return 1;
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
    /* -b may carry per-op overrides ("opencl,gemm=cpu": GEMM through the host fallback). */
    char base[16] = "";
    if (only_backend)
        snprintf(base, sizeof base, "%.*s", (int)strcspn(only_backend, ","), only_backend);
    if (only_backend && strcmp(base, "cpu") && strcmp(base, "opencl") && strcmp(base, "clblast")) {
        fprintf(stderr,
                "unknown backend '%s'; valid: cpu, opencl, clblast (each may add ,OP=BACKEND)\n",
                only_backend);
        return 2;
    }
    int ncases;
    const tcase *cases = kiln_cases(&ncases);
    if (only_op) {
        int known = 0;
        for (int i = 0; i < ncases; i++) known |= case_selected(&cases[i], only_op, NULL, 0);
        if (!known) {
            fprintf(stderr, "no case for op '%s'; ops with cases:", only_op);
            for (int i = 0; i < ncases; i++)
                if (!i || strcmp(cases[i].kind->family, cases[i - 1].kind->family))
                    fprintf(stderr, " %s", cases[i].kind->family);
            fprintf(stderr, "\n");
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
    if (!only_backend || !strcmp(base, "cpu")) {
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
            if (only_backend && strcmp(base, name)) continue;
            if (kiln_backend_init(only_backend ? only_backend : name, idx, &bes[nb].be)) {
                printf("skipping %s on device %d: %s\n", name, d, kiln_last_error());
                continue;
            }
            snprintf(bes[nb].label, sizeof bes[nb].label, "%s@%s",
                     only_backend ? only_backend : name, devs[d].name);
            nb++;
        }
    }
    free(devs);

    int passed = 0, failed = 0;
    for (int b = 0; b < nb; b++) {
        int bp = 0, bf = 0, gp = 0, gf = 0;
        for (int i = 0; i < ncases; i++) {
            const tcase *c = &cases[i];
            if (!case_selected(c, only_op, only_case, small)) continue;
            if (!grad_only) {
                result out, want;
                int ok = run_case(c, bes[b].be, &out);
                int ok_ref = bes[b].be == ref ? ok : run_case(c, ref, &want);
                if (bes[b].be == ref) want = out;
                ok = ok && ok_ref && out.n == want.n;
                int bad = 0;
                double e = ok ? nmse(out.data, want.data, out.n, &bad) : 0;
                double tol = c->kind->max_nmse > 0 ? c->kind->max_nmse : 5e-7;
                int nonfinite = !c->kind->allow_nonfinite && ok && out.nonfinite_out;
                ok = ok && e <= tol && !bad && !nonfinite;
                if (!ok && out.data && want.data)
                    printf("  %s [%s]: MISMATCH nmse=%.3e (tolerance %.1e), non-finite: %d "
                           "disagreeing, %d in the output\n",
                           c->name, bes[b].label, e, tol, bad, out.nonfinite_out);
                else if (verbose && ok)
                    printf("  %s [%s]: ok nmse=%.3e\n", c->name, bes[b].label, e);
                ok ? bp++ : bf++;
                free(out.data);
                if (bes[b].be != ref) free(want.data);
            }
            if (c->kind->backward && c->small) {
                double err = 0, tol = c->kind->max_grad_err > 0 ? c->kind->max_grad_err : 1e-4;
                int ok = gradcheck(c, bes[b].be, &err);
                ok = ok && err < tol;
                if (!ok)
                    printf("  %s [%s]: GRADIENT error %.3e (tolerance %.1e)\n", c->name,
                           bes[b].label, err, tol);
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
    kiln_cases_free();
    printf("%d passed, %d failed\n", passed, failed);
    return failed || !passed ? 1 : 0;
}
