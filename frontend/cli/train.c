/* `kiln train` and `kiln eval`: the trainer (kiln/train.h) behind flags, with a Keras-style
   progress line per epoch (redrawn on a terminal, one line per epoch otherwise). */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "kiln/kiln.h"
#include "kiln/model.h"
#include "kiln/train.h"

static void train_usage(FILE *f) {
    fprintf(f,
            "usage: kiln train --model M --data SRC [options]\n"
            "\n"
            "Trains a model on a dataset (IDX images file, class-folder JPEG directory or tar\n"
            "shards), validating after every epoch, with checkpoints, a CSV log and an HTML\n"
            "report (report.html: loss/accuracy plots, model, device, timing) in --out.\n"
            "\n"
            "  --model NAME|FILE     a zoo model, a model file (frontend/MODEL-FORMAT.md) or a\n"
            "                        Keras model.keras / model.to_json() .json\n"
            "  --data SRC            training data (e.g. .../train-images-idx3-ubyte.gz)\n"
            "  --val SRC             validation/test data, evaluated after every epoch\n"
            "  --val-split F         hold out fraction F of --data instead (seeded, stable)\n"
            "  --epochs N            epochs (default 10)\n"
            "  --batch N             batch size (default 64)\n"
            "  --input HxW[xC]       model input size (default: the model's; C: the data's)\n"
            "  --augment SPEC        augmentation (kiln data --help), 'none' for none\n"
            "                        (default: the model's pipeline nodes)\n"
            "  --optimizer NAME      sgd (default), adam, adamw\n"
            "  --lr X                learning rate (default 0.01 sgd, 0.001 adam/adamw)\n"
            "  --momentum X          sgd momentum (default 0.9)\n"
            "  --nesterov            Nesterov momentum\n"
            "  --weight-decay X      default 5e-4 sgd, 0 adam, 0.01 adamw (weights only)\n"
            "  --schedule NAME       constant (default), step, cosine\n"
            "  --step-epochs N       step schedule: multiply by --gamma every N epochs\n"
            "  --gamma X             step schedule factor (default 0.1)\n"
            "  --warmup N            linear warmup over N steps\n"
            "  --label-smoothing X   default 0\n"
            "  --seed N              parameters, dropout, order and augmentation (default 1)\n"
            "  --workers N           data worker threads (default: online cores)\n"
            "  --out DIR             checkpoints and log (default runs/MODEL)\n"
            "  --resume CKPT         continue from a checkpoint written by kiln train\n"
            "  --max-steps N         stop after N steps in total (with a checkpoint)\n"
            "  --chance-steps N      check for a loss stuck at chance every N steps (200), from\n"
            "                        the end of --warmup\n"
            "  --on-nan stop|skip    non-finite loss or gradient: stop (default) or skip\n"
            "  --log-grad-norms N    every N steps: each parameter's gradient and weight norm\n"
            "                        to grad-norms.csv in --out, and a summary line\n"
            "  --log-steps N         every N steps: loss, accuracy and lr to steps.csv in --out\n"
            "\n"
            "Data parallel (mpirun -np N kiln train ...: one rank per device, --batch is the\n"
            "global batch; KILN_DEVICE=0,1 maps local ranks to devices, else local rank i\n"
            "takes the i-th GPU, or CPU device, modulo their count):\n"
            "  --allreduce-bucket-mb X  gradient all-reduce bucket size (default 25)\n"
            "  --mpi-timeout S       seconds a rank waits for the others (default 300)\n"
            "\n"
            "environment: KILN_BACKEND, KILN_DEVICE (kiln devices --help)\n");
}

static void eval_usage(FILE *f) {
    fprintf(f,
            "usage: kiln eval --model M --data SRC --checkpoint F [--batch N] [--input HxW[xC]]\n"
            "                 [--workers N]\n"
            "\n"
            "Prints the loss and top-1/top-5 accuracy of a checkpoint on a dataset. The\n"
            "checkpoint may be a Keras model.keras or .weights.h5 (default for a --model\n"
            "model.keras: its own weights).\n");
}

