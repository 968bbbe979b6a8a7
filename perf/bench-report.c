/* The suite's results: the terminal table, results.json (cJSON), the self-contained HTML
   report with inline SVG charts, and `kiln bench --compare`, the regression gate. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-util.h"
#include "bench.h"

kiln_bench_row *kiln_bench_add(kiln_bench_report *r) {
    if (r->nrows == r->cap) {
        int cap = r->cap ? 2 * r->cap : 256;
        kiln_bench_row *g = realloc(r->rows, sizeof *g * (size_t)cap);
        if (!g) return NULL;
        r->rows = g;
        r->cap = cap;
    }
    kiln_bench_row *row = &r->rows[r->nrows++];
    memset(row, 0, sizeof *row);
    row->pass = -1;
    return row;
}

void kiln_bench_note(kiln_bench_report *r, const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    printf("note: %s\n", buf);
    if (r->nnotes < KILN_BENCH_MAX_NOTES)
        snprintf(r->notes[r->nnotes++], sizeof r->notes[0], "%s", buf);
}

void kiln_bench_report_free(kiln_bench_report *r) {
    free(r->rows);
    r->rows = NULL;
    r->nrows = r->cap = 0;
}

static double spread(const kiln_bench_row *row) {
    return row->ms > 0 ? (row->ms_max - row->ms_min) / row->ms : 0;
}

void kiln_bench_print_row(const kiln_bench_row *row) {
    static int header;
    if (!header++)
        printf("%-9s %-17s %-58s %10s %7s %4s %8s %6s %9s %s\n", "backend", "op", "shape", "ms",
               "spread", "runs", "GFLOP/s", "peak", "images/s", "check");
    char gf[16] = "", pk[16] = "", ips[16] = "", chk[24] = "-";
    if (row->gflops > 0) snprintf(gf, sizeof gf, "%.1f", row->gflops);
    if (row->of_peak > 0) snprintf(pk, sizeof pk, "%.3f", row->of_peak);
    if (row->images_per_s > 0) snprintf(ips, sizeof ips, "%.1f", row->images_per_s);
    if (row->pass >= 0)
        snprintf(chk, sizeof chk, "%s %.1e", row->pass ? "ok" : "MISMATCH", row->err);
    printf("%-9s %-17s %-58.58s %10.3f %6.0f%% %4d %8s %6s %9s %s\n", row->backend, row->op,
           row->shape, row->ms, 100 * spread(row), row->reps, gf, pk, ips, chk);
    fflush(stdout);
}

/* ---- JSON ---- */

int kiln_bench_write_json(const kiln_bench_report *r, const char *path) {
    cJSON *root = cJSON_CreateObject(), *devs = cJSON_CreateArray(), *notes = cJSON_CreateArray();
    cJSON *res = cJSON_CreateArray();
    cJSON_AddStringToObject(root, "kiln_version", r->version);
    cJSON_AddStringToObject(root, "git_commit", r->commit);
    cJSON_AddStringToObject(root, "date", r->date);
    cJSON_AddStringToObject(root, "host", r->host);
    cJSON_AddStringToObject(root, "mode", r->mode);
    for (int i = 0; i < r->ndevices; i++) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "name", r->devices[i].name);
        cJSON_AddStringToObject(d, "driver", r->devices[i].driver);
        cJSON_AddStringToObject(d, "platform", r->devices[i].platform);
        cJSON_AddNumberToObject(d, "peak_gflops", r->devices[i].peak_gflops);
        cJSON_AddItemToArray(devs, d);
    }
    for (int i = 0; i < r->nnotes; i++)
        cJSON_AddItemToArray(notes, cJSON_CreateString(r->notes[i]));
    for (int i = 0; i < r->nrows; i++) {
        const kiln_bench_row *w = &r->rows[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "device", w->device);
        cJSON_AddStringToObject(o, "driver", w->driver);
        cJSON_AddStringToObject(o, "backend", w->backend);
        cJSON_AddStringToObject(o, "op", w->op);
        cJSON_AddStringToObject(o, "shape", w->shape);
        if (w->pass >= 0) {
            cJSON_AddBoolToObject(o, "pass", w->pass);
            cJSON_AddNumberToObject(o, "err", w->err);
        } else {
            cJSON_AddNullToObject(o, "pass");
        }
        cJSON_AddNumberToObject(o, "ms", w->ms);
        cJSON_AddNumberToObject(o, "ms_min", w->ms_min);
        cJSON_AddNumberToObject(o, "ms_max", w->ms_max);
        cJSON_AddNumberToObject(o, "spread", spread(w));
        cJSON_AddNumberToObject(o, "runs", w->reps);
        cJSON_AddNumberToObject(o, "gflops", w->gflops);
        cJSON_AddNumberToObject(o, "fraction_of_peak", w->of_peak);
        if (w->images_per_s > 0) cJSON_AddNumberToObject(o, "images_per_s", w->images_per_s);
        cJSON_AddItemToArray(res, o);
    }
    cJSON_AddItemToObject(root, "devices", devs);
    cJSON_AddItemToObject(root, "notes", notes);
    cJSON_AddItemToObject(root, "results", res);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    FILE *f = text ? fopen(path, "w") : NULL;
    int ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f) ok &= fclose(f) == 0;
    free(text);
    if (!ok) fprintf(stderr, "kiln bench: cannot write %s\n", path);
    return ok;
}

