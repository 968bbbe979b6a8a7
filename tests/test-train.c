/* The trainer end to end on a generated IDX dataset (bars, blobs and diagonals at random
   positions with noise): a small conv net with batch norm and dropout learns it on the cpu and
   opencl backends; the pipeline nodes become the augmentation spec; a resumed run equals an
   uninterrupted one bit for bit; a huge learning rate stops on NaN without touching the last
   good checkpoint; a loss stuck at chance prints the diagnostic; eval reloads the weights. */
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

enum { S = 12, K = 4, NTRAIN = 768, NTEST = 256 };

static const char *MODEL = "image = input(shape=12x12x1, dtype=u8)\n"
                           "crop = random_crop(image, padding=1)\n"
                           "scaled = rescale(crop, scale=1/255)\n"
                           "c1 = conv2d(scaled, filters=8, kernel=3, padding=same)\n"
                           "r1 = relu(c1)\n"
                           "p1 = maxpool(r1, pool=2)\n"
                           "c2 = conv2d(p1, filters=16, kernel=3, padding=same)\n"
                           "b2 = batchnorm(c2)\n"
                           "r2 = relu(b2)\n"
                           "g = global_avg_pool(r2)\n"
                           "d = dropout(g, rate=0.2)\n"
                           "logits = dense(d, units={classes}, init=glorot)\n"
                           "output(logits)\n";

static uint64_t rng = 0x12345678;
static unsigned rnd(unsigned n) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned)((rng >> 33) % n);
}

static void be32(FILE *f, uint32_t v) {
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    fwrite(b, 1, 4, f);
}

/* class 0: horizontal bar, 1: vertical bar, 2: 3x3 blob, 3: diagonal; anywhere, noisy. */
static int write_idx(const char *dir, const char *prefix, int n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", dir, prefix);
    FILE *fi = fopen(path, "wb");
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", dir, prefix);
    FILE *fl = fopen(path, "wb");
    if (!fi || !fl) return -1;
    be32(fi, 0x803), be32(fi, (uint32_t)n), be32(fi, S), be32(fi, S);
    be32(fl, 0x801), be32(fl, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        unsigned char img[S * S], cls = (unsigned char)(i % K);
        for (int p = 0; p < S * S; p++) img[p] = (unsigned char)rnd(60);
        int a = 2 + (int)rnd(S - 4), b = 2 + (int)rnd(S - 4);
        for (int k = -2; k <= 2; k++) {
            if (cls == 0) img[a * S + b + k] = 230;
            if (cls == 1) img[(a + k) * S + b] = 230;
            if (cls == 3) img[(a + k) * S + b + k] = 230;
        }
        if (cls == 2)
            for (int y = -1; y <= 1; y++)
                for (int x = -1; x <= 1; x++) img[(a + y) * S + b + x] = 230;
        fwrite(img, 1, sizeof img, fi);
        fputc(cls, fl);
    }
    fclose(fi);
    fclose(fl);
    return 0;
}

typedef struct run {
    kiln_model_t m;
    kiln_trainer_t t;
} run;

static kiln_status start(run *r, kiln_backend_t be, const kiln_train_options *o) {
    memset(r, 0, sizeof *r);
    kiln_status st = kiln_model_parse_string(MODEL, "test.kiln", &r->m);
    kiln_model_config cfg = {0, 0, 0, K, o->batch};
    if (!st) st = kiln_model_finalize(r->m, &cfg);
    if (!st) st = kiln_trainer_create(r->m, be, o, &r->t);
    return st;
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
    int chance, nan, stats;
} messages;

static volatile sig_atomic_t interrupt_flag;

/* Plays the signal handler: raises the interrupt after the fifth step. */
static void interrupt_at_5(void *user, const kiln_train_progress *p) {
    (void)user;
    if (p->event == KILN_PROGRESS_STEP && p->global_step == 5) interrupt_flag = 1;
}

static void on_progress(void *user, const kiln_train_progress *p) {
    messages *m = user;
    if (p->event != KILN_PROGRESS_MESSAGE) return;
    if (strstr(p->message, "chance level")) m->chance++;
    if (strstr(p->message, "non-finite")) m->nan++;
    if (strstr(p->message, "first batch")) m->stats++;
}

static void learns(const char *backend, kiln_dataset_t tr, kiln_dataset_t te) {
    kiln_backend_t be;
    if (kiln_backend_init(backend, NULL, &be)) {
        printf("skipping %s: %s\n", backend, kiln_last_error());
        return;
    }
    kiln_train_options o;
    options(&o);
    messages msg = {0, 0, 0};
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
    printf("%s: test accuracy %.3f top-5 %.3f in %.2f s (%.0f img/s)\n", backend, res.val_acc,
           res.val_top5, res.seconds, res.img_per_s);
    if (!st) stop(&r);
    kiln_backend_free(be);
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

    kiln_backend_t cpu;
    if (kiln_backend_init("cpu", NULL, &cpu)) return check_done();
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
    messages msg = {0, 0, 0};
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

    /* Chance level: a learning rate too small to move, checked after 10 steps. */
    kiln_train_options_init(&o);
    o.batch = 32;
    o.epochs = 1;
    o.lr = 1e-9f;
    o.chance_steps = 10;
    o.max_steps = 12;
    o.progress = on_progress;
    o.user = &msg;
    msg.chance = 0;
    st = start(&a, cpu, &o);
    if (!st) st = kiln_trainer_fit(a.t, tr, NULL, &res);
    CHECK(!st && msg.chance == 1, "a loss stuck at chance prints the diagnostic");
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
