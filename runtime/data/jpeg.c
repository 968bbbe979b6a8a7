/* JPEG decoding with libjpeg-turbo's libjpeg API: header and limits, EXIF orientation,
   DCT-domain scaling and region decoding (horizontal crop, skipped rows above, early stop below),
   CMYK/gray to RGB. TurboJPEG is used only to encode (tools and tests). */
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <turbojpeg.h>

#include "backend-impl.h"
#include "data/data-impl.h"

/* TurboJPEG's TJFLAG_LIMITSCANS value: hostile progressive files can hold thousands of tiny
   scans, each a pass over the whole coefficient buffer. */
#define KILN_MAX_SCANS 500

/* Region margin beyond the resampler's footprint, in decoded pixels: covers the chroma
   upsampler, which treats the edges of a horizontal crop as image edges. */
#define KILN_REGION_PAD 4

typedef struct kiln_jerr {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    int warnings_fatal, warned, is_warning;
    char msg[JMSG_LENGTH_MAX + 64];
} kiln_jerr;

struct kiln_decoder {
    struct jpeg_decompress_struct ci;
    struct jpeg_progress_mgr progress;
    kiln_jerr err;
    int created, full;
    /* The file whose header ci holds (kiln_jpeg_header then kiln_jpeg_decode_box reuse it). */
    const uint8_t *hdr_jpg;
    size_t hdr_n, data_at; /* data_at: where the first scan's entropy data starts */
    uint8_t *buf, *obuf, *cbuf, *row, *rows;
    size_t buf_cap, obuf_cap, cbuf_cap, row_cap, rows_cap;
};

static void on_error(j_common_ptr c) {
    kiln_jerr *e = (kiln_jerr *)(void *)c->err;
    (*c->err->format_message)(c, e->msg);
    e->is_warning = 0;
    longjmp(e->jb, 1);
}

/* Warnings are recoverable corruption (premature end of data, bad Huffman code...): counted,
   and fatal unless the caller accepts them. Trace messages (level >= 0) are dropped. */
static void on_message(j_common_ptr c, int level) {
    if (level >= 0) return;
    kiln_jerr *e = (kiln_jerr *)(void *)c->err;
    c->err->num_warnings++;
    if (!e->warned++) (*c->err->format_message)(c, e->msg);
    if (e->warnings_fatal) {
        e->is_warning = 1;
        longjmp(e->jb, 1);
    }
}

static void on_output(j_common_ptr c) {
    (void)c;
}

static void on_progress(j_common_ptr c) {
    j_decompress_ptr ci = (j_decompress_ptr)c;
    if (ci->progressive_mode && ci->input_scan_number > KILN_MAX_SCANS) {
        kiln_jerr *e = (kiln_jerr *)(void *)c->err;
        snprintf(e->msg, sizeof(e->msg), "progressive JPEG with more than %d scans",
                 KILN_MAX_SCANS);
        e->is_warning = 0;
        longjmp(e->jb, 1);
    }
}

/* The error raised through longjmp, with ci back at its start state. */
static kiln_status jerr_status(kiln_decoder *d) {
    jpeg_abort_decompress(&d->ci);
    d->hdr_jpg = NULL;
    return kiln_error(KILN_CORRUPT, "%s: %s", d->err.is_warning ? "JPEG warning" : "JPEG error",
                      d->err.msg);
}

kiln_status kiln_decoder_create(kiln_decoder **out) {
    kiln_decoder *d = calloc(1, sizeof(*d));
    if (!d) return kiln_error(KILN_OUT_OF_MEMORY, "decoder");
    d->ci.err = jpeg_std_error(&d->err.pub);
    d->err.pub.error_exit = on_error;
    d->err.pub.emit_message = on_message;
    d->err.pub.output_message = on_output;
    if (setjmp(d->err.jb)) {
        kiln_status st = kiln_error(KILN_OUT_OF_MEMORY, "JPEG decoder: %s", d->err.msg);
        kiln_decoder_free(d);
        return st;
    }
    jpeg_create_decompress(&d->ci);
    d->created = 1;
    d->progress.progress_monitor = on_progress;
    d->ci.progress = &d->progress;
    *out = d;
    return KILN_OK;
}

void kiln_decoder_free(kiln_decoder *d) {
    if (!d) return;
    if (d->created) jpeg_destroy_decompress(&d->ci);
    free(d->buf);
    free(d->obuf);
    free(d->cbuf);
    free(d->row);
    free(d->rows);
    free(d);
}

