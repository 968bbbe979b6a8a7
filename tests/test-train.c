/* The trainer end to end on a generated IDX dataset (bars, blobs and diagonals at random
   positions with noise): a small conv net with batch norm and dropout learns it on the cpu and
   opencl backends; the pipeline nodes become the augmentation spec; a resumed run equals an
   uninterrupted one bit for bit; a huge learning rate stops on NaN without touching the last
   good checkpoint; a loss stuck at chance prints the diagnostic; the first batch's input far
   from unit scale is flagged both ways; eval reloads the weights;
   report.html holds the plots, the summary and the final accuracy, escaped; grad-norms.csv
   matches the gradient recovered on the host from one plain SGD step, and a gradient that
   overflows is named by its parameter. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "kiln/checkpoint.h"
#include "kiln/kiln.h"
#include "kiln/model.h"
#include "kiln/train.h"
#include "patterns.h"

enum { S = 12, K = PATTERN_CLASSES, NTRAIN = 768, NTEST = 256 };

static const char *MODEL = PATTERN_MODEL;

static void be32(FILE *f, uint32_t v) {
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    fwrite(b, 1, 4, f);
}

static int write_idx_k(const char *dir, const char *prefix, int n, int k) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", dir, prefix);
    FILE *fi = fopen(path, "wb");
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", dir, prefix);
    FILE *fl = fopen(path, "wb");
    if (!fi || !fl) return -1;
    be32(fi, 0x803), be32(fi, (uint32_t)n), be32(fi, S), be32(fi, S);
    be32(fl, 0x801), be32(fl, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        unsigned char img[S * S], cls = (unsigned char)(i % k);
        pattern_draw(img, S, cls % K);
        fwrite(img, 1, sizeof img, fi);
        fputc(cls, fl);
    }
    fclose(fi);
    fclose(fl);
    return 0;
}

static int write_idx(const char *dir, const char *prefix, int n) {
    return write_idx_k(dir, prefix, n, K);
}

typedef struct run {
    kiln_model_t m;
    kiln_trainer_t t;
} run;

/* A two-layer perceptron: its gradients are easy to steer through the weights. */
static const char *DENSE = "image = input(shape=12x12x1, dtype=u8)\n"
                           "scaled = rescale(image, scale=1/255)\n"
                           "f = flatten(scaled)\n"
                           "h = dense(f, units=8)\n"
                           "logits = dense(h, units={classes}, init=glorot)\n"
                           "output(logits)\n";
enum { HID = 8 };
static const char *DENSE_NAMES[4] = {"h.weight", "h.bias", "logits.weight", "logits.bias"};
static const int64_t DENSE_SHAPES[4][2] = {{HID, S *S}, {HID, 0}, {K, HID}, {K, 0}};

static kiln_status start_model(run *r, kiln_backend_t be, const kiln_train_options *o,
                               const char *text, const char *name) {
    memset(r, 0, sizeof *r);
    kiln_status st = kiln_model_parse_string(text, name, &r->m);
    kiln_model_config cfg = {0, 0, 0, K, o->batch};
    if (!st) st = kiln_model_finalize(r->m, &cfg);
    if (!st) st = kiln_trainer_create(r->m, be, o, &r->t);
    return st;
}

static kiln_status start(run *r, kiln_backend_t be, const kiln_train_options *o) {
    return start_model(r, be, o, MODEL, "test.kiln");
}

static void stop(run *r) {
    kiln_trainer_free(r->t);
    kiln_model_free(r->m);
}

static void options(kiln_train_options *o) {
    kiln_train_options_init(o);
    o->batch = 32;
    o->epochs = 4;
    o->optimizer = KILN_OPTIM_ADAM;
    o->lr = 0.01f;
    o->workers = 2;
    o->seed = 7;
}

