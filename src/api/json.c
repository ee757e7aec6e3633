/*
 * json.c - the JSON gate every request body passes (strict UTF-8, no NUL or raw control
 * bytes in strings, bounded nesting, nothing after the document) and typed access to
 * request fields with errors that name the field, so every bad input gets a precise 400
 * instead of a crash, a silently truncated string or a silent default.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api_internal.h"

static int type_err(const char *key, const char *want, char *err, size_t errlen) {
    snprintf(err, errlen, "'%s' must be %s", key, want);
    return AIOS_ERR_INVALID;
}

int jp_string(const cJSON *obj, const char *key, bool required, const char **out, char *err, size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        if (!required) return AIOS_OK;
        snprintf(err, errlen, "'%s' is required", key);
        return AIOS_ERR_INVALID;
    }
    if (!cJSON_IsString(v)) return type_err(key, "a string", err, errlen);
    *out = v->valuestring;
    return AIOS_OK;
}

int jp_number(const cJSON *obj, const char *key, double lo, double hi, double *out, char *err, size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) return AIOS_OK;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return type_err(key, "a number", err, errlen);
    if (v->valuedouble < lo || v->valuedouble > hi) {
        snprintf(err, errlen, "'%s' must be between %g and %g, got %g", key, lo, hi, v->valuedouble);
        return AIOS_ERR_INVALID;
    }
    *out = v->valuedouble;
    return AIOS_OK;
}

int jp_int(const cJSON *obj, const char *key, long lo, long hi, long *out, char *err, size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) return AIOS_OK;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble != floor(v->valuedouble))
        return type_err(key, "an integer", err, errlen);
    if (v->valuedouble < (double)lo || v->valuedouble > (double)hi) {
        snprintf(err, errlen, "'%s' must be between %ld and %ld, got %.0f", key, lo, hi, v->valuedouble);
        return AIOS_ERR_INVALID;
    }
    *out = (long)v->valuedouble;
    return AIOS_OK;
}

int jp_bool(const cJSON *obj, const char *key, bool *out, char *err, size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) return AIOS_OK;
    if (!cJSON_IsBool(v)) return type_err(key, "true or false", err, errlen);
    *out = cJSON_IsTrue(v);
    return AIOS_OK;
}

int jp_depth_ok(const cJSON *j, int max_depth) {
    if (max_depth < 0) return 0;
    for (const cJSON *c = j ? j->child : NULL; c; c = c->next)
        if (!jp_depth_ok(c, max_depth - 1)) return 0;
    return 1;
}

void jp_add_doubles(cJSON *obj, const char *key, const double *v, int n) {
    cJSON *a = cJSON_AddArrayToObject(obj, key);
    for (int i = 0; a && i < n; i++) kern_json_push(a, cJSON_CreateNumber(round(v[i] * 1e6) / 1e6));
}

int jp_priority(api_req *r, const cJSON *obj, char *err, size_t errlen) {
    long v = -1;
    int rc = jp_int(obj, "priority", AIOS_PRIORITY_MIN, AIOS_PRIORITY_MAX, &v, err, errlen);
    if (!rc && v >= 0) r->priority = (int)v;
    return rc;
}

/* ---- the JSON gate ----
 *
 * Every JSON request body passes jp_parse_body() once, before any handler sees it. A scan
 * over the raw text refuses what cJSON would accept but mangle: invalid UTF-8 (overlong
 * forms, surrogates, code points past U+10FFFF, stray continuation bytes, a body cut inside
 * a sequence), raw control bytes inside strings (a raw NUL would silently cut the string),
 * \u0000 and lone UTF-16 surrogate escapes, and nesting deeper than server.json_max_depth.
 * Each error names the field it is in ("messages[0].content"). cJSON then parses, and bytes
 * after the document (other than whitespace) are refused too. */

#define JP_MAX_FRAMES 520 /* > the largest server.json_max_depth (512) */

typedef struct jp_frame {
    bool array;
    bool want_key;   /* object: the next string is a member name */
    long index;      /* array: index of the current element */
    const char *key; /* object: raw text of the current member name */
    size_t key_len;
} jp_frame;

typedef struct jp_scan {
    const unsigned char *s;
    size_t n;
    jp_frame *st;
    int depth; /* open containers */
    int max_depth;
    char *err;
    size_t errlen;
} jp_scan;

/* Appends the raw text of a member name, printable ASCII only (the message must stay valid
 * UTF-8 and readable), at most 40 bytes. */
