/* The model text format (attribute values: model-value.c).

   One statement per line; `#` starts a comment; blank lines are ignored; a statement whose
   parentheses or brackets are still open continues on the next line (its errors report the
   line where it starts). Statements:

     var NAME = VALUE              a variable default, used as {NAME} in attribute values;
                                   finalize sets input_h, input_w, input_c and classes from
                                   its config, overriding these defaults
     NAME = TYPE(IN, IN, key=value, key=value)
                                   a node: inputs by name (defined on earlier lines), then
                                   attributes; see MODEL-FORMAT.md for every type and key
     output(NAME, NAME...)         the model outputs (the logits the loss reads)

   Names: letters, digits and _, not starting with a digit, at most 63 characters.
   Values: integers (64), sizes (3 or 3x5 for height x width; 28x28x1 for shapes), floats
   (0.5, 1e-4, 1/255), lists ([0.485, 0.456, 0.406]), booleans (true/false), words (same,
   horizontal). `{name}` anywhere in a value is replaced by the variable's value at finalize.
   Unknown types and attributes, missing required attributes, malformed values, duplicate
   names and unknown or later-defined inputs are errors naming file:line and the node. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/backend-impl.h"
#include "model-impl.h"

/* ---- the text format ---- */

static char *strip(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

static int is_ident(const char *s) {
    if (!(isalpha((unsigned char)*s) || *s == '_')) return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_') return 0;
    return 1;
}

/* `(` ... `)` of a call: returns the inside (NUL-terminated in place), or NULL. */
static char *call_args(char *s, char **name) {
    char *open = strchr(s, '(');
    size_t n = strlen(s);
    if (!open || !n || s[n - 1] != ')') return NULL;
    *open = '\0';
    s[n - 1] = '\0';
    *name = strip(s);
    return open + 1;
}

static kiln_status parse_statement(struct kiln_model *m, int line, char *stmt) {
    char where[512];
    km_where(m, line, where, sizeof where);
    char *s = strip(stmt);
    if (!strncmp(s, "var", 3) && isspace((unsigned char)s[3])) {
        char *eq = strchr(s, '=');
        if (!eq) return kiln_error(KILN_INVALID_ARGUMENT, "%sexpected: var NAME = VALUE", where);
        *eq = '\0';
        char *name = strip(s + 3), *value = strip(eq + 1);
        if (!is_ident(name) || !*value)
            return kiln_error(KILN_INVALID_ARGUMENT, "%sexpected: var NAME = VALUE", where);
        return km_set_var(m, line, name, value);
    }
    char *eq = strchr(s, '=');
    char *paren = strchr(s, '(');
    if (!eq || (paren && paren < eq)) { /* output(a, b) */
        char *fn = NULL, *args = call_args(s, &fn);
        if (!args || strcmp(fn, "output"))
            return kiln_error(KILN_INVALID_ARGUMENT,
                              "%sexpected 'NAME = TYPE(inputs, key=value...)', "
                              "'output(NAME...)' or 'var NAME = VALUE', got '%s'",
                              where, s);
        for (char *save = NULL, *tok = strtok_r(args, ",", &save); tok;
             tok = strtok_r(NULL, ",", &save)) {
            kiln_status st = km_add_output(m, line, strip(tok));
            if (st) return st;
        }
        return KILN_OK;
    }
    *eq = '\0';
    char *name = strip(s);
    char *rhs = strip(eq + 1);
    char *type = NULL, *args = call_args(rhs, &type);
    if (!is_ident(name))
        return kiln_error(KILN_INVALID_ARGUMENT, "%sbad node name '%s'", where, name);
    if (!args)
        return kiln_error(KILN_INVALID_ARGUMENT,
                          "%snode '%s': expected TYPE(inputs, key=value...) after '='", where,
                          name);
    if (!is_ident(type))
        return kiln_error(KILN_INVALID_ARGUMENT, "%snode '%s': bad op name '%s'", where, name,
                          type);
    /* Split the arguments at top-level commas into inputs and attributes. */
    size_t len = strlen(args);
    char *inputs = calloc(1, len + 2), *attrs = calloc(1, len + 2);
    if (!inputs || !attrs) {
        free(inputs);
        free(attrs);
        return kiln_error(KILN_OUT_OF_MEMORY, "model: out of memory");
    }
    kiln_status st = KILN_OK;
    int depth = 0;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && args[i] == '[') depth++;
        if (i < len && args[i] == ']') depth--;
        if (i < len && (args[i] != ',' || depth > 0)) continue;
        args[i] = '\0';
        char *item = strip(args + start);
        start = i + 1;
        if (!*item) {
            if (len) {
                st = kiln_error(KILN_INVALID_ARGUMENT, "%snode '%s' (%s): empty argument", where,
                                name, type);
                break;
            }
            continue;
        }
        char *dst = strchr(item, '=') ? attrs : inputs;
        if (*dst) strcat(dst, ",");
        strcat(dst, item);
    }
    if (!st) st = km_add(m, line, name, type, inputs, attrs);
    free(inputs);
    free(attrs);
    return st;
}

