/* The trainer's checkpoints (safetensors: parameters, running statistics, optimizer state,
   position and metadata, kiln/train.h) and the class names they carry. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/backend-impl.h"
#include "kiln/checkpoint.h"
#include "train-impl.h"

#define FORMAT "kiln-train-1"

static kiln_status oom(void) {
    return kiln_error(KILN_OUT_OF_MEMORY, "trainer: out of host memory");
}

const char *kiln_trainer_class_name(kiln_trainer_t t, int cls) {
    return cls >= 0 && cls < t->nclass_names ? t->class_list[cls] : NULL;
}

/* Keeps the '\n'-separated class names for the checkpoint and kiln_trainer_class_name. */
static kiln_status set_class_names(struct kiln_trainer *t, const char *joined) {
    size_t len = strlen(joined);
    int n = 1;
    for (const char *c = joined; *c; c++) n += *c == '\n';
    char *copy = malloc(len + 1);
    char **list = malloc(sizeof *list * (size_t)n + len + 1);
    if (!copy || !list) {
        free(copy);
        free(list);
        return oom();
    }
    memcpy(copy, joined, len + 1);
    char *split = (char *)(list + n);
    memcpy(split, joined, len + 1);
    for (int k = 0; k < n; k++) {
        list[k] = split;
        split += strcspn(split, "\n");
        if (*split) *split++ = '\0';
    }
    free(t->class_names);
    free(t->class_list);
    t->class_names = copy, t->class_list = list, t->nclass_names = n;
    return KILN_OK;
}

/* The training data's class names (a newline inside a name becomes a space). */
kiln_status kt_names_from_data(struct kiln_trainer *t, kiln_dataset_t ds) {
    int n = kiln_dataset_num_classes(ds);
    size_t len = 1;
    for (int k = 0; k < n; k++) len += strlen(kiln_dataset_class_name(ds, k)) + 1;
    char *joined = malloc(len), *w = joined;
    if (!joined) return oom();
    for (int k = 0; k < n; k++) {
        const char *name = kiln_dataset_class_name(ds, k);
        for (const char *c = name; *c; c++) *w++ = *c == '\n' ? ' ' : *c;
        if (k + 1 < n) *w++ = '\n';
    }
    *w = '\0';
    kiln_status st = n > 0 ? set_class_names(t, joined) : KILN_OK;
    free(joined);
    return st;
}

/* ---- checkpoints ---- */

/* Parameters, running statistics and (unless weights_only) the optimizer state. */
static int ckpt_list(struct kiln_trainer *t, kiln_ckpt_tensor *list, int weights_only) {
    int n = 0;
    for (int k = 0; k < t->nparams; k++)
        list[n++] = (kiln_ckpt_tensor){t->params[k].name, t->params[k].train};
    for (int k = 0; k < t->nbns; k++)
        list[n++] = (kiln_ckpt_tensor){t->bns[k].name, t->bns[k].running};
    if (weights_only) return n;
    int sgd = t->o.optimizer == KILN_OPTIM_SGD;
    list[n++] = (kiln_ckpt_tensor){sgd ? "optimizer.velocity" : "optimizer.m", &t->opt_a};
    if (!sgd) list[n++] = (kiln_ckpt_tensor){"optimizer.v", &t->opt_b};
    return n;
}

