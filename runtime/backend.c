/* Backend registry, selection from the environment, op tables and the fallback chain. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ops-impl.h"

/* Implementations of ops. Each names the one to fall back to, for an op it lacks or a tensor
   it does not support: clblast -> opencl -> cpu (on a device, the cpu step copies through host
   memory). A new backend is a row here with its place in the chain. */
enum { PROV_CPU, PROV_OPENCL, PROV_CLBLAST, PROV_COUNT, PROV_AUTO = PROV_COUNT };
static const struct {
    const char *name;
    const kiln_op_fn *ops;
    const kiln_supports_fn *supports; /* NULL: every tensor of the ops it has */
    int needs_device;
    int fallback; /* -1: the end of the chain */
} providers[PROV_COUNT] = {
    [PROV_CPU] = {"cpu", kiln_cpu_ops, NULL, 0, -1},
    [PROV_OPENCL] = {"opencl", kiln_cl_ops, NULL, 1, PROV_CPU},
    [PROV_CLBLAST] = {"clblast", kiln_clblast_ops, kiln_clblast_supports, 1, PROV_OPENCL},
};

static kiln_supports_fn supports_of(int p, int op) {
    return providers[p].supports ? providers[p].supports[op] : NULL;
}

/* The first provider from p down the chain that has op (-1: none). */
static int chain_from(int p, int op) {
    while (p >= 0 && !providers[p].ops[op]) p = providers[p].fallback;
    return p;
}

#define BACKEND_CHOICES "cpu, opencl, clblast, auto"

typedef struct {
    int base;                    /* PROV_* or PROV_AUTO */
    int auto_base;               /* the base was auto before it was resolved to a provider */
    int override[KILN_OP_COUNT]; /* -1 = none */
} backend_spec_t;

static int provider_by_name(const char *s, size_t n) {
    for (int i = 0; i < PROV_COUNT; i++)
        if (strlen(providers[i].name) == n && !strncasecmp(s, providers[i].name, n)) return i;
    if (n == 4 && !strncasecmp(s, "auto", 4)) return PROV_AUTO;
    return -1;
}

static void list_families(char *out, size_t n) {
    out[0] = '\0';
    for (int op = 1; op < KILN_OP_COUNT; op++) {
        const char *f = kiln_op_family((kiln_op)op);
        if (strstr(out, f)) continue;
        size_t len = strlen(out);
        snprintf(out + len, n - len, "%s%s", len ? ", " : "", f);
    }
}

static kiln_status parse_backend_spec(const char *spec, backend_spec_t *out) {
    for (int i = 0; i < KILN_OP_COUNT; i++) out->override[i] = -1;
    const char *p = spec && *spec ? spec : "auto";
    size_t n = strcspn(p, ",");
    out->base = provider_by_name(p, n);
    out->auto_base = out->base == PROV_AUTO;
    if (out->base < 0)
        return kiln_error(KILN_INVALID_ARGUMENT, "KILN_BACKEND: unknown backend '%.*s'; valid: %s",
                          (int)n, p, BACKEND_CHOICES);
    for (p += n; *p == ','; p += n) {
        p++;
        n = strcspn(p, ",");
        const char *eq = memchr(p, '=', n);
        if (!eq)
            return kiln_error(KILN_INVALID_ARGUMENT,
                              "KILN_BACKEND: '%.*s' is not OP=BACKEND (e.g. gemm=clblast)", (int)n,
                              p);
        size_t fn = (size_t)(eq - p);
        int prov = provider_by_name(eq + 1, n - fn - 1);
        if (prov < 0)
            return kiln_error(KILN_INVALID_ARGUMENT,
                              "KILN_BACKEND: unknown backend '%.*s' for '%.*s'; valid: %s",
                              (int)(n - fn - 1), eq + 1, (int)fn, p, BACKEND_CHOICES);
        int matched = 0;
        for (int op = 1; op < KILN_OP_COUNT; op++) {
            const char *f = kiln_op_family((kiln_op)op);
            if (strlen(f) == fn && !strncasecmp(f, p, fn)) {
                out->override[op] = prov;
                matched = 1;
            }
        }
        if (!matched) {
            char fams[512];
            list_families(fams, sizeof fams);
            return kiln_error(KILN_INVALID_ARGUMENT, "KILN_BACKEND: unknown op '%.*s'; valid: %s",
                              (int)fn, p, fams);
        }
        if (out->base == PROV_CPU && prov != PROV_CPU && prov != PROV_AUTO)
            return kiln_error(KILN_INVALID_ARGUMENT,
                              "KILN_BACKEND: '%.*s' needs an OpenCL backend but the base backend "
                              "is cpu; use e.g. 'opencl,%.*s'",
                              (int)n, p, (int)n, p);
    }
    return KILN_OK;
}

