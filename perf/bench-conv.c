/* `kiln bench conv`: forward, backward-data and backward-filter times of the convolution
   layers of AlexNet (torchvision widths) and the narrow VGG16 (32-64-96-128-128) at small
   inputs, on the cpu (OpenBLAS im2col), opencl, clblast and auto backends in one run, each
   result checked against the cpu backend. auto's first (warm-up) run of a shape measures its
   candidates, Winograd among them, and the timed runs are its choice. --peer adds PyTorch's
   CPU times (perf/peer_torch.py). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench-cases.h"
#include "bench-util.h"
#include "bench.h"
#include "kiln/kiln.h"

enum { PASS_FWD, PASS_BWD_DATA, PASS_BWD_FILTER, NPASS };
static const char *const pass_names[NPASS] = {"fwd", "bwd_data", "bwd_filter"};

enum { NET_ALEXNET, NET_VGG16N, NNET };
static const char *const net_names[NNET] = {"alexnet", "vgg16n"};

typedef struct {
    int net, input; /* which network, at which input size */
    char name[16];  /* conv1, b1c1, ... */
    int n, c, h, w, o, k, s, p;
} layer;

typedef struct {
    int layer, pass;
    char backend[16];
    char device[128];
    double ms, gflops, err;
    int reps;
} row;

static double layer_flops(const layer *l) {
    int64_t oh = kiln_conv2d_out_size(l->h, l->k, l->s, l->p, l->p, 1);
    int64_t ow = kiln_conv2d_out_size(l->w, l->k, l->s, l->p, l->p, 1);
    return 2.0 * l->n * l->o * (double)(oh * ow) * l->c * l->k * l->k;
}

static void layer_shape(const layer *l, char *out, size_t n) {
    snprintf(out, n, "%s@%d %s n=%d c=%d h=%d w=%d o=%d k=%d s=%d p=%d", net_names[l->net],
             l->input, l->name, l->n, l->c, l->h, l->w, l->o, l->k, l->s, l->p);
}

/* The layers of perf/bench-cases.h (the list the op test harness registers too). */
static int build_layers(layer *out, int cap, const int *nets, const int *inputs, int ninputs,
                        int batch) {
    static const int shared[NNET] = {KILN_BENCH_ALEXNET, KILN_BENCH_VGG16N};
    int nl = 0;
    for (int ii = 0; ii < ninputs; ii++)
        for (int ni = 0; ni < NNET; ni++) {
            if (!nets[ni]) continue;
            kiln_bench_layer l[32];
            int n = kiln_bench_net_layers(shared[ni], inputs[ii], l, 32);
            for (int i = 0; i < n && nl < cap; i++) {
                if (!l[i].k) continue;
                out[nl] = (layer){ni,     inputs[ii], "",     batch,  l[i].c, l[i].h,
                                  l[i].w, l[i].o,     l[i].k, l[i].s, l[i].p};
                snprintf(out[nl++].name, sizeof out[0].name, "%s", l[i].name);
            }
        }
    return nl;
}

/* The tensors of one layer on one backend. */
typedef struct {
    kiln_tensor x, w, b, y, dy, dx, dw;
} layer_tensors;

static void release(layer_tensors *t) {
    kiln_tensor *all[7] = {&t->x, &t->w, &t->b, &t->y, &t->dy, &t->dx, &t->dw};
    for (int i = 0; i < 7; i++) kiln_tensor_release(all[i]);
}

