/* The loader: a persistent worker pool fills a bounded ring of preallocated batch slots.
   Workers claim small chunks of samples from the oldest unfinished batch, so any number of
   workers share one batch; what a sample becomes depends only on (seed, epoch, index). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend-impl.h"
#include "data/data-impl.h"

enum { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_TAKEN };
#define CHUNK 4

typedef struct slot {
    uint8_t *images;
    int32_t *labels;
    int64_t *idx; /* dataset index of each sample */
    int64_t batch;
    int n, claimed, done, state;
    kiln_status err;
    char errmsg[1024];
} slot;

typedef struct worker {
    struct kiln_loader *ld;
    pthread_t thread;
    kiln_decoder *dec;
    uint8_t *bytes;
    size_t bytes_cap;
    kiln_scratch rs, ps, cs;
    double stage[KILN_STAGES]; /* seconds in each stage for the chunk in hand */
} worker;

struct kiln_loader {
    kiln_loader_options o;
    kiln_dataset_t ds;
    kiln_augment_t aug;
    int out_w, out_h, c;
    size_t sample_bytes;
    int64_t per_rank, steps;
    kiln_decode_limits lim;
    slot *slots;
    int nslots;
    worker *workers;
    int nworkers;
    pthread_mutex_t mu;
    pthread_cond_t work_cv, ready_cv;
    int64_t next_fill, next_take;
    int stop, busy;
    uint64_t generation;
    int64_t perm_epoch;
    int64_t *perm;
    uint8_t *bad; /* per sample: 1 once it failed to decode */
    uint64_t images, bad_files, replaced;
    double wait_s, t_first, t_last;
    double stage_s[KILN_STAGES]; /* summed over workers */
};

void kiln_loader_options_init(kiln_loader_options *o) {
    memset(o, 0, sizeof(*o));
    o->batch = 32;
    o->shuffle = 1;
    o->world_size = 1;
    o->on_error = KILN_ON_ERROR_SKIP;
}

/* Decodes and augments dataset sample i into out. */
static kiln_status make_sample(struct kiln_loader *ld, worker *w, int64_t i, uint64_t epoch,
                               uint8_t *out) {
    kiln_dataset_t ds = ld->ds;
    kiln_rng r = kiln_rng_make(ld->o.seed, epoch, (uint64_t)i);
    kiln_geometry g;
    kiln_status st;
    double t0 = kiln_time_s(), t1 = t0, t2;
    if (ds->kind == KILN_SRC_IDX) {
        const uint8_t *src = ds->idx_pixels + ds->samples[i].off;
        int npix = ds->idx_w * ds->idx_h;
        if (ld->c != 1) {
            st = kiln_scratch_grow(&w->cs, (size_t)npix * ld->c);
            if (st != KILN_OK) return st;
            kiln_convert_channels(src, npix, 1, w->cs.p, ld->c);
            src = w->cs.p;
        }
        kiln_augment_geometry(ld->aug, ds->idx_w, ds->idx_h, &r, &g);
        t1 = kiln_time_s();
        w->stage[KILN_STAGE_READ] += t1 - t0;
        st = kiln_resample(src, ds->idx_w, ds->idx_h, ld->c, g.x, g.y, g.w, g.h, out, ld->out_w,
                           ld->out_h, &w->rs);
    } else {
        size_t n = 0;
        kiln_jpeg_info info;
        kiln_decoded d;
        st = kiln_dataset_read_bytes(ds, (size_t)i, &w->bytes, &w->bytes_cap, &n);
        if (st == KILN_OK) st = kiln_jpeg_header(w->dec, w->bytes, n, &ld->lim, &info);
        t1 = kiln_time_s();
        w->stage[KILN_STAGE_READ] += t1 - t0;
        if (st != KILN_OK) return st;
        kiln_augment_geometry(ld->aug, info.owidth, info.oheight, &r, &g);
        if (g.out_w != ld->out_w || g.out_h != ld->out_h)
            return kiln_error(KILN_SHAPE,
                              "augmented to %dx%d, the batch is %dx%d (the spec "
                              "needs a fixed size for images of mixed sizes)",
                              g.out_w, g.out_h, ld->out_w, ld->out_h);
        st = kiln_jpeg_decode_box(w->dec, w->bytes, n, &info, &ld->lim, ld->c, g.x, g.y, g.w, g.h,
                                  g.out_w, g.out_h, &d);
        t2 = kiln_time_s();
        w->stage[KILN_STAGE_DECODE] += t2 - t1;
        t1 = t2;
        if (st == KILN_OK)
            st = kiln_resample(d.pixels, d.w, d.h, ld->c, d.bx, d.by, d.bw, d.bh, out, ld->out_w,
                               ld->out_h, &w->rs);
    }
    t2 = kiln_time_s();
    w->stage[KILN_STAGE_RESAMPLE] += t2 - t1;
    if (st != KILN_OK) return st;
    st = kiln_scratch_grow(&w->ps, ld->sample_bytes);
    if (st == KILN_OK) kiln_augment_pixels(ld->aug, out, ld->out_w, ld->out_h, ld->c, &r, w->ps.p);
    w->stage[KILN_STAGE_PIXELS] += kiln_time_s() - t2;
    return st;
}

