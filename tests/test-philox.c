/* Philox4x32-10 and dropout masks: the published known-answer vectors (Random123's
   kat_vectors) on the C copy (runtime/philox.h) and on the OpenCL C copy (kernels/eltwise.cl)
   of every OpenCL device, the two copies against each other on many counters and keys, dropout
   masks of a large tensor identical on every backend and equal to the host recomputation, and
   kept fractions near 1 - p. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/opencl/cl-impl.h"
#include "check.h"
#include "kiln/kiln.h"
#include "philox.h"

/* counter[4], key[2] -> output[4] */
static const uint32_t kat[3][10] = {
    {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
    {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e,
     0xa20bc7c6, 0x6d5451fd},
    {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb,
     0x5001e420, 0x24126ea1},
};

static void test_kat_host(void) {
    for (int i = 0; i < 3; i++) {
        uint32_t out[4];
        kiln_philox4x32_10(kat[i], kat[i][4], kat[i][5], out);
        for (int j = 0; j < 4; j++)
            CHECK(out[j] == kat[i][6 + j], "host KAT %d word %d: %08x, expected %08x", i, j, out[j],
                  kat[i][6 + j]);
    }
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The kernel copy on the known answers, then on random counters and keys against the host. */
#define NRANDOM 4093
static void test_kernel_copy(kiln_backend_t be) {
    kiln_cl_ctx *cl = kiln_cl(be);
    const int n = 3 + NRANDOM;
    uint32_t *in = malloc(sizeof(uint32_t) * 6 * (size_t)n);
    uint32_t *out = malloc(sizeof(uint32_t) * 4 * (size_t)n);
    cl_mem din = NULL, dout = NULL;
    if (!in || !out) {
        CHECK(0, "out of memory");
        goto done;
    }
    uint64_t s = 1;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < 6; j++) in[6 * i + j] = i < 3 ? kat[i][j] : (uint32_t)splitmix(&s);
    cl_int err;
    din = clCreateBuffer(cl->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                         sizeof(uint32_t) * 6 * (size_t)n, in, &err);
    dout = clCreateBuffer(cl->context, CL_MEM_WRITE_ONLY, sizeof(uint32_t) * 4 * (size_t)n, NULL,
                          &err);
    CHECK(din && dout, "clCreateBuffer: %d", (int)err);
    if (!din || !dout) goto done;
    cl_kernel k;
    cl_uint count = (cl_uint)n;
    size_t global = (size_t)n, local = 64;
    kiln_status st = kiln_cl_get_kernel(cl, "eltwise.cl", "kiln_philox_test", NULL, &k);
    if (!st)
        st = kiln_cl_args(k, "kiln_philox_test", 3, sizeof din, &din, sizeof dout, &dout,
                          sizeof count, &count);
    if (!st) st = kiln_cl_launch(cl, k, "kiln_philox_test", 1, &global, &local);
    CHECK(!st, "kernel: %s", kiln_last_error());
    if (st) goto done;
    err = clEnqueueReadBuffer(cl->queue, dout, CL_TRUE, 0, sizeof(uint32_t) * 4 * (size_t)n, out, 0,
                              NULL, NULL);
    CHECK(err == CL_SUCCESS, "read: %d", (int)err);
    int bad = 0;
    for (int i = 0; i < n && err == CL_SUCCESS; i++) {
        uint32_t want[4];
        kiln_philox4x32_10(&in[6 * i], in[6 * i + 4], in[6 * i + 5], want);
        for (int j = 0; j < 4; j++) {
            if (i < 3)
                CHECK(out[4 * i + j] == kat[i][6 + j], "%s: KAT %d word %d: %08x, expected %08x",
                      be->device.name, i, j, out[4 * i + j], kat[i][6 + j]);
            bad += out[4 * i + j] != want[j];
        }
    }
    CHECK(!bad, "%s: %d words differ from the host copy", be->device.name, bad);
done:
    if (din) clReleaseMemObject(din);
    if (dout) clReleaseMemObject(dout);
    free(in);
    free(out);
}

/* Large enough for every work-group shape, odd so the last counter is partial. */
#define N_MASK ((1 << 20) + 3)

/* y = dropout(ones) (or dropout_bwd): kept elements equal the scale, dropped ones 0. */
static kiln_status run_dropout(kiln_backend_t be, int bwd, float p, uint64_t seed, uint64_t offset,
                               float *y) {
    kiln_tensor x, out;
    int64_t shape[1] = {N_MASK};
    memset(&x, 0, sizeof x);
    memset(&out, 0, sizeof out);
    float *h = malloc(sizeof(float) * N_MASK);
    kiln_status st = h ? KILN_OK : KILN_OUT_OF_MEMORY;
    for (size_t i = 0; h && i < N_MASK; i++) h[i] = 1.0f;
    if (!st && !(st = kiln_tensor_alloc(&x, be, KILN_F32, 1, shape)) &&
        !(st = kiln_tensor_alloc(&out, be, KILN_F32, 1, shape)) &&
        !(st = kiln_tensor_set(&x, h, sizeof(float) * N_MASK))) {
        st = bwd ? kiln_dropout_bwd(be, p, seed, offset, &x, &out)
                 : kiln_dropout(be, p, seed, offset, &x, &out);
        if (!st) st = kiln_tensor_get(&out, y, sizeof(float) * N_MASK);
    }
    kiln_tensor_release(&x);
    kiln_tensor_release(&out);
    free(h);
    return st;
}

static const struct {
    float p;
    uint64_t seed, offset;
} configs[] = {
    {0.0f, 1, 0},
    {0.1f, 0x0123456789abcdefULL, 17},
    {0.5f, 42, 0xfffffff0ULL}, /* counters cross 2^32 */
    {0.9f, 0xffffffffffffffffULL, 1ULL << 33},
};
#define NCONFIGS (sizeof configs / sizeof configs[0])

/* Masks on one backend against the host recomputation from runtime/philox.h; kept fractions
   within 6 standard deviations of 1 - p. */
static void test_masks(kiln_backend_t be, const char *label) {
    float *y = malloc(sizeof(float) * N_MASK);
    if (!y) {
        CHECK(0, "out of memory");
        return;
    }
    for (size_t c = 0; c < NCONFIGS; c++)
        for (int bwd = 0; bwd < 2; bwd++) {
            float p = configs[c].p;
            kiln_status st = run_dropout(be, bwd, p, configs[c].seed, configs[c].offset, y);
            CHECK(!st, "%s: dropout%s p=%g: %s", label, bwd ? "_bwd" : "", p, kiln_last_error());
            if (st) continue;
            uint32_t threshold = (uint32_t)((double)p * 4294967296.0);
            float scale = kiln_dropout_scale(p);
            size_t bad = 0, kept = 0;
            for (size_t q = 0; q * 4 < N_MASK; q++) {
                uint32_t w[4];
                kiln_dropout_words((uint32_t)configs[c].seed, (uint32_t)(configs[c].seed >> 32),
                                   (uint32_t)configs[c].offset, (uint32_t)(configs[c].offset >> 32),
                                   q, w);
                for (size_t j = 0; j < 4 && q * 4 + j < N_MASK; j++) {
                    float want = w[j] >= threshold ? scale : 0.0f;
                    bad += memcmp(&y[q * 4 + j], &want, sizeof want) != 0;
                    kept += y[q * 4 + j] != 0.0f;
                }
            }
            CHECK(!bad, "%s: dropout%s p=%g: %zu of %d elements differ from the host mask", label,
                  bwd ? "_bwd" : "", p, bad, N_MASK);
            double frac = (double)kept / N_MASK, sd = sqrt(p * (1.0 - p) / N_MASK);
            CHECK(fabs(frac - (1.0 - p)) <= 6 * sd + 1e-12, "%s: p=%g keeps %.5f, expected %.5f",
                  label, p, frac, 1.0 - p);
        }
    free(y);
}

int main(void) {
    test_kat_host();

    kiln_backend_t cpu;
    if (kiln_backend_init("cpu", NULL, &cpu)) {
        printf("FAIL: cpu backend: %s\n", kiln_last_error());
        return 1;
    }
    test_masks(cpu, "cpu");
    kiln_backend_free(cpu);

    kiln_device_info *devs = NULL;
    int ndev = 0;
    kiln_devices_list(&devs, &ndev);
    for (int d = 0; d < ndev; d++) {
        char idx[16];
        snprintf(idx, sizeof idx, "%d", d);
        for (int b = 0; b < 2; b++) {
            const char *name = b ? "clblast" : "opencl";
            kiln_backend_t be;
            if (kiln_backend_init(name, idx, &be)) {
                printf("skipping %s on device %d: %s\n", name, d, kiln_last_error());
                continue;
            }
            char label[192];
            snprintf(label, sizeof label, "%s@%s", name, devs[d].name);
            if (!b) test_kernel_copy(be);
            test_masks(be, label);
            kiln_backend_free(be);
            printf("%s: checked\n", label);
        }
    }
    free(devs);
    return check_done();
}
