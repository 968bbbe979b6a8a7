/* Model descriptions: every parser and graph error with its file:line, the story's broken model
   rejected with the message that explains it, the raw-integer-input and input-scale warnings,
   the C API, shape inference and counts, and the zoo against parameter counts computed from
   layer widths. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kiln/kiln.h"
#include "kiln/model.h"
#include "model-impl.h"
#include "train-impl.h"

static int has(const char *hay, const char *needle) {
    return hay && strstr(hay, needle) != NULL;
}

/* Parses and finalizes `text` as m.kiln; returns the first failing status (KILN_OK if both
   succeed). The model is kept in *out when asked for. */
static kiln_status load(const char *text, const kiln_model_config *cfg, kiln_model_t *out) {
    kiln_model_t m = NULL;
    kiln_status st = kiln_model_parse_string(text, "m.kiln", &m);
    if (!st) st = kiln_model_finalize(m, cfg);
    if (out)
        *out = m;
    else
        kiln_model_free(m);
    return st;
}

/* Expects failure with every needle in the message. */
static void expect_error(const char *what, const char *text, kiln_status want, const char *n1,
                         const char *n2, const char *n3) {
    kiln_status st = load(text, NULL, NULL);
    const char *e = kiln_last_error();
    int ok = st == want && has(e, n1) && (!n2 || has(e, n2)) && (!n3 || has(e, n3));
    CHECK(ok, "%s: status %s, want %s; message lacks '%s' / '%s' / '%s'", what,
          kiln_status_name(st), kiln_status_name(want), n1, n2 ? n2 : "", n3 ? n3 : "");
}

#define HEAD                                                                                       \
    "var input_h = 8\nvar input_w = 8\nvar input_c = 1\nvar classes = 3\n"                         \
    "image = input(shape={input_h}x{input_w}x{input_c})\n"                                         \
    "scaled = rescale(image, scale=1/255)\n"
/* HEAD takes lines 1-6; the first node line of a test is line 7. */