/* One sample of a batch, with the bad-file policy. Runs without the lock except for the
   counters. Returns KILN_OK or (policy fail) the error with the file named. */
static kiln_status fill_one(struct kiln_loader *ld, worker *w, slot *s, int k, uint64_t epoch) {
    int64_t i = s->idx[k];
    uint8_t *out = s->images + (size_t)k * ld->sample_bytes;
    kiln_rng rep = kiln_rng_make(ld->o.seed ^ 0x5eedbad5eedbad5ULL, epoch, (uint64_t)i);
    for (int attempt = 0; attempt < 64; attempt++) {
        kiln_status st = KILN_CORRUPT;
        if (!ld->bad[i]) {
            st = make_sample(ld, w, i, epoch, out);
            if (st == KILN_OK) {
                s->labels[k] = ld->ds->samples[i].label;
                return KILN_OK;
            }
            char msg[1024];
            snprintf(msg, sizeof(msg), "%s", kiln_last_error());
            if (ld->o.on_error == KILN_ON_ERROR_FAIL) {
                memset(out, 0, ld->sample_bytes);
                s->labels[k] = -1;
                return kiln_error(KILN_CORRUPT, "%s/%s: %s", ld->ds->root,
                                  kiln_dataset_sample_name(ld->ds, (size_t)i), msg);
            }
            pthread_mutex_lock(&ld->mu);
            int first = !ld->bad[i];
            ld->bad[i] = 1;
            ld->bad_files += (uint64_t)first;
            pthread_mutex_unlock(&ld->mu);
            if (first)
                kiln_log(KILN_LOG_WARN, "data: skipping %s/%s: %s", ld->ds->root,
                         kiln_dataset_sample_name(ld->ds, (size_t)i), msg);
        }
        pthread_mutex_lock(&ld->mu);
        ld->replaced++;
        pthread_mutex_unlock(&ld->mu);
        i = (int64_t)kiln_rng_below(&rep, ld->ds->count);
    }
    memset(out, 0, ld->sample_bytes);
    s->labels[k] = -1;
    return kiln_error(KILN_CORRUPT, "data: 64 replacements in a row failed to decode (last: %s)",
                      kiln_dataset_sample_name(ld->ds, (size_t)i));
}

