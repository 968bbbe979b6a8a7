/* Augmentation: the spec parser, the geometry (one crop box + one output size) and the pixel
   tokens run on the output image; the resampler between them is resample.c. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend-impl.h"
#include "data/data-impl.h"

typedef enum {
    T_RRC,
    T_RESIZE,
    T_SIZE,
    T_CENTER,
    T_CROP,
    T_FLIP,
    T_PADCROP,
    T_ROTATE,
    T_TRANSLATE,
    T_JITTER,
    T_ERASE,
    T_CUTOUT
} tok_kind;

typedef enum { FILL_CONSTANT, FILL_REFLECT, FILL_WRAP, FILL_NEAREST } fill_mode;

typedef struct tok {
    tok_kind k;
    int w, h;
    double a[4];
    fill_mode fill;
} tok;

struct kiln_augment {
    tok *t;
    int n;
    int out_w, out_h; /* 0 when the size depends on the image */
};

static const struct {
    const char *name;
    tok_kind k;
    int geometry;
} names[] = {{"rrc", T_RRC, 1},         {"resize", T_RESIZE, 1}, {"size", T_SIZE, 1},
             {"center", T_CENTER, 1},   {"crop", T_CROP, 1},     {"flip", T_FLIP, 0},
             {"padcrop", T_PADCROP, 0}, {"rotate", T_ROTATE, 0}, {"translate", T_TRANSLATE, 0},
             {"jitter", T_JITTER, 0},   {"erase", T_ERASE, 0},   {"cutout", T_CUTOUT, 0}};

static int parse_num(const char *s, double *v) {
    char *end;
    if (!*s) return 0;
    *v = strtod(s, &end);
    return *end == 0 && isfinite(*v);
}

static int parse_int(const char *s, int *v, int lo, int hi) {
    double d;
    if (!parse_num(s, &d) || d != floor(d) || d < lo || d > hi) return 0;
    *v = (int)d;
    return 1;
}

/* "N" or "WxH" */
static int parse_dims(const char *s, int *w, int *h) {
    const char *x = strchr(s, 'x');
    if (!x) return parse_int(s, w, 1, 16384) && (*h = *w, 1);
    char a[32];
    if ((size_t)(x - s) >= sizeof(a)) return 0;
    memcpy(a, s, (size_t)(x - s));
    a[x - s] = 0;
    return parse_int(a, w, 1, 16384) && parse_int(x + 1, h, 1, 16384);
}

static int parse_range(const char *s, double *lo, double *hi) {
    const char *d = strchr(s + 1, '-');
    if (!d) return 0;
    char a[64];
    if ((size_t)(d - s) >= sizeof(a)) return 0;
    memcpy(a, s, (size_t)(d - s));
    a[d - s] = 0;
    return parse_num(a, lo) && parse_num(d + 1, hi) && *lo > 0 && *lo <= *hi;
}

static int parse_fill(const char *s, fill_mode *f) {
    static const char *fills[] = {"constant", "reflect", "wrap", "nearest"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, fills[i])) return *f = (fill_mode)i, 1;
    return 0;
}

