/* kiln_trainer_step, the step-level entry point benchmarks and custom loops use: repeated
   steps on one batch drive its loss down (so the update happens), two trainers from the same
   seed take bit-identical steps, and lr 0 leaves the loss where it was. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "kiln/kiln.h"
#include "kiln/model.h"
#include "kiln/train.h"

enum { N = 8, S = 6, K = 3 };

static const char *MODEL = "image = input(shape=6x6x1, dtype=u8)\n"
                           "scaled = rescale(image, scale=1/255)\n"
                           "f = flatten(scaled)\n"
                           "h = dense(f, units=8)\n"
                           "r = relu(h)\n"
                           "logits = dense(r, units={classes})\n"
                           "output(logits)\n";

typedef struct {
    kiln_model_t m;
    kiln_trainer_t t;
} run;

static kiln_status start(run *r, kiln_backend_t be) {
    memset(r, 0, sizeof *r);
    kiln_train_options o;
    kiln_train_options_init(&o);
    o.batch = N;
    o.augment = "none";
    kiln_status st = kiln_model_parse_string(MODEL, "step.kiln", &r->m);
    kiln_model_config cfg = {0, 0, 0, K, N};
    if (!st) st = kiln_model_finalize(r->m, &cfg);
    if (!st) st = kiln_trainer_create(r->m, be, &o, &r->t);
    return st;
}

static void stop(run *r) {
    kiln_trainer_free(r->t);
    kiln_model_free(r->m);
}

int main(void) {
    kiln_backend_t be;
    if (kiln_backend_init("cpu", NULL, &be)) {
        printf("FAIL: cpu backend: %s\n", kiln_last_error());
        return 1;
    }
    uint8_t images[N * S * S];
    int32_t labels[N];
    for (int i = 0; i < N * S * S; i++) images[i] = (uint8_t)((i * 37 + 11) % 256);
    for (int i = 0; i < N; i++) labels[i] = i % K;

    run a, b;
    CHECK(!start(&a, be) && !start(&b, be), "trainers");
    double first = 0, loss = 0, lb = 0;
    int identical = 1;
    for (int s = 0; s < 40; s++) {
        CHECK(!kiln_trainer_step(a.t, images, labels, 0.1, &loss), "step %d", s);
        CHECK(!kiln_trainer_step(b.t, images, labels, 0.1, &lb), "step %d (second trainer)", s);
        identical &= loss == lb;
        if (!s) first = loss;
    }
    CHECK(isfinite(first) && fabs(first - log(K)) < 0.5, "first loss %.4f near ln(%d)", first, K);
    CHECK(loss < 0.5 * first, "40 steps on one batch: loss %.4f -> %.4f", first, loss);
    CHECK(identical, "two trainers from one seed take identical steps");

    double before = 0, after = 0;
    CHECK(!kiln_trainer_step(a.t, images, labels, 0.0, &before), "lr 0 step");
    CHECK(!kiln_trainer_step(a.t, images, labels, 0.0, &after), "lr 0 step");
    CHECK(fabs(after - before) <= 1e-6 * fabs(before), "lr 0 updates nothing: %.7f -> %.7f", before,
          after);
    stop(&a);
    stop(&b);
    kiln_backend_free(be);
    return check_done();
}