static int alloc_layer(kiln_backend_t be, const layer *l, const float *hx, const float *hw,
                       const float *hb, const float *hdy, layer_tensors *t) {
    memset(t, 0, sizeof *t);
    int64_t oh = kiln_conv2d_out_size(l->h, l->k, l->s, l->p, l->p, 1);
    int64_t ow = kiln_conv2d_out_size(l->w, l->k, l->s, l->p, l->p, 1);
    int64_t xs[4] = {l->n, l->c, l->h, l->w}, ws[4] = {l->o, l->c, l->k, l->k}, bs[1] = {l->o};
    int64_t ys[4] = {l->n, l->o, oh, ow};
    return !kiln_tensor_alloc(&t->x, be, KILN_F32, 4, xs) &&
           !kiln_tensor_alloc(&t->w, be, KILN_F32, 4, ws) &&
           !kiln_tensor_alloc(&t->b, be, KILN_F32, 1, bs) &&
           !kiln_tensor_alloc(&t->y, be, KILN_F32, 4, ys) &&
           !kiln_tensor_alloc(&t->dy, be, KILN_F32, 4, ys) &&
           !kiln_tensor_alloc(&t->dx, be, KILN_F32, 4, xs) &&
           !kiln_tensor_alloc(&t->dw, be, KILN_F32, 4, ws) &&
           !kiln_tensor_set(&t->x, hx, (size_t)kiln_tensor_nelements(&t->x) * 4) &&
           !kiln_tensor_set(&t->w, hw, (size_t)kiln_tensor_nelements(&t->w) * 4) &&
           !kiln_tensor_set(&t->b, hb, (size_t)l->o * 4) &&
           !kiln_tensor_set(&t->dy, hdy, (size_t)kiln_tensor_nelements(&t->dy) * 4);
}

static kiln_status run_pass(kiln_backend_t be, const kiln_conv2d_params *p, layer_tensors *t,
                            int pass) {
    switch (pass) {
    case PASS_FWD:
        return kiln_conv2d(be, p, &t->x, &t->w, &t->b, &t->y);
    case PASS_BWD_DATA:
        return kiln_conv2d_bwd_data(be, p, &t->dy, &t->w, &t->dx);
    default:
        return kiln_conv2d_bwd_filter(be, p, &t->x, &t->dy, &t->dw);
    }
}

static kiln_tensor *pass_output(layer_tensors *t, int pass) {
    return pass == PASS_FWD ? &t->y : pass == PASS_BWD_DATA ? &t->dx : &t->dw;
}

/* Median time of one pass; the output lands in host `out`. Returns 0 on failure. */
static int time_pass(kiln_backend_t be, const layer *l, layer_tensors *t, int pass, double min_ms,
                     float *out, row *r) {
    kiln_conv2d_params p = {l->s, l->s, l->p, l->p, l->p, l->p, 1, 1, 1};
    if (run_pass(be, &p, t, pass) || kiln_backend_synchronize(be)) return 0;
    double times[100];
    int reps = 0;
    double total = 0;
    while (reps < 100 && (reps < 3 || total < min_ms)) {
        double t0 = kiln_now_ms();
        if (run_pass(be, &p, t, pass) || kiln_backend_synchronize(be)) return 0;
        times[reps] = kiln_now_ms() - t0;
        total += times[reps++];
    }
    kiln_tensor *o = pass_output(t, pass);
    if (kiln_tensor_get(o, out, (size_t)kiln_tensor_nelements(o) * 4)) return 0;
    r->reps = reps;
    r->ms = kiln_median(times, reps);
    r->gflops = layer_flops(l) / (r->ms * 1e6);
    return 1;
}

/* max |a - ref| / max |ref| */
static double rel_err(const float *a, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        num = d > num || d != d ? d : num;
        den = fabs(ref[i]) > den ? fabs(ref[i]) : den;
    }
    return den > 0 ? num / den : num;
}

/* Runs the PyTorch peer; its rows ("row<TAB>op<TAB>shape<TAB>ms<TAB>ms_min<TAB>ms_max<TAB>
   runs<TAB>gflops<TAB>images/s") are matched to kiln's layers by shape string. Returns rows
   added. */