/* Parses one token (already split at ':' into args[0..nargs)). */
static int parse_tok(tok *t, char **args, int nargs) {
    double lo, hi;
    switch (t->k) {
    case T_RRC:
        t->a[0] = 0.08, t->a[1] = 1.0, t->a[2] = 3.0 / 4.0, t->a[3] = 4.0 / 3.0;
        if (nargs < 1 || nargs > 3 || !parse_int(args[0], &t->w, 1, 16384)) return 0;
        t->h = t->w;
        if (nargs >= 2) {
            if (!parse_range(args[1], &lo, &hi) || hi > 1) return 0;
            t->a[0] = lo, t->a[1] = hi;
        }
        if (nargs >= 3) {
            if (!parse_range(args[2], &lo, &hi)) return 0;
            t->a[2] = lo, t->a[3] = hi;
        }
        return 1;
    case T_RESIZE:
        return nargs == 1 && parse_int(args[0], &t->w, 1, 16384);
    case T_SIZE:
    case T_CENTER:
    case T_CROP:
        return nargs == 1 && parse_dims(args[0], &t->w, &t->h);
    case T_FLIP:
        if (nargs < 1 || nargs > 2) return 0;
        t->w = strchr(args[0], 'h') != NULL;
        t->h = strchr(args[0], 'v') != NULL;
        if (strspn(args[0], "hv") != strlen(args[0]) || !(t->w || t->h)) return 0;
        t->a[0] = 0.5;
        return nargs < 2 || (parse_num(args[1], &t->a[0]) && t->a[0] >= 0 && t->a[0] <= 1);
    case T_PADCROP:
    case T_CUTOUT:
        return nargs == 1 && parse_int(args[0], &t->w, 0, 16384);
    case T_ROTATE:
    case T_TRANSLATE:
        t->fill = FILL_REFLECT;
        if (nargs < 1 || nargs > 2 || !parse_num(args[0], &t->a[0]) || t->a[0] < 0 || t->a[0] > 1)
            return 0;
        return nargs < 2 || parse_fill(args[1], &t->fill);
    case T_JITTER:
        if (nargs < 1 || nargs > 3) return 0;
        for (int i = 0; i < 3; i++) {
            if (!parse_num(args[i < nargs ? i : 0], &t->a[i]) || t->a[i] < 0 || t->a[i] > 1)
                return 0;
        }
        return 1;
    case T_ERASE:
        return nargs == 1 && parse_num(args[0], &t->a[0]) && t->a[0] >= 0 && t->a[0] <= 1;
    }
    return 0;
}

kiln_status kiln_augment_parse(const char *spec, kiln_augment_t *out) {
    *out = NULL;
    kiln_augment_t a = calloc(1, sizeof(*a));
    char *copy = strdup(spec ? spec : "");
    if (!a || !copy) {
        free(a);
        free(copy);
        return kiln_error(KILN_OUT_OF_MEMORY, "augment spec");
    }
    kiln_status st = KILN_OK;
    int cap = 0, fixed = 0, seen_pixel = 0;
    double cw = 0, ch = 0;
    for (char *save = NULL, *item = strtok_r(copy, ",", &save); item;
         item = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*item)) item++;
        size_t il = strlen(item);
        while (il && isspace((unsigned char)item[il - 1])) item[--il] = 0;
        if (!*item) continue;
        char token[256];
        snprintf(token, sizeof(token), "%s", item);
        char *args[8];
        int nargs = 0;
        char *colon = strchr(item, ':');
        if (colon) *colon = 0;
        for (char *p = colon ? colon + 1 : NULL; p && nargs < 8;) {
            args[nargs++] = p;
            char *c = strchr(p, ':');
            if (c) *c = 0;
            p = c ? c + 1 : NULL;
        }
        int found = -1;
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            if (!strcmp(item, names[i].name)) found = (int)i;
        if (found < 0) {
            st = kiln_error(KILN_INVALID_ARGUMENT,
                            "augment spec: unknown token '%s' (known: rrc, resize, size, center, "
                            "crop, flip, padcrop, rotate, translate, jitter, erase, cutout)",
                            token);
            break;
        }
        if (a->n == cap) {
            cap = cap ? cap * 2 : 8;
            tok *t = realloc(a->t, (size_t)cap * sizeof(*t));
            if (!t) {
                st = kiln_error(KILN_OUT_OF_MEMORY, "augment spec");
                break;
            }
            a->t = t;
        }
        tok *t = &a->t[a->n];
        memset(t, 0, sizeof(*t));
        t->k = names[found].k;
        if (!parse_tok(t, args, nargs)) {
            st = kiln_error(KILN_INVALID_ARGUMENT, "augment spec: bad arguments in '%s'", token);
            break;
        }
        if (names[found].geometry && seen_pixel) {
            st = kiln_error(KILN_INVALID_ARGUMENT,
                            "augment spec: geometry token '%s' after a pixel token (geometry "
                            "comes first)",
                            token);
            break;
        }
        if (t->k == T_RRC && a->n > 0) {
            st = kiln_error(KILN_INVALID_ARGUMENT, "augment spec: '%s' must be the first token",
                            token);
            break;
        }
        seen_pixel |= !names[found].geometry;
        /* Track whether the output size is known without the image. */
        switch (t->k) {
        case T_RRC:
        case T_SIZE:
        case T_CENTER:
        case T_CROP:
            fixed = 1, cw = t->w, ch = t->h;
            break;
        case T_RESIZE:
            if (fixed) {
                double s = t->w / (cw < ch ? cw : ch);
                double nw = cw <= ch ? t->w : floor(cw * s), nh = cw <= ch ? floor(ch * s) : t->w;
                cw = nw, ch = nh;
            }
            break;
        default:
            break;
        }
        a->n++;
    }
    free(copy);
    if (st != KILN_OK) {
        kiln_augment_free(a);
        return st;
    }
    a->out_w = fixed ? (int)cw : 0;
    a->out_h = fixed ? (int)ch : 0;
    *out = a;
    return KILN_OK;
}