static int contains_ci(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (!strncasecmp(hay, needle, n)) return 1;
    return 0;
}

static int is_oclgrind(const kiln_device_info *d) {
    return contains_ci(d->platform, "oclgrind");
}

static void describe_devices(const kiln_device_info *devs, int n) {
    if (!n) {
        kiln_error_append("; no OpenCL device was found");
        return;
    }
    kiln_error_append("; devices:");
    for (int i = 0; i < n; i++)
        kiln_error_append(" [%d] %d:%d %s (%s)%s", devs[i].index, devs[i].platform_index,
                          devs[i].device_index, devs[i].name, devs[i].platform,
                          i + 1 < n ? "," : "");
}

/* KILN_DEVICE: an index, platform:device, or a substring of platform/vendor/device name. */
static kiln_status match_device(const char *spec, const kiln_device_info *devs, int n, int *idx,
                                char *why, size_t why_n) {
    char *end;
    long a = strtol(spec, &end, 10);
    if (end != spec && *end == '\0') {
        if (a < 0 || a >= n) {
            kiln_error(KILN_NO_DEVICE, "KILN_DEVICE=%s: no device with that index", spec);
            describe_devices(devs, n);
            return KILN_NO_DEVICE;
        }
        *idx = (int)a;
        snprintf(why, why_n, "KILN_DEVICE=%s selects device %ld", spec, a);
        return KILN_OK;
    }
    if (end != spec && *end == ':') {
        char *end2;
        long d = strtol(end + 1, &end2, 10);
        if (end2 != end + 1 && *end2 == '\0') {
            for (int i = 0; i < n; i++)
                if (devs[i].platform_index == a && devs[i].device_index == d) {
                    *idx = i;
                    snprintf(why, why_n, "KILN_DEVICE=%s selects platform %ld device %ld", spec, a,
                             d);
                    return KILN_OK;
                }
            kiln_error(KILN_NO_DEVICE, "KILN_DEVICE=%s: no such platform:device", spec);
            describe_devices(devs, n);
            return KILN_NO_DEVICE;
        }
    }
    for (int i = 0; i < n; i++)
        if (contains_ci(devs[i].name, spec) || contains_ci(devs[i].vendor, spec) ||
            contains_ci(devs[i].platform, spec)) {
            *idx = i;
            snprintf(why, why_n, "KILN_DEVICE=%s matches '%s' on '%s' (first match)", spec,
                     devs[i].name, devs[i].platform);
            return KILN_OK;
        }
    kiln_error(KILN_NO_DEVICE, "KILN_DEVICE=%s matches no platform, vendor or device name", spec);
    describe_devices(devs, n);
    return KILN_NO_DEVICE;
}

/* Without KILN_DEVICE: a GPU, then an accelerator, then a CPU device. Oclgrind is a
   simulator, picked only when it is the only platform (as under `oclgrind kiln ...`). Data
   parallel ranks take the k-th device of that kind (modulo their count). */
static int default_nth(const kiln_device_info *devs, int n, int k, int *pass_out,
                       kiln_device_type *type) {
    static const kiln_device_type order[] = {KILN_DEVICE_GPU, KILN_DEVICE_ACCEL, KILN_DEVICE_CPU};
    for (int pass = 0; pass < 2; pass++)
        for (int o = 0; o < 3; o++) {
            int count = 0;
            for (int i = 0; i < n; i++)
                count += devs[i].type == order[o] && (pass == 1 || !is_oclgrind(&devs[i]));
            if (!count) continue;
            k %= count;
            for (int i = 0; i < n; i++)
                if (devs[i].type == order[o] && (pass == 1 || !is_oclgrind(&devs[i])) && !k--) {
                    *pass_out = pass;
                    *type = order[o];
                    return i;
                }
        }
    return -1;
}

