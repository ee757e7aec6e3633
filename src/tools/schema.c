/*
 * schema.c - lint and check of tool-parameter schemas, a JSON Schema subset (schema.h).
 *
 * One table of keywords drives both passes: a row names the keyword, its lint (is the
 * keyword well-formed?) and its check (does a value satisfy it?), so adding a keyword is
 * one row and two small functions. Rows run in table order, which puts type before the
 * range, length and structure keywords: a value of the wrong type is reported as such,
 * not as a confusing range error. Lint recurses over the schema, check over schema and
 * value together (only where the value goes, so a deep schema costs nothing for a shallow
 * value); both count subschema levels in the one context and stop at
 * TOOL_SCHEMA_MAX_DEPTH. Messages are built in bounded buffers that never end in half a
 * UTF-8 character, since they go back to the model inside JSON.
 */
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "aios/result.h"
#include "schema.h"

#define SCHEMA_ROOT "parameters"
#define SCHEMA_TEXT 96 /* bytes of one quoted value or enum entry in a message */
#define SCHEMA_WHY 256 /* bytes of a failed branch's message inside an anyOf/oneOf one */

/* Where a pass is: the caller's error buffer, the path of the current value (check) or
 * schema keyword (lint), and how many subschemas deep it is. */
typedef struct schema_ctx {
    char *err;
    size_t errlen;
    char path[TOOL_SCHEMA_PATH_MAX];
    size_t plen;
    int path_cut; /* segments left out of path because they did not fit */
    int depth;
} schema_ctx;

#define PATH_CUT ((size_t)-1) /* path_push's mark for a segment left out */

static int lint_node(schema_ctx *c, const cJSON *s);
static int check_node(schema_ctx *c, const cJSON *s, const cJSON *v);

/* ---- bounded text ---- */

/* Length of s[0..len) without a trailing incomplete UTF-8 sequence. */
static size_t utf8_cut(const char *s, size_t len) {
    size_t i = len, cont = 0;
    while (i > 0 && cont < 3 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) i--, cont++;
    if (i == 0) return len;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead >= 0xF0 ? 3 : lead >= 0xE0 ? 2 : lead >= 0xC0 ? 1 : 0;
    return cont < need ? i - 1 : len;
}

/* Appends to buf (cap bytes, *len used). Once something does not fit, the text is cut at a
 * character boundary and ends in "..." (room permitting), and *len is set to cap, so later
 * appends do nothing. */
static void text_vappend(char *buf, size_t cap, size_t *len, const char *fmt, va_list ap) {
    if (!buf || *len >= cap) return;
    int n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    if (n < 0) {
        buf[*len] = '\0';
        return;
    }
    if ((size_t)n < cap - *len) {
        *len += (size_t)n;
        return;
    }
    if (cap > 4) memcpy(buf + utf8_cut(buf, cap - 4), "...", 4);
    else buf[utf8_cut(buf, cap - 1)] = '\0';
    *len = cap;
}

__attribute__((format(printf, 4, 5))) static void text_append(char *buf, size_t cap, size_t *len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    text_vappend(buf, cap, len, fmt, ap);
    va_end(ap);
}

/* Shortest of %.15g and %.17g that reads back as d: 0.1 prints as 0.1, 12 as 12. */
static const char *num_text(char *buf, size_t n, double d) {
    snprintf(buf, n, "%.15g", d);
    if (strtod(buf, NULL) != d) snprintf(buf, n, "%.17g", d);
    return buf;
}

/* A JSON value as a schema writes it: "c", 1, [1,2]. */
static const char *json_text(char *buf, size_t n, const cJSON *v) {
    char *p = cJSON_PrintUnformatted(v);
    size_t len = 0;
    buf[0] = '\0';
    text_append(buf, n, &len, "%s", p ? p : "?");
    free(p);
    return buf;
}

/* The value a message is about: strings in single quotes ('kelvin'), the rest as JSON. */
static const char *value_text(char *buf, size_t n, const cJSON *v) {
    size_t len = 0;
    buf[0] = '\0';
    if (!v) text_append(buf, n, &len, "nothing");
    else if (cJSON_IsString(v)) text_append(buf, n, &len, "'%s'", v->valuestring);
    else json_text(buf, n, v);
    return buf;
}