static char *params(run *r, size_t *n) {
    kiln_trainer_t t = r->t;
    /* Through a checkpoint: every parameter, the optimizer state and the position. */
    char path[] = "/tmp/kiln-test-train-pXXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return NULL;
    close(fd);
    char *h = NULL;
    if (!kiln_trainer_save(t, path)) {
        FILE *f = fopen(path, "rb");
        if (f) {
            fseek(f, 0, SEEK_END);
            long len = ftell(f);
            fseek(f, 0, SEEK_SET);
            h = malloc((size_t)len);
            if (h && fread(h, 1, (size_t)len, f) != (size_t)len) {
                free(h);
                h = NULL;
            }
            *n = (size_t)len;
            fclose(f);
        }
    }
    unlink(path);
    return h;
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    if (b && fread(b, 1, (size_t)len, f) != (size_t)len) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = (size_t)len;
    return b;
}

typedef struct messages {
    int chance, nan, stats, norms;
    char nan_text[2048];
    char stats_text[1024]; /* the first-batch line */
} messages;

static volatile sig_atomic_t interrupt_flag;

/* Plays the signal handler: raises the interrupt after the fifth step. */
static void interrupt_at_5(void *user, const kiln_train_progress *p) {
    (void)user;
    if (p->event == KILN_PROGRESS_STEP && p->global_step == 5) interrupt_flag = 1;
}

static void on_progress(void *user, const kiln_train_progress *p) {
    messages *m = user;
    if (p->event != KILN_PROGRESS_MESSAGE && p->event != KILN_PROGRESS_INFO) return;
    if (strstr(p->message, "chance level")) m->chance++;
    if (strstr(p->message, "non-finite")) {
        m->nan++;
        snprintf(m->nan_text, sizeof m->nan_text, "%s", p->message);
    }
    if (p->event == KILN_PROGRESS_INFO && strstr(p->message, "gradient norms at step")) m->norms++;
    if (strstr(p->message, "first batch")) {
        m->stats++;
        snprintf(m->stats_text, sizeof m->stats_text, "%s", p->message);
    }
}

static void learns(const char *backend, kiln_dataset_t tr, kiln_dataset_t te) {
    kiln_backend_t be;
    if (kiln_backend_init(backend, NULL, &be)) {
        printf("skipping %s: %s\n", backend, kiln_last_error());
        return;
    }
    kiln_train_options o;
    options(&o);
    messages msg = {0};
    o.progress = on_progress;
    o.user = &msg;
    run r;
    kiln_status st = start(&r, be, &o);
    CHECK(!st, "%s: trainer created", backend);
    kiln_fit_result res;
    if (!st) st = kiln_trainer_fit(r.t, tr, te, &res);
    CHECK(!st && res.stop == KILN_FIT_DONE && res.epochs_done == 4, "%s: fit runs", backend);
    CHECK(!st && res.has_val && res.val_acc >= 0.9,
          "%s: the net learns the patterns (test accuracy %.3f, train loss %.3f)", backend,
          st ? -1 : res.val_acc, st ? -1 : res.train_loss);
    CHECK(msg.stats == 1 && msg.chance == 0 && msg.nan == 0,
          "%s: input statistics once, no chance/NaN diagnostic (%d %d %d)", backend, msg.stats,
          msg.chance, msg.nan);
    CHECK(!strstr(msg.stats_text, "unit scale"), "%s: a 1/255 rescale is not flagged: %s", backend,
          msg.stats_text);
    printf("%s: test accuracy %.3f top-5 %.3f in %.2f s (%.0f img/s)\n", backend, res.val_acc,
           res.val_top5, res.seconds, res.img_per_s);
    if (!st) stop(&r);
    kiln_backend_free(be);
}

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++) n++;
    return n;
}

/* report.html after 2 epochs: plots with a point per epoch and series, the summary table, the
   final accuracy, and the model's file name escaped. */
