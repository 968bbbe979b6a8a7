/* Runtime behaviour: status codes, backend/device selection from specs and the environment,
   the fallback chain, tensors and transfers, and the on-disk program cache. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/opencl/cl-impl.h"
#include "check.h"
#include "kiln/kiln.h"

static int has(const char *hay, const char *needle) {
    return strstr(hay, needle) != NULL;
}

static void test_status(void) {
    CHECK(!strcmp(kiln_status_name(KILN_OUT_OF_MEMORY), "KILN_OUT_OF_MEMORY"), "status name");
    CHECK(!strcmp(kiln_status_str(KILN_BUILD), "kernel build failed"), "status message");
    CHECK(!strcmp(kiln_status_name((kiln_status)999), "KILN_UNKNOWN_STATUS"), "unknown status");
    CHECK(!strcmp(kiln_op_name(KILN_OP_GEMM), "gemm"), "op name");
}

static void test_specs(int ndev) {
    kiln_selection sel;
    kiln_status st = kiln_select("cuda", "", &sel);
    CHECK(st == KILN_INVALID_ARGUMENT &&
              has(kiln_last_error(), "valid: cpu, opencl, clblast, auto"),
          "unknown backend lists the choices");
    st = kiln_select("opencl,conv2d=clblast", "", &sel);
    CHECK(st == KILN_INVALID_ARGUMENT && has(kiln_last_error(), "unknown op 'conv2d'") &&
              has(kiln_last_error(), "gemm"),
          "unknown op lists the ops");
    st = kiln_select("opencl,gemm=fast", "", &sel);
    CHECK(st == KILN_INVALID_ARGUMENT && has(kiln_last_error(), "unknown backend 'fast'"),
          "unknown override backend");
    st = kiln_select("opencl,gemm", "", &sel);
    CHECK(st == KILN_INVALID_ARGUMENT && has(kiln_last_error(), "OP=BACKEND"), "override syntax");
    st = kiln_select("cpu,gemm=clblast", "", &sel);
    CHECK(st == KILN_INVALID_ARGUMENT && has(kiln_last_error(), "base backend is cpu"),
          "device override on cpu base");
    st = kiln_select("cpu", "", &sel);
    CHECK(st == KILN_OK && sel.device_index == -1 && !strcmp(sel.base, "cpu"), "cpu selection");
    st = kiln_select("auto", "no-such-device-anywhere", &sel);
    CHECK(st == KILN_NO_DEVICE && has(kiln_last_error(), "matches no platform"),
          "unmatched device is an error");
    st = kiln_select("auto", "99", &sel);
    CHECK(st == KILN_NO_DEVICE && has(kiln_last_error(), "no device with that index"),
          "device index out of range");
    st = kiln_select("auto", "7:7", &sel);
    CHECK(st == KILN_NO_DEVICE, "no such platform:device");

    setenv("KILN_LOG", "chatty", 1);
    kiln_backend_t be = NULL;
    st = kiln_backend_init("cpu", NULL, &be);
    CHECK(st == KILN_INVALID_ARGUMENT && has(kiln_last_error(), "error, warn, info, debug"),
          "bad KILN_LOG is an error");
    unsetenv("KILN_LOG");

    setenv("KILN_BACKEND", "bogus", 1);
    st = kiln_backend_init_from_env(&be);
    CHECK(st == KILN_INVALID_ARGUMENT && has(kiln_last_error(), "'bogus'"), "KILN_BACKEND read");
    unsetenv("KILN_BACKEND");

    if (!ndev) {
        st = kiln_select("opencl", "", &sel);
        CHECK(st == KILN_NO_DEVICE && has(kiln_last_error(), "KILN_BACKEND=cpu"),
              "opencl without a device says what to do");
        st = kiln_select("auto", "", &sel);
        CHECK(st == KILN_OK && !strcmp(sel.base, "cpu"), "auto without devices is cpu");
        return;
    }
    kiln_device_info *devs;
    int n;
    kiln_devices_list(&devs, &n);
    st = kiln_select("auto", "0", &sel);
    CHECK(st == KILN_OK && sel.device_index == 0, "device by index");
    char pd[32];
    snprintf(pd, sizeof pd, "%d:%d", devs[0].platform_index, devs[0].device_index);
    st = kiln_select("opencl", pd, &sel);
    CHECK(st == KILN_OK && sel.device_index == 0, "device by platform:device");
    /* A case-insensitive substring of the device name. */
    char sub[8];
    snprintf(sub, sizeof sub, "%.5s", devs[0].name + (strlen(devs[0].name) > 6 ? 1 : 0));
    for (char *p = sub; *p; p++)
        if (*p >= 'a' && *p <= 'z') *p = (char)(*p - 'a' + 'A');
    st = kiln_select("opencl", sub, &sel);
    CHECK(st == KILN_OK && sel.device_index >= 0, "device by name substring '%s'", sub);
    st = kiln_select("auto", "0", &sel);
    CHECK(st == KILN_OK && !strcmp(sel.base, "opencl") && has(sel.why, "auto"),
          "auto resolves to kiln's kernels plus measured choices (got %s)", sel.base);
    free(devs);
}

