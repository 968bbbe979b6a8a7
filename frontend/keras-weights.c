/* The weights of a Keras 3 model (the model.weights.h5 member of a .keras archive, or a
   .weights.h5 file of model.save_weights) loaded into a trainer built from the same model.
   Keras stores each layer's variables as layers/KEY/vars/0, 1, ... (KEY from the layer's class
   and position, a nested model's under layers/OUTER/layers/KEY); they become the parameters the
   lowering created for node NAME: Conv2D kernels HWIO -> OIHW, Dense kernels (in, out) -> (out, in)
   with the inputs of a Dense read after a Flatten reordered from Keras' (h, w, c) to kiln's (c, h,
   w), BatchNormalization gamma, beta, moving mean and variance -> weight, bias and the running
   statistics. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/backend-impl.h"
#include "kiln/train.h"
#include "model-impl.h"
#include "train-impl.h"
#include "zip-impl.h"

int kt_is_keras_weights(const char *path) {
    size_t n = strlen(path);
    return (n > 6 && !strcmp(path + n - 6, ".keras")) || (n > 3 && !strcmp(path + n - 3, ".h5"));
}

int kiln_is_keras_weights(const char *path) {
    return kt_is_keras_weights(path);
}

#ifndef KILN_HAVE_HDF5

kiln_status kt_load_keras_weights(struct kiln_trainer *t, const char *path) {
    (void)t;
    return kiln_error(KILN_UNSUPPORTED,
                      "%s: kiln was built without libhdf5, so it cannot read Keras weights "
                      "(model.weights.h5): install libhdf5-dev and rebuild",
                      path);
}

#else

#include <cJSON.h>
#include <hdf5.h>

/* Larger members are refused (the narrow VGG16 is about 80 MB). */
#define MAX_H5_BYTES ((size_t)4 << 30)

/* Keras names a layer's weights by its class, not its name: in each model's layer list (in
   model.layers order) the first Conv2D is "conv2d", the next "conv2d_1" (saving_lib's
   naming.to_snake_case and _get_unique_name); a nested model's layers are under its own
   path/layers. */
typedef struct kw_path {
    char name[KILN_MODEL_MAX_NAME]; /* the Keras layer name, kiln's node name */
    char path[512];                 /* "layers/conv2d_1" */
} kw_path;

typedef struct kw_paths {
    kw_path *p;
    int n, cap;
} kw_paths;

