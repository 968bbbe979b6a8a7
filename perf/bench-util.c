#define _XOPEN_SOURCE 700 /* nftw */
#include "bench-util.h"

#include <errno.h>
#include <ftw.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kiln-util.h"

extern char **environ;

double kiln_now_ms(void) {
    return 1e3 * kiln_time_s();
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double kiln_median(double *xs, int n) {
    qsort(xs, (size_t)n, sizeof *xs, cmp_double);
    return n % 2 ? xs[n / 2] : 0.5 * (xs[n / 2 - 1] + xs[n / 2]);
}

void kiln_fill_uniform(float *x, size_t n, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x[i] = (float)((double)(s >> 11) * (2.0 / 9007199254740992.0) - 1.0);
    }
}

void kiln_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

int kiln_in_list(const char *list, const char *name) {
    size_t len = strlen(name);
    for (const char *p = list; (p = strstr(p, name)); p += len)
        if ((p == list || p[-1] == ',') && (!p[len] || p[len] == ',')) return 1;
    return 0;
}

int kiln_parse_count(const char *s, long *out) {
    char *end;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || end == s || *end || v <= 0) return 0;
    *out = v;
    return 1;
}

int kiln_time_runs(int (*fn)(void *arg), void *arg, int warmup, int min_reps, double min_ms,
                   int max_reps, double once_ms, kiln_timing *out) {
    double times[256], total = 0, warm_ms = 0;
    int reps = 0, rc;
    if (max_reps > 256) max_reps = 256;
    for (int i = 0; i < warmup; i++) {
        double t0 = kiln_now_ms();
        if ((rc = fn(arg))) return rc;
        warm_ms = kiln_now_ms() - t0;
    }
    if (once_ms > 0 && warm_ms > once_ms) {
        min_reps = 1;
        min_ms = 0;
    }
    if (min_reps > max_reps) min_reps = max_reps;
    while (reps < max_reps && (reps < min_reps || total < min_ms)) {
        double t0 = kiln_now_ms();
        if ((rc = fn(arg))) return rc;
        times[reps] = kiln_now_ms() - t0;
        total += times[reps++];
    }
    out->reps = reps;
    out->ms = kiln_median(times, reps);
    out->ms_min = times[0];
    out->ms_max = times[reps - 1];
    return 0;
}

FILE *kiln_spawn_read(char *const argv[], int *pid) {
    int fds[2];
    if (pipe(fds)) return NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    pid_t p;
    int rc = posix_spawnp(&p, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc) {
        close(fds[0]);
        errno = rc;
        return NULL;
    }
    *pid = (int)p;
    FILE *f = fdopen(fds[0], "r");
    if (!f) {
        close(fds[0]);
        waitpid(p, NULL, 0);
    }
    return f;
}

int kiln_spawn_wait(FILE *f, int pid) {
    char sink[4096];
    while (fread(sink, 1, sizeof sink, f) > 0) continue; /* never block a child on a full pipe */
    fclose(f);
    int status = 0;
    if (waitpid((pid_t)pid, &status, 0) < 0) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int kiln_source_dir(char *out, size_t n) {
    char exe[4096];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = k > 0 ? (exe[k] = '\0', strrchr(exe, '/')) : NULL;
    if (slash) {
        snprintf(slash, sizeof exe - (size_t)(slash - exe), "/CMakeCache.txt");
        FILE *f = fopen(exe, "r");
        char line[4096];
        int found = 0;
        while (f && !found && fgets(line, sizeof line, f))
            if (!strncmp(line, "kiln_SOURCE_DIR:STATIC=", 23)) {
                line[strcspn(line, "\r\n")] = '\0';
                snprintf(out, n, "%s", line + 23);
                found = 1;
            }
        if (f) fclose(f);
        if (found) return 1;
    }
    if (access("perf/bench-util.c", R_OK) == 0 && getcwd(out, n)) return 1;
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

char *kiln_save_env(const char *name) {
    const char *v = getenv(name);
    return v ? strdup(v) : NULL;
}

void kiln_restore_env(const char *name, char *saved) {
    if (saved)
        setenv(name, saved, 1);
    else
        unsetenv(name);
    free(saved);
}

void kiln_fresh_caches(const char *dir) {
    char pocl[4200];
    snprintf(pocl, sizeof pocl, "%s/pocl", dir);
    setenv("KILN_CACHE_DIR", dir, 1);
    setenv("POCL_CACHE_DIR", pocl, 1);
}

void kiln_remove_tree(const char *dir) {
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}