static void test_errors(void) {
    expect_error("unknown op", HEAD "c1 = conv3d(scaled, filters=4, kernel=3)\n",
                 KILN_INVALID_ARGUMENT, "m.kiln:7:", "unknown op 'conv3d'", "node 'c1'");
    expect_error("unknown attribute", HEAD "c1 = conv2d(scaled, filters=4, kernel=3, strides=2)\n",
                 KILN_INVALID_ARGUMENT, "m.kiln:7: node 'c1' (conv2d)",
                 "unknown attribute 'strides'", "stride");
    expect_error("bad attribute value", HEAD "\n\nc1 = conv2d(scaled, filters=four, kernel=3)\n",
                 KILN_INVALID_ARGUMENT, "m.kiln:9: node 'c1' (conv2d)",
                 "bad attribute filters=four", "integer");
    expect_error("attribute out of range", HEAD "d = dropout(scaled, rate=1.5)\n",
                 KILN_INVALID_ARGUMENT, "m.kiln:7: node 'd' (dropout)", "out of range", NULL);
    /* Found by fuzz/fuzz-model: a float beyond int64's range was converted before the range
       check (undefined behaviour). */
    expect_error("float beyond int64", HEAD "d = dropout(scaled, rate=1e300)\n",
                 KILN_INVALID_ARGUMENT, "m.kiln:7: node 'd' (dropout)", "1e+300 is out of range",
                 NULL);
    expect_error("bad enum", HEAD "c1 = conv2d(scaled, filters=4, kernel=3, padding=full)\n",
                 KILN_INVALID_ARGUMENT, "m.kiln:7:", "padding=full", "valid, same");
    expect_error("missing attribute", HEAD "c1 = conv2d(scaled, kernel=3)\n", KILN_INVALID_ARGUMENT,
                 "m.kiln:7: node 'c1' (conv2d)", "missing attribute 'filters'", NULL);
    expect_error("attribute without value", HEAD "c1 = conv2d(scaled, filters, kernel=3)\n",
                 KILN_INVALID_ARGUMENT, "m.kiln:7:", "attribute 'filters' without a value", NULL);
    expect_error("duplicate name",
                 HEAD "c1 = conv2d(scaled, filters=4, kernel=3)\nc1 = relu(c1)\noutput(c1)\n",
                 KILN_INVALID_ARGUMENT, "m.kiln:8: node 'c1' (relu): duplicate name",
                 "already defined at m.kiln:7", NULL);
    expect_error("unknown input name",
                 HEAD "c1 = conv2d(scaledd, filters=4, kernel=3)\nf = flatten(c1)\noutput(f)\n",
                 KILN_INVALID_ARGUMENT, "m.kiln:7: node 'c1' (conv2d): unknown input 'scaledd'",
                 "did you mean 'scaled'", NULL);
    expect_error("use before definition",
                 HEAD "r = relu(c1)\nc1 = conv2d(scaled, filters=4, kernel=3)\nf = flatten(r)\n"
                      "output(f)\n",
                 KILN_INVALID_ARGUMENT, "m.kiln:7: node 'r' (relu)",
                 "used before its definition 'c1' (conv2d, line 8)", "cycles");
    expect_error("cycle", HEAD "a = add(scaled, a)\noutput(a)\n", KILN_INVALID_ARGUMENT,
                 "m.kiln:7: node 'a' (add)", "cycle", NULL);
    expect_error("shape mismatch: dense on 4-D",
                 HEAD "c1 = conv2d(scaled, filters=4, kernel=3)\nd = dense(c1, units={classes})\n"
                      "output(d)\n",
                 KILN_SHAPE, "m.kiln:8: node 'd' (dense)", "(N, 4, 6, 6)", "insert flatten");
    expect_error("shape mismatch: add",
                 HEAD "c1 = conv2d(scaled, filters=4, kernel=3)\n"
                      "c2 = conv2d(scaled, filters=4, kernel=3, padding=same)\n"
                      "s = add(c1, c2)\nf = flatten(s)\noutput(f)\n",
                 KILN_SHAPE, "m.kiln:9: node 's' (add)", "(N, 4, 6, 6)", "(N, 4, 8, 8)");
    expect_error("input too small",
                 HEAD "c1 = conv2d(scaled, filters=4, kernel=11)\nf = flatten(c1)\noutput(f)\n",
                 KILN_SHAPE, "m.kiln:7: node 'c1' (conv2d)", "8x8", "too small");
    expect_error("pool too small in floor mode",
                 HEAD "p1 = maxpool(scaled, pool=3, stride=3)\np2 = maxpool(p1, pool=3, stride=3)\n"
                      "f = flatten(p2)\noutput(f)\n",
                 KILN_SHAPE, "m.kiln:8: node 'p2' (maxpool)", "2x2", "ceil=true");
    expect_error("absurd size",
                 "image = input(shape=65536x65536x4)\nscaled = rescale(image)\n"
                 "c = conv2d(scaled, filters=1048576, kernel=3, padding=same)\nf = flatten(c)\n"
                 "output(f)\n",
                 KILN_SHAPE, "m.kiln:3: node 'c' (conv2d)", "PiB", "refused");
    expect_error("absurd parameters",
                 HEAD "f = flatten(scaled)\nd1 = dense(f, units=1048576)\n"
                      "d2 = dense(d1, units=1048576)\noutput(d2)\n",
                 KILN_SHAPE, "m.kiln:9: node 'd2' (dense)", "parameters need", "TiB");
    expect_error("unknown variable", HEAD "c = conv2d(scaled, filters={width}, kernel=3)\n",
                 KILN_INVALID_ARGUMENT, "m.kiln:7: node 'c' (conv2d)", "{width}", "var NAME");
    expect_error("syntax", HEAD "c1 conv2d(scaled)\n", KILN_INVALID_ARGUMENT,
                 "m.kiln:7:", "expected", NULL);
    expect_error("unclosed paren", HEAD "c1 = conv2d(scaled, filters=4,\n kernel=3\n",
                 KILN_INVALID_ARGUMENT, "m.kiln:7:", "unclosed", NULL);
    expect_error("no output", HEAD "f = flatten(scaled)\n", KILN_INVALID_ARGUMENT, "no output",
                 NULL, NULL);
    expect_error("unknown output", HEAD "f = flatten(scaled)\noutput(ff)\n", KILN_INVALID_ARGUMENT,
                 "m.kiln:8: output 'ff' is not a node", "did you mean 'f'", NULL);
    expect_error("augmentation after the device part",
                 HEAD "c1 = conv2d(scaled, filters=4, kernel=3)\nfl = random_flip(c1)\n"
                      "f = flatten(fl)\noutput(f)\n",
                 KILN_INVALID_ARGUMENT, "m.kiln:8: node 'fl' (random_flip)", "data pipeline",
                 "'c1' (conv2d, line 7)");
    expect_error("augmentation after rescale",
                 HEAD "fl = random_flip(scaled)\nf = flatten(fl)\noutput(f)\n",
                 KILN_INVALID_ARGUMENT, "m.kiln:7: node 'fl' (random_flip)",
                 "move it before the rescale", NULL);
    expect_error("rescale inside the network",
                 HEAD "c1 = conv2d(scaled, filters=4, kernel=3)\ns2 = rescale(c1, scale=2)\n"
                      "f = flatten(s2)\noutput(f)\n",
                 KILN_INVALID_ARGUMENT, "m.kiln:8: node 's2' (rescale)", "uint8 conversion", NULL);
    expect_error("softmax in the middle",
                 HEAD "f = flatten(scaled)\ns = softmax(f)\nd = dense(s, units=3)\noutput(d)\n",
                 KILN_INVALID_ARGUMENT, "m.kiln:8: node 's' (softmax)", "fused into the loss",
                 NULL);
    expect_error("u8 input with 5 channels", "i = input(shape=8x8x5)\nf = flatten(i)\noutput(f)\n",
                 KILN_SHAPE, "m.kiln:1: node 'i' (input)", "1 to 4 channels", NULL);
    expect_error("two inputs to relu", HEAD "r = relu(image, scaled)\n", KILN_INVALID_ARGUMENT,
                 "m.kiln:7: node 'r' (relu)", "takes 1 input, got 2", NULL);
    expect_error("missing input size", "i = input()\nf = flatten(i)\noutput(f)\n",
                 KILN_INVALID_ARGUMENT, "m.kiln:1: node 'i' (input)", "{input_h} has no value",
                 "--input");

    /* Errors of the C API name the node too (file "<api>", no line). */
    kiln_model_t m;
    CHECK(kiln_model_init(&m, NULL) == KILN_OK, "init");
    CHECK(kiln_model_add(m, "x", "input", NULL, "shape=4x4x1, colour=red") ==
                  KILN_INVALID_ARGUMENT &&
              has(kiln_last_error(), "<api>: node 'x' (input): unknown attribute 'colour'"),
          "API unknown attribute");
    CHECK(kiln_model_add(m, "9x", "relu", "x", NULL) == KILN_INVALID_ARGUMENT &&
              has(kiln_last_error(), "bad node name '9x'"),
          "API bad name");
    CHECK(kiln_model_node_count(m) == 0, "failed adds add nothing");
    kiln_model_free(m);
}