typedef struct cli_opts {
    const char *model, *data, *val, *checkpoint;
    double val_split, mpi_timeout;
    int input_h, input_w, input_c;
    kiln_train_options t;
} cli_opts;

static int parse_double(const char *s, double lo, double hi, double *out) {
    char *e;
    errno = 0;
    double v = strtod(s, &e);
    if (e == s || *e || errno || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

static int bad(const char *cmd, const char *flag, const char *val) {
    fprintf(stderr, "kiln %s: bad value '%s' for %s\n\n", cmd, val ? val : "(missing)", flag);
    if (!strcmp(cmd, "train"))
        train_usage(stderr);
    else
        eval_usage(stderr);
    return 2;
}

/* 0: parsed; 1: --help printed; 2: usage error printed. */
static int parse_args(const char *cmd, int argc, char **argv, cli_opts *o) {
    int train = !strcmp(cmd, "train");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double d;
        long long n;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            if (train)
                train_usage(stdout);
            else
                eval_usage(stdout);
            return 1;
        }
        if (train && !strcmp(a, "--nesterov")) {
            o->t.nesterov = 1;
            continue;
        }
        if (train && !strcmp(a, "--sync-bn")) {
            fprintf(stderr,
                    "kiln %s: --sync-bn: synchronized batch norm is not built; batch-norm "
                    "statistics are per rank (batch / ranks samples each)\n",
                    cmd);
            return 2;
        }
        int known = 1;
        if (!v) {
            known = 0;
        } else if (!strcmp(a, "--model")) {
            o->model = v;
        } else if (!strcmp(a, "--data")) {
            o->data = v;
        } else if (!strcmp(a, "--batch")) {
            if (kiln_cli_parse_int(v, 1, 1 << 20, &n)) return bad(cmd, a, v);
            o->t.batch = (int)n;
        } else if (!strcmp(a, "--input")) {
            if (kiln_cli_parse_input(v, &o->input_h, &o->input_w, &o->input_c))
                return bad(cmd, a, v);
        } else if (!strcmp(a, "--workers")) {
            if (kiln_cli_parse_int(v, 0, 1024, &n)) return bad(cmd, a, v);
            o->t.workers = (int)n;
        } else if (!train && !strcmp(a, "--checkpoint")) {
            o->checkpoint = v;
        } else if (!train) {
            known = 0;
        } else if (!strcmp(a, "--val")) {
            o->val = v;
        } else if (!strcmp(a, "--val-split")) {
            if (parse_double(v, 1e-6, 0.99, &o->val_split)) return bad(cmd, a, v);
        } else if (!strcmp(a, "--epochs")) {
            if (kiln_cli_parse_int(v, 1, 1000000, &n)) return bad(cmd, a, v);
            o->t.epochs = (int)n;
        } else if (!strcmp(a, "--augment")) {
            o->t.augment = v;
        } else if (!strcmp(a, "--optimizer")) {
            if (kiln_optim_parse(v, &o->t.optimizer)) return bad(cmd, a, v);
        } else if (!strcmp(a, "--lr")) {
            if (parse_double(v, 1e-12, 1e6, &d)) return bad(cmd, a, v);
            o->t.lr = (float)d;
        } else if (!strcmp(a, "--momentum")) {
            if (parse_double(v, 0, 0.9999, &d)) return bad(cmd, a, v);
            o->t.momentum = (float)d;
        } else if (!strcmp(a, "--weight-decay")) {
            if (parse_double(v, 0, 1, &d)) return bad(cmd, a, v);
            o->t.weight_decay = (float)d;
        } else if (!strcmp(a, "--schedule")) {
            if (kiln_sched_parse(v, &o->t.schedule)) return bad(cmd, a, v);
        } else if (!strcmp(a, "--step-epochs")) {
            if (kiln_cli_parse_int(v, 1, 1000000, &n)) return bad(cmd, a, v);
            o->t.step_epochs = (int)n;
        } else if (!strcmp(a, "--gamma")) {
            if (parse_double(v, 1e-6, 1, &d)) return bad(cmd, a, v);
            o->t.step_gamma = (float)d;
        } else if (!strcmp(a, "--warmup")) {
            if (kiln_cli_parse_int(v, 0, 1LL << 40, &n)) return bad(cmd, a, v);
            o->t.warmup_steps = n;
        } else if (!strcmp(a, "--label-smoothing")) {
            if (parse_double(v, 0, 0.99, &d)) return bad(cmd, a, v);
            o->t.label_smoothing = (float)d;
        } else if (!strcmp(a, "--seed")) {
            if (kiln_cli_parse_int(v, 0, (1LL << 62), &n)) return bad(cmd, a, v);
            o->t.seed = (uint64_t)n;
        } else if (!strcmp(a, "--out")) {
            o->t.out_dir = v;
        } else if (!strcmp(a, "--resume")) {
            o->checkpoint = v;
        } else if (!strcmp(a, "--max-steps")) {
            if (kiln_cli_parse_int(v, 1, 1LL << 40, &n)) return bad(cmd, a, v);
            o->t.max_steps = n;
        } else if (!strcmp(a, "--log-steps")) {
            if (kiln_cli_parse_int(v, 1, 1LL << 40, &n)) return bad(cmd, a, v);
            o->t.log_steps = n;
        } else if (!strcmp(a, "--allreduce-bucket-mb")) {
            if (parse_double(v, 1e-3, 1e5, &o->t.allreduce_bucket_mb)) return bad(cmd, a, v);
        } else if (!strcmp(a, "--mpi-timeout")) {
            if (parse_double(v, 0.1, 1e7, &o->mpi_timeout)) return bad(cmd, a, v);
        } else if (!strcmp(a, "--log-grad-norms")) {
            if (kiln_cli_parse_int(v, 1, 1LL << 40, &n)) return bad(cmd, a, v);
            o->t.log_grad_norms = n;
        } else if (!strcmp(a, "--chance-steps")) {
            if (kiln_cli_parse_int(v, 1, 1LL << 40, &n)) return bad(cmd, a, v);
            o->t.chance_steps = n;
        } else if (!strcmp(a, "--on-nan")) {
            if (!strcmp(v, "stop"))
                o->t.on_nan = KILN_NAN_STOP;
            else if (!strcmp(v, "skip"))
                o->t.on_nan = KILN_NAN_SKIP;
            else
                return bad(cmd, a, v);
        } else {
            known = 0;
        }
        if (!known) {
            if (!v && a[0] == '-' && a[1] == '-')
                fprintf(stderr, "kiln %s: option %s needs a value or is unknown\n\n", cmd, a);
            else
                fprintf(stderr, "kiln %s: unknown argument '%s'\n\n", cmd, a);
            if (train)
                train_usage(stderr);
            else
                eval_usage(stderr);
            return 2;
        }
        i++;
    }
    const char *missing = !o->model ? "--model" : !o->data ? "--data" : NULL;
    if (!missing && !train && kiln_cli_keras_weights_refused(cmd, o->model, o->checkpoint))
        return 2;
    if (!missing && !train) o->checkpoint = kiln_cli_default_checkpoint(o->model, o->checkpoint);
    if (!missing && !train && !o->checkpoint) missing = "--checkpoint";
    if (missing) {
        fprintf(stderr, "kiln %s: %s is required\n\n", cmd, missing);
        if (train)
            train_usage(stderr);
        else
            eval_usage(stderr);
        return 2;
    }
    if (train && o->val && o->val_split > 0) {
        fprintf(stderr, "kiln train: --val and --val-split exclude each other\n\n");
        train_usage(stderr);
        return 2;
    }
    return 0;
}