/* Sets up slot s for global batch b (lock held). */
static void setup_slot(struct kiln_loader *ld, slot *s, int64_t b) {
    int64_t epoch = b / ld->steps, step = b % ld->steps;
    size_t n = ld->ds->count;
    if (ld->perm_epoch != epoch) {
        for (size_t i = 0; i < n; i++) ld->perm[i] = (int64_t)i;
        if (ld->o.shuffle) {
            kiln_rng r = kiln_rng_make(ld->o.seed, (uint64_t)epoch, UINT64_MAX);
            for (size_t i = n - 1; i > 0; i--) {
                size_t j = (size_t)kiln_rng_below(&r, i + 1);
                int64_t t = ld->perm[i];
                ld->perm[i] = ld->perm[j];
                ld->perm[j] = t;
            }
        }
        ld->perm_epoch = epoch;
    }
    int64_t first = step * ld->o.batch, last = first + ld->o.batch;
    if (last > ld->per_rank) last = ld->per_rank;
    s->n = (int)(last - first);
    for (int64_t j = first; j < last; j++)
        s->idx[j - first] = ld->perm[j * ld->o.world_size + ld->o.rank];
    s->batch = b;
    s->claimed = s->done = 0;
    s->err = KILN_OK;
    s->errmsg[0] = 0;
    s->state = SLOT_FILLING;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    struct kiln_loader *ld = w->ld;
    pthread_mutex_lock(&ld->mu);
    while (!ld->stop) {
        /* The oldest batch with unclaimed samples, else a free slot for the next batch. */
        slot *s = NULL, *freeslot = NULL;
        for (int i = 0; i < ld->nslots; i++) {
            slot *t = &ld->slots[i];
            if (t->state == SLOT_FILLING && t->claimed < t->n && (!s || t->batch < s->batch)) s = t;
            if (t->state == SLOT_FREE && !freeslot) freeslot = t;
        }
        if (!s && freeslot) {
            setup_slot(ld, freeslot, ld->next_fill++);
            s = freeslot;
        }
        if (!s) {
            pthread_cond_wait(&ld->work_cv, &ld->mu);
            continue;
        }
        int k0 = s->claimed, k1 = k0 + CHUNK < s->n ? k0 + CHUNK : s->n;
        s->claimed = k1;
        uint64_t gen = ld->generation, epoch = (uint64_t)(s->batch / ld->steps);
        ld->busy++;
        pthread_mutex_unlock(&ld->mu);
        kiln_status err = KILN_OK;
        char msg[1024] = "";
        for (int k = k0; k < k1; k++) {
            kiln_status st = fill_one(ld, w, s, k, epoch);
            if (st != KILN_OK && err == KILN_OK) {
                err = st;
                snprintf(msg, sizeof(msg), "%s", kiln_last_error());
            }
        }
        pthread_mutex_lock(&ld->mu);
        ld->busy--;
        for (int k = 0; k < KILN_STAGES; k++) {
            ld->stage_s[k] += w->stage[k];
            w->stage[k] = 0;
        }
        if (gen == ld->generation) {
            if (err != KILN_OK && s->err == KILN_OK) {
                s->err = err;
                memcpy(s->errmsg, msg, sizeof(msg));
            }
            s->done += k1 - k0;
            ld->images += (uint64_t)(k1 - k0);
            if (s->done == s->n) s->state = SLOT_READY;
        }
        /* Only a finished batch or an idle pool (kiln_loader_seek) is worth a wakeup: waking the
           consumer after every chunk costs the workers their cores on a busy machine. */
        if (s->state == SLOT_READY || ld->busy == 0) pthread_cond_broadcast(&ld->ready_cv);
    }
    pthread_mutex_unlock(&ld->mu);
    return NULL;
}