/* The story: augmentation and rescale applied to the input, their outputs never used, the
   first convolution reading the raw input. */
static const char *story = "# the model that never left chance level\n"
                           "image  = input(shape=28x28x1, dtype=u8)\n"
                           "flip   = random_flip(image, mode=horizontal)\n"
                           "scaled = rescale(flip, scale=1/255)\n"
                           "c1     = conv2d(image, filters=32, kernel=3, padding=same)\n"
                           "r1     = relu(c1)\n"
                           "p1     = maxpool(r1, pool=2)\n"
                           "f      = flatten(p1)\n"
                           "logits = dense(f, units=10)\n"
                           "output(logits)\n";

static void test_story(void) {
    kiln_model_t m;
    kiln_status st = load(story, NULL, &m);
    const char *e = kiln_last_error();
    CHECK(st == KILN_INVALID_ARGUMENT, "the story's model is rejected");
    CHECK(has(e, "m.kiln:4: node 'scaled' (rescale) is never used"), "names the unused node");
    CHECK(has(e, "m.kiln:3: node 'flip' (random_flip) only feeds it"), "names the dead chain");
    CHECK(has(e, "'c1' (conv2d, line 5) most likely meant to read 'scaled' instead of 'image' "
                 "(input, line 2)"),
          "names the intended consumer");
    CHECK(has(e, "the augmentation 'flip' and the rescale 'scaled' are applied to the input "
                 "'image' but their output is never used: the first convolution 'c1' reads the "
                 "raw input 'image' directly"),
          "says exactly what went wrong");
    printf("story error:\n%s\n", e);
    /* The raw-input lint saw it too. */
    CHECK(kiln_model_warning_count(m) == 1 && has(kiln_model_warning(m, 0), "node 'c1' (conv2d)") &&
              has(kiln_model_warning(m, 0), "raw integer-range"),
          "the raw-input warning fires for the story");
    kiln_model_free(m);

    /* Fixed: the convolution reads 'scaled'. */
    char fixed[1024];
    const char *at = strstr(story, "conv2d(image");
    snprintf(fixed, sizeof fixed, "%.*sconv2d(scaled%s", (int)(at - story), story, at + 12);
    st = load(fixed, NULL, &m);
    CHECK(st == KILN_OK && kiln_model_warning_count(m) == 0, "the fixed story model is clean");
    int fi = kiln_model_find(m, "flip");
    kiln_model_node_info d;
    CHECK(fi == 1 && !kiln_model_node(m, fi, &d) && d.training_only && d.host_only &&
              d.dtype == KILN_U8,
          "augmentation is training-only and runs in the data pipeline");
    kiln_model_free(m);

    /* Two unused nodes on separate branches are both reported. */
    st = load("a = input(shape=4x4x1)\nb = rescale(a)\nc = relu(b)\nd = relu(b)\nf = flatten(c)\n"
              "output(f)\n",
              NULL, NULL);
    CHECK(st == KILN_INVALID_ARGUMENT &&
              has(kiln_last_error(), "m.kiln:4: node 'd' (relu) is never used"),
          "a dead branch is reported: %s", kiln_last_error());
}

static void test_raw_warning(void) {
    kiln_model_t m;
    const char *raw = "image = input(shape=16x16x3)\n"
                      "flip = random_flip(image)\n"
                      "c1 = conv2d(flip, filters=8, kernel=3)\n"
                      "c2 = conv2d(c1, filters=8, kernel=3)\n"
                      "f = flatten(c2)\nd = dense(f, units=2)\noutput(d)\n";
    CHECK(load(raw, NULL, &m) == KILN_OK, "a raw-input model still builds");
    CHECK(kiln_model_warning_count(m) == 1, "one warning per path, got %d",
          kiln_model_warning_count(m));
    const char *w = kiln_model_warning(m, 0);
    CHECK(has(w, "m.kiln:3: node 'c1' (conv2d): reads raw integer-range input") &&
              has(w, "image -> flip -> c1") && has(w, "rescale(image, scale=1/255)"),
          "the warning names the layer, the path and the fix: %s", w ? w : "(none)");
    kiln_model_free(m);

    CHECK(load("image = input(shape=16x16x3)\nf = flatten(image)\nd = dense(f, units=2)\n"
               "output(d)\n",
               NULL, &m) == KILN_OK &&
              kiln_model_warning_count(m) == 1 && has(kiln_model_warning(m, 0), "node 'd' (dense)"),
          "dense reading raw input warns too");
    kiln_model_free(m);
    CHECK(load("image = input(shape=16x16x3, dtype=f32)\nf = flatten(image)\n"
               "d = dense(f, units=2)\noutput(d)\n",
               NULL, &m) == KILN_OK &&
              kiln_model_warning_count(m) == 0,
          "f32 input does not warn");
    kiln_model_free(m);
    CHECK(load("image = input(shape=16x16x3)\nn = normalize(image, mean=[124, 116, 104], "
               "std=[58, 57, 57])\nf = flatten(n)\nd = dense(f, units=2)\noutput(d)\n",
               NULL, &m) == KILN_OK &&
              kiln_model_warning_count(m) == 0,
          "normalize counts as scaling");
    kiln_model_free(m);
    CHECK(load("image = input(shape=16x16x3)\nf = flatten(image)\nd = dense(f, units=2)\n"
               "output(d)\n",
               &(kiln_model_config){.classes = 5}, &m) == KILN_OK &&
              kiln_model_warning_count(m) == 2 &&
              has(kiln_model_warning(m, 0), "output 'd' has 2 features but classes=5"),
          "class count mismatch warns");
    kiln_model_free(m);
}

