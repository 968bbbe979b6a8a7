/* `kiln data bench|preview|pack|info|gen`: the data pipeline from the command line. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench-util.h"
#include "cli.h"
#include "kiln-util.h"
#include "kiln/data.h"
#include "kiln/kiln.h"

/* ---- options ---- */

typedef struct opts {
    const char *data, *augment, *out, *labels, *workers, *peer_script, *split;
    long size, batch, images, count, cols, classes, quality, shard_mb, channels;
    unsigned long long seed, split_seed;
    double val_fraction;
    int checksum, peer, fast_decode, fail, accept_warnings;
    char gen_size[32];
} opts;

static const char *usage_bench =
    "usage: kiln data bench --data SRC [--augment SPEC] [--size N] [--batch N] [--workers "
    "N[,N..]]\n"
    "                       [--images N] [--checksum] [--seed N] [--peer] [common options]\n"
    "  Decodes and augments into uint8 batches and prints images/s per worker count, and\n"
    "  where the workers' time goes per image (read, decode, resample, pixel ops).\n"
    "  --checksum   digest of all batches and labels (the same for any worker count)\n"
    "  --peer       also run perf/peer_pil.py (PIL, one core) on the same files and print the "
    "ratio\n"
    "  --peer-script PATH  where peer_pil.py is (default: found from the source tree)\n";
static const char *usage_preview =
    "usage: kiln data preview --data SRC --augment SPEC --out FILE.jpg [--count N] [--cols N]\n"
    "                         [--seed N] [common options]\n"
    "  Writes a contact sheet of augmented samples labelled with their classes.\n";
static const char *usage_pack =
    "usage: kiln data pack --data DIR --out OUTDIR [--shard-mb N]\n"
    "  Packs a class-folder JPEG directory into tar shards (KEY.jpg + KEY.cls members,\n"
    "  OUTDIR/classes.txt); --data OUTDIR then reads them.\n";
static const char *usage_info = "usage: kiln data info --data SRC [common options]\n"
                                "  Counts per class, image sizes, and files that fail to decode.\n";
static const char *usage_gen =
    "usage: kiln data gen --out DIR [--count N] [--classes N] [--gen-size WxH] [--quality Q]\n"
    "                     [--seed N]\n"
    "  Writes synthetic photo-like JPEGs in class folders (for benchmarks).\n";
static const char *usage_common =
    "common options: --labels PATH (IDX labels) --split all|train|val --val-fraction F\n"
    "  --split-seed N --channels 1|3 --on-error skip|fail --accept-warnings --fast-decode\n"
    "augment spec: comma-separated tokens, e.g. rrc:224,flip:h,jitter:0.4 (see kiln/data.h):\n"
    "  rrc:S[:SMIN-SMAX[:RMIN-RMAX]] resize:N size:N|WxH center:N|WxH crop:N|WxH\n"
    "  flip:h|v|hv[:P] padcrop:P rotate:F[:FILL] translate:F[:FILL] jitter:B[:C[:S]]\n"
    "  erase:P cutout:N   (FILL = constant|reflect|wrap|nearest)\n";

static int usage(const char *u, FILE *f, int rc) {
    fprintf(f, "%s%s", u, usage_common);
    return rc;
}

