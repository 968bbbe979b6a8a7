/* `kiln predict`: the top-k classes of images under a checkpoint written by kiln train. Each
   JPEG takes the evaluation loader's path (kiln_trainer_prepare_jpeg: the data pipeline's
   decoder and the eval transform); the model runs in eval mode. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kiln-util.h"
#include "kiln/checkpoint.h"
#include "kiln/kiln.h"
#include "kiln/model.h"
#include "kiln/train.h"

/* The data pipeline's default limit against hostile files. */
#define MAX_FILE_BYTES ((long)64 << 20)

static void usage(FILE *f) {
    fprintf(f, "usage: kiln predict --model M --checkpoint CKPT [--top K] [--input HxW[xC]]\n"
               "                    [--batch N] [--json] IMAGE...\n"
               "\n"
               "Prints the top-K classes with their probabilities for each JPEG image, using a\n"
               "checkpoint written by kiln train (class names come from the checkpoint; older\n"
               "checkpoints without them show class indices). Images get the evaluation\n"
               "transform (resize / center crop to the model's input, gray or RGB as the model\n"
               "reads); dropout and augmentation are skipped. A file that cannot be read is\n"
               "named on stderr, the others are still predicted, and the exit code is 1.\n"
               "\n"
               "  --model NAME|FILE  the model the checkpoint was trained with\n"
               "  --checkpoint CKPT  e.g. runs/vgg16-narrow/best.safetensors, or a Keras\n"
               "                     model.keras / .weights.h5 (default for a --model\n"
               "                     model.keras: its own weights)\n"
               "  --top K            classes shown per image (default 5)\n"
               "  --input HxW[xC]    model input size (default: the checkpoint's)\n"
               "  --batch N          images per forward pass (default 32)\n"
               "  --json             instead, a JSON object per image and line: image, shape\n"
               "                     [H, W, C], pixels (the bytes the model read, HWC, after\n"
               "                     the eval transform) and every class's probability to\n"
               "                     float precision: the same input for an exported ONNX model\n"
               "\n"
               "environment: KILN_BACKEND, KILN_DEVICE (kiln devices --help)\n");
}

static int usage_error(const char *what, const char *arg) {
    fprintf(stderr, "kiln predict: %s '%s'\n\n", what, arg ? arg : "(missing)");
    usage(stderr);
    return 2;
}

/* The bytes of one file (malloc'ed). */
static kiln_status read_file(const char *path, uint8_t **buf, size_t *n) {
    *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return kiln_error(KILN_IO, "cannot open: %s", strerror(errno));
    long len = fseek(f, 0, SEEK_END) ? -1 : ftell(f);
    if (len > 0 && len <= MAX_FILE_BYTES) *buf = malloc((size_t)len);
    int ok = *buf && !fseek(f, 0, SEEK_SET) && fread(*buf, 1, (size_t)len, f) == (size_t)len;
    fclose(f);
    if (ok) {
        *n = (size_t)len;
        return KILN_OK;
    }
    free(*buf);
    *buf = NULL;
    if (len == 0) return kiln_error(KILN_CORRUPT, "empty file");
    if (len > MAX_FILE_BYTES)
        return kiln_error(KILN_CORRUPT, "larger than the %ld-byte limit", MAX_FILE_BYTES);
    return kiln_error(KILN_IO, "cannot read: %s", strerror(errno));
}

typedef struct predict_opts {
    const char *model, *checkpoint;
    long long top, batch;
    int h, w, c, json;
    const char **images;
    int nimages;
} predict_opts;

