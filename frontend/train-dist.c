/* Data parallelism in the trainer: rank 0's starting point broadcast to every rank, and the
   gradient all-reduce in buckets started while backward still runs.

   Backward runs from the loss towards the input, so the last parameters' gradients are final
   first. Buckets group parameters in that order (about allreduce_bucket_mb each, contiguous in
   the flat gradient buffer). When a bucket's last gradient node has been enqueued, its copy to
   the host is enqueued too; when the next bucket gets there, the previous copy is waited
   (the device has long passed it) and its non-blocking all-reduce starts. MPI moves data only
   inside MPI calls, so every backward node lets it progress, and each bucket whose sum is
   complete goes back to the device at once. After backward the remaining buckets start and
   are waited, each copied back as it completes. Every rank runs the same graph, so buckets start in
   the same order everywhere, as MPI requires of collectives. */
#include <stdlib.h>
#include <string.h>

#include "../runtime/backend-impl.h"
#include "train-impl.h"

static kiln_status oom(void) {
    return kiln_error(KILN_OUT_OF_MEMORY, "trainer: out of host memory (all-reduce buckets)");
}

/* A gradient's first element in the flat buffer. */
static int64_t grad_at(struct kiln_trainer *t, int k) {
    kiln_tensor *flat = kiln_graph_grads_flat(t->tg.g);
    kiln_tensor *g = kiln_graph_grad(t->tg.g, t->params[k].train);
    return (int64_t)((g->offset - flat->offset) / sizeof(float));
}

kiln_status kt_dist_setup(struct kiln_trainer *t) {
    kt_dist *x = &t->dist;
    x->d = t->o.dist;
    x->world = kiln_dist_size(x->d);
    x->rank = kiln_dist_rank(x->d);
    x->stats.ranks = x->world;
    if (x->world < 2) return KILN_OK;
    int P = t->nparams;
    x->n = kiln_tensor_nelements(kiln_graph_grads_flat(t->tg.g));
    double mb = t->o.allreduce_bucket_mb > 0 ? t->o.allreduce_bucket_mb : 25.0;
    int64_t cap = (int64_t)(mb * 1024.0 * 1024.0 / sizeof(float));
    if (cap < 1) cap = 1;
    /* A backend in host memory (cpu) is all-reduced in place, synchronously computed as it is;
       elsewhere page-aligned staging, which the OpenCL runtime copies into directly. */
    x->host = kiln_tensor_host_data(kiln_graph_grads_flat(t->tg.g));
    x->direct = x->host != NULL;
    if (!x->direct &&
        posix_memalign((void **)&x->host, 4096, sizeof(float) * (size_t)(x->n ? x->n : 1)))
        x->host = NULL;
    x->lo = malloc(sizeof *x->lo * (size_t)(P + 1));
    x->hi = malloc(sizeof *x->hi * (size_t)(P + 1));
    x->bucket_of = malloc(sizeof *x->bucket_of * (size_t)(P + 1));
    x->size = calloc((size_t)(P + 1), sizeof *x->size);
    x->left = malloc(sizeof *x->left * (size_t)(P + 1));
    x->gather = malloc(sizeof *x->gather * 4 * (size_t)x->world);
    x->queue = malloc(sizeof *x->queue * (size_t)(P + 1));
    x->ev = calloc((size_t)(P + 1), sizeof *x->ev);
    x->wev = calloc((size_t)(P + 1), sizeof *x->wev);
    x->order = malloc(sizeof *x->order * (size_t)(P + 1));
    x->handle = malloc(sizeof *x->handle * (size_t)(P + 1));
    if (!x->host || !x->lo || !x->hi || !x->bucket_of || !x->size || !x->left || !x->gather ||
        !x->queue || !x->ev || !x->wev || !x->order || !x->handle)
        return oom();
    /* From the last parameter down: bucket 0 completes first. The first parameter's bucket
       reaches down to element 0, the last one's up to the end (alignment gaps included). */
    int b = 0;
    int64_t hi = x->n;
    for (int k = P - 1; k >= 0; k--) {
        x->bucket_of[k] = b;
        x->size[b]++;
        int64_t lo = k ? grad_at(t, k) : 0;
        if (hi - lo >= cap || k == 0) {
            x->lo[b] = lo, x->hi[b] = hi;
            hi = lo;
            b++;
        }
    }
    x->nbuckets = b;
    x->stats.buckets = b;
    x->stats.bytes_per_step = (double)x->n * sizeof(float);
    return KILN_OK;
}

void kt_dist_free(struct kiln_trainer *t) {
    kt_dist *x = &t->dist;
    for (int i = 0; x->ev && x->wev && i < x->nbuckets; i++) {
        if (x->ev[i]) kiln_event_free(x->ev[i]);
        if (x->wev[i]) kiln_event_free(x->wev[i]);
    }
    if (!x->direct) free(x->host);
    free(x->lo);
    free(x->hi);
    free(x->bucket_of);
    free(x->size);
    free(x->left);
    free(x->gather);
    free(x->queue);
    free(x->ev);
    free(x->wev);
    free(x->order);
    free(x->handle);
    memset(x, 0, sizeof *x);
}

/* A device tensor replaced by rank 0's copy, through host memory. */
static kiln_status bcast_tensor(kt_dist *x, kiln_tensor *tt) {
    if (!tt || !tt->buffer) return KILN_OK;
    size_t bytes = kiln_tensor_extent(tt);
    void *h = malloc(bytes ? bytes : 1);
    if (!h) return oom();
    kiln_status st = kiln_tensor_get(tt, h, bytes);
    if (!st) st = kiln_dist_bcast(x->d, h, bytes);
    if (!st) st = kiln_tensor_set(tt, h, bytes);
    free(h);
    return st;
}