static void report(kiln_backend_t be, kiln_dataset_t tr, kiln_dataset_t te, const char *dir) {
    char out[600], html[700];
    snprintf(out, sizeof out, "%s/report-run", dir);
    snprintf(html, sizeof html, "%s/report.html", out);
    kiln_train_options o;
    options(&o);
    o.epochs = 2;
    o.out_dir = out;
    o.command = "kiln train --model <m> & co";
    run r;
    kiln_fit_result res;
    kiln_status st = start_model(&r, be, &o, MODEL, "te<st>&\"q\".kiln");
    if (!st) st = kiln_trainer_fit(r.t, tr, te, &res);
    CHECK(!st && res.epochs_done == 2, "a 2-epoch run for the report");
    size_t n = 0;
    char *h = slurp(html, &n);
    CHECK(h != NULL, "fit writes %s", html);
    if (!st) stop(&r);
    if (!h) return;
    h[n] = '\0';
    char final[64];
    snprintf(final, sizeof final, "Final test accuracy: %.4f", res.val_acc);
    CHECK(!strncmp(h, "<!DOCTYPE html>", 15) && strstr(h, "</html>\n") == h + n - 8,
          "the report is one complete document");
    CHECK(count(h, "<svg") == 2 && count(h, "</svg>") == 2, "two SVG plots");
    CHECK(count(h, "<circle class=\"train\"") == 4 && count(h, "<circle class=\"val\"") == 4,
          "a point per epoch for train and validation in both plots (%d, %d)",
          count(h, "<circle class=\"train\""), count(h, "<circle class=\"val\""));
    CHECK(count(h, "<polyline") == 4 && strstr(h, ">validation</text>"), "lines and a legend");
    CHECK(strstr(h, final) != NULL, "the final accuracy '%s' is in the report", final);
    CHECK(strstr(h, "<td>c1</td><td>conv2d</td>") && strstr(h, "Total parameters"),
          "the model summary table");
    CHECK(strstr(h, "te&lt;st&gt;&amp;&quot;q&quot;.kiln") && !strstr(h, "te<st") &&
              !strstr(h, "<m>") && strstr(h, "kiln train --model &lt;m&gt; &amp; co"),
          "the model name and the command line are escaped");
    CHECK(strstr(h, "img/s") && strstr(h, "data wait") && strstr(h, "cpu"),
          "timing and the backend");
    free(h);
}

static size_t dense_count(int k) {
    return (size_t)(DENSE_SHAPES[k][0] * (DENSE_SHAPES[k][1] ? DENSE_SHAPES[k][1] : 1));
}

/* Host arrays of the DENSE model's parameters (dense_count(k) floats each, malloc'ed). */
static int dense_alloc(float *v[4]) {
    int ok = 1;
    for (int k = 0; k < 4; k++) ok &= (v[k] = malloc(dense_count(k) * sizeof(float))) != NULL;
    return ok;
}

/* The DENSE model's parameters between host arrays and a checkpoint (save or load). */
static int dense_ckpt(kiln_backend_t be, const char *path, float *const v[4], int save) {
    kiln_tensor t[4];
    kiln_ckpt_tensor list[4];
    int ok = 1;
    memset(t, 0, sizeof t);
    for (int k = 0; k < 4; k++) {
        ok = ok &&
             !kiln_tensor_alloc(&t[k], be, KILN_F32, DENSE_SHAPES[k][1] ? 2 : 1, DENSE_SHAPES[k]);
        ok = ok && (!save || !kiln_tensor_set(&t[k], v[k], dense_count(k) * sizeof(float)));
        list[k] = (kiln_ckpt_tensor){DENSE_NAMES[k], &t[k]};
    }
    const char *meta[] = {"format", "kiln-train-1", NULL};
    ok = ok &&
         !(save ? kiln_checkpoint_save(path, list, 4, meta) : kiln_checkpoint_load(path, list, 4));
    for (int k = 0; k < 4; k++) {
        ok = ok && (save || !kiln_tensor_get(&t[k], v[k], dense_count(k) * sizeof(float)));
        if (t[k].buffer) kiln_tensor_release(&t[k]);
    }
    return ok;
}

