/* The auto backend: the first time an op sees a shape on a device, each eligible
   implementation (kiln's own kernels, CLBlast) is timed on a scratch destination and the
   fastest is kept, in memory and on disk (cache dir "tuning", one file per device and
   driver), so later calls and later processes pay nothing. Within noise the simpler
   implementation (kiln's own) wins. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops-impl.h"

#define NOISE 1.05 /* a candidate must be 5% faster to displace kiln's own */

struct kiln_tune_entry {
    uint64_t key;
    int choice; /* index into the op's candidates */
};

struct kiln_tuner {
    kiln_op_fn cand[KILN_OP_COUNT][KILN_TUNE_MAX];
    const char *cand_name[KILN_OP_COUNT][KILN_TUNE_MAX];
    kiln_supports_fn cand_supports[KILN_OP_COUNT][KILN_TUNE_MAX];
    int ncand[KILN_OP_COUNT];
    struct kiln_tune_entry *table; /* open addressing, key 0 = empty */
    size_t cap, used;
    char path[4400]; /* persisted choices; empty when the cache is off */
};

static uint64_t shape_key(const kiln_tensor *dst) {
    uint64_t h = kiln_hash64(KILN_HASH_INIT, &dst->op, sizeof dst->op);
    const kiln_tensor *ts[KILN_MAX_SRC + 1] = {dst};
    for (int i = 0; i < KILN_MAX_SRC; i++) ts[i + 1] = dst->src[i];
    for (int i = 0; i <= KILN_MAX_SRC; i++) {
        const kiln_tensor *t = ts[i];
        int present = t != NULL;
        h = kiln_hash64(h, &present, sizeof present);
        if (!t) continue;
        h = kiln_hash64(h, &t->dtype, sizeof t->dtype);
        h = kiln_hash64(h, &t->ndim, sizeof t->ndim);
        h = kiln_hash64(h, t->shape, sizeof(int64_t) * (size_t)t->ndim);
        h = kiln_hash64(h, t->stride, sizeof(int64_t) * (size_t)t->ndim);
    }
    h = kiln_hash64(h, dst->op_params, sizeof dst->op_params);
    return h ? h : 1;
}

static struct kiln_tune_entry *find(struct kiln_tuner *t, uint64_t key) {
    if (!t->cap) return NULL;
    for (size_t i = key % t->cap;; i = (i + 1) % t->cap) {
        if (t->table[i].key == key) return &t->table[i];
        if (!t->table[i].key) return NULL;
    }
}

static int insert(struct kiln_tuner *t, uint64_t key, int choice) {
    if ((t->used + 1) * 2 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        struct kiln_tune_entry *old = t->table, *grown = calloc(cap, sizeof *grown);
        if (!grown) return 0;
        size_t old_cap = t->cap;
        t->table = grown;
        t->cap = cap;
        t->used = 0;
        for (size_t i = 0; i < old_cap; i++)
            if (old[i].key) insert(t, old[i].key, old[i].choice);
        free(old);
    }
    size_t i = key % t->cap;
    while (t->table[i].key && t->table[i].key != key) i = (i + 1) % t->cap;
    if (!t->table[i].key) t->used++;
    t->table[i].key = key;
    t->table[i].choice = choice;
    return 1;
}

/* The file holds "op key implementation" lines; unknown or malformed lines are ignored (a
   stale or damaged file only costs a re-measurement). */
static void load(kiln_backend_t be, struct kiln_tuner *t) {
    FILE *f = fopen(t->path, "r");
    if (!f) return;
    char op[64], impl[32];
    uint64_t key;
    while (fscanf(f, "%63s %" SCNx64 " %31s", op, &key, impl) == 3) {
        for (int o = 1; o < KILN_OP_COUNT; o++) {
            if (strcmp(kiln_op_name((kiln_op)o), op)) continue;
            for (int c = 0; c < t->ncand[o]; c++)
                if (!strcmp(t->cand_name[o][c], impl) && key) {
                    insert(t, key, c);
                    be->tune_loaded++;
                }
        }
    }
    fclose(f);
}