static void fill(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = scale * (float)((int)(i * 7 % 13) - 6);
}

/* C = A B on backend `be` checked against a triple loop. */
static void check_gemm_on(kiln_backend_t be, const char *what) {
    enum { M = 9, N = 11, K = 5 };
    float a[M * K], b[K * N], c[M * N], want[M * N];
    fill(a, M * K, 0.5f);
    fill(b, K * N, 0.25f);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float s = 0;
            for (int l = 0; l < K; l++) s += a[i * K + l] * b[l * N + j];
            want[i * N + j] = s;
        }
    kiln_tensor ta, tb, tc;
    int64_t sa[2] = {M, K}, sb[2] = {K, N}, sc[2] = {M, N};
    kiln_status st = kiln_tensor_alloc(&ta, be, KILN_F32, 2, sa);
    if (!st) st = kiln_tensor_alloc(&tb, be, KILN_F32, 2, sb);
    if (!st) st = kiln_tensor_alloc(&tc, be, KILN_F32, 2, sc);
    if (!st) st = kiln_tensor_set(&ta, a, sizeof a);
    if (!st) st = kiln_tensor_set(&tb, b, sizeof b);
    if (!st) st = kiln_gemm(be, 0, 0, 1.0f, &ta, &tb, 0.0f, &tc);
    if (!st) st = kiln_tensor_get(&tc, c, sizeof c);
    double err = 0;
    for (int i = 0; i < M * N; i++) err = fmax(err, fabs(c[i] - want[i]));
    CHECK(st == KILN_OK && err < 1e-4, "gemm on %s (err %g)", what, err);
    kiln_tensor_release(&ta);
    kiln_tensor_release(&tb);
    kiln_tensor_release(&tc);
}