static double norm(const float *v, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)v[i] * v[i];
    return sqrt(s);
}

/* --log-grad-norms: one plain SGD step (w1 = w0 - lr g) gives the gradient on the host from
   the checkpoints before and after; grad-norms.csv must hold its norms. Then a gradient that
   overflows in one layer only is named when training stops. */
/* The first-batch check flags what reached the first layer far from unit scale, in both
   directions, with the observed min/max (the lint warns too; one step each). */
static void first_batch_scale(kiln_backend_t be, kiln_dataset_t tr) {
    static const char *models[2] = {
        "image = input(shape=12x12x1, dtype=u8)\ns1 = rescale(image, scale=1/255)\n"
        "s2 = rescale(s1, scale=1/255)\nf = flatten(s2)\nlogits = dense(f, units={classes})\n"
        "output(logits)\n",
        "image = input(shape=12x12x1, dtype=u8)\nn = normalize(image, mean=0.5, std=0.25)\n"
        "f = flatten(n)\nlogits = dense(f, units={classes})\noutput(logits)\n"};
    static const char *want[2] = {"far below unit scale (< 0.05)", "far above unit scale (> 20)"};
    for (int k = 0; k < 2; k++) {
        kiln_train_options o;
        options(&o);
        o.epochs = 1;
        o.max_steps = 1;
        messages msg = {0};
        o.progress = on_progress;
        o.user = &msg;
        run r;
        kiln_fit_result res;
        kiln_status st = start_model(&r, be, &o, models[k], "scale.kiln");
        int lint = !st && kiln_model_warning_count(r.m) == 1 &&
                   strstr(kiln_model_warning(r.m, 0), want[k]);
        if (!st) st = kiln_trainer_fit(r.t, tr, NULL, &res);
        if (!st) stop(&r);
        CHECK(!st && lint && msg.stats == 1 && strstr(msg.stats_text, want[k]) &&
                  strstr(msg.stats_text, "max |x| = "),
              "first batch of model %d: '%s' in the lint and in: %s", k, want[k], msg.stats_text);
        printf("%s\n", msg.stats_text);
    }
}

