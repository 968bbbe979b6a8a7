/* Computation graphs: building, reverse-mode autograd, memory planning and execution.
   Nodes are created in topological order (a node's sources exist before it), so running
   them in creation order is a valid schedule and backward is one reverse sweep. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/graph.h"
#include "ops-impl.h"

#define ALIGN 64

typedef enum { GN_INPUT, GN_PARAM, GN_OP, GN_VIEW } gn_kind;

typedef struct gnode {
    kiln_tensor *t;
    gn_kind kind;
    int needs_grad;    /* on a path from a parameter */
    kiln_tensor *grad; /* accumulated gradient while backward is being built */
    int param_grad_of; /* >= 0: this node is the final gradient of that parameter */
    int keep;          /* storage of its own (read by the caller after the run) */
    int last_use;      /* index of the last node reading this storage */
    size_t offset;     /* in the arena */
} gnode;

typedef struct free_block {
    size_t off, size;
} free_block;

struct kiln_graph {
    gnode *n;
    int count, cap;
    int n_forward; /* nodes before kiln_graph_backward */
    int *params;   /* node indices of parameters, in creation order */
    int nparams;
    kiln_status err;
    char errmsg[1024];
    kiln_backend_t be;
    kiln_buffer_t param_buf, grad_buf, arena, kept;
    kiln_buffer_t *input_bufs;
    int ninput_bufs;
    kiln_tensor params_flat, grads_flat;
    kiln_graph_memory mem;
};

/* ---- building ---- */

static void *fail(kiln_graph_t g, kiln_status st, const char *fmt, ...) {
    if (!g->err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g->errmsg, sizeof g->errmsg, fmt, ap);
        va_end(ap);
        g->err = st;
    }
    return NULL;
}

static kiln_status graph_status(kiln_graph_t g) {
    return g->err ? kiln_error(g->err, "%s", g->errmsg) : KILN_OK;
}

static int index_of(kiln_graph_t g, const kiln_tensor *t) {
    for (int i = g->count - 1; i >= 0; i--)
        if (g->n[i].t == t) return i;
    return -1;
}

static kiln_tensor *add_node(kiln_graph_t g, gn_kind kind, const char *name, kiln_dtype dtype,
                             int ndim, const int64_t *shape) {
    if (g->err) return NULL;
    if (g->count == g->cap) {
        int cap = g->cap ? g->cap * 2 : 64;
        gnode *grown = realloc(g->n, sizeof *grown * (size_t)cap);
        if (!grown) return fail(g, KILN_OUT_OF_MEMORY, "graph: out of host memory");
        g->n = grown;
        g->cap = cap;
    }
    kiln_tensor *t = calloc(1, sizeof *t);
    if (!t) return fail(g, KILN_OUT_OF_MEMORY, "graph: out of host memory");
    kiln_status st = kiln_tensor_init(t, dtype, ndim, shape);
    if (st) {
        free(t);
        return fail(g, st, "graph node '%s': %s", name ? name : "?", kiln_last_error());
    }
    snprintf(t->name, sizeof t->name, "%s", name ? name : "");
    gnode *n = &g->n[g->count++];
    memset(n, 0, sizeof *n);
    n->t = t;
    n->kind = kind;
    n->param_grad_of = -1;
    n->last_use = -1;
    return t;
}

kiln_status kiln_graph_init(kiln_graph_t *out) {
    *out = calloc(1, sizeof **out);
    return *out ? KILN_OK : kiln_error(KILN_OUT_OF_MEMORY, "graph: out of host memory");
}

void kiln_graph_free(kiln_graph_t g) {
    if (!g) return;
    for (int i = 0; i < g->count; i++) free(g->n[i].t);
    for (int i = 0; i < g->ninput_bufs; i++) kiln_buffer_free(g->input_bufs[i]);
    kiln_buffer_free(g->param_buf);
    kiln_buffer_free(g->grad_buf);
    kiln_buffer_free(g->arena);
    kiln_buffer_free(g->kept);
    free(g->input_bufs);
    free(g->params);
    free(g->n);
    free(g);
}

kiln_tensor *kiln_graph_input(kiln_graph_t g, const char *name, kiln_dtype dtype, int ndim,
                              const int64_t *shape) {
    return add_node(g, GN_INPUT, name, dtype, ndim, shape);
}