static int run_peer(const char *script, long min_ms, const layer *layers, int nl, row *rows) {
    static const char *const peer_ops[NPASS] = {"conv2d", "conv2d_bwd_data", "conv2d_bwd_filter"};
    char m[16];
    snprintf(m, sizeof m, "%ld", min_ms);
    char **argv = calloc((size_t)(2 * nl + 8), sizeof *argv);
    char(*shapes)[160] = calloc((size_t)nl + 1, sizeof *shapes);
    if (!argv || !shapes) {
        free(argv);
        free(shapes);
        return 0;
    }
    int a = 0;
    argv[a++] = "python3";
    argv[a++] = (char *)script;
    argv[a++] = "--rows";
    argv[a++] = "--min-ms";
    argv[a++] = m;
    for (int li = 0; li < nl; li++) {
        layer_shape(&layers[li], shapes[li], sizeof shapes[li]);
        argv[a++] = "--layer";
        argv[a++] = shapes[li];
    }
    int pid;
    FILE *f = kiln_spawn_read(argv, &pid);
    free(argv);
    if (!f) {
        fprintf(stderr, "kiln bench conv: cannot run python3 %s\n", script);
        free(shapes);
        return 0;
    }
    int added = 0;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "row\t", 4)) {
            fputs(line, stdout); /* the peer's notes (e.g. torch missing) */
            continue;
        }
        char *save = NULL, *op = strtok_r(line + 4, "\t", &save);
        char *shape = strtok_r(NULL, "\t", &save), *ms = strtok_r(NULL, "\t", &save);
        strtok_r(NULL, "\t", &save); /* ms_min */
        strtok_r(NULL, "\t", &save); /* ms_max */
        char *reps = strtok_r(NULL, "\t", &save), *gf = strtok_r(NULL, "\t\n", &save);
        if (!op || !shape || !ms || !reps || !gf) continue;
        for (int li = 0; li < nl; li++) {
            char s[160];
            layer_shape(&layers[li], s, sizeof s);
            if (strcmp(s, shape)) continue;
            for (int pi = 0; pi < NPASS; pi++)
                if (!strcmp(op, peer_ops[pi])) {
                    row *r = &rows[added++];
                    memset(r, 0, sizeof *r);
                    r->layer = li;
                    r->pass = pi;
                    snprintf(r->backend, sizeof r->backend, "torch-cpu");
                    snprintf(r->device, sizeof r->device, "host");
                    r->ms = atof(ms);
                    r->gflops = atof(gf);
                    r->reps = atoi(reps);
                    r->err = NAN;
                }
            break;
        }
    }
    kiln_spawn_wait(f, pid);
    free(shapes);
    return added;
}

static void usage(FILE *f) {
    fprintf(f, "usage: kiln bench conv [--quick] [--sizes LIST] [--nets LIST] [--batch N] "
               "[--backends LIST] [--json FILE] [--min-ms MS] [--peer [SCRIPT]]\n"
               "  --quick     input 32 only (about a quarter of the full run)\n"
               "  --sizes     input sizes, default 32,64\n"
               "  --nets      alexnet, vgg16n (narrow VGG16: 32-64-96-128-128); default both\n"
               "  --batch     default 32\n"
               "  --backends  comma list of cpu, opencl, clblast, auto; default all (cpu is "
               "the reference)\n"
               "  --json      write the results as a JSON array\n"
               "  --min-ms    time each pass for at least this long (default 100; >= 3 runs)\n"
               "  --peer      also time PyTorch on the CPU with 2 threads, each pass 10x as "
               "long as --min-ms\n"
               "              (its times spread more than kiln's; default script "
               "perf/peer_torch.py)\n"
               "The OpenCL device is KILN_DEVICE's choice (kiln devices).\n");
}