/* 0: parsed; 1: --help printed; 2: usage error printed. */
static int parse(int argc, char **argv, predict_opts *o) {
    o->top = 5, o->batch = 32;
    int only_files = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (only_files || a[0] != '-' || !a[1]) {
            o->images[o->nimages++] = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            only_files = 1;
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(a, "--json")) {
            o->json = 1;
            continue;
        }
        int known = !strcmp(a, "--model") || !strcmp(a, "--checkpoint") || !strcmp(a, "--top") ||
                    !strcmp(a, "--input") || !strcmp(a, "--batch");
        if (!known) return usage_error("unknown argument", a);
        if (!v) return usage_error("missing value for", a);
        i++;
        if (!strcmp(a, "--model"))
            o->model = v;
        else if (!strcmp(a, "--checkpoint"))
            o->checkpoint = v;
        else if (!strcmp(a, "--top")     ? kiln_cli_parse_int(v, 1, 100000, &o->top)
                 : !strcmp(a, "--batch") ? kiln_cli_parse_int(v, 1, 4096, &o->batch)
                                         : kiln_cli_parse_input(v, &o->h, &o->w, &o->c))
            return usage_error("bad value for", a);
    }
    if (o->model && kiln_cli_keras_weights_refused("predict", o->model, o->checkpoint)) return 2;
    if (o->model) o->checkpoint = kiln_cli_default_checkpoint(o->model, o->checkpoint);
    const char *missing = !o->model ? "--model" : !o->checkpoint ? "--checkpoint" : NULL;
    if (missing) return usage_error("missing required option", missing);
    if (!o->nimages) return usage_error("no image given", "IMAGE...");
    return 0;
}

typedef struct predictor {
    kiln_backend_t be;
    kiln_model_t model;
    kiln_trainer_t tr;
    char *augment; /* the trainer borrows it */
} predictor;

static void predictor_free(predictor *p) {
    kiln_trainer_free(p->tr);
    free(p->augment);
    kiln_model_free(p->model);
    kiln_backend_free(p->be);
}

kiln_status kiln_cli_checkpoint_shape(const char *path, int *height, int *width, int *channels,
                                      int *classes) {
    char *cls = NULL, *input = NULL;
    kiln_status st = kiln_checkpoint_metadata(path, "classes", &cls);
    if (!st) st = kiln_checkpoint_metadata(path, "input", &input);
    long long k = 0;
    int h = 0, w = 0, c = 0;
    if (!st && (!cls || kiln_cli_parse_int(cls, 1, 1 << 24, &k) || !input ||
                kiln_cli_parse_input(input, &h, &w, &c)))
        st = kiln_error(
            KILN_CORRUPT,
            "checkpoint %s: no 'classes' / 'input' metadata (not written by kiln train?)", path);
    free(cls);
    free(input);
    if (st) return st;
    if (!*classes) *classes = (int)k;
    if (!*height) *height = h, *width = w;
    if (!*channels) *channels = c;
    return KILN_OK;
}

static kiln_status setup(predict_opts *o, predictor *p) {
    memset(p, 0, sizeof *p);
    int classes = 0, keras = kiln_is_keras_weights(o->checkpoint);
    /* Keras weights: the input size and classes are the model's own. */
    kiln_status st =
        keras ? KILN_OK : kiln_cli_checkpoint_shape(o->checkpoint, &o->h, &o->w, &o->c, &classes);
    if (!st) st = kiln_backend_init_from_env(&p->be);
    if (!st) st = kiln_model_load(o->model, &p->model);
    int batch = o->nimages < o->batch ? o->nimages : (int)o->batch;
    kiln_model_config cfg = {o->h, o->w, o->c, classes, batch};
    if (!st) st = kiln_model_finalize(p->model, &cfg);
    kiln_train_options to;
    kiln_train_options_init(&to);
    to.batch = batch;
    if (!st && !keras) st = kiln_checkpoint_metadata(o->checkpoint, "augment", &p->augment);
    /* The spec the trainer used, so the eval transform is the one validation saw. */
    to.augment = p->augment;
    if (!st) st = kiln_trainer_create(p->model, p->be, &to, &p->tr);
    if (!st) st = kiln_trainer_load(p->tr, o->checkpoint, 1);
    return st;
}