kiln_tensor *kiln_graph_param(kiln_graph_t g, const char *name, int ndim, const int64_t *shape) {
    kiln_tensor *t = add_node(g, GN_PARAM, name, KILN_F32, ndim, shape);
    if (!t) return NULL;
    int *grown = realloc(g->params, sizeof *grown * (size_t)(g->nparams + 1));
    if (!grown) return fail(g, KILN_OUT_OF_MEMORY, "graph: out of host memory");
    g->params = grown;
    g->params[g->nparams++] = g->count - 1;
    g->n[g->count - 1].needs_grad = 1;
    return t;
}

kiln_tensor *kiln_graph_op(kiln_graph_t g, const char *name, kiln_op op, const void *params,
                           size_t params_size, int nsrc, kiln_tensor *const *src, kiln_dtype dtype,
                           int ndim, const int64_t *shape) {
    if (g->err) return NULL;
    if (nsrc > KILN_MAX_SRC || params_size > KILN_MAX_OP_PARAMS)
        return fail(g, KILN_INTERNAL, "graph node '%s': too many sources or params", name);
    int needs = 0;
    for (int i = 0; i < nsrc; i++) {
        if (!src[i]) continue;
        int j = index_of(g, src[i]);
        if (j < 0)
            return fail(g, KILN_INVALID_ARGUMENT, "graph node '%s': source %d is not in the graph",
                        name, i);
        needs |= g->n[j].needs_grad;
    }
    kiln_tensor *t = add_node(g, GN_OP, name, dtype, ndim, shape);
    if (!t) return NULL;
    t->op = op;
    for (int i = 0; i < nsrc; i++) t->src[i] = src[i];
    if (params_size) memcpy(t->op_params, params, params_size);
    g->n[g->count - 1].needs_grad = needs;
    return t;
}

/* A view of src (new shape/strides at a byte offset into its storage). */
static kiln_tensor *view(kiln_graph_t g, kiln_tensor *src, int ndim, const int64_t *shape,
                         const int64_t *stride, size_t offset) {
    int j = index_of(g, src);
    if (j < 0) return fail(g, KILN_INVALID_ARGUMENT, "graph: view of a tensor not in the graph");
    kiln_tensor *t = add_node(g, GN_VIEW, src->name, src->dtype, ndim, shape);
    if (!t) return NULL;
    if (stride) memcpy(t->stride, stride, sizeof(int64_t) * (size_t)ndim);
    t->view_src = src;
    t->offset = offset; /* relative until allocation */
    g->n[g->count - 1].needs_grad = g->n[j].needs_grad;
    return t;
}

kiln_tensor *kiln_graph_reshape(kiln_graph_t g, kiln_tensor *src, int ndim, const int64_t *shape) {
    if (g->err) return NULL;
    kiln_tensor probe;
    if (kiln_tensor_init(&probe, src->dtype, ndim, shape) ||
        kiln_tensor_nelements(&probe) != kiln_tensor_nelements(src) ||
        !kiln_tensor_is_contiguous(src))
        return fail(g, KILN_SHAPE, "graph: cannot reshape '%s' (%lld elements, contiguous: %d)",
                    src->name, (long long)kiln_tensor_nelements(src),
                    kiln_tensor_is_contiguous(src));
    return view(g, src, ndim, shape, NULL, 0);
}

void kiln_graph_keep(kiln_graph_t g, kiln_tensor *t) {
    int j = index_of(g, t);
    if (j >= 0) g->n[j].keep = 1;
}

/* ---- autograd ---- */

static kiln_tensor *bwd_op(kiln_graph_t g, const char *what, const kiln_tensor *like, kiln_op op,
                           const void *params, size_t size, int nsrc, kiln_tensor *const *src) {
    char name[32];
    snprintf(name, sizeof name, "d%.20s.%s", like->name, what);
    return kiln_graph_op(g, name, op, params, size, nsrc, src, KILN_F32, like->ndim, like->shape);
}

/* Adds a gradient contribution to node j: the first is kept as is, later ones are summed. */
static void accumulate(kiln_graph_t g, kiln_tensor *x, kiln_tensor *contrib) {
    int j = index_of(g, x);
    if (j < 0 || !contrib || !g->n[j].needs_grad) return;
    gnode *n = &g->n[j];
    if (!n->grad) {
        n->grad = contrib;
        return;
    }
    kiln_tensor *src[2] = {n->grad, contrib};
    n->grad = bwd_op(g, "sum", x, KILN_OP_ADD, NULL, 0, 2, src);
}