kiln_status kiln_loader_create(const kiln_loader_options *o, kiln_loader_t *out) {
    *out = NULL;
    if (!o || !o->dataset) return kiln_error(KILN_INVALID_ARGUMENT, "loader: no dataset");
    if (o->batch < 1) return kiln_error(KILN_INVALID_ARGUMENT, "loader: batch %d < 1", o->batch);
    if (o->world_size < 1 || o->rank < 0 || o->rank >= o->world_size)
        return kiln_error(KILN_INVALID_ARGUMENT, "loader: rank %d of world size %d", o->rank,
                          o->world_size);
    if (o->channels != 0 && o->channels != 1 && o->channels != 3)
        return kiln_error(KILN_INVALID_ARGUMENT, "loader: channels %d (1 or 3)", o->channels);
    if (o->workers < 0 || o->slots < 0)
        return kiln_error(KILN_INVALID_ARGUMENT, "loader: negative workers or slots");
    kiln_loader_t ld = calloc(1, sizeof(*ld));
    if (!ld) return kiln_error(KILN_OUT_OF_MEMORY, "loader");
    ld->o = *o;
    ld->ds = o->dataset;
    kiln_dataset_t ds = ld->ds;
    ld->perm_epoch = -1;
    ld->t_first = -1;
    pthread_mutex_init(&ld->mu, NULL);
    pthread_cond_init(&ld->work_cv, NULL);
    pthread_cond_init(&ld->ready_cv, NULL);
    kiln_status st = kiln_augment_parse(o->augment, &ld->aug);
    if (st != KILN_OK) goto fail;
    ld->c = o->channels ? o->channels : kiln_dataset_channels(ds);
    kiln_augment_output_size(ld->aug, &ld->out_w, &ld->out_h);
    if (!ld->out_w) {
        if (ds->kind != KILN_SRC_IDX) {
            st = kiln_error(KILN_INVALID_ARGUMENT,
                            "augment spec '%s' has no output size; JPEG images differ in size "
                            "(add rrc:N, size:N or resize:N,center:N)",
                            o->augment ? o->augment : "");
            goto fail;
        }
        kiln_rng r = kiln_rng_make(0, 0, 0);
        kiln_geometry g;
        kiln_augment_geometry(ld->aug, ds->idx_w, ds->idx_h, &r, &g);
        ld->out_w = g.out_w;
        ld->out_h = g.out_h;
    }
    ld->sample_bytes = (size_t)ld->out_w * ld->out_h * ld->c;
    /* Rank r takes samples r, r + W, r + 2W... of the epoch's order. With drop_last every rank
       takes the same count (the remainder is dropped, as the last short batch is); without it
       the first count % W ranks take one more, so the ranks together see every sample. */
    size_t W = (size_t)o->world_size;
    ld->per_rank = o->drop_last ? (int64_t)(ds->count / W)
                   : ds->count > (size_t)o->rank
                       ? (int64_t)((ds->count - (size_t)o->rank + W - 1) / W)
                       : 0;
    ld->steps = o->drop_last ? ld->per_rank / o->batch : (ld->per_rank + o->batch - 1) / o->batch;
    if (ld->steps < 1) {
        st = kiln_error(KILN_INVALID_ARGUMENT,
                        "loader: %zu samples over %d ranks give no batch of %d", ds->count,
                        o->world_size, o->batch);
        goto fail;
    }
    ld->lim.max_pixels = ds->opt.max_pixels;
    ld->lim.max_side = ds->opt.max_side;
    ld->lim.accept_warnings = o->accept_warnings;
    ld->lim.fast_decode = o->fast_decode;
    ld->nworkers = o->workers ? o->workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (ld->nworkers < 1) ld->nworkers = 1;
    ld->nslots = o->slots ? o->slots : ld->nworkers + 2;
    ld->perm = malloc(ds->count * sizeof(int64_t));
    ld->bad = calloc(ds->count, 1);
    ld->slots = calloc((size_t)ld->nslots, sizeof(slot));
    ld->workers = calloc((size_t)ld->nworkers, sizeof(worker));
    if (!ld->perm || !ld->bad || !ld->slots || !ld->workers) {
        st = kiln_error(KILN_OUT_OF_MEMORY, "loader");
        goto fail;
    }
    for (int i = 0; i < ld->nslots; i++) {
        slot *s = &ld->slots[i];
        s->images = malloc(ld->sample_bytes * (size_t)o->batch);
        s->labels = malloc(sizeof(int32_t) * (size_t)o->batch);
        s->idx = malloc(sizeof(int64_t) * (size_t)o->batch);
        s->batch = -1;
        if (!s->images || !s->labels || !s->idx) {
            st = kiln_error(KILN_OUT_OF_MEMORY, "loader: %d slots of %zu bytes", ld->nslots,
                            ld->sample_bytes * (size_t)o->batch);
            goto fail;
        }
    }
    for (int i = 0; i < ld->nworkers; i++) {
        ld->workers[i].ld = ld;
        st = kiln_decoder_create(&ld->workers[i].dec);
        if (st != KILN_OK) goto fail;
    }
    for (int i = 0; i < ld->nworkers; i++) {
        if (pthread_create(&ld->workers[i].thread, NULL, worker_main, &ld->workers[i]) != 0) {
            ld->nworkers = i;
            st = kiln_error(KILN_INTERNAL, "loader: cannot start worker thread %d", i);
            goto fail;
        }
    }
    *out = ld;
    return KILN_OK;
fail:
    kiln_loader_free(ld);
    return st;
}

