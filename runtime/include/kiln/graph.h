/* Computation graphs: nodes are kiln tensors whose op runs on a backend. Build the forward
   pass from inputs and parameters, let kiln_graph_backward append the gradient nodes, then
   allocate (parameters and their gradients each in one contiguous buffer, activations packed
   by lifetime into one arena) and run.

   Builders return NULL on error and the graph remembers the first error, which
   kiln_graph_backward / kiln_graph_alloc / kiln_graph_forward return, so building code can
   chain calls and check once. */
#ifndef KILN_GRAPH_H
#define KILN_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/backend.h"
#include "kiln/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_graph *kiln_graph_t;

kiln_status kiln_graph_init(kiln_graph_t *out);
void kiln_graph_free(kiln_graph_t g);

/* Data the caller sets before each run (images, labels). */
kiln_tensor *kiln_graph_input(kiln_graph_t g, const char *name, kiln_dtype dtype, int ndim,
                              const int64_t *shape);
/* A trainable f32 parameter; it gets a gradient. */
kiln_tensor *kiln_graph_param(kiln_graph_t g, const char *name, int ndim, const int64_t *shape);
/* A node computing `op` over `src` (NULL entries allowed, e.g. a missing bias) into a new
   tensor of the given dtype and shape. */
kiln_tensor *kiln_graph_op(kiln_graph_t g, const char *name, kiln_op op, const void *params,
                           size_t params_size, int nsrc, kiln_tensor *const *src, kiln_dtype dtype,
                           int ndim, const int64_t *shape);
/* A contiguous reshape of a node (flatten): no copy. */
kiln_tensor *kiln_graph_reshape(kiln_graph_t g, kiln_tensor *src, int ndim, const int64_t *shape);

/* Keeps a node's value readable after the run (the loss, the logits): kept nodes get storage
   of their own instead of sharing the activation arena. Call before kiln_graph_alloc. */
void kiln_graph_keep(kiln_graph_t g, kiln_tensor *t);

/* Appends the nodes computing the gradient of mean(loss) * scale for every parameter (and
   every node on the way). `loss` must be a SOFTMAX_XENT node; `scale` is usually 1. */
kiln_status kiln_graph_backward(kiln_graph_t g, kiln_tensor *loss, float scale);
/* The gradient of a parameter (after kiln_graph_backward), a view into the gradient buffer. */
kiln_tensor *kiln_graph_grad(kiln_graph_t g, const kiln_tensor *param);

/* Allocates everything on `be`. Parameters keep their values across runs; set them once
   (kiln_tensor_set) after this call. */
kiln_status kiln_graph_alloc(kiln_graph_t g, kiln_backend_t be);
/* All parameters as one 1-D f32 tensor (checkpoints, all-reduce), and the same for their
   gradients. */
kiln_tensor *kiln_graph_params_flat(kiln_graph_t g);
kiln_tensor *kiln_graph_grads_flat(kiln_graph_t g);
int kiln_graph_param_count(kiln_graph_t g);
kiln_tensor *kiln_graph_param_at(kiln_graph_t g, int i);

/* Selects the training step: dropout masks (and their backward) advance their counters so
   every step draws a fresh mask, reproducibly from (seed, step). */
void kiln_graph_set_step(kiln_graph_t g, uint64_t step);

/* Runs the forward nodes, then (training) the backward nodes. */
kiln_status kiln_graph_forward(kiln_graph_t g);
kiln_status kiln_graph_backward_run(kiln_graph_t g);
/* The same, calling ready(user, k) after every backward node: k >= 0 when the node computed
   parameter k's final gradient (run, or enqueued: read it through the backend, which orders
   the copy after it), -1 otherwise. Data parallelism starts each bucket's all-reduce from here
   and lets the transfers progress while backward goes on. A non-zero status from ready stops
   the run and is returned. */
typedef kiln_status (*kiln_grad_ready_fn)(void *user, int param);
kiln_status kiln_graph_backward_run_hook(kiln_graph_t g, kiln_grad_ready_fn ready, void *user);

typedef struct kiln_graph_memory {
    size_t params, grads, inputs;
    size_t activations;       /* the arena: peak of live activations and gradients */
    size_t activations_naive; /* what one buffer per node would take */
} kiln_graph_memory;
void kiln_graph_get_memory(kiln_graph_t g, kiln_graph_memory *out);

#ifdef __cplusplus
}
#endif
#endif