static void store(struct kiln_tuner *t, kiln_backend_t be) {
    if (!t->path[0]) return;
    size_t cap = t->used * 96 + 64, len = 0;
    char *buf = malloc(cap);
    if (!buf) return;
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->table[i].key) continue;
        /* The op is recovered from the candidates table; keys are unique per op. */
        for (int o = 1; o < KILN_OP_COUNT; o++)
            if (t->ncand[o] && (t->table[i].key & 0xff) == (uint64_t)o) {
                len += (size_t)snprintf(buf + len, cap - len, "%s %016" PRIx64 " %s\n",
                                        kiln_op_name((kiln_op)o), t->table[i].key,
                                        t->cand_name[o][t->table[i].choice]);
                break;
            }
    }
    if (kiln_write_file_atomic(t->path, buf, len) != KILN_OK)
        kiln_log(KILN_LOG_WARN, "cannot store tuning results for %s: %s", be->device.name,
                 kiln_last_error());
    free(buf);
}

kiln_status kiln_tuner_init(kiln_backend_t be) {
    struct kiln_tuner *t = calloc(1, sizeof *t);
    if (!t) return kiln_error(KILN_OUT_OF_MEMORY, "tuner: out of host memory");
    be->tuner = t;
    return KILN_OK;
}

kiln_status kiln_tuner_add(kiln_backend_t be, kiln_op op, kiln_op_fn fn, kiln_supports_fn supports,
                           const char *name) {
    struct kiln_tuner *t = be->tuner;
    if (!t) return kiln_error(KILN_INTERNAL, "auto: no tuner for %s", kiln_op_name(op));
    if (t->ncand[op] >= KILN_TUNE_MAX)
        return kiln_error(KILN_INTERNAL, "auto: %s has more than %d candidates (KILN_TUNE_MAX)",
                          kiln_op_name(op), KILN_TUNE_MAX);
    t->cand[op][t->ncand[op]] = fn;
    t->cand_supports[op][t->ncand[op]] = supports;
    t->cand_name[op][t->ncand[op]++] = name;
    return KILN_OK;
}

void kiln_tuner_ready(kiln_backend_t be) {
    struct kiln_tuner *t = be->tuner;
    char dir[4096];
    int enabled;
    kiln_cache_dir("tuning", dir, sizeof dir, &enabled);
    if (!enabled) return;
    const kiln_device_info *d = &be->device;
    uint64_t h = kiln_hash64(KILN_HASH_INIT, d->name, strlen(d->name));
    h = kiln_hash64(h, d->driver_version, strlen(d->driver_version));
    h = kiln_hash64(h, d->platform, strlen(d->platform));
    h = kiln_hash64(h, d->platform_version, strlen(d->platform_version));
    /* Other kernels (a new kiln) or kernel settings (KILN_TUNE_CONV, KILN_TUNE_GEMM) measure
       again, as does a different set of candidates (a new implementation, CLBlast
       installed). */
    uint64_t kh = kiln_kernels_hash();
    h = kiln_hash64(h, &kh, sizeof kh);
    const char *settings[2] = {getenv("KILN_TUNE_CONV"), getenv("KILN_TUNE_GEMM")};
    for (int i = 0; i < 2; i++)
        h = kiln_hash64(h, settings[i] ? settings[i] : "",
                        settings[i] ? strlen(settings[i]) + 1 : 1);
    for (int op = 0; op < KILN_OP_COUNT; op++)
        for (int c = 0; c < t->ncand[op]; c++) {
            h = kiln_hash64(h, &op, sizeof op);
            h = kiln_hash64(h, t->cand_name[op][c], strlen(t->cand_name[op][c]));
        }
    snprintf(t->path, sizeof t->path, "%s/%016" PRIx64 ".txt", dir, h);
    load(be, t);
}

void kiln_tuner_free(kiln_backend_t be) {
    struct kiln_tuner *t = be->tuner;
    if (!t) return;
    free(t->table);
    free(t);
    be->tuner = NULL;
}

/* One run of fn on a scratch destination whose initial contents equal dst's (ops like GEMM with
   beta != 0 read it): its time in ms, or -1 on failure. */
static double run_once(kiln_backend_t be, kiln_op_fn fn, kiln_tensor *dst, kiln_tensor *scratch) {
    size_t ext = kiln_tensor_extent(dst);
    if (ext &&
        be->iface->copy(be, scratch->buffer->handle, 0, dst->buffer->handle, dst->offset, ext))
        return -1;
    if (kiln_backend_synchronize(be)) return -1;
    double t0 = 1e3 * kiln_time_s();
    if (fn(be, scratch) || kiln_backend_synchronize(be)) {
        kiln_clear_error();
        return -1;
    }
    return 1e3 * kiln_time_s() - t0;
}