static void grad_norms(kiln_backend_t be, kiln_dataset_t tr, const char *dir) {
    char out[600], before[700], after[700], csv[700];
    snprintf(out, sizeof out, "%s/norms-run", dir);
    snprintf(before, sizeof before, "%s/before.safetensors", dir);
    snprintf(after, sizeof after, "%s/last.safetensors", out);
    snprintf(csv, sizeof csv, "%s/grad-norms.csv", out);
    kiln_train_options o;
    options(&o);
    o.optimizer = KILN_OPTIM_SGD;
    o.lr = 0.5f;
    o.momentum = 0;
    o.weight_decay = 0;
    o.epochs = 1;
    o.max_steps = 1;
    o.log_grad_norms = 1;
    o.out_dir = out;
    messages msg = {0};
    o.progress = on_progress;
    o.user = &msg;
    run r;
    kiln_fit_result res;
    kiln_status st = start_model(&r, be, &o, DENSE, "dense.kiln");
    if (!st) st = kiln_trainer_save(r.t, before);
    if (!st) st = kiln_trainer_fit(r.t, tr, NULL, &res);
    if (!st) stop(&r);
    CHECK(!st && res.global_step == 1 && msg.norms == 1, "one step, one gradient-norm summary");
    float *w0[4] = {0}, *w1[4] = {0};
    int ok = !st && dense_alloc(w0) && dense_alloc(w1) && dense_ckpt(be, before, w0, 0) &&
             dense_ckpt(be, after, w1, 0);
    CHECK(ok, "the checkpoints before and after the step read back");
    size_t n = 0;
    char *text = slurp(csv, &n);
    CHECK(text != NULL, "%s is written", csv);
    int rows = 0;
    for (char *line = text ? strchr(text, '\n') : NULL; ok && line && line[1]; rows++) {
        char name[64];
        long long step;
        double g, w, ratio;
        line++;
        int fields = sscanf(line, "%lld,%63[^,],%lf,%lf,%lf", &step, name, &g, &w, &ratio);
        if (fields < 4 || (fields == 4 && w != 0)) break;
        if (fields == 4) ratio = 0; /* zero weights (the biases at the start): no ratio */
        int k = 0;
        while (k < 4 && strcmp(name, DENSE_NAMES[k])) k++;
        if (k == 4) break;
        size_t cnt = dense_count(k);
        float *diff = malloc(cnt * sizeof *diff);
        for (size_t i = 0; diff && i < cnt; i++) diff[i] = (w0[k][i] - w1[k][i]) / o.lr;
        double hg = diff ? norm(diff, cnt) : -1, hw = norm(w0[k], cnt);
        free(diff);
        CHECK(step == 1 && isfinite(g) && g > 0 && fabs(g - hg) <= 1e-3 * hg,
              "%s: gradient norm %.6g, host %.6g", name, g, hg);
        CHECK(fabs(w - hw) <= 1e-5 * hw + 1e-12 && (w == 0 || fabs(ratio - g / w) <= 1e-4 * ratio),
              "%s: weight norm %.6g, host %.6g, ratio %.6g", name, w, hw, ratio);
        line = strchr(line, '\n');
    }
    CHECK(rows == 4, "a row per parameter (%d)", rows);
    free(text);
    /* Then: every first-layer weight 1e19, every output weight 1e-20, biases 0. */
    for (int k = 0; k < 4; k++)
        for (size_t i = 0; ok && i < dense_count(k); i++)
            w0[k][i] = k == 0 ? 1e19f : k == 2 ? 1e-20f : 0;

    /* Huge first-layer activations with tiny output weights: the loss stays finite (equal
       logits) while the output layer's gradient overflows; the message names it. */
    o.log_grad_norms = 0;
    o.out_dir = NULL;
    msg.nan = 0;
    st = ok && dense_ckpt(be, before, w0, 1) ? KILN_OK : KILN_IO;
    for (int k = 0; k < 4; k++) free(w0[k]), free(w1[k]);
    if (!st) st = start_model(&r, be, &o, DENSE, "dense.kiln");
    if (!st) st = kiln_trainer_load(r.t, before, 1);
    if (!st) st = kiln_trainer_fit(r.t, tr, NULL, &res);
    if (!st) stop(&r);
    CHECK(!st && res.stop == KILN_FIT_NAN && msg.nan == 1 &&
              strstr(msg.nan_text, "non-finite gradient") &&
              strstr(msg.nan_text, "at 'logits.weight' (1 of 4 parameters)"),
          "a non-finite gradient names its parameter: %s", msg.nan_text);
}