static size_t utf8_len(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* ---- context: error and path ---- */

static void ctx_init(schema_ctx *c, char *err, size_t errlen) {
    c->err = errlen ? err : NULL;
    c->errlen = errlen;
    if (c->err) c->err[0] = '\0';
    c->plen = (size_t)snprintf(c->path, sizeof c->path, "%s", SCHEMA_ROOT);
    c->path_cut = 0;
    c->depth = 0;
}

/* Sets the error to "<path>: <message>"; returns AIOS_ERR_INVALID. */
__attribute__((format(printf, 2, 3))) static int fail(schema_ctx *c, const char *fmt, ...) {
    size_t len = 0;
    va_list ap;
    if (!c->err) return AIOS_ERR_INVALID;
    c->err[0] = '\0';
    text_append(c->err, c->errlen, &len, "%s%s: ", c->path, c->path_cut ? "..." : "");
    va_start(ap, fmt);
    text_vappend(c->err, c->errlen, &len, fmt, ap);
    va_end(ap);
    return AIOS_ERR_INVALID;
}

/* Appends ".name" (name != NULL) or "[index]" to the path; path_pop(mark) undoes it. A
 * segment goes in whole or not at all, and none after one that did not fit, so a long path
 * reads as its true beginning followed by "..." and popping restores it exactly. */
static size_t path_push(schema_ctx *c, const char *name, int index) {
    size_t room = sizeof c->path - c->plen;
    int n = c->path_cut ? -1
        : name          ? snprintf(c->path + c->plen, room, ".%s", name)
                        : snprintf(c->path + c->plen, room, "[%d]", index);
    if (n >= 0 && (size_t)n < room) {
        size_t mark = c->plen;
        c->plen += (size_t)n;
        return mark;
    }
    c->path[c->plen] = '\0';
    c->path_cut++;
    return PATH_CUT;
}

static void path_pop(schema_ctx *c, size_t mark) {
    if (mark == PATH_CUT) {
        c->path_cut--;
        return;
    }
    c->plen = mark;
    c->path[mark] = '\0';
}

/* Counts one more subschema level, or fails when that would pass the limit. */
static int depth_enter(schema_ctx *c) {
    if (c->depth >= TOOL_SCHEMA_MAX_DEPTH) return fail(c, "schema nested deeper than %d levels", TOOL_SCHEMA_MAX_DEPTH);
    c->depth++;
    return AIOS_OK;
}

/* Lints / checks a subschema found under the segment (name or [index]). */
static int lint_sub(schema_ctx *c, const cJSON *s, const char *name, int index) {
    size_t mark = path_push(c, name, index);
    int rc = lint_node(c, s);
    path_pop(c, mark);
    return rc;
}

static int check_sub(schema_ctx *c, const cJSON *s, const cJSON *v, const char *name, int index) {
    size_t mark = path_push(c, name, index);
    int rc = check_node(c, s, v);
    path_pop(c, mark);
    return rc;
}

/* ---- types ---- */

typedef enum schema_type {
    SCHEMA_TYPE_NULL = 1u << 0,
    SCHEMA_TYPE_BOOLEAN = 1u << 1,
    SCHEMA_TYPE_OBJECT = 1u << 2,
    SCHEMA_TYPE_ARRAY = 1u << 3,
    SCHEMA_TYPE_NUMBER = 1u << 4, /* before INTEGER: a number's name is "number" */
    SCHEMA_TYPE_INTEGER = 1u << 5,
    SCHEMA_TYPE_STRING = 1u << 6,
} schema_type;

static const struct {
    const char *name, *phrase;
    unsigned bit;
} TYPES[] = {
    {"null", "null", SCHEMA_TYPE_NULL},          {"boolean", "a boolean", SCHEMA_TYPE_BOOLEAN},
    {"object", "an object", SCHEMA_TYPE_OBJECT}, {"array", "an array", SCHEMA_TYPE_ARRAY},
    {"number", "a number", SCHEMA_TYPE_NUMBER},  {"integer", "an integer", SCHEMA_TYPE_INTEGER},
    {"string", "a string", SCHEMA_TYPE_STRING},
};
#define N_TYPES (sizeof TYPES / sizeof TYPES[0])

static unsigned type_bit(const char *name) {
    for (size_t i = 0; i < N_TYPES; i++)
        if (strcmp(name, TYPES[i].name) == 0) return TYPES[i].bit;
    return 0;
}

static bool is_integral(double d) { return isfinite(d) && d == floor(d); }

/* The types a value has: a number with no fractional part is both number and integer. */
static unsigned value_types(const cJSON *v) {
    if (cJSON_IsNull(v)) return SCHEMA_TYPE_NULL;
    if (cJSON_IsBool(v)) return SCHEMA_TYPE_BOOLEAN;
    if (cJSON_IsObject(v)) return SCHEMA_TYPE_OBJECT;
    if (cJSON_IsArray(v)) return SCHEMA_TYPE_ARRAY;
    if (cJSON_IsString(v)) return SCHEMA_TYPE_STRING;
    if (cJSON_IsNumber(v)) return SCHEMA_TYPE_NUMBER | (is_integral(v->valuedouble) ? SCHEMA_TYPE_INTEGER : 0);
    return 0;
}

static const char *value_type_name(const cJSON *v) {
    unsigned have = value_types(v);
    for (size_t i = 0; i < N_TYPES; i++)
        if (have & TYPES[i].bit) return TYPES[i].name;
    return "nothing";
}

/* "a string" for one type, "string or null" for several. */
static const char *expected_text(char *buf, size_t n, unsigned mask) {
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < N_TYPES; i++) {
        if (!(mask & TYPES[i].bit)) continue;
        if (!(mask & (mask - 1))) return TYPES[i].phrase;
        text_append(buf, n, &len, "%s%s", len ? " or " : "", TYPES[i].name);
    }
    return buf;
}

