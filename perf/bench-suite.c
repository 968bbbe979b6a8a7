/* `kiln bench` (or `kiln bench all`): the whole suite on every OpenCL device (or those
   KILN_DEVICE selects) and every backend on it (opencl, clblast, auto), plus the cpu backend:
   the peak-FLOPs probe, the GEMM sweep, the conv and pooling layers of AlexNet, VGG16 and the
   narrow VGG16, the fused uint8 -> float conversion (all shapes from perf/bench-cases.h, the
   list the op test harness registers too), full training steps of alexnet and vgg16-narrow,
   the time to the first training step in a new process, and the data pipeline. Peers run in
   the same process tree: OpenBLAS (the cpu backend's GEMM), PyTorch CPU with 2 threads
   (perf/peer_torch.py) and PIL (perf/peer_pil.py through `kiln data bench --peer`). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench-cases.h"
#include "bench-util.h"
#include "bench.h"
#include "kiln/kiln.h"

#define MAX_BACKENDS 32

typedef struct {
    char name[16]; /* cpu, opencl, clblast, auto */
    kiln_backend_t be;
    int device; /* index into the report's devices; -1: host */
} bench_backend;

typedef struct {
    kiln_bench_report *r;
    bench_backend b[MAX_BACKENDS];
    int nb;
    int dev_index[KILN_BENCH_MAX_DEVICES]; /* the OpenCL index of each report device */
    double host_peak;                      /* the cores' peak, when a CPU device measured it */
    double min_ms;
    int quick, peers, failed;
    char src[4096]; /* source tree, for the peer scripts ("" unknown) */
    const char *self;
} suite;

/* ---- op cases: one node, its inputs, timed on every backend, checked against cpu ---- */

#define MAX_IN 3
/* --quick: a case (or a training step) whose warm-up takes longer is timed once. */
#define QUICK_ONCE_MS 1000.0

typedef struct {
    kiln_op op;
    unsigned char params[64];
    int nin;
    kiln_dtype dt[MAX_IN];
    int nd[MAX_IN];
    int64_t shape[MAX_IN][4];
    int out_nd;
    int64_t out_shape[4];
    double flops;
    char desc[160];
} op_case;

typedef struct {
    kiln_backend_t be;
    kiln_tensor *out;
} compute_arg;

static int compute_once(void *arg) {
    compute_arg *a = arg;
    return kiln_compute(a->be, a->out) || kiln_backend_synchronize(a->be);
}

static int64_t numel(const int64_t *s, int nd) {
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= s[i];
    return n;
}

/* Runs c on be: inputs filled from fixed seeds, the output read into `host` (f32). */
static int run_case(suite *s, const op_case *c, kiln_backend_t be, float *host, kiln_timing *tm) {
    kiln_tensor in[MAX_IN], out;
    memset(in, 0, sizeof in);
    memset(&out, 0, sizeof out);
    kiln_status st = KILN_OK;
    for (int i = 0; i < c->nin && !st; i++) {
        size_t n = (size_t)numel(c->shape[i], c->nd[i]);
        float *h = malloc(n * sizeof *h);
        if (!h) return 0;
        kiln_fill_uniform(h, n, (uint64_t)(i + 1));
        if (c->dt[i] == KILN_U8) {
            uint8_t *u = (uint8_t *)h; /* in place: byte i is written after float i is read */
            for (size_t j = 0; j < n; j++) u[j] = (uint8_t)(127.5f * (h[j] + 1.0f));
        }
        st = kiln_tensor_alloc(&in[i], be, c->dt[i], c->nd[i], c->shape[i]);
        if (!st) st = kiln_tensor_set(&in[i], h, n * kiln_dtype_size(c->dt[i]));
        free(h);
    }
    if (!st) st = kiln_tensor_alloc(&out, be, KILN_F32, c->out_nd, c->out_shape);
    int ok = 0;
    if (!st) {
        out.op = c->op;
        for (int i = 0; i < c->nin; i++) out.src[i] = &in[i];
        memcpy(out.op_params, c->params, sizeof c->params);
        compute_arg a = {be, &out};
        ok = kiln_time_runs(compute_once, &a, 1, 3, s->min_ms, 100, s->quick ? QUICK_ONCE_MS : 0,
                            tm) == 0 &&
             kiln_tensor_get(&out, host, (size_t)numel(c->out_shape, c->out_nd) * 4) == KILN_OK;
    }
    if (!ok)
        fprintf(stderr, "kiln bench: %s %s on %s: %s\n", kiln_op_name(c->op), c->desc,
                kiln_backend_name(be), kiln_last_error());
    for (int i = 0; i < c->nin; i++) kiln_tensor_release(&in[i]);
    kiln_tensor_release(&out);
    return ok;
}

/* max |a - ref| / max |ref| (NaN anywhere: infinite) */
static double rel_err(const float *a, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (d != d) return INFINITY;
        num = d > num ? d : num;
        den = fabs(ref[i]) > den ? fabs(ref[i]) : den;
    }
    return den > 0 ? num / den : num;
}