int kiln_devices_default_nth(const kiln_device_info *devs, int n, int k) {
    int pass;
    kiln_device_type type;
    return default_nth(devs, n, k < 0 ? 0 : k, &pass, &type);
}

static int default_device(const kiln_device_info *devs, int n, char *why, size_t why_n) {
    int pass = 0;
    kiln_device_type type = KILN_DEVICE_CPU;
    int i = default_nth(devs, n, 0, &pass, &type);
    if (i >= 0)
        snprintf(why, why_n, "default: the first %s%s", kiln_device_type_name(type),
                 pass ? " (only the Oclgrind simulator is present)" : "");
    return i;
}

static kiln_status select_impl(const char *bspec_in, const char *dspec_in, kiln_selection *sel,
                               backend_spec_t *bs, kiln_device_info *dev_out) {
    memset(sel, 0, sizeof *sel);
    const char *bspec = bspec_in ? bspec_in : getenv("KILN_BACKEND");
    const char *dspec = dspec_in ? dspec_in : getenv("KILN_DEVICE");
    if (!bspec || !*bspec) bspec = "auto";
    if (!dspec) dspec = "";
    snprintf(sel->backend_spec, sizeof sel->backend_spec, "%s", bspec);
    snprintf(sel->device_spec, sizeof sel->device_spec, "%s", dspec);
    sel->device_index = -1;
    kiln_status st = parse_backend_spec(bspec, bs);
    if (st) return st;

    kiln_device_info *devs = NULL;
    int n = 0;
    st = kiln_devices_list(&devs, &n);
    if (st) return st;
    char dwhy[256] = "";
    int idx = -1;
    if (*dspec) {
        st = match_device(dspec, devs, n, &idx, dwhy, sizeof dwhy);
    } else {
        idx = default_device(devs, n, dwhy, sizeof dwhy);
    }
    if (!st && bs->base == PROV_CPU) {
        snprintf(sel->base, sizeof sel->base, "cpu");
        snprintf(sel->why, sizeof sel->why,
                 "KILN_BACKEND=%s: the plain-C cpu backend on the host%s", bspec,
                 *dspec ? " (KILN_DEVICE does not apply to it)" : "");
        idx = -1;
    } else if (!st && idx < 0) {
        if (bs->base == PROV_AUTO) {
            snprintf(sel->base, sizeof sel->base, "cpu");
            snprintf(sel->why, sizeof sel->why,
                     "auto: no OpenCL device found, using the plain-C cpu backend");
        } else {
            st = kiln_error(KILN_NO_DEVICE,
                            "KILN_BACKEND=%s needs an OpenCL device but none was found (install "
                            "pocl-opencl-icd for the CPU, or your GPU's OpenCL driver); "
                            "KILN_BACKEND=cpu runs without one",
                            bspec);
        }
    } else if (!st) {
        int base = bs->base;
        const char *rule = "";
        if (base == PROV_AUTO) {
            /* Documented rule until the tuner exists: CLBlast's kernels are tuned for GPUs, so
               GEMM goes to CLBlast there; on CPU devices kiln's own GEMM is faster, and under
               the Oclgrind simulator kiln's own kernels are what is being checked. */
            if (is_oclgrind(&devs[idx])) {
                base = PROV_OPENCL;
                rule = "auto: kiln's own kernels (Oclgrind simulator)";
            } else {
                base = PROV_OPENCL;
                rule = "auto: per op and shape the faster of kiln's kernels and CLBlast, "
                       "measured once and remembered";
            }
        } else {
            rule = base == PROV_OPENCL ? "KILN_BACKEND=opencl" : "KILN_BACKEND=clblast";
        }
        bs->base = base;
        snprintf(sel->base, sizeof sel->base, "%s", providers[base].name);
        snprintf(sel->why, sizeof sel->why, "%s; device: %s", rule, dwhy);
        sel->device_index = idx;
        if (dev_out) *dev_out = devs[idx];
    }
    if (!st && bs->base == PROV_AUTO) bs->base = PROV_CPU;
    free(devs);
    return st;
}