kiln_status kt_dist_sync(struct kiln_trainer *t) {
    kt_dist *x = &t->dist;
    if (x->world < 2 || x->synced) return KILN_OK;
    kiln_status st = bcast_tensor(x, kiln_graph_params_flat(t->tg.g));
    if (!st) st = bcast_tensor(x, &t->opt_a);
    if (!st && t->opt_b.buffer) st = bcast_tensor(x, &t->opt_b);
    for (int k = 0; k < t->nbns && !st; k++) st = bcast_tensor(x, t->bns[k].running);
    if (st) return st;
    double pos[5] = {(double)t->epoch, (double)t->step, (double)t->global_step, (double)t->adam_t,
                     t->best_val_acc};
    if ((st = kiln_dist_bcast(x->d, pos, sizeof pos))) return st;
    t->epoch = (int64_t)pos[0], t->step = (int64_t)pos[1], t->global_step = (int64_t)pos[2];
    t->adam_t = (int64_t)pos[3], t->best_val_acc = pos[4];
    x->synced = 1;
    return KILN_OK;
}

/* Starts the all-reduce of the oldest copied bucket. */
static kiln_status start_oldest(kt_dist *x) {
    int b = x->queue[0];
    kiln_status st = KILN_OK;
    if (x->ev[b]) {
        st = kiln_event_wait(x->ev[b]);
        kiln_event_free(x->ev[b]);
        x->ev[b] = NULL;
    }
    if (st) return st;
    if (!x->started) x->t_first = kiln_time_s();
    x->order[x->started++] = b;
    st = kiln_dist_isum_f32(x->d, x->host + x->lo[b], x->hi[b] - x->lo[b], &x->handle[b]);
    memmove(x->queue, x->queue + 1, sizeof *x->queue * (size_t)--x->nqueued);
    return st;
}

/* Sends the summed buckets back to the device in the order they started, as each completes
   (wait: until all have), so the copies back overlap backward too. */
static kiln_status write_back(struct kiln_trainer *t, int wait) {
    kt_dist *x = &t->dist;
    kiln_status st = kiln_dist_progress(x->d);
    while (!st && x->written < x->started) {
        int b = x->order[x->written], done = 1;
        st = wait ? kiln_dist_wait(x->d, x->handle[b]) : kiln_dist_test(x->d, x->handle[b], &done);
        if (st || !done) break;
        if (x->direct) {
            x->written++;
            continue;
        }
        kiln_tensor view;
        int64_t len = x->hi[b] - x->lo[b];
        st = kiln_tensor_view(&view, kiln_graph_grads_flat(t->tg.g), 1, &len, NULL,
                              sizeof(float) * (size_t)x->lo[b]);
        if (!st)
            st = kiln_tensor_set_async(&view, x->host + x->lo[b], sizeof(float) * (size_t)len,
                                       &x->wev[b]);
        x->written++;
    }
    return st;
}

static kiln_status on_grad_ready(void *user, int k) {
    struct kiln_trainer *t = user;
    kt_dist *x = &t->dist;
    if (k < 0) return write_back(t, 0);
    int b = x->bucket_of[k];
    kiln_status st = KILN_OK;
    if (--x->left[b] == 0) {
        kiln_tensor view;
        int64_t len = x->hi[b] - x->lo[b];
        st = kiln_tensor_view(&view, kiln_graph_grads_flat(t->tg.g), 1, &len, NULL,
                              sizeof(float) * (size_t)x->lo[b]);
        if (!st && !x->direct)
            st = kiln_tensor_get_async(&view, x->host + x->lo[b], sizeof(float) * (size_t)len,
                                       &x->ev[b]);
        if (st) return st;
        x->queue[x->nqueued++] = b;
        while (!st && x->nqueued > 1) st = start_oldest(x);
    }
    return st ? st : write_back(t, 0);
}

kiln_status kt_dist_backward(struct kiln_trainer *t) {
    kt_dist *x = &t->dist;
    if (x->world < 2) return kiln_graph_backward_run(t->tg.g);
    memcpy(x->left, x->size, sizeof *x->left * (size_t)x->nbuckets);
    x->nqueued = x->started = x->written = 0;
    kiln_status st = kiln_graph_backward_run_hook(t->tg.g, on_grad_ready, t);
    while (!st && x->nqueued) st = start_oldest(x);
    if (st) return st;
    if (x->started != x->nbuckets)
        return kiln_error(KILN_INTERNAL, "all-reduce: %d of %d buckets completed in backward",
                          x->started, x->nbuckets);
    double t_bwd = kiln_time_s();
    /* The sums go back as they are: the optimizer scales by 1 / world (kt_dist_grad_scale). */
    st = write_back(t, 1);
    if (!st) st = kiln_dist_wait_all(x->d);
    for (int b = 0; b < x->nbuckets; b++) {
        if (x->wev[b] && !st) st = kiln_event_wait(x->wev[b]);
        if (x->wev[b]) kiln_event_free(x->wev[b]);
        x->wev[b] = NULL;
    }
    double end = kiln_time_s();
    x->stats.steps++;
    x->stats.allreduce_s += end - x->t_first;
    x->stats.exposed_s += end - t_bwd;
    return st;
}

float kt_dist_grad_scale(const struct kiln_trainer *t) {
    return t->dist.world > 1 ? 1.0f / (float)t->dist.world : 1.0f;
}

void kiln_trainer_dist_stats_get(kiln_trainer_t t, kiln_trainer_dist_stats *s) {
    *s = t->dist.stats;
    if (!s->ranks) s->ranks = 1;
}