/* ---- HTML ---- */

static void html_text(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '&')
            fputs("&amp;", f);
        else if (*s == '"')
            fputs("&quot;", f);
        else
            fputc(*s, f);
    }
}

static const char *const palette[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                      "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};

static void series_name(const kiln_bench_row *w, char *out, size_t n) {
    if (!strcmp(w->device, "host") || !w->device[0])
        snprintf(out, n, "%s", w->backend);
    else
        snprintf(out, n, "%s @ %s", w->backend, w->device);
}

#define MAX_GROUPS 96
#define MAX_SERIES 12

/* Whether row w belongs to the chart of `op` over shapes starting with "prefix " ("": all). */
static int in_chart(const kiln_bench_row *w, const char *op, const char *prefix) {
    size_t n = strlen(prefix);
    return !strcmp(w->op, op) && (!n || (!strncmp(w->shape, prefix, n) && w->shape[n] == ' '));
}

/* A grouped horizontal bar chart of the rows of one op (and shape prefix): one group per
   shape, one bar per backend and device. Throughput (GFLOP/s or images/s) when the rows have
   it, else ms. */
static void chart(FILE *f, const kiln_bench_report *r, const char *op, const char *prefix,
                  const char *title) {
    const char *groups[MAX_GROUPS];
    char series[MAX_SERIES][200];
    int ng = 0, ns = 0, use_gf = 0, use_ips = 0;
    for (int i = 0; i < r->nrows; i++) {
        const kiln_bench_row *w = &r->rows[i];
        if (!in_chart(w, op, prefix)) continue;
        use_gf |= w->gflops > 0;
        use_ips |= w->images_per_s > 0;
        int g = 0;
        while (g < ng && strcmp(groups[g], w->shape)) g++;
        if (g == ng && ng < MAX_GROUPS) groups[ng++] = w->shape;
        char s[200];
        series_name(w, s, sizeof s);
        int k = 0;
        while (k < ns && strcmp(series[k], s)) k++;
        if (k == ns && ns < MAX_SERIES) snprintf(series[ns++], sizeof series[0], "%s", s);
    }
    if (!ng) return;
    const char *unit = use_ips  ? "images/s (higher is better)"
                       : use_gf ? "GFLOP/s (higher is better)"
                                : "ms (lower is better)";
    double vmax = 0;
    for (int i = 0; i < r->nrows; i++) {
        const kiln_bench_row *w = &r->rows[i];
        if (!in_chart(w, op, prefix)) continue;
        double v = use_ips ? w->images_per_s : use_gf ? w->gflops : w->ms;
        vmax = v > vmax ? v : vmax;
    }
    if (vmax <= 0) vmax = 1;
    const int label_w = 380, plot_w = 460, bar_h = 11, legend_h = 18 * ((ns + 2) / 3) + 8;
    int height = 24 + legend_h + ng * (ns * bar_h + 10);
    fprintf(f, "<h3>");
    html_text(f, title);
    fprintf(f, " <small>%s</small></h3>\n", unit);
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "font-family=\"sans-serif\" font-size=\"10\">\n",
            label_w + plot_w + 90, height);
    for (int k = 0; k < ns; k++) {
        int x = (k % 3) * 300, y = 6 + (k / 3) * 18;
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"10\" fill=\"%s\"/>", x, y,
                palette[k % 10]);
        fprintf(f, "<text x=\"%d\" y=\"%d\">", x + 16, y + 9);
        html_text(f, series[k]);
        fprintf(f, "</text>\n");
    }
    int y = 24 + legend_h;
    for (int g = 0; g < ng; g++) {
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", label_w - 6,
                y + ns * bar_h / 2 + 4);
        html_text(f, groups[g]);
        fprintf(f, "</text>\n");
        for (int k = 0; k < ns; k++) {
            for (int i = 0; i < r->nrows; i++) {
                const kiln_bench_row *w = &r->rows[i];
                char s[200];
                series_name(w, s, sizeof s);
                if (!in_chart(w, op, prefix) || strcmp(w->shape, groups[g]) || strcmp(s, series[k]))
                    continue;
                double v = use_ips ? w->images_per_s : use_gf ? w->gflops : w->ms;
                int len = (int)(plot_w * v / vmax);
                fprintf(f,
                        "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\">"
                        "<title>%.4g</title></rect>",
                        label_w, y + k * bar_h, len > 0 ? len : 1, bar_h - 2, palette[k % 10], v);
                fprintf(f, "<text x=\"%d\" y=\"%d\">%.4g%s</text>\n", label_w + len + 4,
                        y + k * bar_h + 8, v, w->pass == 0 ? " MISMATCH" : "");
                break;
            }
        }
        y += ns * bar_h + 10;
    }
    fprintf(f, "</svg>\n");
}

