/* The trainer: optimizer steps over the lowered training graph, the learning-rate schedule,
   evaluation on the eval graph, checkpoints, and the diagnostics (input statistics of the
   first batch, loss stuck at chance level, non-finite loss or gradients). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../runtime/backend-impl.h"
#include "../runtime/data/data-impl.h"
#include "kiln/checkpoint.h"
#include "model-impl.h"
#include "train-impl.h"

#define CHANCE_AVG   50 /* losses averaged by the chance-level check */
#define CHANCE_RATIO 0.9

/* A diagnostic (KILN_PROGRESS_MESSAGE, else kiln_log warn) or an informational line
   (KILN_PROGRESS_INFO, else kiln_log info). */
static void notify(struct kiln_trainer *t, kiln_progress_event ev, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void notify(struct kiln_trainer *t, kiln_progress_event ev, const char *fmt, ...) {
    char buf[2048];
    va_list ap;
    if (kiln_dist_rank(t->o.dist)) return; /* rank 0 speaks for the job */
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (!t->o.progress) {
        kiln_log(ev == KILN_PROGRESS_INFO ? KILN_LOG_INFO : KILN_LOG_WARN, "%s", buf);
        return;
    }
    kiln_train_progress p;
    memset(&p, 0, sizeof p);
    p.event = ev;
    p.message = buf;
    t->o.progress(t->o.user, &p);
}
#define message(t, ...) notify(t, KILN_PROGRESS_MESSAGE, __VA_ARGS__)

static kiln_status oom(void) {
    return kiln_error(KILN_OUT_OF_MEMORY, "trainer: out of host memory");
}

/* Flat optimizer state with the parameter buffer's layout, zeroed, and each parameter's view. */
static kiln_status alloc_state(struct kiln_trainer *t) {
    kiln_tensor *flat = kiln_graph_params_flat(t->tg.g);
    int64_t n = kiln_tensor_nelements(flat);
    int two = t->o.optimizer != KILN_OPTIM_SGD;
    float *zero = calloc((size_t)n, sizeof *zero);
    if (!zero) return oom();
    int64_t one = 1;
    kiln_status st = kiln_tensor_alloc(&t->grad_sq, t->be, KILN_F32, 1, &one);
    if (!st) st = kiln_tensor_alloc(&t->opt_a, t->be, KILN_F32, 1, &n);
    if (!st) st = kiln_tensor_set(&t->opt_a, zero, (size_t)n * sizeof *zero);
    if (!st && two) st = kiln_tensor_alloc(&t->opt_b, t->be, KILN_F32, 1, &n);
    if (!st && two) st = kiln_tensor_set(&t->opt_b, zero, (size_t)n * sizeof *zero);
    free(zero);
    for (int k = 0; k < t->nparams && !st; k++) {
        kt_param *p = &t->params[k];
        size_t off = p->train->offset - flat->offset;
        kiln_tensor *a = two ? &p->m : &p->velocity;
        st = kiln_tensor_view(a, &t->opt_a, p->train->ndim, p->train->shape, NULL, off);
        if (!st && two)
            st = kiln_tensor_view(&p->v, &t->opt_b, p->train->ndim, p->train->shape, NULL, off);
    }
    return st;
}

kiln_status kiln_trainer_create(kiln_model_t m, kiln_backend_t be, const kiln_train_options *o,
                                kiln_trainer_t *out) {
    *out = NULL;
    kiln_model_totals tot;
    kiln_status st = kiln_model_get_totals(m, &tot);
    if (st) return st;
    if (o->batch < 1 || o->epochs < 0 || o->lr < 0 || !(o->label_smoothing >= 0) ||
        o->label_smoothing >= 1)
        return kiln_error(KILN_INVALID_ARGUMENT,
                          "trainer: batch %d, epochs %d, lr %g, label smoothing %g out of range",
                          o->batch, o->epochs, (double)o->lr, (double)o->label_smoothing);
    int world = kiln_dist_size(o->dist);
    if (o->batch % world)
        return kiln_error(KILN_INVALID_ARGUMENT,
                          "trainer: --batch %d (the global batch) does not split evenly over %d "
                          "ranks",
                          o->batch, world);
    kiln_model_config cfg = {tot.input_h, tot.input_w, tot.input_c, tot.classes, o->batch / world};
    if ((st = kiln_model_finalize(m, &cfg))) return st;
    struct kiln_trainer *t = calloc(1, sizeof *t);
    if (!t) return oom();
    t->o = *o;
    int adam = o->optimizer != KILN_OPTIM_SGD;
    if (t->o.lr == 0) t->o.lr = adam ? 1e-3f : 0.01f;
    if (t->o.weight_decay < 0)
        t->o.weight_decay = o->optimizer == KILN_OPTIM_ADAMW ? 0.01f : adam ? 0.0f : 5e-4f;
    if (t->o.step_epochs <= 0) t->o.step_epochs = o->epochs >= 3 ? o->epochs / 3 : 1;
    if (t->o.chance_steps == 0) t->o.chance_steps = 200;
    t->model = m;
    t->be = be;
    t->batch = o->batch / world; /* this rank's share of every step */
    t->classes = tot.classes;
    t->best_val_acc = -1;
    const char *fault = getenv("KILN_FAULT_NAN_STEP");
    t->fault_nan_step = fault ? strtoll(fault, NULL, 10) : 0;
    if (!(st = kt_augment_specs(t)) && !(st = kt_lower(t)) && !(st = kt_init_params(t)))
        st = alloc_state(t);
    if (!st) st = kt_dist_setup(t);
    if (st) {
        kiln_trainer_free(t);
        return st;
    }
    *out = t;
    return KILN_OK;
}

void kiln_trainer_free(kiln_trainer_t t) {
    if (!t) return;
    kiln_graph_free(t->tg.g);
    kiln_graph_free(t->eg.g);
    if (t->opt_a.buffer) kiln_tensor_release(&t->opt_a);
    if (t->opt_b.buffer) kiln_tensor_release(&t->opt_b);
    if (t->grad_sq.buffer) kiln_tensor_release(&t->grad_sq);
    if (t->norms.buffer) kiln_tensor_release(&t->norms);
    kt_dist_free(t);
    free(t->class_names);
    free(t->class_list);
    free(t->params);
    free(t->bns);
    free(t->augment_train);
    free(t->augment_eval);
    free(t);
}

const char *kiln_trainer_augment(kiln_trainer_t t, int training) {
    return training ? t->augment_train : t->augment_eval;
}

/* ---- learning rate ---- */

static double lr_at(const struct kiln_trainer *t, int64_t step, int64_t steps_per_epoch) {
    const kiln_train_options *o = &t->o;
    double lr = o->lr;
    /* Over the epochs, not max_steps: stopping early must not change the schedule, so a run
       cut at max_steps and resumed equals an uninterrupted one. */
    int64_t total = (int64_t)o->epochs * steps_per_epoch;
    if (o->warmup_steps > 0 && step < o->warmup_steps)
        return lr * (double)(step + 1) / (double)o->warmup_steps;
    if (o->schedule == KILN_SCHED_STEP)
        return lr * pow(o->step_gamma, (double)(step / steps_per_epoch / o->step_epochs));
    if (o->schedule == KILN_SCHED_COSINE) {
        double span = (double)(total - o->warmup_steps);
        double f = span > 0 ? (double)(step - o->warmup_steps) / span : 1;
        return 0.5 * lr * (1 + cos(M_PI * (f > 1 ? 1 : f)));
    }
    return lr;
}

/* ---- loaders ---- */

/* The spec preceded by a stretch to the model's input size, for specs that fix no size
   applied to images of another size (Fashion-MNIST into a 64x64 AlexNet). */
static kiln_status stretched_spec(const struct kiln_trainer *t, const char *spec, char *out,
                                  size_t n) {
    if (strlen(spec) + 40 > n)
        return kiln_error(KILN_INVALID_ARGUMENT, "trainer: augmentation spec too long");
    snprintf(out, n, "size:%dx%d%s%s", t->in_w, t->in_h, *spec ? "," : "", spec);
    return KILN_OK;
}

static kiln_status size_mismatch(const struct kiln_trainer *t, const char *spec, int h, int w,
                                 int c) {
    return kiln_error(KILN_SHAPE,
                      "trainer: the data pipeline produces %dx%dx%d images (augment '%s') but the "
                      "model's input is %dx%dx%d: set the model's input size (--input) or add a "
                      "resize to the augmentation",
                      h, w, c, spec, t->in_h, t->in_w, t->in_c);
}

/* Whether a spec fixes the output size (a bad spec counts as fixed: the loader names it). */
static int fixes_size(const char *spec) {
    kiln_augment_t a;
    int w = 0, h = 0;
    if (kiln_augment_parse(spec, &a)) return 1;
    kiln_augment_output_size(a, &w, &h);
    kiln_augment_free(a);
    return w || h;
}

/* A loader producing the model's input size: when the spec fixes no size and the images
   differ (Fashion-MNIST into a 64x64 AlexNet; JPEGs, whose sizes vary), a resize to the
   model's size goes first. */
static kiln_status make_loader(struct kiln_trainer *t, kiln_dataset_t ds, int training,
                               kiln_loader_t *out) {
    const char *spec = training ? t->augment_train : t->augment_eval;
    char fixed[1300];
    kiln_loader_options lo;
    kiln_loader_options_init(&lo);
    lo.dataset = ds;
    lo.batch = t->batch;
    lo.workers = t->o.workers;
    lo.channels = t->in_c;
    lo.seed = t->o.seed;
    lo.shuffle = training;
    lo.drop_last = training;
    lo.rank = kiln_dist_rank(t->o.dist);
    lo.world_size = kiln_dist_size(t->o.dist);
    kiln_status st = KILN_OK;
    if (strcmp(kiln_dataset_kind(ds), "idx") && !fixes_size(spec)) {
        if ((st = stretched_spec(t, spec, fixed, sizeof fixed))) return st;
        spec = fixed;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        lo.augment = spec;
        if ((st = kiln_loader_create(&lo, out))) return st;
        int h, w, c;
        kiln_loader_output_shape(*out, &h, &w, &c);
        if (h == t->in_h && w == t->in_w && c == t->in_c) return KILN_OK;
        kiln_loader_free(*out);
        *out = NULL;
        if (attempt || fixes_size(spec)) return size_mismatch(t, spec, h, w, c);
        if ((st = stretched_spec(t, spec, fixed, sizeof fixed))) return st;
        spec = fixed;
    }
    return KILN_INTERNAL;
}

/* Uploads a batch, zero-padding a short one (its padding rows are not counted). */
static kiln_status upload(kt_graph *kg, const kiln_batch *b, uint8_t *pad, int32_t *pad_labels) {
    int64_t N = kg->labels->shape[0];
    size_t per = (size_t)(kg->images->shape[1] * kg->images->shape[2] * kg->images->shape[3]);
    const uint8_t *img = b->images;
    const int32_t *lab = b->labels;
    if (b->n < N) {
        memcpy(pad, b->images, per * (size_t)b->n);
        memset(pad + per * (size_t)b->n, 0, per * (size_t)(N - b->n));
        memcpy(pad_labels, b->labels, sizeof(int32_t) * (size_t)b->n);
        memset(pad_labels + b->n, 0, sizeof(int32_t) * (size_t)(N - b->n));
        img = pad;
        lab = pad_labels;
    }
    kiln_status st = kiln_tensor_set(kg->images, img, per * (size_t)N);
    if (!st) st = kiln_tensor_set(kg->labels, lab, sizeof(int32_t) * (size_t)N);
    return st;
}

static kiln_status read_sum(const kiln_tensor *t, float *host, int n, double *sum) {
    kiln_status st = kiln_tensor_get(t, host, sizeof(float) * (size_t)t->shape[0]);
    *sum = 0;
    for (int i = 0; i < n; i++) *sum += host[i];
    return st;
}

/* ---- evaluation ---- */

/* Labels past the model's outputs would index outside the logits: refused up front, naming
   the set, rather than surfacing as a NaN loss. */
static kiln_status check_classes(struct kiln_trainer *t, kiln_dataset_t ds, const char *which) {
    int n = kiln_dataset_num_classes(ds);
    if (n <= t->classes) return KILN_OK;
    return kiln_error(KILN_SHAPE,
                      "trainer: the %s data has %d classes (labels up to %d) but the model has %d "
                      "outputs",
                      which, n, n - 1, t->classes);
}

kiln_status kiln_trainer_evaluate(kiln_trainer_t t, kiln_dataset_t ds, kiln_eval_result *r) {
    memset(r, 0, sizeof *r);
    kiln_status st = check_classes(t, ds, "evaluation");
    if (st) return st;
    st = kiln_tensor_copy(kiln_graph_params_flat(t->eg.g), kiln_graph_params_flat(t->tg.g));
    if (st) return st;
    kiln_loader_t ld;
    if ((st = make_loader(t, ds, 0, &ld))) return st;
    size_t per = (size_t)t->in_h * (size_t)t->in_w * (size_t)t->in_c;
    uint8_t *pad = malloc(per * (size_t)t->batch);
    int32_t *pl = malloc(sizeof *pl * (size_t)t->batch);
    float *h = malloc(sizeof *h * (size_t)t->batch);
    if (!pad || !pl || !h) st = oom();
    double t0 = kiln_time_s(), loss = 0, top1 = 0, top5 = 0;
    int64_t steps = kiln_loader_steps_per_epoch(ld);
    for (int64_t s = 0; s < steps && !st; s++) {
        kiln_batch b;
        if ((st = kiln_loader_next(ld, &b))) break;
        st = upload(&t->eg, &b, pad, pl);
        if (!st) st = kiln_graph_forward(t->eg.g);
        double l = 0, a1 = 0, a5 = 0;
        if (!st) st = read_sum(t->eg.loss, h, b.n, &l);
        if (!st) st = read_sum(t->eg.top1, h, b.n, &a1);
        if (!st) st = read_sum(t->eg.top5, h, b.n, &a5);
        loss += l, top1 += a1, top5 += a5;
        r->samples += b.n;
        kiln_loader_release(ld, &b);
    }
    kiln_loader_free(ld);
    free(pad);
    free(pl);
    free(h);
    if (st) return st;
    /* Each rank evaluated its shard: the sums over every rank. */
    double sums[4] = {loss, top1, top5, (double)r->samples};
    if ((st = kiln_dist_sum(t->o.dist, sums, 4))) return st;
    loss = sums[0], top1 = sums[1], top5 = sums[2], r->samples = (int64_t)sums[3];
    double n = r->samples ? (double)r->samples : 1;
    r->loss = loss / n;
    r->acc = top1 / n;
    r->top5 = top5 / n;
    r->img_per_s = (double)r->samples / (kiln_time_s() - t0);
    return KILN_OK;
}

/* ---- prediction ---- */

void kiln_trainer_input(kiln_trainer_t t, int *height, int *width, int *channels, int *classes) {
    *height = t->in_h, *width = t->in_w, *channels = t->in_c, *classes = t->classes;
}

/* The data pipeline's limits against hostile files (kiln_dataset_options). */
#define MAX_PIXELS 100000000ULL
#define MAX_SIDE   32768

kiln_status kiln_trainer_prepare_jpeg(kiln_trainer_t t, const uint8_t *jpg, size_t n,
                                      uint8_t *out) {
    const char *spec = t->augment_eval;
    char fixed[1300];
    kiln_status st = KILN_OK;
    /* JPEG sizes vary: as make_loader does for a JPEG source. */
    if (!fixes_size(spec)) {
        if ((st = stretched_spec(t, spec, fixed, sizeof fixed))) return st;
        spec = fixed;
    }
    kiln_augment_t a = NULL;
    kiln_decoder *d = NULL;
    kiln_decode_limits lim = {MAX_PIXELS, MAX_SIDE, 0, 0};
    kiln_jpeg_info info;
    kiln_decoded dec;
    kiln_geometry g;
    kiln_rng r = kiln_rng_make(t->o.seed, 0, 0);
    kiln_scratch rs = {NULL, 0}, ps = {NULL, 0};
    if (!(st = kiln_augment_parse(spec, &a)) && !(st = kiln_decoder_create(&d)))
        st = kiln_jpeg_header(d, jpg, n, &lim, &info);
    if (!st) {
        kiln_augment_geometry(a, info.owidth, info.oheight, &r, &g);
        if (g.out_w != t->in_w || g.out_h != t->in_h)
            st = size_mismatch(t, spec, g.out_h, g.out_w, t->in_c);
    }
    /* The loader's decode: only the box, at the DCT scale that keeps the output size. */
    if (!st)
        st = kiln_jpeg_decode_box(d, jpg, n, &info, &lim, t->in_c, g.x, g.y, g.w, g.h, g.out_w,
                                  g.out_h, &dec);
    if (!st)
        st = kiln_resample(dec.pixels, dec.w, dec.h, t->in_c, dec.bx, dec.by, dec.bw, dec.bh, out,
                           g.out_w, g.out_h, &rs);
    if (!st) st = kiln_scratch_grow(&ps, (size_t)g.out_w * (size_t)g.out_h * (size_t)t->in_c);
    if (!st) kiln_augment_pixels(a, out, g.out_w, g.out_h, t->in_c, &r, ps.p);
    free(rs.p);
    free(ps.p);
    kiln_decoder_free(d);
    kiln_augment_free(a);
    return st;
}

kiln_status kiln_trainer_predict(kiln_trainer_t t, const uint8_t *images, int n, float *probs) {
    kt_graph *kg = &t->eg;
    kiln_status st =
        kiln_tensor_copy(kiln_graph_params_flat(kg->g), kiln_graph_params_flat(t->tg.g));
    if (st) return st;
    size_t per = (size_t)t->in_h * (size_t)t->in_w * (size_t)t->in_c, K = (size_t)t->classes;
    uint8_t *pad = malloc(per * (size_t)t->batch);
    int32_t *labels = calloc((size_t)t->batch, sizeof *labels),
            *pl = malloc(sizeof *pl * (size_t)t->batch);
    float *logits = malloc(sizeof *logits * K * (size_t)t->batch);
    if (!pad || !labels || !pl || !logits) st = oom();
    for (int off = 0; off < n && !st; off += t->batch) {
        kiln_batch b;
        memset(&b, 0, sizeof b);
        b.images = images + per * (size_t)off;
        b.labels = labels;
        b.n = n - off < t->batch ? n - off : t->batch;
        st = upload(kg, &b, pad, pl);
        if (!st) st = kiln_graph_forward(kg->g);
        if (!st) st = kiln_tensor_get(kg->logits, logits, sizeof *logits * K * (size_t)t->batch);
        /* Softmax in double, shifted by the row's maximum. */
        for (int i = 0; i < b.n && !st; i++) {
            const float *z = logits + K * (size_t)i;
            float *p = probs + K * (size_t)(off + i);
            double mx = z[0], sum = 0;
            for (size_t k = 1; k < K; k++) mx = z[k] > mx ? z[k] : mx;
            for (size_t k = 0; k < K; k++) sum += exp((double)z[k] - mx);
            for (size_t k = 0; k < K; k++) p[k] = (float)(exp((double)z[k] - mx) / sum);
        }
    }
    free(pad);
    free(labels);
    free(pl);
    free(logits);
    return st;
}

/* ---- training ---- */

/* running = (1 - m) running + m batch, the variance made unbiased (x M / (M - 1)). */
static kiln_status update_running(struct kiln_trainer *t) {
    kiln_status st = KILN_OK;
    for (int k = 0; k < t->nbns && !st; k++) {
        kt_bn *b = &t->bns[k];
        int64_t C = b->running->shape[1], row[1] = {C};
        for (int r = 0; r < 2 && !st; r++) {
            kiln_tensor src, dst;
            size_t off = (size_t)(r * C) * sizeof(float);
            double unbias = r && b->m > 1 ? (double)b->m / (double)(b->m - 1) : 1.0;
            st = kiln_tensor_view(&src, b->batch_stats, 1, row, NULL, off);
            if (!st) st = kiln_tensor_view(&dst, b->running, 1, row, NULL, off);
            if (!st)
                st = kiln_axpby(t->be, (float)(b->momentum * unbias), &src, 1.0f - b->momentum,
                                &dst);
        }
    }
    return st;
}

static kiln_status apply_update(struct kiln_trainer *t, double lr) {
    kiln_status st = KILN_OK;
    const kiln_train_options *o = &t->o;
    if (o->optimizer != KILN_OPTIM_SGD) t->adam_t++;
    float gs = kt_dist_grad_scale(t); /* data parallel: the buffer holds the ranks' sum */
    for (int k = 0; k < t->nparams && !st; k++) {
        kt_param *p = &t->params[k];
        kiln_tensor *g = kiln_graph_grad(t->tg.g, p->train);
        float wd = p->decay ? o->weight_decay : 0.0f;
        if (o->optimizer == KILN_OPTIM_SGD) {
            kiln_sgd_params sp = {(float)lr, o->momentum, wd, gs, o->nesterov};
            st = kiln_sgd_update(t->be, &sp, p->train, g, &p->velocity);
        } else {
            kiln_adam_params ap = {
                (float)lr, o->beta1, o->beta2,           o->eps,
                wd,        gs,       (int32_t)t->adam_t, o->optimizer == KILN_OPTIM_ADAMW};
            st = kiln_adam_update(t->be, &ap, p->train, g, &p->m, &p->v);
        }
    }
    return st;
}

/* min / max / mean of what reached the first convolution or dense layer. */
static void input_stats(struct kiln_trainer *t) {
    kiln_tensor *x = t->tg.first_in;
    if (!x) return;
    size_t n = (size_t)kiln_tensor_nelements(x);
    float *h = malloc(n * sizeof *h);
    if (!h || kiln_tensor_get(x, h, n * sizeof *h)) {
        free(h);
        return;
    }
    double lo = h[0], hi = h[0], sum = 0;
    for (size_t i = 0; i < n; i++) {
        lo = h[i] < lo ? h[i] : lo;
        hi = h[i] > hi ? h[i] : hi;
        sum += h[i];
    }
    free(h);
    char d[64], why[128];
    kiln_tensor_describe(x, d, sizeof d);
    /* The lint's rule (km_scale_check), on what was observed instead of the propagated bound. */
    int off = km_scale_check(lo, hi, why, sizeof why);
    message(t, "first batch: the first layer reads %s with min %.4g, max %.4g, mean %.4g%s%s%s", d,
            lo, hi, sum / (double)n, off ? " -- " : "", why,
            off > 0   ? ": is a rescale/normalize missing on the input's path, or a normalize's "
                        "mean/std in the wrong units?"
            : off < 0 ? ": is the input rescaled twice, or by the wrong factor?"
                      : "");
}

static void chance_diagnostic(struct kiln_trainer *t, double recent, int64_t steps) {
    double chance = log((double)t->classes);
    message(t,
            "loss is %.3f after %lld steps, about chance level ln(%d) = %.3f. Usual causes:\n"
            "  - unnormalized input: raw 0-255 pixels reaching the first layer (see the first "
            "batch's statistics; a rescale/normalize node whose output is never used)\n"
            "  - learning rate too high (diverging to the uniform prediction) or too low\n"
            "  - labels that do not match the images (wrong labels file, shuffled separately)\n"
            "  - a dead branch: a layer whose output is unused, or ReLUs that all died (try He "
            "init, a lower learning rate, batch norm)",
            recent, (long long)steps, t->classes, chance);
}

static int finite_sum(const float *h, int n, double *sum) {
    *sum = 0;
    for (int i = 0; i < n; i++) *sum += h[i];
    return isfinite(*sum);
}

static kiln_status mkdirs(const char *dir) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1;; p++) {
        char c = *p;
        if (c != '/' && c) continue;
        *p = '\0';
        if (mkdir(buf, 0777) && errno != EEXIST)
            return kiln_error(KILN_IO, "cannot create directory %s: %s", buf, strerror(errno));
        if (!c) break;
        *p = c;
    }
    return KILN_OK;
}