/* The scale lint: the interval propagated from the u8 input through the preprocessing must
   reach the first conv/dense near unit scale. */
static const char *TAIL = "c1 = conv2d(x, filters=4, kernel=3)\nf = flatten(c1)\n"
                          "d = dense(f, units=2)\noutput(d)\n";

/* Loads "image = input(shape=16x16x3)\n" + body + TAIL (the body ends in a node 'x'); returns
   the warning count, the first warning in *w (copied). */
static int scale_warnings(const char *body, char *w, size_t n) {
    char text[1024];
    snprintf(text, sizeof text, "image = input(shape=16x16x3)\n%s%s", body, TAIL);
    kiln_model_t m;
    kiln_status st = load(text, NULL, &m);
    int c = st ? -1 : kiln_model_warning_count(m);
    snprintf(w, n, "%s", c > 0 ? kiln_model_warning(m, 0) : st ? kiln_last_error() : "(none)");
    kiln_model_free(m);
    return c;
}

static void test_scale_warning(void) {
    char w[2048];
    /* A 1/255 rescale applied twice: [0, 1/255]. */
    int c = scale_warnings("s1 = rescale(image, scale=1/255)\nx = rescale(s1, scale=1/255)\n", w,
                           sizeof w);
    CHECK(c == 1 && has(w, "m.kiln:4: node 'c1' (conv2d): reads values in [0, 0.00392]") &&
              has(w, "far below unit scale (< 0.05)") && has(w, "image -> s1 -> x -> c1") &&
              has(w, "rescale 's1' (scale=1/255, line 2)") &&
              has(w, "rescale 'x' (scale=1/255, line 3)") && has(w, "rescaled 2 times") &&
              !has(w, "raw integer-range"),
          "a double rescale is warned, naming both rescale nodes: %s", w);
    printf("double rescale warning:\n%s\n", w);
    /* normalize with [0, 1] statistics on 0-255 input: [-2, 1018]. */
    c = scale_warnings("x = normalize(image, mean=0.5, std=0.25)\n", w, sizeof w);
    CHECK(c == 1 && has(w, "node 'c1' (conv2d): reads values in [-2, 1.02e+03]") &&
              has(w, "far above unit scale (> 20)") &&
              has(w, "normalize 'x' (mean=0.5, std=0.25") && has(w, "rescale(image, scale=1/255)"),
          "normalize(mean=0.5, std=0.25) on u8 input is warned: %s", w);
    /* Mean subtraction only, in 0-255 units: [-124, 151]. */
    c = scale_warnings("x = normalize(image, mean=[124, 116, 104], std=1)\n", w, sizeof w);
    CHECK(c == 1 && has(w, "reads values in [-124, 151]") && has(w, "std=1 leaves them"),
          "mean subtraction without a std is warned: %s", w);
    /* Per-channel lists: the union over the channels (the third one is off). */
    c = scale_warnings("x = normalize(image, mean=[124, 116, 104], std=[58, 57, 0.5])\n", w,
                       sizeof w);
    CHECK(c == 1 && has(w, "reads values in [-208, 302]"), "per-channel std: the union: %s", w);
    /* The offset is applied: [-30, -29]. */
    c = scale_warnings("x = rescale(image, scale=1/255, offset=-30)\n", w, sizeof w);
    CHECK(c == 1 && has(w, "reads values in [-30, -29]") && has(w, "offset=-30"),
          "rescale's offset is propagated: %s", w);
    /* Augmentation keeps the range (the u8 pipeline saturates jitter); views keep it to a
       dense layer; the path names every node. */
    char text[1024];
    snprintf(text, sizeof text, "%s",
             "image = input(shape=16x16x3)\ncrop = random_crop(image, padding=2)\n"
             "b = random_brightness(crop, delta=0.4)\nct = random_contrast(b, factor=0.4)\n"
             "s1 = rescale(ct)\ns2 = rescale(s1)\nf = flatten(s2)\nd = dense(f, units=2)\n"
             "output(d)\n");
    kiln_model_t m;
    CHECK(load(text, NULL, &m) == KILN_OK && kiln_model_warning_count(m) == 1 &&
              has(kiln_model_warning(m, 0), "node 'd' (dense): reads values in [0, 0.00392]") &&
              has(kiln_model_warning(m, 0), "image -> crop -> b -> ct -> s1 -> s2 -> f -> d"),
          "augmentation and views keep the range to a dense layer: %s",
          m && kiln_model_warning_count(m) ? kiln_model_warning(m, 0) : kiln_last_error());
    kiln_model_free(m);

    /* The usual preprocessing stays silent. */
    static const char *silent[] = {
        "x = rescale(image, scale=1/255)\n", "x = rescale(image)\n",
        "x = rescale(image, scale=1/127.5, offset=-1)\n",
        "s = rescale(image, scale=1/255)\n"
        "x = normalize(s, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])\n",
        "s = rescale(image, scale=1/255)\nx = normalize(s, mean=0.5, std=0.5)\n",
        "x = normalize(image, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])\n",
        "fl = random_flip(image)\nj = random_brightness(fl, delta=0.5)\n"
        "x = rescale(j, scale=1/255)\n",
        /* batchnorm rescales whatever it reads: the range is unknown after it */
        "s1 = rescale(image)\ns2 = rescale(s1)\nx = batchnorm(s2)\n", NULL};
    for (int k = 0; silent[k]; k++) {
        c = scale_warnings(silent[k], w, sizeof w);
        CHECK(c == 0, "silent: %sgot %d warnings: %s", silent[k], c, w);
    }
    /* An f32 input declares no range: nothing to propagate. */
    CHECK(load("image = input(shape=16x16x3, dtype=f32)\ns1 = rescale(image)\n"
               "x = rescale(s1)\nf = flatten(x)\nd = dense(f, units=2)\noutput(d)\n",
               NULL, &m) == KILN_OK &&
              kiln_model_warning_count(m) == 0,
          "f32 input: the range is unknown, no scale warning");
    kiln_model_free(m);
}