static void test_tensors(kiln_backend_t be) {
    kiln_tensor t;
    int64_t shape[2] = {4, 6};
    kiln_status st = kiln_tensor_alloc(&t, be, KILN_F32, 2, shape);
    CHECK(st == KILN_OK && kiln_tensor_is_contiguous(&t) && kiln_tensor_extent(&t) == 96,
          "alloc contiguous");
    float host[24], back[24];
    fill(host, 24, 1.0f);
    st = kiln_tensor_set(&t, host, 20);
    CHECK(st == KILN_INVALID_ARGUMENT && has(kiln_last_error(), "96 bytes, 20 given"),
          "set with the wrong size");
    kiln_event_t ev = NULL;
    st = kiln_tensor_set_async(&t, host, sizeof host, &ev);
    CHECK(st == KILN_OK, "async set");
    CHECK(kiln_event_wait(ev) == KILN_OK, "event wait");
    kiln_event_free(ev);
    st = kiln_tensor_get_async(&t, back, sizeof back, &ev);
    CHECK(st == KILN_OK && kiln_event_wait(ev) == KILN_OK && !memcmp(host, back, sizeof host),
          "async round trip");
    kiln_event_free(ev);
    /* A column view is strided: transfers refuse it, ops accept it. */
    kiln_tensor col;
    int64_t cs[2] = {4, 2}, cst[2] = {24, 4};
    st = kiln_tensor_view(&col, &t, 2, cs, cst, 8);
    CHECK(st == KILN_OK && !kiln_tensor_is_contiguous(&col) && col.view_src == &t, "view");
    st = kiln_tensor_get(&col, back, 32);
    CHECK(st == KILN_INVALID_ARGUMENT && has(kiln_last_error(), "not contiguous"),
          "strided transfer refused");
    int64_t big[2] = {5, 6};
    st = kiln_tensor_view(&col, &t, 2, big, NULL, 0);
    CHECK(st == KILN_INVALID_ARGUMENT && has(kiln_last_error(), "do not fit"),
          "view out of bounds");
    /* Shape errors name the shapes. */
    kiln_tensor a, c;
    int64_t sa[2] = {3, 5}, sc[2] = {4, 4};
    kiln_tensor_alloc(&a, be, KILN_F32, 2, sa);
    kiln_tensor_alloc(&c, be, KILN_F32, 2, sc);
    st = kiln_gemm(be, 0, 0, 1.0f, &a, &t, 0.0f, &c);
    CHECK(st == KILN_SHAPE && has(kiln_last_error(), "f32[3,5]"), "gemm shape mismatch");
    kiln_tensor_release(&a);
    kiln_tensor_release(&c);
    kiln_tensor_release(&t);
}

static int count_files(const char *dir, const char *suffix) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strlen(e->d_name) > strlen(suffix) &&
            !strcmp(e->d_name + strlen(e->d_name) - strlen(suffix), suffix))
            n++;
    closedir(d);
    return n;
}

/* Overwrites the middle of every cached program (or truncates it). */
static void damage_cache(const char *dir, int truncate_it) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strstr(e->d_name, ".bin")) continue;
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(path, &sb)) continue;
        if (truncate_it) {
            if (truncate(path, sb.st_size / 2)) perror("truncate");
        } else {
            FILE *f = fopen(path, "r+b");
            if (!f) continue;
            fseek(f, sb.st_size / 2, SEEK_SET);
            fwrite("garbage!", 1, 8, f);
            fclose(f);
        }
    }
    closedir(d);
}