void kiln_augment_free(kiln_augment_t a) {
    if (!a) return;
    free(a->t);
    free(a);
}

void kiln_augment_output_size(kiln_augment_t a, int *width, int *height) {
    *width = a->out_w;
    *height = a->out_h;
}

/* ---- geometry ---- */

static void rrc_pick(const tok *t, double W, double H, kiln_rng *r, double *x, double *y, double *w,
                     double *h) {
    double area = W * H;
    double lr0 = log(t->a[2]), lr1 = log(t->a[3]);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * kiln_rng_range(r, t->a[0], t->a[1]);
        double ar = exp(kiln_rng_range(r, lr0, lr1));
        double cw = round(sqrt(target * ar)), chh = round(sqrt(target / ar));
        if (cw > 0 && cw <= W && chh > 0 && chh <= H) {
            *y = (double)kiln_rng_below(r, (uint64_t)(H - chh) + 1);
            *x = (double)kiln_rng_below(r, (uint64_t)(W - cw) + 1);
            *w = cw, *h = chh;
            return;
        }
    }
    double in_ratio = W / H, cw = W, chh = H;
    if (in_ratio < t->a[2])
        cw = W, chh = round(W / t->a[2]);
    else if (in_ratio > t->a[3])
        chh = H, cw = round(H * t->a[3]);
    *w = cw, *h = chh;
    *x = round((W - cw) / 2), *y = round((H - chh) / 2);
}

void kiln_augment_geometry(kiln_augment_t a, int src_w, int src_h, kiln_rng *r, kiln_geometry *g) {
    double bx = 0, by = 0, bw = src_w, bh = src_h; /* box in source coordinates */
    double cw = src_w, ch = src_h;                 /* current output size */
    for (int i = 0; i < a->n; i++) {
        const tok *t = &a->t[i];
        double sx = 0, sy = 0, sw = cw, sh = ch, nw = cw, nh = ch; /* sub-box of current */
        switch (t->k) {
        case T_RRC:
            rrc_pick(t, cw, ch, r, &sx, &sy, &sw, &sh);
            nw = t->w, nh = t->h;
            break;
        case T_RESIZE:
            if (cw <= ch)
                nw = t->w, nh = floor(t->w * ch / cw);
            else
                nh = t->w, nw = floor(t->w * cw / ch);
            if (nw < 1) nw = 1;
            if (nh < 1) nh = 1;
            break;
        case T_SIZE:
            nw = t->w, nh = t->h;
            break;
        case T_CENTER:
            sw = nw = t->w, sh = nh = t->h;
            sx = round((cw - t->w) / 2), sy = round((ch - t->h) / 2);
            break;
        case T_CROP:
            sw = nw = t->w, sh = nh = t->h;
            sx = cw > t->w ? (double)kiln_rng_below(r, (uint64_t)(cw - t->w) + 1)
                           : round((cw - t->w) / 2);
            sy = ch > t->h ? (double)kiln_rng_below(r, (uint64_t)(ch - t->h) + 1)
                           : round((ch - t->h) / 2);
            break;
        default:
            continue;
        }
        double fx = bw / cw, fy = bh / ch;
        bx += sx * fx, by += sy * fy, bw = sw * fx, bh = sh * fy;
        cw = nw, ch = nh;
    }
    g->x = bx, g->y = by, g->w = bw, g->h = bh;
    g->out_w = (int)cw, g->out_h = (int)ch;
}

/* ---- pixel tokens ---- */

