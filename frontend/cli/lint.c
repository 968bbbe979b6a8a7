/* `kiln lint`: loads models (zoo names, kiln model files, Keras .keras archives and
   model.to_json() files) and runs the lint of kiln_model_finalize on each: errors and
   warnings on stdout, a count per model, exit 1 when any model has an error. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "kiln/kiln.h"
#include "kiln/model.h"

static void usage(FILE *f) {
    fprintf(f, "usage: kiln lint [--input HxWxC] [--classes N] [--strict] MODEL...\n"
               "\n"
               "Loads each model and runs kiln's lint: unused nodes (augmentation or rescaling\n"
               "applied but never read), raw 0-255 pixels reaching a convolution, input far from\n"
               "unit scale, shapes. Prints the errors and warnings; exits 1 when a model has an\n"
               "error (with --strict, a warning too), 2 on a usage error.\n"
               "\n"
               "  MODEL          a zoo name, a model file (frontend/MODEL-FORMAT.md), a Keras\n"
               "                 model.keras or the .json of model.to_json()\n"
               "  --input HxWxC  input size (default: the model's)\n"
               "  --classes N    number of classes (default: the model's)\n"
               "  --strict       warnings fail too\n");
}

static int is_keras(const char *path) {
    size_t n = strlen(path);
    return (n > 6 && !strcmp(path + n - 6, ".keras")) || (n > 5 && !strcmp(path + n - 5, ".json"));
}

int kiln_cli_keras_weights_refused(const char *cmd, const char *model, const char *checkpoint) {
    size_t n = strlen(model);
    /* A .keras archive holds its weights: it is its own checkpoint. The .json of
       model.to_json() has none. */
    if (checkpoint || !(n > 5 && !strcmp(model + n - 5, ".json"))) return 0;
    fprintf(stderr,
            "kiln %s: %s is a Keras graph without weights, so %s needs a checkpoint: the .keras "
            "file of model.save() (--checkpoint model.keras), a .weights.h5 of "
            "model.save_weights(), or one written by 'kiln train --model %s --data ...' "
            "(--checkpoint runs/.../best.safetensors)\n",
            cmd, model, cmd, model);
    return 1;
}

const char *kiln_cli_default_checkpoint(const char *model, const char *checkpoint) {
    size_t n = model ? strlen(model) : 0;
    if (checkpoint || !(n > 6 && !strcmp(model + n - 6, ".keras"))) return checkpoint;
    return model;
}

/* 1 on an error (or a warning under strict), 0 when clean. */
static int lint_one(const char *path, const kiln_model_config *cfg, int strict) {
    kiln_model_t m;
    if (kiln_model_load(path, &m)) {
        printf("error: %s\n%s: 1 error\n", kiln_last_error(), path);
        return 1;
    }
    kiln_status st = kiln_model_finalize(m, cfg);
    int errors = st != KILN_OK, warnings = kiln_model_warning_count(m), raw = 0;
    if (st) printf("error: %s\n", kiln_last_error());
    for (int i = 0; i < warnings; i++) {
        const char *w = kiln_model_warning(m, i);
        printf("warning: %s\n", w);
        raw |= strstr(w, "reads raw integer-range input") != NULL;
    }
    /* The story's mistake in a Keras file: keras.Model(inputs, outputs) keeps only the layers
       that lead to the outputs, so a Rescaling or augmentation whose output was never used is
       in neither model.layers nor the .keras file; only its effect, raw pixels at the first
       layer, is left to see here. */
    if (raw && !errors && is_keras(path))
        printf("note: Keras leaves layers whose output is never used out of the model and its "
               "file: if the code applies a Rescaling or augmentation to the input that the "
               "first layer does not read, write the graph with "
               "kiln_keras.save_graph(model, \"model.json\") (frontend/keras/kiln_keras.py) and "
               "lint that: it names them\n");
    printf("%s: %d error%s, %d warning%s\n", path, errors, errors == 1 ? "" : "s", warnings,
           warnings == 1 ? "" : "s");
    kiln_model_free(m);
    return errors || (strict && warnings);
}

int kiln_cmd_lint(int argc, char **argv) {
    kiln_model_config cfg = {0};
    int strict = 0, n_models = 0, bad = 0;
    const char *models[256];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long n;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--strict")) {
            strict = 1;
        } else if (!strcmp(a, "--input") && v &&
                   !kiln_cli_parse_input(v, &cfg.input_h, &cfg.input_w, &cfg.input_c)) {
            i++;
        } else if (!strcmp(a, "--classes") && v && !kiln_cli_parse_int(v, 1, 1 << 24, &n)) {
            cfg.classes = (int)n;
            i++;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "kiln lint: unknown or bad option '%s'\n\n", a);
            usage(stderr);
            return 2;
        } else if (n_models == (int)(sizeof models / sizeof *models)) {
            fprintf(stderr, "kiln lint: more than %d models\n", n_models);
            return 2;
        } else {
            models[n_models++] = a;
        }
    }
    if (!n_models) {
        fprintf(stderr, "kiln lint: no model given\n\n");
        usage(stderr);
        return 2;
    }
    for (int i = 0; i < n_models; i++) bad |= lint_one(models[i], &cfg, strict);
    return bad;
}
