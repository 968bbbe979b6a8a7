/* Batch normalization, softmax cross-entropy and accuracy on the host: the reference.
   Per-channel statistics and gradient sums accumulate in double with the two-pass scheme
   (mean, then centered squares), so the reference stays accurate for large N*H*W and for
   inputs whose mean is far from zero. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu-ops.h"

#include "kiln/ops.h"

/* x as n blocks of [C, hw]: channel c of block b is the hw contiguous floats at
   (b * C + c) * hw. */
typedef struct bn_dims {
    size_t n, c, hw;
} bn_dims;

static bn_dims bn_dims_of(const kiln_tensor *x) {
    bn_dims d = {(size_t)x->shape[0], (size_t)x->shape[1], 1};
    if (x->ndim == 4) d.hw = (size_t)(x->shape[2] * x->shape[3]);
    return d;
}

static kiln_status host_ptrs(kiln_tensor *dst, int nsrc, const float **src, float **out) {
    *out = kiln_tensor_host_data(dst);
    int ok = *out != NULL;
    for (int i = 0; i < nsrc; i++) ok &= (src[i] = kiln_tensor_host_data(dst->src[i])) != NULL;
    return ok ? KILN_OK
              : kiln_error(KILN_INTERNAL, "cpu %s: tensor not in host memory",
                           kiln_op_name(dst->op));
}

static float bn_eps(const kiln_tensor *dst) {
    kiln_bn_params p;
    memcpy(&p, dst->op_params, sizeof p);
    return p.eps;
}

kiln_status kiln_cpu_batchnorm_stats(kiln_backend_t be, kiln_tensor *dst) {
    (void)be;
    const float *x;
    float *stats;
    kiln_status st = host_ptrs(dst, 1, &x, &stats);
    if (st) return st;
    bn_dims d = bn_dims_of(dst->src[0]);
    double *acc = calloc(2 * d.c, sizeof *acc), *mean = acc, *sq = acc + d.c;
    if (!acc) return kiln_error(KILN_OUT_OF_MEMORY, "cpu batchnorm_stats: out of host memory");
    double m = (double)(d.n * d.hw);
    for (size_t b = 0; b < d.n; b++)
        for (size_t c = 0; c < d.c; c++) {
            const float *p = x + (b * d.c + c) * d.hw;
            double s = 0;
            for (size_t i = 0; i < d.hw; i++) s += p[i];
            mean[c] += s;
        }
    for (size_t c = 0; c < d.c; c++) mean[c] /= m;
    for (size_t b = 0; b < d.n; b++)
        for (size_t c = 0; c < d.c; c++) {
            const float *p = x + (b * d.c + c) * d.hw;
            double s = 0;
            for (size_t i = 0; i < d.hw; i++) s += (p[i] - mean[c]) * (p[i] - mean[c]);
            sq[c] += s;
        }
    for (size_t c = 0; c < d.c; c++) {
        stats[c] = (float)mean[c];
        stats[d.c + c] = (float)(sq[c] / m);
    }
    free(acc);
    return KILN_OK;
}

kiln_status kiln_cpu_batchnorm(kiln_backend_t be, kiln_tensor *dst) {
    (void)be;
    const float *src[4];
    float *y;
    kiln_status st = host_ptrs(dst, 4, src, &y);
    if (st) return st;
    const float *x = src[0], *stats = src[1], *gamma = src[2], *beta = src[3];
    bn_dims d = bn_dims_of(dst->src[0]);
    float eps = bn_eps(dst);
    for (size_t b = 0; b < d.n; b++)
        for (size_t c = 0; c < d.c; c++) {
            float mean = stats[c], scale = gamma[c] / sqrtf(stats[d.c + c] + eps);
            size_t o = (b * d.c + c) * d.hw;
            for (size_t i = 0; i < d.hw; i++) y[o + i] = (x[o + i] - mean) * scale + beta[c];
        }
    return KILN_OK;
}

kiln_status kiln_cpu_batchnorm_bwd_params(kiln_backend_t be, kiln_tensor *dst) {
    (void)be;
    const float *src[3];
    float *dparams;
    kiln_status st = host_ptrs(dst, 3, src, &dparams);
    if (st) return st;
    const float *dy = src[0], *x = src[1], *stats = src[2];
    bn_dims d = bn_dims_of(dst->src[1]);
    float eps = bn_eps(dst);
    double *acc = calloc(2 * d.c, sizeof *acc), *dgamma = acc, *dbeta = acc + d.c;
    if (!acc) return kiln_error(KILN_OUT_OF_MEMORY, "cpu batchnorm_bwd_params: out of host memory");
    for (size_t b = 0; b < d.n; b++)
        for (size_t c = 0; c < d.c; c++) {
            double mean = stats[c], sg = 0, sb = 0;
            size_t o = (b * d.c + c) * d.hw;
            for (size_t i = 0; i < d.hw; i++) {
                sg += dy[o + i] * (x[o + i] - mean);
                sb += dy[o + i];
            }
            dgamma[c] += sg;
            dbeta[c] += sb;
        }
    for (size_t c = 0; c < d.c; c++) {
        dparams[c] = (float)(dgamma[c] / sqrt((double)stats[d.c + c] + eps));
        dparams[d.c + c] = (float)dbeta[c];
    }
    free(acc);
    return KILN_OK;
}

