/* ONNX export (kiln/onnx.h): walks the finalized model in definition order (a topological
   order), maps each node to standard ONNX ops as the trainer's eval graph computes it
   (train-lower.c; the padding comes from the same kt_pads), and writes the protobuf.

   The protobuf is written by the small encoder below rather than through protobuf-c: the
   handful of ONNX messages and fields used here take a few hundred lines, with no
   code-generation step in the build and no new Debian dependency. Field numbers are those of
   onnx/onnx.proto. The initializers' bytes are streamed from the loaded checkpoint into the
   file (the message lengths are computed first), so a 500 MB VGG16 is never copied into an
   encoding buffer; like the checkpoints, the raw data is the host's little-endian bytes. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/backend-impl.h"
#include "kiln/backend.h"
#include "kiln/checkpoint.h"
#include "kiln/kiln.h"
#include "kiln/onnx.h"
#include "model-impl.h"
#include "train-impl.h"

#define OPSET      17
#define IR_VERSION 8 /* the IR of opset 17 (onnx 1.12) */

/* ---- protobuf encoding ---- */

enum { WT_VARINT = 0, WT_LEN = 2, WT_I32 = 5 };

/* onnx.proto field numbers of the messages written here. */
enum {
    MODEL_IR_VERSION = 1,
    MODEL_PRODUCER_NAME = 2,
    MODEL_PRODUCER_VERSION = 3,
    MODEL_DOC = 6,
    MODEL_GRAPH = 7,
    MODEL_OPSET_IMPORT = 8,
    MODEL_METADATA = 14,
    OPSET_VERSION = 2,
    GRAPH_NODE = 1,
    GRAPH_NAME = 2,
    GRAPH_INITIALIZER = 5,
    GRAPH_INPUT = 11,
    GRAPH_OUTPUT = 12,
    NODE_INPUT = 1,
    NODE_OUTPUT = 2,
    NODE_NAME = 3,
    NODE_OP_TYPE = 4,
    NODE_ATTRIBUTE = 5,
    ATTR_NAME = 1,
    ATTR_F = 2,
    ATTR_I = 3,
    ATTR_INTS = 8,
    ATTR_TYPE = 20,
    TENSOR_DIMS = 1,
    TENSOR_DATA_TYPE = 2,
    TENSOR_NAME = 8,
    TENSOR_RAW_DATA = 9,
    VALUE_INFO_NAME = 1,
    VALUE_INFO_TYPE = 2,
    TYPE_TENSOR_TYPE = 1,
    TENSOR_TYPE_ELEM_TYPE = 1,
    TENSOR_TYPE_SHAPE = 2,
    SHAPE_DIM = 1,
    DIM_VALUE = 1,
    DIM_PARAM = 2,
    ENTRY_KEY = 1,
    ENTRY_VALUE = 2
};
/* AttributeProto.AttributeType and TensorProto.DataType values. */
enum { AT_FLOAT = 1, AT_INT = 2, AT_INTS = 7 };
enum { DT_FLOAT = 1, DT_INT64 = 7 };

/* A growing byte buffer holding one encoded message; `oom` sticks after a failed growth. */
typedef struct pb {
    uint8_t *d;
    size_t n, cap;
    int oom;
} pb;

static void pb_free(pb *b) {
    free(b->d);
    memset(b, 0, sizeof *b);
}

static void pb_raw(pb *b, const void *p, size_t n) {
    if (b->oom || !n) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        uint8_t *d = realloc(b->d, cap);
        if (!d) {
            b->oom = 1;
            return;
        }
        b->d = d, b->cap = cap;
    }
    memcpy(b->d + b->n, p, n);
    b->n += n;
}