static double peak_of(const suite *s, const bench_backend *b) {
    return b->device < 0 ? s->host_peak : s->r->devices[b->device].peak_gflops;
}

static void fill_row(const suite *s, const bench_backend *b, kiln_bench_row *row, const char *op,
                     const char *shape) {
    const kiln_device_info *d = kiln_backend_device(b->be);
    snprintf(row->device, sizeof row->device, "%s", b->device < 0 ? "host" : d->name);
    snprintf(row->driver, sizeof row->driver, "%s", b->device < 0 ? "" : d->driver_version);
    snprintf(row->backend, sizeof row->backend, "%s", b->name);
    snprintf(row->op, sizeof row->op, "%s", op);
    snprintf(row->shape, sizeof row->shape, "%s", shape);
}

/* Times one case on every backend (cpu first: its output is the reference). */
static void bench_case(suite *s, const op_case *c) {
    size_t n = (size_t)numel(c->out_shape, c->out_nd);
    float *ref = malloc(n * 4), *out = malloc(n * 4);
    int have_ref = 0;
    for (int i = 0; i < s->nb && ref && out; i++) {
        bench_backend *b = &s->b[i];
        usleep(20000); /* OpenBLAS threads spin after a call; let them sleep first */
        kiln_timing tm;
        if (!run_case(s, c, b->be, i == 0 ? ref : out, &tm)) {
            s->failed = 1;
            continue;
        }
        kiln_bench_row *row = kiln_bench_add(s->r);
        if (!row) break;
        fill_row(s, b, row, kiln_op_name(c->op), c->desc);
        row->ms = tm.ms;
        row->ms_min = tm.ms_min;
        row->ms_max = tm.ms_max;
        row->reps = tm.reps;
        row->gflops = c->flops > 0 ? c->flops / (tm.ms * 1e6) : 0;
        double pk = peak_of(s, b);
        row->of_peak = pk > 0 ? row->gflops / pk : 0;
        if (i == 0) {
            have_ref = 1;
        } else if (have_ref) {
            row->err = rel_err(out, ref, n);
            row->pass = row->err <= 1e-4;
            s->failed |= !row->pass;
        }
        kiln_bench_print_row(row);
    }
    free(ref);
    free(out);
}

static void gemm_cases(suite *s) {
    int m[3];
    printf("\n== GEMM (C = A B; the cpu backend is OpenBLAS sgemm, the peer) ==\n");
    for (int i = 0; kiln_bench_gemm_shape(i, m); i++) {
        if (s->quick && m[0] * (double)m[1] * m[2] > 600e6) continue;
        op_case c = {.op = KILN_OP_GEMM, .nin = 2, .out_nd = 2};
        kiln_gemm_params p = {0, 0, 1.0f, 0.0f};
        memcpy(c.params, &p, sizeof p);
        c.dt[0] = c.dt[1] = KILN_F32;
        c.nd[0] = c.nd[1] = 2;
        c.shape[0][0] = m[0], c.shape[0][1] = m[2];
        c.shape[1][0] = m[2], c.shape[1][1] = m[1];
        c.out_shape[0] = m[0], c.out_shape[1] = m[1];
        c.flops = 2.0 * m[0] * m[1] * m[2];
        snprintf(c.desc, sizeof c.desc, "%dx%dx%d", m[0], m[1], m[2]);
        bench_case(s, &c);
    }
}

/* Which networks, at which input, at which batch: the larger layers at a small batch so the
   whole run stays within minutes on a CPU device (CLBlast's convolutions are the slow part). */
typedef struct {
    int net, input, batch;
} net_config;

static int net_configs(const suite *s, net_config *out) {
    static const net_config full[] = {
        {KILN_BENCH_ALEXNET, 32, 32}, {KILN_BENCH_ALEXNET, 64, 32}, {KILN_BENCH_ALEXNET, 224, 4},
        {KILN_BENCH_VGG16N, 32, 32},  {KILN_BENCH_VGG16N, 64, 16},  {KILN_BENCH_VGG16N, 224, 1},
        {KILN_BENCH_VGG16, 32, 8},    {KILN_BENCH_VGG16, 64, 2},    {KILN_BENCH_VGG16, 224, 1}};
    static const net_config quick[] = {{KILN_BENCH_ALEXNET, 64, 32}, {KILN_BENCH_VGG16N, 32, 32}};
    int n = s->quick ? 2 : 9;
    memcpy(out, s->quick ? quick : full, sizeof(net_config) * (size_t)n);
    return n;
}

static int conv_out(int h, int k, int st, int p) {
    return (h + 2 * p - k) / st + 1;
}

/* "vgg16n@32 b1c1 n=32 c=3 h=32 w=32 o=32 k=3 s=1 p=1": perf/peer_torch.py parses this. */
static void conv_desc(const kiln_bench_layer *l, int batch, char *out, size_t n) {
    snprintf(out, n, "%s@%d %s n=%d c=%d h=%d w=%d o=%d k=%d s=%d p=%d",
             kiln_bench_net_name(l->net), l->input, l->name, batch, l->c, l->h, l->w, l->o, l->k,
             l->s, l->p);
}

