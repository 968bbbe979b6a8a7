/* The training report: one self-contained HTML file (inline SVG plots, inline CSS, no script,
   no external asset) built from the per-epoch rows of log.csv, so a resumed run's report holds
   the epochs of every run that wrote the log. Every piece of text that comes from outside (file
   names, class names, the command line, node names) goes through html(). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../runtime/backend-impl.h"
#include "kiln/kiln.h"
#include "kiln/summary.h"
#include "train-impl.h"

/* A growing output buffer; an allocation failure is remembered and reported once. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 16384;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void add(sbuf *b, const char *s) {
    put(b, s, strlen(s));
}

static void putf(sbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void putf(sbuf *b, const char *fmt, ...) {
    char tmp[1024], *big = NULL;
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof tmp && (big = malloc((size_t)n + 1)))
        vsnprintf(big, (size_t)n + 1, fmt, again);
    va_end(again);
    if (n >= (int)sizeof tmp && !big)
        b->oom = 1;
    else if (n > 0)
        put(b, big ? big : tmp, (size_t)n);
    free(big);
}

/* Text into element content or a quoted attribute. */
static void html(sbuf *b, const char *s) {
    for (; s && *s; s++) {
        const char *e = *s == '&'    ? "&amp;"
                        : *s == '<'  ? "&lt;"
                        : *s == '>'  ? "&gt;"
                        : *s == '"'  ? "&quot;"
                        : *s == '\'' ? "&#39;"
                                     : NULL;
        if (e)
            add(b, e);
        else
            put(b, s, 1);
    }
}

/* ---- the log ---- */

typedef struct epoch_row {
    int epoch;
    long long global_step;
    double lr, loss, acc, vloss, vacc, vtop5, ips, wait, secs;
    int has_val;
} epoch_row;

static int parse_row(char *line, epoch_row *r) {
    double v[11];
    int n = 0, has[11];
    for (char *p = line; n < 11; n++) {
        char *end;
        v[n] = strtod(p, &end);
        has[n] = end != p;
        p = end + strcspn(end, ",\n");
        if (*p != ',') {
            n++;
            break;
        }
        p++;
    }
    if (n != 11 || !has[0] || !has[3]) return -1;
    r->epoch = (int)v[0], r->global_step = (long long)v[1], r->lr = v[2];
    r->loss = v[3], r->acc = v[4];
    r->has_val = has[6];
    r->vloss = has[5] ? v[5] : NAN, r->vacc = has[6] ? v[6] : NAN, r->vtop5 = has[7] ? v[7] : NAN;
    r->ips = v[8], r->wait = v[9], r->secs = v[10];
    return 0;
}

/* One row per epoch up to the trainer's position; a later row for an epoch (a resumed run
   redoing it) replaces the earlier one. */
static int read_log(const char *csv, int upto, epoch_row **out) {
    *out = NULL;
    FILE *f = csv[0] ? fopen(csv, "r") : NULL;
    if (!f || upto < 1) {
        if (f) fclose(f);
        return 0;
    }
    epoch_row *rows = calloc((size_t)upto, sizeof *rows);
    char line[1024];
    while (rows && fgets(line, sizeof line, f)) {
        epoch_row r;
        if (!parse_row(line, &r) && r.epoch >= 1 && r.epoch <= upto) rows[r.epoch - 1] = r;
    }
    fclose(f);
    int n = 0;
    for (int k = 0; rows && k < upto; k++)
        if (rows[k].epoch) rows[n++] = rows[k];
    *out = rows;
    return n;
}

/* ---- plots ---- */

enum { PW = 520, PH = 300, ML = 60, MR = 20, MT = 34, MB = 46 };