/* The rule the lint and the trainer's first-batch check share. */
static void test_scale_rule(void) {
    char why[128];
    static const double ok[][2] = {{0, 1},    {-1, 1},  {-2.12, 2.64}, {-0.42, 2.82}, {0, 20},
                                   {0, 0.05}, {-20, 0}, {0.5, 0.5},    {-2.14, -1.79}};
    for (size_t k = 0; k < sizeof ok / sizeof ok[0]; k++)
        CHECK(km_scale_check(ok[k][0], ok[k][1], why, sizeof why) == 0 && !why[0],
              "[%g, %g] is near unit scale", ok[k][0], ok[k][1]);
    CHECK(km_scale_check(0, 255, why, sizeof why) == 1 &&
              !strcmp(why, "max |x| = 255 is far above unit scale (> 20)"),
          "0-255 is far above: %s", why);
    CHECK(km_scale_check(-25, 1, why, sizeof why) == 1, "a large negative bound counts");
    CHECK(km_scale_check(0, 1 / 255.0, why, sizeof why) == -1 &&
              !strcmp(why, "max |x| = 0.00392 is far below unit scale (< 0.05)"),
          "[0, 1/255] is far below: %s", why);
    CHECK(km_scale_check(0, 0, why, sizeof why) == -1, "all zero is far below");
    CHECK(km_scale_check(0, 20.5, NULL, 0) == 1 && km_scale_check(-0.049, 0.049, NULL, 0) == -1,
          "just past the thresholds");
    CHECK(km_scale_check(0, INFINITY, why, sizeof why) == 1 && has(why, "not finite") &&
              km_scale_check(NAN, NAN, why, sizeof why) == 1,
          "non-finite values are flagged");
}