typedef struct fit_ctx {
    struct kiln_trainer *t;
    kiln_loader_t ld;
    float *hbuf;
    char last[4200], best[4200], csv[4200], html[4200], norms_csv[4200], steps_csv[4200];
    char nan_where[160]; /* the parameter whose gradient went non-finite first */
    int64_t steps;
    double recent[CHANCE_AVG];
    int64_t fit_steps; /* steps done by this fit call */
    int at_chance;     /* the last chance-level check found the loss there (warned once) */
    int stop_all;      /* data parallel: a rank was interrupted during the latest step */
} fit_ctx;

/* ---- gradient norms ---- */

/* Each parameter's gradient and weight sum of squares: SUM_SQUARES on the device into one
   buffer, read back in one transfer. */
static kiln_status param_sums(struct kiln_trainer *t, double *g2, double *w2) {
    int P = t->nparams;
    kiln_status st = KILN_OK;
    int64_t n = 2 * (int64_t)P, one = 1;
    if (!P) return KILN_OK;
    if (!t->norms.buffer && (st = kiln_tensor_alloc(&t->norms, t->be, KILN_F32, 1, &n))) return st;
    for (int k = 0; k < 2 * P && !st; k++) {
        kt_param *p = &t->params[k % P];
        kiln_tensor *x = k < P ? kiln_graph_grad(t->tg.g, p->train) : p->train;
        kiln_tensor out;
        st = kiln_tensor_view(&out, &t->norms, 1, &one, NULL, sizeof(float) * (size_t)k);
        if (!st) st = kiln_sum_squares(t->be, x, &out);
    }
    float *h = malloc(sizeof *h * (size_t)n);
    if (!h) return oom();
    if (!st) st = kiln_tensor_get(&t->norms, h, sizeof *h * (size_t)n);
    double gs = kt_dist_grad_scale(t);
    for (int k = 0; k < P && !st; k++) g2[k] = h[k] * gs * gs, w2[k] = h[P + k];
    free(h);
    return st;
}