/* Parses argv[1..] into o; returns -1 to continue, else an exit code. */
static int parse(int argc, char **argv, const char *u, opts *o) {
    memset(o, 0, sizeof(*o));
    o->augment = "";
    o->batch = 64;
    o->count = 16;
    o->cols = 4;
    o->classes = 4;
    o->quality = 90;
    o->shard_mb = 256;
    o->split = "all";
    o->val_fraction = 0.2;
    o->split_seed = 1337;
    snprintf(o->gen_size, sizeof(o->gen_size), "500x375");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(u, stdout, 0);
        int flag = 1;
        if (!strcmp(a, "--checksum"))
            o->checksum = 1;
        else if (!strcmp(a, "--peer"))
            o->peer = 1;
        else if (!strcmp(a, "--fast-decode"))
            o->fast_decode = 1;
        else if (!strcmp(a, "--accept-warnings"))
            o->accept_warnings = 1;
        else
            flag = 0;
        if (flag) continue;
        static const char *valued[] = {
            "--data",        "--augment",  "--out",      "--labels",     "--workers",
            "--peer-script", "--split",    "--gen-size", "--size",       "--batch",
            "--images",      "--count",    "--cols",     "--classes",    "--quality",
            "--shard-mb",    "--channels", "--seed",     "--split-seed", "--val-fraction",
            "--on-error"};
        int known = 0;
        for (size_t k = 0; k < sizeof(valued) / sizeof(valued[0]); k++)
            known |= !strcmp(a, valued[k]);
        if (!known) {
            fprintf(stderr, "kiln data: unknown %s '%s'\n", a[0] == '-' ? "option" : "argument", a);
            return usage(u, stderr, 2);
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "kiln data: missing value for '%s'\n", a);
            return usage(u, stderr, 2);
        }
        const char *v = argv[++i];
        char *end = NULL;
        long *num = NULL;
        if (!strcmp(a, "--data"))
            o->data = v;
        else if (!strcmp(a, "--augment"))
            o->augment = v;
        else if (!strcmp(a, "--out"))
            o->out = v;
        else if (!strcmp(a, "--labels"))
            o->labels = v;
        else if (!strcmp(a, "--workers"))
            o->workers = v;
        else if (!strcmp(a, "--peer-script"))
            o->peer_script = v;
        else if (!strcmp(a, "--split"))
            o->split = v;
        else if (!strcmp(a, "--gen-size"))
            snprintf(o->gen_size, sizeof(o->gen_size), "%s", v);
        else if (!strcmp(a, "--size"))
            num = &o->size;
        else if (!strcmp(a, "--batch"))
            num = &o->batch;
        else if (!strcmp(a, "--images"))
            num = &o->images;
        else if (!strcmp(a, "--count"))
            num = &o->count;
        else if (!strcmp(a, "--cols"))
            num = &o->cols;
        else if (!strcmp(a, "--classes"))
            num = &o->classes;
        else if (!strcmp(a, "--quality"))
            num = &o->quality;
        else if (!strcmp(a, "--shard-mb"))
            num = &o->shard_mb;
        else if (!strcmp(a, "--channels"))
            num = &o->channels;
        else if (!strcmp(a, "--seed"))
            o->seed = strtoull(v, &end, 10);
        else if (!strcmp(a, "--split-seed"))
            o->split_seed = strtoull(v, &end, 10);
        else if (!strcmp(a, "--val-fraction"))
            o->val_fraction = strtod(v, &end);
        else if (!strcmp(a, "--on-error")) {
            if (strcmp(v, "skip") && strcmp(v, "fail")) {
                fprintf(stderr, "kiln data: --on-error %s: use skip or fail\n", v);
                return 2;
            }
            o->fail = !strcmp(v, "fail");
        }
        if (num) {
            *num = strtol(v, &end, 10);
            if (*num < 0) end = NULL;
        }
        if (end && (*end || end == v)) {
            fprintf(stderr, "kiln data: %s: bad number '%s'\n", a, v);
            return 2;
        }
        if (num && !end) {
            fprintf(stderr, "kiln data: %s: bad number '%s'\n", a, v);
            return 2;
        }
    }
    return -1;
}

static int fail_msg(const char *what) {
    fprintf(stderr, "kiln data %s: %s\n", what, kiln_last_error());
    return 1;
}

static kiln_status open_data(const opts *o, kiln_dataset_t *ds) {
    kiln_dataset_options d;
    kiln_dataset_options_init(&d);
    d.path = o->data;
    d.labels_path = o->labels;
    d.val_fraction = o->val_fraction;
    d.split_seed = o->split_seed;
    if (!strcmp(o->split, "train"))
        d.split = KILN_SPLIT_TRAIN;
    else if (!strcmp(o->split, "val"))
        d.split = KILN_SPLIT_VAL;
    else if (strcmp(o->split, "all"))
        return kiln_error(KILN_INVALID_ARGUMENT, "--split %s: use all, train or val", o->split);
    return kiln_dataset_open(&d, ds);
}

