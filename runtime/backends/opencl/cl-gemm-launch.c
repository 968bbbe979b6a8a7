/* Host side of kiln's own OpenCL SGEMM (kernels/gemm.cl); the interface is in
 * cl-gemm-launch.h.
 *
 * Kernels used (all from kernels/gemm.cl, all requested with tune's build options):
 * "kiln_gemm_compute" always; "kiln_gemm_pack_a" / "kiln_gemm_pack_b" when that operand
 * is packed. Scratch (requested once per enqueue, only when something is packed):
 * 4 bytes * (ceil(m/TILE_M)*TILE_M*k + ceil(n/TILE_N)*TILE_N*k) per batch entry for the
 * packed operands (each part rounded up to 16 floats), a stride-0 operand counted
 * once; batches beyond KILN_GEMM_SCRATCH_CAP (256 MiB) run in chunks reusing it.
 */
#include "cl-gemm-launch.h"

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Defaults by device type; the first row whose type bits match wins, the last row is
 * the fallback for GPUs, accelerators and anything else.
 * CPU (PoCL): one work-item per work-group computing an 8x32 register tile with
 * float16 (one AVX-512 register per 16 columns: 16 accumulators + 2 B vectors + 1
 * broadcast fit the 32 zmm registers); a narrower SIMD gets 6 x 2 of its vectors (below).
 * Work-groups of one item keep PoCL from trying to vectorise across work-items, which the
 * explicit vectors already do.
 * CPU that vectorises across work-items (it reports a preferred float vector of 1, as
 * Mesa's llvmpipe does): each lane's global load is a scalar load there, so what counts
 * is loads per multiply-add; an 8x8 tile halves them against 4x4 (512^3: 0.93 -> 0.51 s
 * on llvmpipe) and 8x16 spills (8x slower).
 * GPU: small 4x4 float4 tiles per work-item so register pressure stays low, 16x16
 * work-groups for occupancy; clamped to the device limits at launch. */
/* Not an OpenCL device type: the row for CPUs that vectorise across work-items. */
#define KILN_GEMM_ROW_CPU_LANES ((cl_device_type)1 << 40)
static const struct kiln_gemm_tune_row {
    cl_device_type type;
    unsigned tile_m, tile_n, vec_n, k_unroll, wg_m, wg_n, pack_wg, direct_a, direct_b_max_m;
} kiln_gemm_tune_table[] = {
    {CL_DEVICE_TYPE_CPU, 8, 32, 16, 4, 1, 1, 64, 1, 512},
    {KILN_GEMM_ROW_CPU_LANES, 8, 8, 8, 1, 16, 16, 64, 1, 512},
    {CL_DEVICE_TYPE_ALL, 4, 4, 4, 1, 16, 16, 64, 1, 512},
};

/* Caps that keep the kernel sane: a work-item's tile must fit in registers, and
 * unrolling needs a compile-time constant. */
#define KILN_GEMM_MAX_TILE   64u
#define KILN_GEMM_MAX_UNROLL 16u
/* A transposed A is read in place only while it is this small (elements spanned). */
#define KILN_GEMM_DIRECT_TRANS_ELEMS ((size_t)64 << 10)
/* Scratch budget per enqueue; larger batches are processed in chunks that reuse it.
 * A single matrix may still exceed it (then exactly what it needs is requested). */
#ifndef KILN_GEMM_SCRATCH_CAP
#define KILN_GEMM_SCRATCH_CAP ((size_t)256 << 20)
#endif

static void kiln_gemm_format_options(const struct kiln_gemm_tune *t, char *buf, size_t size) {
    snprintf(buf, size, "-DTILE_M=%u -DTILE_N=%u -DVEC_N=%u -DK_UNROLL=%u", t->tile_m, t->tile_n,
             t->vec_n, t->k_unroll);
}

static int kiln_gemm_tune_valid(const struct kiln_gemm_tune *t) {
    const unsigned v = t->vec_n;
    if (v != 1 && v != 2 && v != 4 && v != 8 && v != 16) return 0;
    if (t->tile_m < 1 || t->tile_m > KILN_GEMM_MAX_TILE) return 0;
    if (t->tile_n < 1 || t->tile_n > KILN_GEMM_MAX_TILE || t->tile_n % v != 0) return 0;
    if (t->k_unroll < 1 || t->k_unroll > KILN_GEMM_MAX_UNROLL) return 0;
    return t->wg_m >= 1 && t->wg_n >= 1 && t->pack_wg >= 1 && t->direct_a <= 1;
}

/* Parse "NAME=value,NAME=value" on top of *t. Any unknown name, empty item, or value
 * that is not a plain positive decimal integer rejects the whole string. */
static cl_int kiln_gemm_parse_override(const char *s, struct kiln_gemm_tune *t) {
    static const struct {
        const char *name;
        size_t field;
    } names[] = {
        {"TILE_M", offsetof(struct kiln_gemm_tune, tile_m)},
        {"TILE_N", offsetof(struct kiln_gemm_tune, tile_n)},
        {"VEC_N", offsetof(struct kiln_gemm_tune, vec_n)},
        {"K_UNROLL", offsetof(struct kiln_gemm_tune, k_unroll)},
        {"WG_M", offsetof(struct kiln_gemm_tune, wg_m)},
        {"WG_N", offsetof(struct kiln_gemm_tune, wg_n)},
        {"PACK_WG", offsetof(struct kiln_gemm_tune, pack_wg)},
        {"DIRECT_A", offsetof(struct kiln_gemm_tune, direct_a)},
        {"DIRECT_B_M", offsetof(struct kiln_gemm_tune, direct_b_max_m)},
    };
    const char *p = s;
    while (*p != '\0') {
        const char *eq = strchr(p, '=');
        const char *end = strchr(p, ',');
        if (end == NULL) end = p + strlen(p);
        if (eq == NULL || eq > end || eq == p) return CL_INVALID_VALUE;
        size_t i;
        for (i = 0; i < sizeof names / sizeof names[0]; ++i)
            if (strlen(names[i].name) == (size_t)(eq - p) &&
                memcmp(names[i].name, p, (size_t)(eq - p)) == 0)
                break;
        if (i == sizeof names / sizeof names[0]) return CL_INVALID_VALUE;
        unsigned long value = 0;
        const char *d = eq + 1;
        if (d == end) return CL_INVALID_VALUE;
        for (; d < end; ++d) {
            if (*d < '0' || *d > '9') return CL_INVALID_VALUE;
            value = value * 10 + (unsigned long)(*d - '0');
            if (value > 1000000000ul) return CL_INVALID_VALUE;
        }
        unsigned *field = (unsigned *)(void *)((char *)t + names[i].field);
        *field = (unsigned)value;
        p = *end == ',' ? end + 1 : end;
        if (*end == ',' && *p == '\0') return CL_INVALID_VALUE;
    }
    return CL_SUCCESS;
}

cl_int kiln_gemm_tune_for_device(cl_device_id dev, const char *override,
                                 struct kiln_gemm_tune *out) {
    if (out == NULL) return CL_INVALID_VALUE;
    cl_device_type type = 0;
    cl_int err = clGetDeviceInfo(dev, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    if (err != CL_SUCCESS) return err;
    size_t max_wg = 0;
    err = clGetDeviceInfo(dev, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof max_wg, &max_wg, NULL);
    if (err != CL_SUCCESS) return err;

    /* The CPU row is for runtimes that map a work-item's explicit vectors onto SIMD (PoCL,
       which reports its SIMD width as the preferred float vector). A CPU device reporting 1
       vectorises across work-items as a GPU does (Mesa's llvmpipe); there the CPU row's wide
       private tiles run about 7x slower than the GPU row's, and it gets a row of its own. */
    cl_uint pref_vec = 0;
    err = clGetDeviceInfo(dev, CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT, sizeof pref_vec, &pref_vec,
                          NULL);
    if (err != CL_SUCCESS) return err;
    if (pref_vec <= 1 && (type & CL_DEVICE_TYPE_CPU)) type = KILN_GEMM_ROW_CPU_LANES;
    const struct kiln_gemm_tune_row *row = &kiln_gemm_tune_table[0];
    while (!(row->type & type) && row->type != CL_DEVICE_TYPE_ALL) ++row;
    struct kiln_gemm_tune t;
    memset(&t, 0, sizeof t);
    t.tile_m = row->tile_m;
    t.tile_n = row->tile_n;
    t.vec_n = row->vec_n;
    t.k_unroll = row->k_unroll;
    if (row->type == CL_DEVICE_TYPE_CPU && pref_vec < 16) {
        /* SIMD narrower than AVX-512 (AVX2, SSE): 16 vector registers, where the 8x32 tile
           spills; 6 x 2 vectors takes 12 accumulators + 2 B vectors + 1 broadcast (1024^3
           on a 2-core Zen 3: 41 -> 151 GFLOP/s). */
        t.vec_n = pref_vec >= 8 ? 8 : 4;
        t.tile_m = 6;
        t.tile_n = 2 * t.vec_n;
    }
    t.wg_m = row->wg_m;
    t.wg_n = row->wg_n;
    t.pack_wg = row->pack_wg;
    t.direct_a = row->direct_a;
    t.direct_b_max_m = row->direct_b_max_m;
    /* Table rows are generic; shrink work-groups to what this device allows (the
     * kernel's own limit is checked again at launch). */
    while ((size_t)t.wg_m * t.wg_n > max_wg && (t.wg_m > 1 || t.wg_n > 1)) {
        if (t.wg_m >= t.wg_n)
            t.wg_m = (t.wg_m + 1) / 2;
        else
            t.wg_n = (t.wg_n + 1) / 2;
    }
    if (t.pack_wg > max_wg) t.pack_wg = (unsigned)max_wg;

    if (override != NULL) {
        err = kiln_gemm_parse_override(override, &t);
        if (err != CL_SUCCESS) return err;
        if ((size_t)t.wg_m * t.wg_n > max_wg || t.pack_wg > max_wg) return CL_INVALID_VALUE;
    }
    if (!kiln_gemm_tune_valid(&t)) return CL_INVALID_VALUE;
    *out = t;
    kiln_gemm_format_options(out, out->options_buf, sizeof out->options_buf);
    out->build_options = out->options_buf;
    return CL_SUCCESS;
}

static size_t kiln_gemm_round_up(size_t x, size_t to) {
    return (x + to - 1) / to * to;
}

/* Largest work-group shape (a, b) with a <= *a, b <= *b and a * b <= limit. */
static void kiln_gemm_fit_wg(size_t *a, size_t *b, size_t limit) {
    while (*a * *b > limit) {
        if (*a >= *b)
            *a = (*a + 1) / 2;
        else
            *b = (*b + 1) / 2;
    }
}

static cl_int kiln_gemm_kernel_wg_limit(cl_kernel kern, cl_command_queue q, size_t *limit,
                                        size_t item_sizes[3]) {
    cl_device_id dev;
    cl_int err = clGetCommandQueueInfo(q, CL_QUEUE_DEVICE, sizeof dev, &dev, NULL);
    if (err != CL_SUCCESS) return err;
    err =
        clGetKernelWorkGroupInfo(kern, dev, CL_KERNEL_WORK_GROUP_SIZE, sizeof *limit, limit, NULL);
    if (err != CL_SUCCESS) return err;
    err = clGetDeviceInfo(dev, CL_DEVICE_MAX_WORK_ITEM_SIZES, 3 * sizeof(size_t), item_sizes, NULL);
    if (err != CL_SUCCESS) return err;
    if (*limit < 1) *limit = 1;
    return CL_SUCCESS;
}

/* Set kernel arguments in order; stops at the first failure. */
struct kiln_gemm_arg {
    size_t size;
    const void *value;
};

static cl_int kiln_gemm_set_args(cl_kernel kern, const struct kiln_gemm_arg *args, cl_uint n) {
    for (cl_uint i = 0; i < n; ++i) {
        cl_int err = clSetKernelArg(kern, i, args[i].size, args[i].value);
        if (err != CL_SUCCESS) return err;
    }
    return CL_SUCCESS;
}

/* Where the compute kernel finds one operand (see kiln_gemm_compute in gemm.cl). */
struct kiln_gemm_operand {
    cl_mem mem;
    cl_ulong off, stride, ps, rs, ks;
};

/* Pack `batches` matrices of `rows` x k (element (r, p) at src[off + r*rs + p*ks]) into
 * dst at element dst_off, dst_stride elements apart. */
static cl_int kiln_gemm_enqueue_pack(cl_command_queue q, cl_kernel kern, size_t wg, cl_mem src,
                                     cl_ulong off, cl_ulong rs, cl_ulong ks, cl_ulong stride,
                                     cl_mem dst, cl_ulong dst_off, cl_ulong dst_stride, size_t rows,
                                     size_t k, size_t width, size_t batches) {
    const cl_uint u_rows = (cl_uint)rows, u_k = (cl_uint)k;
    const struct kiln_gemm_arg args[] = {
        {sizeof src, &src},         {sizeof off, &off},
        {sizeof rs, &rs},           {sizeof ks, &ks},
        {sizeof stride, &stride},   {sizeof dst, &dst},
        {sizeof dst_off, &dst_off}, {sizeof dst_stride, &dst_stride},
        {sizeof u_rows, &u_rows},   {sizeof u_k, &u_k},
    };
    cl_int err = kiln_gemm_set_args(kern, args, sizeof args / sizeof args[0]);
    if (err != CL_SUCCESS) return err;
    const size_t global[3] = {kiln_gemm_round_up(k, wg), (rows + width - 1) / width, batches};
    const size_t local[3] = {wg, 1, 1};
    return clEnqueueNDRangeKernel(q, kern, 3, NULL, global, local, 0, NULL, NULL);
}

cl_int kiln_gemm_enqueue(cl_command_queue q, const struct kiln_gemm_tune *tune,
                         kiln_gemm_get_kernel_fn get_kernel, kiln_gemm_get_scratch_fn get_scratch,
                         void *user, const kiln_gemm_desc *call) {
    if (q == NULL || tune == NULL || get_kernel == NULL || get_scratch == NULL || call == NULL ||
        !kiln_gemm_tune_valid(tune))
        return CL_INVALID_VALUE;
    cl_mem mem_a = (cl_mem)call->a->buffer->handle, mem_b = (cl_mem)call->b->buffer->handle,
           mem_c = (cl_mem)call->c->buffer->handle;
    const size_t m = call->m, n = call->n, k = call->k, batch = call->batch;
    if (m == 0 || n == 0 || batch == 0) return CL_SUCCESS;
    if (m > UINT_MAX / 2 || n > UINT_MAX / 2 || k > UINT_MAX / 2) return CL_INVALID_VALUE;
    /* Stored shapes: A is m x k (k x m when transposed), B is k x n (n x k). */
    if (call->ld_a < (call->trans_a ? m : k) || call->ld_b < (call->trans_b ? k : n) ||
        call->ld_c < n)
        return CL_INVALID_VALUE;
    /* Every batch entry writing the same C would race. */
    if (batch > 1 && call->stride_c == 0) return CL_INVALID_VALUE;

    /* A device that caps a work-item's loop iterations gets k in passes short enough for
       it, accumulated into C in order (beta = 1 after the first). The iterations per k step
       are bounded by one per multiply-add lane plus the loads, not by the source's loop
       count: a compiler may keep the loops marked for unrolling and split wide vectors. */
    if (tune->loop_budget) {
        const size_t per_k = (size_t)tune->tile_m * tune->tile_n + tune->tile_m + tune->tile_n;
        const size_t fixed = 2 * (size_t)tune->tile_m * tune->tile_n + 2 * tune->tile_n;
        const size_t kc =
            tune->loop_budget > fixed + per_k ? (tune->loop_budget - fixed) / per_k : 1;
        if (k > kc) {
            struct kiln_gemm_tune whole = *tune;
            whole.loop_budget = 0;
            kiln_gemm_desc part = *call;
            for (size_t k0 = 0; k0 < k; k0 += kc) {
                part.k = k - k0 < kc ? k - k0 : kc;
                part.off_a = call->off_a + k0 * (call->trans_a ? call->ld_a : 1);
                part.off_b = call->off_b + k0 * (call->trans_b ? 1 : call->ld_b);
                part.beta = k0 ? 1.0f : call->beta;
                cl_int err = kiln_gemm_enqueue(q, &whole, get_kernel, get_scratch, user, &part);
                if (err != CL_SUCCESS) return err;
            }
            return CL_SUCCESS;
        }
    }

    const size_t tm = tune->tile_m, tn = tune->tile_n;
    const size_t mt = (m + tm - 1) / tm, nt = (n + tn - 1) / tn;
    /* Which operands the compute kernel reads in place (saves a pack pass and its
     * launches, which dominate small and skinny products). A can be read with any
     * strides; B needs unit column stride, i.e. not transposed. Packing wins when a
     * panel is walked with a large stride over k: each k step then touches a new cache
     * line (a transposed A) or lands in the same few cache sets (a B whose ld is a big
     * power of two), and reuse by neighbouring tiles is lost. */
    const int pack_a =
        !tune->direct_a || (call->trans_a && k * call->ld_a > KILN_GEMM_DIRECT_TRANS_ELEMS);
    const int pack_b =
        call->trans_b || m > tune->direct_b_max_m || (call->ld_b % 1024 == 0 && k > 512);
    const int pack_any = (pack_a || pack_b) && k > 0;

    char options[sizeof tune->options_buf];
    kiln_gemm_format_options(tune, options, sizeof options);
    cl_int err = CL_SUCCESS;
    cl_kernel gemm = get_kernel(user, "kiln_gemm_compute", options, &err);
    if (gemm == NULL) return err != CL_SUCCESS ? err : CL_INVALID_KERNEL;
    cl_kernel pack_a_k = NULL, pack_b_k = NULL;
    if (pack_a && k > 0 && (pack_a_k = get_kernel(user, "kiln_gemm_pack_a", options, &err)) == NULL)
        return err != CL_SUCCESS ? err : CL_INVALID_KERNEL;
    if (pack_b && k > 0 && (pack_b_k = get_kernel(user, "kiln_gemm_pack_b", options, &err)) == NULL)
        return err != CL_SUCCESS ? err : CL_INVALID_KERNEL;

    /* Work-group shapes, clamped to each kernel on this device. */
    size_t item_sizes[3], limit;
    size_t pack_wg = tune->pack_wg < k ? tune->pack_wg : (k > 0 ? k : 1);
    cl_kernel pk[2] = {pack_a_k, pack_b_k};
    for (int i = 0; i < 2; ++i) {
        if (pk[i] == NULL) continue;
        err = kiln_gemm_kernel_wg_limit(pk[i], q, &limit, item_sizes);
        if (err != CL_SUCCESS) return err;
        if (pack_wg > limit) pack_wg = limit;
        if (pack_wg > item_sizes[0]) pack_wg = item_sizes[0];
    }
    err = kiln_gemm_kernel_wg_limit(gemm, q, &limit, item_sizes);
    if (err != CL_SUCCESS) return err;
    size_t wg_m = tune->wg_m < mt ? tune->wg_m : mt;
    size_t wg_n = tune->wg_n < nt ? tune->wg_n : nt;
    if (wg_m > item_sizes[0]) wg_m = item_sizes[0];
    if (wg_n > item_sizes[1]) wg_n = item_sizes[1];
    kiln_gemm_fit_wg(&wg_m, &wg_n, limit);

    /* Scratch holds the packed operands: [broadcast A][broadcast B] once, then per
     * batch entry of a chunk [A][B]. Each part is rounded to 16 floats so panels start
     * on a 64-byte boundary. Batches that don't fit the budget run in chunks that
     * reuse the same scratch (the in-order queue serialises them). */
    const size_t a_elems = pack_a ? kiln_gemm_round_up(mt * tm * k, 16) : 0;
    const size_t b_elems = pack_b ? kiln_gemm_round_up(nt * tn * k, 16) : 0;
    const int bcast_a = batch > 1 && call->stride_a == 0;
    const int bcast_b = batch > 1 && call->stride_b == 0;
    const size_t fixed = (bcast_a ? a_elems : 0) + (bcast_b ? b_elems : 0);
    const size_t per = (bcast_a ? 0 : a_elems) + (bcast_b ? 0 : b_elems);
    const size_t cap = KILN_GEMM_SCRATCH_CAP / sizeof(float);
    size_t chunk = batch;
    if (per > 0 && fixed + per * chunk > cap) chunk = cap > fixed + per ? (cap - fixed) / per : 1;
    cl_mem scratch = NULL;
    if (pack_any) {
        const size_t total = fixed + per * chunk;
        if (total > SIZE_MAX / sizeof(float)) return CL_INVALID_BUFFER_SIZE;
        scratch = get_scratch(user, total * sizeof(float), &err);
        if (scratch == NULL) return err != CL_SUCCESS ? err : CL_MEM_OBJECT_ALLOCATION_FAILURE;
    }
    const size_t a_base = bcast_a ? 0 : fixed;
    const size_t b_base = bcast_b ? (bcast_a ? a_elems : 0) : fixed + (bcast_a ? 0 : a_elems);

    /* op(A)(i, p) = A[i*lda + p] or A[p*lda + i]; op(B)^T(j, p) = B[p*ldb + j] or
     * B[j*ldb + p]. Both are packed as "rows x k" matrices. */
    const cl_ulong a_rs = call->trans_a ? 1 : call->ld_a, a_ks = call->trans_a ? call->ld_a : 1;
    const cl_ulong b_rs = call->trans_b ? call->ld_b : 1, b_ks = call->trans_b ? 1 : call->ld_b;

    struct kiln_gemm_operand oa, ob;
    if (pack_a) {
        oa = (struct kiln_gemm_operand){scratch, a_base, bcast_a ? 0 : per, k * tm, 1, tm};
    } else {
        oa = (struct kiln_gemm_operand){mem_a, call->off_a, call->stride_a, tm * a_rs, a_rs, a_ks};
    }
    if (pack_b) {
        ob = (struct kiln_gemm_operand){scratch, b_base, bcast_b ? 0 : per, k * tn, 1, tn};
    } else {
        ob = (struct kiln_gemm_operand){mem_b, call->off_b, call->stride_b, tn, 1, b_ks};
    }
    if (k == 0) /* nothing is packed or read; any valid buffer will do */
        oa.mem = mem_a, ob.mem = mem_b;

    if (pack_a_k != NULL && bcast_a) {
        err = kiln_gemm_enqueue_pack(q, pack_a_k, pack_wg, mem_a, call->off_a, a_rs, a_ks, 0,
                                     scratch, a_base, 0, m, k, tm, 1);
        if (err != CL_SUCCESS) return err;
    }
    if (pack_b_k != NULL && bcast_b) {
        err = kiln_gemm_enqueue_pack(q, pack_b_k, pack_wg, mem_b, call->off_b, b_rs, b_ks, 0,
                                     scratch, b_base, 0, n, k, tn, 1);
        if (err != CL_SUCCESS) return err;
    }

    for (size_t b0 = 0; b0 < batch; b0 += chunk) {
        const size_t cnt = batch - b0 < chunk ? batch - b0 : chunk;
        if (pack_a_k != NULL && !bcast_a) {
            err = kiln_gemm_enqueue_pack(q, pack_a_k, pack_wg, mem_a,
                                         call->off_a + b0 * call->stride_a, a_rs, a_ks,
                                         call->stride_a, scratch, a_base, per, m, k, tm, cnt);
            if (err != CL_SUCCESS) return err;
        }
        if (pack_b_k != NULL && !bcast_b) {
            err = kiln_gemm_enqueue_pack(q, pack_b_k, pack_wg, mem_b,
                                         call->off_b + b0 * call->stride_b, b_rs, b_ks,
                                         call->stride_b, scratch, b_base, per, n, k, tn, cnt);
            if (err != CL_SUCCESS) return err;
        }
        /* Operands read in place advance with the chunk; packed ones restart at their
         * scratch base. */
        const cl_ulong a_off = oa.off + (pack_a ? 0 : b0 * call->stride_a);
        const cl_ulong b_off = ob.off + (pack_b ? 0 : b0 * call->stride_b);
        const cl_ulong c_off = call->off_c + b0 * call->stride_c;
        const cl_ulong ldc = call->ld_c, c_stride = call->stride_c;
        const cl_uint u_m = (cl_uint)m, u_n = (cl_uint)n, u_k = (cl_uint)k;
        const cl_uint b_padded = pack_b && k > 0;
        const float alpha = call->alpha, beta = call->beta;
        const struct kiln_gemm_arg args[] = {
            {sizeof oa.mem, &oa.mem},     {sizeof a_off, &a_off}, {sizeof oa.stride, &oa.stride},
            {sizeof oa.ps, &oa.ps},       {sizeof oa.rs, &oa.rs}, {sizeof oa.ks, &oa.ks},
            {sizeof ob.mem, &ob.mem},     {sizeof b_off, &b_off}, {sizeof ob.stride, &ob.stride},
            {sizeof ob.ps, &ob.ps},       {sizeof ob.ks, &ob.ks}, {sizeof b_padded, &b_padded},
            {sizeof mem_c, &mem_c},       {sizeof c_off, &c_off}, {sizeof ldc, &ldc},
            {sizeof c_stride, &c_stride}, {sizeof u_m, &u_m},     {sizeof u_n, &u_n},
            {sizeof u_k, &u_k},           {sizeof alpha, &alpha}, {sizeof beta, &beta},
        };
        err = kiln_gemm_set_args(gemm, args, sizeof args / sizeof args[0]);
        if (err != CL_SUCCESS) return err;
        const size_t global[3] = {kiln_gemm_round_up(mt, wg_m), kiln_gemm_round_up(nt, wg_n), cnt};
        const size_t local[3] = {wg_m, wg_n, 1};
        err = clEnqueueNDRangeKernel(q, gemm, 3, NULL, global, local, 0, NULL, NULL);
        if (err != CL_SUCCESS) return err;
    }
    return CL_SUCCESS;
}