int kiln_bench_conv(int argc, char **argv, const char *self) {
    (void)self;
    const char *json = NULL, *backends = "cpu,opencl,clblast,auto", *sizes = "32,64";
    const char *nets_arg = "alexnet,vgg16n", *peer = NULL;
    long min_ms = 100, batch = 32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--quick")) {
            sizes = "32";
        } else if (!strcmp(a, "--sizes") && v) {
            sizes = argv[++i];
        } else if (!strcmp(a, "--nets") && v) {
            nets_arg = argv[++i];
        } else if (!strcmp(a, "--json") && v) {
            json = argv[++i];
        } else if (!strcmp(a, "--backends") && v) {
            backends = argv[++i];
        } else if (!strcmp(a, "--min-ms") && v && kiln_parse_count(v, &min_ms)) {
            i++;
        } else if (!strcmp(a, "--batch") && v && kiln_parse_count(v, &batch)) {
            i++;
        } else if (!strcmp(a, "--peer")) {
            peer = v && v[0] != '-' ? argv[++i] : "perf/peer_torch.py";
        } else {
            fprintf(stderr, "kiln bench conv: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    int nets[NNET] = {0}, inputs[8], ninputs = 0;
    for (int i = 0; i < NNET; i++) nets[i] = kiln_in_list(nets_arg, net_names[i]);
    for (const char *p = sizes; *p && ninputs < 8;) {
        char *end;
        long s = strtol(p, &end, 10);
        if (end == p || s < 8 || s > 1024 || (*end && *end != ',')) {
            fprintf(stderr, "kiln bench conv: bad --sizes '%s' (8..1024)\n", sizes);
            return 2;
        }
        inputs[ninputs++] = (int)s;
        p = *end ? end + 1 : end;
    }
    if (!nets[0] && !nets[1]) {
        fprintf(stderr, "kiln bench conv: --nets must name alexnet and/or vgg16n\n");
        return 2;
    }
    if (!kiln_in_list(backends, "cpu")) {
        fprintf(stderr, "kiln bench conv: the cpu backend is the reference; keep it in "
                        "--backends\n");
        return 2;
    }
    layer layers[64];
    int nl = build_layers(layers, 64, nets, inputs, ninputs, (int)batch);

    enum { NBE = 4 };
    static const char *const names[NBE] = {"cpu", "opencl", "clblast", "auto"};
    kiln_backend_t bes[NBE] = {0};
    for (int i = 0; i < NBE; i++) {
        if (!kiln_in_list(backends, names[i])) continue;
        if (kiln_backend_init(names[i], NULL, &bes[i])) {
            fprintf(stderr, "kiln bench conv: skipping %s: %s\n", names[i], kiln_last_error());
            bes[i] = NULL;
        }
    }
    if (!bes[0]) return 1;
    const kiln_device_info *dev = NULL;
    for (int i = 1; i < NBE && !dev; i++)
        if (bes[i]) dev = kiln_backend_device(bes[i]);
    printf("kiln bench conv: batch %ld; OpenCL device: %s\n", batch, dev ? dev->name : "none");
    printf("median of >= 3 runs (at least %ld ms per pass) after one warm-up; err = max abs "
           "difference / max abs of the cpu result\n\n",
           min_ms);
    printf("%-52s %-9s %-10s %9s %8s %9s\n", "layer", "backend", "pass", "ms", "GFLOP/s", "err");

    row *rows = calloc((size_t)nl * NPASS * (NBE + 1), sizeof *rows);
    int nrows = 0, failed = !rows;
    for (int li = 0; li < nl && rows; li++) {
        const layer *l = &layers[li];
        int64_t oh = kiln_conv2d_out_size(l->h, l->k, l->s, l->p, l->p, 1);
        int64_t ow = kiln_conv2d_out_size(l->w, l->k, l->s, l->p, l->p, 1);
        size_t nx = (size_t)l->n * l->c * l->h * l->w, nw = (size_t)l->o * l->c * l->k * l->k;
        size_t ny = (size_t)(l->n * l->o * oh * ow), nmax = nx > ny ? nx : ny;
        nmax = nmax > nw ? nmax : nw;
        float *hx = malloc(nx * 4), *hw = malloc(nw * 4), *hb = malloc((size_t)l->o * 4);
        float *hdy = malloc(ny * 4), *out = malloc(nmax * 4);
        float *ref[NPASS] = {malloc(ny * 4), malloc(nx * 4), malloc(nw * 4)};
        size_t nout[NPASS] = {ny, nx, nw};
        char shape[160];
        layer_shape(l, shape, sizeof shape);
        if (!hx || !hw || !hb || !hdy || !out || !ref[0] || !ref[1] || !ref[2]) {
            fprintf(stderr, "kiln bench conv: out of host memory for %s\n", shape);
            failed = 1;
        } else {
            kiln_fill_uniform(hx, nx, 1);
            kiln_fill_uniform(hw, nw, 2);
            kiln_fill_uniform(hb, (size_t)l->o, 3);
            kiln_fill_uniform(hdy, ny, 4);
            for (int bi = 0; bi < NBE; bi++) {
                if (!bes[bi]) continue;
                /* OpenBLAS threads spin after a call; let them sleep before PoCL's run. */
                usleep(50000);
                layer_tensors t;
                int ok = alloc_layer(bes[bi], l, hx, hw, hb, hdy, &t);
                for (int pi = 0; pi < NPASS && ok; pi++) {
                    row *r = &rows[nrows];
                    memset(r, 0, sizeof *r);
                    r->layer = li;
                    r->pass = pi;
                    snprintf(r->backend, sizeof r->backend, "%s", names[bi]);
                    snprintf(r->device, sizeof r->device, "%s", kiln_backend_device(bes[bi])->name);
                    if (!time_pass(bes[bi], l, &t, pi, (double)min_ms, bi ? out : ref[pi], r)) {
                        ok = 0;
                        break;
                    }
                    r->err = bi ? rel_err(out, ref[pi], nout[pi]) : 0;
                    int bad = !(r->err <= 1e-4);
                    failed |= bad;
                    printf("%-52s %-9s %-10s %9.3f %8.1f %9.2e%s\n", shape, r->backend,
                           pass_names[pi], r->ms, r->gflops, r->err, bad ? "  MISMATCH" : "");
                    fflush(stdout);
                    nrows++;
                }
                if (!ok) {
                    fprintf(stderr, "kiln bench conv: %s on %s: %s\n", shape, names[bi],
                            kiln_last_error());
                    failed = 1;
                }
                release(&t);
            }
        }
        free(hx);
        free(hw);
        free(hb);
        free(hdy);
        free(out);
        for (int pi = 0; pi < NPASS; pi++) free(ref[pi]);
    }
    if (peer && rows) nrows += run_peer(peer, 10 * min_ms, layers, nl, rows + nrows);

    /* Totals per network and input, per backend: fwd + bwd_data + bwd_filter. */
    printf("\ntotals (ms, fwd + bwd_data + bwd_filter; ratio = backend / cpu)\n");
    enum { NALL = NBE + 1 };
    static const char *const all[NALL] = {"cpu", "opencl", "clblast", "auto", "torch-cpu"};
    for (int ni = 0; ni < NNET; ni++)
        for (int ii = 0; ii < ninputs; ii++) {
            if (!nets[ni]) continue;
            double tot[NALL] = {0}, pass_tot[NALL][NPASS] = {{0}};
            for (int i = 0; i < nrows; i++) {
                const layer *l = &layers[rows[i].layer];
                if (l->net != ni || l->input != inputs[ii]) continue;
                for (int b = 0; b < NALL; b++)
                    if (!strcmp(rows[i].backend, all[b])) {
                        tot[b] += rows[i].ms;
                        pass_tot[b][rows[i].pass] += rows[i].ms;
                    }
            }
            for (int b = 0; b < NALL; b++)
                if (tot[b] > 0)
                    printf("  %s@%-4d %-9s %9.1f ms (fwd %8.1f, bwd_data %8.1f, bwd_filter "
                           "%8.1f)  ratio %.2f\n",
                           net_names[ni], inputs[ii], all[b], tot[b], pass_tot[b][0],
                           pass_tot[b][1], pass_tot[b][2], tot[0] > 0 ? tot[b] / tot[0] : 0);
            if (tot[3] > 0 && tot[4] > 0)
                printf("  %s@%-4d auto / torch-cpu speed: %.2f (torch ms / auto ms; goal >= "
                       "1.2)\n",
                       net_names[ni], inputs[ii], tot[4] / tot[3]);
        }

    if (json && rows) {
        FILE *f = fopen(json, "w");
        if (!f) {
            fprintf(stderr, "kiln bench conv: cannot write %s\n", json);
            failed = 1;
        } else {
            fprintf(f, "[\n");
            for (int i = 0; i < nrows; i++) {
                const row *r = &rows[i];
                char shape[160];
                layer_shape(&layers[r->layer], shape, sizeof shape);
                fprintf(f, "  {\"op\": \"conv2d\", \"backend\": ");
                kiln_json_string(f, r->backend);
                fprintf(f, ", \"device\": ");
                kiln_json_string(f, r->device);
                fprintf(f, ", \"shape\": ");
                kiln_json_string(f, shape);
                fprintf(f, ", \"pass\": \"%s\", \"ms\": %.4f, \"gflops\": %.2f, \"reps\": %d",
                        pass_names[r->pass], r->ms, r->gflops, r->reps);
                if (r->err == r->err) fprintf(f, ", \"max_rel_err\": %.3e", r->err);
                fprintf(f, "}%s\n", i + 1 < nrows ? "," : "");
            }
            fprintf(f, "]\n");
            fclose(f);
            printf("wrote %s\n", json);
        }
    }
    for (int i = 0; i < NBE; i++) kiln_backend_free(bes[i]);
    free(rows);
    return failed ? 1 : 0;
}