kiln_status kiln_cpu_batchnorm_bwd(kiln_backend_t be, kiln_tensor *dst) {
    (void)be;
    const float *src[5];
    float *dx;
    kiln_status st = host_ptrs(dst, 5, src, &dx);
    if (st) return st;
    const float *dy = src[0], *x = src[1], *stats = src[2], *gamma = src[3], *dparams = src[4];
    bn_dims d = bn_dims_of(dst->src[1]);
    float eps = bn_eps(dst);
    double m = (double)(d.n * d.hw);
    for (size_t b = 0; b < d.n; b++)
        for (size_t c = 0; c < d.c; c++) {
            /* dx = gamma invstd (dy - dbeta/M - xhat dgamma/M), per-channel terms folded. */
            double invstd = 1.0 / sqrt((double)stats[d.c + c] + eps);
            double k = gamma[c] * invstd, mean = stats[c];
            double db = dparams[d.c + c] / m, dg = dparams[c] * invstd / m;
            size_t o = (b * d.c + c) * d.hw;
            for (size_t i = 0; i < d.hw; i++)
                dx[o + i] = (float)(k * (dy[o + i] - db - (x[o + i] - mean) * dg));
        }
    return KILN_OK;
}

/* One row of logits: the log-sum-exp through the row maximum, so no exp overflows. */
static double row_lse(const float *l, size_t k) {
    double m = l[0], s = 0;
    for (size_t j = 1; j < k; j++) m = l[j] > m ? l[j] : m;
    for (size_t j = 0; j < k; j++) s += exp(l[j] - m);
    return m + log(s);
}

typedef struct xent_rows {
    const float *logits;
    const int32_t *labels;
    size_t n, k;
    kiln_xent_params p;
} xent_rows;

static kiln_status xent_rows_of(kiln_tensor *dst, xent_rows *r, float **out) {
    const float *src[2];
    kiln_status st = host_ptrs(dst, 2, src, out);
    if (st) return st;
    r->logits = src[0];
    r->labels = (const int32_t *)src[1];
    r->n = (size_t)dst->src[0]->shape[0];
    r->k = (size_t)dst->src[0]->shape[1];
    memcpy(&r->p, dst->op_params, sizeof r->p);
    return KILN_OK;
}

static int label_ok(int32_t y, size_t k) {
    return y >= 0 && (size_t)y < k;
}

kiln_status kiln_cpu_softmax_xent(kiln_backend_t be, kiln_tensor *dst) {
    (void)be;
    xent_rows r;
    float *loss;
    kiln_status st = xent_rows_of(dst, &r, &loss);
    if (st) return st;
    double s = r.p.label_smoothing;
    for (size_t i = 0; i < r.n; i++) {
        const float *l = r.logits + i * r.k;
        int32_t y = r.labels[i];
        if (!label_ok(y, r.k)) {
            loss[i] = NAN;
            continue;
        }
        /* sum_j t_j (lse - l_j): every term is >= 0, so nothing cancels. */
        double lse = row_lse(l, r.k), uniform = 0;
        if (s != 0)
            for (size_t j = 0; j < r.k; j++) uniform += lse - l[j];
        loss[i] = (float)((1 - s) * (lse - l[y]) + s / (double)r.k * uniform);
    }
    return KILN_OK;
}

kiln_status kiln_cpu_softmax_xent_bwd(kiln_backend_t be, kiln_tensor *dst) {
    (void)be;
    xent_rows r;
    float *dl;
    kiln_status st = xent_rows_of(dst, &r, &dl);
    if (st) return st;
    double s = r.p.label_smoothing, scale = r.p.scale;
    for (size_t i = 0; i < r.n; i++) {
        const float *l = r.logits + i * r.k;
        float *g = dl + i * r.k;
        int32_t y = r.labels[i];
        if (!label_ok(y, r.k)) {
            memset(g, 0, r.k * sizeof *g);
            continue;
        }
        double lse = row_lse(l, r.k);
        for (size_t j = 0; j < r.k; j++) {
            double t = s / (double)r.k + ((size_t)y == j ? 1 - s : 0);
            g[j] = (float)(scale * (exp(l[j] - lse) - t));
        }
    }
    return KILN_OK;
}

kiln_status kiln_cpu_accuracy(kiln_backend_t be, kiln_tensor *dst) {
    (void)be;
    xent_rows r;
    float *correct;
    kiln_status st = xent_rows_of(dst, &r, &correct);
    if (st) return st;
    kiln_accuracy_params p;
    memcpy(&p, dst->op_params, sizeof p);
    for (size_t i = 0; i < r.n; i++) {
        const float *l = r.logits + i * r.k;
        int32_t y = r.labels[i];
        if (!label_ok(y, r.k)) {
            correct[i] = 0;
            continue;
        }
        size_t rank = 0;
        for (size_t j = 0; j < r.k; j++) rank += l[j] > l[y] || (j < (size_t)y && l[j] == l[y]);
        correct[i] = rank < (size_t)p.top_k ? 1.0f : 0.0f;
    }
    return KILN_OK;
}