static size_t varint(uint64_t v, uint8_t out[10]) {
    size_t n = 0;
    do {
        out[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return n;
}

static size_t varint_size(uint64_t v) {
    uint8_t tmp[10];
    return varint(v, tmp);
}

static void pb_varint(pb *b, uint64_t v) {
    uint8_t tmp[10];
    pb_raw(b, tmp, varint(v, tmp));
}

static void pb_key(pb *b, int field, int wire) {
    pb_varint(b, (uint64_t)field << 3 | (uint64_t)wire);
}

/* int64 / int32 / enum fields: negative values are ten-byte two's complement varints. */
static void pb_int(pb *b, int field, int64_t v) {
    pb_key(b, field, WT_VARINT);
    pb_varint(b, (uint64_t)v);
}

static void pb_float(pb *b, int field, float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint8_t le[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    pb_key(b, field, WT_I32);
    pb_raw(b, le, 4);
}

static void pb_bytes(pb *b, int field, const void *p, size_t n) {
    pb_key(b, field, WT_LEN);
    pb_varint(b, n);
    pb_raw(b, p, n);
}

static void pb_str(pb *b, int field, const char *s) {
    pb_bytes(b, field, s, strlen(s));
}

/* Appends sub-message m as field `field` of b and frees m. */
static void pb_msg(pb *b, int field, pb *m) {
    if (m->oom) b->oom = 1;
    pb_bytes(b, field, m->d, m->n);
    pb_free(m);
}

/* ---- AttributeProto ---- */

static void attr_begin(pb *a, const char *name, int type) {
    memset(a, 0, sizeof *a);
    pb_str(a, ATTR_NAME, name);
    pb_int(a, ATTR_TYPE, type);
}

static void attr_int(pb *node, const char *name, int64_t v) {
    pb a;
    attr_begin(&a, name, AT_INT);
    pb_int(&a, ATTR_I, v);
    pb_msg(node, NODE_ATTRIBUTE, &a);
}

/* repeated int64 in proto2 is unpacked: one key per element. */
static void attr_ints(pb *node, const char *name, const int64_t *v, int n) {
    pb a;
    attr_begin(&a, name, AT_INTS);
    for (int k = 0; k < n; k++) pb_int(&a, ATTR_INTS, v[k]);
    pb_msg(node, NODE_ATTRIBUTE, &a);
}

static void attr_float(pb *node, const char *name, float v) {
    pb a;
    attr_begin(&a, name, AT_FLOAT);
    pb_float(&a, ATTR_F, v);
    pb_msg(node, NODE_ATTRIBUTE, &a);
}

/* ---- the graph being built ---- */

#define NAME 112 /* node names (63) + a suffix */

/* An initializer: a small constant held here, or a slice of a checkpoint tensor. */
typedef struct onnx_init {
    char name[NAME];
    int dtype, ndim;
    int64_t dims[4];
    int ckpt;   /* >= 0: index into the checkpoint requests; the data starts at float `off` */
    size_t off; /* in elements */
    uint8_t small[64];
    size_t bytes;
} onnx_init;

/* A checkpoint tensor the graph needs, loaded on the host once the walk is done. */
typedef struct ckpt_req {
    char name[NAME];
    kiln_tensor t;
    int ndim;
    int64_t shape[4];
} ckpt_req;

typedef struct exporter {
    struct kiln_model *m;
    pb graph; /* the GraphProto without its initializers */
    int nodes;
    onnx_init *inits;
    int ninits, cap_inits;
    ckpt_req *reqs;
    int nreqs, cap_reqs;
    char (*val)[NAME]; /* per model node: the ONNX value holding its output */
    int *pending;      /* per model node: still the raw image (input and pipeline nodes) */
    int in_node, in_set, out_node;
    int64_t in_shape[4]; /* N (unused), C, H, W */
    kiln_status err;
} exporter;

static void *grow(void *p, int *cap, int need, size_t elem) {
    if (need <= *cap) return p;
    int c = *cap ? *cap * 2 : 16;
    while (c < need) c *= 2;
    void *q = realloc(p, (size_t)c * elem);
    if (q) *cap = c;
    return q;
}

static kiln_status oom(void) {
    return kiln_error(KILN_OUT_OF_MEMORY, "onnx export: out of host memory");
}

static onnx_init *add_init(exporter *e, const char *name, int dtype, int ndim,
                           const int64_t *dims) {
    onnx_init *g = grow(e->inits, &e->cap_inits, e->ninits + 1, sizeof *g);
    if (!g) {
        if (!e->err) e->err = oom();
        return NULL;
    }
    e->inits = g;
    onnx_init *in = &e->inits[e->ninits++];
    memset(in, 0, sizeof *in);
    snprintf(in->name, sizeof in->name, "%s", name);
    in->dtype = dtype;
    in->ndim = ndim;
    in->ckpt = -1;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= (in->dims[d] = dims[d]);
    in->bytes = (size_t)n * (dtype == DT_INT64 ? 8 : 4);
    return in;
}

/* A constant initializer "<node>.<what>" of n floats (shape dims) or int64s. */
static const char *constant(exporter *e, const km_node *nd, const char *what, int dtype, int ndim,
                            const int64_t *dims, const void *data) {
    char name[NAME];
    snprintf(name, sizeof name, "%s.%s", nd->name, what);
    onnx_init *in = add_init(e, name, dtype, ndim, dims);
    if (!in) return NULL;
    memcpy(in->small, data, in->bytes); /* callers pass at most 8 values */
    return in->name;
}

static const char *scalar(exporter *e, const km_node *nd, const char *what, float v) {
    return constant(e, nd, what, DT_FLOAT, 0, NULL, &v);
}

/* Requests checkpoint entry "<node>.<suffix>" of the given shape (the names lowering gives
   the parameters, train-lower.c); its index, or -1. */
static int request(exporter *e, const km_node *nd, const char *suffix, int ndim,
                   const int64_t *shape) {
    ckpt_req *r = grow(e->reqs, &e->cap_reqs, e->nreqs + 1, sizeof *r);
    if (!r) {
        if (!e->err) e->err = oom();
        return -1;
    }
    e->reqs = r;
    r = &e->reqs[e->nreqs];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s.%s", nd->name, suffix);
    r->ndim = ndim;
    memcpy(r->shape, shape, sizeof(int64_t) * (size_t)ndim);
    return e->nreqs++;
}

/* Initializer `name` of shape dims: the checkpoint request's floats from element off on. */
static const char *slice(exporter *e, int req, const char *name, size_t off, int ndim,
                         const int64_t *dims) {
    onnx_init *in = req < 0 ? NULL : add_init(e, name, DT_FLOAT, ndim, dims);
    if (!in) return NULL;
    in->ckpt = req;
    in->off = off;
    return in->name;
}

/* Checkpoint entry "<node>.<suffix>" as an initializer of the same name. */
static const char *weight(exporter *e, const km_node *nd, const char *suffix, int ndim,
                          const int64_t *shape) {
    int r = request(e, nd, suffix, ndim, shape);
    return r < 0 ? NULL : slice(e, r, e->reqs[r].name, 0, ndim, shape);
}

/* Appends NodeProto `op` (inputs in[0..nin), one output) to the graph; `attrs` holds its
   encoded attributes (may be NULL) and is consumed. */
static void emit(exporter *e, const char *op, const char *const *in, int nin, const char *out,
                 pb *attrs) {
    pb node = {0};
    if (attrs) {
        node = *attrs;
        memset(attrs, 0, sizeof *attrs);
    }
    for (int k = 0; k < nin; k++) pb_str(&node, NODE_INPUT, in[k] ? in[k] : "");
    pb_str(&node, NODE_OUTPUT, out);
    pb_str(&node, NODE_NAME, out);
    pb_str(&node, NODE_OP_TYPE, op);
    pb_msg(&e->graph, GRAPH_NODE, &node);
    e->nodes++;
}

static void emit1(exporter *e, const char *op, const char *x, const char *out, pb *attrs) {
    emit(e, op, &x, 1, out, attrs);
}

static void emit2(exporter *e, const char *op, const char *a, const char *b, const char *out) {
    const char *in[2] = {a, b};
    emit(e, op, in, 2, out, NULL);
}

static const km_attr_val *attr(const km_node *nd, const char *key) {
    int k = km_attr_index(nd->spec, key);
    return k >= 0 && nd->av[k].set ? &nd->av[k] : NULL;
}

/* Records the first error: "file:line: node 'name' (type): ...". */
static kiln_status fail(exporter *e, const km_node *nd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static kiln_status fail(exporter *e, const km_node *nd, const char *fmt, ...) {
    if (e->err) return e->err;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return e->err = km_node_error(KILN_UNSUPPORTED, e->m, nd, "%s", msg);
}

/* The ONNX value of model node j as `reader` reads it. While j is still the raw image (the
   input and pipeline nodes: decode, resize and crops run before the upload) that is the graph
   input, whose size the first reader fixes, as the upload does in lowering. */
static const char *use(exporter *e, const km_node *reader, int j) {
    if (!e->pending[j]) return e->val[j];
    const km_node *pn = &e->m->nodes[j];
    if (!e->in_set) {
        memcpy(e->in_shape, pn->shape, sizeof e->in_shape);
        e->in_set = 1;
    } else if (memcmp(e->in_shape + 1, pn->shape + 1, 3 * sizeof(int64_t))) {
        fail(e, reader,
             "reads the image at another size than other nodes (%s); the exported graph has one "
             "input size",
             pn->name);
        return NULL;
    }
    return e->m->nodes[e->in_node].name;
}

/* ---- the node mapping ---- */

/* One device node: i its index, xn its first input and x that input's ONNX value. */
typedef void (*export_fn)(exporter *e, int i, const km_node *nd, const km_node *xn, const char *x);

static void conv(exporter *e, int i, const km_node *nd, const km_node *xn, const char *x) {
    const km_attr_val *kv = attr(nd, "kernel"), *sv = attr(nd, "stride"),
                      *dv = attr(nd, "dilation");
    int64_t O = attr(nd, "filters")->i[0], g = attr(nd, "groups")->i[0], C = xn->shape[1];
    int32_t p[4];
    kt_pads(nd, xn, kv->i[0], kv->i[1], sv->i[0], sv->i[1], dv->i[0], dv->i[1], p);
    int64_t ws[4] = {O, C / g, kv->i[0], kv->i[1]}, bs[1] = {O};
    const char *in[3] = {x, weight(e, nd, "weight", 4, ws),
                         attr(nd, "bias")->e ? weight(e, nd, "bias", 1, bs) : NULL};
    pb a = {0};
    int64_t pads[4] = {p[0], p[2], p[1], p[3]}; /* ONNX: all begins, then all ends */
    attr_ints(&a, "kernel_shape", kv->i, 2);
    attr_ints(&a, "strides", sv->i, 2);
    attr_ints(&a, "pads", pads, 4);
    attr_ints(&a, "dilations", dv->i, 2);
    attr_int(&a, "group", g);
    emit(e, "Conv", in, in[2] ? 3 : 2, nd->name, &a);
}

static void dense(exporter *e, int i, const km_node *nd, const km_node *xn, const char *x) {
    if (xn->ndim != 2) {
        fail(e, nd, "dense needs a (N, F) input: flatten first");
        return;
    }
    int64_t U = attr(nd, "units")->i[0], ws[2] = {U, xn->shape[1]}, bs[1] = {U};
    const char *in[3] = {x, weight(e, nd, "weight", 2, ws),
                         attr(nd, "bias")->e ? weight(e, nd, "bias", 1, bs) : NULL};
    pb a = {0};
    attr_int(&a, "transB", 1); /* kiln's weights are [units, in], PyTorch's layout */
    emit(e, "Gemm", in, in[2] ? 3 : 2, nd->name, &a);
}

/* kiln pools by PyTorch's rule (ceil mode included: a last window that starts inside the
   input or the top padding, clipped at the input). ONNX's ceil_mode has differed between
   runtimes on that last window, so the export states the output size through explicit pads
   in floor mode instead: `extra` rows/columns at the end make floor mode produce kiln's size.
   Max pooling ignores padding either way. Average pooling counts padding in the divisor when
   count_include_pad, but kiln's divisor stops at the padded input (the ceil overhang is never
   counted); then the real padding becomes a zero Pad and the pool excludes the rest. */
static void pool(exporter *e, int i, const km_node *nd, const km_node *xn, const char *x) {
    int avg = nd->spec->id == KM_L_AVGPOOL;
    const km_attr_val *kv = attr(nd, "pool"), *sv = attr(nd, "stride");
    int64_t kh = kv->i[0], kw = kv->i[1], sh = sv ? sv->i[0] : kh, sw = sv ? sv->i[1] : kw;
    int32_t p[4];
    kt_pads(nd, xn, kh, kw, sh, sw, 1, 1, p);
    int64_t eh = (nd->shape[2] - 1) * sh + kh - (xn->shape[2] + p[0] + p[1]);
    int64_t ew = (nd->shape[3] - 1) * sw + kw - (xn->shape[3] + p[2] + p[3]);
    if (eh < 0) eh = 0;
    if (ew < 0) ew = 0;
    if (p[0] >= kh || p[1] + eh >= kh || p[2] >= kw || p[3] + ew >= kw) {
        fail(e, nd, "padding as large as the pool window has no ONNX equivalent");
        return;
    }
    int cip = avg && attr(nd, "count_include_pad")->e;
    int64_t k[2] = {kh, kw}, s[2] = {sh, sw};
    int64_t pads[4] = {p[0], p[2], p[1] + eh, p[3] + ew};
    char padded[NAME];
    if (cip && (eh || ew)) {
        if (p[0] || p[1] || p[2] || p[3]) {
            int64_t pd[8] = {0, 0, p[0], p[2], 0, 0, p[1], p[3]}, n8[1] = {8};
            snprintf(padded, sizeof padded, "%s/pad", nd->name);
            emit2(e, "Pad", x, constant(e, nd, "pads", DT_INT64, 1, n8, pd), padded);
            x = padded;
        }
        pads[0] = pads[1] = 0, pads[2] = eh, pads[3] = ew;
        cip = 0;
    }
    pb a = {0};
    attr_ints(&a, "kernel_shape", k, 2);
    attr_ints(&a, "strides", s, 2);
    attr_ints(&a, "pads", pads, 4);
    if (avg) attr_int(&a, "count_include_pad", cip);
    emit1(e, avg ? "AveragePool" : "MaxPool", x, nd->name, &a);
}

static void batchnorm(exporter *e, int i, const km_node *nd, const km_node *xn, const char *x) {
    int64_t C = xn->shape[1], cs[1] = {C}, ss[2] = {2, C};
    const char *gamma = weight(e, nd, "weight", 1, cs), *beta = weight(e, nd, "bias", 1, cs);
    /* The checkpoint's [2, C] running statistics (mean, variance) as the two inputs. */
    int stats = request(e, nd, "running_stats", 2, ss);
    char mean[NAME], var[NAME];
    snprintf(mean, sizeof mean, "%s.running_mean", nd->name);
    snprintf(var, sizeof var, "%s.running_var", nd->name);
    const char *in[5] = {x, gamma, beta, slice(e, stats, mean, 0, 1, cs),
                         slice(e, stats, var, (size_t)C, 1, cs)};
    pb a = {0};
    attr_float(&a, "epsilon", (float)attr(nd, "eps")->f[0]);
    emit(e, "BatchNormalization", in, 5, nd->name, &a);
}

static void activation(exporter *e, int i, const km_node *nd, const km_node *xn, const char *x) {
    static const char *const plain[KM_L_COUNT] = {
        [KM_L_RELU] = "Relu", [KM_L_SIGMOID] = "Sigmoid", [KM_L_TANH] = "Tanh"};
    km_layer_id id = nd->spec->id;
    if (plain[id]) {
        emit1(e, plain[id], x, nd->name, NULL);
        return;
    }
    if (id == KM_L_LEAKY_RELU || id == KM_L_ELU) {
        pb a = {0};
        attr_float(&a, "alpha", (float)attr(nd, "alpha")->f[0]);
        emit1(e, id == KM_L_LEAKY_RELU ? "LeakyRelu" : "Elu", x, nd->name, &a);
        return;
    }
    /* gelu, kiln's erf form: 0.5 x (1 + erf(x / sqrt 2)); ONNX has Gelu only from opset 20. */
    char t[4][NAME];
    for (int k = 0; k < 4; k++) snprintf(t[k], sizeof t[k], "%s/gelu%d", nd->name, k);
    emit2(e, "Mul", x, scalar(e, nd, "rsqrt2", 0.70710678118654752f), t[0]);
    emit1(e, "Erf", t[0], t[1], NULL);
    emit2(e, "Add", t[1], scalar(e, nd, "one", 1.0f), t[2]);
    emit2(e, "Mul", x, t[2], t[3]);
    emit2(e, "Mul", t[3], scalar(e, nd, "half", 0.5f), nd->name);
}

/* rescale: x * scale (+ offset); normalize: (x - mean) / std, per channel or one value. */
static void preproc(exporter *e, int i, const km_node *nd, const km_node *xn, const char *x) {
    char mid[NAME];
    if (nd->spec->id == KM_L_RESCALE) {
        float off = (float)attr(nd, "offset")->f[0];
        snprintf(mid, sizeof mid, "%s/scaled", nd->name);
        emit2(e, "Mul", x, scalar(e, nd, "scale", (float)attr(nd, "scale")->f[0]),
              off != 0 ? mid : nd->name);
        if (off != 0) emit2(e, "Add", mid, scalar(e, nd, "offset", off), nd->name);
        return;
    }
    const km_attr_val *mv = attr(nd, "mean"), *sv = attr(nd, "std");
    int64_t C = nd->shape[1];
    if ((mv->n != 1 && mv->n != C) || (sv->n != 1 && sv->n != C)) {
        fail(e, nd, "mean and std need 1 value or one per channel");
        return;
    }
    float mean[4], sd[4];
    for (int k = 0; k < mv->n; k++) mean[k] = (float)mv->f[k];
    for (int k = 0; k < sv->n; k++) sd[k] = (float)sv->f[k];
    int64_t dm[4] = {1, mv->n, 1, 1}, ds[4] = {1, sv->n, 1, 1};
    snprintf(mid, sizeof mid, "%s/centered", nd->name);
    emit2(e, "Sub", x, constant(e, nd, "mean", DT_FLOAT, mv->n > 1 ? 4 : 0, dm, mean), mid);
    emit2(e, "Div", mid, constant(e, nd, "std", DT_FLOAT, sv->n > 1 ? 4 : 0, ds, sd), nd->name);
}

static void global_avg_pool(exporter *e, int i, const km_node *nd, const km_node *xn,
                            const char *x) {
    char pooled[NAME];
    snprintf(pooled, sizeof pooled, "%s/pooled", nd->name);
    emit1(e, "GlobalAveragePool", x, pooled, NULL);
    pb a = {0};
    attr_int(&a, "axis", 1);
    emit1(e, "Flatten", pooled, nd->name, &a);
}

static void lrn(exporter *e, int i, const km_node *nd, const km_node *xn, const char *x) {
    int64_t size = attr(nd, "size")->i[0];
    /* kiln (like PyTorch) sums size/2 channels before and (size-1)/2 after; ONNX the other
       way round, which only agrees for odd sizes. */
    if (size % 2 == 0) {
        fail(e, nd,
             "an even size has no ONNX LRN equivalent (ONNX centres the window the other "
             "way); use an odd size");
        return;
    }
    pb a = {0};
    attr_int(&a, "size", size);
    attr_float(&a, "alpha", (float)attr(nd, "alpha")->f[0]);
    attr_float(&a, "beta", (float)attr(nd, "beta")->f[0]);
    attr_float(&a, "bias", (float)attr(nd, "k")->f[0]);
    emit1(e, "LRN", x, nd->name, &a);
}

/* Identity at inference; softmax is fused with the loss (the export adds one only when asked,
   like kiln predict). */
static void identity(exporter *e, int i, const km_node *nd, const km_node *xn, const char *x) {
    snprintf(e->val[i], sizeof e->val[i], "%s", x);
}

static void flatten(exporter *e, int i, const km_node *nd, const km_node *xn, const char *x) {
    if (xn->ndim == 2) {
        identity(e, i, nd, xn, x);
        return;
    }
    pb a = {0};
    attr_int(&a, "axis", 1);
    emit1(e, "Flatten", x, nd->name, &a);
}

static void reshape(exporter *e, int i, const km_node *nd, const km_node *xn, const char *x) {
    int64_t shape[4] = {-1}, n[1] = {nd->ndim};
    for (int d = 1; d < nd->ndim; d++) shape[d] = nd->shape[d];
    emit2(e, "Reshape", x, constant(e, nd, "shape", DT_INT64, 1, n, shape), nd->name);
}

/* add, concat */
static void merge(exporter *e, int i, const km_node *nd, const km_node *xn, const char *x) {
    const char *in[KILN_MODEL_MAX_INPUTS];
    for (int k = 0; k < nd->n_in; k++)
        if (!(in[k] = use(e, nd, nd->in[k]))) return;
    if (nd->spec->id == KM_L_CONCAT) {
        pb a = {0};
        attr_int(&a, "axis", 1);
        emit(e, "Concat", in, nd->n_in, nd->name, &a);
        return;
    }
    /* Pairwise from the left, as lowering adds them. */
    char part[2][NAME];
    const char *acc = in[0];
    for (int k = 1; k < nd->n_in; k++) {
        char *out = part[k % 2];
        if (k == nd->n_in - 1)
            out = e->val[i];
        else
            snprintf(out, NAME, "%s/sum%d", nd->name, k);
        emit2(e, "Add", acc, in[k], out);
        acc = out;
    }
}

/* The input and the pipeline's nodes have none: walk() handles them before the upload. */
static const export_fn exporters[KM_L_COUNT] = {
    [KM_L_CONV2D] = conv,
    [KM_L_DENSE] = dense,
    [KM_L_RELU] = activation,
    [KM_L_LEAKY_RELU] = activation,
    [KM_L_ELU] = activation,
    [KM_L_SIGMOID] = activation,
    [KM_L_TANH] = activation,
    [KM_L_GELU] = activation,
    [KM_L_MAXPOOL] = pool,
    [KM_L_AVGPOOL] = pool,
    [KM_L_GLOBAL_AVG_POOL] = global_avg_pool,
    [KM_L_LRN] = lrn,
    [KM_L_BATCHNORM] = batchnorm,
    [KM_L_DROPOUT] = identity,
    [KM_L_ADD] = merge,
    [KM_L_CONCAT] = merge,
    [KM_L_FLATTEN] = flatten,
    [KM_L_RESHAPE] = reshape,
    [KM_L_SOFTMAX] = identity,
    [KM_L_RESCALE] = preproc,
    [KM_L_NORMALIZE] = preproc,
};

int km_layer_exports(km_layer_id id) {
    return (unsigned)id < KM_L_COUNT && exporters[id];
}

/* One device node; sets e->val[i] (an alias for nodes that are identities at inference). */
static void map_node(exporter *e, int i) {
    struct kiln_model *m = e->m;
    const km_node *nd = &m->nodes[i];
    const km_node *xn = nd->n_in ? &m->nodes[nd->in[0]] : NULL;
    const char *x = xn ? use(e, nd, nd->in[0]) : NULL;
    if (xn && !x) return;
    snprintf(e->val[i], sizeof e->val[i], "%s", nd->name);
    if (km_layer_exports(nd->spec->id))
        exporters[nd->spec->id](e, i, nd, xn, x);
    else
        fail(e, nd, "no ONNX mapping for this node type");
}

static kiln_status walk(exporter *e, const kiln_onnx_options *o, char *out_name, size_t n) {
    struct kiln_model *m = e->m;
    int out = -1;
    e->in_node = -1;
    for (int i = 0; i < m->n && !e->err; i++) {
        const km_node *nd = &m->nodes[i];
        if (nd->is_output && out < 0) out = i;
        if (nd->spec->id == KM_L_INPUT) {
            if (e->in_node >= 0 && e->in_node != i)
                return fail(e, nd, "a second input: the exported graph has one input");
            e->in_node = i;
            e->pending[i] = 1;
            continue;
        }
        if (nd->spec->flags & KM_F_HOST) {
            int j = nd->in[0];
            if (e->pending[j]) {
                e->pending[i] = 1; /* the data pipeline's, before the upload */
            } else if (!memcmp(nd->shape, m->nodes[j].shape, sizeof nd->shape)) {
                memcpy(e->val[i], e->val[j], NAME); /* training-only: identity at inference */
            } else {
                return fail(e, nd,
                            "changes the image size after a rescale/normalize; put it before "
                            "them (it runs in the data pipeline)");
            }
            continue;
        }
        map_node(e, i);
    }
    if (e->err) return e->err;
    if (out < 0) return kiln_error(KILN_INVALID_ARGUMENT, "onnx export: the model has no output");
    const km_node *on = &m->nodes[out];
    e->out_node = out;
    if (e->pending[out] || !e->in_set || !strcmp(e->val[out], m->nodes[e->in_node].name))
        return fail(e, on, "no device node between the input and the output");
    if (on->ndim != 2) return fail(e, on, "the output must be (N, classes) logits");
    snprintf(out_name, n, "%s", e->val[out]);
    if (o && o->softmax) {
        snprintf(out_name, n, "%s",
                 kiln_model_find(m, "probabilities") < 0 ? "probabilities"
                                                         : "output.probabilities");
        pb a = {0};
        attr_int(&a, "axis", 1);
        emit1(e, "Softmax", e->val[out], out_name, &a);
    }
    return e->err;
}

/* ValueInfoProto of a float tensor [N, dims...] with N the dynamic batch. */
static void value_info(pb *graph, int field, const char *name, int ndim, const int64_t *dims) {
    pb shape = {0}, tt = {0}, type = {0}, vi = {0};
    for (int d = 0; d < ndim; d++) {
        pb dim = {0};
        if (d == 0)
            pb_str(&dim, DIM_PARAM, "N");
        else
            pb_int(&dim, DIM_VALUE, dims[d]);
        pb_msg(&shape, SHAPE_DIM, &dim);
    }
    pb_int(&tt, TENSOR_TYPE_ELEM_TYPE, DT_FLOAT);
    pb_msg(&tt, TENSOR_TYPE_SHAPE, &shape);
    pb_msg(&type, TYPE_TENSOR_TYPE, &tt);
    pb_str(&vi, VALUE_INFO_NAME, name);
    pb_msg(&vi, VALUE_INFO_TYPE, &type);
    pb_msg(graph, field, &vi);
}

/* The TensorProto of an initializer without its raw data (written after it). */
static void init_header(const onnx_init *in, pb *h) {
    memset(h, 0, sizeof *h);
    for (int d = 0; d < in->ndim; d++) pb_int(h, TENSOR_DIMS, in->dims[d]);
    pb_int(h, TENSOR_DATA_TYPE, in->dtype);
    pb_str(h, TENSOR_NAME, in->name);
}

static size_t init_body_size(const onnx_init *in, const pb *h) {
    return h->n + varint_size((uint64_t)TENSOR_RAW_DATA << 3 | WT_LEN) + varint_size(in->bytes) +
           in->bytes;
}

static kiln_status write_len(kiln_atomic_file *af, int field, uint64_t len) {
    uint8_t tmp[20];
    size_t n = varint((uint64_t)field << 3 | WT_LEN, tmp);
    n += varint(len, tmp + n);
    return kiln_atomic_write(af, tmp, n);
}

static kiln_status write_file(exporter *e, const char *path, pb *model, int64_t *bytes) {
    /* The graph's length first: its encoded part plus every initializer. */
    uint64_t glen = e->graph.n;
    for (int k = 0; k < e->ninits; k++) {
        pb h;
        init_header(&e->inits[k], &h);
        if (h.oom) return oom();
        size_t body = init_body_size(&e->inits[k], &h);
        glen += varint_size((uint64_t)GRAPH_INITIALIZER << 3 | WT_LEN) + varint_size(body) + body;
        pb_free(&h);
    }
    /* Protobuf parsers refuse messages of 2 GiB and more; ONNX then keeps tensors in external
       files, which this writer does not produce. */
    if (glen + model->n + 16 >= (uint64_t)1 << 31)
        return kiln_error(KILN_UNSUPPORTED,
                          "onnx export: %.0f MB of graph and weights: ONNX files stop at 2 GB "
                          "(larger models need external data, not supported)",
                          (double)glen / 1e6);
    kiln_atomic_file *af = NULL;
    kiln_status st = kiln_atomic_open(path, &af);
    if (st) return st;
    st = kiln_atomic_write(af, model->d, model->n);
    if (!st) st = write_len(af, MODEL_GRAPH, glen);
    if (!st) st = kiln_atomic_write(af, e->graph.d, e->graph.n);
    for (int k = 0; k < e->ninits && !st; k++) {
        const onnx_init *in = &e->inits[k];
        pb h;
        init_header(in, &h);
        const void *data = in->small;
        if (in->ckpt >= 0)
            data = (const float *)kiln_tensor_host_data(&e->reqs[in->ckpt].t) + in->off;
        st = h.oom ? oom() : write_len(af, GRAPH_INITIALIZER, init_body_size(in, &h));
        if (!st) st = kiln_atomic_write(af, h.d, h.n);
        if (!st) st = write_len(af, TENSOR_RAW_DATA, in->bytes);
        if (!st) st = kiln_atomic_write(af, data, in->bytes);
        pb_free(&h);
    }
    if (st) {
        kiln_atomic_abort(af);
        return st;
    }
    *bytes = (int64_t)(model->n + varint_size((uint64_t)MODEL_GRAPH << 3 | WT_LEN) +
                       varint_size(glen) + glen);
    return kiln_atomic_commit(af);
}

/* Every requested entry, validated and read by one kiln_checkpoint_load. */
static kiln_status load_weights(exporter *e, const char *checkpoint, kiln_backend_t *be) {
    kiln_status st = kiln_backend_init("cpu", "", be);
    kiln_ckpt_tensor *list = st ? NULL : calloc((size_t)e->nreqs + 1, sizeof *list);
    if (!st && !list) st = oom();
    for (int k = 0; k < e->nreqs && !st; k++) {
        st = kiln_tensor_alloc(&e->reqs[k].t, *be, KILN_F32, e->reqs[k].ndim, e->reqs[k].shape);
        list[k].name = e->reqs[k].name;
        list[k].tensor = &e->reqs[k].t;
    }
    if (!st) st = kiln_checkpoint_load(checkpoint, list, e->nreqs);
    free(list);
    return st;
}

static void model_header(const char *checkpoint, pb *model) {
    memset(model, 0, sizeof *model);
    pb_int(model, MODEL_IR_VERSION, IR_VERSION);
    pb_str(model, MODEL_PRODUCER_NAME, "kiln");
    pb_str(model, MODEL_PRODUCER_VERSION, KILN_VERSION_STRING);
    pb_str(model, MODEL_DOC,
           "Inference graph exported by kiln export. Input: float32 NCHW pixel values as kiln's "
           "loader delivers them (0-255 for u8 models) after the eval transform.");
    pb op = {0};
    pb_int(&op, OPSET_VERSION, OPSET); /* the default domain: domain field left empty */
    pb_msg(model, MODEL_OPSET_IMPORT, &op);
    char *names = NULL;
    if (!kiln_checkpoint_metadata(checkpoint, "class_names", &names) && names) {
        pb entry = {0};
        pb_str(&entry, ENTRY_KEY, "class_names");
        pb_str(&entry, ENTRY_VALUE, names);
        pb_msg(model, MODEL_METADATA, &entry);
    }
    free(names);
}

kiln_status kiln_onnx_export(kiln_model_t mp, const char *checkpoint, const kiln_onnx_options *o,
                             const char *path, kiln_onnx_info *info) {
    struct kiln_model *m = mp;
    if (!m || !m->finalized)
        return kiln_error(KILN_INVALID_ARGUMENT, "onnx export: the model is not finalized");
    exporter e;
    memset(&e, 0, sizeof e);
    e.m = m;
    e.val = calloc((size_t)m->n, sizeof *e.val);
    e.pending = calloc((size_t)m->n, sizeof *e.pending);
    kiln_backend_t be = NULL;
    char out_name[NAME] = "";
    pb model = {0};
    kiln_status st = e.val && e.pending ? KILN_OK : oom();
    if (!st) st = walk(&e, o, out_name, sizeof out_name);
    if (!st) {
        const char *gname = strrchr(kiln_model_file(mp), '/');
        pb_str(&e.graph, GRAPH_NAME, gname ? gname + 1 : kiln_model_file(mp));
        value_info(&e.graph, GRAPH_INPUT, m->nodes[e.in_node].name, 4, e.in_shape);
        value_info(&e.graph, GRAPH_OUTPUT, out_name, 2, m->nodes[e.out_node].shape);
        if (e.graph.oom) st = oom();
    }
    if (!st) st = load_weights(&e, checkpoint, &be);
    if (!st) {
        model_header(checkpoint, &model);
        int64_t bytes = 0;
        st = model.oom ? oom() : write_file(&e, path, &model, &bytes);
        if (!st && info) {
            memset(info, 0, sizeof *info);
            info->nodes = e.nodes;
            for (int k = 0; k < e.nreqs; k++) info->params += kiln_tensor_nelements(&e.reqs[k].t);
            info->bytes = bytes;
            info->in_c = (int)e.in_shape[1], info->in_h = (int)e.in_shape[2];
            info->in_w = (int)e.in_shape[3];
            info->classes = (int)m->nodes[e.out_node].shape[1];
            /* A name longer than the info field is cut there (the file holds it whole). */
            if (snprintf(info->input, sizeof info->input, "%s", m->nodes[e.in_node].name) < 0 ||
                snprintf(info->output, sizeof info->output, "%s", out_name) < 0)
                info->input[0] = info->output[0] = '\0';
        }
    }
    pb_free(&model);
    pb_free(&e.graph);
    for (int k = 0; k < e.nreqs; k++)
        if (e.reqs[k].t.buffer) kiln_tensor_release(&e.reqs[k].t);
    kiln_backend_free(be);
    free(e.reqs);
    free(e.inits);
    free(e.val);
    free(e.pending);
    return st;
}