/* The spec, with --size N standing for a trailing size when the spec fixes none. */
static kiln_status full_spec(const opts *o, char *out, size_t n) {
    kiln_augment_t a;
    kiln_status st = kiln_augment_parse(o->augment, &a);
    if (st != KILN_OK) return st;
    int w, h;
    kiln_augment_output_size(a, &w, &h);
    kiln_augment_free(a);
    if (o->size && w && (w != o->size || h != o->size))
        return kiln_error(KILN_INVALID_ARGUMENT, "--size %ld but the spec '%s' makes %dx%d",
                          o->size, o->augment, w, h);
    if (o->size && !w)
        snprintf(out, n, "size:%ld%s%s", o->size, o->augment[0] ? "," : "", o->augment);
    else
        snprintf(out, n, "%s", o->augment);
    return KILN_OK;
}

static void loader_opts(const opts *o, kiln_dataset_t ds, const char *spec, int workers,
                        kiln_loader_options *lo) {
    kiln_loader_options_init(lo);
    lo->dataset = ds;
    lo->augment = spec;
    lo->batch = (int)o->batch;
    lo->workers = workers;
    lo->seed = o->seed;
    lo->channels = (int)o->channels;
    lo->on_error = o->fail ? KILN_ON_ERROR_FAIL : KILN_ON_ERROR_SKIP;
    lo->accept_warnings = o->accept_warnings;
    lo->fast_decode = o->fast_decode;
}

/* ---- bench ---- */

/* CPU seconds of this process: on a shared machine images per CPU second is the steadier
   figure (wall time depends on what else runs). */
static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

static void find_peer(const opts *o, char *out, size_t n) {
    out[0] = 0;
    if (o->peer_script) {
        snprintf(out, n, "%s", o->peer_script);
        return;
    }
    if (access("perf/peer_pil.py", R_OK) == 0) {
        snprintf(out, n, "perf/peer_pil.py");
        return;
    }
    char src[4096];
    if (kiln_source_dir(src, sizeof src - 32)) {
        strcat(src, "/perf/peer_pil.py");
        snprintf(out, n, "%s", src);
    }
}

static double run_peer(const opts *o, long images, double *cpu_rate) {
    char script[4096], cmd[8192];
    find_peer(o, script, sizeof(script));
    if (!script[0] || access(script, R_OK) != 0) {
        printf("peer: perf/peer_pil.py not found (give --peer-script)\n");
        return 0;
    }
    snprintf(cmd, sizeof(cmd), "python3 '%s' --data '%s' --images %ld --size %ld", script, o->data,
             images, o->size ? o->size : 224);
    FILE *p = popen(cmd, "r");
    if (!p) return 0;
    char line[1024];
    double rate = 0;
    while (fgets(line, sizeof(line), p)) {
        fputs(line, stdout);
        const char *k = strstr(line, "images/s:");
        if (k) rate = atof(k + 9);
        k = strstr(line, "images/cpu-s:");
        if (k) *cpu_rate = atof(k + 13);
    }
    pclose(p);
    return rate;
}

/* The batch digest runs on the consumer thread, which shares the cores with the workers, so it
   must cost little next to the pipeline: four independent multiply chains (32 bytes a step, the
   multiplies overlap), about 9 us per 224x224x3 image against 30 us for one chain. */
static uint64_t digest(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    uint64_t l[4] = {h, h ^ 1, h ^ 2, h ^ 3};
    for (; n >= 32; p += 32, n -= 32)
        for (int k = 0; k < 4; k++) {
            uint64_t w;
            memcpy(&w, p + 8 * k, 8);
            l[k] = (l[k] ^ w) * 0x100000001b3ULL;
            l[k] ^= l[k] >> 29;
        }
    h = kiln_hash64(h, l, sizeof(l));
    return kiln_hash64(h, p, n);
}

/* Takes batches until `images` samples came (folding them into *h when h is set). */
static kiln_status drain(kiln_loader_t ld, long images, uint64_t *h, long *done) {
    while (*done < images) {
        kiln_batch b;
        kiln_status st = kiln_loader_next(ld, &b);
        if (st != KILN_OK) return st;
        if (h) {
            *h = digest(*h, b.images, (size_t)b.n * b.height * b.width * b.channels);
            *h = digest(*h, b.labels, sizeof(int32_t) * (size_t)b.n);
        }
        *done += b.n;
        kiln_loader_release(ld, &b);
    }
    return KILN_OK;
}