static void print_top(kiln_trainer_t t, const char *path, const float *probs, int classes,
                      int top) {
    printf("%s\n", path);
    int *order = malloc(sizeof *order * (size_t)classes);
    if (!order) return;
    for (int k = 0; k < classes; k++) order[k] = k;
    for (int r = 0; r < top && r < classes; r++) {
        int best = r; /* a partial selection sort: top is small */
        for (int k = r + 1; k < classes; k++)
            if (probs[order[k]] > probs[order[best]]) best = k;
        int tmp = order[r];
        order[r] = order[best], order[best] = tmp;
        const char *name = kiln_trainer_class_name(t, order[r]);
        if (name)
            printf("  %.4f  %s\n", (double)probs[order[r]], name);
        else
            printf("  %.4f  class %d\n", (double)probs[order[r]], order[r]);
    }
    free(order);
}

/* A JSON string: quotes, backslashes and control characters escaped, other bytes as given. */
static void print_json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

/* --json: %.9g round-trips a float. */
static void print_json(const char *path, const uint8_t *px, int h, int w, int c, const float *probs,
                       int classes) {
    printf("{\"image\": ");
    print_json_string(path);
    printf(", \"shape\": [%d, %d, %d], \"pixels\": [", h, w, c);
    size_t n = (size_t)h * (size_t)w * (size_t)c;
    for (size_t k = 0; k < n; k++) printf(k ? ",%u" : "%u", (unsigned)px[k]);
    printf("], \"probabilities\": [");
    for (int k = 0; k < classes; k++) printf(k ? ", %.9g" : "%.9g", (double)probs[k]);
    printf("]}\n");
}

int kiln_cmd_predict(int argc, char **argv) {
    predict_opts o;
    memset(&o, 0, sizeof o);
    o.images = malloc(sizeof *o.images * (size_t)(argc > 0 ? argc : 1));
    if (!o.images) return 1;
    int rc = parse(argc, argv, &o);
    if (rc) {
        free(o.images);
        return rc == 1 ? 0 : 2;
    }
    predictor p;
    if (setup(&o, &p)) {
        fprintf(stderr, "kiln predict: %s\n", kiln_last_error());
        predictor_free(&p);
        free(o.images);
        return 1;
    }
    int h, w, c, classes;
    kiln_trainer_input(p.tr, &h, &w, &c, &classes);
    size_t per = (size_t)h * (size_t)w * (size_t)c;
    int batch = o.nimages < o.batch ? o.nimages : (int)o.batch, failed = 0;
    uint8_t *images = malloc(per * (size_t)batch);
    float *probs = malloc(sizeof *probs * (size_t)classes * (size_t)batch);
    const char **names = malloc(sizeof *names * (size_t)batch);
    if (!images || !probs || !names) rc = 1;
    for (int next = 0; next < o.nimages && !rc;) {
        int n = 0; /* a batch of the images that decode */
        for (; next < o.nimages && n < batch; next++) {
            uint8_t *jpg = NULL;
            size_t len = 0;
            kiln_status st = read_file(o.images[next], &jpg, &len);
            if (!st) st = kiln_trainer_prepare_jpeg(p.tr, jpg, len, images + per * (size_t)n);
            free(jpg);
            if (st) {
                fprintf(stderr, "kiln predict: %s: %s\n", o.images[next], kiln_last_error());
                failed++;
                continue;
            }
            names[n++] = o.images[next];
        }
        if (n && kiln_trainer_predict(p.tr, images, n, probs)) {
            fprintf(stderr, "kiln predict: %s\n", kiln_last_error());
            rc = 1;
        }
        for (int i = 0; i < n && !rc; i++) {
            const float *pi = probs + (size_t)classes * (size_t)i;
            if (o.json)
                print_json(names[i], images + per * (size_t)i, h, w, c, pi, classes);
            else
                print_top(p.tr, names[i], pi, classes, (int)o.top);
        }
    }
    if (!rc && failed)
        fprintf(stderr, "kiln predict: %d of %d image(s) could not be read\n", failed, o.nimages);
    free(images);
    free(probs);
    free(names);
    free(o.images);
    predictor_free(&p);
    return rc || failed ? 1 : 0;
}
