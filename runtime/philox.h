/* Internal: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11)
   and the dropout mask built on it. kernels/eltwise.cl holds the OpenCL C copy of the same
   functions, line for line; tests/test-philox.c checks both against the published known-answer
   vectors and against each other, so masks are bit-identical on every backend and device. */
#ifndef KILN_PHILOX_H
#define KILN_PHILOX_H

#include <stdint.h>

#define KILN_PHILOX_M0 0xD2511F53u
#define KILN_PHILOX_M1 0xCD9E8D57u
#define KILN_PHILOX_W0 0x9E3779B9u /* golden ratio */
#define KILN_PHILOX_W1 0xBB67AE85u /* sqrt(3) - 1 */

static inline uint32_t kiln_mulhi32(uint32_t a, uint32_t b) {
    return (uint32_t)(((uint64_t)a * b) >> 32);
}

/* out = Philox4x32-10(counter ctr, key (k0, k1)). */
static inline void kiln_philox4x32_10(const uint32_t ctr[4], uint32_t k0, uint32_t k1,
                                      uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k0 += KILN_PHILOX_W0;
            k1 += KILN_PHILOX_W1;
        }
        uint32_t hi0 = kiln_mulhi32(KILN_PHILOX_M0, c0), lo0 = KILN_PHILOX_M0 * c0;
        uint32_t hi1 = kiln_mulhi32(KILN_PHILOX_M1, c2), lo1 = KILN_PHILOX_M1 * c2;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* The four mask words for elements 4q .. 4q+3. The counter's first two words are the 64-bit
   sum offset + q, so a run of offsets never wraps onto another's counters. */
static inline void kiln_dropout_words(uint32_t seed_lo, uint32_t seed_hi, uint32_t offset_lo,
                                      uint32_t offset_hi, uint64_t q, uint32_t out[4]) {
    uint64_t c = (((uint64_t)offset_hi << 32) | offset_lo) + q;
    uint32_t ctr[4] = {(uint32_t)c, (uint32_t)(c >> 32), 0, 0};
    kiln_philox4x32_10(ctr, seed_lo, seed_hi, out);
}

/* Kept elements are multiplied by this (computed once, on the host, by every backend, so the
   kept values agree bit for bit too). */
static inline float kiln_dropout_scale(float p) {
    return 1.0f / (1.0f - p);
}

#endif
