/* Model graphs: the layer table, building through the API, the zoo, and queries. The text
   format is in model-parse.c, shape inference and lint in model-lint.c. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/backend-impl.h"
#include "model-impl.h"

/* ---- the layer table ----
   Ranges keep every size far below what could overflow an int64 product, and refuse
   nonsense early with the attribute's name. */
#define BIG  (1 << 20)
#define HUGE 1e30

static const km_attr_spec a_none[] = {{0}};
static const km_attr_spec a_input[] = {
    {"shape", KM_DIMS, "{input_h}x{input_w}x{input_c}", 1, 1 << 16, 0},
    {"dtype", KM_ENUM, "u8", 0, 0, "u8|f32"},
    {0}};
static const km_attr_spec a_conv[] = {{"filters", KM_INT, NULL, 1, BIG, 0},
                                      {"kernel", KM_PAIR, NULL, 1, 4096, 0},
                                      {"stride", KM_PAIR, "1", 1, 4096, 0},
                                      {"padding", KM_PAD, "valid", 0, 4096, 0},
                                      {"dilation", KM_PAIR, "1", 1, 4096, 0},
                                      {"groups", KM_INT, "1", 1, BIG, 0},
                                      {"bias", KM_BOOL, "true", 0, 0, 0},
                                      {"init", KM_ENUM, "he", 0, 0, "he|glorot|lecun"},
                                      {0}};
static const km_attr_spec a_dense[] = {{"units", KM_INT, NULL, 1, BIG, 0},
                                       {"bias", KM_BOOL, "true", 0, 0, 0},
                                       {"init", KM_ENUM, "he", 0, 0, "he|glorot|lecun"},
                                       {0}};
static const km_attr_spec a_leaky[] = {{"alpha", KM_FLOAT, "0.01", 0, HUGE, 0}, {0}};
static const km_attr_spec a_elu[] = {{"alpha", KM_FLOAT, "1", 0, HUGE, 0}, {0}};
static const km_attr_spec a_maxpool[] = {{"pool", KM_PAIR, "2", 1, 4096, 0},
                                         {"stride", KM_PAIR, "", 1, 4096, 0},
                                         {"padding", KM_PAD, "0", 0, 4096, 0},
                                         {"ceil", KM_BOOL, "false", 0, 0, 0},
                                         {0}};
static const km_attr_spec a_avgpool[] = {{"pool", KM_PAIR, "2", 1, 4096, 0},
                                         {"stride", KM_PAIR, "", 1, 4096, 0},
                                         {"padding", KM_PAD, "0", 0, 4096, 0},
                                         {"ceil", KM_BOOL, "false", 0, 0, 0},
                                         {"count_include_pad", KM_BOOL, "true", 0, 0, 0},
                                         {0}};
/* AlexNet paper values (k = 2, unlike PyTorch's default of 1). */
static const km_attr_spec a_lrn[] = {{"size", KM_INT, "5", 1, 4096, 0},
                                     {"alpha", KM_FLOAT, "1e-4", 0, HUGE, 0},
                                     {"beta", KM_FLOAT, "0.75", 0, HUGE, 0},
                                     {"k", KM_FLOAT, "2", 0, HUGE, 0},
                                     {0}};
static const km_attr_spec a_bn[] = {
    {"eps", KM_FLOAT, "1e-5", 1e-12, 1, 0}, {"momentum", KM_FLOAT, "0.1", 0, 1, 0}, {0}};
static const km_attr_spec a_dropout[] = {{"rate", KM_FLOAT, "0.5", 0, 0.999, 0}, {0}};
static const km_attr_spec a_reshape[] = {{"shape", KM_DIMS, NULL, 1, 1LL << 40, 0}, {0}};
static const km_attr_spec a_rescale[] = {
    {"scale", KM_FLOAT, "1/255", -HUGE, HUGE, 0}, {"offset", KM_FLOAT, "0", -HUGE, HUGE, 0}, {0}};