/* Names the parameter whose gradient went non-finite first. Backward runs from the loss
   towards the input, so that is the last one in model order. */
static void name_nonfinite(fit_ctx *c) {
    struct kiln_trainer *t = c->t;
    double *g2 = malloc(sizeof *g2 * 2 * (size_t)t->nparams);
    c->nan_where[0] = '\0';
    if (g2 && !param_sums(t, g2, g2 + t->nparams)) {
        int bad = 0, last = -1;
        for (int k = 0; k < t->nparams; k++)
            if (!isfinite(g2[k])) bad++, last = k;
        if (last >= 0)
            snprintf(c->nan_where, sizeof c->nan_where,
                     ", first in backward order at '%s' (%d of %d parameters)",
                     t->params[last].name, bad, t->nparams);
    }
    free(g2);
}

/* grad-norms.csv rows for this step and the one-line summary (smallest / largest). */
static kiln_status log_norms(fit_ctx *c) {
    struct kiln_trainer *t = c->t;
    int P = t->nparams;
    double *g2 = malloc(sizeof *g2 * 2 * (size_t)P), *w2 = g2 ? g2 + P : NULL;
    if (!g2) return oom();
    kiln_status st = param_sums(t, g2, w2);
    long long step = (long long)t->global_step + 1;
    FILE *f = NULL;
    if (!st && c->norms_csv[0]) {
        struct stat sb;
        int fresh = stat(c->norms_csv, &sb) != 0;
        if (!(f = fopen(c->norms_csv, "a")))
            st = kiln_error(KILN_IO, "cannot write %s: %s", c->norms_csv, strerror(errno));
        else if (fresh)
            fprintf(f, "step,param,grad_norm,weight_norm,ratio\n");
    }
    int lo = 0, hi = 0;
    double total = 0;
    for (int k = 0; k < P && !st; k++) {
        double g = sqrt(g2[k]), w = sqrt(w2[k]);
        /* The ratio (the relative size of an update) is left empty for zero weights. */
        if (f && w > 0)
            fprintf(f, "%lld,%s,%.6g,%.6g,%.6g\n", step, t->params[k].name, g, w, g / w);
        if (f && !(w > 0)) fprintf(f, "%lld,%s,%.6g,%.6g,\n", step, t->params[k].name, g, w);
        if (g2[k] < g2[lo]) lo = k;
        if (g2[k] > g2[hi]) hi = k;
        total += g2[k];
    }
    if (f && fclose(f) && !st)
        st = kiln_error(KILN_IO, "cannot write %s: %s", c->norms_csv, strerror(errno));
    if (!st && P > 0)
        notify(t, KILN_PROGRESS_INFO,
               "gradient norms at step %lld: smallest %s %.3g (weight %.3g), largest %s %.3g "
               "(weight %.3g), all %.3g",
               step, t->params[lo].name, sqrt(g2[lo]), sqrt(w2[lo]), t->params[hi].name,
               sqrt(g2[hi]), sqrt(w2[hi]), sqrt(total));
    free(g2);
    return st;
}