/* fwd (with bias), bwd_data and bwd_filter of one convolution layer at batch N */
static void conv_layer(suite *s, const kiln_bench_layer *L, int N, char ***peer_shapes,
                       int *npeer) {
    int oh = conv_out(L->h, L->k, L->s, L->p), ow = conv_out(L->w, L->k, L->s, L->p);
    kiln_conv2d_params p = {L->s, L->s, L->p, L->p, L->p, L->p, 1, 1, 1};
    const int64_t xs[4] = {N, L->c, L->h, L->w}, ws[4] = {L->o, L->c, L->k, L->k};
    const int64_t ys[4] = {N, L->o, oh, ow}, bs[4] = {L->o};
    double flops = 2.0 * N * L->o * (double)oh * ow * L->c * L->k * L->k;
    char desc[160];
    conv_desc(L, N, desc, sizeof desc);
    char **grown = realloc(*peer_shapes, sizeof(char *) * (size_t)(*npeer + 1));
    if (grown) {
        *peer_shapes = grown;
        grown[*npeer] = strdup(desc);
        *npeer += grown[*npeer] != NULL;
    }
    /* fwd: x, w, bias -> y; bwd_data: dy, w -> dx; bwd_filter: x, dy -> dw */
    const kiln_op ops[3] = {KILN_OP_CONV2D, KILN_OP_CONV2D_BWD_DATA, KILN_OP_CONV2D_BWD_FILTER};
    const int64_t *srcs[3][3] = {{xs, ws, bs}, {ys, ws, NULL}, {xs, ys, NULL}};
    const int64_t *outs[3] = {ys, xs, ws};
    for (int pi = 0; pi < 3; pi++) {
        op_case c = {.op = ops[pi], .nin = pi ? 2 : 3, .out_nd = 4, .flops = flops};
        memcpy(c.params, &p, sizeof p);
        for (int i = 0; i < c.nin; i++) {
            c.dt[i] = KILN_F32;
            c.nd[i] = srcs[pi][i] == bs ? 1 : 4;
            memcpy(c.shape[i], srcs[pi][i], sizeof(int64_t) * 4);
        }
        memcpy(c.out_shape, outs[pi], sizeof c.out_shape);
        snprintf(c.desc, sizeof c.desc, "%s", desc);
        bench_case(s, &c);
    }
}

/* pool2d and pool2d_bwd of one max pooling layer at batch N */
static void pool_layer(suite *s, const kiln_bench_layer *L, int N) {
    int oh = kiln_bench_pool_out(L->h, L->pool_k, L->pool_s);
    int ow = kiln_bench_pool_out(L->w, L->pool_k, L->pool_s);
    kiln_pool2d_params p = {.type = KILN_POOL_MAX,
                            .kernel_h = L->pool_k,
                            .kernel_w = L->pool_k,
                            .stride_h = L->pool_s,
                            .stride_w = L->pool_s,
                            .ceil_mode = 1};
    const int64_t xs[4] = {N, L->c, L->h, L->w}, ys[4] = {N, L->c, oh, ow};
    for (int bwd = 0; bwd < 2; bwd++) {
        op_case c = {.op = bwd ? KILN_OP_POOL2D_BWD : KILN_OP_POOL2D, .nin = 1 + bwd};
        memcpy(c.params, &p, sizeof p);
        c.dt[0] = c.dt[1] = KILN_F32;
        c.nd[0] = c.nd[1] = c.out_nd = 4;
        memcpy(c.shape[0], bwd ? ys : xs, sizeof xs);
        memcpy(c.shape[1], xs, sizeof xs);
        memcpy(c.out_shape, bwd ? xs : ys, sizeof xs);
        snprintf(c.desc, sizeof c.desc, "%s@%d %s n=%d c=%d h=%d w=%d k=%d s=%d",
                 kiln_bench_net_name(L->net), L->input, L->name, N, L->c, L->h, L->w, L->pool_k,
                 L->pool_s);
        bench_case(s, &c);
    }
}

/* Every conv (pools = 0) or pooling (pools = 1) layer of the configured networks. */
static void layer_cases(suite *s, int pools, char ***peer_shapes, int *npeer) {
    net_config cfg[16];
    int ncfg = net_configs(s, cfg);
    printf(pools ? "\n== max pooling layers (ceil mode): pool2d, pool2d_bwd ==\n"
                 : "\n== convolution layers: fwd (conv2d, with bias), bwd_data, bwd_filter ==\n");
    for (int ci = 0; ci < ncfg; ci++) {
        kiln_bench_layer l[32];
        int nl = kiln_bench_net_layers(cfg[ci].net, cfg[ci].input, l, 32);
        for (int li = 0; li < nl; li++) {
            if (pools && l[li].pool_k) pool_layer(s, &l[li], cfg[ci].batch);
            if (!pools && l[li].k) conv_layer(s, &l[li], cfg[ci].batch, peer_shapes, npeer);
        }
    }
}