int kiln_bench_write_html(const kiln_bench_report *r, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "kiln bench: cannot write %s\n", path);
        return 0;
    }
    fprintf(f, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>kiln bench</title>\n"
               "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}"
               "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;"
               "padding:2px 6px;text-align:right}td:nth-child(-n+4){text-align:left}"
               "small{color:#666;font-weight:normal}</style></head><body>\n");
    fprintf(f, "<h1>kiln bench</h1>\n<p>kiln ");
    html_text(f, r->version);
    fprintf(f, ", commit ");
    html_text(f, r->commit);
    fprintf(f, ", ");
    html_text(f, r->date);
    fprintf(f, ", host ");
    html_text(f, r->host);
    fprintf(f,
            ", %s run. Each figure is the median of the stated number of timed runs after "
            "warm-up; spread = (max - min) / median.</p>\n<table><tr><th>device</th>"
            "<th>driver</th><th>platform</th><th>measured peak GFLOP/s</th></tr>\n",
            r->mode);
    for (int i = 0; i < r->ndevices; i++) {
        fprintf(f, "<tr><td>");
        html_text(f, r->devices[i].name);
        fprintf(f, "</td><td>");
        html_text(f, r->devices[i].driver);
        fprintf(f, "</td><td>");
        html_text(f, r->devices[i].platform);
        fprintf(f, "</td><td>%.1f</td></tr>\n", r->devices[i].peak_gflops);
    }
    fprintf(f, "</table>\n");
    if (r->nnotes) {
        fprintf(f, "<ul>\n");
        for (int i = 0; i < r->nnotes; i++) {
            fprintf(f, "<li>");
            html_text(f, r->notes[i]);
            fprintf(f, "</li>\n");
        }
        fprintf(f, "</ul>\n");
    }
    fprintf(f, "<h2>Training steps and the data pipeline</h2>\n");
    chart(f, r, "train_step", "", "training step (forward + backward + SGD update)");
    chart(f, r, "first_train_step", "", "time to the first training step in a new process");
    chart(f, r, "data_pipeline", "", "data pipeline: JPEG decode + augment");
    fprintf(f, "<h2>Ops</h2>\n");
    static const char *const ops[] = {
        "gemm",   "conv2d",     "conv2d_bwd_data", "conv2d_bwd_filter",
        "pool2d", "pool2d_bwd", "u8_to_f32"};
    /* Layer shapes ("vgg16n@32 b1c1 ...") get one chart per network and input. */
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        char done[32][32];
        int nd = 0;
        for (int k = 0; k < r->nrows; k++) {
            const kiln_bench_row *w = &r->rows[k];
            size_t n = strcspn(w->shape, " ");
            if (strcmp(w->op, ops[i]) || n >= sizeof done[0]) continue;
            char prefix[32];
            snprintf(prefix, sizeof prefix, "%.*s", (int)n, w->shape);
            if (!strchr(prefix, '@')) prefix[0] = '\0';
            int seen = 0;
            for (int j = 0; j < nd && !seen; j++) seen = !strcmp(done[j], prefix);
            if (seen || nd == 32) continue;
            snprintf(done[nd++], sizeof done[0], "%s", prefix);
            char title[96];
            snprintf(title, sizeof title, "%s%s%s", ops[i], prefix[0] ? ", " : "", prefix);
            chart(f, r, ops[i], prefix, title);
        }
    }
    fprintf(f, "<h2>All results</h2>\n<table><tr><th>device</th><th>backend</th><th>op</th>"
               "<th>shape</th><th>ms</th><th>spread</th><th>runs</th><th>GFLOP/s</th>"
               "<th>of peak</th><th>images/s</th><th>check</th></tr>\n");
    for (int i = 0; i < r->nrows; i++) {
        const kiln_bench_row *w = &r->rows[i];
        const char *cells[4] = {w->device, w->backend, w->op, w->shape};
        fprintf(f, "<tr>");
        for (int c = 0; c < 4; c++) {
            fprintf(f, "<td>");
            html_text(f, cells[c]);
            fprintf(f, "</td>");
        }
        fprintf(f, "<td>%.3f</td><td>%.0f%%</td><td>%d</td><td>%.1f</td><td>%.3f</td><td>%.1f</td>",
                w->ms, 100 * spread(w), w->reps, w->gflops, w->of_peak, w->images_per_s);
        fprintf(f, "<td>%s</td></tr>\n", w->pass < 0 ? "-" : w->pass ? "ok" : "MISMATCH");
    }
    fprintf(f, "</table>\n</body></html>\n");
    int ok = fclose(f) == 0;
    if (!ok) fprintf(stderr, "kiln bench: cannot write %s\n", path);
    return ok;
}