/* One step: forward, checks, running statistics, backward, update. *ok = 0 on a non-finite
   loss or gradient (nothing is updated then). */
static kiln_status train_step(fit_ctx *c, const kiln_batch *b, double lr, double *loss, double *acc,
                              int *ok) {
    struct kiln_trainer *t = c->t;
    kt_graph *kg = &t->tg;
    c->nan_where[0] = '\0';
    kiln_status st = kt_dist_sync(t);
    if (!st) st = upload(kg, b, NULL, NULL);
    kiln_graph_set_step(kg->g, (uint64_t)t->global_step);
    if (!st) st = kiln_graph_forward(kg->g);
    if (!st) st = kiln_tensor_get(kg->loss, c->hbuf, sizeof(float) * (size_t)t->batch);
    if (st) return st;
    if (t->fault_nan_step == t->global_step + 1) c->hbuf[0] = NAN; /* fault injection */
    *ok = finite_sum(c->hbuf, t->batch, loss);
    *acc = 0;
    if (*ok && (st = kiln_tensor_get(kg->top1, c->hbuf, sizeof(float) * (size_t)t->batch)))
        return st;
    if (*ok) finite_sum(c->hbuf, t->batch, acc);
    int W = t->dist.world;
    if (W > 1) {
        /* Every rank learns every rank's loss, accuracy, health and interrupt: they all take
           the same decision (skip, stop, go on) and rank 0 reports the whole step. */
        double mine[4] = {*ok ? *loss : 0, *acc, *ok, t->o.interrupt && *t->o.interrupt};
        double *all = t->dist.gather;
        st = kiln_dist_gather(t->o.dist, mine, 4, all);
        int bad = -1;
        *loss = *acc = 0;
        c->stop_all = 0;
        for (int r = 0; r < W && !st; r++) {
            *loss += all[4 * r], *acc += all[4 * r + 1];
            if (!all[4 * r + 2] && bad < 0) bad = r;
            if (all[4 * r + 3]) c->stop_all = 1;
        }
        if (st) return st;
        *ok = bad < 0;
        if (!*ok) {
            *loss = NAN;
            snprintf(c->nan_where, sizeof c->nan_where, " on rank %d", bad);
        }
    }
    *loss /= (double)t->batch * W;
    *acc /= (double)t->batch * W;
    if (!*ok) return KILN_OK;
    if (c->fit_steps == 0) input_stats(t);
    /* Before backward: the batch statistics come from a finite forward pass. */
    if ((st = update_running(t))) return st;
    if ((st = kt_dist_backward(t))) return st;
    /* One reduction over all gradients: catches NaN/Inf anywhere before it reaches a weight. */
    float g2 = 0;
    st = kiln_sum_squares(t->be, kiln_graph_grads_flat(kg->g), &t->grad_sq);
    if (!st) st = kiln_tensor_get(&t->grad_sq, &g2, sizeof g2);
    if (st) return st;
    if (!isfinite(g2)) {
        *ok = 0;
        name_nonfinite(c);
        return KILN_OK;
    }
    int64_t every = t->o.log_grad_norms;
    if (every > 0 && (t->global_step + 1) % every == 0 && (st = log_norms(c))) return st;
    return apply_update(t, lr);
}