/* re.sub("(.)([A-Z][a-z]+)", r"\1_\2", s), re.sub("([a-z])([A-Z])", r"\1_\2", s), lower(). */
static void snake_case(const char *s, char *out, size_t cap) {
    char a[256];
    size_t n = strlen(s), k = 0;
    for (size_t i = 0; i < n && k + 3 < sizeof a;) {
        int up = i + 1 < n && s[i + 1] >= 'A' && s[i + 1] <= 'Z';
        int low = up && i + 2 < n && s[i + 2] >= 'a' && s[i + 2] <= 'z';
        a[k++] = s[i++];
        if (!low) continue;
        a[k++] = '_';
        a[k++] = s[i++];
        while (i < n && s[i] >= 'a' && s[i] <= 'z' && k + 1 < sizeof a) a[k++] = s[i++];
    }
    a[k] = '\0';
    size_t o = 0;
    for (size_t i = 0; i < k && o + 2 < cap;) {
        int pair = a[i] >= 'a' && a[i] <= 'z' && i + 1 < k && a[i + 1] >= 'A' && a[i + 1] <= 'Z';
        char ch = a[i++];
        out[o++] = (char)(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
        if (pair && o + 2 < cap) out[o++] = '_', out[o++] = (char)(a[i++] - 'A' + 'a');
    }
    out[o] = '\0';
}

static const char *jstr(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static kiln_status walk_layers(const cJSON *layers, const char *prefix, int depth, kw_paths *out) {
    typedef struct used {
        char cls[96];
        int count;
    } used;
    int n = cJSON_GetArraySize(layers), nused = 0;
    used *u = calloc((size_t)(n > 0 ? n : 1), sizeof *u);
    if (!u) return kiln_error(KILN_OUT_OF_MEMORY, "keras weights: out of host memory");
    kiln_status st = KILN_OK;
    for (const cJSON *j = layers->child; j && !st; j = j->next) {
        if (out->n == out->cap) {
            int cap = out->cap ? 2 * out->cap : 32;
            kw_path *grown = realloc(out->p, sizeof *grown * (size_t)cap);
            if (!grown) {
                st = kiln_error(KILN_OUT_OF_MEMORY, "keras weights: out of host memory");
                break;
            }
            out->p = grown, out->cap = cap;
        }
        const char *cls = jstr(j, "class_name");
        const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(j, "config");
        const char *name = jstr(j, "name") ? jstr(j, "name") : jstr(cfg, "name");
        if (!cls || !name) continue;
        char sn[96], unique[128];
        snake_case(cls, sn, sizeof sn);
        int k = 0;
        while (k < nused && strcmp(u[k].cls, sn)) k++;
        if (k == nused) snprintf(u[nused++].cls, sizeof u[0].cls, "%s", sn);
        if (u[k].count++)
            snprintf(unique, sizeof unique, "%s_%d", sn, u[k].count - 1);
        else
            snprintf(unique, sizeof unique, "%s", sn);
        kw_path *p = &out->p[out->n++];
        snprintf(p->name, sizeof p->name, "%s", name);
        int len = snprintf(p->path, sizeof p->path, "%s/%s", prefix, unique);
        if (len < 0 || (size_t)len >= sizeof p->path) out->n--;
        const cJSON *sub = cJSON_GetObjectItemCaseSensitive(cfg, "layers");
        if (cJSON_IsArray(sub) && depth < 16 && len > 0 && (size_t)len < sizeof p->path) {
            char inner[520];
            snprintf(inner, sizeof inner, "%s/layers", p->path);
            st = walk_layers(sub, inner, depth + 1, out);
        }
    }
    free(u);
    return st;
}

/* The weights paths of every layer of the Keras config at `src` (a .keras zip, else a
   model.to_json() file). */
static kiln_status keras_paths(const char *src, kw_paths *out) {
    size_t n = strlen(src), len = 0;
    char *text = NULL;
    kiln_status st;
    if (n > 6 && !strcmp(src + n - 6, ".keras")) {
        st = kiln_zip_read(src, "config.json", (size_t)64 << 20, &text, &len);
    } else if (n > 5 && !strcmp(src + n - 5, ".json")) {
        FILE *f = fopen(src, "rb");
        long fl = f && !fseek(f, 0, SEEK_END) ? ftell(f) : -1;
        if (fl >= 0 && fl < (64L << 20)) text = malloc((size_t)fl + 1);
        st = text && !fseek(f, 0, SEEK_SET) && fread(text, 1, (size_t)fl, f) == (size_t)fl
                 ? KILN_OK
                 : kiln_error(KILN_IO, "%s: cannot read the Keras model", src);
        if (!st) text[fl] = '\0';
        if (f) fclose(f);
    } else {
        return kiln_error(KILN_INVALID_ARGUMENT,
                          "Keras weights (.h5) need the Keras model they belong to (model.keras "
                          "or the .json of model.to_json()) as the model, not %s",
                          src);
    }
    if (st) {
        free(text);
        return st;
    }
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(root, "config"), "layers");
    if (!cJSON_IsArray(layers))
        st = kiln_error(KILN_CORRUPT, "%s: the Keras config has no layer list", src);
    else
        st = walk_layers(layers, "layers", 0, out);
    cJSON_Delete(root);
    return st;
}

/* Reads layers/.../NAME/vars/k into a malloc'ed float array; its dims into dims[*ndim]. */
static kiln_status read_var(hid_t file, const char *file_name, const char *vars, const char *layer,
                            int k, float **out, int *ndim, hsize_t dims[4]) {
    char path[600];
    snprintf(path, sizeof path, "%s/%d", vars, k);
    *out = NULL;
    hid_t d = H5Dopen2(file, path, H5P_DEFAULT);
    if (d < 0)
        return kiln_error(KILN_CORRUPT, "%s: layer '%s': no variable %s", file_name, layer, path);
    hid_t s = H5Dget_space(d), ty = H5Dget_type(d);
    int nd = s >= 0 ? H5Sget_simple_extent_ndims(s) : -1;
    kiln_status st = KILN_OK;
    if (ty < 0 || H5Tget_class(ty) != H5T_FLOAT)
        st = kiln_error(KILN_CORRUPT, "%s: layer '%s': %s is not floating point", file_name, layer,
                        path);
    else if (nd < 1 || nd > 4)
        st = kiln_error(KILN_CORRUPT, "%s: layer '%s': %s has %d dimensions", file_name, layer,
                        path, nd);
    size_t count = 1;
    if (!st) {
        H5Sget_simple_extent_dims(s, dims, NULL);
        for (int j = 0; j < nd; j++) count *= (size_t)dims[j];
        *ndim = nd;
        *out = malloc(sizeof **out * (count ? count : 1));
        if (!*out) st = kiln_error(KILN_OUT_OF_MEMORY, "%s: out of host memory", file_name);
    }
    if (!st && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0)
        st = kiln_error(KILN_CORRUPT, "%s: layer '%s': cannot read %s", file_name, layer, path);
    if (st) {
        free(*out);
        *out = NULL;
    }
    if (ty >= 0) H5Tclose(ty);
    if (s >= 0) H5Sclose(s);
    H5Dclose(d);
    return st;
}

static void shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t l = (size_t)snprintf(buf, n, "(");
    for (int j = 0; j < ndim && l < n; j++)
        l += (size_t)snprintf(buf + l, n - l, "%s%lld", j ? ", " : "", (long long)shape[j]);
    if (l < n) snprintf(buf + l, n - l, "%s)", ndim == 1 ? "," : "");
}