/* Reads "type" (a name or a non-empty list of names) into *mask, or fails naming the
 * unknown name. Shared by lint and check, so check fails closed on a bad type. */
static int type_parse(schema_ctx *c, const cJSON *kw, unsigned *mask) {
    const cJSON *e;
    *mask = 0;
    if (cJSON_IsString(kw)) {
        if (!(*mask = type_bit(kw->valuestring))) return fail(c, "unknown type '%s'", kw->valuestring);
        return AIOS_OK;
    }
    if (!cJSON_IsArray(kw) || !kw->child) return fail(c, "must be a type name or a non-empty list of them");
    cJSON_ArrayForEach(e, kw) {
        if (!cJSON_IsString(e)) return fail(c, "must list type names");
        unsigned bit = type_bit(e->valuestring);
        if (!bit) return fail(c, "unknown type '%s'", e->valuestring);
        *mask |= bit;
    }
    return AIOS_OK;
}

/* ---- patterns ---- */

/* Compiles a pattern keyword (POSIX ERE); on failure says why. regfree on AIOS_OK. */
static int pattern_compile(schema_ctx *c, const cJSON *kw, regex_t *re) {
    char why[128];
    if (!cJSON_IsString(kw)) return fail(c, "must be a string");
    int rc = regcomp(re, kw->valuestring, REG_EXTENDED | REG_NOSUB);
    if (rc == 0) return AIOS_OK;
    regerror(rc, re, why, sizeof why);
    return fail(c, "invalid pattern '%s': %s", kw->valuestring, why);
}

/* ---- lint: one function per keyword shape; the path already ends in the keyword ---- */

static int lint_type(schema_ctx *c, const cJSON *kw) {
    unsigned mask;
    return type_parse(c, kw, &mask);
}

static int lint_number(schema_ctx *c, const cJSON *kw) { return cJSON_IsNumber(kw) ? AIOS_OK : fail(c, "must be a number"); }

static int lint_count(schema_ctx *c, const cJSON *kw) {
    if (cJSON_IsNumber(kw) && kw->valuedouble >= 0 && is_integral(kw->valuedouble)) return AIOS_OK;
    return fail(c, "must be a non-negative integer");
}

static int lint_bool(schema_ctx *c, const cJSON *kw) { return cJSON_IsBool(kw) ? AIOS_OK : fail(c, "must be true or false"); }

static int lint_nonempty_array(schema_ctx *c, const cJSON *kw) {
    return cJSON_IsArray(kw) && kw->child ? AIOS_OK : fail(c, "must be a non-empty array");
}