/* A small functional graph through the C API: shapes, params, FLOPs and memory by hand. */
static void test_api(void) {
    kiln_model_t m;
    CHECK(kiln_model_init(&m, "api-test") == KILN_OK, "init");
    kiln_status st = kiln_model_add_input(m, "x", 0, 0, 3, KILN_U8);
    st = st ? st : kiln_model_add(m, "s", "rescale", "x", "scale=1/255");
    st = st ? st : kiln_model_add_conv2d(m, "a", "s", 4, 3, 1, 1); /* (4,8,8) */
    st = st ? st : kiln_model_add_simple(m, "ra", "relu", "a");
    st = st ? st : kiln_model_add(m, "b", "conv2d", "s", "filters=4, kernel=1, init=glorot");
    st = st ? st : kiln_model_add(m, "sum", "add", "ra, b", NULL);    /* residual */
    st = st ? st : kiln_model_add(m, "cat", "concat", "sum,a", NULL); /* (8,8,8) */
    st = st ? st : kiln_model_add_maxpool(m, "p", "cat", 2, 2);       /* (8,4,4) */
    st = st ? st : kiln_model_add(m, "bn", "batchnorm", "p", NULL);
    st = st ? st : kiln_model_add_simple(m, "g", "global_avg_pool", "bn"); /* (8) */
    st = st ? st : kiln_model_add_dropout(m, "dr", "g", 0.25f);
    st = st ? st : kiln_model_add(m, "fc", "dense", "dr", "units={classes}, bias=false");
    st = st ? st : kiln_model_add_simple(m, "sm", "softmax", "fc");
    st = st ? st : kiln_model_output(m, "sm");
    CHECK(st == KILN_OK, "API build");
    kiln_model_config cfg = {.input_h = 8, .input_w = 8, .classes = 5, .batch = 2};
    CHECK(kiln_model_finalize(m, &cfg) == KILN_OK, "API finalize");
    kiln_model_node_info d;
    CHECK(!kiln_model_node(m, kiln_model_find(m, "cat"), &d) && d.ndim == 4 && d.shape[0] == 2 &&
              d.shape[1] == 8 && d.shape[2] == 8 && d.shape[3] == 8 && d.n_inputs == 2 &&
              !strcmp(d.inputs[1], "a") && d.input_index[1] == 2,
          "concat shape and inputs");
    CHECK(!kiln_model_node(m, kiln_model_find(m, "a"), &d) && !strcmp(d.init, "he") &&
              d.params == 4 * 3 * 3 * 3 + 4 && d.flops == 2 * 3 * 3 * 3 * 4 * 64 + 4 * 64,
          "conv params (4*3*3*3 + 4) and FLOPs (2*27 per output + bias)");
    CHECK(!kiln_model_node(m, kiln_model_find(m, "b"), &d) && !strcmp(d.init, "glorot") &&
              !strcmp(kiln_model_attr(m, kiln_model_find(m, "b"), "init"), "glorot"),
          "init attribute recorded");
    CHECK(!strcmp(kiln_model_attr(m, kiln_model_find(m, "a"), "padding"), "same") &&
              !strcmp(kiln_model_attr(m, kiln_model_find(m, "b"), "stride"), "1"),
          "attributes read back, defaults filled");
    CHECK(!kiln_model_node(m, kiln_model_find(m, "fc"), &d) && d.params == 8 * 5 && d.shape[1] == 5,
          "dense without bias, units from {classes}");
    CHECK(!kiln_model_node(m, kiln_model_find(m, "dr"), &d) && d.training_only && !d.host_only,
          "dropout is training-only");
    CHECK(!kiln_model_node(m, kiln_model_find(m, "sm"), &d) && d.is_output, "output flag");
    kiln_model_totals t;
    CHECK(kiln_model_get_totals(m, &t) == KILN_OK, "totals");
    /* a: 4*27+4 = 112; b: 4*3+4 = 16; bn: 2*8 = 16; fc: 40 */
    CHECK(t.params == 112 + 16 + 16 + 40, "total params %lld", (long long)t.params);
    /* Per image, f32 unless noted: x u8 192 B; s 192*4; a, ra, b, sum 256*4 each; cat 512*4;
       p, bn 128*4 each; g, dr 8*4 each; fc, sm 5*4 each. Batch 2. */
    int64_t per = 192 + 4 * (192 + 4 * 256 + 512 + 2 * 128 + 2 * 8 + 2 * 5);
    CHECK(t.act_bytes == 2 * per, "activation bytes %lld, want %lld", (long long)t.act_bytes,
          (long long)(2 * per));
    CHECK(t.input_h == 8 && t.input_c == 3 && t.classes == 5 && t.batch == 2, "totals config");
    CHECK(kiln_model_warning_count(m) == 0, "no warnings");

    /* Re-finalize for another input size. */
    cfg.input_h = cfg.input_w = 16;
    CHECK(kiln_model_finalize(m, &cfg) == KILN_OK &&
              !kiln_model_node(m, kiln_model_find(m, "cat"), &d) && d.shape[2] == 16 &&
              kiln_model_get_totals(m, &t) == KILN_OK && t.params == 112 + 16 + 16 + 40,
          "re-finalize for 16x16: shapes change, parameters do not");
    kiln_model_free(m);
    CHECK(load("i = input(shape=8x8x1)\nf = flatten(i)\noutput(f)\n",
               &(kiln_model_config){.input_h = 9}, NULL) == KILN_SHAPE &&
              has(kiln_last_error(), "fixes its input to shape=8x8x1, but 9x8x1 was asked for"),
          "a fixed input size that differs from the config is an error");

    /* Variables set through the API override `var` defaults of a file. */
    CHECK(kiln_model_parse_string("var w = 4\ni = input(shape=6x6x1)\ns = rescale(i)\n"
                                  "c = conv2d(s, filters={w}, kernel=3)\nf = flatten(c)\n"
                                  "output(f)\n",
                                  "v.kiln", &m) == KILN_OK,
          "parse with var");
    CHECK(kiln_model_finalize(m, NULL) == KILN_OK &&
              !kiln_model_node(m, kiln_model_find(m, "f"), &d) && d.shape[1] == 4 * 4 * 4,
          "var default used");
    CHECK(kiln_model_set_var(m, "w", "7") == KILN_OK && kiln_model_finalize(m, NULL) == KILN_OK &&
              !kiln_model_node(m, kiln_model_find(m, "f"), &d) && d.shape[1] == 7 * 4 * 4,
          "var overridden");
    kiln_model_free(m);

    /* 'same' with stride 2 follows TensorFlow: ceil(in / stride); ceil-mode pooling reaches 1x1. */
    CHECK(load("i = input(shape=7x5x1)\ns = rescale(i)\nc = conv2d(s, filters=1, kernel=3, "
               "stride=2, padding=same)\np = maxpool(c, pool=2, ceil=true)\n"
               "q = maxpool(p, pool=2, ceil=true)\nf = flatten(q)\noutput(f)\n",
               NULL, &m) == KILN_OK,
          "same/ceil model");
    CHECK(!kiln_model_node(m, 2, &d) && d.shape[2] == 4 && d.shape[3] == 3, "same stride 2");
    CHECK(!kiln_model_node(m, 3, &d) && d.shape[2] == 2 && d.shape[3] == 2, "ceil pool 4x3->2x2");
    CHECK(!kiln_model_node(m, 4, &d) && d.shape[2] == 1 && d.shape[3] == 1, "ceil pool 2x2->1x1");
    kiln_model_free(m);

    /* Line continuation inside parentheses and comments anywhere. */
    CHECK(load("i = input(shape=4x4x1) # the image\n"
               "s = rescale(i,\n    scale=1/255)   # continued\n"
               "n = normalize(s, mean=[0.5],\n  std=[0.25])\nf = flatten(n)\noutput(f)\n",
               NULL, NULL) == KILN_OK,
          "continuation lines and comments");
}