static void test_program_cache(void) {
    char dir[] = "/tmp/kiln-test-cache-XXXXXX";
    if (!mkdtemp(dir)) return;
    setenv("KILN_CACHE_DIR", dir, 1);
    char programs[4200];
    snprintf(programs, sizeof programs, "%s/programs", dir);
    kiln_backend_stats s;
    kiln_backend_t be;
    /* PoCL keeps compiled kernels in its own cache: kiln stores no binaries there (asking for
       them would compile every kernel once more), unless POCL_KERNEL_CACHE=0 turns PoCL's off.
       The round trip below then runs on PoCL's binaries too. */
    int pocl = 0;
    if (!kiln_backend_init("opencl", "0", &be)) {
        pocl = strstr(kiln_backend_device(be)->platform, "Portable Computing Language") != NULL;
        if (pocl) {
            check_gemm_on(be, "PoCL, its cache on");
            kiln_backend_get_stats(be, &s);
            CHECK(s.programs_driver >= 1 && s.programs_compiled == 0 && s.cache_stored == 0 &&
                      s.programs_loaded == 0 && count_files(programs, ".bin") == 0,
                  "PoCL's own cache: kiln stores no programs (left to PoCL %d stored %d)",
                  s.programs_driver, s.cache_stored);
        }
        kiln_backend_free(be);
    }
    if (pocl) setenv("POCL_KERNEL_CACHE", "0", 1);
    const char *names[] = {"first process", "warm", "corrupted entry", "truncated entry"};
    for (int round = 0; round < 4; round++) {
        if (round == 2) damage_cache(programs, 0);
        if (round == 3) damage_cache(programs, 1);
        if (kiln_backend_init("opencl", "0", &be)) {
            CHECK(0, "opencl backend for the cache test");
            break;
        }
        check_gemm_on(be, names[round]);
        kiln_backend_get_stats(be, &s);
        if (round == 0)
            CHECK(s.programs_compiled >= 1 && s.cache_stored == s.programs_compiled &&
                      count_files(programs, ".bin") >= 1,
                  "cold start compiles and stores (compiled %d stored %d)", s.programs_compiled,
                  s.cache_stored);
        else if (round == 1)
            CHECK(s.programs_compiled == 0 && s.programs_loaded >= 1,
                  "warm start compiles nothing (compiled %d loaded %d)", s.programs_compiled,
                  s.programs_loaded);
        else
            CHECK(s.cache_rejected >= 1 && s.programs_compiled >= 1 && s.cache_stored >= 1,
                  "%s detected and rebuilt (rejected %d compiled %d)", names[round],
                  s.cache_rejected, s.programs_compiled);
        kiln_backend_free(be);
    }
    CHECK(count_files(programs, ".tmp") == 0, "no temporary files left");

    /* Disabled cache: nothing written. Unwritable: warn and continue uncached. */
    setenv("KILN_CACHE_DIR", "off", 1);
    if (!kiln_backend_init("opencl", "0", &be)) {
        check_gemm_on(be, "cache off");
        kiln_backend_get_stats(be, &s);
        CHECK(s.cache_stored == 0 && s.programs_loaded == 0, "KILN_CACHE_DIR=off stores nothing");
        kiln_backend_free(be);
    }
    if (pocl) unsetenv("POCL_KERNEL_CACHE");
    char file_path[4200];
    snprintf(file_path, sizeof file_path, "%s/not-a-dir", dir);
    FILE *f = fopen(file_path, "w");
    if (f) fclose(f);
    setenv("KILN_CACHE_DIR", file_path, 1);
    if (!kiln_backend_init("opencl", "0", &be)) {
        check_gemm_on(be, "unwritable cache");
        kiln_backend_free(be);
    }
    unsetenv("KILN_CACHE_DIR");
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) printf("could not remove %s\n", dir);
}

/* auto: the first GEMM of a shape is measured, the choice is reused in this process and
   loaded (not measured again) by the next one; per-op overrides still win. */
static void test_auto(void) {
    char dir[] = "/tmp/kiln-test-tune-XXXXXX";
    if (!mkdtemp(dir)) return;
    setenv("KILN_CACHE_DIR", dir, 1);
    kiln_backend_stats s;
    for (int round = 0; round < 2; round++) {
        kiln_backend_t be;
        if (kiln_backend_init("auto", "0", &be)) {
            CHECK(0, "auto backend");
            break;
        }
        const char *prov = kiln_backend_op_provider(be, KILN_OP_GEMM);
        CHECK(prov && !strcmp(prov, "auto"), "gemm is measured under auto (got %s)", prov);
        check_gemm_on(be, "auto");
        check_gemm_on(be, "auto, same shape again");
        kiln_backend_get_stats(be, &s);
        if (round == 0)
            CHECK(s.tune_measured == 1, "one shape measured once (measured %d)", s.tune_measured);
        else
            CHECK(s.tune_measured == 0 && s.tune_loaded >= 1,
                  "second process reuses the choice (measured %d, loaded %d)", s.tune_measured,
                  s.tune_loaded);
        kiln_backend_free(be);
    }
    kiln_backend_t be;
    if (!kiln_backend_init("auto,gemm=opencl", "0", &be)) {
        CHECK(!strcmp(kiln_backend_op_provider(be, KILN_OP_GEMM), "opencl"), "override beats auto");
        kiln_backend_free(be);
    }
    unsetenv("KILN_CACHE_DIR");
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) printf("could not remove %s\n", dir);
}

