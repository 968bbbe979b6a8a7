/* `kiln summary`: a model's nodes, output shapes, parameters and inputs (Keras-like), and the
   totals: parameters, forward FLOPs per image, activation memory per batch. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kiln/kiln.h"
#include "kiln/model.h"
#include "kiln/summary.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: kiln summary --model NAME|FILE [--input HxWxC] [--classes N] [--batch N]\n"
            "\n"
            "Prints the model's nodes (name, op, output shape, parameters, inputs) and the\n"
            "totals: parameters, forward FLOPs per image and activation memory per batch.\n"
            "\n"
            "  --model NAME|FILE  a zoo model or a model file (format: frontend/MODEL-FORMAT.md)\n"
            "                     or a Keras model.keras / the .json of model.to_json()\n"
            "  --input HxWxC      input size, e.g. 28x28x1 (default: the model's var lines)\n"
            "  --classes N        number of classes (default: the model's var line)\n"
            "  --batch N          batch size for the activation memory (default 32)\n"
            "\n"
            "zoo:");
    for (int i = 0; kiln_model_zoo_name(i); i++) fprintf(f, " %s", kiln_model_zoo_name(i));
    fprintf(f, "\n");
}

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "kiln summary: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n\n");
    usage(stderr);
    return 2;
}

static int parse_pos(const char *s, int *out) {
    char *e;
    errno = 0;
    long v = strtol(s, &e, 10);
    if (e == s || *e || errno || v <= 0 || v > (1 << 24)) return -1;
    *out = (int)v;
    return 0;
}

static int parse_input(const char *s, int *h, int *w, int *c) {
    char buf[64], *save = NULL;
    int v[3], n = 0;
    snprintf(buf, sizeof buf, "%s", s);
    for (char *t = strtok_r(buf, "x", &save); t; t = strtok_r(NULL, "x", &save)) {
        if (n == 3 || parse_pos(t, &v[n]) || v[n] > 65536) return -1;
        n++;
    }
    if (n < 2 || strlen(s) >= sizeof buf) return -1;
    *h = v[0];
    *w = v[1];
    *c = n == 3 ? v[2] : 0;
    return 0;
}

/* When a size error says the input is too small, find the smallest square input that works. */
static void hint_min_input(kiln_model_t m, const kiln_model_config *cfg) {
    kiln_model_config c = *cfg;
    for (int s = 1; s <= 2048; s++) {
        c.input_h = c.input_w = s;
        if (kiln_model_finalize(m, &c) == KILN_OK) {
            fprintf(stderr, "hint: the smallest square input this model accepts is %dx%d\n", s, s);
            return;
        }
    }
}

/* The shared table (kiln/summary.h) in fixed-width columns. */
static int print_summary(kiln_model_t m) {
    kiln_summary s;
    if (kiln_summary_build(m, &s)) return -1;
    const char *rule = "--------------------------------------------------------------------------"
                       "----------------";
    const char *const *h = s.header;
    printf("%-18s %-18s %-22s %14s  %s\n", h[0], h[1], h[2], h[3], h[4]);
    printf("%s\n", rule);
    for (int i = 0; i < s.nrows; i++) {
        const kiln_summary_row *r = &s.rows[i];
        printf("%-18s %-18s %-22s %14s  %s%s%s\n", r->cell[0], r->cell[1], r->cell[2], r->cell[3],
               r->cell[4], *r->note ? "  " : "", r->note);
    }
    printf("%s\n", rule);
    for (int i = 0; i < KILN_SUMMARY_TOTALS; i++) {
        char label[64];
        snprintf(label, sizeof label, "%s:", s.total_label[i]);
        printf("%-24s %s\n", label, s.total_value[i]);
    }
    kiln_summary_free(&s);
    return 0;
}

int kiln_cmd_summary(int argc, char **argv) {
    const char *model = NULL;
    kiln_model_config cfg = {0};
    cfg.batch = 32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        int is_opt = !strcmp(a, "--model") || !strcmp(a, "--input") || !strcmp(a, "--classes") ||
                     !strcmp(a, "--batch");
        if (!is_opt) return usage_error("unknown argument '%s'", a);
        if (i + 1 >= argc) return usage_error("%s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--model")) {
            model = v;
        } else if (!strcmp(a, "--input")) {
            if (parse_input(v, &cfg.input_h, &cfg.input_w, &cfg.input_c))
                return usage_error("bad --input '%s' (expected HxWxC or HxW, e.g. 28x28x1)", v);
        } else if (!strcmp(a, "--classes")) {
            if (parse_pos(v, &cfg.classes))
                return usage_error("bad --classes '%s' (a positive integer)", v);
        } else if (parse_pos(v, &cfg.batch)) {
            return usage_error("bad --batch '%s' (a positive integer)", v);
        }
    }
    if (!model) return usage_error("%s", "--model is required");
    kiln_model_t m;
    if (kiln_model_load(model, &m)) {
        fprintf(stderr, "kiln summary: %s\n", kiln_last_error());
        return 1;
    }
    kiln_status st = kiln_model_finalize(m, &cfg);
    if (st) {
        fprintf(stderr, "kiln summary: %s\n", kiln_last_error());
        for (int i = 0; i < kiln_model_warning_count(m); i++)
            fprintf(stderr, "warning: %s\n", kiln_model_warning(m, i));
        if (st == KILN_SHAPE && strstr(kiln_last_error(), "too small")) hint_min_input(m, &cfg);
        kiln_model_free(m);
        return 1;
    }
    kiln_model_totals t;
    kiln_model_get_totals(m, &t);
    printf("Model: %s (%s), input %dx%dx%d, %d classes\n\n", model, kiln_model_file(m), t.input_h,
           t.input_w, t.input_c, t.classes);
    if (print_summary(m)) {
        fprintf(stderr, "kiln summary: %s\n", kiln_last_error());
        kiln_model_free(m);
        return 1;
    }
    for (int i = 0; i < kiln_model_warning_count(m); i++)
        fprintf(stderr, "warning: %s\n", kiln_model_warning(m, i));
    kiln_model_free(m);
    return 0;
}