/* ---- the layer table: every layer has its entry in each concern's own table ---- */
static void test_layer_table(void) {
    int n = 0;
    for (const km_layer_spec *s = km_layers; s->type; s++, n++) {
        CHECK((int)s->id == n && km_find_layer(s->type) == s, "layer '%s': id %d at index %d",
              s->type, (int)s->id, n);
        CHECK(km_layer_infers(s->id), "layer '%s' has no shape inference (model-lint.c)", s->type);
        int folded = s->id == KM_L_INPUT || (s->flags & (KM_F_HOST | KM_F_PREPROC));
        CHECK(folded || kt_layer_lowers((int)s->id), "layer '%s' has no lowering (train-lower.c)",
              s->type);
        /* The export handles the input and the pipeline itself: an entry for them never runs. */
        int host = s->id == KM_L_INPUT || (s->flags & KM_F_HOST);
        CHECK(!(host && km_layer_exports(s->id)),
              "layer '%s' runs before the upload but has an ONNX export entry", s->type);
    }
    CHECK(n == KM_L_COUNT, "%d layer specs, %d ids", n, (int)KM_L_COUNT);
}

/* ---- the zoo against parameter counts computed from the layer widths ---- */
static int64_t conv3(int64_t cin, int64_t cout) {
    return cin * cout * 3 * 3 + cout; /* 3x3 kernel + bias */
}

static int64_t dense_p(int64_t in, int64_t out) {
    return in * out + out;
}

/* VGG: widths per block, 0 ends a block; classifier flatten(last * s * s) -> 4096 -> 4096 ->
   classes, where s = the input size after five ceil-mode 2x2/2 poolings. */
static int64_t vgg_params(const int *cfg, int cin, int size, int classes) {
    int64_t p = 0, c = cin;
    for (; *cfg >= 0; cfg++) {
        if (*cfg == 0) {
            size = (size + 1) / 2;
            continue;
        }
        p += conv3(c, *cfg);
        c = *cfg;
    }
    return p + dense_p(c * size * size, 4096) + dense_p(4096, 4096) + dense_p(4096, classes);
}

static void check_zoo(const char *name, int h, int c, int classes, int64_t want) {
    kiln_model_t m;
    kiln_model_config cfg = {.input_h = h, .input_w = h, .input_c = c, .classes = classes};
    kiln_status st = kiln_model_load(name, &m);
    if (!st) st = kiln_model_finalize(m, &cfg);
    kiln_model_totals t = {0};
    if (!st) kiln_model_get_totals(m, &t);
    CHECK(!st && t.params == want && kiln_model_warning_count(m) == 0,
          "%s %dx%dx%d/%d: %lld parameters, want %lld", name, h, h, c, classes, (long long)t.params,
          (long long)want);
    /* He initialisation recorded on every conv and dense. */
    int he = 1;
    for (int i = 0; m && i < kiln_model_node_count(m); i++) {
        kiln_model_node_info d;
        kiln_model_node(m, i, &d);
        if (d.init && strcmp(d.init, "he")) he = 0;
    }
    CHECK(he, "%s: init=he everywhere", name);
    kiln_model_free(m);
}