static kiln_status mismatch(const char *file, const char *layer, int k, int nd, const hsize_t *dims,
                            const char *want_what, int wnd, const int64_t *want) {
    int64_t d[4];
    for (int j = 0; j < nd; j++) d[j] = (int64_t)dims[j];
    char got[96], exp[96];
    shape_str(nd, d, got, sizeof got);
    shape_str(wnd, want, exp, sizeof exp);
    return kiln_error(KILN_SHAPE, "%s: layer '%s': vars/%d has shape %s, kiln's model needs %s %s",
                      file, layer, k, got, want_what, exp);
}

static int same_dims(int nd, const hsize_t *dims, int wnd, const int64_t *want) {
    if (nd != wnd) return 0;
    for (int j = 0; j < nd; j++)
        if ((int64_t)dims[j] != want[j]) return 0;
    return 1;
}

static kt_param *find_param(struct kiln_trainer *t, const char *node, const char *suffix) {
    char name[KT_NAME];
    snprintf(name, sizeof name, "%s.%s", node, suffix);
    for (int k = 0; k < t->nparams; k++)
        if (!strcmp(t->params[k].name, name)) return &t->params[k];
    return NULL;
}

static kt_bn *find_bn(struct kiln_trainer *t, const char *node) {
    char name[KT_NAME];
    snprintf(name, sizeof name, "%s.running_stats", node);
    for (int k = 0; k < t->nbns; k++)
        if (!strcmp(t->bns[k].name, name)) return &t->bns[k];
    return NULL;
}

/* When the (N, F) value node j reads is a Flatten of a (C, H, W) map (through elementwise
   nodes), its C, H, W: the features are in kiln's (c, h, w) order there and Keras' (h, w, c). */
static int flatten_source(const struct kiln_model *m, int j, int64_t chw[3]) {
    while (j >= 0 && m->nodes[j].ndim == 2) {
        const km_node *nd = &m->nodes[j];
        km_layer_id ty = nd->spec->id;
        if (ty == KM_L_FLATTEN) {
            const km_node *x = &m->nodes[nd->in[0]];
            if (x->ndim != 4) return 0;
            chw[0] = x->shape[1], chw[1] = x->shape[2], chw[2] = x->shape[3];
            return chw[1] * chw[2] > 1 && chw[0] > 1;
        }
        int elementwise = ty == KM_L_DROPOUT || ty == KM_L_RELU || ty == KM_L_LEAKY_RELU ||
                          ty == KM_L_ELU || ty == KM_L_SIGMOID || ty == KM_L_TANH ||
                          ty == KM_L_GELU || ty == KM_L_BATCHNORM;
        if (!elementwise || nd->n_in != 1) return 0;
        j = nd->in[0];
    }
    return 0;
}

/* Keras' feature index of kiln's feature f of a flattened (C, H, W) map. */
static size_t keras_feature(size_t f, const int64_t chw[3]) {
    size_t C = (size_t)chw[0], H = (size_t)chw[1], W = (size_t)chw[2];
    size_t c = f / (H * W), h = f / W % H, w = f % W;
    return (h * W + w) * C + c;
}