kiln_status kiln_select(const char *backend_spec, const char *device_spec, kiln_selection *sel) {
    backend_spec_t bs;
    return select_impl(backend_spec, device_spec, sel, &bs, NULL);
}

kiln_status kiln_backend_init(const char *bspec, const char *dspec, kiln_backend_t *out) {
    *out = NULL;
    kiln_status st = kiln_log_init_from_env();
    if (st) return st;
    kiln_selection sel;
    backend_spec_t bs;
    kiln_device_info dev;
    memset(&dev, 0, sizeof dev);
    st = select_impl(bspec, dspec, &sel, &bs, &dev);
    if (st) return st;
    kiln_backend_t be = calloc(1, sizeof *be);
    if (!be) return kiln_error(KILN_OUT_OF_MEMORY, "backend: out of host memory");
    snprintf(be->name, sizeof be->name, "%s", sel.base);
    st = sel.device_index < 0 ? kiln_cpu_backend_setup(be) : kiln_cl_backend_setup(be, &dev);
    if (st) {
        free(be);
        return st;
    }
    int on_device = sel.device_index >= 0;
    /* auto measures per shape where an op has several implementations: kiln's kernels (and
       their other algorithms, kiln_cl_variants), CLBlast's, and on CPU devices OpenBLAS's GEMM on
       the buffers mapped in place (the host fallback, zero-copy there). Not under Oclgrind, a
       simulator, nor for ops that update their sources in place. */
    int can_tune = on_device && !is_oclgrind(&be->device);
    int clblast = can_tune && kiln_clblast_available(be);
    int host_gemm = can_tune && be->device.type == KILN_DEVICE_CPU;
    for (int op = 1; op < KILN_OP_COUNT; op++) {
        int want_auto = bs.override[op] == PROV_AUTO || (bs.override[op] < 0 && bs.auto_base);
        /* CLBlast's convolutions (im2col kernels tuned for GPUs) took 10-40x kiln's on PoCL for
           every layer of the narrow VGG16 and AlexNet: on CPU devices auto does not spend the
           first step building and timing them. Its GEMM stays a candidate there. */
        int with_clblast =
            clblast && providers[PROV_CLBLAST].ops[op] &&
            !(be->device.type == KILN_DEVICE_CPU && !strcmp(kiln_op_family((kiln_op)op), "conv"));
        int with_host = host_gemm && op == KILN_OP_GEMM;
        int with_variant = 0;
        for (const kiln_op_variant *v = kiln_cl_variants; v->fn; v++)
            with_variant |= (int)v->op == op;
        if (can_tune && want_auto && !kiln_op_written_srcs((kiln_op)op) &&
            providers[PROV_OPENCL].ops[op] && (with_clblast || with_host || with_variant)) {
            if (!be->tuner && (st = kiln_tuner_init(be))) {
                kiln_backend_free(be);
                return st;
            }
            st = kiln_tuner_add(be, (kiln_op)op, providers[PROV_OPENCL].ops[op], NULL, "opencl");
            for (const kiln_op_variant *v = kiln_cl_variants; v->fn && !st; v++)
                if ((int)v->op == op)
                    st = kiln_tuner_add(be, (kiln_op)op, v->fn, v->supports, v->name);
            if (with_clblast && !st)
                st = kiln_tuner_add(be, (kiln_op)op, providers[PROV_CLBLAST].ops[op],
                                    supports_of(PROV_CLBLAST, op), "clblast");
            if (with_host && !st)
                st = kiln_tuner_add(be, (kiln_op)op, kiln_host_fallback, NULL, "cpu");
            if (st) {
                kiln_backend_free(be);
                return st;
            }
            be->ops[op] = kiln_auto_dispatch;
            be->provider[op] = "auto";
            be->impl[op] = -1;
            continue;
        }
        int want = bs.override[op] >= 0 ? bs.override[op] : bs.base;
        if (want == PROV_AUTO) want = bs.base;
        if (want == PROV_CLBLAST && !kiln_clblast_available(be)) want = PROV_OPENCL;
        int p = chain_from(want, op);
        if (p < 0) continue; /* nowhere: unsupported */
        be->ops[op] = p == PROV_CPU && on_device ? kiln_host_fallback : providers[p].ops[op];
        be->provider[op] = providers[p].name;
        be->impl[op] = p;
        if (p != want)
            kiln_log(p == PROV_CPU && on_device ? KILN_LOG_WARN : KILN_LOG_INFO,
                     "op %s: %s has no implementation, falling back to %s%s", kiln_op_name(op),
                     providers[want].name, providers[p].name,
                     p == PROV_CPU && on_device ? " (host copies each call)" : "");
    }
    if (be->tuner) kiln_tuner_ready(be);
    kiln_log(KILN_LOG_INFO, "backend %s on %s: %s", be->name, on_device ? be->device.name : "host",
             sel.why);
    *out = be;
    return KILN_OK;
}