static int wants(kiln_graph_t g, const kiln_tensor *x) {
    int j = x ? index_of(g, x) : -1;
    return j >= 0 && g->n[j].needs_grad;
}

/* dA and dB of C = alpha op(A) op(B) (2-D, beta 0). */
static void gemm_grads(kiln_graph_t g, kiln_tensor *node, kiln_tensor *dy) {
    kiln_gemm_params p;
    memcpy(&p, node->op_params, sizeof p);
    kiln_tensor *a = node->src[0], *b = node->src[1];
    if (p.beta != 0 || a->ndim != 2 || b->ndim != 2) {
        fail(g, KILN_UNSUPPORTED, "graph: no gradient for batched or accumulating gemm '%s'",
             node->name);
        return;
    }
    if (wants(g, a)) {
        kiln_gemm_params q = {p.trans_a ? p.trans_b : 0, p.trans_a ? 1 : !p.trans_b, p.alpha, 0};
        kiln_tensor *src[2] = {p.trans_a ? b : dy, p.trans_a ? dy : b};
        accumulate(g, a, bwd_op(g, "a", a, KILN_OP_GEMM, &q, sizeof q, 2, src));
    }
    if (wants(g, b)) {
        kiln_gemm_params q = {p.trans_b ? 1 : !p.trans_a, p.trans_b ? p.trans_a : 0, p.alpha, 0};
        kiln_tensor *src[2] = {p.trans_b ? dy : a, p.trans_b ? a : dy};
        accumulate(g, b, bwd_op(g, "b", b, KILN_OP_GEMM, &q, sizeof q, 2, src));
    }
}