static void flip_h(uint8_t *img, int w, int h, int c) {
    for (int y = 0; y < h; y++) {
        uint8_t *l = img + (size_t)y * w * c, *r = l + (size_t)(w - 1) * c;
        for (; l < r; l += c, r -= c)
            if (c == 3) {
                uint8_t t0 = l[0], t1 = l[1], t2 = l[2];
                l[0] = r[0], l[1] = r[1], l[2] = r[2];
                r[0] = t0, r[1] = t1, r[2] = t2;
            } else {
                for (int k = 0; k < c; k++) {
                    uint8_t t = l[k];
                    l[k] = r[k];
                    r[k] = t;
                }
            }
    }
}

static void flip_v(uint8_t *img, int w, int h, int c, uint8_t *scratch) {
    size_t row = (size_t)w * c;
    for (int y = 0; y < h / 2; y++) {
        memcpy(scratch, img + y * row, row);
        memcpy(img + y * row, img + (size_t)(h - 1 - y) * row, row);
        memcpy(img + (size_t)(h - 1 - y) * row, scratch, row);
    }
}

/* Maps a coordinate outside [0, n) by the fill mode; -1 for constant fill. */
static int fill_index(int i, int n, fill_mode f) {
    if (i >= 0 && i < n) return i;
    switch (f) {
    case FILL_NEAREST:
        return i < 0 ? 0 : n - 1;
    case FILL_WRAP:
        return ((i % n) + n) % n;
    case FILL_REFLECT: { /* d c b a | a b c d | d c b a */
        int p = 2 * n;
        i = ((i % p) + p) % p;
        return i < n ? i : p - 1 - i;
    }
    default:
        return -1;
    }
}

/* Inverse affine warp: output (x, y) samples input at m * (x, y, 1), bilinear. */
static void warp(uint8_t *img, int w, int h, int c, const double m[6], fill_mode f,
                 uint8_t *scratch) {
    memcpy(scratch, img, (size_t)w * h * c);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double sx = m[0] * (x + 0.5) + m[1] * (y + 0.5) + m[2] - 0.5;
            double sy = m[3] * (x + 0.5) + m[4] * (y + 0.5) + m[5] - 0.5;
            int x0 = (int)floor(sx), y0 = (int)floor(sy);
            double fx = sx - x0, fy = sy - y0;
            int xs[2] = {fill_index(x0, w, f), fill_index(x0 + 1, w, f)};
            int ys[2] = {fill_index(y0, h, f), fill_index(y0 + 1, h, f)};
            for (int k = 0; k < c; k++) {
                double v = 0;
                for (int j = 0; j < 2; j++)
                    for (int i = 0; i < 2; i++) {
                        double wt = (j ? fy : 1 - fy) * (i ? fx : 1 - fx);
                        if (xs[i] >= 0 && ys[j] >= 0)
                            v += wt * scratch[((size_t)ys[j] * w + xs[i]) * c + k];
                    }
                img[((size_t)y * w + x) * c + k] = (uint8_t)(v + 0.5 > 255 ? 255 : v + 0.5);
            }
        }
}

static uint8_t sat8(double v) {
    return (uint8_t)(v <= 0 ? 0 : v >= 255 ? 255 : v + 0.5);
}

static void jitter(uint8_t *img, int w, int h, int c, const double f[3]) {
    size_t n = (size_t)w * h;
    for (size_t i = 0; i < n * c; i++) img[i] = sat8(img[i] * f[0]);
    double mean = 0;
    for (size_t i = 0; i < n; i++)
        mean +=
            c == 3 ? 0.299 * img[3 * i] + 0.587 * img[3 * i + 1] + 0.114 * img[3 * i + 2] : img[i];
    mean /= (double)n;
    for (size_t i = 0; i < n * c; i++) img[i] = sat8((img[i] - mean) * f[1] + mean);
    if (c == 3)
        for (size_t i = 0; i < n; i++) {
            double g = 0.299 * img[3 * i] + 0.587 * img[3 * i + 1] + 0.114 * img[3 * i + 2];
            for (int k = 0; k < 3; k++) img[3 * i + k] = sat8((img[3 * i + k] - g) * f[2] + g);
        }
}

static void fill_rect(uint8_t *img, int w, int c, int x0, int y0, int x1, int y1, kiln_rng *r) {
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++)
            for (int k = 0; k < c; k++)
                img[((size_t)y * w + x) * c + k] = r ? (uint8_t)kiln_rng_u64(r) : 0;
}