static int lint_pattern(schema_ctx *c, const cJSON *kw) {
    regex_t re;
    int rc = pattern_compile(c, kw, &re);
    if (rc == AIOS_OK) regfree(&re);
    return rc;
}

static int lint_required(schema_ctx *c, const cJSON *kw) {
    const cJSON *e;
    int i = 0;
    if (!cJSON_IsArray(kw)) return fail(c, "must be an array of field names");
    cJSON_ArrayForEach(e, kw) {
        if (!cJSON_IsString(e)) return fail(c, "entry %d must be a field name (a string)", i);
        i++;
    }
    return AIOS_OK;
}

static int lint_properties(schema_ctx *c, const cJSON *kw) {
    const cJSON *m;
    if (!cJSON_IsObject(kw)) return fail(c, "must be an object of field schemas");
    cJSON_ArrayForEach(m, kw) {
        int rc = lint_sub(c, m, m->string, 0);
        if (rc != AIOS_OK) return rc;
    }
    return AIOS_OK;
}

static int lint_schema_list(schema_ctx *c, const cJSON *kw) {
    const cJSON *e;
    int i = 0, rc = lint_nonempty_array(c, kw);
    if (rc != AIOS_OK) return rc;
    cJSON_ArrayForEach(e, kw) {
        rc = lint_sub(c, e, NULL, i++);
        if (rc != AIOS_OK) return rc;
    }
    return AIOS_OK;
}

/* ---- check: one function per keyword; each passes values the keyword does not apply to,
 * and skips a malformed keyword (lint's job) unless noted ---- */

static int check_type(schema_ctx *c, const cJSON *kw, const cJSON *s, const cJSON *v) {
    char want[64];
    unsigned mask;
    (void)s;
    int rc = type_parse(c, kw, &mask);
    if (rc != AIOS_OK || (value_types(v) & mask)) return rc;
    return fail(c, "expected %s, got %s", expected_text(want, sizeof want, mask), value_type_name(v));
}

static int check_const(schema_ctx *c, const cJSON *kw, const cJSON *s, const cJSON *v) {
    char have[SCHEMA_TEXT], want[SCHEMA_TEXT];
    (void)s;
    if (cJSON_Compare(v, kw, true)) return AIOS_OK;
    return fail(c, "%s is not the constant %s", value_text(have, sizeof have, v), json_text(want, sizeof want, kw));
}

static int check_enum(schema_ctx *c, const cJSON *kw, const cJSON *s, const cJSON *v) {
    char have[SCHEMA_TEXT], one[SCHEMA_TEXT], list[2 * SCHEMA_TEXT];
    size_t len = 0;
    const cJSON *e;
    (void)s;
    if (!cJSON_IsArray(kw)) return AIOS_OK;
    cJSON_ArrayForEach(e, kw) if (cJSON_Compare(v, e, true)) return AIOS_OK;
    list[0] = '\0';
    cJSON_ArrayForEach(e, kw) text_append(list, sizeof list, &len, "%s%s", len ? ", " : "", json_text(one, sizeof one, e));
    return fail(c, "%s is not one of %s", value_text(have, sizeof have, v), list);
}

typedef enum schema_bound {
    SCHEMA_BOUND_MIN,
    SCHEMA_BOUND_MAX,
    SCHEMA_BOUND_EXCLUSIVE_MIN,
    SCHEMA_BOUND_EXCLUSIVE_MAX,
} schema_bound;

/* minimum, maximum, exclusiveMinimum, exclusiveMaximum; `what` completes "<value> is ...". */
static int check_bound(schema_ctx *c, const cJSON *kw, const cJSON *v, schema_bound b, const char *what) {
    char have[32], lim[32];
    if (!cJSON_IsNumber(kw) || !cJSON_IsNumber(v)) return AIOS_OK;
    double x = v->valuedouble, l = kw->valuedouble;
    bool ok = b == SCHEMA_BOUND_MIN ? x >= l : b == SCHEMA_BOUND_MAX ? x <= l : b == SCHEMA_BOUND_EXCLUSIVE_MIN ? x > l : x < l;
    if (ok) return AIOS_OK;
    return fail(c, "%s is %s %s", num_text(have, sizeof have, x), what, num_text(lim, sizeof lim, l));
}

