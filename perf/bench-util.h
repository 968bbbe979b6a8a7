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
/* Parses a positive integer option value; returns 0 on error. */
int kiln_parse_count(const char *s, long *out);

#endif