kiln_status kiln_trainer_step(kiln_trainer_t t, const uint8_t *images, const int32_t *labels,
                              double lr, double *loss) {
    fit_ctx c;
    memset(&c, 0, sizeof c);
    c.t = t;
    c.fit_steps = 1; /* the first-batch statistics are fit's diagnostic */
    if (!(c.hbuf = malloc(sizeof(float) * (size_t)t->batch))) return oom();
    kiln_batch b = {images, labels, t->batch, t->in_h, t->in_w, t->in_c, t->epoch, t->step};
    double acc = 0;
    int ok = 1;
    kiln_status st = train_step(&c, &b, lr, loss, &acc, &ok);
    free(c.hbuf);
    if (!st && !ok) return kiln_error(KILN_INTERNAL, "training step: non-finite loss or gradient");
    if (!st) t->global_step++;
    return st;
}

static void csv_row(fit_ctx *c, int64_t epoch, double lr, double loss, double acc,
                    const kiln_eval_result *v, int has_val, double ips, double wait, double secs) {
    if (!c->csv[0]) return;
    struct stat sb;
    int fresh = stat(c->csv, &sb) != 0;
    FILE *f = fopen(c->csv, "a");
    if (!f) return;
    if (fresh)
        fprintf(f, "epoch,global_step,lr,train_loss,train_acc,val_loss,val_acc,val_top5,img_per_s,"
                   "data_wait,seconds\n");
    fprintf(f, "%lld,%lld,%.6g,%.6f,%.6f,", (long long)epoch, (long long)c->t->global_step, lr,
            loss, acc);
    if (has_val)
        fprintf(f, "%.6f,%.6f,%.6f,", v->loss, v->acc, v->top5);
    else
        fprintf(f, ",,,");
    fprintf(f, "%.1f,%.4f,%.2f\n", ips, wait, secs);
    fclose(f);
}