kiln_status kiln_model_parse_string(const char *text, const char *file, kiln_model_t *out) {
    if (!text || !out) return kiln_error(KILN_INVALID_ARGUMENT, "kiln_model_parse_string: NULL");
    *out = NULL;
    kiln_model_t m;
    kiln_status st = kiln_model_init(&m, file ? file : "<string>");
    if (st) return st;
    size_t cap = 256, len = 0;
    char *stmt = malloc(cap);
    if (!stmt) {
        kiln_model_free(m);
        return kiln_error(KILN_OUT_OF_MEMORY, "model: out of memory");
    }
    int line = 0, start_line = 0, depth = 0;
    const char *p = text;
    while (*p && !st) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        line++;
        const char *hash = memchr(p, '#', n);
        size_t keep = hash ? (size_t)(hash - p) : n;
        if (len + keep + 2 > cap) {
            while (len + keep + 2 > cap) cap *= 2;
            char *ns = realloc(stmt, cap);
            if (!ns) {
                st = kiln_error(KILN_OUT_OF_MEMORY, "model: out of memory");
                break;
            }
            stmt = ns;
        }
        if (!len) start_line = line;
        for (size_t i = 0; i < keep; i++) {
            char c = p[i];
            if (c == '(' || c == '[') depth++;
            if (c == ')' || c == ']') depth--;
            stmt[len++] = c == '\t' || c == '\r' ? ' ' : c;
        }
        stmt[len++] = ' ';
        stmt[len] = '\0';
        p = nl ? nl + 1 : p + n;
        if (depth < 0) {
            char where[512];
            km_where(m, start_line, where, sizeof where);
            st = kiln_error(KILN_INVALID_ARGUMENT, "%sunbalanced ')' or ']'", where);
            break;
        }
        if (depth > 0) continue;
        char *t = strip(stmt);
        if (*t) st = parse_statement(m, start_line, t);
        len = 0;
    }
    if (!st && depth > 0) {
        char where[512];
        km_where(m, start_line, where, sizeof where);
        st = kiln_error(KILN_INVALID_ARGUMENT, "%sunclosed '(' or '[' at the end of the file",
                        where);
    }
    free(stmt);
    if (st) {
        kiln_model_free(m);
        return st;
    }
    *out = m;
    return KILN_OK;
}

kiln_status kiln_model_parse_file(const char *path, kiln_model_t *out) {
    if (!path || !out) return kiln_error(KILN_INVALID_ARGUMENT, "kiln_model_parse_file: NULL");
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return kiln_error(KILN_IO, "%s: cannot open the model file", path);
    /* A model description is small; refusing a huge file beats reading a wrong path. */
    const long limit = 16L << 20;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return kiln_error(KILN_OUT_OF_MEMORY, "%s: out of memory", path);
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, 4096, f);
        len += got;
        if (got < 4096) break;
        if ((long)len > limit) {
            free(buf);
            fclose(f);
            return kiln_error(KILN_INVALID_ARGUMENT, "%s: larger than %ld MiB: not a model file",
                              path, limit >> 20);
        }
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return kiln_error(KILN_IO, "%s: read error", path);
    }
    buf[len] = '\0';
    if (memchr(buf, '\0', len)) {
        free(buf);
        return kiln_error(KILN_INVALID_ARGUMENT, "%s: binary data: not a model file", path);
    }
    kiln_status st = kiln_model_parse_string(buf, path, out);
    free(buf);
    return st;
}
