/* The trainer's options: defaults, and the names of optimizers and schedules as the CLI, the
   checkpoint metadata and the report spell them. */
#include <string.h>

#include "kiln/train.h"

void kiln_train_options_init(kiln_train_options *o) {
    memset(o, 0, sizeof *o);
    o->batch = 64;
    o->epochs = 10;
    o->optimizer = KILN_OPTIM_SGD;
    o->momentum = 0.9f;
    o->weight_decay = -1;
    o->beta1 = 0.9f;
    o->beta2 = 0.999f;
    o->eps = 1e-8f;
    o->step_gamma = 0.1f;
    o->seed = 1;
}

static const char *const optim_names[] = {"sgd", "adam", "adamw"};
static const char *const sched_names[] = {"constant", "step", "cosine"};

static int name_index(const char *const *names, int n, const char *name) {
    for (int i = 0; name && i < n; i++)
        if (!strcmp(names[i], name)) return i;
    return -1;
}

const char *kiln_optim_name(kiln_optim_kind k) {
    return (unsigned)k < 3 ? optim_names[k] : "?";
}

int kiln_optim_parse(const char *name, kiln_optim_kind *k) {
    int i = name_index(optim_names, 3, name);
    if (i >= 0) *k = (kiln_optim_kind)i;
    return i >= 0 ? 0 : -1;
}

const char *kiln_sched_name(kiln_sched_kind k) {
    return (unsigned)k < 3 ? sched_names[k] : "?";
}

int kiln_sched_parse(const char *name, kiln_sched_kind *k) {
    int i = name_index(sched_names, 3, name);
    if (i >= 0) *k = (kiln_sched_kind)i;
    return i >= 0 ? 0 : -1;
}