/* steps.csv: the step just done (the loss and accuracy over every rank's samples). */
static void step_row(fit_ctx *c, double lr, double loss, double acc) {
    struct stat sb;
    int fresh = stat(c->steps_csv, &sb) != 0;
    FILE *f = fopen(c->steps_csv, "a");
    if (!f) return;
    if (fresh) fprintf(f, "global_step,epoch,step,lr,loss,acc\n");
    fprintf(f, "%lld,%lld,%lld,%.9g,%.9g,%.9g\n", (long long)c->t->global_step,
            (long long)c->t->epoch + 1, (long long)c->t->step, lr, loss, acc);
    fclose(f);
}

/* A report that cannot be written is worth a warning, not the training run. */
static void report(fit_ctx *c) {
    if (c->html[0] && kt_write_report(c->t, c->csv, c->html))
        message(c->t, "cannot write the report: %s", kiln_last_error());
}

kiln_status kiln_trainer_fit(kiln_trainer_t t, kiln_dataset_t train, kiln_dataset_t val,
                             kiln_fit_result *r) {
    memset(r, 0, sizeof *r);
    fit_ctx c;
    memset(&c, 0, sizeof c);
    c.t = t;
    kiln_status st;
    int W = t->dist.world;
    if (t->o.out_dir && !t->dist.rank) {
        if ((st = mkdirs(t->o.out_dir))) return st;
        snprintf(c.last, sizeof c.last, "%s/last.safetensors", t->o.out_dir);
        snprintf(c.best, sizeof c.best, "%s/best.safetensors", t->o.out_dir);
        snprintf(c.csv, sizeof c.csv, "%s/log.csv", t->o.out_dir);
        snprintf(c.html, sizeof c.html, "%s/report.html", t->o.out_dir);
        if (t->o.log_grad_norms > 0)
            snprintf(c.norms_csv, sizeof c.norms_csv, "%s/grad-norms.csv", t->o.out_dir);
        if (t->o.log_steps > 0)
            snprintf(c.steps_csv, sizeof c.steps_csv, "%s/steps.csv", t->o.out_dir);
    }
    if ((st = check_classes(t, train, "training")) ||
        (val && (st = check_classes(t, val, "validation"))))
        return st;
    if ((st = kt_names_from_data(t, train))) return st;
    if ((st = make_loader(t, train, 1, &c.ld))) return st;
    c.steps = kiln_loader_steps_per_epoch(c.ld);
    if (t->step >= c.steps) t->epoch++, t->step = 0;
    if ((t->epoch || t->step) && t->epoch < t->o.epochs)
        st = kiln_loader_seek(c.ld, t->epoch, t->step);
    c.hbuf = malloc(sizeof(float) * (size_t)t->batch);
    if (!c.hbuf) st = oom();
    double fit_t0 = kiln_time_s();
    int64_t fit_images = 0;
    while (!st && t->epoch < t->o.epochs && r->stop == KILN_FIT_DONE) {
        double e0 = kiln_time_s(), sum_loss = 0, sum_acc = 0, lr = 0;
        int64_t done = 0;
        kiln_loader_stats ls0, ls1;
        kiln_loader_get_stats(c.ld, &ls0);
        while (!st && t->step < c.steps) {
            if (t->o.max_steps > 0 && t->global_step >= t->o.max_steps) {
                r->stop = KILN_FIT_MAX_STEPS;
                break;
            }
            if (W > 1 ? c.stop_all : t->o.interrupt && *t->o.interrupt) {
                r->stop = KILN_FIT_INTERRUPTED;
                break;
            }
            kiln_batch b;
            if ((st = kiln_loader_next(c.ld, &b))) break;
            lr = lr_at(t, t->global_step, c.steps);
            double loss = 0, acc = 0;
            int ok = 1;
            st = train_step(&c, &b, lr, &loss, &acc, &ok);
            kiln_loader_release(c.ld, &b);
            if (st) break;
            if (!ok) {
                message(t, "non-finite %s at epoch %lld step %lld (global step %lld)%s%s",
                        isfinite(loss) ? "gradient" : "loss", (long long)t->epoch + 1,
                        (long long)t->step + 1, (long long)t->global_step, c.nan_where,
                        t->o.on_nan == KILN_NAN_SKIP
                            ? ": step skipped"
                            : ": stopping; the last good checkpoint is left as it was (lower the "
                              "learning rate or add warmup)");
                if (t->o.on_nan == KILN_NAN_STOP) {
                    r->stop = KILN_FIT_NAN;
                    break;
                }
            } else {
                sum_loss += loss, sum_acc += acc, done++;
                c.recent[c.fit_steps % CHANCE_AVG] = loss;
            }
            t->step++, t->global_step++, c.fit_steps++, fit_images += (int64_t)t->batch * W;
            if (c.steps_csv[0] && t->global_step % t->o.log_steps == 0) step_row(&c, lr, loss, acc);
            /* Every chance_steps steps: a net that never learned, and one that learned and
               then collapsed (a learning rate too high), both end at chance level. One
               diagnostic per stretch at chance. Not while the learning rate still warms up:
               a plain VGG may sit at chance through its warmup and learn right after (the
               README's main job did, one run in two, with 200 warmup steps). */
            if (ok && c.fit_steps % t->o.chance_steps == 0 && t->classes > 1 &&
                t->global_step > t->o.warmup_steps) {
                int navg = c.fit_steps < CHANCE_AVG ? (int)c.fit_steps : CHANCE_AVG;
                double m = 0;
                for (int k = 0; k < navg; k++) m += c.recent[k];
                m /= navg;
                int stuck = m > CHANCE_RATIO * log((double)t->classes);
                if (stuck && !c.at_chance) chance_diagnostic(t, m, c.fit_steps);
                c.at_chance = stuck;
            }
            if (t->o.progress) {
                kiln_loader_get_stats(c.ld, &ls1);
                double el = kiln_time_s() - e0, run = ls1.run_seconds - ls0.run_seconds;
                int64_t n_ep = t->step; /* steps done this epoch, including before a resume */
                int64_t here = done ? done : 1;
                kiln_train_progress p = {KILN_PROGRESS_STEP,
                                         (int)t->epoch + 1,
                                         t->o.epochs,
                                         n_ep,
                                         c.steps,
                                         t->global_step,
                                         sum_loss / (double)here,
                                         sum_acc / (double)here,
                                         lr,
                                         0,
                                         0,
                                         0,
                                         el,
                                         0,
                                         0,
                                         0,
                                         0,
                                         NULL};
                p.img_per_s = el > 0 ? (double)(done * t->batch * W) / el : 0;
                p.data_wait = run > 0 ? (ls1.wait_seconds - ls0.wait_seconds) / run : 0;
                p.eta_s = done ? el / (double)done * (double)(c.steps - t->step) : 0;
                t->o.progress(t->o.user, &p);
            }
        }
        if (st || r->stop != KILN_FIT_DONE) break;
        /* The epoch is complete: validate, checkpoint, log. */
        double secs = kiln_time_s() - e0;
        kiln_loader_get_stats(c.ld, &ls1);
        double run = ls1.run_seconds - ls0.run_seconds;
        double wait = run > 0 ? (ls1.wait_seconds - ls0.wait_seconds) / run : 0;
        double ips = secs > 0 ? (double)(done * t->batch * W) / secs : 0;
        kiln_eval_result v;
        memset(&v, 0, sizeof v);
        if (val && (st = kiln_trainer_evaluate(t, val, &v))) break;
        t->epoch++, t->step = 0;
        r->epochs_done++;
        r->train_loss = done ? sum_loss / (double)done : NAN;
        r->train_acc = done ? sum_acc / (double)done : NAN;
        if (val) {
            r->has_val = 1;
            r->val_loss = v.loss, r->val_acc = v.acc, r->val_top5 = v.top5;
        }
        int is_best = val && v.acc > t->best_val_acc;
        if (is_best) t->best_val_acc = v.acc;
        r->best_val_acc = t->best_val_acc;
        if (c.last[0] && (st = kiln_trainer_save(t, c.last))) break;
        if (c.best[0] && is_best && (st = kiln_trainer_save(t, c.best))) break;
        csv_row(&c, t->epoch, lr, r->train_loss, r->train_acc, &v, val != NULL, ips, wait, secs);
        report(&c);
        if (t->o.progress) {
            kiln_train_progress p = {KILN_PROGRESS_EPOCH_END,
                                     (int)t->epoch,
                                     t->o.epochs,
                                     c.steps,
                                     c.steps,
                                     t->global_step,
                                     r->train_loss,
                                     r->train_acc,
                                     lr,
                                     ips,
                                     wait,
                                     0,
                                     secs,
                                     val != NULL,
                                     v.loss,
                                     v.acc,
                                     v.top5,
                                     NULL};
            t->o.progress(t->o.user, &p);
        }
    }
    /* max_steps / interrupt: a checkpoint at the exact position, so a resume continues where
       this stopped. */
    if (!st && (r->stop == KILN_FIT_MAX_STEPS || r->stop == KILN_FIT_INTERRUPTED) && c.last[0])
        st = kiln_trainer_save(t, c.last);
    if (!st && r->stop != KILN_FIT_DONE) report(&c);
    r->global_step = t->global_step;
    r->seconds = kiln_time_s() - fit_t0;
    r->img_per_s = r->seconds > 0 ? (double)fit_images / r->seconds : 0;
    kiln_loader_free(c.ld);
    free(c.hbuf);
    return st;
}