static int check_minimum(schema_ctx *c, const cJSON *kw, const cJSON *s, const cJSON *v) {
    (void)s;
    return check_bound(c, kw, v, SCHEMA_BOUND_MIN, "below the minimum");
}

static int check_maximum(schema_ctx *c, const cJSON *kw, const cJSON *s, const cJSON *v) {
    (void)s;
    return check_bound(c, kw, v, SCHEMA_BOUND_MAX, "above the maximum");
}

static int check_exclusive_minimum(schema_ctx *c, const cJSON *kw, const cJSON *s, const cJSON *v) {
    (void)s;
    return check_bound(c, kw, v, SCHEMA_BOUND_EXCLUSIVE_MIN, "not above the exclusive minimum");
}

static int check_exclusive_maximum(schema_ctx *c, const cJSON *kw, const cJSON *s, const cJSON *v) {
    (void)s;
    return check_bound(c, kw, v, SCHEMA_BOUND_EXCLUSIVE_MAX, "not below the exclusive maximum");
}

/* minLength, maxLength, minItems, maxItems: `have` against the limit; `what` is the
 * message up to the limit ("longer than maxLength"). */
static int check_count(schema_ctx *c, const cJSON *kw, double have, bool is_min, const char *what) {
    char lim[32];
    if (!cJSON_IsNumber(kw) || (is_min ? have >= kw->valuedouble : have <= kw->valuedouble)) return AIOS_OK;
    return fail(c, "%s %s", what, num_text(lim, sizeof lim, kw->valuedouble));
}

static int check_min_length(schema_ctx *c, const cJSON *kw, const cJSON *s, const cJSON *v) {
    (void)s;
    if (!cJSON_IsString(v)) return AIOS_OK;
    return check_count(c, kw, (double)utf8_len(v->valuestring), true, "shorter than minLength");
}

static int check_max_length(schema_ctx *c, const cJSON *kw, const cJSON *s, const cJSON *v) {
    (void)s;
    if (!cJSON_IsString(v)) return AIOS_OK;
    return check_count(c, kw, (double)utf8_len(v->valuestring), false, "longer than maxLength");
}

static int check_min_items(schema_ctx *c, const cJSON *kw, const cJSON *s, const cJSON *v) {
    (void)s;
    if (!cJSON_IsArray(v)) return AIOS_OK;
    return check_count(c, kw, cJSON_GetArraySize(v), true, "fewer items than minItems");
}

static int check_max_items(schema_ctx *c, const cJSON *kw, const cJSON *s, const cJSON *v) {
    (void)s;
    if (!cJSON_IsArray(v)) return AIOS_OK;
    return check_count(c, kw, cJSON_GetArraySize(v), false, "more items than maxItems");
}

/* Fails closed on a pattern that does not compile: an unlinted typo must not accept all. */
static int check_pattern(schema_ctx *c, const cJSON *kw, const cJSON *s, const cJSON *v) {
    regex_t re;
    (void)s;
    if (!cJSON_IsString(v) || !cJSON_IsString(kw)) return AIOS_OK;
    int rc = pattern_compile(c, kw, &re);
    if (rc != AIOS_OK) return rc;
    bool match = regexec(&re, v->valuestring, 0, NULL, 0) == 0;
    regfree(&re);
    return match ? AIOS_OK : fail(c, "does not match pattern '%s'", kw->valuestring);
}

static int check_required(schema_ctx *c, const cJSON *kw, const cJSON *s, const cJSON *v) {
    const cJSON *e;
    (void)s;
    if (!cJSON_IsObject(v) || !cJSON_IsArray(kw)) return AIOS_OK;
    cJSON_ArrayForEach(e, kw) if (cJSON_IsString(e) && !cJSON_GetObjectItemCaseSensitive(v, e->valuestring)) return fail(
        c, "missing required field '%s'", e->valuestring);
    return AIOS_OK;
}

static int check_properties(schema_ctx *c, const cJSON *kw, const cJSON *s, const cJSON *v) {
    const cJSON *m;
    (void)s;
    if (!cJSON_IsObject(v) || !cJSON_IsObject(kw)) return AIOS_OK;
    cJSON_ArrayForEach(m, v) {
        const cJSON *sub = cJSON_GetObjectItemCaseSensitive(kw, m->string);
        int rc = sub ? check_sub(c, sub, m, m->string, 0) : AIOS_OK;
        if (rc != AIOS_OK) return rc;
    }
    return AIOS_OK;
}

