/* Peak single-precision throughput probe (as clpeak does): every work-item runs CHAINS
 * independent multiply-add chains of PEAK_VEC-wide vectors, enough independent work to
 * hide FMA latency, with nothing to load. The result is stored so nothing is optimized
 * away. FLOPs = global size * PEAK_ITERS * CHAINS * PEAK_VEC * 2. */
#ifndef PEAK_VEC
#define PEAK_VEC 16
#endif
#ifndef PEAK_ITERS
#define PEAK_ITERS 1024
#endif
#define CHAINS 8

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#if PEAK_VEC == 1
typedef float vec_t;
#else
typedef CAT(float, PEAK_VEC) vec_t;
#endif

__kernel void kiln_peak_fma(__global float *out, float a, float b) {
    const size_t gid = get_global_id(0);
    vec_t x0 = (vec_t)((float)gid * 1e-7f), x1 = x0 + 1.0f, x2 = x0 + 2.0f, x3 = x0 + 3.0f;
    vec_t x4 = x0 + 4.0f, x5 = x0 + 5.0f, x6 = x0 + 6.0f, x7 = x0 + 7.0f;
    for (int i = 0; i < PEAK_ITERS; i++) {
        x0 = KILN_MADD(x0, (vec_t)(a), (vec_t)(b));
        x1 = KILN_MADD(x1, (vec_t)(a), (vec_t)(b));
        x2 = KILN_MADD(x2, (vec_t)(a), (vec_t)(b));
        x3 = KILN_MADD(x3, (vec_t)(a), (vec_t)(b));
        x4 = KILN_MADD(x4, (vec_t)(a), (vec_t)(b));
        x5 = KILN_MADD(x5, (vec_t)(a), (vec_t)(b));
        x6 = KILN_MADD(x6, (vec_t)(a), (vec_t)(b));
        x7 = KILN_MADD(x7, (vec_t)(a), (vec_t)(b));
    }
    vec_t s = ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7));
#if PEAK_VEC == 1
    out[gid] = s;
#else
    /* Fold the lanes so every lane's chain is live. */
    float acc = 0.0f;
    float lanes[PEAK_VEC];
    CAT(vstore, PEAK_VEC)(s, 0, lanes);
    for (int l = 0; l < PEAK_VEC; l++) acc += lanes[l];
    out[gid] = acc;
#endif
}