static void path_key(strbuf *b, const char *k, size_t n) {
    for (size_t i = 0; i < n && i < 40; i++) {
        char c = k[i];
        sb_append(b, c >= 0x20 && c < 0x7F ? &c : "?", 1);
    }
    if (n > 40) sb_puts(b, "...");
}

/* "messages[0].content", or "messages[0].<member name>" when the string is a key. */
static void scan_error(const jp_scan *sc, bool in_key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void scan_error(const jp_scan *sc, bool in_key, const char *fmt, ...) {
    strbuf b;
    sb_init(&b, 512);
    int shown = sc->depth < 24 ? sc->depth : 24;
    for (int d = 0; d < shown; d++) {
        const jp_frame *f = &sc->st[d];
        if (f->array) sb_printf(&b, "[%ld]", f->index);
        else if (f->key && !(in_key && d == sc->depth - 1)) {
            if (b.len) sb_puts(&b, ".");
            path_key(&b, f->key, f->key_len);
        }
    }
    if (sc->depth > shown) sb_puts(&b, "...");
    if (in_key) sb_puts(&b, b.len ? ".<member name>" : "<member name>");
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(sc->err, sc->errlen, "%s: %s", b.len ? b.data : "the body", msg);
    sb_free(&b);
}

static int hex4(const unsigned char *p, unsigned *out) {
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned c = p[k], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') d = (c | 0x20) - 'a' + 10;
        else return 0;
        v = v << 4 | d;
    }
    *out = v;
    return 1;
}

/* A \u escape at s[*j] (the backslash). Malformed escapes are left to cJSON. */
static int scan_u_escape(jp_scan *sc, size_t *j, bool in_key) {
    const unsigned char *s = sc->s;
    unsigned cp, lo;
    if (*j + 6 > sc->n || !hex4(s + *j + 2, &cp)) {
        *j = sc->n; /* cJSON reports the malformed escape */
        return AIOS_OK;
    }
    if (cp == 0) {
        scan_error(sc, in_key, "NUL (\\u0000) is not allowed in strings");
        return AIOS_ERR_INVALID;
    }
    if (cp >= 0xDC00 && cp <= 0xDFFF) {
        scan_error(sc, in_key, "\\u%04x is a lone UTF-16 low surrogate (not a character)", cp);
        return AIOS_ERR_INVALID;
    }
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (*j + 12 > sc->n || s[*j + 6] != '\\' || s[*j + 7] != 'u' || !hex4(s + *j + 8, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
            scan_error(sc, in_key, "\\u%04x is a lone UTF-16 high surrogate (not a character)", cp);
            return AIOS_ERR_INVALID;
        }
        *j += 12;
        return AIOS_OK;
    }
    *j += 6;
    return AIOS_OK;
}

/* The string whose opening quote is at s[*i]; *i ends past its closing quote. */
static int scan_string(jp_scan *sc, size_t *i, bool in_key) {
    const unsigned char *s = sc->s;
    size_t j = *i + 1;
    while (j < sc->n) {
        unsigned c = s[j];
        if (c == '"') {
            *i = j + 1;
            return AIOS_OK;
        }
        if (c == '\\') {
            if (j + 1 < sc->n && s[j + 1] == 'u') {
                int rc = scan_u_escape(sc, &j, in_key);
                if (rc) return rc;
            } else j += 2;
            continue;
        }
        if (c < 0x20) {
            if (c == 0) scan_error(sc, in_key, "a raw NUL byte is not allowed in strings (offset %zu)", j);
            else scan_error(sc, in_key, "unescaped control byte 0x%02X in a string (offset %zu; JSON needs \\u%04X)", c, j, c);
            return AIOS_ERR_INVALID;
        }
        int k = kern_utf8_len(s + j, sc->n - j);
        if (k < 0) {
            scan_error(sc, in_key, "invalid UTF-8 (the body ends inside a multi-byte sequence)");
            return AIOS_ERR_INVALID;
        }
        if (k == 0) {
            scan_error(sc, in_key, "invalid UTF-8 (byte 0x%02X at offset %zu)", c, j);
            return AIOS_ERR_INVALID;
        }
        j += (size_t)k;
    }
    *i = sc->n; /* unterminated: cJSON reports it */
    return AIOS_OK;
}

