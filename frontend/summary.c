/* The model summary table shared by `kiln summary` and the training report. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/backend-impl.h"
#include "kiln/summary.h"

/* 12,345,678 */
static void commas(int64_t v, char *out, size_t n) {
    char digits[32];
    snprintf(digits, sizeof digits, "%lld", (long long)v);
    size_t len = strlen(digits), o = 0;
    for (size_t i = 0; i < len && o + 2 < n; i++) {
        if (i && (len - i) % 3 == 0) out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = '\0';
}

static void si(double v, const char *unit, char *out, size_t n) {
    const char *p[] = {"", "K", "M", "G", "T", "P"};
    int i = 0;
    while (v >= 1000 && i < 5) v /= 1000, i++;
    snprintf(out, n, i ? "%.2f %s%s" : "%.0f %s%s", v, p[i], unit);
}

static void bytes(double v, char *out, size_t n) {
    const char *p[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int i = 0;
    while (v >= 1024 && i < 5) v /= 1024, i++;
    snprintf(out, n, i ? "%.1f %s" : "%.0f %s", v, p[i]);
}

static void row(const kiln_model_node_info *d, kiln_summary_row *r) {
    snprintf(r->cell[KILN_SUMMARY_NODE], sizeof r->cell[0], "%s", d->name);
    snprintf(r->cell[KILN_SUMMARY_OP], sizeof r->cell[0], "%s", d->type);
    char *shape = r->cell[KILN_SUMMARY_SHAPE];
    if (d->ndim == 4)
        snprintf(shape, sizeof r->cell[0], "(N, %lld, %lld, %lld)%s", (long long)d->shape[1],
                 (long long)d->shape[2], (long long)d->shape[3], d->dtype == KILN_U8 ? " u8" : "");
    else
        snprintf(shape, sizeof r->cell[0], "(N, %lld)%s", (long long)d->shape[1],
                 d->dtype == KILN_U8 ? " u8" : "");
    commas(d->params, r->cell[KILN_SUMMARY_PARAMS], sizeof r->cell[0]);
    char *ins = r->cell[KILN_SUMMARY_INPUTS];
    size_t l = 0;
    ins[0] = '\0';
    for (int k = 0; k < d->n_inputs && l < sizeof r->cell[0]; k++)
        l += (size_t)snprintf(ins + l, sizeof r->cell[0] - l, "%s%s", k ? ", " : "", d->inputs[k]);
    r->note = d->host_only
                  ? (d->training_only ? "[data pipeline, training only]" : "[data pipeline]")
              : d->training_only ? "[training only]"
              : d->is_output     ? "[output]"
                                 : "";
}

kiln_status kiln_summary_build(kiln_model_t m, kiln_summary *out) {
    static const char *header[KILN_SUMMARY_COLS] = {"node", "op", "output shape", "params",
                                                    "inputs"};
    memset(out, 0, sizeof *out);
    kiln_model_totals t;
    kiln_status st = kiln_model_get_totals(m, &t);
    if (st) return st;
    int n = kiln_model_node_count(m);
    out->rows = calloc(n > 0 ? (size_t)n : 1, sizeof *out->rows);
    if (!out->rows) return kiln_error(KILN_OUT_OF_MEMORY, "summary: out of host memory");
    memcpy(out->header, header, sizeof header);
    for (int i = 0; i < n; i++) {
        kiln_model_node_info d;
        if (kiln_model_node(m, i, &d)) continue;
        row(&d, &out->rows[out->nrows++]);
    }
    char p[32], f[32], a[32], pb[32];
    commas(t.params, p, sizeof p);
    bytes((double)t.params * 4, pb, sizeof pb);
    si((double)t.flops, "FLOP", f, sizeof f);
    bytes((double)t.act_bytes, a, sizeof a);
    out->total_label[0] = "Total parameters";
    out->total_label[1] = "Forward FLOPs per image";
    out->total_label[2] = "Activation memory";
    snprintf(out->total_value[0], sizeof out->total_value[0], "%s (%s as f32)", p, pb);
    snprintf(out->total_value[1], sizeof out->total_value[1], "%s (a multiply-add counts 2)", f);
    snprintf(out->total_value[2], sizeof out->total_value[2],
             "%s for a batch of %d (every node's output kept for backward, before buffer reuse)", a,
             t.batch);
    return KILN_OK;
}

void kiln_summary_free(kiln_summary *s) {
    free(s->rows);
    memset(s, 0, sizeof *s);
}
