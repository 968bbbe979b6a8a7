/* KILN_PROFILE=1: per-node op timings, printed to stderr when the process exits.
 *
 * Each op is followed by a synchronize so its time is its own (this serialises the queue:
 * profile runs are slower than normal ones, but the split between ops is what matters).
 * Entries are keyed by (op, node name, provider), so a model's layers show up separately. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend-impl.h"
#include "kiln/ops.h"

#define PROFILE_SLOTS 1024

typedef struct {
    kiln_op op;
    char name[32];
    const char *provider;
    long calls;
    double seconds;
} profile_entry;

static pthread_mutex_t profile_lock = PTHREAD_MUTEX_INITIALIZER;
static profile_entry profile_table[PROFILE_SLOTS];
static int profile_used, profile_state; /* state: 0 unknown, 1 on, -1 off */

/* Device kernels, by name (the backend reports their execution times). */
typedef struct {
    char name[48];
    long calls;
    double seconds;
} kernel_entry;
static kernel_entry kernel_table[256];
static int kernels_used;

static int by_time(const void *a, const void *b) {
    double x = ((const profile_entry *)a)->seconds, y = ((const profile_entry *)b)->seconds;
    return (x < y) - (x > y);
}

static int kernel_by_time(const void *a, const void *b) {
    double x = ((const kernel_entry *)a)->seconds, y = ((const kernel_entry *)b)->seconds;
    return (x < y) - (x > y);
}

static void profile_report(void) {
    pthread_mutex_lock(&profile_lock);
    qsort(profile_table, (size_t)profile_used, sizeof *profile_table, by_time);
    qsort(kernel_table, (size_t)kernels_used, sizeof *kernel_table, kernel_by_time);
    double total = 0.0, per_op[KILN_OP_COUNT] = {0};
    for (int i = 0; i < profile_used; i++) {
        total += profile_table[i].seconds;
        per_op[profile_table[i].op] += profile_table[i].seconds;
    }
    fprintf(stderr, "\nkiln profile (KILN_PROFILE): %.3f s in ops\n", total);
    fprintf(stderr, "%-20s %-24s %-10s %8s %10s %10s %6s\n", "op", "node", "provider", "calls",
            "total ms", "ms/call", "%");
    for (int i = 0; i < profile_used && i < 40; i++) {
        const profile_entry *e = &profile_table[i];
        fprintf(stderr, "%-20s %-24s %-10s %8ld %10.1f %10.3f %6.1f\n", kiln_op_name(e->op),
                e->name, e->provider ? e->provider : "?", e->calls, e->seconds * 1e3,
                e->seconds * 1e3 / (double)e->calls, total > 0 ? 100.0 * e->seconds / total : 0);
    }
    fprintf(stderr, "by op:\n");
    for (int op = 0; op < KILN_OP_COUNT; op++)
        if (per_op[op] > 0)
            fprintf(stderr, "  %-20s %10.1f ms %6.1f%%\n", kiln_op_name((kiln_op)op),
                    per_op[op] * 1e3, total > 0 ? 100.0 * per_op[op] / total : 0);
    if (kernels_used) fprintf(stderr, "device kernels (execution time):\n");
    for (int i = 0; i < kernels_used && i < 30; i++)
        fprintf(stderr, "  %-28s %8ld calls %10.1f ms %6.1f%%\n", kernel_table[i].name,
                kernel_table[i].calls, kernel_table[i].seconds * 1e3,
                total > 0 ? 100.0 * kernel_table[i].seconds / total : 0);
    pthread_mutex_unlock(&profile_lock);
}

int kiln_profile_enabled(void) {
    if (profile_state) return profile_state > 0;
    pthread_mutex_lock(&profile_lock);
    if (!profile_state) {
        const char *v = getenv("KILN_PROFILE");
        profile_state = v && *v && strcmp(v, "0") ? 1 : -1;
        if (profile_state > 0) atexit(profile_report);
    }
    pthread_mutex_unlock(&profile_lock);
    return profile_state > 0;
}

kiln_status kiln_profile_run(kiln_backend_t be, kiln_op_fn fn, kiln_tensor *dst) {
    if (!kiln_profile_enabled()) return fn(be, dst);
    be->iface->synchronize(be);
    double t0 = kiln_time_s();
    kiln_status st = fn(be, dst);
    if (!st) st = be->iface->synchronize(be);
    double dt = kiln_time_s() - t0;
    pthread_mutex_lock(&profile_lock);
    int i = 0;
    while (i < profile_used &&
           (profile_table[i].op != dst->op || profile_table[i].provider != be->ran ||
            strncmp(profile_table[i].name, dst->name, sizeof profile_table[i].name)))
        i++;
    if (i < PROFILE_SLOTS) {
        if (i == profile_used) {
            profile_used++;
            profile_table[i].op = dst->op;
            profile_table[i].provider = be->ran;
            snprintf(profile_table[i].name, sizeof profile_table[i].name, "%s", dst->name);
        }
        profile_table[i].calls++;
        profile_table[i].seconds += dt;
    }
    pthread_mutex_unlock(&profile_lock);
    return st;
}

void kiln_profile_kernel(const char *name, double seconds) {
    pthread_mutex_lock(&profile_lock);
    int i = 0;
    while (i < kernels_used && strncmp(kernel_table[i].name, name, sizeof kernel_table[i].name))
        i++;
    if (i < (int)(sizeof kernel_table / sizeof *kernel_table)) {
        if (i == kernels_used) {
            kernels_used++;
            snprintf(kernel_table[i].name, sizeof kernel_table[i].name, "%s", name);
        }
        kernel_table[i].calls++;
        kernel_table[i].seconds += seconds;
    }
    pthread_mutex_unlock(&profile_lock);
}