static void convert_cases(suite *s) {
    printf("\n== u8_to_f32: uint8 NHWC batch -> float NCHW, fused mean/std normalize ==\n");
    int b[4];
    for (int i = 0; kiln_bench_convert_shape(i, b); i++) {
        if (s->quick && b[1] > 64) continue;
        op_case c = {.op = KILN_OP_U8_TO_F32, .nin = 1, .out_nd = 4};
        kiln_convert_params p;
        static const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
        memset(&p, 0, sizeof p);
        for (int k = 0; k < 3; k++) {
            p.scale[k] = 1.0f / (255.0f * sd[k]);
            p.bias[k] = -mean[k] / sd[k];
        }
        memcpy(c.params, &p, sizeof p);
        c.dt[0] = KILN_U8;
        c.nd[0] = 4;
        for (int k = 0; k < 4; k++) c.shape[0][k] = b[k];
        const int64_t os[4] = {b[0], b[3], b[1], b[2]};
        memcpy(c.out_shape, os, sizeof os);
        snprintf(c.desc, sizeof c.desc, "n=%d h=%d w=%d c=%d mean/std", b[0], b[1], b[2], b[3]);
        bench_case(s, &c);
    }
}

/* ---- peers ---- */

static int have_script(const suite *s, const char *name, char *path, size_t n) {
    snprintf(path, n, "%s/perf/%s", s->src[0] ? s->src : ".", name);
    return access(path, R_OK) == 0;
}

/* Reads "row<TAB>op<TAB>shape<TAB>ms<TAB>ms_min<TAB>ms_max<TAB>reps<TAB>gflops<TAB>images_per_s"
   lines from peer_torch.py; everything else it prints is a note, shown as is. */
static void read_torch_rows(suite *s, char **argv) {
    int pid;
    FILE *f = kiln_spawn_read(argv, &pid);
    if (!f) {
        kiln_bench_note(s->r, "PyTorch peer skipped: cannot run %s", argv[0]);
        return;
    }
    char line[1024];
    int rows = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "row\t", 4)) {
            line[strcspn(line, "\n")] = '\0';
            if (line[0]) kiln_bench_note(s->r, "%s", line);
            continue;
        }
        char *fields[8] = {0};
        char *save = NULL, *p = line + 4;
        for (int i = 0; i < 8; i++, p = NULL) fields[i] = strtok_r(p, "\t\n", &save);
        if (!fields[7]) continue;
        kiln_bench_row *row = kiln_bench_add(s->r);
        if (!row) break;
        snprintf(row->device, sizeof row->device, "host");
        snprintf(row->backend, sizeof row->backend, "torch-cpu");
        snprintf(row->op, sizeof row->op, "%s", fields[0]);
        snprintf(row->shape, sizeof row->shape, "%s", fields[1]);
        row->ms = atof(fields[2]);
        row->ms_min = atof(fields[3]);
        row->ms_max = atof(fields[4]);
        row->reps = atoi(fields[5]);
        row->gflops = atof(fields[6]);
        row->of_peak = s->host_peak > 0 ? row->gflops / s->host_peak : 0;
        row->images_per_s = atof(fields[7]);
        kiln_bench_print_row(row);
        rows++;
    }
    if (kiln_spawn_wait(f, pid) != 0 && !rows)
        kiln_bench_note(s->r, "PyTorch peer failed (python3 %s)", argv[1]);
}

static void torch_conv_peer(suite *s, char **shapes, int n) {
    char script[4200], ms[32];
    if (!have_script(s, "peer_torch.py", script, sizeof script)) {
        kiln_bench_note(s->r, "PyTorch peer skipped: perf/peer_torch.py not found");
        return;
    }
    char **argv = calloc((size_t)(2 * n + 8), sizeof *argv);
    if (!argv) return;
    int a = 0;
    /* 10x kiln's time per pass, for the reason the training steps give (train_steps) */
    snprintf(ms, sizeof ms, "%g", s->min_ms * 10);
    argv[a++] = "python3";
    argv[a++] = script;
    argv[a++] = "--rows";
    argv[a++] = "--min-ms";
    argv[a++] = ms;
    for (int i = 0; i < n; i++) {
        argv[a++] = "--layer";
        argv[a++] = shapes[i];
    }
    printf("\n== PyTorch CPU (2 threads): the same convolution layers ==\n");
    read_torch_rows(s, argv);
    free(argv);
}

/* ---- training steps ---- */

typedef struct {
    const char *model;
    int input, batch;
} train_config;

static const train_config train_configs[] = {{"alexnet", 64, 32}, {"vgg16-narrow", 32, 64}};