void kiln_decoder_set_full(kiln_decoder *d, int full) {
    d->full = full;
}

static kiln_status grow(uint8_t **p, size_t *cap, size_t n) {
    if (n <= *cap) return KILN_OK;
    uint8_t *q = realloc(*p, n);
    if (!q) return kiln_error(KILN_OUT_OF_MEMORY, "decode buffer of %zu bytes", n);
    *p = q;
    *cap = n;
    return KILN_OK;
}

static unsigned rd16(const uint8_t *p, int le) {
    return le ? (unsigned)(p[0] | p[1] << 8) : (unsigned)(p[0] << 8 | p[1]);
}

static uint32_t rd32(const uint8_t *p, int le) {
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Orientation from a TIFF block (the APP1 payload after "Exif\0\0"). */
static int tiff_orientation(const uint8_t *t, size_t n) {
    if (n < 8) return 1;
    int le;
    if (t[0] == 'I' && t[1] == 'I')
        le = 1;
    else if (t[0] == 'M' && t[1] == 'M')
        le = 0;
    else
        return 1;
    if (rd16(t + 2, le) != 42) return 1;
    uint32_t ifd = rd32(t + 4, le);
    if (ifd > n - 2) return 1;
    unsigned count = rd16(t + ifd, le);
    for (unsigned i = 0; i < count && i < 512; i++) {
        size_t e = (size_t)ifd + 2 + (size_t)i * 12;
        if (e + 12 > n) return 1;
        if (rd16(t + e, le) == 0x0112 && rd16(t + e + 2, le) == 3) {
            unsigned v = rd16(t + e + 8, le);
            return v >= 1 && v <= 8 ? (int)v : 1;
        }
    }
    return 1;
}

int kiln_exif_orientation(const uint8_t *jpg, size_t n) {
    if (n < 4 || jpg[0] != 0xFF || jpg[1] != 0xD8) return 1;
    size_t p = 2;
    for (int seg = 0; seg < 64 && p + 4 <= n; seg++) {
        if (jpg[p] != 0xFF) return 1;
        uint8_t m = jpg[p + 1];
        if (m == 0xFF) { /* fill byte */
            p++;
            continue;
        }
        if (m == 0xDA || m == 0xD9) return 1; /* SOS / EOI: no metadata after */
        size_t len = rd16(jpg + p + 2, 0);
        if (len < 2 || p + 2 + len > n) return 1;
        if (m == 0xE1 && len >= 16 && !memcmp(jpg + p + 4, "Exif\0\0", 6))
            return tiff_orientation(jpg + p + 10, len - 8);
        p += 2 + len;
    }
    return 1;
}

static int tj_colorspace(J_COLOR_SPACE cs) {
    switch (cs) {
    case JCS_GRAYSCALE:
        return TJCS_GRAY;
    case JCS_RGB:
        return TJCS_RGB;
    case JCS_CMYK:
        return TJCS_CMYK;
    case JCS_YCCK:
        return TJCS_YCCK;
    default:
        return TJCS_YCbCr;
    }
}

/* TurboJPEG's subsampling classification of the header just read; -1 when unusual. */
static int tj_subsamp(const struct jpeg_decompress_struct *ci) {
    if (ci->num_components == 1 && ci->jpeg_color_space == JCS_GRAYSCALE) return TJSAMP_GRAY;
    if (ci->num_components < 3) return -1;
    for (int i = 1; i < ci->num_components; i++)
        if (ci->comp_info[i].h_samp_factor != 1 || ci->comp_info[i].v_samp_factor != 1) return -1;
    int h = ci->comp_info[0].h_samp_factor, v = ci->comp_info[0].v_samp_factor;
    if (h == 1 && v == 1) return TJSAMP_444;
    if (h == 2 && v == 1) return TJSAMP_422;
    if (h == 2 && v == 2) return TJSAMP_420;
    if (h == 1 && v == 2) return TJSAMP_440;
    if (h == 4 && v == 1) return TJSAMP_411;
    return -1;
}

/* Reads the header of jpg into d->ci (left in the header-read state). */
static kiln_status read_header(kiln_decoder *d, const uint8_t *jpg, size_t n,
                               const kiln_decode_limits *lim) {
    if (n == 0) return kiln_error(KILN_CORRUPT, "empty file");
    if (n < 4 || jpg[0] != 0xFF || jpg[1] != 0xD8)
        return kiln_error(KILN_CORRUPT, "not a JPEG (starts with %02x %02x)", jpg[0],
                          n > 1 ? jpg[1] : 0);
    d->hdr_jpg = NULL;
    d->err.warned = 0;
    d->err.warnings_fatal = !lim->accept_warnings;
    if (setjmp(d->err.jb)) return jerr_status(d);
    /* A fresh object per file: libjpeg-turbo 2.1's jpeg_skip_scanlines otherwise follows
       pointers into the previous file's freed buffers (found by valgrind on tests/test-data). */
    jpeg_destroy_decompress(&d->ci);
    d->created = 0;
    jpeg_create_decompress(&d->ci);
    d->created = 1;
    d->ci.progress = &d->progress;
    jpeg_mem_src(&d->ci, jpg, (unsigned long)n);
    jpeg_read_header(&d->ci, TRUE);
    int w = (int)d->ci.image_width, h = (int)d->ci.image_height;
    if (w <= 0 || h <= 0 || w > lim->max_side || h > lim->max_side ||
        (uint64_t)w * (uint64_t)h > lim->max_pixels) {
        jpeg_abort_decompress(&d->ci);
        return kiln_error(KILN_CORRUPT,
                          "JPEG claims %dx%d pixels (limits: %d per side, %llu total)", w, h,
                          lim->max_side, (unsigned long long)lim->max_pixels);
    }
    d->hdr_jpg = jpg;
    d->hdr_n = n;
    d->data_at = n - d->ci.src->bytes_in_buffer;
    return KILN_OK;
}

kiln_status kiln_jpeg_header(kiln_decoder *d, const uint8_t *jpg, size_t n,
                             const kiln_decode_limits *lim, kiln_jpeg_info *info) {
    kiln_status st = read_header(d, jpg, n, lim);
    if (st != KILN_OK) return st;
    info->width = (int)d->ci.image_width;
    info->height = (int)d->ci.image_height;
    info->colorspace = tj_colorspace(d->ci.jpeg_color_space);
    info->subsamp = tj_subsamp(&d->ci);
    info->orientation = kiln_exif_orientation(jpg, n);
    int swap = info->orientation >= 5;
    info->owidth = swap ? info->height : info->width;
    info->oheight = swap ? info->width : info->height;
    return KILN_OK;
}

/* Oriented pixel (ox, oy) of a w x h stored image comes from stored pixel (*rx, *ry). */
static void orient_src(int o, int w, int h, int ox, int oy, int *rx, int *ry) {
    switch (o) {
    case 2:
        *rx = w - 1 - ox, *ry = oy;
        break;
    case 3:
        *rx = w - 1 - ox, *ry = h - 1 - oy;
        break;
    case 4:
        *rx = ox, *ry = h - 1 - oy;
        break;
    case 5:
        *rx = oy, *ry = ox;
        break;
    case 6:
        *rx = oy, *ry = h - 1 - ox;
        break;
    case 7:
        *rx = w - 1 - oy, *ry = h - 1 - ox;
        break;
    case 8:
        *rx = w - 1 - oy, *ry = ox;
        break;
    default:
        *rx = ox, *ry = oy;
        break;
    }
}

/* The continuous versions of orient_src on boxes: an oriented box [x0, x1) x [y0, y1) of an
   image stored as w x h maps to the stored box b (to_stored), and back (!to_stored). */
static void orient_box(int o, double w, double h, int to_stored, const double in[4], double b[4]) {
    double x0 = in[0], y0 = in[1], x1 = in[2], y1 = in[3], p[2][2];
    double cx[2] = {x0, x1}, cy[2] = {y0, y1};
    for (int k = 0; k < 2; k++) {
        double u = cx[k], v = cy[k], ox = u, oy = v;
        if (to_stored) {
            switch (o) {
            case 2:
                ox = w - u, oy = v;
                break;
            case 3:
                ox = w - u, oy = h - v;
                break;
            case 4:
                ox = u, oy = h - v;
                break;
            case 5:
                ox = v, oy = u;
                break;
            case 6:
                ox = v, oy = h - u;
                break;
            case 7:
                ox = w - v, oy = h - u;
                break;
            case 8:
                ox = w - v, oy = u;
                break;
            default:
                break;
            }
        } else {
            switch (o) {
            case 2:
                ox = w - u, oy = v;
                break;
            case 3:
                ox = w - u, oy = h - v;
                break;
            case 4:
                ox = u, oy = h - v;
                break;
            case 5:
                ox = v, oy = u;
                break;
            case 6:
                ox = h - v, oy = u;
                break;
            case 7:
                ox = h - v, oy = w - u;
                break;
            case 8:
                ox = v, oy = w - u;
                break;
            default:
                break;
            }
        }
        p[k][0] = ox, p[k][1] = oy;
    }
    b[0] = fmin(p[0][0], p[1][0]), b[2] = fmax(p[0][0], p[1][0]);
    b[1] = fmin(p[0][1], p[1][1]), b[3] = fmax(p[0][1], p[1][1]);
}

static void cmyk_to(const uint8_t *src, size_t npix, uint8_t *dst, int channels) {
    /* libjpeg returns Adobe-style inverted CMYK: channel = 255 - ink. */
    for (size_t i = 0; i < npix; i++) {
        const uint8_t *s = src + 4 * i;
        unsigned r = (s[0] * s[3] + 127) / 255, g = (s[1] * s[3] + 127) / 255,
                 b = (s[2] * s[3] + 127) / 255;
        if (channels == 3) {
            dst[3 * i] = (uint8_t)r;
            dst[3 * i + 1] = (uint8_t)g;
            dst[3 * i + 2] = (uint8_t)b;
        } else {
            dst[i] = (uint8_t)((77 * r + 150 * g + 29 * b + 128) >> 8);
        }
    }
}

void kiln_convert_channels(const uint8_t *src, int n, int sc, uint8_t *dst, int dc) {
    if (sc == dc) {
        memmove(dst, src, (size_t)n * (size_t)sc);
    } else if (sc == 1) {
        for (int i = n - 1; i >= 0; i--) dst[3 * i] = dst[3 * i + 1] = dst[3 * i + 2] = src[i];
    } else {
        for (int i = 0; i < n; i++)
            dst[i] =
                (uint8_t)((77 * src[3 * i] + 150 * src[3 * i + 1] + 29 * src[3 * i + 2] + 128) >>
                          8);
    }
}

/* Whether an EOI marker follows the entropy data that starts at `from`: then a truncated file
   cannot pass as whole when decoding stops early. Entropy data never holds FF D9 (FF is
   stuffed), so the last one after the first scan's start is the real EOI. */
static int has_eoi(const uint8_t *jpg, size_t n, size_t from) {
    size_t lo = n > 65536 && n - 65536 > from ? n - 65536 : from;
    for (size_t i = n; i >= lo + 2; i--)
        if (jpg[i - 2] == 0xFF && jpg[i - 1] == 0xD9) return 1;
    return 0;
}

/* The part of decode_box under setjmp: decodes rows [ry0, ry1) of stored columns [*rx0, rx1)
   at 1/denom scale into d->buf (rows of *rw pixels of dc bytes); *rx0 moves left to the
   iMCU boundary. */
static kiln_status decode_region(kiln_decoder *d, const uint8_t *jpg, size_t n,
                                 const kiln_decode_limits *lim, int dc, J_COLOR_SPACE cs, int denom,
                                 const double obox[4], double mx, double my, int orientation,
                                 kiln_decoded *out, int *rx0, int *ry0, int *rw, int *rh, int *dw,
                                 int *dh) {
    struct jpeg_decompress_struct *ci = &d->ci;
    d->err.warnings_fatal = !lim->accept_warnings;
    if (setjmp(d->err.jb)) return jerr_status(d);
    ci->scale_num = 1;
    ci->scale_denom = (unsigned)denom;
    ci->out_color_space = cs;
    ci->dct_method = lim->fast_decode ? JDCT_IFAST : JDCT_ISLOW;
    ci->do_fancy_upsampling = lim->fast_decode ? FALSE : TRUE;
    jpeg_start_decompress(ci);
    *dw = (int)ci->output_width;
    *dh = (int)ci->output_height;
    double scx = (double)*dw / ci->image_width, scy = (double)*dh / ci->image_height;
    int swap = orientation >= 5;
    double osx = swap ? scy : scx, osy = swap ? scx : scy;
    int ow = swap ? *dh : *dw, oh = swap ? *dw : *dh;
    /* The requested box at this scale, grown by the resampler's footprint and the pad. */
    double ob[4] = {obox[0] * osx, obox[1] * osy, obox[2] * osx, obox[3] * osy}, reg[4], sreg[4];
    out->bx = ob[0], out->by = ob[1], out->bw = ob[2] - ob[0], out->bh = ob[3] - ob[1];
    if (d->full || mx < 0) {
        reg[0] = 0, reg[1] = 0, reg[2] = ow, reg[3] = oh;
    } else {
        reg[0] = fmax(0, floor(ob[0] - mx * osx - KILN_REGION_PAD));
        reg[1] = fmax(0, floor(ob[1] - my * osy - KILN_REGION_PAD));
        reg[2] = fmin(ow, ceil(ob[2] + mx * osx + KILN_REGION_PAD));
        reg[3] = fmin(oh, ceil(ob[3] + my * osy + KILN_REGION_PAD));
    }
    for (int k = 0; k < 2; k++) /* a degenerate box still decodes one pixel */
        if (reg[k + 2] <= reg[k]) {
            reg[k] = fmin(reg[k], (k ? oh : ow) - 1);
            reg[k + 2] = reg[k] + 1;
        }
    orient_box(orientation, *dw, *dh, 1, reg, sreg);
    JDIMENSION xoff = (JDIMENSION)sreg[0], xw = (JDIMENSION)(sreg[2] - sreg[0]);
    int y0 = (int)sreg[1], y1 = (int)sreg[3];
    if (xoff > 0 || xw < ci->output_width) jpeg_crop_scanline(ci, &xoff, &xw);
    *rx0 = (int)xoff;
    *ry0 = y0;
    *rw = (int)xw;
    *rh = y1 - y0;
    size_t row = (size_t)xw * (size_t)dc;
    kiln_status st = grow(&d->buf, &d->buf_cap, row * (size_t)*rh);
    if (st == KILN_OK) st = grow(&d->rows, &d->rows_cap, (size_t)*rh * sizeof(JSAMPROW));
    if (st == KILN_OK) st = grow(&d->row, &d->row_cap, row);
    if (st != KILN_OK) {
        jpeg_abort_decompress(ci);
        d->hdr_jpg = NULL;
        return st;
    }
    if (y0 > 0 && jpeg_skip_scanlines(ci, (JDIMENSION)y0) != (JDIMENSION)y0) {
        snprintf(d->err.msg, sizeof(d->err.msg), "could not skip to row %d", y0);
        d->err.is_warning = 0;
        return jerr_status(d);
    }
    JSAMPROW *rows = (JSAMPROW *)(void *)d->rows;
    for (int y = 0; y < *rh; y++) rows[y] = d->buf + (size_t)y * row;
    while (ci->output_scanline < (JDIMENSION)y1) {
        JDIMENSION got = jpeg_read_scanlines(ci, rows + (ci->output_scanline - (JDIMENSION)y0),
                                             (JDIMENSION)y1 - ci->output_scanline);
        if (got == 0) { /* only a suspending source stops short; jpeg_mem_src never does */
            snprintf(d->err.msg, sizeof(d->err.msg), "decoder stopped at row %u",
                     ci->output_scanline);
            d->err.is_warning = 0;
            return jerr_status(d);
        }
    }
    /* Stopping before the last row leaves the entropy data below the region undecoded, so
       corruption there goes unseen. That is fine for truncation only when the file ends with its
       EOI, or when start_decompress already consumed the whole input (multiple scans), or when
       warnings are accepted anyway. Otherwise the rest is decoded (skipped rows are still
       entropy-decoded, and the last row is read) so that truncation warnings surface. */
    int stop = lim->accept_warnings || jpeg_input_complete(ci) || has_eoi(jpg, n, d->data_at);
    if (!stop && ci->output_scanline < ci->output_height) {
        JDIMENSION left = ci->output_height - ci->output_scanline;
        if (left > 1) jpeg_skip_scanlines(ci, left - 1);
        JSAMPROW r = d->row;
        while (ci->output_scanline < ci->output_height)
            if (jpeg_read_scanlines(ci, &r, 1) == 0) break;
    }
    if (ci->output_scanline == ci->output_height)
        jpeg_finish_decompress(ci);
    else
        jpeg_abort_decompress(ci);
    d->hdr_jpg = NULL;
    return KILN_OK;
}

kiln_status kiln_jpeg_decode_box(kiln_decoder *d, const uint8_t *jpg, size_t n,
                                 const kiln_jpeg_info *info, const kiln_decode_limits *lim,
                                 int channels, double x, double y, double w, double h, int min_w,
                                 int min_h, kiln_decoded *out) {
    kiln_status st = KILN_OK;
    if (d->hdr_jpg != jpg || d->hdr_n != n) st = read_header(d, jpg, n, lim);
    if (st != KILN_OK) return st;
    /* Smallest 1/N scale that keeps the box at least min_w x min_h. Only 1/N: libjpeg-turbo has
       SIMD for the 8x8, 4x4, 2x2 and 1x1 IDCTs, and the others (5/8, 3/4...) measured slower
       than decoding at the next 1/N size up. */
    int denom = 1;
    if (min_w > 0 && min_h > 0)
        while (denom < 8 && w / (2 * denom) >= min_w && h / (2 * denom) >= min_h) denom *= 2;
    int cmyk = info->colorspace == TJCS_CMYK || info->colorspace == TJCS_YCCK;
    int dc = cmyk ? 4 : channels;
    J_COLOR_SPACE cs = cmyk ? JCS_CMYK : channels == 1 ? JCS_GRAYSCALE : JCS_EXT_RGB;
    /* The resampler reads up to its support (the downscale factor, at least 1) plus one pixel
       beyond the box on each side; in full-scale source pixels. */
    double mx = -1, my = -1;
    if (min_w > 0 && min_h > 0) {
        mx = fmax((double)denom, w / min_w) + 2.0 * denom;
        my = fmax((double)denom, h / min_h) + 2.0 * denom;
    }
    double obox[4] = {x, y, x + w, y + h};
    int rx0, ry0, rw, rh, dw, dh;
    st = decode_region(d, jpg, n, lim, dc, cs, denom, obox, mx, my, info->orientation, out, &rx0,
                       &ry0, &rw, &rh, &dw, &dh);
    if (st != KILN_OK) return st;
    size_t npix = (size_t)rw * (size_t)rh;
    uint8_t *img = d->buf;
    if (cmyk) {
        st = grow(&d->cbuf, &d->cbuf_cap, npix * (size_t)channels);
        if (st != KILN_OK) return st;
        cmyk_to(d->buf, npix, d->cbuf, channels);
        img = d->cbuf;
    }
    /* The box relative to the region, then in the region's oriented coordinates. */
    int o = info->orientation;
    double ob[4] = {out->bx, out->by, out->bx + out->bw, out->by + out->bh}, sb[4], rb[4];
    orient_box(o, dw, dh, 1, ob, sb);
    sb[0] -= rx0, sb[2] -= rx0, sb[1] -= ry0, sb[3] -= ry0;
    orient_box(o, rw, rh, 0, sb, rb);
    int ow = rw, oh = rh;
    if (o != 1) {
        int swap = o >= 5;
        ow = swap ? rh : rw;
        oh = swap ? rw : rh;
        st = grow(&d->obuf, &d->obuf_cap, npix * (size_t)channels);
        if (st != KILN_OK) return st;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                int sx, sy;
                orient_src(o, rw, rh, ox, oy, &sx, &sy);
                memcpy(d->obuf + ((size_t)oy * ow + ox) * channels,
                       img + ((size_t)sy * rw + sx) * channels, (size_t)channels);
            }
        img = d->obuf;
    }
    out->pixels = img;
    out->w = ow;
    out->h = oh;
    out->channels = channels;
    out->bx = rb[0];
    out->by = rb[1];
    out->bw = rb[2] - rb[0];
    out->bh = rb[3] - rb[1];
    return KILN_OK;
}

kiln_status kiln_jpeg_encode(const uint8_t *pixels, int w, int h, int channels, int quality,
                             uint8_t **jpg, size_t *n) {
    tjhandle c = tjInitCompress();
    if (!c) return kiln_error(KILN_INTERNAL, "TurboJPEG: %s", tjGetErrorStr2(NULL));
    unsigned char *buf = NULL;
    unsigned long len = 0;
    int rc = tjCompress2(c, pixels, w, 0, h, channels == 1 ? TJPF_GRAY : TJPF_RGB, &buf, &len,
                         channels == 1 ? TJSAMP_GRAY : TJSAMP_420, quality, 0);
    kiln_status st = KILN_OK;
    if (rc != 0) {
        st = kiln_error(KILN_INTERNAL, "JPEG encode: %s", tjGetErrorStr2(c));
    } else {
        *jpg = malloc(len);
        if (!*jpg)
            st = kiln_error(KILN_OUT_OF_MEMORY, "JPEG encode");
        else
            memcpy(*jpg, buf, len), *n = len;
    }
    if (buf) tjFree(buf);
    tjDestroy(c);
    return st;
}