void kiln_loader_free(kiln_loader_t ld) {
    if (!ld) return;
    pthread_mutex_lock(&ld->mu);
    ld->stop = 1;
    pthread_cond_broadcast(&ld->work_cv);
    pthread_mutex_unlock(&ld->mu);
    for (int i = 0; ld->workers && i < ld->nworkers; i++) {
        worker *w = &ld->workers[i];
        if (w->thread) pthread_join(w->thread, NULL);
    }
    for (int i = 0; ld->workers && i < ld->nworkers; i++) {
        worker *w = &ld->workers[i];
        kiln_decoder_free(w->dec);
        free(w->bytes);
        free(w->rs.p);
        free(w->ps.p);
        free(w->cs.p);
    }
    /* Workers that failed to start still own decoders. */
    if (ld->workers)
        for (int i = ld->nworkers; i < (ld->o.workers ? ld->o.workers : 0); i++)
            kiln_decoder_free(ld->workers[i].dec);
    for (int i = 0; ld->slots && i < ld->nslots; i++) {
        free(ld->slots[i].images);
        free(ld->slots[i].labels);
        free(ld->slots[i].idx);
    }
    free(ld->slots);
    free(ld->workers);
    free(ld->perm);
    free(ld->bad);
    kiln_augment_free(ld->aug);
    pthread_mutex_destroy(&ld->mu);
    pthread_cond_destroy(&ld->work_cv);
    pthread_cond_destroy(&ld->ready_cv);
    free(ld);
}

int64_t kiln_loader_steps_per_epoch(kiln_loader_t ld) {
    return ld->steps;
}

void kiln_loader_output_shape(kiln_loader_t ld, int *height, int *width, int *channels) {
    *height = ld->out_h;
    *width = ld->out_w;
    *channels = ld->c;
}

kiln_status kiln_loader_seek(kiln_loader_t ld, int64_t epoch, int64_t step) {
    if (epoch < 0 || step < 0 || step >= ld->steps)
        return kiln_error(KILN_INVALID_ARGUMENT,
                          "loader seek: epoch %lld step %lld (%lld steps "
                          "per epoch)",
                          (long long)epoch, (long long)step, (long long)ld->steps);
    pthread_mutex_lock(&ld->mu);
    ld->generation++;
    /* Workers still writing into slots finish their chunk before the slots are reused. */
    while (ld->busy) pthread_cond_wait(&ld->ready_cv, &ld->mu);
    for (int i = 0; i < ld->nslots; i++) {
        ld->slots[i].state = SLOT_FREE;
        ld->slots[i].batch = -1;
    }
    ld->next_fill = ld->next_take = epoch * ld->steps + step;
    pthread_cond_broadcast(&ld->work_cv);
    pthread_mutex_unlock(&ld->mu);
    return KILN_OK;
}