static void train_steps(suite *s) {
    char script[4200];
    int torch = s->peers && have_script(s, "peer_torch.py", script, sizeof script);
    if (s->peers && !torch)
        kiln_bench_note(s->r, "PyTorch peer skipped: perf/peer_torch.py not found");
    printf("\n== training steps (forward + backward + SGD update, 10 classes, u8 input) ==\n");
    /* kiln's steps are timed for 10x an op case's time. PyTorch's for 10x that again: its two
       threads fill a 2-core machine, and single steps took 2-3x the median whenever anything
       else ran (spreads of 50-190% over 5 runs, against 2-12% for kiln); the median of more
       runs keeps those out. */
    double kiln_ms = s->quick ? 0 : s->min_ms * 10, torch_ms = kiln_ms * 10;
    for (size_t m = 0; m < sizeof train_configs / sizeof train_configs[0]; m++) {
        const train_config *t = &train_configs[m];
        double ref = -1;
        for (int i = 0; i < s->nb; i++) {
            double first = -1;
            usleep(20000);
            if (!kiln_bench_train(s->r, s->b[i].be, s->b[i].name, t->model, t->input, t->batch,
                                  kiln_ms, s->quick ? QUICK_ONCE_MS : 0, i ? ref : -1, &first)) {
                s->failed = 1;
                continue;
            }
            if (i == 0) ref = first;
            kiln_bench_row *row = &s->r->rows[s->r->nrows - 1];
            double pk = peak_of(s, &s->b[i]);
            row->of_peak = pk > 0 ? row->gflops / pk : 0;
            if (row->pass == 0) s->failed = 1;
            kiln_bench_print_row(row);
        }
        if (torch) {
            char in[16], b[16], ms[32];
            snprintf(in, sizeof in, "%d", t->input);
            snprintf(b, sizeof b, "%d", t->batch);
            snprintf(ms, sizeof ms, "%g", torch_ms);
            char *argv[] = {"python3", script, "--rows",  "--train", (char *)t->model,
                            "--input", in,     "--batch", b,         "--min-ms",
                            ms,        NULL};
            read_torch_rows(s, argv);
        }
    }
}

/* ---- data pipeline: `kiln data gen` + `kiln data bench`, each run a child process ---- */

static void data_pipeline(suite *s) {
    printf("\n== data pipeline: JPEG decode + rrc:224,flip:h into uint8 batches ==\n");
    char dir[] = "/tmp/kiln-bench-data-XXXXXX";
    if (!mkdtemp(dir)) {
        kiln_bench_note(s->r, "data pipeline skipped: cannot create a temporary directory");
        return;
    }
    const char *count = s->quick ? "128" : "384";
    char *gen[] = {(char *)s->self, "data",        "gen",       "--out", dir,
                   "--count",       (char *)count, "--classes", "4",     "--gen-size",
                   "500x375",       "--quality",   "90",        NULL};
    int pid;
    FILE *f = kiln_spawn_read(gen, &pid);
    if (!f || kiln_spawn_wait(f, pid) != 0) {
        kiln_bench_note(s->r, "data pipeline skipped: kiln data gen failed");
        kiln_remove_tree(dir);
        return;
    }
    char script[4200];
    int pil = s->peers && have_script(s, "peer_pil.py", script, sizeof script);
    enum { RUNS = 3 };
    double rate[3][RUNS]; /* 1 worker, 2 workers, PIL */
    int n[3] = {0};
    for (int run = 0; run < RUNS; run++) {
        char *argv[16] = {
            (char *)s->self,  "data",      "bench", "--data",   dir,           "--augment",
            "rrc:224,flip:h", "--workers", "1,2",   "--images", (char *)count, NULL};
        if (pil) {
            argv[11] = "--peer";
            argv[12] = "--peer-script";
            argv[13] = script;
        }
        if (!(f = kiln_spawn_read(argv, &pid))) break;
        char line[1024];
        while (fgets(line, sizeof line, f)) {
            int w;
            double v;
            const char *k;
            if (sscanf(line, "workers %d: %lf images/s", &w, &v) == 2 && (w == 1 || w == 2))
                rate[w - 1][n[w - 1]++] = v;
            else if ((k = strstr(line, "images/s:")) && n[2] < RUNS)
                rate[2][n[2]++] = atof(k + 9);
        }
        if (kiln_spawn_wait(f, pid) != 0)
            kiln_bench_note(s->r, "kiln data bench failed (run %d)", run + 1);
    }
    kiln_remove_tree(dir);
    if (s->peers && !pil) kiln_bench_note(s->r, "PIL peer skipped: perf/peer_pil.py not found");
    static const char *const what[3] = {"1 worker", "2 workers", "PIL, 1 core"};
    for (int k = 0; k < 3; k++) {
        if (!n[k]) continue;
        kiln_bench_row *row = kiln_bench_add(s->r);
        if (!row) return;
        snprintf(row->device, sizeof row->device, "host");
        snprintf(row->backend, sizeof row->backend, "%s", k == 2 ? "pil" : "kiln-data");
        snprintf(row->op, sizeof row->op, "data_pipeline");
        snprintf(row->shape, sizeof row->shape, "%s JPEGs 500x375 q90 -> rrc:224,flip:h, %s", count,
                 what[k]);
        row->images_per_s = kiln_median(rate[k], n[k]);
        row->ms = 1e3 / row->images_per_s; /* per image */
        row->ms_min = 1e3 / rate[k][n[k] - 1];
        row->ms_max = 1e3 / rate[k][0];
        row->reps = n[k];
        kiln_bench_print_row(row);
    }
}

/* ---- setup ---- */