static const km_attr_spec a_normalize[] = {
    {"mean", KM_FLOATS, NULL, -HUGE, HUGE, 0}, {"std", KM_FLOATS, NULL, 1e-12, HUGE, 0}, {0}};
static const km_attr_spec a_flip[] = {
    {"mode", KM_ENUM, "horizontal", 0, 0, "horizontal|vertical|both"}, {0}};
static const km_attr_spec a_crop[] = {{"padding", KM_INT, "0", 0, 4096, 0},
                                      {"size", KM_PAIR, "", 1, 1 << 16, 0},
                                      {"pad_mode", KM_ENUM, "zero", 0, 0, "zero|reflect|edge"},
                                      {0}};
static const km_attr_spec a_rrc[] = {{"size", KM_PAIR, NULL, 1, 1 << 16, 0},
                                     {"scale", KM_FLOATS, "[0.08, 1]", 1e-6, 1, 0},
                                     {"ratio", KM_FLOATS, "[0.75, 1.3333]", 1e-3, 1e3, 0},
                                     {0}};
static const km_attr_spec a_rotation[] = {{"degrees", KM_FLOAT, NULL, 0, 180, 0}, {0}};
static const km_attr_spec a_translation[] = {{"fraction", KM_FLOAT, NULL, 0, 1, 0}, {0}};
static const km_attr_spec a_brightness[] = {{"delta", KM_FLOAT, NULL, 0, 1, 0}, {0}};
/* Keras RandomZoom's factors: [lo, hi] (one value v: [-v, v]), negative zooms in. */
static const km_attr_spec a_zoom[] = {
    {"height", KM_FLOATS, NULL, -1, 10, 0}, {"width", KM_FLOATS, "", -1, 10, 0}, {0}};
static const km_attr_spec a_factor[] = {{"factor", KM_FLOAT, NULL, 0, 1, 0}, {0}};
static const km_attr_spec a_erasing[] = {
    {"p", KM_FLOAT, "0.5", 0, 1, 0}, {"scale", KM_FLOATS, "[0.02, 0.33]", 1e-6, 1, 0}, {0}};
static const km_attr_spec a_size[] = {{"size", KM_PAIR, NULL, 1, 1 << 16, 0}, {0}};

const km_layer_spec km_layers[] = {
#define X(id, type, min_in, max_in, flags, attrs) {KM_L_##id, type, min_in, max_in, flags, attrs},
#include "layers.def"
#undef X
    {0}};
_Static_assert(sizeof km_layers / sizeof km_layers[0] == KM_L_COUNT + 1, "one spec per layer id");

const km_layer_spec *km_find_layer(const char *type) {
    for (const km_layer_spec *s = km_layers; s->type; s++)
        if (!strcmp(s->type, type)) return s;
    return NULL;
}

int km_attr_index(const km_layer_spec *s, const char *key) {
    for (int i = 0; s->attrs[i].key; i++)
        if (!strcmp(s->attrs[i].key, key)) return i;
    return -1;
}

void km_layer_list(char *out, size_t n) {
    size_t len = 0;
    out[0] = '\0';
    for (const km_layer_spec *s = km_layers; s->type && len < n; s++)
        len += (size_t)snprintf(out + len, n - len, "%s%s", s == km_layers ? "" : ", ", s->type);
}

char *km_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void km_where(const struct kiln_model *m, int line, char *out, size_t n) {
    if (line > 0 && line <= m->n_line_label)
        snprintf(out, n, "%s: %s: ", m->file, m->line_label[line - 1]);
    else if (line > 0)
        snprintf(out, n, "%s:%d: ", m->file, line);
    else
        snprintf(out, n, "%s: ", m->file);
}

void km_line_str(const struct kiln_model *m, int line, char *out, size_t n) {
    if (line > 0 && line <= m->n_line_label)
        snprintf(out, n, "%s", m->line_label[line - 1]);
    else if (line > 0)
        snprintf(out, n, "line %d", line);
    else if (n)
        out[0] = '\0';
}