static void test_build_failure(void) {
    kiln_backend_t be;
    if (kiln_backend_init("opencl", "0", &be)) return;
    setenv("KILN_CACHE_DIR", "off", 1);
    cl_kernel k;
    kiln_status st =
        kiln_cl_get_kernel(be->ctx, "gemm.cl", "kiln_gemm_compute", "-DTILE_M=not_a_number", &k);
    CHECK(st == KILN_BUILD && has(kiln_last_error(), "kernels/gemm.cl") &&
              has(kiln_last_error(), "build log") && has(kiln_last_error(), "gemm.cl:"),
          "a failed build names the file, line and log");
    st = kiln_cl_get_kernel(be->ctx, "no-such-file.cl", "x", "", &k);
    CHECK(st == KILN_NOT_FOUND && has(kiln_last_error(), "no-such-file.cl"), "missing kernel file");
    check_gemm_on(be, "opencl after a failed build");
    unsetenv("KILN_CACHE_DIR");

    /* Allocation beyond the device's limit: a clear error naming the size and device. */
    kiln_buffer_t buf;
    size_t huge = (size_t)be->device.max_alloc + 4096;
    st = kiln_buffer_alloc(be, huge, &buf);
    CHECK(st == KILN_OUT_OF_MEMORY && has(kiln_last_error(), be->device.name), "oversized alloc");
    kiln_backend_free(be);
}

/* CLBlast's convolution cannot express groups: such a tensor runs on the next implementation
   in the chain, and that is the one reported. */
static void check_per_tensor_support(kiln_backend_t be) {
    CHECK(!strcmp(kiln_backend_op_fallback(be, KILN_OP_CONV2D), "opencl") &&
              kiln_backend_op_fallback(be, KILN_OP_GEMM) == NULL,
          "conv2d falls back per tensor, gemm does not");
    for (int groups = 1; groups <= 2; groups++) {
        kiln_tensor x, w, y;
        int64_t sx[4] = {1, 4, 5, 5}, sw[4] = {4, 4 / groups, 3, 3}, sy[4] = {1, 4, 5, 5};
        kiln_conv2d_params p = {1, 1, 1, 1, 1, 1, 1, 1, groups};
        float hx[100], hw[36 * 4], hy[100];
        for (int i = 0; i < 100; i++) hx[i] = (float)(i % 7) - 3.0f;
        for (int i = 0; i < 144; i++) hw[i] = (float)(i % 5) - 2.0f;
        kiln_status st = kiln_tensor_alloc(&x, be, KILN_F32, 4, sx);
        if (!st) st = kiln_tensor_alloc(&w, be, KILN_F32, 4, sw);
        if (!st) st = kiln_tensor_alloc(&y, be, KILN_F32, 4, sy);
        if (!st) st = kiln_tensor_set(&x, hx, sizeof hx);
        if (!st) st = kiln_tensor_set(&w, hw, (size_t)(36 * 4 / groups) * sizeof(float));
        if (!st) st = kiln_conv2d(be, &p, &x, &w, NULL, &y);
        if (!st) st = kiln_tensor_get(&y, hy, sizeof hy);
        const char *ran = kiln_backend_last_impl(be);
        CHECK(st == KILN_OK && ran && !strcmp(ran, groups == 1 ? "clblast" : "opencl"),
              "grouped conv2d runs on opencl, plain on clblast (%d groups: %s, %s)", groups,
              ran ? ran : "none", st ? kiln_last_error() : "ok");
        /* the centre output of channel 0: a full 3x3 window over input channels 0..4/groups */
        double ref = 0;
        for (int c = 0; c < 4 / groups; c++)
            for (int t = 0; t < 9; t++)
                ref += (double)hx[c * 25 + (t / 3 + 1) * 5 + t % 3 + 1] * hw[c * 9 + t];
        CHECK(!st && fabs(hy[2 * 5 + 2] - ref) < 1e-4, "conv2d result (%d groups)", groups);
        kiln_tensor_release(&x);
        kiln_tensor_release(&w);
        kiln_tensor_release(&y);
    }
}