static void test_zoo(void) {
    int n = 0;
    for (int i = 0; kiln_model_zoo_name(i); i++) {
        char name[64];
        snprintf(name, sizeof name, "%s", kiln_model_zoo_name(i));
        kiln_model_t m;
        kiln_status st = kiln_model_load(name, &m);
        if (!st) st = kiln_model_finalize(m, NULL);
        CHECK(st == KILN_OK && kiln_model_warning_count(m) == 0,
              "zoo %s parses and finalizes with its defaults, without warnings (%s)", name,
              !st && kiln_model_warning_count(m) ? kiln_model_warning(m, 0) : "");
        kiln_model_free(m);
        n++;
    }
    CHECK(n == 10, "zoo has 10 models, got %d", n);

    static const int vgg11[] = {64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0, -1};
    static const int vgg13[] = {64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0, -1};
    static const int vgg16[] = {64,  64,  0,   128, 128, 0,   256, 256, 256, 0,
                                512, 512, 512, 0,   512, 512, 512, 0,   -1};
    static const int vgg19[] = {64,  64,  0,   128, 128, 0,   256, 256, 256, 256, 0,
                                512, 512, 512, 512, 0,   512, 512, 512, 512, 0,   -1};
    static const int vgg16n[] = {32,  32,  0,   64, 64,  0,   96,  96, 96, 0,
                                 128, 128, 128, 0,  128, 128, 128, 0,  -1};
    static const int vgg19n[] = {32,  32,  0,   64,  64, 0,   96,  96,  96,  96, 0,
                                 128, 128, 128, 128, 0,  128, 128, 128, 128, 0,  -1};
    /* torchvision's published counts at 224x224x3 / 1000 classes, and the same arithmetic. */
    CHECK(vgg_params(vgg16, 3, 224, 1000) == 138357544, "vgg16 arithmetic = torchvision");
    CHECK(vgg_params(vgg11, 3, 224, 1000) == 132863336, "vgg11 arithmetic = torchvision");
    CHECK(vgg_params(vgg13, 3, 224, 1000) == 133047848, "vgg13 arithmetic = torchvision");
    CHECK(vgg_params(vgg19, 3, 224, 1000) == 143667240, "vgg19 arithmetic = torchvision");
    check_zoo("vgg11", 224, 3, 1000, 132863336);
    check_zoo("vgg13", 224, 3, 1000, 133047848);
    check_zoo("vgg16", 224, 3, 1000, 138357544);
    check_zoo("vgg19", 224, 3, 1000, 143667240);
    check_zoo("vgg16", 32, 3, 10, vgg_params(vgg16, 3, 32, 10));
    /* vgg16-narrow on Fashion-MNIST 28x28x1, 10 classes (28-14-7-4-2-1):
       convs 320 + 9,248 + 18,496 + 36,928 + 55,392 + 2*83,040 + 110,720 + 5*147,584 = 1,135,104;
       fc6 128*1*1*4096+4096 = 528,384; fc7 4096*4096+4096 = 16,781,312; fc8 4096*10+10 = 40,970;
       total 18,485,770. */
    CHECK(vgg_params(vgg16n, 1, 28, 10) == 18485770, "vgg16-narrow arithmetic");
    check_zoo("vgg16-narrow", 28, 1, 10, 18485770);
    check_zoo("vgg16-narrow", 32, 3, 10, vgg_params(vgg16n, 3, 32, 10));
    check_zoo("vgg16-narrow", 224, 3, 1000, vgg_params(vgg16n, 3, 224, 1000));
    check_zoo("vgg19-narrow", 28, 1, 10, vgg_params(vgg19n, 1, 28, 10));
    check_zoo("vgg19-narrow", 32, 3, 100, vgg_params(vgg19n, 3, 32, 100));
    /* The BN variants: each convolution drops its C biases and its batchnorm adds 2C
       (gamma, beta), so C more per convolution: 1,248 for vgg16-narrow, 1,600 for vgg19-narrow. */
    check_zoo("vgg16-narrow-bn", 28, 1, 10, 18485770 + 1248);
    check_zoo("vgg19-narrow-bn", 28, 1, 10, vgg_params(vgg19n, 1, 28, 10) + 1600);

    /* AlexNet (torchvision): conv 3->64 k11, 64->192 k5, 192->384 k3, 384->256 k3,
       256->256 k3, then 256*6*6 -> 4096 -> 4096 -> 1000:
       23,296 + 307,392 + 663,936 + 884,992 + 590,080 = 2,469,696 conv;
       37,752,832 + 16,781,312 + 4,097,000 = 58,631,144 fc; total 61,100,840. */
    int64_t alex_conv = (3 * 64 * 121 + 64) + (64 * 192 * 25 + 192) + conv3(192, 384) +
                        conv3(384, 256) + conv3(256, 256);
    int64_t alex =
        alex_conv + dense_p(256 * 6 * 6, 4096) + dense_p(4096, 4096) + dense_p(4096, 1000);
    CHECK(alex == 61100840, "alexnet arithmetic = torchvision");
    check_zoo("alexnet", 224, 3, 1000, 61100840);
    check_zoo("alexnet-lrn", 224, 3, 1000, 61100840);
    /* 64x64x1 (upscaled Fashion-MNIST): 64 -> conv1 15 -> 7 -> 7 -> 3 -> 3 -> 1 */
    check_zoo("alexnet", 64, 1, 10,
              (1 * 64 * 121 + 64) + (64 * 192 * 25 + 192) + conv3(192, 384) + conv3(384, 256) +
                  conv3(256, 256) + dense_p(256, 4096) + dense_p(4096, 4096) + dense_p(4096, 10));

    kiln_model_t m;
    CHECK(kiln_model_load("no-such-model", &m) == KILN_NOT_FOUND &&
              has(kiln_last_error(), "vgg16-narrow"),
          "unknown model lists the zoo");
    CHECK(kiln_model_load("vgg16-narrow.kiln", &m) == KILN_OK, "zoo name with .kiln");
    kiln_model_free(m);
}

static void test_files(void) {
    char path[] = "/tmp/kiln-test-model-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "temp file");
    if (fd < 0) return;
    FILE *f = fdopen(fd, "w");
    fputs("i = input(shape=4x4x1)\ns = rescale(i)\nr = relu(q)\n", f);
    fclose(f);
    kiln_model_t m;
    kiln_status st = kiln_model_load(path, &m);
    CHECK(st == KILN_OK, "load from a file");
    if (!st) {
        char want[128];
        snprintf(want, sizeof want, "%s:3: node 'r' (relu): unknown input 'q'", path);
        CHECK(kiln_model_finalize(m, NULL) == KILN_INVALID_ARGUMENT && has(kiln_last_error(), want),
              "file errors name the path");
        kiln_model_free(m);
    }
    remove(path);
    CHECK(kiln_model_parse_file("/nonexistent/x.kiln", &m) == KILN_IO, "missing file");
}

int main(void) {
    test_errors();
    test_story();
    test_raw_warning();
    test_scale_warning();
    test_scale_rule();
    test_api();
    test_layer_table();
    test_zoo();
    test_files();
    return check_done();
}