static void report_meta(suite *s) {
    kiln_bench_report *r = s->r;
    snprintf(r->version, sizeof r->version, "%s", KILN_VERSION_STRING);
    snprintf(r->mode, sizeof r->mode, "%s", s->quick ? "quick" : "default");
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(r->date, sizeof r->date, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    if (gethostname(r->host, sizeof r->host)) snprintf(r->host, sizeof r->host, "unknown");
    snprintf(r->commit, sizeof r->commit, "unknown");
    if (!s->src[0]) return;
    char *argv[] = {"git", "-C", s->src, "rev-parse", "--short=12", "HEAD", NULL};
    int pid;
    FILE *f = kiln_spawn_read(argv, &pid);
    char line[40] = ""; /* a 12-digit hash; leaves room for the suffix in r->commit */
    if (f && fgets(line, sizeof line, f)) line[strcspn(line, "\n")] = '\0';
    if (f && kiln_spawn_wait(f, pid) == 0 && line[0]) {
        char *diff[] = {"git", "-C", s->src, "diff", "--quiet", "HEAD", NULL};
        FILE *d = kiln_spawn_read(diff, &pid);
        int dirty = d && kiln_spawn_wait(d, pid) == 1;
        snprintf(r->commit, sizeof r->commit, "%s%s", line, dirty ? "+local-changes" : "");
    }
}

/* cpu, then opencl / clblast / auto on every selected device, each device's peak measured. */
static int start_backends(suite *s, const char *which) {
    kiln_bench_report *r = s->r;
    if (kiln_backend_init("cpu", NULL, &s->b[0].be)) {
        fprintf(stderr, "kiln bench: cannot start the cpu backend: %s\n", kiln_last_error());
        return 0;
    }
    snprintf(s->b[0].name, sizeof s->b[0].name, "cpu");
    s->b[0].device = -1;
    s->nb = 1;
    kiln_device_info *devs = NULL;
    int ndev = 0;
    kiln_devices_list(&devs, &ndev);
    const char *dspec = getenv("KILN_DEVICE");
    kiln_selection sel;
    int selected = dspec && *dspec && kiln_select("opencl", NULL, &sel) == KILN_OK;
    if (dspec && *dspec && !selected) {
        fprintf(stderr, "kiln bench: KILN_DEVICE: %s\n", kiln_last_error());
        free(devs);
        return 0;
    }
    static const char *const names[3] = {"opencl", "clblast", "auto"};
    for (int d = 0; d < ndev && r->ndevices < KILN_BENCH_MAX_DEVICES; d++) {
        if (selected && sel.device_index != d) continue;
        char idx[16];
        snprintf(idx, sizeof idx, "%d", d);
        int dev = r->ndevices, first = s->nb;
        for (int k = 0; k < 3 && s->nb < MAX_BACKENDS; k++) {
            if (!kiln_in_list(which, names[k])) continue;
            bench_backend *b = &s->b[s->nb];
            if (kiln_backend_init(names[k], idx, &b->be)) {
                kiln_bench_note(r, "skipping %s on %s: %s", names[k], devs[d].name,
                                kiln_last_error());
                continue;
            }
            snprintf(b->name, sizeof b->name, "%s", names[k]);
            b->device = dev;
            s->nb++;
        }
        if (s->nb == first) continue;
        kiln_bench_device *rd = &r->devices[r->ndevices++];
        snprintf(rd->name, sizeof rd->name, "%s", devs[d].name);
        snprintf(rd->driver, sizeof rd->driver, "%s", devs[d].driver_version);
        snprintf(rd->platform, sizeof rd->platform, "%s", devs[d].platform);
        s->dev_index[dev] = d;
        if (kiln_bench_peak(s->b[first].be, &rd->peak_gflops))
            kiln_bench_note(r, "peak probe failed on %s: %s", rd->name, kiln_last_error());
        printf("device %d: %s (%s, driver %s): measured peak %.1f GFLOP/s\n", d, rd->name,
               rd->platform, rd->driver, rd->peak_gflops);
        if (devs[d].type == KILN_DEVICE_CPU && s->host_peak == 0) s->host_peak = rd->peak_gflops;
    }
    free(devs);
    if (!r->ndevices) kiln_bench_note(r, "no OpenCL device: only the cpu backend runs");
    if (s->host_peak > 0)
        kiln_bench_note(r,
                        "host rows (cpu backend, PyTorch) use the peak of the CPU OpenCL "
                        "device, measured on the same cores: %.1f GFLOP/s",
                        s->host_peak);
    return 1;
}

/* ---- summary: the goals, as ratios within this run ---- */

static const kiln_bench_row *find_row(const kiln_bench_report *r, const char *backend,
                                      const char *op, const char *shape_prefix, int device) {
    for (int i = 0; i < r->nrows; i++) {
        const kiln_bench_row *w = &r->rows[i];
        if (strcmp(w->backend, backend) || strcmp(w->op, op) ||
            strncmp(w->shape, shape_prefix, strlen(shape_prefix)))
            continue;
        if (device >= 0 && strcmp(w->device, r->devices[device].name)) continue;
        return w;
    }
    return NULL;
}

/* The conv layer sets: fwd + bwd_data + bwd_filter summed over one network's layers at one
   input and batch, auto on device d against PyTorch, where both timed the same passes. */
static void conv_set_ratios(const suite *s, int d) {
    const kiln_bench_report *r = s->r;
    net_config cfg[16];
    int ncfg = net_configs(s, cfg);
    for (int ci = 0; ci < ncfg; ci++) {
        char prefix[48], batch[24];
        snprintf(prefix, sizeof prefix, "%s@%d ", kiln_bench_net_name(cfg[ci].net), cfg[ci].input);
        snprintf(batch, sizeof batch, " n=%d ", cfg[ci].batch);
        double ms[2] = {0, 0};
        int n[2] = {0, 0};
        for (int i = 0; i < r->nrows; i++) {
            const kiln_bench_row *w = &r->rows[i];
            if (strncmp(w->op, "conv2d", 6) || strncmp(w->shape, prefix, strlen(prefix)) ||
                !strstr(w->shape, batch))
                continue;
            int k = !strcmp(w->backend, "auto") && !strcmp(w->device, r->devices[d].name) ? 0
                    : !strcmp(w->backend, "torch-cpu")                                    ? 1
                                                                                          : -1;
            if (k < 0) continue;
            ms[k] += w->ms;
            n[k]++;
        }
        if (n[0] && n[0] == n[1])
            printf("conv layers %sb%d (%d passes): auto %.1f ms, torch %.1f ms; auto / torch: "
                   "%.2f (goal >= 1.2)\n",
                   prefix, cfg[ci].batch, n[0], ms[0], ms[1], ms[1] / ms[0]);
    }
}

static void summary(const suite *s) {
    const kiln_bench_report *r = s->r;
    printf("\n== summary (ratios within this run) ==\n");
    const kiln_bench_row *blas = find_row(r, "cpu", "gemm", "1024x1024x1024", -1);
    for (int d = 0; d < r->ndevices; d++) {
        const kiln_bench_row *g = find_row(r, "opencl", "gemm", "1024x1024x1024", d);
        if (blas && g)
            printf("GEMM 1024, opencl on %s / OpenBLAS: %.2f (goal >= 0.8)\n", r->devices[d].name,
                   g->gflops / blas->gflops);
        conv_set_ratios(s, d);
        for (size_t m = 0; m < sizeof train_configs / sizeof train_configs[0]; m++) {
            char shape[64];
            snprintf(shape, sizeof shape, "%s %dx%dx3 b%d", train_configs[m].model,
                     train_configs[m].input, train_configs[m].input, train_configs[m].batch);
            const kiln_bench_row *torch = find_row(r, "torch-cpu", "train_step", shape, -1);
            const kiln_bench_row *cpu = find_row(r, "cpu", "train_step", shape, -1);
            const kiln_bench_row *a = find_row(r, "auto", "train_step", shape, d);
            double best = 0; /* of the implementations auto chooses from */
            const char *best_name = "";
            static const char *const singles[2] = {"opencl", "clblast"};
            for (int k = 0; k < 2; k++) {
                const kiln_bench_row *w = find_row(r, singles[k], "train_step", shape, d);
                if (w && w->images_per_s > best) best = w->images_per_s, best_name = singles[k];
            }
            if (!cpu && !a && !torch) continue;
            printf("training step %s:", shape);
            static const char *const all[4] = {"cpu", "opencl", "clblast", "auto"};
            for (int k = 0; k < 4; k++) {
                const kiln_bench_row *w = find_row(r, all[k], "train_step", shape, k ? d : -1);
                if (w) printf(" %s %.1f", all[k], w->images_per_s);
            }
            if (torch) printf(", torch %.1f images/s", torch->images_per_s);
            printf("\n");
            if (torch && a)
                printf("  auto / torch: %.2f (goal >= 1.3)\n",
                       a->images_per_s / torch->images_per_s);
            if (a && best > 0)
                printf("  auto / best single backend (%s): %.3f (goal >= 0.95)\n", best_name,
                       a->images_per_s / best);
        }
    }
    const kiln_bench_row *warm = NULL;
    for (int i = 0; i < r->nrows; i++)
        if (!strcmp(r->rows[i].op, "first_train_step") && strstr(r->rows[i].shape, "warm"))
            warm = &r->rows[i];
    if (warm)
        printf("first training step in a new process, warm cache: %.0f ms (goal < 1000)\n",
               warm->ms);
    const kiln_bench_row *k1 = NULL, *pil = NULL;
    for (int i = 0; i < r->nrows; i++) {
        if (!strcmp(r->rows[i].op, "data_pipeline") && strstr(r->rows[i].shape, "1 worker"))
            k1 = &r->rows[i];
        if (!strcmp(r->rows[i].op, "data_pipeline") && !strcmp(r->rows[i].backend, "pil"))
            pil = &r->rows[i];
    }
    if (k1 && pil)
        printf("data pipeline, 1 worker / PIL: %.2f\n", k1->images_per_s / pil->images_per_s);
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: kiln bench [all] [--quick] [--json FILE] [--html FILE] [--only LIST]\n"
            "                  [--backends LIST] [--min-ms MS] [--no-peers]\n"
            "       kiln bench --compare OLD.json NEW.json [--threshold F]\n"
            "       kiln bench gemm|conv|peak [options]   (kiln bench gemm --help)\n"
            "  The whole suite on every OpenCL device (KILN_DEVICE: only that one) and every\n"
            "  backend (opencl, clblast, auto) plus the cpu backend: peak probe, GEMM, conv and\n"
            "  pooling layers, u8_to_f32, training steps, first step in a new process, data\n"
            "  pipeline; PyTorch (2 threads) and PIL peers when installed.\n"
            "  --quick     the training-step configurations only (alexnet@64, vgg16n@32), short;\n"
            "              a case whose warm-up takes over a second is timed once\n"
            "  --only      comma list of gemm, conv, pool, convert, train, first-step, data\n"
            "  --backends  comma list of opencl, clblast, auto (cpu always runs: the reference)\n"
            "  --min-ms    time each op case for at least MS (default 30, quick 10; at least 3\n"
            "              runs after a warm-up; training steps 10x, at least 5 runs;\n"
            "              PyTorch's passes and steps 10x kiln's)\n"
            "  --json, --html   results.json / a self-contained report.html with SVG charts\n"
            "  --compare   ratios new/old per case; exits 1 when one is slower than the\n"
            "              threshold (default 0.10) or no longer passes its check\n");
}

