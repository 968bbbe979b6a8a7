/* Internal, not installed: the few helpers the library shares with the `kiln` command, the
   benchmarks (perf/) and the tests -- error messages, atomic file writes, monotonic time,
   hashing and the counter-based random numbers. Not part of the public API (runtime/include/
   and frontend/include/ are); the library's own headers (backend-impl.h, data/data-impl.h)
   include this one. */
#ifndef KILN_UTIL_H
#define KILN_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/status.h"

/* Error helper: sets the thread-local message (kiln_last_error) and returns s. */
kiln_status kiln_error(kiln_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Appends to the thread-local message (for context while unwinding). */
void kiln_error_append(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* Writes a file atomically: temporary file in the same directory, fsync, rename, fsync of
   the directory. Readers see the old file or the new one, never a torn one. */
kiln_status kiln_write_file_atomic(const char *path, const void *data, size_t n);
/* The streaming form: open, write any number of times, then commit (or abort). */
typedef struct kiln_atomic_file kiln_atomic_file;
kiln_status kiln_atomic_open(const char *path, kiln_atomic_file **out);
kiln_status kiln_atomic_write(kiln_atomic_file *af, const void *data, size_t n);
kiln_status kiln_atomic_commit(kiln_atomic_file *af);
void kiln_atomic_abort(kiln_atomic_file *af);

/* Monotonic seconds, for timing and progress. */
double kiln_time_s(void);

/* 64-bit FNV-1a, chainable through `h`. */
uint64_t kiln_hash64(uint64_t h, const void *data, size_t n);
#define KILN_HASH_INIT 0xcbf29ce484222325ULL

/* ---- counter-based random numbers: the value at (key, counter) never depends on which
   thread asks or how many draws happened elsewhere ---- */

typedef struct kiln_rng {
    uint64_t key;
    uint64_t ctr;
} kiln_rng;

uint64_t kiln_mix64(uint64_t x);
/* Key for (seed, epoch, index). */
kiln_rng kiln_rng_make(uint64_t seed, uint64_t epoch, uint64_t index);
uint64_t kiln_rng_u64(kiln_rng *r);
/* [0, 1) with 53 bits. */
double kiln_rng_uniform(kiln_rng *r);
double kiln_rng_range(kiln_rng *r, double lo, double hi);
/* Uniform integer in [0, n) (n > 0), unbiased. */
uint64_t kiln_rng_below(kiln_rng *r, uint64_t n);

#endif