int main(void) {
    char dir[] = "/tmp/kiln-test-train-XXXXXX";
    if (!mkdtemp(dir) || write_idx(dir, "train", NTRAIN) || write_idx(dir, "t10k", NTEST)) {
        printf("cannot write the dataset\n0 passed, 1 failed\n");
        return 1;
    }
    char trp[600], tep[600], out[600], last[700];
    snprintf(trp, sizeof trp, "%s/train-images-idx3-ubyte", dir);
    snprintf(tep, sizeof tep, "%s/t10k-images-idx3-ubyte", dir);
    kiln_dataset_options dopt;
    kiln_dataset_t tr = NULL, te = NULL;
    kiln_dataset_options_init(&dopt);
    dopt.path = trp;
    kiln_status st = kiln_dataset_open(&dopt, &tr);
    dopt.path = tep;
    if (!st) st = kiln_dataset_open(&dopt, &te);
    CHECK(!st, "datasets open");
    if (st) return check_done();

    learns("cpu", tr, te);
    learns("opencl", tr, te);

    /* Validation labels past the model's outputs are refused before any step, naming the set. */
    {
        kiln_dataset_t wide = NULL;
        char wp[600];
        snprintf(wp, sizeof wp, "%s/wide-images-idx3-ubyte", dir);
        dopt.path = wp;
        kiln_status ws =
            write_idx_k(dir, "wide", 12, K + 2) ? KILN_IO : kiln_dataset_open(&dopt, &wide);
        kiln_train_options wo;
        options(&wo);
        run w;
        kiln_fit_result wr;
        kiln_backend_t wcpu = NULL;
        if (!ws) ws = kiln_backend_init("cpu", NULL, &wcpu);
        if (!ws) ws = start(&w, wcpu, &wo);
        kiln_status fs = ws ? ws : kiln_trainer_fit(w.t, tr, wide, &wr);
        CHECK(!ws && fs == KILN_SHAPE && strstr(kiln_last_error(), "validation data has 6 classes"),
              "validation labels beyond the model's outputs are refused: %s", kiln_last_error());
        if (!ws) stop(&w);
        if (wcpu) kiln_backend_free(wcpu);
        if (wide) kiln_dataset_free(wide);
    }

    kiln_backend_t cpu;
    if (kiln_backend_init("cpu", NULL, &cpu)) return check_done();
    report(cpu, tr, te, dir);
    grad_norms(cpu, tr, dir);
    first_batch_scale(cpu, tr);
    kiln_train_options o;
    options(&o);
    o.optimizer = KILN_OPTIM_SGD; /* momentum state and weight decay in the checkpoint */
    o.lr = 0.05f;
    o.schedule = KILN_SCHED_COSINE;
    o.warmup_steps = 5;
    run a, b, c;

    /* The pipeline nodes became the spec; eval keeps none of the random ones. */
    st = start(&a, cpu, &o);
    CHECK(!st && !strcmp(kiln_trainer_augment(a.t, 1), "padcrop:1") &&
              !strcmp(kiln_trainer_augment(a.t, 0), ""),
          "augmentation from the model: '%s' / '%s'", st ? "" : kiln_trainer_augment(a.t, 1),
          st ? "" : kiln_trainer_augment(a.t, 0));

    /* Resume: 30 steps straight equal 30 = 27 (crossing an epoch end) + 3 after a reload. */
    kiln_fit_result res;
    o.max_steps = 30;
    if (!st) stop(&a);
    st = start(&a, cpu, &o);
    if (!st) st = kiln_trainer_fit(a.t, tr, NULL, &res);
    CHECK(!st && res.stop == KILN_FIT_MAX_STEPS && res.global_step == 30, "uninterrupted run");
    snprintf(out, sizeof out, "%s/run", dir);
    snprintf(last, sizeof last, "%s/last.safetensors", out);
    o.out_dir = out;
    o.max_steps = 27;
    st = start(&b, cpu, &o);
    if (!st) st = kiln_trainer_fit(b.t, tr, NULL, &res);
    CHECK(!st && res.global_step == 27 && access(last, F_OK) == 0, "first half writes %s", last);
    o.max_steps = 30;
    if (!st) st = start(&c, cpu, &o);
    if (!st) st = kiln_trainer_load(c.t, last, 0);
    if (!st) st = kiln_trainer_fit(c.t, tr, NULL, &res);
    CHECK(!st && res.global_step == 30, "resumed run reaches step 30");
    size_t na = 0, nc = 0;
    char *pa = st ? NULL : params(&a, &na), *pc = st ? NULL : params(&c, &nc);
    CHECK(pa && pc && na == nc && !memcmp(pa, pc, na),
          "a resumed run's parameters and optimizer state equal an uninterrupted run's");
    free(pa);
    free(pc);

    /* eval: a fresh trainer given the weights only (c wrote the checkpoint last) evaluates
       exactly like c. */
    kiln_eval_result e1, e2;
    run d;
    st = kiln_trainer_evaluate(c.t, te, &e1);
    if (!st) st = start(&d, cpu, &o);
    if (!st) st = kiln_trainer_load(d.t, last, 1);
    if (!st) st = kiln_trainer_evaluate(d.t, te, &e2);
    CHECK(!st && e2.samples == NTEST && e1.acc == e2.acc && e1.loss == e2.loss,
          "a weights-only reload evaluates exactly like the trainer that saved it (%.4f)",
          st ? -1 : e2.acc);
    stop(&a);
    stop(&b);
    stop(&c);
    stop(&d);

    /* NaN: resume from the good checkpoint with a huge learning rate. */
    size_t n0 = 0, n1 = 0;
    char *before = slurp(last, &n0);
    messages msg = {0};
    o.lr = 1e30f;
    o.warmup_steps = 0;
    o.schedule = KILN_SCHED_CONSTANT;
    o.max_steps = 0;
    o.progress = on_progress;
    o.user = &msg;
    st = start(&a, cpu, &o);
    if (!st) st = kiln_trainer_load(a.t, last, 0);
    if (!st) st = kiln_trainer_fit(a.t, tr, te, &res);
    char *after = slurp(last, &n1);
    CHECK(!st && res.stop == KILN_FIT_NAN && msg.nan == 1, "a huge learning rate stops on NaN");
    CHECK(before && after && n0 == n1 && !memcmp(before, after, n0),
          "the last good checkpoint is left as it was");
    free(before);
    free(after);
    if (!st) stop(&a);

    /* Chance level: a learning rate too small to move, checked every 10 steps; one diagnostic
       for the whole stretch at chance (checks at 10, 20 and 30). */
    kiln_train_options_init(&o);
    o.batch = 32;
    o.epochs = 2;
    o.lr = 1e-9f;
    o.chance_steps = 10;
    o.max_steps = 32;
    o.progress = on_progress;
    o.user = &msg;
    msg.chance = 0;
    st = start(&a, cpu, &o);
    if (!st) st = kiln_trainer_fit(a.t, tr, NULL, &res);
    CHECK(!st && msg.chance == 1, "a loss stuck at chance prints the diagnostic once (%d)",
          msg.chance);
    if (!st) stop(&a);
    /* The same inside a warmup (35 steps): nothing is judged before it ends. */
    o.warmup_steps = 35;
    msg.chance = 0;
    st = start(&a, cpu, &o);
    if (!st) st = kiln_trainer_fit(a.t, tr, NULL, &res);
    CHECK(!st && msg.chance == 0, "no chance-level diagnostic during the warmup (%d)", msg.chance);
    if (!st) stop(&a);

    /* Interrupt (SIGINT/SIGTERM in kiln train): the step finishes and a checkpoint is written. */
    kiln_train_options_init(&o);
    o.batch = 32;
    o.epochs = 1;
    o.out_dir = out;
    o.interrupt = &interrupt_flag;
    o.progress = interrupt_at_5;
    unlink(last);
    st = start(&a, cpu, &o);
    if (!st) st = kiln_trainer_fit(a.t, tr, NULL, &res);
    char *gs = NULL;
    if (!st) {
        stop(&a);
        st = kiln_checkpoint_metadata(last, "global_step", &gs);
    }
    CHECK(!st && res.stop == KILN_FIT_INTERRUPTED && res.global_step == 5 && gs && !strcmp(gs, "5"),
          "an interrupt finishes the step and checkpoints the position (%s)", gs ? gs : "none");
    free(gs);

    kiln_backend_free(cpu);
    kiln_dataset_free(tr);
    kiln_dataset_free(te);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) printf("could not remove %s\n", dir);
    return check_done();
}