static void test_fallback_chain(void) {
    kiln_backend_t be;
    kiln_status st = kiln_backend_init("opencl,gemm=cpu", "0", &be);
    CHECK(st == KILN_OK && !strcmp(kiln_backend_op_provider(be, KILN_OP_GEMM), "cpu"),
          "per-op override to cpu");
    if (!st) {
        check_gemm_on(be, "opencl with gemm on the host");
        test_tensors(be);
        kiln_backend_free(be);
    }
    st = kiln_backend_init("opencl,gemm=clblast", "0", &be);
    CHECK(st == KILN_OK && !strcmp(kiln_backend_op_provider(be, KILN_OP_GEMM), "clblast") &&
              !strcmp(kiln_backend_name(be), "opencl"),
          "per-op override to clblast");
    if (!st) {
        check_gemm_on(be, "opencl with gemm on clblast");
        kiln_backend_free(be);
    }
    st = kiln_backend_init("clblast", "0", &be);
    CHECK(st == KILN_OK && !strcmp(kiln_backend_op_provider(be, KILN_OP_GEMM), "clblast"),
          "clblast backend");
    if (!st) {
        check_gemm_on(be, "clblast");
        /* Tensors of another backend are refused with both names. */
        kiln_backend_t cpu;
        kiln_backend_init("cpu", NULL, &cpu);
        kiln_tensor a, b;
        int64_t s[2] = {2, 2};
        kiln_tensor_alloc(&a, cpu, KILN_F32, 2, s);
        kiln_tensor_alloc(&b, be, KILN_F32, 2, s);
        st = kiln_gemm(be, 0, 0, 1.0f, &a, &b, 0.0f, &b);
        CHECK(st == KILN_INVALID_ARGUMENT && has(kiln_last_error(), "lives on backend 'cpu'"),
              "cross-backend operands refused");
        float host[4] = {1, 2, 3, 4}, back[4];
        kiln_tensor_set(&a, host, sizeof host);
        CHECK(kiln_tensor_copy(&b, &a) == KILN_OK &&
                  kiln_tensor_get(&b, back, sizeof back) == KILN_OK &&
                  !memcmp(host, back, sizeof host),
              "copy across backends");
        kiln_tensor_release(&a);
        kiln_tensor_release(&b);
        kiln_backend_free(cpu);
        check_per_tensor_support(be);
        kiln_backend_free(be);
    }
}

/* Every allocation of a GEMM run failing in turn: each failure is reported, none crashes,
   and the run after it works. */
static void test_alloc_faults(kiln_backend_t be, const char *what) {
    for (int n = 1; n <= 3; n++) {
        kiln_fault_alloc_after(n);
        kiln_tensor t[3];
        memset(t, 0, sizeof t);
        int64_t s[2] = {4, 4};
        kiln_status st = KILN_OK;
        for (int i = 0; i < 3 && !st; i++) st = kiln_tensor_alloc(&t[i], be, KILN_F32, 2, s);
        CHECK(st == KILN_OUT_OF_MEMORY && has(kiln_last_error(), "KILN_FAULT_ALLOC") &&
                  has(kiln_last_error(), "64 bytes requested"),
              "%s: injected failure of allocation %d is reported", what, n);
        for (int i = 0; i < 3; i++) kiln_tensor_release(&t[i]);
        kiln_fault_alloc_after(0);
    }
    check_gemm_on(be, what);
}

int main(void) {
    kiln_device_info *devs = NULL;
    int ndev = 0;
    kiln_devices_list(&devs, &ndev);
    free(devs);
    test_status();
    test_specs(ndev);
    kiln_backend_t cpu;
    if (kiln_backend_init("cpu", NULL, &cpu) == KILN_OK) {
        check_gemm_on(cpu, "cpu");
        test_tensors(cpu);
        test_alloc_faults(cpu, "cpu");
        kiln_backend_free(cpu);
    }
    if (ndev) {
        kiln_backend_t be;
        if (kiln_backend_init("opencl", "0", &be) == KILN_OK) {
            test_tensors(be);
            test_alloc_faults(be, "opencl");
            kiln_backend_free(be);
        }
        test_fallback_chain();
        test_program_cache();
        test_auto();
        test_build_failure();
    } else {
        printf("no OpenCL device: device tests skipped\n");
    }
    return check_done();
}