typedef struct loader {
    struct kiln_trainer *t;
    hid_t file;
    const char *path;
    const kw_paths *paths;
} loader;

static kiln_status load_node(loader *L, int i) {
    const struct kiln_model *m = L->t->model;
    const km_node *nd = &m->nodes[i];
    const char *ty = nd->spec->type;
    km_layer_id id = nd->spec->id;
    int conv = id == KM_L_CONV2D, dense = id == KM_L_DENSE, bn = id == KM_L_BATCHNORM;
    if (!conv && !dense && !bn) return KILN_OK;
    const kw_path *kp = NULL;
    for (int k = 0; k < L->paths->n && !kp; k++)
        if (!strcmp(L->paths->p[k].name, nd->name)) kp = &L->paths->p[k];
    if (!kp)
        return kiln_error(KILN_NOT_FOUND, "%s: no Keras layer '%s' in the model's config", L->path,
                          nd->name);
    char vars[600];
    snprintf(vars, sizeof vars, "%s/vars", kp->path);
    if (H5Lexists(L->file, kp->path, H5P_DEFAULT) <= 0 ||
        H5Lexists(L->file, vars, H5P_DEFAULT) <= 0)
        return kiln_error(KILN_NOT_FOUND, "%s: no weights for layer '%s' (%s)", L->path, nd->name,
                          vars);
    kt_param *w = find_param(L->t, nd->name, "weight"), *b = find_param(L->t, nd->name, "bias");
    kt_bn *run = bn ? find_bn(L->t, nd->name) : NULL;
    if (!w || (bn && (!b || !run)))
        return kiln_error(KILN_INTERNAL, "%s: layer '%s': the trainer has no parameters for it",
                          L->path, nd->name);
    hid_t g = H5Gopen2(L->file, vars, H5P_DEFAULT);
    H5G_info_t gi;
    int nvars = g >= 0 && H5Gget_info(g, &gi) >= 0 ? (int)gi.nlinks : -1;
    if (g >= 0) H5Gclose(g);
    int want = bn ? 4 : b ? 2 : 1;
    if (nvars != want)
        return kiln_error(KILN_SHAPE, "%s: layer '%s': %d variables in %s, kiln's %s needs %d",
                          L->path, nd->name, nvars, vars, ty, want);
    kiln_status st = KILN_OK;
    float *v = NULL, *host = NULL;
    int64_t chw[3] = {1, 1, 1};
    int permute = (dense || (bn && nd->ndim == 2)) && flatten_source(m, nd->in[0], chw);
    for (int k = 0; k < want && !st; k++) {
        int nd_ = 0;
        hsize_t dims[4];
        if ((st = read_var(L->file, L->path, vars, nd->name, k, &v, &nd_, dims))) break;
        kiln_tensor *dst = k == 0 ? w->train : k == 1 ? b->train : run->running;
        size_t n = (size_t)kiln_tensor_nelements(dst);
        const int64_t *s = dst->shape;
        if (k == 0 && conv) {
            /* kiln (O, C/g, kh, kw) from Keras (kh, kw, C/g, O) */
            int64_t ks[4] = {s[2], s[3], s[1], s[0]};
            if (!same_dims(nd_, dims, 4, ks)) {
                st = mismatch(L->path, nd->name, k, nd_, dims, "the kernel (kh, kw, in, out)", 4,
                              ks);
                break;
            }
            host = malloc(sizeof *host * n);
            if (!host) break;
            size_t O = (size_t)s[0], C = (size_t)s[1], KH = (size_t)s[2], KW = (size_t)s[3];
            for (size_t o = 0; o < O; o++)
                for (size_t c = 0; c < C; c++)
                    for (size_t y = 0; y < KH; y++)
                        for (size_t x = 0; x < KW; x++)
                            host[((o * C + c) * KH + y) * KW + x] =
                                v[((y * KW + x) * C + c) * O + o];
        } else if (k == 0 && dense) {
            /* kiln (units, in) from Keras (in, units) */
            int64_t ks[2] = {s[1], s[0]};
            if (!same_dims(nd_, dims, 2, ks)) {
                st = mismatch(L->path, nd->name, k, nd_, dims, "the kernel (in, units)", 2, ks);
                break;
            }
            host = malloc(sizeof *host * n);
            if (!host) break;
            size_t U = (size_t)s[0], F = (size_t)s[1];
            for (size_t u = 0; u < U; u++)
                for (size_t fi = 0; fi < F; fi++)
                    host[u * F + fi] = v[(permute ? keras_feature(fi, chw) : fi) * U + u];
        } else {
            /* a bias, gamma, beta, or the moving mean (k 2) / variance (k 3) */
            int64_t C = k < 2 ? s[0] : s[1], cs[1] = {C};
            if (!same_dims(nd_, dims, 1, cs)) {
                st = mismatch(L->path, nd->name, k, nd_, dims, "a vector", 1, cs);
                break;
            }
            int perm = permute && bn;
            if (k < 2) {
                host = malloc(sizeof *host * n);
                if (!host) break;
                for (size_t j = 0; j < n; j++) host[j] = v[perm ? keras_feature(j, chw) : j];
            } else {
                /* the running statistics: [2, C] (mean, variance), both read here */
                if (k == 3) {
                    free(v);
                    v = NULL;
                    continue;
                }
                float *var = NULL;
                int nd2 = 0;
                hsize_t d2[4];
                st = read_var(L->file, L->path, vars, nd->name, 3, &var, &nd2, d2);
                if (!st && !same_dims(nd2, d2, 1, cs))
                    st = mismatch(L->path, nd->name, 3, nd2, d2, "a vector", 1, cs);
                host = st ? NULL : malloc(sizeof *host * n);
                if (!st && host)
                    for (int64_t j = 0; j < C; j++) {
                        size_t src = perm ? keras_feature((size_t)j, chw) : (size_t)j;
                        host[j] = v[src], host[C + j] = var[src];
                    }
                free(var);
                if (st) break;
                if (!host) break;
            }
        }
        st = kiln_tensor_set(dst, host, sizeof *host * n);
        free(host);
        host = NULL;
        free(v);
        v = NULL;
    }
    if (!st && (v || host)) st = kiln_error(KILN_OUT_OF_MEMORY, "%s: out of host memory", L->path);
    free(v);
    free(host);
    return st;
}