int km_add_line_label(struct kiln_model *m, const char *label) {
    char **l = realloc(m->line_label, (size_t)(m->n_line_label + 1) * sizeof *l);
    if (!l) return 0;
    m->line_label = l;
    if (!(l[m->n_line_label] = km_strdup(label))) return 0;
    return ++m->n_line_label;
}

kiln_status km_node_error(kiln_status st, const struct kiln_model *m, const km_node *nd,
                          const char *fmt, ...) {
    char where[512];
    km_where(m, nd->line, where, sizeof where);
    kiln_error(st, "%snode '%s' (%s): ", where, nd->name, nd->spec->type);
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    kiln_error_append("%s", msg);
    return st;
}

void km_warn(struct kiln_model *m, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char **w = realloc(m->warnings, (size_t)(m->n_warn + 1) * sizeof *w);
    if (!w) return; /* a lost warning is better than a failed build */
    m->warnings = w;
    if ((w[m->n_warn] = km_strdup(msg))) m->n_warn++;
}

static int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la >= KILN_MODEL_MAX_NAME || lb >= KILN_MODEL_MAX_NAME) return 99;
    int prev[KILN_MODEL_MAX_NAME + 1], cur[KILN_MODEL_MAX_NAME + 1];
    for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int c = prev[j - 1] + (a[i - 1] != b[j - 1]);
            if (prev[j] + 1 < c) c = prev[j] + 1;
            if (cur[j - 1] + 1 < c) c = cur[j - 1] + 1;
            cur[j] = c;
        }
        memcpy(prev, cur, (lb + 1) * sizeof *prev);
    }
    return prev[lb];
}

const char *km_closest_name(const struct kiln_model *m, const char *name) {
    const char *best = NULL;
    int bd = 3;
    for (int i = 0; i < m->n; i++) {
        int d = edit_distance(name, m->nodes[i].name);
        if (d < bd) {
            bd = d;
            best = m->nodes[i].name;
        }
    }
    return best;
}

/* ---- building ---- */
kiln_status kiln_model_init(kiln_model_t *out, const char *file) {
    if (!out) return kiln_error(KILN_INVALID_ARGUMENT, "kiln_model_init: out is NULL");
    *out = NULL;
    struct kiln_model *m = calloc(1, sizeof *m);
    if (!m || !(m->file = km_strdup(file ? file : "<api>"))) {
        free(m);
        return kiln_error(KILN_OUT_OF_MEMORY, "kiln_model_init: out of memory");
    }
    *out = m;
    return KILN_OK;
}

void kiln_model_free(kiln_model_t m) {
    if (!m) return;
    for (int i = 0; i < m->n; i++)
        for (int k = 0; k < KM_MAX_ATTRS; k++) {
            free(m->nodes[i].av[k].raw);
            free(m->nodes[i].av[k].text);
        }
    for (int i = 0; i < m->n_vars; i++) free(m->vars[i].value);
    for (int i = 0; i < m->n_warn; i++) free(m->warnings[i]);
    free(m->warnings);
    free(m->vars);
    free(m->outputs);
    free(m->output_line);
    free(m->nodes);
    for (int i = 0; i < m->n_line_label; i++) free(m->line_label[i]);
    free(m->line_label);
    free(m->file);
    free(m);
}

static int valid_name(const char *s) {
    if (!s || !(isalpha((unsigned char)s[0]) || s[0] == '_')) return 0;
    size_t n = 0;
    for (; s[n]; n++)
        if (!isalnum((unsigned char)s[n]) && s[n] != '_') return 0;
    return n < KILN_MODEL_MAX_NAME;
}

static const char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