static void node_grads(kiln_graph_t g, kiln_tensor *t, kiln_tensor *dy) {
    kiln_tensor **s = t->src;
    switch (t->op) {
    case KILN_OP_GEMM:
        gemm_grads(g, t, dy);
        break;
    case KILN_OP_CONV2D: {
        if (wants(g, s[0])) {
            kiln_tensor *src[2] = {dy, s[1]};
            accumulate(g, s[0],
                       bwd_op(g, "x", s[0], KILN_OP_CONV2D_BWD_DATA, t->op_params,
                              sizeof(kiln_conv2d_params), 2, src));
        }
        if (wants(g, s[1])) {
            kiln_tensor *src[2] = {s[0], dy};
            accumulate(g, s[1],
                       bwd_op(g, "w", s[1], KILN_OP_CONV2D_BWD_FILTER, t->op_params,
                              sizeof(kiln_conv2d_params), 2, src));
        }
        if (wants(g, s[2]))
            accumulate(g, s[2], bwd_op(g, "b", s[2], KILN_OP_BIAS_GRAD, NULL, 0, 1, &dy));
        break;
    }
    case KILN_OP_BIAS_ADD:
        accumulate(g, s[0], dy);
        if (wants(g, s[1]))
            accumulate(g, s[1], bwd_op(g, "b", s[1], KILN_OP_BIAS_GRAD, NULL, 0, 1, &dy));
        break;
    case KILN_OP_ADD:
        accumulate(g, s[0], dy);
        accumulate(g, s[1], dy);
        break;
    case KILN_OP_MUL:
        for (int i = 0; i < 2; i++)
            if (wants(g, s[i])) {
                kiln_tensor *src[2] = {dy, s[1 - i]};
                accumulate(g, s[i], bwd_op(g, i ? "b" : "a", s[i], KILN_OP_MUL, NULL, 0, 2, src));
            }
        break;
    case KILN_OP_COPY:
        accumulate(g, s[0], dy);
        break;
    case KILN_OP_ACT:
    case KILN_OP_POOL2D:
    case KILN_OP_LRN: {
        kiln_op bwd = t->op == KILN_OP_ACT      ? KILN_OP_ACT_BWD
                      : t->op == KILN_OP_POOL2D ? KILN_OP_POOL2D_BWD
                                                : KILN_OP_LRN_BWD;
        kiln_tensor *src[2] = {dy, s[0]};
        if (wants(g, s[0]))
            accumulate(g, s[0],
                       bwd_op(g, "x", s[0], bwd, t->op_params, KILN_MAX_OP_PARAMS, 2, src));
        break;
    }
    case KILN_OP_DROPOUT:
        if (wants(g, s[0]))
            accumulate(g, s[0],
                       bwd_op(g, "x", s[0], KILN_OP_DROPOUT_BWD, t->op_params, KILN_MAX_OP_PARAMS,
                              1, &dy));
        break;
    case KILN_OP_BATCHNORM: {
        /* src: x, stats (BATCHNORM_STATS of x), gamma, beta. BATCHNORM_BWD accounts for the
           statistics being functions of x, so no gradient flows into the stats node. */
        kiln_tensor *x = s[0], *stats = s[1], *gamma = s[2], *beta = s[3];
        int64_t ds[2] = {2, gamma->shape[0]};
        kiln_tensor *src3[3] = {dy, x, stats};
        kiln_tensor *dparams = kiln_graph_op(g, "dbn", KILN_OP_BATCHNORM_BWD_PARAMS, t->op_params,
                                             sizeof(kiln_bn_params), 3, src3, KILN_F32, 2, ds);
        if (!dparams) return;
        int64_t row[1] = {gamma->shape[0]};
        if (wants(g, gamma)) accumulate(g, gamma, view(g, dparams, 1, row, NULL, 0));
        if (wants(g, beta))
            accumulate(g, beta, view(g, dparams, 1, row, NULL, (size_t)row[0] * sizeof(float)));
        if (wants(g, x)) {
            kiln_tensor *src5[5] = {dy, x, stats, gamma, dparams};
            accumulate(g, x,
                       bwd_op(g, "x", x, KILN_OP_BATCHNORM_BWD, t->op_params,
                              sizeof(kiln_bn_params), 5, src5));
        }
        break;
    }
    case KILN_OP_CONCAT: {
        kiln_concat_params p;
        memcpy(&p, t->op_params, sizeof p);
        size_t off = 0;
        for (int i = 0; i < KILN_MAX_SRC && s[i]; i++) {
            /* The slice of dy that came from source i: a strided view, copied out. */
            if (wants(g, s[i])) {
                kiln_tensor *slice = view(g, dy, dy->ndim, s[i]->shape, dy->stride, off);
                accumulate(g, s[i], bwd_op(g, "slice", s[i], KILN_OP_COPY, NULL, 0, 1, &slice));
            }
            off += (size_t)(s[i]->shape[p.axis] * dy->stride[p.axis]);
        }
        break;
    }
    case KILN_OP_BATCHNORM_STATS:
    case KILN_OP_U8_TO_F32:
    case KILN_OP_ACCURACY:
        break; /* no gradient flows through these */
    default:
        fail(g, KILN_UNSUPPORTED, "graph: op %s (node '%s') has no gradient", kiln_op_name(t->op),
             t->name);
    }
}

kiln_status kiln_graph_backward(kiln_graph_t g, kiln_tensor *loss, float scale) {
    if (g->err) return graph_status(g);
    int root = index_of(g, loss);
    if (root < 0 || loss->op != KILN_OP_SOFTMAX_XENT)
        return kiln_error(KILN_INVALID_ARGUMENT,
                          "graph backward: the loss must be a softmax_xent node of the graph");
    if (g->n_forward) return kiln_error(KILN_INVALID_ARGUMENT, "graph backward: already built");
    g->n_forward = g->count;
    kiln_tensor *logits = loss->src[0];
    kiln_xent_params p;
    memcpy(&p, loss->op_params, sizeof p);
    p.scale = scale / (float)loss->shape[0]; /* the mean over the batch */
    kiln_tensor *src[2] = {logits, loss->src[1]};
    accumulate(g, logits,
               bwd_op(g, "logits", logits, KILN_OP_SOFTMAX_XENT_BWD, &p, sizeof p, 2, src));
    for (int i = root - 1; i >= 0 && !g->err; i--) {
        gnode *n = &g->n[i];
        if (!n->grad || !n->needs_grad) continue;
        if (n->kind == GN_VIEW) {
            /* A reshape: the source's gradient is the same values in the source's shape. */
            kiln_tensor *src_t = n->t->view_src;
            if (wants(g, src_t))
                accumulate(g, src_t, view(g, n->grad, src_t->ndim, src_t->shape, NULL, 0));
        } else if (n->kind == GN_OP) {
            node_grads(g, n->t, n->grad);
        }
    }
    if (g->err) return graph_status(g);
    /* Each parameter's gradient gets a node of its own, to live in the gradient buffer. */
    for (int k = 0; k < g->nparams; k++) {
        gnode *pn = &g->n[g->params[k]];
        if (!pn->grad)
            return kiln_error(KILN_INVALID_ARGUMENT,
                              "graph backward: parameter '%s' does not affect the loss",
                              pn->t->name);
        int j = index_of(g, pn->grad);
        int shared = g->n[j].kind != GN_OP || j < g->n_forward || g->n[j].param_grad_of >= 0;
        for (int i = 0; i < g->count && !shared; i++)
            shared = i != g->params[k] && g->n[i].grad == pn->grad;
        if (shared) {
            pn->grad = bwd_op(g, "copy", pn->t, KILN_OP_COPY, NULL, 0, 1, &pn->grad);
            if (!pn->grad) return graph_status(g);
            j = g->count - 1;
        }
        g->n[j].param_grad_of = k;
    }
    return KILN_OK;
}

