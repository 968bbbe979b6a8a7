/* Internal: helpers shared by the benchmarks. */
#ifndef KILN_BENCH_UTIL_H
#define KILN_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

double kiln_now_ms(void);
/* Sorts xs in place; returns the median. */
double kiln_median(double *xs, int n);
/* Uniform values in [-1, 1) from a seeded xorshift generator (deterministic). */
void kiln_fill_uniform(float *x, size_t n, uint64_t seed);
/* Writes s as a JSON string literal. */
void kiln_json_string(FILE *f, const char *s);
/* Whether the comma-separated list holds name. */
int kiln_in_list(const char *list, const char *name);
/* Parses a positive integer option value; returns 0 on error. */
int kiln_parse_count(const char *s, long *out);

/* Median and range of timed runs. */
typedef struct kiln_timing {
    double ms, ms_min, ms_max;
    int reps;
} kiln_timing;
/* Runs fn `warmup` times untimed, then at least min_reps times and for at least min_ms in all
   (at most max_reps, at most 256). When once_ms > 0 and the last warm-up run took longer than
   that, one timed run is enough (a slow device would otherwise spend hours on a short suite).
   Returns the first nonzero fn result (0 = success). */
int kiln_time_runs(int (*fn)(void *arg), void *arg, int warmup, int min_reps, double min_ms,
                   int max_reps, double once_ms, kiln_timing *out);

/* Starts argv (argv[0] searched in PATH) with its stdout on a pipe, stderr inherited; returns
   the pipe's read end, or NULL (errno set) when it cannot start. */
FILE *kiln_spawn_read(char *const argv[], int *pid);
/* Closes the pipe and waits: the exit code, or -1 when the child did not exit normally. */
int kiln_spawn_wait(FILE *f, int pid);
/* An environment variable's value, for kiln_restore_env (NULL when it is unset). */
char *kiln_save_env(const char *name);
/* Puts back (or unsets) what kiln_save_env returned, and frees it. */
void kiln_restore_env(const char *name, char *saved);
/* Points KILN_CACHE_DIR at dir and POCL_CACHE_DIR at dir/pocl: the next process starts as on a
   fresh machine, with kiln's caches and PoCL's own kernel cache empty. */
void kiln_fresh_caches(const char *dir);
/* Removes a directory tree (temporary caches); errors are ignored. */
void kiln_remove_tree(const char *dir);
/* The source tree (for perf/peer_*.py and git): kiln_SOURCE_DIR from the CMakeCache.txt next
   to this executable, else the working directory when it holds perf/. Returns 0 when unknown. */
int kiln_source_dir(char *out, size_t n);

#endif