/* Splits "key=value, key=value" at top-level commas (brackets may hold commas). */
static kiln_status add_attrs(struct kiln_model *m, km_node *nd, const char *attrs) {
    size_t len = strlen(attrs);
    char *buf = km_strdup(attrs);
    if (!buf) return kiln_error(KILN_OUT_OF_MEMORY, "model: out of memory");
    kiln_status st = KILN_OK;
    size_t start = 0;
    int depth = 0;
    for (size_t i = 0; i <= len && !st; i++) {
        if (i < len && buf[i] == '[') depth++;
        if (i < len && buf[i] == ']') depth--;
        if (i < len && (buf[i] != ',' || depth > 0)) continue;
        buf[i] = '\0';
        char *item = buf + start;
        start = i + 1;
        const char *t = trim(item);
        if (!*t) {
            if (i < len || start > 1)
                st = km_node_error(KILN_INVALID_ARGUMENT, m, nd, "empty attribute in '%s'", attrs);
            continue;
        }
        char *eq = strchr(t, '=');
        if (!eq) {
            st = km_node_error(KILN_INVALID_ARGUMENT, m, nd,
                               "attribute '%s' has no value (write key=value)", t);
            break;
        }
        *eq = '\0';
        char keybuf[128];
        snprintf(keybuf, sizeof keybuf, "%s", t);
        const char *key = trim(keybuf);
        const char *val = trim(eq + 1);
        int k = km_attr_index(nd->spec, key);
        if (k < 0) {
            char known[512] = "";
            size_t kl = 0;
            for (int j = 0; nd->spec->attrs[j].key && kl < sizeof known; j++)
                kl += (size_t)snprintf(known + kl, sizeof known - kl, "%s%s", j ? ", " : "",
                                       nd->spec->attrs[j].key);
            st = km_node_error(KILN_INVALID_ARGUMENT, m, nd, "unknown attribute '%s' (%s takes %s)",
                               key, nd->spec->type, kl ? known : "no attributes");
            break;
        }
        if (nd->av[k].raw) {
            st = km_node_error(KILN_INVALID_ARGUMENT, m, nd, "attribute '%s' given twice", key);
            break;
        }
        if (!*val) {
            st = km_node_error(KILN_INVALID_ARGUMENT, m, nd, "attribute '%s' has an empty value",
                               key);
            break;
        }
        if (!(nd->av[k].raw = km_strdup(val))) {
            st = kiln_error(KILN_OUT_OF_MEMORY, "model: out of memory");
            break;
        }
        /* Values without variables are checked now, so the error points at the line even
           before finalize; the rest wait for their variables. */
        if (!strchr(val, '{')) {
            char why[256];
            km_attr_val tmp = {0};
            if (km_parse_value(&nd->spec->attrs[k], val, &tmp, why, sizeof why))
                st = km_node_error(KILN_INVALID_ARGUMENT, m, nd, "bad attribute %s=%s: %s", key,
                                   val, why);
        }
    }
    free(buf);
    if (!st)
        for (int j = 0; nd->spec->attrs[j].key; j++)
            if (!nd->spec->attrs[j].def && !nd->av[j].raw)
                return km_node_error(KILN_INVALID_ARGUMENT, m, nd,
                                     "missing attribute '%s' (required by %s)",
                                     nd->spec->attrs[j].key, nd->spec->type);
    return st;
}

static void node_clear(km_node *nd) {
    for (int k = 0; k < KM_MAX_ATTRS; k++) {
        free(nd->av[k].raw);
        free(nd->av[k].text);
    }
}