kiln_tensor *kiln_graph_grad(kiln_graph_t g, const kiln_tensor *param) {
    int j = index_of(g, param);
    return j >= 0 ? g->n[j].grad : NULL;
}

/* ---- memory planning ---- */

static size_t align_up(size_t x) {
    return (x + ALIGN - 1) / ALIGN * ALIGN;
}

static int root_of(kiln_graph_t g, int i) {
    while (g->n[i].kind == GN_VIEW) i = index_of(g, g->n[i].t->view_src);
    return i;
}

/* First fit over a sorted free list; returns the offset, growing the arena's end. */
static size_t arena_take(free_block *fb, int *nfb, size_t *end, size_t size) {
    for (int i = 0; i < *nfb; i++)
        if (fb[i].size >= size) {
            size_t off = fb[i].off;
            fb[i].off += size;
            fb[i].size -= size;
            if (!fb[i].size) memmove(&fb[i], &fb[i + 1], sizeof *fb * (size_t)(--*nfb - i));
            return off;
        }
    size_t off = *end;
    *end += size;
    return off;
}

static void arena_give(free_block *fb, int *nfb, size_t off, size_t size) {
    int i = 0;
    while (i < *nfb && fb[i].off < off) i++;
    memmove(&fb[i + 1], &fb[i], sizeof *fb * (size_t)(*nfb - i));
    fb[i] = (free_block){off, size};
    (*nfb)++;
    /* Coalesce with the neighbours. */
    if (i + 1 < *nfb && fb[i].off + fb[i].size == fb[i + 1].off) {
        fb[i].size += fb[i + 1].size;
        memmove(&fb[i + 1], &fb[i + 2], sizeof *fb * (size_t)(*nfb - i - 2));
        (*nfb)--;
    }
    if (i > 0 && fb[i - 1].off + fb[i - 1].size == fb[i].off) {
        fb[i - 1].size += fb[i].size;
        memmove(&fb[i], &fb[i + 1], sizeof *fb * (size_t)(*nfb - i - 1));
        (*nfb)--;
    }
}

/* Zeroes a whole buffer: the alignment padding between parameters (and between their
   gradients) is never written by an op, and flat views (norms, all-reduce, one optimizer
   step over everything) must read zeros there. */
static kiln_status zero_buffer(kiln_buffer_t buf) {
    size_t n = kiln_buffer_size(buf);
    void *z = calloc(1, n);
    if (!z) return kiln_error(KILN_OUT_OF_MEMORY, "graph: out of host memory");
    kiln_tensor whole;
    int64_t shape[1] = {(int64_t)n};
    kiln_tensor_init(&whole, KILN_U8, 1, shape);
    kiln_status st = kiln_tensor_bind(&whole, buf, 0);
    if (!st) st = kiln_tensor_set(&whole, z, n);
    free(z);
    return st;
}

static kiln_status bind_all(kiln_graph_t g, gn_kind kind, int (*pick)(kiln_graph_t, int),
                            kiln_buffer_t *buf, size_t *total) {
    size_t size = 0;
    for (int i = 0; i < g->count; i++)
        if (g->n[i].kind == kind && pick(g, i)) size += align_up(kiln_tensor_extent(g->n[i].t));
    *total = size;
    if (!size) return KILN_OK;
    kiln_status st = kiln_buffer_alloc(g->be, size, buf);
    size_t off = 0;
    for (int i = 0; !st && i < g->count; i++)
        if (g->n[i].kind == kind && pick(g, i)) {
            st = kiln_tensor_bind(g->n[i].t, *buf, off);
            off += align_up(kiln_tensor_extent(g->n[i].t));
        }
    return st;
}