/* A step of 1, 2 or 5 times a power of ten giving about `want` intervals over span. */
static double nice_step(double span, int want) {
    double raw = span / want, p = pow(10, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

typedef double (*field_fn)(const epoch_row *r);
static double f_loss(const epoch_row *r) {
    return r->loss;
}
static double f_vloss(const epoch_row *r) {
    return r->vloss;
}
static double f_acc(const epoch_row *r) {
    return r->acc;
}
static double f_vacc(const epoch_row *r) {
    return r->vacc;
}

/* Presentation attributes rather than CSS, so a plot copied out of the page still renders. */
#define GRID  "stroke=\"#e4e4e4\""
#define AXIS  "stroke=\"#444\""
#define RIGHT "text-anchor=\"end\""
#define MID   "text-anchor=\"middle\""

static void plot(sbuf *b, const char *title, const epoch_row *rows, int n, field_fn train,
                 field_fn val, int accuracy) {
    double lo = 0, hi = accuracy ? 1 : 0;
    for (int i = 0; i < n && !accuracy; i++) {
        double a = train(&rows[i]), c = val(&rows[i]);
        if (isfinite(a) && a > hi) hi = a;
        if (isfinite(c) && c > hi) hi = c;
    }
    if (hi <= lo) hi = lo + 1;
    double ystep = nice_step(hi - lo, 5);
    hi = ceil(hi / ystep) * ystep;
    int e0 = n ? rows[0].epoch : 1, e1 = n ? rows[n - 1].epoch : 1;
    if (e1 <= e0) e1 = e0 + 1;
    double xstep = ceil(nice_step(e1 - e0, 8));
    double iw = PW - ML - MR, ih = PH - MT - MB;
#define X(e) (ML + iw * ((e)-e0) / (double)(e1 - e0))
#define Y(v) (MT + ih * (1 - ((v)-lo) / (hi - lo)))
    putf(b,
         "<svg class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
         "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"11\" role=\"img\">\n"
         "<title>",
         PW, PH, PW, PH);
    html(b, title);
    putf(b, "</title>\n<text x=\"%d\" y=\"20\" font-size=\"13\" font-weight=\"bold\">", ML);
    html(b, title);
    add(b, "</text>\n");
    for (double v = lo; v <= hi + ystep / 2; v += ystep)
        putf(b,
             "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" " GRID "/>"
             "<text x=\"%d\" y=\"%.1f\" " RIGHT ">%g</text>\n",
             ML, Y(v), PW - MR, Y(v), ML - 6, Y(v) + 4, fabs(v) < ystep / 1e6 ? 0 : v);
    for (double e = e0; e <= e1 + 1e-9; e += xstep)
        putf(b,
             "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" " AXIS "/>"
             "<text x=\"%.1f\" y=\"%d\" " MID ">%g</text>\n",
             X(e), PH - MB, X(e), PH - MB + 5, X(e), PH - MB + 18, e);
    putf(b,
         "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" " AXIS "/>"
         "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" " AXIS "/>\n"
         "<text x=\"%.1f\" y=\"%d\" " MID ">epoch</text>\n"
         "<text x=\"14\" y=\"%.1f\" " MID " transform=\"rotate(-90 14 %.1f)\">%s</text>\n",
         ML, MT, ML, PH - MB, ML, PH - MB, PW - MR, PH - MB, ML + iw / 2, PH - 8, MT + ih / 2,
         MT + ih / 2, accuracy ? "accuracy" : "loss");
    static const char *cls[2] = {"train", "val"}, *label[2] = {"train", "validation"};
    static const char *color[2] = {"#1f77b4", "#ff7f0e"};
    field_fn fn[2] = {train, val};
    int shown[2] = {0, 0};
    for (int s = 0; s < 2; s++) {
        sbuf pts = {0};
        for (int i = 0; i < n; i++) {
            double v = fn[s](&rows[i]);
            if (isfinite(v)) putf(&pts, "%.1f,%.1f ", X(rows[i].epoch), Y(v)), shown[s]++;
        }
        if (pts.len) {
            putf(b,
                 "<polyline class=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" "
                 "points=\"",
                 cls[s], color[s]);
            put(b, pts.p, pts.len);
            add(b, "\"/>\n");
        }
        free(pts.p);
        b->oom |= pts.oom;
        for (int i = 0; i < n; i++) {
            double v = fn[s](&rows[i]);
            if (isfinite(v))
                putf(b,
                     "<circle class=\"%s\" fill=\"%s\" cx=\"%.1f\" cy=\"%.1f\" r=\"3\"><title>"
                     "epoch %d: %.4f</title></circle>\n",
                     cls[s], color[s], X(rows[i].epoch), Y(v), rows[i].epoch, v);
        }
    }
    /* The legend in the corner the curves leave free: loss falls, accuracy rises. */
    int entries = (shown[0] > 0) + (shown[1] > 0), lh = 8 + 18 * entries;
    int lx = PW - MR - 120, ly = accuracy ? PH - MB - lh - 6 : MT + 4;
    if (entries)
        putf(
            b,
            "<rect x=\"%d\" y=\"%d\" width=\"114\" height=\"%d\" fill=\"#fff\" stroke=\"#ccc\"/>\n",
            lx, ly, lh);
    for (int s = 0, k = 0; s < 2; s++) {
        if (!shown[s]) continue;
        int y = ly + 13 + 18 * k++;
        putf(b,
             "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"/>"
             "<text x=\"%d\" y=\"%d\">%s</text>\n",
             lx + 8, y, lx + 32, y, color[s], lx + 40, y + 4, label[s]);
    }
    add(b, "</svg>\n");
#undef X
#undef Y
}

/* ---- tables ---- */

static void kv(sbuf *b, const char *key, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void kv(sbuf *b, const char *key, const char *fmt, ...) {
    char tmp[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    add(b, "<tr><th>");
    html(b, key);
    add(b, "</th><td>");
    html(b, tmp);
    add(b, "</td></tr>\n");
}

static void hyperparameters(sbuf *b, struct kiln_trainer *t) {
    const kiln_train_options *o = &t->o;
    add(b, "<h2>Run</h2>\n<table class=\"kv\">\n");
    if (o->command) kv(b, "command", "%s", o->command);
    const kiln_device_info *d = kiln_backend_device(t->be);
    kv(b, "backend", "%s", kiln_backend_name(t->be));
    kv(b, "device", "%s%s%s", d ? d->name : "host", d ? " / " : "", d ? d->platform : "");
    kv(b, "device memory", "%.1f MiB", (double)kiln_trainer_device_bytes(t) / (1 << 20));
    kv(b, "model", "%s", kiln_model_file(t->model));
    kv(b, "input", "%dx%dx%d, %d classes", t->in_h, t->in_w, t->in_c, t->classes);
    kv(b, "batch", "%d", o->batch);
    kv(b, "epochs", "%d", o->epochs);
    if (o->optimizer == KILN_OPTIM_SGD)
        kv(b, "optimizer", "sgd, momentum %g%s", (double)o->momentum,
           o->nesterov ? " (Nesterov)" : "");
    else
        kv(b, "optimizer", "%s, beta1 %g, beta2 %g, eps %g", kiln_optim_name(o->optimizer),
           (double)o->beta1, (double)o->beta2, (double)o->eps);
    kv(b, "learning rate", "%g", (double)o->lr);
    kv(b, "weight decay", "%g", (double)o->weight_decay);
    if (o->schedule == KILN_SCHED_STEP)
        kv(b, "schedule", "step: x%g every %d epochs", (double)o->step_gamma, o->step_epochs);
    else
        kv(b, "schedule", "%s", kiln_sched_name(o->schedule));
    kv(b, "warmup steps", "%lld", (long long)o->warmup_steps);
    kv(b, "label smoothing", "%g", (double)o->label_smoothing);
    kv(b, "seed", "%llu", (unsigned long long)o->seed);
    kv(b, "augmentation (train)", "%s", *t->augment_train ? t->augment_train : "none");
    kv(b, "augmentation (eval)", "%s", *t->augment_eval ? t->augment_eval : "none");
    kv(b, "on non-finite", "%s", o->on_nan == KILN_NAN_SKIP ? "skip the step" : "stop");
    if (o->log_grad_norms > 0)
        kv(b, "gradient norms", "every %lld steps (grad-norms.csv)", (long long)o->log_grad_norms);
    if (t->class_names) {
        char names[2048];
        size_t l = 0;
        names[0] = '\0';
        for (int k = 0; k < t->nclass_names && l + 2 < sizeof names; k++)
            l += (size_t)snprintf(names + l, sizeof names - l, "%s%s", k ? ", " : "",
                                  t->class_list[k]);
        kv(b, "classes", "%s", names);
    }
    add(b, "</table>\n");
}

static void epochs_table(sbuf *b, const epoch_row *rows, int n) {
    double secs = 0, images = 0, wait = 0;
    for (int i = 0; i < n; i++) {
        secs += rows[i].secs;
        images += rows[i].ips * rows[i].secs;
        wait += rows[i].wait * rows[i].secs;
    }
    add(b, "<h2>Timing</h2>\n<table class=\"kv\">\n");
    kv(b, "training time", "%.1f s over %d epoch(s)", secs, n);
    kv(b, "throughput", "%.0f img/s", secs > 0 ? images / secs : 0);
    kv(b, "data wait", "%.1f%% of the time", secs > 0 ? 100 * wait / secs : 0);
    add(b, "</table>\n<h2>Epochs</h2>\n<table class=\"grid\">\n");
    add(b, "<tr><th>epoch</th><th>step</th><th>lr</th><th>loss</th><th>acc</th><th>val loss</th>"
           "<th>val acc</th><th>val top-5</th><th>img/s</th><th>data wait</th><th>seconds</th>"
           "</tr>\n");
    for (int i = 0; i < n; i++) {
        const epoch_row *r = &rows[i];
        putf(b, "<tr><td>%d</td><td>%lld</td><td>%.4g</td><td>%.4f</td><td>%.4f</td>", r->epoch,
             r->global_step, r->lr, r->loss, r->acc);
        if (r->has_val)
            putf(b, "<td>%.4f</td><td>%.4f</td><td>%.4f</td>", r->vloss, r->vacc, r->vtop5);
        else
            add(b, "<td></td><td></td><td></td>");
        putf(b, "<td>%.0f</td><td>%.1f%%</td><td>%.1f</td></tr>\n", r->ips, 100 * r->wait, r->secs);
    }
    add(b, "</table>\n");
}

static void summary_table(sbuf *b, kiln_model_t m) {
    kiln_summary s;
    add(b, "<h2>Model</h2>\n");
    if (kiln_summary_build(m, &s)) {
        add(b, "<p>");
        html(b, kiln_last_error());
        add(b, "</p>\n");
        return;
    }
    add(b, "<table class=\"grid\">\n<tr>");
    for (int c = 0; c < KILN_SUMMARY_COLS; c++) {
        add(b, "<th>");
        html(b, s.header[c]);
        add(b, "</th>");
    }
    add(b, "<th></th></tr>\n");
    for (int i = 0; i < s.nrows; i++) {
        add(b, "<tr>");
        for (int c = 0; c < KILN_SUMMARY_COLS; c++) {
            add(b, c == KILN_SUMMARY_PARAMS ? "<td class=\"num\">" : "<td>");
            html(b, s.rows[i].cell[c]);
            add(b, "</td>");
        }
        add(b, "<td>");
        html(b, s.rows[i].note);
        add(b, "</td></tr>\n");
    }
    add(b, "</table>\n<table class=\"kv\">\n");
    for (int i = 0; i < KILN_SUMMARY_TOTALS; i++) kv(b, s.total_label[i], "%s", s.total_value[i]);
    add(b, "</table>\n");
    kiln_summary_free(&s);
}

static const char *STYLE =
    "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}"
    "h1{font-size:20px}h2{font-size:16px;margin-top:28px}"
    "table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 10px;text-align:left}"
    "table.grid td,table.grid th{border-bottom:1px solid #ddd}table.kv th{color:#555;"
    "font-weight:normal}td.num{text-align:right}.big{font-size:18px;font-weight:bold}"
    "svg.plot{margin:8px 16px 8px 0}";

kiln_status kt_write_report(struct kiln_trainer *t, const char *csv, const char *html_path) {
    epoch_row *rows = NULL;
    int upto = t->epoch > t->o.epochs ? t->o.epochs : (int)t->epoch;
    int n = read_log(csv, upto, &rows);
    sbuf b = {0};
    const char *model = kiln_model_file(t->model);
    add(&b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>");
    html(&b, model);
    putf(&b, " - kiln training report</title>\n<style>%s</style>\n</head>\n<body>\n", STYLE);
    add(&b, "<h1>kiln training report: ");
    html(&b, model);
    add(&b, "</h1>\n");
    int finished = t->epoch >= t->o.epochs;
    const epoch_row *last = n ? &rows[n - 1] : NULL;
    putf(&b, "<p>%s: epoch %lld of %d, global step %lld.</p>\n",
         finished ? "Finished" : "In progress or stopped", (long long)upto, t->o.epochs,
         (long long)t->global_step);
    if (last && last->has_val)
        putf(&b,
             "<p class=\"big\" id=\"final\">%s: %.4f</p>\n<p>top-5 %.4f, loss %.4f (epoch %d); "
             "best validation accuracy %.4f</p>\n",
             finished ? "Final test accuracy" : "Latest validation accuracy", last->vacc,
             last->vtop5, last->vloss, last->epoch, t->best_val_acc);
    else if (last)
        putf(&b, "<p>No validation data: final training accuracy %.4f, loss %.4f.</p>\n", last->acc,
             last->loss);
    if (n) {
        plot(&b, "Loss per epoch", rows, n, f_loss, f_vloss, 0);
        plot(&b, "Accuracy per epoch", rows, n, f_acc, f_vacc, 1);
    } else {
        add(&b, "<p>No epoch has completed yet.</p>\n");
    }
    hyperparameters(&b, t);
    epochs_table(&b, rows, n);
    summary_table(&b, t->model);
    char when[64] = "";
    time_t now = time(NULL);
    struct tm tmv;
    if (localtime_r(&now, &tmv)) strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tmv);
    putf(&b, "<p><small>kiln %s, written %s</small></p>\n</body>\n</html>\n", KILN_VERSION_STRING,
         when);
    free(rows);
    kiln_status st = b.oom ? kiln_error(KILN_OUT_OF_MEMORY, "report: out of host memory")
                           : kiln_write_file_atomic(html_path, b.p, b.len);
    free(b.p);
    return st;
}