/* The fields that "properties" does not name: false refuses them by name, a schema
 * checks them. */
static int check_additional(schema_ctx *c, const cJSON *kw, const cJSON *s, const cJSON *v) {
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties"), *m;
    if (!cJSON_IsObject(v) || cJSON_IsTrue(kw)) return AIOS_OK;
    if (!cJSON_IsObject(props)) props = NULL;
    cJSON_ArrayForEach(m, v) {
        if (props && cJSON_GetObjectItemCaseSensitive(props, m->string)) continue;
        if (cJSON_IsFalse(kw)) return fail(c, "unknown field '%s'", m->string);
        int rc = check_sub(c, kw, m, m->string, 0);
        if (rc != AIOS_OK) return rc;
    }
    return AIOS_OK;
}

static int check_items(schema_ctx *c, const cJSON *kw, const cJSON *s, const cJSON *v) {
    const cJSON *e;
    int i = 0;
    (void)s;
    if (!cJSON_IsArray(v)) return AIOS_OK;
    cJSON_ArrayForEach(e, v) {
        int rc = check_sub(c, kw, e, NULL, i++);
        if (rc != AIOS_OK) return rc;
    }
    return AIOS_OK;
}

/* O(n^2) comparisons; arguments are bounded by the request size limit. */
static int check_unique(schema_ctx *c, const cJSON *kw, const cJSON *s, const cJSON *v) {
    int i = 0;
    (void)s;
    if (!cJSON_IsTrue(kw) || !cJSON_IsArray(v)) return AIOS_OK;
    for (const cJSON *a = v->child; a; a = a->next, i++) {
        int j = i + 1;
        for (const cJSON *b = a->next; b; b = b->next, j++)
            if (cJSON_Compare(a, b, true)) return fail(c, "items [%d] and [%d] are equal, expected unique items", i, j);
    }
    return AIOS_OK;
}

static int check_all_of(schema_ctx *c, const cJSON *kw, const cJSON *s, const cJSON *v) {
    const cJSON *e;
    (void)s;
    if (!cJSON_IsArray(kw)) return AIOS_OK;
    cJSON_ArrayForEach(e, kw) {
        int rc = check_node(c, e, v);
        if (rc != AIOS_OK) return rc;
    }
    return AIOS_OK;
}

/* Checks v against the schemas of list (the keyword `name`) until `stop` match; returns how
 * many matched, the indices of the first two in idx, and in why (n bytes) the first
 * mismatch's message, prefixed with its branch ("anyOf[0]: ..."). */
static int count_matches(schema_ctx *c, const cJSON *list, const cJSON *v, const char *name, int stop, int idx[2], char *why,
                         size_t n) {
    const cJSON *e;
    int matches = 0, i = 0;
    size_t len = 0;
    why[0] = '\0';
    cJSON_ArrayForEach(e, list) {
        if (check_node(c, e, v) == AIOS_OK) {
            if (matches < 2) idx[matches] = i;
            if (++matches >= stop) break;
        } else if (!len && c->err) {
            text_append(why, n, &len, "%s[%d]: %s", name, i, c->err);
        }
        i++;
    }
    return matches;
}

static int fail_no_match(schema_ctx *c, const char *name, const char *why) {
    return fail(c, "matches none of the %s schemas%s%s%s", name, *why ? " (" : "", why, *why ? ")" : "");
}

static int check_any_of(schema_ctx *c, const cJSON *kw, const cJSON *s, const cJSON *v) {
    char why[SCHEMA_WHY];
    int idx[2];
    (void)s;
    if (!cJSON_IsArray(kw) || count_matches(c, kw, v, "anyOf", 1, idx, why, sizeof why) > 0) return AIOS_OK;
    return fail_no_match(c, "anyOf", why);
}

static int check_one_of(schema_ctx *c, const cJSON *kw, const cJSON *s, const cJSON *v) {
    char why[SCHEMA_WHY];
    int idx[2];
    (void)s;
    if (!cJSON_IsArray(kw)) return AIOS_OK;
    int matches = count_matches(c, kw, v, "oneOf", 2, idx, why, sizeof why);
    if (matches == 1) return AIOS_OK;
    if (matches == 0) return fail_no_match(c, "oneOf", why);
    return fail(c, "matches both oneOf[%d] and oneOf[%d], expected exactly one", idx[0], idx[1]);
}