kiln_status kiln_loader_next(kiln_loader_t ld, kiln_batch *b) {
    double t0 = kiln_time_s();
    pthread_mutex_lock(&ld->mu);
    if (ld->t_first < 0) ld->t_first = t0;
    slot *s = NULL;
    for (;;) {
        int taken = 0;
        for (int i = 0; i < ld->nslots; i++) taken += ld->slots[i].state == SLOT_TAKEN;
        if (taken == ld->nslots) {
            /* Every slot is held by the caller: waiting would never end. */
            pthread_mutex_unlock(&ld->mu);
            return kiln_error(KILN_INVALID_ARGUMENT,
                              "loader: all %d slots are held; release a batch before the next",
                              ld->nslots);
        }
        for (int i = 0; i < ld->nslots && !s; i++)
            if (ld->slots[i].batch == ld->next_take && ld->slots[i].state == SLOT_READY)
                s = &ld->slots[i];
        if (s) break;
        pthread_cond_wait(&ld->ready_cv, &ld->mu);
    }
    s->state = SLOT_TAKEN;
    ld->next_take++;
    double t1 = kiln_time_s();
    ld->wait_s += t1 - t0;
    ld->t_last = t1;
    pthread_mutex_unlock(&ld->mu);
    b->images = s->images;
    b->labels = s->labels;
    b->n = s->n;
    b->height = ld->out_h;
    b->width = ld->out_w;
    b->channels = ld->c;
    b->epoch = s->batch / ld->steps;
    b->step = s->batch % ld->steps;
    if (s->err != KILN_OK) {
        kiln_status st = kiln_error(s->err, "%s", s->errmsg);
        kiln_loader_release(ld, b);
        return st;
    }
    return KILN_OK;
}

void kiln_loader_release(kiln_loader_t ld, kiln_batch *b) {
    pthread_mutex_lock(&ld->mu);
    for (int i = 0; i < ld->nslots; i++) {
        slot *s = &ld->slots[i];
        if (s->images == b->images && s->state == SLOT_TAKEN) {
            s->state = SLOT_FREE;
            s->batch = -1;
        }
    }
    pthread_cond_broadcast(&ld->work_cv);
    pthread_mutex_unlock(&ld->mu);
}

void kiln_loader_get_stats(kiln_loader_t ld, kiln_loader_stats *s) {
    pthread_mutex_lock(&ld->mu);
    s->images = ld->images;
    s->bad_files = ld->bad_files;
    s->replaced = ld->replaced;
    s->wait_seconds = ld->wait_s;
    s->run_seconds = ld->t_first < 0 ? 0 : ld->t_last - ld->t_first;
    s->wait_fraction = s->run_seconds > 0 ? s->wait_seconds / s->run_seconds : 0;
    for (int k = 0; k < KILN_STAGES; k++) s->stage_seconds[k] = ld->stage_s[k];
    pthread_mutex_unlock(&ld->mu);
}

/* ---- uploader ---- */

struct kiln_uploader {
    kiln_loader_t ld;
    kiln_backend_t be;
    kiln_tensor img[2], lab[2], vimg[2], vlab[2];
    kiln_event_t ev[2], evl[2];
    kiln_batch b[2];
    int cur, started;
    kiln_status deferred; /* failure of the batch started by the previous call */
    char deferred_msg[1024];
};

kiln_status kiln_uploader_create(kiln_loader_t ld, kiln_backend_t be, kiln_uploader_t *out) {
    *out = NULL;
    kiln_uploader_t up = calloc(1, sizeof(*up));
    if (!up) return kiln_error(KILN_OUT_OF_MEMORY, "uploader");
    up->ld = ld;
    up->be = be;
    int64_t ishape[4] = {ld->o.batch, ld->out_h, ld->out_w, ld->c}, lshape[1] = {ld->o.batch};
    kiln_status st = KILN_OK;
    for (int i = 0; i < 2 && st == KILN_OK; i++) {
        st = kiln_tensor_alloc(&up->img[i], be, KILN_U8, 4, ishape);
        if (st == KILN_OK) st = kiln_tensor_alloc(&up->lab[i], be, KILN_I32, 1, lshape);
    }
    if (st != KILN_OK) {
        kiln_uploader_free(up);
        return st;
    }
    *out = up;
    return KILN_OK;
}