static int cmd_bench(int argc, char **argv) {
    opts o;
    int rc = parse(argc, argv, usage_bench, &o);
    if (rc >= 0) return rc;
    if (!o.data) {
        fprintf(stderr, "kiln data bench: --data is required\n");
        return usage(usage_bench, stderr, 2);
    }
    char spec[1024];
    kiln_dataset_t ds;
    if (full_spec(&o, spec, sizeof(spec)) != KILN_OK || open_data(&o, &ds) != KILN_OK)
        return fail_msg("bench");
    const char *wl = o.workers ? o.workers : "0";
    double rate1 = 0, cpu_rate1 = 0;
    long images = o.images ? o.images : (long)kiln_dataset_size(ds);
    rc = 0;
    printf("data: %s (%s, %zu samples, %d classes)  augment: '%s'  batch %ld\n", o.data,
           kiln_dataset_kind(ds), kiln_dataset_size(ds), kiln_dataset_num_classes(ds), spec,
           o.batch);
    /* Warm-up, untimed: the first worker count for up to 4 batches, so that what a new
       process pays once (page cache, code, library threads starting up) is not charged to the
       first measurement. perf/peer_pil.py warms up the same way. */
    if (images > 0) {
        kiln_loader_options lo;
        loader_opts(&o, ds, spec, (int)strtol(wl, NULL, 10), &lo);
        kiln_loader_t ld; /* NULL when creation fails */
        long done = 0, warm = images < 4 * o.batch ? images : 4 * o.batch;
        if (kiln_loader_create(&lo, &ld) != KILN_OK || drain(ld, warm, NULL, &done) != KILN_OK)
            rc = fail_msg("bench");
        kiln_loader_free(ld);
    }
    for (const char *p = wl; *p && rc == 0;) {
        char *end;
        long w = strtol(p, &end, 10);
        if (end == p || w < 0) {
            fprintf(stderr, "kiln data bench: bad --workers '%s'\n", wl);
            rc = 2;
            break;
        }
        p = *end == ',' ? end + 1 : end;
        kiln_loader_options lo;
        loader_opts(&o, ds, spec, (int)w, &lo);
        kiln_loader_t ld;
        double t0 = kiln_time_s(), c0 = cpu_s();
        if (kiln_loader_create(&lo, &ld) != KILN_OK) {
            rc = fail_msg("bench");
            break;
        }
        uint64_t h = KILN_HASH_INIT;
        long done = 0;
        if (drain(ld, images, o.checksum ? &h : NULL, &done) != KILN_OK) rc = fail_msg("bench");
        double dt = kiln_time_s() - t0;
        kiln_loader_stats s;
        kiln_loader_get_stats(ld, &s);
        double dc = cpu_s() - c0; /* after the count: work in flight is charged, not credited */
        int nw = w ? (int)w : (int)sysconf(_SC_NPROCESSORS_ONLN);
        kiln_loader_free(ld);
        if (rc) break;
        /* Per CPU second counts every image the workers made, the batches prefetched beyond
           the last one taken included: their CPU time is in dc too. */
        double rate = done / dt, cpu_rate = (double)s.images / dc;
        if (!rate1) rate1 = rate, cpu_rate1 = cpu_rate;
        printf("workers %d: %.1f images/s (%ld images in %.2f s; %.2fx the first; %.1f "
               "images/cpu-s; bad files %llu; consumer waited %.0f%%)",
               nw, rate, done, dt, rate / rate1, cpu_rate, (unsigned long long)s.bad_files,
               100 * s.wait_fraction);
        if (o.checksum) printf("  checksum %016llx", (unsigned long long)h);
        printf("\n");
        if (s.images) {
            static const char *stage[KILN_STAGES] = {"read", "decode", "resample", "pixel ops"};
            printf("  worker time per image:");
            for (int k = 0; k < KILN_STAGES; k++)
                printf("%s %s %.3f ms", k ? "," : "", stage[k],
                       1e3 * s.stage_seconds[k] / (double)s.images);
            printf("\n");
        }
    }
    if (rc == 0 && o.peer) {
        if (strcmp(kiln_dataset_kind(ds), "jpeg-dir")) {
            printf("peer: only class-folder JPEG directories\n");
        } else {
            double pcpu = 0, pr = run_peer(&o, images < 2000 ? images : 2000, &pcpu);
            if (pr > 0)
                printf("ratio to PIL (one core), first worker count: %.2fx images/s", rate1 / pr);
            if (pr > 0 && pcpu > 0) printf(", %.2fx images/cpu-s", cpu_rate1 / pcpu);
            if (pr > 0) printf("\n");
        }
    }
    kiln_dataset_free(ds);
    return rc;
}