static int any(kiln_graph_t g, int i) {
    (void)g;
    (void)i;
    return 1;
}
static int is_kept(kiln_graph_t g, int i) {
    return g->n[i].keep && g->n[i].param_grad_of < 0;
}

kiln_status kiln_graph_alloc(kiln_graph_t g, kiln_backend_t be) {
    if (g->err) return graph_status(g);
    if (g->arena || g->param_buf || g->kept)
        return kiln_error(KILN_INVALID_ARGUMENT, "graph: already allocated");
    g->be = be;
    kiln_status st;
    memset(&g->mem, 0, sizeof g->mem);
    /* Parameters, then their gradients in the same order: each one contiguous buffer. */
    if ((st = bind_all(g, GN_PARAM, any, &g->param_buf, &g->mem.params)) ||
        (g->param_buf && (st = zero_buffer(g->param_buf))))
        return st;
    size_t total = 0;
    for (int k = 0; k < g->nparams; k++)
        total += align_up(kiln_tensor_extent(g->n[g->params[k]].t));
    if (g->n_forward && total) {
        if ((st = kiln_buffer_alloc(be, total, &g->grad_buf)) || (st = zero_buffer(g->grad_buf)))
            return st;
        size_t off = 0;
        for (int k = 0; k < g->nparams && !st; k++) {
            kiln_tensor *gr = g->n[g->params[k]].grad;
            st = kiln_tensor_bind(gr, g->grad_buf, off);
            off += align_up(kiln_tensor_extent(g->n[g->params[k]].t));
        }
        g->mem.grads = total;
        if (st) return st;
    }
    if ((st = bind_all(g, GN_OP, is_kept, &g->kept, &total))) return st;
    g->mem.activations_naive = total;
    /* Inputs: one buffer each, the caller refills them every step. */
    for (int i = 0; i < g->count; i++) {
        if (g->n[i].kind != GN_INPUT) continue;
        kiln_buffer_t *grown = realloc(g->input_bufs, sizeof *grown * (size_t)(g->ninput_bufs + 1));
        if (!grown) return kiln_error(KILN_OUT_OF_MEMORY, "graph: out of host memory");
        g->input_bufs = grown;
        size_t ext = kiln_tensor_extent(g->n[i].t);
        if ((st = kiln_buffer_alloc(be, ext ? ext : 1, &g->input_bufs[g->ninput_bufs]))) return st;
        st = kiln_tensor_bind(g->n[i].t, g->input_bufs[g->ninput_bufs++], 0);
        if (st) return st;
        g->mem.inputs += ext;
    }
    /* Lifetimes: a storage root lives from its node to the last node reading it (or a view of
       it); everything else shares one arena, first fit. */
    for (int i = 0; i < g->count; i++) g->n[i].last_use = i;
    for (int i = 0; i < g->count; i++) {
        kiln_tensor *t = g->n[i].t;
        for (int s = 0; s < KILN_MAX_SRC; s++)
            if (t->src[s]) {
                int r = root_of(g, index_of(g, t->src[s]));
                if (g->n[r].last_use < i) g->n[r].last_use = i;
            }
        if (g->n[i].kind == GN_VIEW) {
            int r = root_of(g, i);
            if (g->n[r].last_use < i) g->n[r].last_use = i;
        }
    }
    /* Views read their root later than the view's creation: extend through the view's uses. */
    for (int i = 0; i < g->count; i++)
        if (g->n[i].kind == GN_VIEW) {
            int r = root_of(g, i);
            if (g->n[r].last_use < g->n[i].last_use) g->n[r].last_use = g->n[i].last_use;
        }
    free_block *fb = calloc((size_t)g->count + 1, sizeof *fb);
    if (!fb) return kiln_error(KILN_OUT_OF_MEMORY, "graph: out of host memory");
    int nfb = 0;
    size_t end = 0;
    for (int i = 0; i < g->count; i++) {
        gnode *n = &g->n[i];
        if (n->kind == GN_OP && !n->keep && n->param_grad_of < 0) {
            size_t size = align_up(kiln_tensor_extent(n->t));
            n->offset = arena_take(fb, &nfb, &end, size);
            g->mem.activations_naive += size;
        }
        /* Release every arena node whose last reader is node i. */
        for (int j = 0; j <= i; j++) {
            gnode *m = &g->n[j];
            if (m->last_use == i && m->kind == GN_OP && !m->keep && m->param_grad_of < 0)
                arena_give(fb, &nfb, m->offset, align_up(kiln_tensor_extent(m->t)));
        }
    }
    free(fb);
    g->mem.activations = end;
    if (end && (st = kiln_buffer_alloc(be, end, &g->arena))) return st;
    for (int i = 0; i < g->count && !st; i++) {
        gnode *n = &g->n[i];
        if (n->kind == GN_OP && !n->keep && n->param_grad_of < 0)
            st = kiln_tensor_bind(n->t, g->arena, n->offset);
        else if (n->kind == GN_VIEW) {
            kiln_tensor *src = n->t->view_src;
            st = kiln_tensor_bind(n->t, src->buffer, src->offset + n->t->offset);
        }
    }
    if (st) return st;
    int64_t np[1] = {(int64_t)(g->mem.params / sizeof(float))};
    kiln_tensor_init(&g->params_flat, KILN_F32, 1, np);
    if (g->param_buf) kiln_tensor_bind(&g->params_flat, g->param_buf, 0);
    kiln_tensor_init(&g->grads_flat, KILN_F32, 1, np);
    if (g->grad_buf) kiln_tensor_bind(&g->grads_flat, g->grad_buf, 0);
    return KILN_OK;
}