void kiln_augment_pixels(kiln_augment_t a, uint8_t *img, int w, int h, int c, kiln_rng *r,
                         uint8_t *scratch) {
    for (int i = 0; i < a->n; i++) {
        const tok *t = &a->t[i];
        switch (t->k) {
        case T_FLIP: {
            int fh = t->w && kiln_rng_uniform(r) < t->a[0];
            int fv = t->h && kiln_rng_uniform(r) < t->a[0];
            if (fh) flip_h(img, w, h, c);
            if (fv) flip_v(img, w, h, c, scratch);
            break;
        }
        case T_PADCROP: {
            double dx = (double)kiln_rng_below(r, 2 * (uint64_t)t->w + 1) - t->w;
            double dy = (double)kiln_rng_below(r, 2 * (uint64_t)t->w + 1) - t->w;
            double m[6] = {1, 0, dx, 0, 1, dy};
            warp(img, w, h, c, m, FILL_CONSTANT, scratch);
            break;
        }
        case T_ROTATE: {
            double ang = kiln_rng_range(r, -t->a[0], t->a[0]) * 2 * M_PI;
            double cs = cos(ang), sn = sin(ang), cx = w / 2.0, cy = h / 2.0;
            double m[6] = {cs, -sn, cx - cs * cx + sn * cy, sn, cs, cy - sn * cx - cs * cy};
            warp(img, w, h, c, m, t->fill, scratch);
            break;
        }
        case T_TRANSLATE: {
            double dx = kiln_rng_range(r, -t->a[0], t->a[0]) * w;
            double dy = kiln_rng_range(r, -t->a[0], t->a[0]) * h;
            double m[6] = {1, 0, -dx, 0, 1, -dy};
            warp(img, w, h, c, m, t->fill, scratch);
            break;
        }
        case T_JITTER: {
            double f[3];
            for (int k = 0; k < 3; k++) f[k] = kiln_rng_range(r, 1 - t->a[k], 1 + t->a[k]);
            jitter(img, w, h, c, f);
            break;
        }
        case T_ERASE: {
            if (kiln_rng_uniform(r) >= t->a[0]) break;
            for (int attempt = 0; attempt < 10; attempt++) {
                double area = w * h * kiln_rng_range(r, 0.02, 0.33);
                double ar = exp(kiln_rng_range(r, log(0.3), log(3.3)));
                int ew = (int)round(sqrt(area * ar)), eh = (int)round(sqrt(area / ar));
                if (ew < 1 || eh < 1 || ew > w || eh > h) continue;
                int x0 = (int)kiln_rng_below(r, (uint64_t)(w - ew) + 1);
                int y0 = (int)kiln_rng_below(r, (uint64_t)(h - eh) + 1);
                fill_rect(img, w, c, x0, y0, x0 + ew, y0 + eh, r);
                break;
            }
            break;
        }
        case T_CUTOUT: {
            int cx = (int)kiln_rng_below(r, (uint64_t)w), cy = (int)kiln_rng_below(r, (uint64_t)h);
            int x0 = cx - t->w / 2, y0 = cy - t->w / 2, x1 = x0 + t->w, y1 = y0 + t->w;
            fill_rect(img, w, c, x0 < 0 ? 0 : x0, y0 < 0 ? 0 : y0, x1 > w ? w : x1, y1 > h ? h : y1,
                      NULL);
            break;
        }
        default:
            break;
        }
    }
}

kiln_status kiln_augment_apply(kiln_augment_t a, const uint8_t *src, int w, int h, int channels,
                               uint64_t seed, uint64_t epoch, uint64_t index, uint8_t *out,
                               int out_w, int out_h) {
    kiln_rng r = kiln_rng_make(seed, epoch, index);
    kiln_geometry g;
    kiln_augment_geometry(a, w, h, &r, &g);
    if (g.out_w != out_w || g.out_h != out_h)
        return kiln_error(KILN_SHAPE, "augment: output %dx%d, expected %dx%d", g.out_w, g.out_h,
                          out_w, out_h);
    kiln_scratch s = {NULL, 0};
    kiln_status st = kiln_resample(src, w, h, channels, g.x, g.y, g.w, g.h, out, out_w, out_h, &s);
    if (st == KILN_OK) st = kiln_scratch_grow(&s, (size_t)out_w * out_h * channels);
    if (st == KILN_OK) kiln_augment_pixels(a, out, out_w, out_h, channels, &r, s.p);
    free(s.p);
    return st;
}