/* ---- preview: contact sheet with a 5x7 bitmap font ---- */

static const struct {
    char c;
    uint8_t rows[7];
} font[] = {
    {'0', {14, 17, 19, 21, 25, 17, 14}}, {'1', {4, 12, 4, 4, 4, 4, 14}},
    {'2', {14, 17, 1, 2, 4, 8, 31}},     {'3', {31, 2, 4, 2, 1, 17, 14}},
    {'4', {2, 6, 10, 18, 31, 2, 2}},     {'5', {31, 16, 30, 1, 1, 17, 14}},
    {'6', {6, 8, 16, 30, 17, 17, 14}},   {'7', {31, 1, 2, 4, 8, 8, 8}},
    {'8', {14, 17, 17, 14, 17, 17, 14}}, {'9', {14, 17, 17, 15, 1, 2, 12}},
    {'A', {14, 17, 17, 17, 31, 17, 17}}, {'B', {30, 17, 17, 30, 17, 17, 30}},
    {'C', {14, 17, 16, 16, 16, 17, 14}}, {'D', {28, 18, 17, 17, 17, 18, 28}},
    {'E', {31, 16, 16, 30, 16, 16, 31}}, {'F', {31, 16, 16, 30, 16, 16, 16}},
    {'G', {14, 17, 16, 23, 17, 17, 15}}, {'H', {17, 17, 17, 31, 17, 17, 17}},
    {'I', {14, 4, 4, 4, 4, 4, 14}},      {'J', {7, 2, 2, 2, 2, 18, 12}},
    {'K', {17, 18, 20, 24, 20, 18, 17}}, {'L', {16, 16, 16, 16, 16, 16, 31}},
    {'M', {17, 27, 21, 21, 17, 17, 17}}, {'N', {17, 17, 25, 21, 19, 17, 17}},
    {'O', {14, 17, 17, 17, 17, 17, 14}}, {'P', {30, 17, 17, 30, 16, 16, 16}},
    {'Q', {14, 17, 17, 17, 21, 18, 13}}, {'R', {30, 17, 17, 30, 20, 18, 17}},
    {'S', {15, 16, 16, 14, 1, 1, 30}},   {'T', {31, 4, 4, 4, 4, 4, 4}},
    {'U', {17, 17, 17, 17, 17, 17, 14}}, {'V', {17, 17, 17, 17, 17, 10, 4}},
    {'W', {17, 17, 17, 21, 21, 21, 10}}, {'X', {17, 17, 10, 4, 10, 17, 17}},
    {'Y', {17, 17, 17, 10, 4, 4, 4}},    {'Z', {31, 1, 2, 4, 8, 16, 31}},
    {'-', {0, 0, 0, 31, 0, 0, 0}},       {'_', {0, 0, 0, 0, 0, 0, 31}},
    {'.', {0, 0, 0, 0, 0, 12, 12}},      {':', {0, 12, 12, 0, 12, 12, 0}},
    {' ', {0, 0, 0, 0, 0, 0, 0}},        {'?', {14, 17, 1, 2, 4, 0, 4}},
};

