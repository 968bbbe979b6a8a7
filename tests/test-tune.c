/* auto's measurement (runtime/tune.c) on candidates whose run times this test sets: the
   fastest wins, a slow spell of the machine while one candidate is being timed does not
   decide, and a clearly slower candidate stops after its first timed run. The times are
   sleeps 3x or more apart, so a loaded machine's jitter does not change the outcome. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend-impl.h"
#include "check.h"

enum { MAX_CAND = 3 };

static double cand_ms[MAX_CAND]; /* each candidate's run time */
static int cand_runs[MAX_CAND];  /* its runs so far */
static int calls;                /* runs of any candidate so far */
static int slow_calls;           /* the first slow_calls runs take 40 ms more */

static void sleep_ms(double ms) {
    struct timespec ts = {(time_t)(ms / 1e3),
                          (long)((ms - 1e3 * (double)(time_t)(ms / 1e3)) * 1e6)};
    while (nanosleep(&ts, &ts)) {
    }
}

static kiln_status run(int c) {
    cand_runs[c]++;
    sleep_ms(cand_ms[c] + (calls++ < slow_calls ? 40 : 0));
    return KILN_OK;
}
static kiln_status cand0(kiln_backend_t be, kiln_tensor *dst) {
    (void)be, (void)dst;
    return run(0);
}
static kiln_status cand1(kiln_backend_t be, kiln_tensor *dst) {
    (void)be, (void)dst;
    return run(1);
}
static kiln_status cand2(kiln_backend_t be, kiln_tensor *dst) {
    (void)be, (void)dst;
    return run(2);
}

/* Measures one shape among n candidates with the given times; returns the one auto chose
   (by the name it ran), -1 on failure. */
static int choose(int n, const double *ms, int slow) {
    static kiln_op_fn fns[MAX_CAND] = {cand0, cand1, cand2};
    static const char *names[MAX_CAND] = {"own", "other", "slow"};
    kiln_backend_t be;
    if (kiln_backend_init("cpu", NULL, &be)) return -1;
    int chosen = -1;
    if (!kiln_tuner_init(be)) {
        for (int c = 0; c < n; c++) {
            if (kiln_tuner_add(be, KILN_OP_ADD, fns[c], NULL, names[c])) {
                kiln_backend_free(be);
                return -1;
            }
            cand_ms[c] = ms[c];
            cand_runs[c] = 0;
        }
        calls = 0;
        slow_calls = slow;
        kiln_tensor t;
        int64_t shape[1] = {16};
        if (!kiln_tensor_alloc(&t, be, KILN_F32, 1, shape)) {
            t.op = KILN_OP_ADD;
            if (!kiln_auto_dispatch(be, &t))
                for (int c = 0; c < n; c++)
                    if (be->ran && !strcmp(be->ran, names[c])) chosen = c;
            kiln_tensor_release(&t);
        }
    }
    kiln_backend_free(be);
    return chosen;
}

/* An op takes KILN_TUNE_MAX candidates; one more is an error, not a candidate dropped
   unmeasured. */
static void check_capacity(void) {
    kiln_backend_t be;
    if (kiln_backend_init("cpu", NULL, &be) || kiln_tuner_init(be)) {
        CHECK(0, "a cpu backend with a tuner: %s", kiln_last_error());
        return;
    }
    int added = 0;
    while (added < KILN_TUNE_MAX && !kiln_tuner_add(be, KILN_OP_ADD, cand0, NULL, "own")) added++;
    CHECK(added == KILN_TUNE_MAX, "%d candidates added of %d", added, KILN_TUNE_MAX);
    kiln_status st = kiln_tuner_add(be, KILN_OP_ADD, cand1, NULL, "other");
    CHECK(st == KILN_INTERNAL && strstr(kiln_last_error(), "more than"),
          "one candidate too many is an internal error (%d: %s)", (int)st, kiln_last_error());
    kiln_backend_free(be);
}

int main(void) {
    setenv("KILN_CACHE_DIR", "off", 1);
    check_capacity();

    const double own_fast[2] = {2, 6}, other_fast[2] = {6, 2};
    CHECK(choose(2, own_fast, 0) == 0, "the faster (kiln's own) wins");
    CHECK(choose(2, other_fast, 0) == 1, "the faster (another) wins");

    /* The machine is slow for the first 4 runs: kiln's own warm-up and its first timed run
       and the other's warm-up and first run. Timed one candidate after the other, kiln's own
       would have lost all its runs to it. */
    CHECK(choose(2, own_fast, 4) == 0, "a slow spell at the start does not decide (ran %d, %d)",
          cand_runs[0], cand_runs[1]);
    CHECK(cand_runs[0] == 5 && cand_runs[1] == 4,
          "own: warm-up, 3 rounds and the chosen run (%d); other: warm-up and 3 rounds (%d)",
          cand_runs[0], cand_runs[1]);

    /* A candidate 5x slower than the best first round stops after it. */
    const double with_slow[3] = {2, 6, 30};
    CHECK(choose(3, with_slow, 0) == 0, "the fastest of three wins");
    CHECK(cand_runs[2] == 2, "the slow candidate ran its warm-up and one round only (%d)",
          cand_runs[2]);
    CHECK(cand_runs[1] == 4, "the other ran its warm-up and 3 rounds (%d)", cand_runs[1]);
    return check_done();
}
