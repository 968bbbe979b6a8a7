/* Keras models without Keras: hand-written config.json files (Keras 3 and Keras 2 forms),
   in .json files and in .keras zips written here (stored and deflated), through
   kiln_model_load, finalize and the lint. tests/keras/test_keras.py checks the same against
   models Keras itself builds. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "check.h"
#include "kiln/kiln.h"
#include "kiln/model.h"

static char dir[256];

/* ---- writing files ---- */
static void path_of(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%s", dir, name);
}

static int write_file(const char *name, const void *data, size_t len) {
    char p[512];
    path_of(p, sizeof p, name);
    FILE *f = fopen(p, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, len, f);
    return fclose(f) || w != len ? -1 : 0;
}

static void put(unsigned char **p, unsigned v, int bytes) {
    for (int k = 0; k < bytes; k++) *(*p)++ = (unsigned char)(v >> (8 * k));
}

/* A zip of members (name, text); deflated or stored. Returns its size in out, or 0. */
static size_t make_zip(unsigned char *out, size_t cap, int n, const char *const *names,
                       const char *const *texts, int deflated) {
    unsigned char *p = out, *cd = malloc(4096), *c = cd;
    unsigned offs[8];
    for (int i = 0; i < n; i++) {
        size_t ul = strlen(texts[i]);
        unsigned crc = (unsigned)crc32(0, (const Bytef *)texts[i], (uInt)ul);
        unsigned char *body = malloc(ul + 64);
        size_t cl = ul;
        if (deflated) {
            z_stream s;
            memset(&s, 0, sizeof s);
            deflateInit2(&s, 9, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
            s.next_in = (Bytef *)texts[i];
            s.avail_in = (uInt)ul;
            s.next_out = body;
            s.avail_out = (uInt)(ul + 64);
            deflate(&s, Z_FINISH);
            cl = s.total_out;
            deflateEnd(&s);
        } else {
            memcpy(body, texts[i], ul);
        }
        size_t nl = strlen(names[i]);
        if ((size_t)(p - out) + 30 + nl + cl > cap) return 0;
        offs[i] = (unsigned)(p - out);
        unsigned method = deflated ? 8 : 0;
        put(&p, 0x04034b50, 4), put(&p, 20, 2), put(&p, 0, 2), put(&p, method, 2);
        put(&p, 0, 2), put(&p, 0x21, 2), put(&p, crc, 4), put(&p, (unsigned)cl, 4);
        put(&p, (unsigned)ul, 4), put(&p, (unsigned)nl, 2), put(&p, 0, 2);
        memcpy(p, names[i], nl), p += nl;
        memcpy(p, body, cl), p += cl;
        put(&c, 0x02014b50, 4), put(&c, 20, 2), put(&c, 20, 2), put(&c, 0, 2);
        put(&c, method, 2), put(&c, 0, 2), put(&c, 0x21, 2), put(&c, crc, 4);
        put(&c, (unsigned)cl, 4), put(&c, (unsigned)ul, 4), put(&c, (unsigned)nl, 2);
        put(&c, 0, 2), put(&c, 0, 2), put(&c, 0, 2), put(&c, 0, 2), put(&c, 0, 4);
        put(&c, offs[i], 4);
        memcpy(c, names[i], nl), c += nl;
        free(body);
    }
    size_t cdl = (size_t)(c - cd);
    unsigned cdo = (unsigned)(p - out);
    memcpy(p, cd, cdl), p += cdl;
    put(&p, 0x06054b50, 4), put(&p, 0, 2), put(&p, 0, 2), put(&p, (unsigned)n, 2);
    put(&p, (unsigned)n, 2), put(&p, (unsigned)cdl, 4), put(&p, cdo, 4), put(&p, 0, 2);
    free(cd);
    return (size_t)(p - out);
}

/* ---- Keras 3 config pieces ---- */
static char buf[1 << 16];
static const char *ref_shape = ""; /* the Keras tensors' "shape" entry, if any */

/* {"class_name": cls, "name": name, "config": {cfg}, "inbound_nodes": [...]} reading the
   comma-separated layers `in` (Keras 3 form; a list for 2+ inputs). */
static void layer(char **p, const char *cls, const char *name, const char *cfg, const char *in,
                  const char *extra) {
    char ins[1024] = "";
    size_t l = 0;
    int n = 0;
    char copy[256];
    snprintf(copy, sizeof copy, "%s", in ? in : "");
    for (char *s = NULL, *t = strtok_r(copy, ",", &s); t; t = strtok_r(NULL, ",", &s), n++)
        l += (size_t)snprintf(ins + l, sizeof ins - l,
                              "%s{\"class_name\": \"__keras_tensor__\", \"config\": {%s"
                              "\"keras_history\": [\"%s\", 0, 0]}}",
                              n ? ", " : "", ref_shape, t);
    char node[1200];
    if (!n)
        snprintf(node, sizeof node, "[]");
    else if (n == 1)
        snprintf(node, sizeof node, "[{\"args\": [%s], \"kwargs\": {}}]", ins);
    else
        snprintf(node, sizeof node, "[{\"args\": [[%s]], \"kwargs\": {}}]", ins);
    *p +=
        sprintf(*p,
                "%s{\"class_name\": \"%s\", \"name\": \"%s\", \"config\": {\"name\": \"%s\"%s%s}, "
                "\"inbound_nodes\": %s%s}",
                (*p)[-1] == '[' ? "" : ", ", cls, name, name, *cfg ? ", " : "", cfg, node,
                extra ? extra : "");
}

static char *functional_begin(void) {
    char *p = buf + sprintf(buf, "{\"class_name\": \"Functional\", \"config\": {\"name\": \"m\", "
                                 "\"layers\": [");
    return p;
}

static void functional_end(char *p, const char *in, const char *out) {
    sprintf(p, "], \"input_layers\": [[\"%s\", 0, 0]], \"output_layers\": [[\"%s\", 0, 0]]}}", in,
            out);
}

#define INPUT(h, w, c) "\"batch_shape\": [null, " #h ", " #w ", " #c "], \"dtype\": \"float32\""

static kiln_status load_json(const char *name, const char *text, kiln_model_t *m) {
    char p[512];
    path_of(p, sizeof p, name);
    if (write_file(name, text, strlen(text))) return KILN_IO;
    return kiln_model_load(p, m);
}

static kiln_status load_final(const char *name, const char *text, kiln_model_t *m) {
    kiln_status st = load_json(name, text, m);
    if (!st) st = kiln_model_finalize(*m, NULL);
    return st;
}

static void shape_is(kiln_model_t m, const char *node, int c, int h, int w) {
    kiln_model_node_info d;
    int i = kiln_model_find(m, node);
    CHECK(i >= 0 && !kiln_model_node(m, i, &d) && d.shape[1] == c && d.shape[2] == h &&
              d.shape[3] == w,
          "%s: (N, %d, %d, %d), got (N, %lld, %lld, %lld)", node, c, h, w,
          i >= 0 ? (long long)d.shape[1] : -1, i >= 0 ? (long long)d.shape[2] : -1,
          i >= 0 ? (long long)d.shape[3] : -1);
}

/* ---- the story ---- */
static const char *story_config(void) {
    char *p = functional_begin();
    layer(&p, "InputLayer", "input_layer", INPUT(28, 28, 1), NULL, NULL);
    /* As kiln_keras.py writes the layers Keras left out: in place, "unused": true. */
    layer(
        &p, "Sequential", "sequential",
        "\"layers\": [{\"class_name\": \"InputLayer\", \"config\": {\"name\": "
        "\"input_layer_1\", " INPUT(
            28, 28,
            1) "}}, {\"class_name\": \"RandomFlip\", \"config\": {\"name\": "
               "\"random_flip\", \"mode\": \"horizontal\"}}, {\"class_name\": \"RandomRotation\", "
               "\"config\": {\"name\": \"random_rotation\", \"factor\": [-0.1, 0.1]}}]",
        "input_layer", ", \"unused\": true");
    layer(&p, "Rescaling", "rescaling", "\"scale\": 0.00392156862745098, \"offset\": 0.0",
          "sequential", ", \"unused\": true");
    layer(&p, "Conv2D", "conv2d",
          "\"filters\": 32, \"kernel_size\": [3, 3], \"strides\": [1, 1], \"padding\": \"same\", "
          "\"activation\": \"relu\", \"use_bias\": true",
          "input_layer", NULL);
    layer(&p, "MaxPooling2D", "max_pooling2d",
          "\"pool_size\": [2, 2], \"strides\": [2, 2], \"padding\": \"valid\"", "conv2d", NULL);
    layer(&p, "Flatten", "flatten", "", "max_pooling2d", NULL);
    layer(&p, "Dense", "dense", "\"units\": 10, \"activation\": \"softmax\"", "flatten", NULL);
    functional_end(p, "input_layer", "dense");
    return buf;
}

static void test_story(void) {
    kiln_model_t m = NULL;
    kiln_status st = load_final("story.json", story_config(), &m);
    const char *e = kiln_last_error();
    CHECK(st == KILN_INVALID_ARGUMENT, "the story's graph is refused");
    CHECK(strstr(e, "story.json: not in model.layers: node 'rescaling' (rescale) is never used"),
          "names the unused Rescaling: %s", e);
    CHECK(strstr(e, "story.json: sequential.layers[0]: node 'random_flip' (random_flip) only "
                    "feeds it"),
          "names the augmentation inside the Sequential: %s", e);
    CHECK(strstr(e, "'conv2d' (conv2d, layers[1]) most likely meant to read 'rescaling' instead "
                    "of 'input_layer' (input, layers[0])"),
          "names the first Conv2D and what it meant to read: %s", e);
    CHECK(strstr(e, "the first convolution 'conv2d' reads the raw input 'input_layer' directly"),
          "tells the story: %s", e);
    int raw = 0;
    for (int i = 0; m && i < kiln_model_warning_count(m); i++)
        raw |= strstr(kiln_model_warning(m, i), "layers.Rescaling(1./255)") != NULL;
    CHECK(raw, "the raw-pixel warning spells the Keras fix");
    kiln_model_free(m);
}

/* ---- mapping ---- */
static void test_mapping(void) {
    char *p = functional_begin();
    layer(&p, "InputLayer", "input_layer", INPUT(29, 31, 3), NULL, NULL);
    layer(&p, "Rescaling", "rescaling", "\"scale\": 0.00784313725490196, \"offset\": -1.0",
          "input_layer", NULL);
    /* padding="same", stride 2 on odd sizes: ceil(29/2) x ceil(31/2) = 15x16 */
    layer(&p, "Conv2D", "c1",
          "\"filters\": 8, \"kernel_size\": [3, 3], \"strides\": [2, 2], \"padding\": \"same\", "
          "\"use_bias\": false, \"kernel_initializer\": {\"class_name\": \"HeNormal\"}",
          "rescaling", NULL);
    layer(&p, "BatchNormalization", "bn", "\"axis\": -1, \"momentum\": 0.99, \"epsilon\": 0.001",
          "c1", NULL);
    layer(&p, "ReLU", "r1", "\"max_value\": null, \"negative_slope\": 0.0, \"threshold\": 0.0",
          "bn", NULL);
    layer(&p, "Conv2D", "c2",
          "\"filters\": 8, \"kernel_size\": 4, \"strides\": 3, \"padding\": \"same\", "
          "\"activation\": \"relu\"",
          "r1", NULL);
    layer(&p, "Conv2D", "c3", "\"filters\": 8, \"kernel_size\": 1, \"padding\": \"valid\"", "c2",
          NULL);
    layer(&p, "Add", "add", "", "c2,c3", NULL);
    layer(&p, "Concatenate", "cat", "\"axis\": -1", "add,c3", NULL);
    layer(&p, "MaxPooling2D", "pool", "\"pool_size\": 3, \"strides\": 2, \"padding\": \"same\"",
          "cat", NULL);
    layer(&p, "GlobalAveragePooling2D", "gap", "\"keepdims\": false", "pool", NULL);
    layer(&p, "Dropout", "drop", "\"rate\": 0.25", "gap", NULL);
    layer(&p, "Dense", "logits", "\"units\": 5", "drop", NULL);
    functional_end(p, "input_layer", "logits");
    kiln_model_t m = NULL;
    kiln_status st = load_final("mapping.json", buf, &m);
    CHECK(!st, "maps a functional model");
    if (st) {
        kiln_model_free(m);
        return;
    }
    shape_is(m, "input_layer", 3, 29, 31);
    shape_is(m, "c1", 8, 15, 16);
    shape_is(m, "c2", 8, 5, 6);   /* ceil(15/3) x ceil(16/3) */
    shape_is(m, "cat", 16, 5, 6); /* channels concatenated */
    shape_is(m, "pool", 16, 3, 3);
    int i = kiln_model_find(m, "c2_relu");
    CHECK(i >= 0, "Conv2D's activation is a node of its own");
    kiln_model_node_info d;
    if (i >= 0 && !kiln_model_node(m, kiln_model_find(m, "add"), &d))
        CHECK(!strcmp(d.inputs[0], "c2_relu"), "Add reads 'c2' as its activation node, got %s",
              d.inputs[0]);
    const char *mom = kiln_model_attr(m, kiln_model_find(m, "bn"), "momentum");
    CHECK(mom && !strcmp(mom, "0.01"), "BN momentum 0.99 (Keras) is 0.01 (kiln), got %s", mom);
    CHECK(!strcmp(kiln_model_attr(m, kiln_model_find(m, "c1"), "init"), "he"), "HeNormal -> he");
    CHECK(!strcmp(kiln_model_attr(m, kiln_model_find(m, "c2"), "init"), "glorot"),
          "Keras' default initializer -> glorot");
    kiln_model_totals t;
    kiln_model_get_totals(m, &t);
    /* c1 216, bn 16, c2 8*8*16+8 = 1032, c3 72, logits 16*5+5 = 85 */
    CHECK(t.params == 216 + 16 + 1032 + 72 + 85, "parameters: %lld", (long long)t.params);
    CHECK(t.classes == 5, "classes from the output's units: %d", t.classes);
    kiln_model_free(m);

    /* The same config inside .keras zips, stored and deflated. */
    static unsigned char zip[1 << 17];
    const char *names[] = {"metadata.json", "config.json"};
    const char *texts[] = {"{\"keras_version\": \"3.15.1\"}", buf};
    for (int deflated = 0; deflated < 2; deflated++) {
        size_t n = make_zip(zip, sizeof zip, 2, names, texts, deflated);
        char zp[512];
        path_of(zp, sizeof zp, deflated ? "deflated.keras" : "stored.keras");
        m = NULL;
        st = write_file(deflated ? "deflated.keras" : "stored.keras", zip, n)
                 ? KILN_IO
                 : kiln_model_load(zp, &m);
        if (!st) st = kiln_model_finalize(m, NULL);
        kiln_model_totals t2 = {0};
        if (!st) kiln_model_get_totals(m, &t2);
        CHECK(!st && t2.params == t.params, "%s: the same model", zp);
        kiln_model_free(m);
        if (deflated) {
            /* A flipped byte in the deflated config: inflate or CRC error naming the file. */
            zip[n / 3] ^= 0x55;
            write_file("corrupt.keras", zip, n);
            path_of(zp, sizeof zp, "corrupt.keras");
            st = kiln_model_load(zp, &m);
            CHECK(st && strstr(kiln_last_error(), "corrupt.keras"), "a corrupt zip is an error");
            write_file("truncated.keras", zip, n / 2);
            path_of(zp, sizeof zp, "truncated.keras");
            st = kiln_model_load(zp, &m);
            CHECK(st && strstr(kiln_last_error(), "truncated.keras: not a valid zip archive"),
                  "a truncated zip is an error");
        }
    }
    size_t n = make_zip(zip, sizeof zip, 1, names, texts, 0);
    write_file("noconfig.keras", zip, n);
    char zp[512];
    path_of(zp, sizeof zp, "noconfig.keras");
    st = kiln_model_load(zp, &m);
    CHECK(st == KILN_NOT_FOUND && strstr(kiln_last_error(), "has no 'config.json' (it holds: "
                                                            "metadata.json)"),
          "a zip without config.json");
}

/* ---- refusals name the file, the layer, its class and position ---- */
static void refused(const char *what, const char *cls, const char *cfg, const char *want) {
    char *p = functional_begin();
    layer(&p, "InputLayer", "input_layer", INPUT(8, 8, 4), NULL, NULL);
    layer(&p, "Conv2D", "conv2d", "\"filters\": 4, \"kernel_size\": 3, \"padding\": \"same\"",
          "input_layer", NULL);
    layer(&p, cls, "x", cfg, "conv2d", NULL);
    functional_end(p, "input_layer", "x");
    kiln_model_t m = NULL;
    kiln_status st = load_json("refused.json", buf, &m);
    CHECK(st && strstr(kiln_last_error(), want), "%s: want '%s'", what, want);
    kiln_model_free(m);
}

static void test_refusals(void) {
    refused("unknown class", "Conv3D", "\"filters\": 4",
            "refused.json: layers[2] 'x' (Conv3D): kiln cannot map this layer class");
    refused("the mapped classes", "Conv3D", "\"filters\": 4",
            "(it maps InputLayer, Conv2D, Dense, MaxPooling2D, AveragePooling2D, "
            "GlobalAveragePooling2D, Flatten, Dropout, BatchNormalization, Activation, ReLU, "
            "LeakyReLU, ELU, Softmax, Rescaling, Normalization, Add, Concatenate, RandomFlip, "
            "RandomCrop, RandomRotation, RandomTranslation, RandomContrast, RandomBrightness, "
            "RandomZoom, Resizing, CenterCrop, Sequential, Functional)");
    ref_shape = "\"shape\": [null, 8, 8, 4], ";
    refused("Dense on a map", "Dense", "\"units\": 4", "layers[2] 'x' (Dense): reads a 4-D tensor");
    ref_shape = "";
    refused("channels_first", "MaxPooling2D", "\"data_format\": \"channels_first\"",
            "data_format='channels_first' is not mapped");
    refused("ReLU6", "ReLU", "\"max_value\": 6.0", "max_value");
    refused("custom activation", "Activation", "\"activation\": \"swish\"",
            "activation swish has no kiln node");
    refused("asymmetric rotation", "RandomRotation", "\"factor\": [0.0, 0.2]", "is not symmetric");
    refused("adapted Normalization", "Normalization", "\"mean\": null, \"variance\": null",
            "were adapted");

    /* One layer called twice: shared weights. */
    const char *shared =
        "{\"class_name\": \"Functional\", \"config\": {\"name\": \"m\", \"layers\": ["
        "{\"class_name\": \"InputLayer\", \"name\": \"i\", \"config\": {\"name\": \"i\", " INPUT(
            8, 8,
            4) "}, \"inbound_nodes\": []},"
               "{\"class_name\": \"Conv2D\", \"name\": \"shared\", \"config\": {\"name\": "
               "\"shared\", "
               "\"filters\": 4, \"kernel_size\": 1}, \"inbound_nodes\": [[[\"i\", 0, 0, {}]], "
               "[[\"shared\", 0, 0, {}]]]}],"
               "\"input_layers\": [[\"i\", 0, 0]], \"output_layers\": [[\"shared\", 1, 0]]}}";
    kiln_model_t m = NULL;
    kiln_status st = load_json("shared.json", shared, &m);
    CHECK(st && strstr(kiln_last_error(), "layers[1] 'shared' (Conv2D): is called 2 times"),
          "a shared layer is refused");
    st = load_json("bad.json", "{\"class_name\": \"Functional\", \"config\": ", &m);
    CHECK(st && strstr(kiln_last_error(), "bad.json: not valid JSON"), "bad JSON names the file");
}

/* ---- Keras 2 (tf.keras) and Sequential ---- */
static void test_keras2_sequential(void) {
    const char *seq =
        "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", \"layers\": ["
        "{\"class_name\": \"InputLayer\", \"config\": {\"batch_input_shape\": [null, 28, 28, 1], "
        "\"name\": \"image\"}},"
        "{\"class_name\": \"Conv2D\", \"config\": {\"name\": \"c\", \"filters\": 4, "
        "\"kernel_size\": [3, 3], \"strides\": [2, 2], \"padding\": \"valid\", \"activation\": "
        "\"relu\"}},"
        "{\"class_name\": \"Flatten\", \"config\": {\"name\": \"f\"}},"
        "{\"class_name\": \"Dense\", \"config\": {\"name\": \"d\", \"units\": 10, \"activation\": "
        "\"softmax\"}}]}, \"keras_version\": \"2.15.0\", \"backend\": \"tensorflow\"}";
    kiln_model_t m = NULL;
    kiln_status st = load_final("seq.json", seq, &m);
    CHECK(!st, "a Keras 2 Sequential");
    if (!st) {
        shape_is(m, "c", 4, 13, 13);
        kiln_model_totals t;
        kiln_model_get_totals(m, &t);
        CHECK(t.params == 40 + 4 * 13 * 13 * 10 + 10, "params %lld", (long long)t.params);
        int w = 0;
        for (int i = 0; i < kiln_model_warning_count(m); i++)
            w |= strstr(kiln_model_warning(m, i), "seq.json: layers[0]: node 'c'") != NULL;
        CHECK(w, "raw input warning at layers[0] (model.layers leaves the InputLayer out)");
    }
    kiln_model_free(m);
    const char *fn =
        "{\"class_name\": \"Model\", \"config\": {\"name\": \"f\", \"layers\": ["
        "{\"class_name\": \"InputLayer\", \"name\": \"input_1\", \"config\": "
        "{\"batch_input_shape\": "
        "[null, null, null, 3], \"name\": \"input_1\"}, \"inbound_nodes\": []},"
        "{\"class_name\": \"Rescaling\", \"name\": \"r\", \"config\": {\"name\": \"r\", \"scale\": "
        "0.00392156862745098, \"offset\": 0.0}, \"inbound_nodes\": [[[\"input_1\", 0, 0, {}]]]},"
        "{\"class_name\": \"Conv2D\", \"name\": \"c\", \"config\": {\"name\": \"c\", \"filters\": "
        "4, "
        "\"kernel_size\": [3, 3], \"padding\": \"same\"}, \"inbound_nodes\": [[[\"r\", 0, 0, "
        "{}]]]},"
        "{\"class_name\": \"GlobalAveragePooling2D\", \"name\": \"g\", \"config\": {\"name\": "
        "\"g\"}, "
        "\"inbound_nodes\": [[[\"c\", 0, 0, {}]]]}],"
        "\"input_layers\": [[\"input_1\", 0, 0]], \"output_layers\": [[\"g\", 0, 0]]}}";
    st = load_json("k2.json", fn, &m);
    kiln_model_config cfg = {.input_h = 17, .input_w = 9};
    if (!st) st = kiln_model_finalize(m, &cfg);
    CHECK(!st, "a Keras 2 functional model with a free input size");
    if (!st) shape_is(m, "c", 4, 17, 9);
    kiln_model_free(m);
}

int main(void) {
    snprintf(dir, sizeof dir, "test-keras-files");
    if (mkdir(dir, 0755) && errno != EEXIST) {
        printf("cannot create %s\n", dir);
        return 1;
    }
    test_story();
    test_mapping();
    test_refusals();
    test_keras2_sequential();
    return check_done();
}