static kiln_status open_data(const char *path, kiln_split split, double frac, uint64_t seed,
                             kiln_dataset_t *out) {
    kiln_dataset_options o;
    kiln_dataset_options_init(&o);
    o.path = path;
    o.split = split;
    o.val_fraction = frac;
    o.split_seed = seed;
    return kiln_dataset_open(&o, out);
}

/* ---- progress ---- */

typedef struct progress_state {
    int tty;
    int open_line; /* a \r line is on the terminal */
    double last_draw;
} progress_state;

static void hms(double s, char *out, size_t n) {
    long t = s > 0 && s < 1e8 ? (long)(s + 0.5) : 0;
    if (t >= 3600)
        snprintf(out, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(out, n, "%ld:%02ld", t / 60, t % 60);
}

static void bar(const kiln_train_progress *p, char *out, size_t n) {
    enum { W = 30 };
    char b[W + 1];
    int filled = p->steps > 0 ? (int)((double)W * (double)p->step / (double)p->steps) : 0;
    for (int i = 0; i < W; i++) b[i] = i < filled ? '=' : i == filled ? '>' : '.';
    if (filled >= W) b[W - 1] = '=';
    b[W] = '\0';
    snprintf(out, n,
             "Epoch %d/%d [%s] %lld/%lld - loss %.4f - acc %.4f - %.0f img/s - data wait %.0f%%",
             p->epoch, p->epochs, b, (long long)p->step, (long long)p->steps, p->loss, p->acc,
             p->img_per_s, 100 * p->data_wait);
}

static void on_progress(void *user, const kiln_train_progress *p) {
    progress_state *s = user;
    char line[512], t[32];
    if (p->event == KILN_PROGRESS_MESSAGE || p->event == KILN_PROGRESS_INFO) {
        if (s->open_line) fputc('\n', stdout), s->open_line = 0;
        if (p->event == KILN_PROGRESS_INFO) {
            printf("%s\n", p->message);
        } else {
            fflush(stdout);
            fprintf(stderr, "kiln train: %s\n", p->message);
        }
        fflush(stdout);
        return;
    }
    if (p->event == KILN_PROGRESS_STEP) {
        if (!s->tty || (p->epoch_s - s->last_draw < 0.25 && p->step < p->steps)) return;
        s->last_draw = p->epoch_s;
        bar(p, line, sizeof line);
        hms(p->eta_s, t, sizeof t);
        printf("\r%s - ETA %s\033[K", line, t);
        s->open_line = 1;
        fflush(stdout);
        return;
    }
    bar(p, line, sizeof line);
    hms(p->epoch_s, t, sizeof t);
    printf("%s%s - %s", s->tty ? "\r" : "", line, t);
    if (p->has_val)
        printf(" - val_loss %.4f - val_acc %.4f - val_top5 %.4f", p->val_loss, p->val_acc,
               p->val_top5);
    printf("%s\n", s->tty ? "\033[K" : "");
    s->open_line = 0;
    s->last_draw = 0;
    fflush(stdout);
}

/* ---- commands ---- */

/* SIGINT/SIGTERM: the trainer finishes the step and checkpoints; a second signal kills. */
static volatile sig_atomic_t interrupted;
static void on_signal(int sig) {
    interrupted = sig;
    signal(sig, SIG_DFL);
}

typedef struct session {
    kiln_backend_t be;
    kiln_model_t model;
    kiln_dataset_t train, val;
    kiln_trainer_t tr;
} session;

static void session_free(session *s) {
    kiln_trainer_free(s->tr);
    kiln_dataset_free(s->train);
    kiln_dataset_free(s->val);
    kiln_model_free(s->model);
    kiln_backend_free(s->be);
}

/* The job's communicator (a world of one unless mpirun started kiln train). */
static kiln_dist_t dist;

static int fail(const char *cmd, session *s) {
    int rc = kiln_cli_dist_fail(dist, cmd);
    session_free(s);
    return rc;
}

/* Backend, model (finalized for the data's classes and channels), datasets, trainer. */
static int setup(const char *cmd, cli_opts *o, session *s) {
    memset(s, 0, sizeof *s);
    if (kiln_log_init_from_env() || kiln_backend_init_from_env(&s->be)) return fail(cmd, s);
    if (kiln_model_load(o->model, &s->model)) return fail(cmd, s);
    uint64_t seed = o->t.seed;
    kiln_split sp = o->val_split > 0 ? KILN_SPLIT_TRAIN : KILN_SPLIT_ALL;
    if (open_data(o->data, sp, o->val_split, seed, &s->train)) return fail(cmd, s);
    if (o->val_split > 0 && open_data(o->data, KILN_SPLIT_VAL, o->val_split, seed, &s->val))
        return fail(cmd, s);
    if (o->val && open_data(o->val, KILN_SPLIT_ALL, 0, seed, &s->val)) return fail(cmd, s);
    /* Evaluating Keras weights: the classes are the model's (its last Dense), which the
       evaluation checks the labels against; a test set may not hold every class. */
    int classes = strcmp(cmd, "eval") || !o->checkpoint || !kiln_is_keras_weights(o->checkpoint)
                      ? kiln_dataset_num_classes(s->train)
                      : 0;
    kiln_model_config cfg = {o->input_h, o->input_w,
                             o->input_c ? o->input_c : kiln_dataset_channels(s->train), classes,
                             o->t.batch};
    if (kiln_model_finalize(s->model, &cfg)) return fail(cmd, s);
    for (int i = 0; i < kiln_model_warning_count(s->model); i++)
        fprintf(stderr, "warning: %s\n", kiln_model_warning(s->model, i));
    if (kiln_trainer_create(s->model, s->be, &o->t, &s->tr)) return fail(cmd, s);
    return 0;
}

static void describe(session *s, const cli_opts *o) {
    kiln_model_totals tot;
    kiln_model_get_totals(s->model, &tot);
    const kiln_device_info *d = kiln_backend_device(s->be);
    printf("model %s: %lld parameters, input %dx%dx%d, %d classes\n", o->model,
           (long long)tot.params, tot.input_h, tot.input_w, tot.input_c, tot.classes);
    printf("backend %s on %s; device memory %.1f MiB\n", kiln_backend_name(s->be),
           d ? d->name : "host", (double)kiln_trainer_device_bytes(s->tr) / (1 << 20));
    printf("data %s (%zu images)", o->data, kiln_dataset_size(s->train));
    if (s->val)
        printf(", validation %s (%zu images)", o->val ? o->val : "split",
               kiln_dataset_size(s->val));
    const char *aug = kiln_trainer_augment(s->tr, 1);
    printf("\naugmentation: %s\n", *aug ? aug : "none");
    fflush(stdout);
}

int kiln_cmd_train(int argc, char **argv) {
    cli_opts o;
    memset(&o, 0, sizeof o);
    kiln_train_options_init(&o.t);
    int rc = parse_args("train", argc, argv, &o);
    if (rc) return rc == 1 ? 0 : 2;
    char out[1024];
    if (!o.t.out_dir) {
        const char *base = strrchr(o.model, '/');
        base = base ? base + 1 : o.model;
        snprintf(out, sizeof out, "runs/%.*s", (int)strcspn(base, "."), base);
        o.t.out_dir = out;
    }
    char command[4096];
    size_t len = 0;
    command[0] = '\0';
    for (int i = 0; i < argc && len + 1 < sizeof command; i++)
        len += (size_t)snprintf(command + len, sizeof command - len, "%s%s", i ? " " : "kiln ",
                                argv[i]);
    o.t.command = command;
    if (kiln_cli_dist_start("train", &dist)) return 1;
    kiln_dist_set_timeout(dist, o.mpi_timeout);
    int lead = kiln_dist_rank(dist) == 0, ranks = kiln_dist_size(dist);
    o.t.dist = dist;
    o.t.workers = kiln_cli_dist_workers(dist, o.t.workers);
    progress_state ps = {isatty(STDOUT_FILENO), 0, 0};
    o.t.progress = lead ? on_progress : NULL;
    o.t.user = &ps;
    o.t.interrupt = &interrupted;
    session s;
    rc = 1;
    if (setup("train", &o, &s)) goto done;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    if (o.checkpoint) {
        if (kiln_trainer_load(s.tr, o.checkpoint, 0)) {
            fail("train", &s);
            goto done;
        }
        if (lead) printf("resumed from %s\n", o.checkpoint);
    }
    if (lead) {
        describe(&s, &o);
        if (ranks > 1)
            printf("data parallel: %d ranks, %d images per rank per step\n", ranks,
                   o.t.batch / ranks);
        fflush(stdout);
    }
    kiln_fit_result r;
    if (kiln_trainer_fit(s.tr, s.train, s.val, &r)) {
        if (ps.open_line) putchar('\n');
        fail("train", &s);
        goto done;
    }
    if (ps.open_line) putchar('\n');
    if (r.stop == KILN_FIT_INTERRUPTED) {
        if (lead) {
            printf("trained %d epoch(s), %lld steps in %.1f s (%.0f img/s)\n", r.epochs_done,
                   (long long)r.global_step, r.seconds, r.img_per_s);
            printf("interrupted: %s/last.safetensors holds the exact position (--resume it)\n",
                   o.t.out_dir);
            printf("report: %s/report.html\n", o.t.out_dir);
        }
        session_free(&s);
        rc = 128 + (interrupted ? interrupted : SIGTERM);
        goto done;
    }
    if (lead)
        printf("trained %d epoch(s), %lld steps in %.1f s (%.0f img/s)\n", r.epochs_done,
               (long long)r.global_step, r.seconds, r.img_per_s);
    if (r.stop == KILN_FIT_NAN) {
        if (lead) printf("report: %s/report.html\n", o.t.out_dir);
        fprintf(stderr, "kiln train: stopped on a non-finite loss or gradient\n");
        session_free(&s);
        goto done;
    }
    if (s.val && !r.has_val) {
        kiln_eval_result e;
        if (kiln_trainer_evaluate(s.tr, s.val, &e)) {
            fail("train", &s);
            goto done;
        }
        r.val_acc = e.acc, r.val_top5 = e.top5, r.val_loss = e.loss, r.has_val = 1;
    }
    if (lead) {
        if (r.has_val)
            printf("test accuracy %.4f (top-5 %.4f, loss %.4f) on %zu images\n", r.val_acc,
                   r.val_top5, r.val_loss, kiln_dataset_size(s.val));
        char bp[1100];
        snprintf(bp, sizeof bp, "%s/best.safetensors", o.t.out_dir);
        int best = access(bp, F_OK) == 0;
        printf("checkpoints: %s/last.safetensors%s; log: %s/log.csv%s%s\n", o.t.out_dir,
               best ? " and best.safetensors" : "", o.t.out_dir,
               o.t.log_grad_norms ? ", grad-norms.csv" : "", o.t.log_steps ? ", steps.csv" : "");
        printf("report: %s/report.html\n", o.t.out_dir);
    }
    session_free(&s);
    rc = 0;
done:
    kiln_dist_finalize(dist);
    dist = NULL;
    return rc;
}

int kiln_cmd_eval(int argc, char **argv) {
    cli_opts o;
    memset(&o, 0, sizeof o);
    kiln_train_options_init(&o.t);
    int rc = parse_args("eval", argc, argv, &o);
    if (rc) return rc == 1 ? 0 : 2;
    session s;
    if (setup("eval", &o, &s)) return 1;
    if (kiln_trainer_load(s.tr, o.checkpoint, 1)) return fail("eval", &s);
    kiln_eval_result e;
    if (kiln_trainer_evaluate(s.tr, s.train, &e)) return fail("eval", &s);
    printf("%s on %s: accuracy %.4f, top-5 %.4f, loss %.4f (%lld images, %.0f img/s)\n",
           o.checkpoint, o.data, e.acc, e.top5, e.loss, (long long)e.samples, e.img_per_s);
    session_free(&s);
    return 0;
}
