/* Counter-based random numbers: each draw is splitmix64's finalizer applied to (key, counter),
   so a sample's stream depends only on its key, never on scheduling. */
#include "data/data-impl.h"

uint64_t kiln_mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

kiln_rng kiln_rng_make(uint64_t seed, uint64_t epoch, uint64_t index) {
    kiln_rng r;
    r.key = kiln_mix64(kiln_mix64(kiln_mix64(seed) ^ epoch) ^ index);
    r.ctr = 0;
    return r;
}

uint64_t kiln_rng_u64(kiln_rng *r) {
    /* Two rounds with different keys: one round of splitmix over a counter is fine for
       sequential use but weak between nearby keys. */
    uint64_t c = r->ctr++;
    return kiln_mix64(kiln_mix64(r->key + c * 0xd1342543de82ef95ULL) ^ r->key);
}

double kiln_rng_uniform(kiln_rng *r) {
    return (double)(kiln_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

double kiln_rng_range(kiln_rng *r, double lo, double hi) {
    return lo + (hi - lo) * kiln_rng_uniform(r);
}

uint64_t kiln_rng_below(kiln_rng *r, uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    for (;;) {
        uint64_t v = kiln_rng_u64(r);
        if (v < limit) return v % n;
    }
}