kiln_status km_add(struct kiln_model *m, int line, const char *name, const char *type,
                   const char *inputs, const char *attrs) {
    char where[512];
    km_where(m, line, where, sizeof where);
    if (!valid_name(name))
        return kiln_error(KILN_INVALID_ARGUMENT,
                          "%sbad node name '%s' (letters, digits and _, not starting with a "
                          "digit, at most %d characters)",
                          where, name ? name : "(null)", KILN_MODEL_MAX_NAME - 1);
    const km_layer_spec *spec = type ? km_find_layer(type) : NULL;
    if (!spec) {
        char list[1024];
        km_layer_list(list, sizeof list);
        return kiln_error(KILN_INVALID_ARGUMENT, "%snode '%s': unknown op '%s' (known: %s)", where,
                          name, type ? type : "(null)", list);
    }
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->nodes[i].name, name)) {
            char first[512];
            km_where(m, m->nodes[i].line, first, sizeof first);
            return kiln_error(KILN_INVALID_ARGUMENT,
                              "%snode '%s' (%s): duplicate name; '%s' is already defined at %.*s",
                              where, name, type, name, (int)strlen(first) - 2, first);
        }
    if (m->n == m->cap) {
        int cap = m->cap ? 2 * m->cap : 32;
        km_node *nn = realloc(m->nodes, (size_t)cap * sizeof *nn);
        if (!nn) return kiln_error(KILN_OUT_OF_MEMORY, "model: out of memory");
        m->nodes = nn;
        m->cap = cap;
    }
    km_node *nd = &m->nodes[m->n];
    memset(nd, 0, sizeof *nd);
    snprintf(nd->name, sizeof nd->name, "%s", name);
    nd->spec = spec;
    nd->line = line;
    if (inputs && *inputs) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", inputs);
        for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
             tok = strtok_r(NULL, ",", &save)) {
            const char *in = trim(tok);
            if (nd->n_in == KILN_MODEL_MAX_INPUTS)
                return km_node_error(KILN_INVALID_ARGUMENT, m, nd, "more than %d inputs",
                                     KILN_MODEL_MAX_INPUTS);
            if (!valid_name(in))
                return km_node_error(KILN_INVALID_ARGUMENT, m, nd, "bad input name '%s'", in);
            snprintf(nd->in_name[nd->n_in++], KILN_MODEL_MAX_NAME, "%s", in);
        }
    }
    for (int k = 0; nd->n_in > spec->max_in && k < nd->n_in; k++)
        if (km_attr_index(spec, nd->in_name[k]) >= 0)
            return km_node_error(KILN_INVALID_ARGUMENT, m, nd,
                                 "attribute '%s' without a value (write %s=VALUE)", nd->in_name[k],
                                 nd->in_name[k]);
    if (nd->n_in < spec->min_in || nd->n_in > spec->max_in) {
        if (spec->min_in == spec->max_in)
            return km_node_error(KILN_INVALID_ARGUMENT, m, nd, "takes %d input%s, got %d",
                                 spec->min_in, spec->min_in == 1 ? "" : "s", nd->n_in);
        return km_node_error(KILN_INVALID_ARGUMENT, m, nd, "takes %d to %d inputs, got %d",
                             spec->min_in, spec->max_in, nd->n_in);
    }
    kiln_status st = add_attrs(m, nd, attrs ? attrs : "");
    if (st) {
        node_clear(nd);
        return st;
    }
    m->n++;
    m->finalized = 0;
    return KILN_OK;
}

kiln_status kiln_model_add(kiln_model_t m, const char *name, const char *type, const char *inputs,
                           const char *attrs) {
    if (!m) return kiln_error(KILN_INVALID_ARGUMENT, "kiln_model_add: model is NULL");
    return km_add(m, 0, name, type, inputs, attrs);
}

kiln_status km_add_output(struct kiln_model *m, int line, const char *name) {
    char where[512];
    km_where(m, line, where, sizeof where);
    if (!valid_name(name))
        return kiln_error(KILN_INVALID_ARGUMENT, "%soutput: bad node name '%s'", where,
                          name ? name : "(null)");
    for (int i = 0; i < m->n_out; i++)
        if (!strcmp(m->outputs[i], name))
            return kiln_error(KILN_INVALID_ARGUMENT, "%soutput '%s' declared twice", where, name);
    void *o = realloc(m->outputs, (size_t)(m->n_out + 1) * sizeof *m->outputs);
    if (!o) return kiln_error(KILN_OUT_OF_MEMORY, "model: out of memory");
    m->outputs = o;
    int *l = realloc(m->output_line, (size_t)(m->n_out + 1) * sizeof *l);
    if (!l) return kiln_error(KILN_OUT_OF_MEMORY, "model: out of memory");
    m->output_line = l;
    snprintf(m->outputs[m->n_out], KILN_MODEL_MAX_NAME, "%s", name);
    m->output_line[m->n_out++] = line;
    m->finalized = 0;
    return KILN_OK;
}