kiln_status kt_load_keras_weights(struct kiln_trainer *t, const char *path) {
    size_t n = strlen(path), len = 0;
    char *image = NULL;
    kiln_status st;
    if (n > 6 && !strcmp(path + n - 6, ".keras")) {
        st = kiln_zip_read(path, "model.weights.h5", MAX_H5_BYTES, &image, &len);
    } else {
        FILE *fp = fopen(path, "rb");
        long flen = fp && !fseek(fp, 0, SEEK_END) ? ftell(fp) : -1;
        if (flen > 0 && (size_t)flen <= MAX_H5_BYTES) image = malloc((size_t)flen);
        st = image && !fseek(fp, 0, SEEK_SET) && fread(image, 1, (size_t)flen, fp) == (size_t)flen
                 ? KILN_OK
                 : kiln_error(KILN_IO, "%s: cannot read the file", path);
        len = (size_t)flen;
        if (fp) fclose(fp);
    }
    kw_paths paths = {NULL, 0, 0};
    if (!st)
        st = keras_paths(
            n > 6 && !strcmp(path + n - 6, ".keras") ? path : kiln_model_file(t->model), &paths);
    if (st) {
        free(paths.p);
        free(image);
        return st;
    }
    H5E_auto2_t old_fn;
    void *old_data;
    H5Eget_auto2(H5E_DEFAULT, &old_fn, &old_data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    hid_t file = -1;
    if (fapl >= 0 && H5Pset_fapl_core(fapl, 1 << 20, 0) >= 0 &&
        H5Pset_file_image(fapl, image, len) >= 0)
        file = H5Fopen("model.weights.h5", H5F_ACC_RDONLY, fapl);
    free(image);
    if (fapl >= 0) H5Pclose(fapl);
    if (file < 0) {
        st = kiln_error(KILN_CORRUPT, "%s: model.weights.h5 is not an HDF5 file libhdf5 can open",
                        path);
    } else {
        loader L = {t, file, path, &paths};
        for (int i = 0; i < t->model->n && !st; i++) st = load_node(&L, i);
        H5Fclose(file);
    }
    H5Eset_auto2(H5E_DEFAULT, old_fn, old_data);
    free(paths.p);
    return st;
}

#endif