kiln_status kiln_trainer_save(kiln_trainer_t t, const char *path) {
    kiln_ckpt_tensor *list = malloc(sizeof *list * (size_t)(t->nparams + t->nbns + 2));
    if (!list) return oom();
    int n = ckpt_list(t, list, 0);
    char epoch[32], step[32], gstep[32], seed[32], adam_t[32], classes[16], input[64], best[32];
    snprintf(epoch, sizeof epoch, "%lld", (long long)t->epoch);
    snprintf(step, sizeof step, "%lld", (long long)t->step);
    snprintf(gstep, sizeof gstep, "%lld", (long long)t->global_step);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)t->o.seed);
    snprintf(adam_t, sizeof adam_t, "%lld", (long long)t->adam_t);
    snprintf(classes, sizeof classes, "%d", t->classes);
    snprintf(input, sizeof input, "%dx%dx%d", t->in_h, t->in_w, t->in_c);
    snprintf(best, sizeof best, "%.6f", t->best_val_acc);
    const char *meta[] = {"format",
                          FORMAT,
                          "model",
                          kiln_model_file(t->model),
                          "epoch",
                          epoch,
                          "step",
                          step,
                          "global_step",
                          gstep,
                          "seed",
                          seed,
                          "optimizer",
                          kiln_optim_name(t->o.optimizer),
                          "adam_t",
                          adam_t,
                          "classes",
                          classes,
                          "input",
                          input,
                          "best_val_acc",
                          best,
                          "augment",
                          t->augment_train,
                          t->class_names ? "class_names" : NULL,
                          t->class_names,
                          NULL};
    kiln_status st = kiln_checkpoint_save(path, list, n, meta);
    free(list);
    return st;
}

static kiln_status meta_int(const char *path, const char *key, int64_t *out) {
    char *v = NULL;
    kiln_status st = kiln_checkpoint_metadata(path, key, &v);
    if (st) return st;
    char *end = NULL;
    errno = 0;
    long long x = v ? strtoll(v, &end, 10) : 0;
    int bad = !v || end == v || *end || errno;
    free(v);
    if (bad)
        return kiln_error(KILN_CORRUPT, "checkpoint %s: metadata '%s' is missing or not a number",
                          path, key);
    *out = x;
    return KILN_OK;
}

kiln_status kiln_trainer_load(kiln_trainer_t t, const char *path, int weights_only) {
    t->dist.synced = 0; /* ranks take rank 0's copy again before the next step */
    if (kt_is_keras_weights(path)) {
        if (!weights_only)
            return kiln_error(KILN_INVALID_ARGUMENT,
                              "%s: Keras weights hold no optimizer state or position: resume from "
                              "a checkpoint written by kiln train",
                              path);
        return kt_load_keras_weights(t, path);
    }
    char *fmt = NULL, *opt = NULL;
    kiln_status st = kiln_checkpoint_metadata(path, "format", &fmt);
    if (!st && (!fmt || strcmp(fmt, FORMAT)))
        st = kiln_error(KILN_CORRUPT, "checkpoint %s: not a kiln training checkpoint (format %s)",
                        path, fmt ? fmt : "missing");
    if (!st && !weights_only) {
        st = kiln_checkpoint_metadata(path, "optimizer", &opt);
        if (!st && (!opt || strcmp(opt, kiln_optim_name(t->o.optimizer))))
            st = kiln_error(KILN_INVALID_ARGUMENT,
                            "checkpoint %s: written with optimizer %s, resuming with %s", path,
                            opt ? opt : "?", kiln_optim_name(t->o.optimizer));
    }
    free(fmt);
    free(opt);
    if (st) return st;
    kiln_ckpt_tensor *list = malloc(sizeof *list * (size_t)(t->nparams + t->nbns + 2));
    if (!list) return oom();
    int n = ckpt_list(t, list, weights_only);
    st = kiln_checkpoint_load(path, list, n);
    free(list);
    char *names = NULL;
    if (!st) st = kiln_checkpoint_metadata(path, "class_names", &names);
    if (!st && names) st = set_class_names(t, names);
    free(names);
    if (st || weights_only) return st;
    int64_t e, s, g, a;
    if ((st = meta_int(path, "epoch", &e)) || (st = meta_int(path, "step", &s)) ||
        (st = meta_int(path, "global_step", &g)) || (st = meta_int(path, "adam_t", &a)))
        return st;
    t->epoch = e, t->step = s, t->global_step = g, t->adam_t = a;
    char *best = NULL;
    if (!kiln_checkpoint_metadata(path, "best_val_acc", &best) && best)
        t->best_val_acc = strtod(best, NULL);
    free(best);
    return KILN_OK;
}