int kiln_bench_suite(int argc, char **argv, const char *self) {
    kiln_bench_report rep;
    memset(&rep, 0, sizeof rep);
    suite s;
    memset(&s, 0, sizeof s);
    s.r = &rep;
    s.self = self;
    s.peers = 1;
    s.min_ms = -1;
    const char *json = NULL, *html = NULL, *only = "gemm,conv,pool,convert,train,first-step,data";
    const char *backends = "opencl,clblast,auto";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long ms;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "all") && i == 1) {
            continue;
        } else if (!strcmp(a, "--quick")) {
            s.quick = 1;
        } else if (!strcmp(a, "--no-peers")) {
            s.peers = 0;
        } else if (!strcmp(a, "--json") && v) {
            json = argv[++i];
        } else if (!strcmp(a, "--html") && v) {
            html = argv[++i];
        } else if (!strcmp(a, "--only") && v) {
            only = argv[++i];
        } else if (!strcmp(a, "--backends") && v) {
            backends = argv[++i];
        } else if (!strcmp(a, "--min-ms") && v && kiln_parse_count(v, &ms)) {
            s.min_ms = (double)ms;
            i++;
        } else {
            fprintf(stderr, "kiln bench: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (s.min_ms < 0) s.min_ms = s.quick ? 10 : 30;
    kiln_source_dir(s.src, sizeof s.src);
    report_meta(&s);
    printf("kiln bench: kiln %s, commit %s, %s, %s run; every figure is the median of the "
           "stated runs after a warm-up\n",
           rep.version, rep.commit, rep.date, rep.mode);
    if (!start_backends(&s, backends)) return 1;
    if (kiln_in_list(only, "gemm")) gemm_cases(&s);
    char **peer_shapes = NULL;
    int npeer = 0;
    if (kiln_in_list(only, "conv")) layer_cases(&s, 0, &peer_shapes, &npeer);
    if (npeer && s.peers) torch_conv_peer(&s, peer_shapes, npeer);
    for (int i = 0; i < npeer; i++) free(peer_shapes[i]);
    free(peer_shapes);
    if (kiln_in_list(only, "pool")) layer_cases(&s, 1, NULL, NULL);
    if (kiln_in_list(only, "convert")) convert_cases(&s);
    if (kiln_in_list(only, "train")) train_steps(&s);
    /* in a child process, so this process's backends are given back first */
    for (int i = 0; i < s.nb; i++) kiln_backend_free(s.b[i].be);
    if (kiln_in_list(only, "first-step") && rep.ndevices) {
        printf("\n");
        if (!kiln_bench_first_step_rows(&rep, self, "vgg16-narrow", 32, 64, s.dev_index[0],
                                        rep.devices[0].name)) {
            kiln_bench_note(&rep, "time to first training step: the probe process failed");
            s.failed = 1;
        }
        for (int i = 0; i < rep.nrows; i++)
            if (!strcmp(rep.rows[i].op, "first_train_step")) kiln_bench_print_row(&rep.rows[i]);
    }
    if (kiln_in_list(only, "data")) data_pipeline(&s);
    summary(&s);
    if (json && kiln_bench_write_json(&rep, json)) printf("wrote %s\n", json);
    if (html && kiln_bench_write_html(&rep, html)) printf("wrote %s\n", html);
    int mismatches = 0;
    for (int i = 0; i < rep.nrows; i++) mismatches += rep.rows[i].pass == 0;
    if (mismatches)
        printf("%d results disagree with the cpu backend (MISMATCH above)\n", mismatches);
    kiln_bench_report_free(&rep);
    return s.failed || mismatches ? 1 : 0;
}