static const uint8_t *glyph(char c) {
    if (c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
    for (size_t i = 0; i < sizeof(font) / sizeof(font[0]); i++)
        if (font[i].c == c) return font[i].rows;
    return font[sizeof(font) / sizeof(font[0]) - 1].rows;
}

/* Draws text at (x, y) in an RGB image, scale s, white on the existing background. */
static void draw_text(uint8_t *img, int w, int h, int x, int y, int s, const char *text) {
    for (; *text && x + 5 * s <= w; text++, x += 6 * s) {
        const uint8_t *g = glyph(*text);
        for (int r = 0; r < 7 * s; r++)
            for (int c = 0; c < 5 * s; c++)
                if (g[r / s] >> (4 - c / s) & 1 && y + r < h)
                    memset(img + ((size_t)(y + r) * w + x + c) * 3, 255, 3);
    }
}

static int cmd_preview(int argc, char **argv) {
    opts o;
    int rc = parse(argc, argv, usage_preview, &o);
    if (rc >= 0) return rc;
    if (!o.data || !o.out) {
        fprintf(stderr, "kiln data preview: --data and --out are required\n");
        return usage(usage_preview, stderr, 2);
    }
    char spec[1024];
    kiln_dataset_t ds;
    if (full_spec(&o, spec, sizeof(spec)) != KILN_OK || open_data(&o, &ds) != KILN_OK)
        return fail_msg("preview");
    if (o.count < 1) o.count = 1;
    if (o.cols < 1) o.cols = 1;
    kiln_loader_options lo;
    loader_opts(&o, ds, spec, 0, &lo);
    lo.batch = (int)o.count;
    kiln_loader_t ld;
    kiln_batch b;
    if (kiln_loader_create(&lo, &ld) != KILN_OK) {
        kiln_dataset_free(ds);
        return fail_msg("preview");
    }
    if (kiln_loader_next(ld, &b) != KILN_OK) {
        kiln_loader_free(ld);
        kiln_dataset_free(ds);
        return fail_msg("preview");
    }
    int tw = b.width, th = b.height, s = tw >= 160 ? 2 : 1, label_h = 9 * s + 4, pad = 4;
    if (tw < 48) tw = 48; /* room for a label under tiny images (IDX) */
    int cols = (int)(o.cols < b.n ? o.cols : b.n), rows = (b.n + cols - 1) / cols;
    int W = cols * (tw + pad) + pad, H = rows * (th + label_h + pad) + pad;
    uint8_t *sheet = calloc((size_t)W * H, 3);
    for (int i = 0; sheet && i < b.n; i++) {
        int x0 = pad + (i % cols) * (tw + pad), y0 = pad + (i / cols) * (th + label_h + pad);
        const uint8_t *src = b.images + (size_t)i * b.width * b.height * b.channels;
        for (int y = 0; y < b.height; y++)
            kiln_convert_channels(src + (size_t)y * b.width * b.channels, b.width, b.channels,
                                  sheet + ((size_t)(y0 + y) * W + x0) * 3, 3);
        char label[128];
        const char *cname = kiln_dataset_class_name(ds, b.labels[i]);
        if (cname[0] >= '0' && cname[0] <= '9' && atoi(cname) == b.labels[i])
            snprintf(label, sizeof(label), "%d", b.labels[i]); /* IDX: the name is the number */
        else
            snprintf(label, sizeof(label), "%d %s", b.labels[i], cname);
        draw_text(sheet, W, H, x0, y0 + th + 2, s, label);
    }
    uint8_t *jpg = NULL;
    size_t n = 0;
    kiln_status st = sheet ? kiln_jpeg_encode(sheet, W, H, 3, 90, &jpg, &n)
                           : kiln_error(KILN_OUT_OF_MEMORY, "contact sheet");
    if (st == KILN_OK) st = kiln_write_file_atomic(o.out, jpg, n);
    if (st == KILN_OK)
        printf("wrote %s: %d samples (%dx%dx%d), '%s'\n", o.out, b.n, b.width, b.height, b.channels,
               spec);
    kiln_loader_release(ld, &b);
    kiln_loader_free(ld);
    kiln_dataset_free(ds);
    free(sheet);
    free(jpg);
    return st == KILN_OK ? 0 : fail_msg("preview");
}

/* ---- pack ---- */

static int cmd_pack(int argc, char **argv) {
    opts o;
    int rc = parse(argc, argv, usage_pack, &o);
    if (rc >= 0) return rc;
    if (!o.data || !o.out) {
        fprintf(stderr, "kiln data pack: --data and --out are required\n");
        return usage(usage_pack, stderr, 2);
    }
    kiln_dataset_t ds;
    if (open_data(&o, &ds) != KILN_OK) return fail_msg("pack");
    int shards = 0;
    kiln_status st = kiln_data_pack(ds, o.out, (uint64_t)o.shard_mb << 20, &shards);
    if (st == KILN_OK)
        printf("packed %zu samples of %d classes into %d shards in %s\n", kiln_dataset_size(ds),
               kiln_dataset_num_classes(ds), shards, o.out);
    kiln_dataset_free(ds);
    return st == KILN_OK ? 0 : fail_msg("pack");
}

/* ---- info ---- */

static int cmd_info(int argc, char **argv) {
    opts o;
    int rc = parse(argc, argv, usage_info, &o);
    if (rc >= 0) return rc;
    if (!o.data) {
        fprintf(stderr, "kiln data info: --data is required\n");
        return usage(usage_info, stderr, 2);
    }
    kiln_dataset_t ds;
    if (open_data(&o, &ds) != KILN_OK) return fail_msg("info");
    int nc = kiln_dataset_num_classes(ds);
    size_t n = kiln_dataset_size(ds), *per = calloc((size_t)nc + 1, sizeof(size_t)), bad = 0;
    printf("%s: %s, %zu samples, %d classes\n", o.data, kiln_dataset_kind(ds), n, nc);
    long minw = 0, maxw = 0, minh = 0, maxh = 0;
    double sumw = 0, sumh = 0;
    size_t sized = 0;
    kiln_dataset_scan_t scan;
    if (kiln_dataset_scan_create(ds, o.accept_warnings, &scan) != KILN_OK) return fail_msg("info");
    for (size_t i = 0; per && i < n; i++) {
        int l = kiln_dataset_label(ds, i);
        per[l >= 0 && l < nc ? l : nc]++;
        int iw, ih;
        if (kiln_dataset_scan_sample(scan, i, &iw, &ih) != KILN_OK) {
            if (bad++ < 20)
                printf("  bad: %s: %s\n", kiln_dataset_sample_name(ds, i), kiln_last_error());
            continue;
        }
        long w = iw, h = ih;
        if (!sized++) minw = maxw = w, minh = maxh = h;
        minw = w < minw ? w : minw, maxw = w > maxw ? w : maxw;
        minh = h < minh ? h : minh, maxh = h > maxh ? h : maxh;
        sumw += (double)w, sumh += (double)h;
    }
    for (int c = 0; per && c < nc; c++)
        printf("  %4d %-24s %zu\n", c, kiln_dataset_class_name(ds, c), per[c]);
    if (sized)
        printf("sizes: width %ld..%ld (mean %.0f), height %ld..%ld (mean %.0f)\n", minw, maxw,
               sumw / (double)sized, minh, maxh, sumh / (double)sized);
    printf("files that fail to decode: %zu\n", bad);
    kiln_dataset_scan_free(scan);
    free(per);
    kiln_dataset_free(ds);
    return 0;
}

/* ---- gen: synthetic photo-like JPEGs ---- */

static int cmd_gen(int argc, char **argv) {
    opts o;
    int rc = parse(argc, argv, usage_gen, &o);
    if (rc >= 0) return rc;
    int w = 0, h = 0;
    if (!o.out || sscanf(o.gen_size, "%dx%d", &w, &h) != 2 || w < 1 || h < 1 || w > 8192 ||
        h > 8192) {
        fprintf(stderr, "kiln data gen: --out DIR is required and --gen-size is WxH\n");
        return usage(usage_gen, stderr, 2);
    }
    if (o.count < 1) o.count = 256;
    if (o.classes < 1) o.classes = 1;
    if (mkdir(o.out, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "kiln data gen: %s: %s\n", o.out, strerror(errno));
        return 1;
    }
    uint8_t *px = malloc((size_t)w * h * 3);
    if (!px) return 1;
    size_t total = 0;
    for (long i = 0; i < o.count; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/class%02ld", o.out, i % o.classes);
        mkdir(path, 0755);
        /* Photo-like content: smooth color fields, a few flat-colored objects with sharp edges
           (ellipses), fine texture, and mostly luminance sensor noise. At quality 90 these
           compress and decode like real 500x375 photos (about 50 KiB, 0.8 ms for a full
           libjpeg-turbo decode on a 2-core Xeon, as photos from scikit-learn and scikit-image
           measure); independent per-channel noise would make them 50% larger and slower. */
        kiln_rng r = kiln_rng_make(o.seed, 7, (uint64_t)i);
        double f[3][4], obj[6][7];
        for (int c = 0; c < 3; c++)
            for (int k = 0; k < 4; k++) f[c][k] = kiln_rng_range(&r, 0.005, 0.08);
        for (int k = 0; k < 6; k++) {
            obj[k][0] = kiln_rng_range(&r, 0, w), obj[k][1] = kiln_rng_range(&r, 0, h);
            obj[k][2] = kiln_rng_range(&r, 0.05, 0.3) * w,
            obj[k][3] = kiln_rng_range(&r, 0.05, 0.3) * h;
            for (int c = 0; c < 3; c++) obj[k][4 + c] = kiln_rng_range(&r, -60, 60);
        }
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                uint64_t z = kiln_mix64((uint64_t)i * 1000003u + (uint64_t)y * 8191u + (uint64_t)x);
                double luma = 1.5 * (double)(z & 7) - 5.25,
                       tex = 10 * sin((x + y) * 0.35) * sin(x * 0.21);
                double add[3] = {0, 0, 0};
                for (int k = 0; k < 6; k++) {
                    double dx = (x - obj[k][0]) / obj[k][2], dy = (y - obj[k][1]) / obj[k][3];
                    if (dx * dx + dy * dy < 1)
                        for (int c = 0; c < 3; c++) add[c] = obj[k][4 + c];
                }
                for (int c = 0; c < 3; c++) {
                    double v = 128 + 45 * sin(x * f[c][0] + y * f[c][1]) +
                               25 * sin(x * f[c][2] - y * f[c][3] + c) + add[c] + tex + luma +
                               (double)((z >> (8 + 4 * c)) & 3) - 1.5;
                    px[((size_t)y * w + x) * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
                }
            }
        uint8_t *jpg;
        size_t n;
        if (kiln_jpeg_encode(px, w, h, 3, (int)o.quality, &jpg, &n) != KILN_OK) {
            free(px);
            return fail_msg("gen");
        }
        snprintf(path, sizeof(path), "%s/class%02ld/img%06ld.jpg", o.out, i % o.classes, i);
        /* Plain writes: fsync per file (kiln_write_file_atomic) makes big sets crawl. */
        FILE *out = fopen(path, "wb");
        int bad = !out || fwrite(jpg, 1, n, out) != n;
        if (out) bad |= fclose(out) != 0;
        free(jpg);
        if (bad) {
            fprintf(stderr, "kiln data gen: cannot write %s: %s\n", path, strerror(errno));
            free(px);
            return 1;
        }
        total += n;
    }
    free(px);
    printf("wrote %ld JPEGs of %dx%d (quality %ld, mean %.0f KiB) in %s\n", o.count, w, h,
           o.quality, (double)total / (double)o.count / 1024, o.out);
    return 0;
}

int kiln_cmd_data(int argc, char **argv) {
    static const char *top =
        "usage: kiln data <bench|preview|pack|info|gen> [options]   (kiln data CMD --help)\n"
        "  bench    images/s of decode + augment into batches (--checksum, --peer)\n"
        "  preview  contact sheet of augmented samples with labels\n"
        "  pack     class-folder JPEGs -> tar shards\n"
        "  info     counts per class, sizes, files that fail to decode\n"
        "  gen      synthetic photo-like JPEGs for benchmarks\n";
    if (argc < 2) {
        fputs(top, stderr);
        return 2;
    }
    const char *c = argv[1];
    if (!strcmp(c, "-h") || !strcmp(c, "--help") || !strcmp(c, "help")) {
        fputs(top, stdout);
        return 0;
    }
    if (!strcmp(c, "bench")) return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(c, "preview")) return cmd_preview(argc - 1, argv + 1);
    if (!strcmp(c, "pack")) return cmd_pack(argc - 1, argv + 1);
    if (!strcmp(c, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(c, "gen")) return cmd_gen(argc - 1, argv + 1);
    fprintf(stderr, "kiln data: unknown subcommand '%s'\n", c);
    fputs(top, stderr);
    return 2;
}