kiln_status kiln_model_output(kiln_model_t m, const char *name) {
    if (!m) return kiln_error(KILN_INVALID_ARGUMENT, "kiln_model_output: model is NULL");
    return km_add_output(m, 0, name);
}

kiln_status km_set_var(struct kiln_model *m, int line, const char *name, const char *value) {
    char where[512];
    km_where(m, line, where, sizeof where);
    if (!valid_name(name) || !value)
        return kiln_error(KILN_INVALID_ARGUMENT, "%sbad variable '%s'", where,
                          name ? name : "(null)");
    if (strchr(value, '{') || strchr(value, '}'))
        return kiln_error(KILN_INVALID_ARGUMENT,
                          "%svariable '%s': a value may not refer to other variables", where, name);
    char *v = km_strdup(value);
    if (!v) return kiln_error(KILN_OUT_OF_MEMORY, "model: out of memory");
    for (int i = 0; i < m->n_vars; i++)
        if (!strcmp(m->vars[i].name, name)) {
            /* A `var` line is a default: a value set through the API before parsing wins. */
            if (line > 0 && m->vars[i].line == 0) {
                free(v);
                return KILN_OK;
            }
            free(m->vars[i].value);
            m->vars[i].value = v;
            m->vars[i].line = line;
            m->finalized = 0;
            return KILN_OK;
        }
    km_var *nv = realloc(m->vars, (size_t)(m->n_vars + 1) * sizeof *nv);
    if (!nv) {
        free(v);
        return kiln_error(KILN_OUT_OF_MEMORY, "model: out of memory");
    }
    m->vars = nv;
    snprintf(nv[m->n_vars].name, KILN_MODEL_MAX_NAME, "%s", name);
    nv[m->n_vars].value = v;
    nv[m->n_vars].line = line;
    m->n_vars++;
    m->finalized = 0;
    return KILN_OK;
}

const char *km_get_var(const struct kiln_model *m, const char *name) {
    for (int i = 0; i < m->n_vars; i++)
        if (!strcmp(m->vars[i].name, name)) return m->vars[i].value;
    return NULL;
}

kiln_status kiln_model_set_var(kiln_model_t m, const char *name, const char *value) {
    if (!m) return kiln_error(KILN_INVALID_ARGUMENT, "kiln_model_set_var: model is NULL");
    return km_set_var(m, 0, name, value);
}

/* ---- typed shorthands ---- */
kiln_status kiln_model_add_input(kiln_model_t m, const char *name, int h, int w, int c,
                                 kiln_dtype dtype) {
    char a[128], sh[3][16];
    const int v[3] = {h, w, c};
    const char *var[3] = {"{input_h}", "{input_w}", "{input_c}"};
    for (int k = 0; k < 3; k++) {
        if (v[k] > 0)
            snprintf(sh[k], sizeof sh[k], "%d", v[k]);
        else
            snprintf(sh[k], sizeof sh[k], "%s", var[k]);
    }
    snprintf(a, sizeof a, "shape=%sx%sx%s, dtype=%s", sh[0], sh[1], sh[2],
             dtype == KILN_U8 ? "u8" : "f32");
    return kiln_model_add(m, name, "input", NULL, a);
}

kiln_status kiln_model_add_conv2d(kiln_model_t m, const char *name, const char *input, int filters,
                                  int kernel, int stride, int same_padding) {
    char a[160];
    snprintf(a, sizeof a, "filters=%d, kernel=%d, stride=%d, padding=%s", filters, kernel, stride,
             same_padding ? "same" : "valid");
    return kiln_model_add(m, name, "conv2d", input, a);
}