static void wait_free(kiln_event_t *ev, kiln_status *st) {
    if (*ev) {
        kiln_status s = kiln_event_wait(*ev);
        if (*st == KILN_OK) *st = s;
        kiln_event_free(*ev);
        *ev = NULL;
    }
}

void kiln_uploader_free(kiln_uploader_t up) {
    if (!up) return;
    kiln_status st = KILN_OK;
    for (int i = 0; i < 2; i++) {
        wait_free(&up->ev[i], &st);
        wait_free(&up->evl[i], &st);
        if (up->b[i].images) kiln_loader_release(up->ld, &up->b[i]);
        if (up->img[i].buffer) kiln_tensor_release(&up->img[i]);
        if (up->lab[i].buffer) kiln_tensor_release(&up->lab[i]);
    }
    free(up);
}

/* Takes the next batch from the loader and starts copying it into buffer i. */
static kiln_status start_upload(kiln_uploader_t up, int i) {
    kiln_status st = kiln_loader_next(up->ld, &up->b[i]);
    if (st != KILN_OK) {
        up->b[i].images = NULL;
        return st;
    }
    const kiln_batch *b = &up->b[i];
    size_t bytes = up->ld->sample_bytes * (size_t)b->n;
    int64_t ishape[4] = {b->n, b->height, b->width, b->channels}, lshape[1] = {b->n};
    st = kiln_tensor_view(&up->vimg[i], &up->img[i], 4, ishape, up->img[i].stride, 0);
    if (st == KILN_OK)
        st = kiln_tensor_view(&up->vlab[i], &up->lab[i], 1, lshape, up->lab[i].stride, 0);
    if (st == KILN_OK) st = kiln_tensor_set_async(&up->vimg[i], b->images, bytes, &up->ev[i]);
    if (st == KILN_OK)
        st = kiln_tensor_set_async(&up->vlab[i], b->labels, sizeof(int32_t) * (size_t)b->n,
                                   &up->evl[i]);
    return st;
}

kiln_status kiln_uploader_next(kiln_uploader_t up, kiln_tensor **images, kiln_tensor **labels,
                               kiln_batch *info) {
    kiln_status st = KILN_OK;
    if (up->deferred != KILN_OK) {
        st = kiln_error(up->deferred, "%s", up->deferred_msg);
        up->deferred = KILN_OK;
        return st;
    }
    if (!up->started) {
        st = start_upload(up, 0);
        if (st != KILN_OK) return st;
        up->started = 1;
        up->cur = 0;
    }
    int c = up->cur, nx = c ^ 1;
    /* Batch c's copy must land before its host slot goes back to the workers. */
    wait_free(&up->ev[c], &st);
    wait_free(&up->evl[c], &st);
    if (up->b[c].images) {
        if (info) {
            *info = up->b[c];
            info->images = NULL; /* the host slot goes back to the workers */
            info->labels = NULL;
        }
        kiln_loader_release(up->ld, &up->b[c]);
        up->b[c].images = NULL;
    }
    if (st != KILN_OK) return st;
    /* Batch c+1 uploads while the caller computes on batch c. An error here is reported with
       the next call, when that batch would be returned. */
    kiln_status next_st = start_upload(up, nx);
    *images = &up->vimg[c];
    *labels = &up->vlab[c];
    up->cur = nx;
    if (next_st != KILN_OK) {
        up->started = 0;
        up->deferred = next_st;
        snprintf(up->deferred_msg, sizeof(up->deferred_msg), "%s", kiln_last_error());
    }
    return KILN_OK;
}