kiln_status kiln_backend_init_from_env(kiln_backend_t *out) {
    return kiln_backend_init(NULL, NULL, out);
}

void kiln_backend_free(kiln_backend_t be) {
    if (!be) return;
    if (be->host) kiln_backend_free(be->host);
    kiln_tuner_free(be);
    if (be->iface && be->iface->free) be->iface->free(be);
    free(be);
}

const char *kiln_backend_name(kiln_backend_t be) {
    return be->name;
}

const kiln_device_info *kiln_backend_device(kiln_backend_t be) {
    return &be->device;
}

const char *kiln_backend_op_provider(kiln_backend_t be, kiln_op op) {
    return (unsigned)op < KILN_OP_COUNT ? be->provider[op] : NULL;
}

const char *kiln_backend_op_fallback(kiln_backend_t be, kiln_op op) {
    if ((unsigned)op >= KILN_OP_COUNT) return NULL;
    int p = be->impl[op];
    if (p < 0 || !supports_of(p, op)) return NULL;
    int q = chain_from(providers[p].fallback, op);
    return q >= 0 ? providers[q].name : NULL;
}

const char *kiln_backend_last_impl(kiln_backend_t be) {
    return be->ran;
}

kiln_status kiln_backend_synchronize(kiln_backend_t be) {
    return be->iface->synchronize(be);
}

void kiln_backend_get_stats(kiln_backend_t be, kiln_backend_stats *out) {
    memset(out, 0, sizeof *out);
    if (be->iface->stats) be->iface->stats(be, out);
    out->tune_measured = be->tune_measured;
    out->tune_loaded = be->tune_loaded;
}

kiln_status kiln_backend_limits(kiln_backend_t be, char *buf, size_t n) {
    if (n) buf[0] = '\0';
    if (!be->iface->limits) {
        snprintf(buf, n, "none: host memory, plain C loops");
        return KILN_OK;
    }
    return be->iface->limits(be, buf, n);
}

const char *kiln_device_type_name(kiln_device_type t) {
    switch (t) {
    case KILN_DEVICE_HOST:
        return "host";
    case KILN_DEVICE_CPU:
        return "CPU";
    case KILN_DEVICE_GPU:
        return "GPU";
    case KILN_DEVICE_ACCEL:
        return "accelerator";
    }
    return "?";
}

/* KILN_FAULT_ALLOC=N makes the Nth buffer allocation of the process fail (and
   kiln_fault_alloc_after the Nth from now), so tests can check that every caller cleans up
   and reports. */
static _Atomic long alloc_count, alloc_fail_at = -1;

void kiln_fault_alloc_after(long n) {
    alloc_fail_at = n > 0 ? alloc_count + n : 0;
}

static int injected_alloc_failure(void) {
    if (alloc_fail_at < 0) {
        const char *v = getenv("KILN_FAULT_ALLOC");
        alloc_fail_at = v && *v ? atol(v) : 0;
    }
    return ++alloc_count == alloc_fail_at;
}