/* ---- compare ---- */

static cJSON *load_results(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "kiln bench --compare: cannot open %s\n", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = n >= 0 ? malloc((size_t)n + 1) : NULL;
    size_t got = text ? fread(text, 1, (size_t)n, f) : 0;
    fclose(f);
    if (!text) return NULL;
    text[got] = '\0';
    cJSON *root = cJSON_Parse(text);
    free(text);
    /* {"results": [...]} from the suite, or the bare arrays of `bench gemm|conv --json` */
    cJSON *res = root && cJSON_IsObject(root) ? cJSON_GetObjectItem(root, "results") : root;
    if (!res || !cJSON_IsArray(res)) {
        fprintf(stderr, "kiln bench --compare: %s is not a kiln bench results file\n", path);
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

static cJSON *results_of(cJSON *root) {
    return cJSON_IsObject(root) ? cJSON_GetObjectItem(root, "results") : root;
}

static const char *str(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static void row_key(const cJSON *o, char *out, size_t n) {
    snprintf(out, n, "%s | %s | %s | %s%s%s", str(o, "device"), str(o, "backend"), str(o, "op"),
             str(o, "shape"), *str(o, "pass") ? " " : "", str(o, "pass"));
}

int kiln_bench_compare(int argc, char **argv) {
    const char *paths[2] = {NULL, NULL};
    double threshold = 0.10;
    int np = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--compare")) continue;
        if (!strcmp(argv[i], "--threshold") && i + 1 < argc) {
            char *end;
            threshold = strtod(argv[++i], &end);
            if (*end || !(threshold >= 0)) {
                fprintf(stderr, "kiln bench --compare: bad --threshold '%s'\n", argv[i]);
                return 2;
            }
        } else if (argv[i][0] != '-' && np < 2) {
            paths[np++] = argv[i];
        } else {
            fprintf(stderr, "usage: kiln bench --compare OLD.json NEW.json [--threshold F]\n");
            return 2;
        }
    }
    if (np != 2) {
        fprintf(stderr, "usage: kiln bench --compare OLD.json NEW.json [--threshold F]\n");
        return 2;
    }
    cJSON *old_root = load_results(paths[0]), *new_root = old_root ? load_results(paths[1]) : NULL;
    if (!old_root || !new_root) {
        cJSON_Delete(old_root);
        return 2;
    }
    cJSON *olds = results_of(old_root), *news = results_of(new_root);
    int compared = 0, slower = 0, faster = 0, broken = 0, only_new = 0;
    double log_sum = 0;
    printf("ratio = new ms / old ms; slower than old by more than %.0f%% fails\n", 100 * threshold);
    printf("%8s %10s %10s  %s\n", "ratio", "old ms", "new ms", "device | backend | op | shape");
    const cJSON *n;
    cJSON_ArrayForEach(n, news) {
        char key[600], k2[600];
        row_key(n, key, sizeof key);
        const cJSON *o, *match = NULL;
        cJSON_ArrayForEach(o, olds) {
            row_key(o, k2, sizeof k2);
            if (!strcmp(key, k2)) {
                match = o;
                break;
            }
        }
        const cJSON *nm = cJSON_GetObjectItem(n, "ms");
        if (!match) {
            only_new++;
            continue;
        }
        const cJSON *om = cJSON_GetObjectItem(match, "ms");
        if (!cJSON_IsNumber(nm) || !cJSON_IsNumber(om) || om->valuedouble <= 0 ||
            nm->valuedouble <= 0)
            continue;
        double ratio = nm->valuedouble / om->valuedouble;
        const char *verdict = "";
        if (ratio > 1 + threshold) {
            verdict = "  SLOWER";
            slower++;
        } else if (ratio < 1 / (1 + threshold)) {
            verdict = "  faster";
            faster++;
        }
        /* A case that agreed with the cpu backend and no longer does is a regression too. */
        if (cJSON_IsTrue(cJSON_GetObjectItem(match, "pass")) &&
            cJSON_IsFalse(cJSON_GetObjectItem(n, "pass"))) {
            verdict = "  NOW FAILS THE CHECK";
            broken++;
        }
        compared++;
        log_sum += log(ratio);
        printf("%8.3f %10.3f %10.3f  %s%s\n", ratio, om->valuedouble, nm->valuedouble, key,
               verdict);
    }
    int only_old = cJSON_GetArraySize(olds) - (cJSON_GetArraySize(news) - only_new);
    printf("\n%d cases compared: %d slower by more than %.0f%%, %d faster, %d no longer pass "
           "the check; geometric mean ratio %.3f\n",
           compared, slower, 100 * threshold, faster, broken,
           compared ? exp(log_sum / compared) : 1.0);
    if (only_new || only_old > 0)
        printf("%d cases only in %s, %d only in %s (not compared)\n", only_old > 0 ? only_old : 0,
               paths[0], only_new, paths[1]);
    cJSON_Delete(old_root);
    cJSON_Delete(new_root);
    if (!compared) {
        fprintf(stderr, "kiln bench --compare: no case in common\n");
        return 1;
    }
    return slower || broken ? 1 : 0;
}
