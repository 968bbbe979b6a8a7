/* Loading a model by name: a Keras model (.keras, model.to_json()), a zoo model embedded at
   build time, or a model file in kiln's text format. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/backend-impl.h"
#include "model-impl.h"

/* ---- the zoo (embedded by CMake) ---- */
extern const struct kiln_embedded_file kiln_embedded_zoo[];
extern const size_t kiln_embedded_zoo_count;

const char *kiln_model_zoo_name(int i) {
    static _Thread_local char name[KILN_MODEL_MAX_NAME];
    if (i < 0 || (size_t)i >= kiln_embedded_zoo_count) return NULL;
    const char *f = kiln_embedded_zoo[i].file;
    size_t n = strlen(f);
    if (n > 5 && !strcmp(f + n - 5, ".kiln")) n -= 5;
    snprintf(name, sizeof name, "%.*s", (int)n, f);
    return name;
}

kiln_status kiln_model_load(const char *name_or_path, kiln_model_t *out) {
    if (!name_or_path || !out)
        return kiln_error(KILN_INVALID_ARGUMENT, "kiln_model_load: NULL argument");
    *out = NULL;
    if (km_is_keras_path(name_or_path)) return km_load_keras(name_or_path, out);
    char want[256];
    snprintf(want, sizeof want, "%s", name_or_path);
    size_t n = strlen(want);
    if (n < 5 || strcmp(want + n - 5, ".kiln")) snprintf(want + n, sizeof want - n, ".kiln");
    if (!strchr(name_or_path, '/'))
        for (size_t i = 0; i < kiln_embedded_zoo_count; i++)
            if (!strcmp(kiln_embedded_zoo[i].file, want)) {
                /* The embedding adds a terminating NUL after len bytes. */
                char file[300];
                snprintf(file, sizeof file, "zoo/%s", kiln_embedded_zoo[i].file);
                return kiln_model_parse_string((const char *)kiln_embedded_zoo[i].data, file, out);
            }
    FILE *f = fopen(name_or_path, "rb");
    if (!f) {
        char list[1024] = "";
        size_t l = 0;
        for (int i = 0; kiln_model_zoo_name(i) && l < sizeof list; i++)
            l += (size_t)snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "",
                                  kiln_model_zoo_name(i));
        return kiln_error(KILN_NOT_FOUND, "model '%s': no such zoo model (zoo: %s) or file",
                          name_or_path, list);
    }
    fclose(f);
    return kiln_model_parse_file(name_or_path, out);
}