/* ---- the keyword table and the two walks ---- */

typedef int (*schema_lint_fn)(schema_ctx *c, const cJSON *kw);
typedef int (*schema_check_fn)(schema_ctx *c, const cJSON *kw, const cJSON *s, const cJSON *v);

/* In check order. A NULL lint accepts any JSON value for the keyword. */
static const struct schema_keyword {
    const char *name;
    schema_lint_fn lint;
    schema_check_fn check;
} KEYWORDS[] = {
    {"type", lint_type, check_type},
    {"const", NULL, check_const},
    {"enum", lint_nonempty_array, check_enum},
    {"minimum", lint_number, check_minimum},
    {"maximum", lint_number, check_maximum},
    {"exclusiveMinimum", lint_number, check_exclusive_minimum},
    {"exclusiveMaximum", lint_number, check_exclusive_maximum},
    {"minLength", lint_count, check_min_length},
    {"maxLength", lint_count, check_max_length},
    {"pattern", lint_pattern, check_pattern},
    {"required", lint_required, check_required},
    {"properties", lint_properties, check_properties},
    {"additionalProperties", lint_node, check_additional},
    {"items", lint_node, check_items},
    {"minItems", lint_count, check_min_items},
    {"maxItems", lint_count, check_max_items},
    {"uniqueItems", lint_bool, check_unique},
    {"allOf", lint_schema_list, check_all_of},
    {"anyOf", lint_schema_list, check_any_of},
    {"oneOf", lint_schema_list, check_one_of},
};
#define N_KEYWORDS (sizeof KEYWORDS / sizeof KEYWORDS[0])

/* A schema is an object of keywords, or true / false. */
static int lint_node(schema_ctx *c, const cJSON *s) {
    if (cJSON_IsBool(s)) return AIOS_OK;
    if (!cJSON_IsObject(s)) return fail(c, "must be a schema (an object, true or false)");
    int rc = depth_enter(c);
    if (rc != AIOS_OK) return rc;
    for (size_t i = 0; rc == AIOS_OK && i < N_KEYWORDS; i++) {
        const cJSON *kw = cJSON_GetObjectItemCaseSensitive(s, KEYWORDS[i].name);
        if (!kw || !KEYWORDS[i].lint) continue;
        size_t mark = path_push(c, KEYWORDS[i].name, 0);
        rc = KEYWORDS[i].lint(c, kw);
        path_pop(c, mark);
    }
    c->depth--;
    return rc;
}

static int check_node(schema_ctx *c, const cJSON *s, const cJSON *v) {
    if (cJSON_IsFalse(s)) return fail(c, "no value is allowed here");
    if (!cJSON_IsObject(s)) return AIOS_OK; /* NULL, true, or not a schema at all */
    int rc = depth_enter(c);
    if (rc != AIOS_OK) return rc;
    for (size_t i = 0; rc == AIOS_OK && i < N_KEYWORDS; i++) {
        const cJSON *kw = cJSON_GetObjectItemCaseSensitive(s, KEYWORDS[i].name);
        if (kw) rc = KEYWORDS[i].check(c, kw, s, v);
    }
    c->depth--;
    return rc;
}

/* ---- API ---- */

int tool_schema_lint(const cJSON *schema, char *err, size_t errlen) {
    schema_ctx c;
    ctx_init(&c, err, errlen);
    if (!schema || (cJSON_IsObject(schema) && !schema->child)) return AIOS_OK;
    if (!cJSON_IsObject(schema)) return fail(&c, "must be a JSON object schema");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(schema, "type");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "object") != 0)
        return fail(&c, "must be an object schema (\"type\": \"object\")");
    return lint_node(&c, schema);
}

int tool_schema_check(const cJSON *schema, const cJSON *value, char *err, size_t errlen) {
    schema_ctx c;
    ctx_init(&c, err, errlen);
    int rc = check_node(&c, schema, value);
    if (rc == AIOS_OK && c.err) c.err[0] = '\0'; /* a failed anyOf branch may have written */
    return rc;
}