kiln_status kiln_model_add_dense(kiln_model_t m, const char *name, const char *input, int units) {
    char a[64];
    snprintf(a, sizeof a, "units=%d", units);
    return kiln_model_add(m, name, "dense", input, a);
}

kiln_status kiln_model_add_maxpool(kiln_model_t m, const char *name, const char *input, int pool,
                                   int stride) {
    char a[64];
    snprintf(a, sizeof a, "pool=%d, stride=%d", pool, stride);
    return kiln_model_add(m, name, "maxpool", input, a);
}

kiln_status kiln_model_add_dropout(kiln_model_t m, const char *name, const char *input,
                                   float rate) {
    char a[64];
    snprintf(a, sizeof a, "rate=%.9g", rate);
    return kiln_model_add(m, name, "dropout", input, a);
}

kiln_status kiln_model_add_simple(kiln_model_t m, const char *name, const char *type,
                                  const char *input) {
    return kiln_model_add(m, name, type, input, NULL);
}

/* ---- queries ---- */
int kiln_model_node_count(kiln_model_t m) {
    return m ? m->n : 0;
}

int kiln_model_find(kiln_model_t m, const char *name) {
    if (!m || !name) return -1;
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->nodes[i].name, name)) return i;
    return -1;
}

const char *kiln_model_file(kiln_model_t m) {
    return m ? m->file : NULL;
}

kiln_status kiln_model_node(kiln_model_t m, int i, kiln_model_node_info *out) {
    if (!m || !out || i < 0 || i >= m->n)
        return kiln_error(KILN_INVALID_ARGUMENT, "kiln_model_node: no node %d", i);
    const km_node *nd = &m->nodes[i];
    memset(out, 0, sizeof *out);
    out->name = nd->name;
    out->type = nd->spec->type;
    out->line = nd->line;
    out->n_inputs = nd->n_in;
    for (int k = 0; k < nd->n_in; k++) {
        out->inputs[k] = nd->in_name[k];
        out->input_index[k] = m->finalized ? nd->in[k] : -1;
    }
    out->training_only = !!(nd->spec->flags & (KM_F_TRAIN | KM_F_EVAL_SKIP));
    out->host_only = !!(nd->spec->flags & KM_F_HOST);
    int ki = km_attr_index(nd->spec, "init");
    if (ki >= 0) out->init = kiln_model_attr(m, i, "init");
    if (!m->finalized) {
        if (ki >= 0 && !out->init) out->init = nd->av[ki].raw ? nd->av[ki].raw : "he";
        return KILN_OK;
    }
    out->ndim = nd->ndim;
    memcpy(out->shape, nd->shape, sizeof out->shape);
    out->dtype = nd->dtype;
    out->params = nd->params;
    out->flops = nd->flops;
    out->is_output = nd->is_output;
    return KILN_OK;
}

const char *kiln_model_attr(kiln_model_t m, int i, const char *key) {
    if (!m || i < 0 || i >= m->n || !key) return NULL;
    const km_node *nd = &m->nodes[i];
    int k = km_attr_index(nd->spec, key);
    if (k < 0) return NULL;
    if (m->finalized) return nd->av[k].set ? nd->av[k].text : NULL;
    return nd->av[k].raw
               ? nd->av[k].raw
               : (nd->spec->attrs[k].def && *nd->spec->attrs[k].def ? nd->spec->attrs[k].def
                                                                    : NULL);
}

kiln_status kiln_model_get_totals(kiln_model_t m, kiln_model_totals *out) {
    if (!m || !out) return kiln_error(KILN_INVALID_ARGUMENT, "kiln_model_get_totals: NULL");
    if (!m->finalized) return kiln_error(KILN_INVALID_ARGUMENT, "%s: model not finalized", m->file);
    *out = m->totals;
    return KILN_OK;
}

int kiln_model_warning_count(kiln_model_t m) {
    return m ? m->n_warn : 0;
}

const char *kiln_model_warning(kiln_model_t m, int i) {
    return m && i >= 0 && i < m->n_warn ? m->warnings[i] : NULL;
}