/* A value starts at the current depth: refuse it if that is too deep. */
static int scan_value(jp_scan *sc) {
    if (sc->depth <= sc->max_depth) return AIOS_OK;
    snprintf(sc->err, sc->errlen, "JSON nested deeper than server.json_max_depth (%d)", sc->max_depth);
    return AIOS_ERR_INVALID;
}

static int scan_text(jp_scan *sc) {
    bool in_scalar = false;
    for (size_t i = 0; i < sc->n;) {
        unsigned c = sc->s[i];
        jp_frame *top = sc->depth ? &sc->st[sc->depth - 1] : NULL;
        bool scalar = !(c == '"' || c == '{' || c == '[' || c == '}' || c == ']' || c == ',' || c == ':' || c == ' ' ||
                        c == '\t' || c == '\n' || c == '\r');
        if (scalar && !in_scalar && scan_value(sc)) return AIOS_ERR_INVALID;
        in_scalar = scalar;
        if (c == '"') {
            bool key = top && !top->array && top->want_key;
            size_t start = i + 1;
            if (!key && scan_value(sc)) return AIOS_ERR_INVALID;
            int rc = scan_string(sc, &i, key);
            if (rc) return rc;
            if (key) {
                top->key = (const char *)sc->s + start;
                top->key_len = i > start ? i - start - 1 : 0;
                top->want_key = false;
            }
            continue;
        }
        if (c == '{' || c == '[') {
            if (scan_value(sc)) return AIOS_ERR_INVALID;
            sc->st[sc->depth++] = (jp_frame){.array = c == '[', .want_key = c == '{'};
        } else if ((c == '}' || c == ']') && sc->depth) {
            sc->depth--;
        } else if (c == ',' && top) {
            if (top->array) top->index++;
            else *top = (jp_frame){.want_key = true};
        } else if (c >= 0x80) {
            int k = kern_utf8_len(sc->s + i, sc->n - i);
            if (k <= 0) {
                snprintf(sc->err, sc->errlen, "the body is not valid UTF-8 (byte 0x%02X at offset %zu)", c, i);
                return AIOS_ERR_INVALID;
            }
            i += (size_t)k;
            continue;
        }
        i++;
    }
    return AIOS_OK;
}

int jp_parse_body(const char *text, size_t len, int max_depth, cJSON **out, char *err, size_t errlen) {
    *out = NULL;
    if (!len) {
        snprintf(err, errlen, "the request body must be a JSON object");
        return AIOS_ERR_INVALID;
    }
    if (max_depth > JP_MAX_FRAMES - 2) max_depth = JP_MAX_FRAMES - 2;
    jp_frame *frames = malloc(sizeof *frames * JP_MAX_FRAMES);
    if (!frames) return AIOS_ERR_NOMEM;
    jp_scan sc = {(const unsigned char *)text, len, frames, 0, max_depth, err, errlen};
    int rc = scan_text(&sc);
    free(frames);
    if (rc) return rc;
    const char *end = NULL;
    kern_json_oom_clear();
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!j && kern_json_oom()) {
        snprintf(err, errlen, "out of memory parsing the request body");
        return AIOS_ERR_NOMEM;
    }
    if (!j) {
        snprintf(err, errlen, "malformed JSON in the request body");
        return AIOS_ERR_INVALID;
    }
    size_t at = (size_t)(end - text);
    while (at < len && (text[at] == ' ' || text[at] == '\t' || text[at] == '\n' || text[at] == '\r')) at++;
    if (at < len) {
        cJSON_Delete(j);
        snprintf(err, errlen, "unexpected bytes after the JSON document (offset %zu of %zu)", at, len);
        return AIOS_ERR_INVALID;
    }
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        snprintf(err, errlen, "the request body must be a JSON object");
        return AIOS_ERR_INVALID;
    }
    *out = j;
    return AIOS_OK;
}

int jp_openai_common(const cJSON *body, char *err, size_t errlen) {
    const char *model = NULL, *user = NULL;
    int rc = jp_string(body, "model", false, &model, err, errlen);
    if (!rc && model && !*model) {
        snprintf(err, errlen, "'model' must be a non-empty string (or absent for the default model)");
        rc = AIOS_ERR_INVALID;
    }
    if (!rc) rc = jp_string(body, "user", false, &user, err, errlen);
    return rc;
}

bool jp_printable_name(const char *s) {
    if (!*s || !kern_utf8_valid(s, strlen(s))) return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7F) return false;
    return true;
}

int jp_invalid(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return AIOS_ERR_INVALID;
}
