/* `kiln summary`: a model's nodes, output shapes, parameters and inputs (Keras-like), and the
   totals: parameters, forward FLOPs per image, activation memory per batch. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kiln/kiln.h"
#include "kiln/model.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: kiln summary --model NAME|FILE [--input HxWxC] [--classes N] [--batch N]\n"
            "\n"
            "Prints the model's nodes (name, op, output shape, parameters, inputs) and the\n"
            "totals: parameters, forward FLOPs per image and activation memory per batch.\n"
            "\n"
            "  --model NAME|FILE  a zoo model or a model file (format: frontend/MODEL-FORMAT.md)\n"
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

/* 12,345,678 */
static void commas(int64_t v, char *out, size_t n) {
    char digits[32];
    snprintf(digits, sizeof digits, "%lld", (long long)v);
    size_t len = strlen(digits), o = 0;
    for (size_t i = 0; i < len && o + 2 < n; i++) {
        if (i && (len - i) % 3 == 0) out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = '\0';
}

static void si(double v, const char *unit, char *out, size_t n) {
    const char *p[] = {"", "K", "M", "G", "T", "P"};
    int i = 0;
    while (v >= 1000 && i < 5) v /= 1000, i++;
    snprintf(out, n, i ? "%.2f %s%s" : "%.0f %s%s", v, p[i], unit);
}

static void bytes(double v, char *out, size_t n) {
    const char *p[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int i = 0;
    while (v >= 1024 && i < 5) v /= 1024, i++;
    snprintf(out, n, i ? "%.1f %s" : "%.0f %s", v, p[i]);
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

static void print_table(kiln_model_t m) {
    const char *rule = "--------------------------------------------------------------------------"
                       "----------------";
    printf("%-18s %-18s %-22s %14s  %s\n", "node", "op", "output shape", "params", "inputs");
    printf("%s\n", rule);
    int n = kiln_model_node_count(m);
    for (int i = 0; i < n; i++) {
        kiln_model_node_info d;
        if (kiln_model_node(m, i, &d)) continue;
        char shape[64], p[32], ins[256] = "";
        if (d.ndim == 4)
            snprintf(shape, sizeof shape, "(N, %lld, %lld, %lld)", (long long)d.shape[1],
                     (long long)d.shape[2], (long long)d.shape[3]);
        else
            snprintf(shape, sizeof shape, "(N, %lld)", (long long)d.shape[1]);
        if (d.dtype == KILN_U8) strncat(shape, " u8", sizeof shape - strlen(shape) - 1);
        commas(d.params, p, sizeof p);
        size_t l = 0;
        for (int k = 0; k < d.n_inputs && l < sizeof ins; k++)
            l += (size_t)snprintf(ins + l, sizeof ins - l, "%s%s", k ? ", " : "", d.inputs[k]);
        const char *note = d.host_only       ? (d.training_only ? "  [data pipeline, training only]"
                                                                : "  [data pipeline]")
                           : d.training_only ? "  [training only]"
                           : d.is_output     ? "  [output]"
                                             : "";
        printf("%-18s %-18s %-22s %14s  %s%s\n", d.name, d.type, shape, p, ins, note);
    }
    printf("%s\n", rule);
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
    print_table(m);
    char p[32], f[32], a[32], pb[32];
    commas(t.params, p, sizeof p);
    bytes((double)t.params * 4, pb, sizeof pb);
    si((double)t.flops, "FLOP", f, sizeof f);
    bytes((double)t.act_bytes, a, sizeof a);
    printf("Total parameters:        %s (%s as f32)\n", p, pb);
    printf("Forward FLOPs per image: %s (a multiply-add counts 2)\n", f);
    printf("Activation memory:       %s for a batch of %d (every node's output kept for "
           "backward, before buffer reuse)\n",
           a, t.batch);
    for (int i = 0; i < kiln_model_warning_count(m); i++)
        fprintf(stderr, "warning: %s\n", kiln_model_warning(m, i));
    kiln_model_free(m);
    return 0;
}