void kiln_graph_set_step(kiln_graph_t g, uint64_t step) {
    for (int i = 0; i < g->count; i++) {
        kiln_tensor *t = g->n[i].t;
        if (t->op != KILN_OP_DROPOUT && t->op != KILN_OP_DROPOUT_BWD) continue;
        kiln_dropout_params p;
        memcpy(&p, t->op_params, sizeof p);
        /* Counters advance by the words a step consumes, so no two steps share a mask. */
        uint64_t offset = step * (uint64_t)((kiln_tensor_nelements(t) + 3) / 4);
        p.offset_lo = (uint32_t)offset;
        p.offset_hi = (uint32_t)(offset >> 32);
        memcpy(t->op_params, &p, sizeof p);
    }
}

kiln_tensor *kiln_graph_params_flat(kiln_graph_t g) {
    return g->param_buf ? &g->params_flat : NULL;
}

kiln_tensor *kiln_graph_grads_flat(kiln_graph_t g) {
    return g->grad_buf ? &g->grads_flat : NULL;
}

int kiln_graph_param_count(kiln_graph_t g) {
    return g->nparams;
}

kiln_tensor *kiln_graph_param_at(kiln_graph_t g, int i) {
    return i >= 0 && i < g->nparams ? g->n[g->params[i]].t : NULL;
}

void kiln_graph_get_memory(kiln_graph_t g, kiln_graph_memory *out) {
    *out = g->mem;
}

/* ---- execution ---- */

static kiln_status run(kiln_graph_t g, int from, int to, kiln_grad_ready_fn ready, void *user) {
    if (g->err) return graph_status(g);
    if (!g->be) return kiln_error(KILN_INVALID_ARGUMENT, "graph: run before kiln_graph_alloc");
    for (int i = from; i < to; i++) {
        if (g->n[i].kind != GN_OP) continue;
        kiln_status st = kiln_compute(g->be, g->n[i].t);
        if (st) {
            kiln_error_append(" (graph node '%s')", g->n[i].t->name);
            return st;
        }
        if (ready && (st = ready(user, g->n[i].param_grad_of))) return st;
    }
    return KILN_OK;
}

kiln_status kiln_graph_forward(kiln_graph_t g) {
    return run(g, 0, g->n_forward ? g->n_forward : g->count, NULL, NULL);
}

kiln_status kiln_graph_backward_run(kiln_graph_t g) {
    if (!g->n_forward) return kiln_error(KILN_INVALID_ARGUMENT, "graph: no backward pass built");
    return run(g, g->n_forward, g->count, NULL, NULL);
}

kiln_status kiln_graph_backward_run_hook(kiln_graph_t g, kiln_grad_ready_fn ready, void *user) {
    if (!g->n_forward) return kiln_error(KILN_INVALID_ARGUMENT, "graph: no backward pass built");
    return run(g, g->n_forward, g->count, ready, user);
}