kiln_status kiln_buffer_alloc(kiln_backend_t be, size_t bytes, kiln_buffer_t *out) {
    *out = NULL;
    kiln_buffer_t buf = calloc(1, sizeof *buf);
    if (!buf) return kiln_error(KILN_OUT_OF_MEMORY, "buffer: out of host memory");
    kiln_status st = injected_alloc_failure()
                         ? kiln_error(KILN_OUT_OF_MEMORY, "allocation injected to fail "
                                                          "(KILN_FAULT_ALLOC)")
                         : be->iface->buffer_alloc(be, bytes, &buf->handle);
    if (st) {
        free(buf);
        /* OpenCL has no free-memory query; what kiln itself holds is the useful estimate. */
        if (be->device.global_mem)
            kiln_error_append(" [%zu bytes requested on %s; kiln holds %zu of %llu bytes, about "
                              "%llu free]",
                              bytes, be->device.name, be->allocated, be->device.global_mem,
                              be->device.global_mem > be->allocated
                                  ? be->device.global_mem - be->allocated
                                  : 0ULL);
        else
            kiln_error_append(" [%zu bytes requested on the host; kiln holds %zu bytes]", bytes,
                              be->allocated);
        return st;
    }
    buf->be = be;
    buf->size = bytes;
    be->allocated += bytes;
    *out = buf;
    return KILN_OK;
}

void kiln_buffer_free(kiln_buffer_t buf) {
    if (!buf) return;
    buf->be->allocated -= buf->size;
    buf->be->iface->buffer_free(buf->be, buf->handle);
    free(buf);
}

size_t kiln_buffer_size(kiln_buffer_t buf) {
    return buf->size;
}

kiln_backend_t kiln_buffer_backend(kiln_buffer_t buf) {
    return buf->be;
}

kiln_status kiln_compute(kiln_backend_t be, kiln_tensor *dst) {
    if (!be || !dst) return kiln_error(KILN_INVALID_ARGUMENT, "compute: NULL backend or tensor");
    if (dst->op <= KILN_OP_NONE || dst->op >= KILN_OP_COUNT)
        return kiln_error(KILN_INVALID_ARGUMENT, "compute: tensor '%s' has no op", dst->name);
    kiln_status st = kiln_op_validate(be, dst);
    if (st) return st;
    kiln_op_fn fn = be->ops[dst->op];
    if (!fn)
        return kiln_error(KILN_UNSUPPORTED, "op %s has no implementation on backend %s",
                          kiln_op_name(dst->op), be->name);
    /* Per tensor: an implementation that cannot compute this one hands it down the chain. */
    const char *name = be->provider[dst->op];
    int p = be->impl[dst->op];
    kiln_supports_fn ok;
    while (p >= 0 && (ok = supports_of(p, dst->op)) && !ok(be, dst)) {
        int q = chain_from(providers[p].fallback, dst->op);
        if (q < 0)
            return kiln_error(KILN_UNSUPPORTED, "op %s: no implementation on backend %s takes '%s'",
                              kiln_op_name(dst->op), be->name, dst->name);
        int on_device = be->device.type != KILN_DEVICE_HOST;
        fn = q == PROV_CPU && on_device ? kiln_host_fallback : providers[q].ops[dst->op];
        name = providers[q].name;
        p = q;
    }
    be->ran = name;
    st = kiln_profile_run(be, fn, dst);
    if (st) kiln_error_append(" [op %s on %s]", kiln_op_name(dst->op), be->ran);
    return st;
}

/* ---- host fallback ---- */

typedef struct {
    const kiln_tensor *dev;
    kiln_tensor host;
} staged;

static kiln_status stage(kiln_backend_t be, const kiln_tensor *t, staged *s) {
    s->dev = t;
    s->host = *t;
    size_t ext = kiln_tensor_extent(t);
    kiln_status st = kiln_buffer_alloc(be->host, ext ? ext : 1, &s->host.buffer);
    if (st) return st;
    s->host.offset = 0;
    if (!ext) return KILN_OK;
    kiln_backend_t db = t->buffer->be;
    return db->iface->read(db, t->buffer->handle, t->offset, kiln_tensor_host_data(&s->host), ext,
                           NULL);
}

static kiln_status host_backend(kiln_backend_t be) {
    if (be->host) return KILN_OK;
    be->host = calloc(1, sizeof *be->host);
    if (!be->host) return kiln_error(KILN_OUT_OF_MEMORY, "fallback: out of host memory");
    snprintf(be->host->name, sizeof be->host->name, "cpu");
    kiln_status st = kiln_cpu_backend_setup(be->host);
    if (st) {
        free(be->host);
        be->host = NULL;
    }
    return st;
}

