/* The model text parser and everything finalize does with what it accepted: variables, input
   names, shape inference, parameter/FLOP/memory counts and the lint, at the model's own
   defaults and at a second configuration; then every query a caller can make. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);

static void query(kiln_model_t m) {
    kiln_model_totals t;
    (void)kiln_model_get_totals(m, &t);
    for (int i = 0; i < kiln_model_warning_count(m); i++) (void)strlen(kiln_model_warning(m, i));
    static const char *keys[] = {"shape", "filters", "kernel", "padding", "units", "rate", "size"};
    for (int i = 0; i < kiln_model_node_count(m); i++) {
        kiln_model_node_info info;
        if (kiln_model_node(m, i, &info) != KILN_OK) continue;
        (void)kiln_model_find(m, info.name);
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            const char *v = kiln_model_attr(m, i, keys[k]);
            if (v) (void)strlen(v);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char *text = malloc(n + 1);
    if (!text) return 0;
    memcpy(text, data, n);
    text[n] = 0;
    kiln_model_t m = NULL;
    if (kiln_model_parse_string(text, "fuzz.kiln", &m) == KILN_OK) {
        kiln_model_config defaults = {0, 0, 0, 0, 0};
        if (kiln_model_finalize(m, &defaults) == KILN_OK) query(m);
        kiln_model_config other = {37, 29, 3, 7, 4};
        if (kiln_model_finalize(m, &other) == KILN_OK) query(m);
        (void)strlen(kiln_model_file(m));
    }
    kiln_model_free(m);
    free(text);
    return 0;
}