static int ok(const struct kiln_tuner *t, kiln_op op, int c, kiln_backend_t be,
              const kiln_tensor *dst) {
    return !t->cand_supports[op][c] || t->cand_supports[op][c](be, dst);
}

kiln_status kiln_auto_dispatch(kiln_backend_t be, kiln_tensor *dst) {
    struct kiln_tuner *t = be->tuner;
    kiln_op op = dst->op;
    /* The op index rides in the low byte so the file can name the op of each key. */
    uint64_t key = (shape_key(dst) & ~(uint64_t)0xff) | (uint64_t)op;
    struct kiln_tune_entry *e = find(t, key);
    /* Candidate 0, kiln's own kernels, takes every tensor; the others only those they say.
       The key does not hold everything a candidate may look at (offsets), so a remembered
       choice is asked again. */
    if (e) {
        int c = ok(t, op, e->choice, be, dst) ? e->choice : 0;
        be->ran = t->cand_name[op][c];
        return t->cand[op][c](be, dst);
    }

    kiln_tensor scratch = *dst;
    size_t ext = kiln_tensor_extent(dst);
    kiln_status st = kiln_buffer_alloc(be, ext ? ext : 4, &scratch.buffer);
    if (st) return st;
    scratch.offset = 0;
    /* A warm-up run each (it may build kernels), then ROUNDS rounds that time every candidate
       once, each keeping its fastest run. Interleaved, a slow spell of the machine (another
       process, a thread descheduled) costs each candidate a run at most; timed one candidate
       after the other, it could make whichever ran then lose every run (PoCL on 2 cores kept
       Winograd F(4x4,3x3) for the narrow VGG's 32 -> 32 layer at 28x28: 14 ms against the
       tiled kernel's 7). A candidate other than kiln's own whose warm-up and first round both
       take 5x the best first round stops there. */
    enum { ROUNDS = 3 };
    double ms[KILN_TUNE_MAX], warm[KILN_TUNE_MAX];
    for (int c = 0; c < t->ncand[op]; c++)
        warm[c] = ms[c] = ok(t, op, c, be, dst) ? run_once(be, t->cand[op][c], dst, &scratch) : -1;
    for (int r = 0; r < ROUNDS; r++) {
        double first_best = -1;
        for (int c = 0; c < t->ncand[op]; c++) {
            if (warm[c] < 0) continue;
            double m = run_once(be, t->cand[op][c], dst, &scratch);
            if (m < 0) {
                warm[c] = ms[c] = -1; /* failed: out of the running */
                continue;
            }
            ms[c] = r == 0 || m < ms[c] ? m : ms[c];
            if (r == 0 && (first_best < 0 || m < first_best)) first_best = m;
        }
        if (r == 0)
            for (int c = 1; c < t->ncand[op]; c++)
                if (warm[c] > 5 * first_best && ms[c] > 5 * first_best) warm[c] = -1;
    }
    /* Candidate 0 is kiln's own; another must beat the best by more than noise. */
    double best_ms = -1;
    int best = 0;
    for (int c = 0; c < t->ncand[op]; c++)
        if (ms[c] >= 0 && (best_ms < 0 || ms[c] * NOISE < best_ms)) {
            best_ms = ms[c];
            best = c;
        }
    kiln_buffer_free(scratch.buffer);
    if (best_ms < 0)
        return kiln_error(KILN_INTERNAL, "auto: no implementation of %s ran", kiln_op_name(op));
    char shape[96], others[160] = "";
    kiln_tensor_describe(dst, shape, sizeof shape);
    for (int c = 0, at = 0; c < t->ncand[op]; c++)
        if (c != best && ms[c] >= 0 && at < (int)sizeof others)
            at += snprintf(others + at, sizeof others - (size_t)at, "; %s %.3f ms",
                           t->cand_name[op][c], ms[c]);
    kiln_log(KILN_LOG_INFO, "auto: %s -> %s %s (%.3f ms%s)", kiln_op_name(op), shape,
             t->cand_name[op][best], best_ms, others);
    be->tune_measured++;
    if (insert(t, key, best)) store(t, be);
    be->ran = t->cand_name[op][best];
    return t->cand[op][best](be, dst);
}