/* The zero-copy form, on devices whose buffers the host can map in place: each distinct
   buffer of dst and its sources is mapped once (a buffer may back several of them), the cpu
   op runs on the mapped memory, and everything is unmapped. Returns KILN_UNSUPPORTED (with
   nothing done) when a buffer cannot be mapped. */
static kiln_status host_mapped(kiln_backend_t be, kiln_tensor *dst) {
    const kiln_tensor *ts[KILN_MAX_SRC + 1] = {dst};
    for (int i = 0; i < KILN_MAX_SRC; i++) ts[i + 1] = dst->src[i];
    struct kiln_buffer maps[KILN_MAX_SRC + 1];
    void *mapped_from[KILN_MAX_SRC + 1];
    kiln_tensor host[KILN_MAX_SRC + 1];
    int nmaps = 0, which[KILN_MAX_SRC + 1];
    kiln_status st = KILN_OK;
    for (int i = 0; i <= KILN_MAX_SRC && !st; i++) {
        which[i] = -1;
        if (!ts[i]) continue;
        const struct kiln_buffer *b = ts[i]->buffer;
        for (int m = 0; m < nmaps && which[i] < 0; m++)
            if (mapped_from[m] == b->handle) which[i] = m;
        if (which[i] >= 0) continue;
        void *p = be->iface->map(be, b->handle, b->size);
        if (!p) {
            st = KILN_UNSUPPORTED;
            break;
        }
        maps[nmaps] = (struct kiln_buffer){be->host, p, b->size};
        mapped_from[nmaps] = b->handle;
        which[i] = nmaps++;
    }
    if (!st) {
        for (int i = 0; i <= KILN_MAX_SRC; i++) {
            if (!ts[i]) continue;
            host[i] = *ts[i];
            host[i].buffer = &maps[which[i]];
        }
        kiln_tensor node = host[0];
        for (int i = 0; i < KILN_MAX_SRC; i++) node.src[i] = ts[i + 1] ? &host[i + 1] : NULL;
        st = kiln_cpu_ops[dst->op](be->host, &node);
        if (st == KILN_UNSUPPORTED) st = KILN_INTERNAL; /* only a failed map means "copy" */
    }
    for (int m = 0; m < nmaps; m++) be->iface->unmap(be, mapped_from[m], maps[m].handle);
    return st;
}

kiln_status kiln_host_fallback(kiln_backend_t be, kiln_tensor *dst) {
    kiln_status st = host_backend(be);
    if (st) return st;
    if (be->iface->map) {
        st = host_mapped(be, dst);
        if (st != KILN_UNSUPPORTED) return st;
    }
    /* s[0] is dst (ops like GEMM with beta != 0 read it), s[1 + i] is src[i]; sources may
       be NULL (an absent bias). Sources sharing dst's storage are staged separately, which
       is equivalent for the elementwise in-place ops that do that. */
    staged s[KILN_MAX_SRC + 1];
    memset(s, 0, sizeof s);
    st = stage(be, dst, &s[0]);
    for (int i = 0; !st && i < KILN_MAX_SRC; i++)
        if (dst->src[i]) st = stage(be, dst->src[i], &s[1 + i]);
    if (!st) {
        kiln_tensor node = s[0].host;
        for (int i = 0; i < KILN_MAX_SRC; i++) node.src[i] = dst->src[i] ? &s[1 + i].host : NULL;
        st = kiln_cpu_ops[dst->op](be->host, &node);
    }
    /* Copy back what the op wrote: dst, and the sources it updates in place. */
    unsigned written = kiln_op_written_srcs(dst->op);
    for (int i = 0; !st && i <= KILN_MAX_SRC; i++) {
        if (!s[i].dev || (i > 0 && !(written & (1u << (i - 1))))) continue;
        const kiln_tensor *t = s[i].dev;
        size_t ext = kiln_tensor_extent(t);
        if (ext)
            st = be->iface->write(be, t->buffer->handle, t->offset,
                                  kiln_tensor_host_data(&s[i].host), ext, NULL);
    }
    for (int i = 0; i <= KILN_MAX_SRC; i++) kiln_buffer_free(s[i].host.buffer);
    return st;
}
