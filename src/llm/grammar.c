/*
 * grammar.c - JSON Schema to GBNF, so llama.cpp's grammar sampler can only emit JSON that
 * parses and matches the schema (json output mode, tool-call arguments). Even a 135M model
 * then produces well-formed calls.
 *
 * The converter walks the schema and returns a GBNF expression per node, adding a named
 * rule for every object and array. The grammar and the tool-parameter validator
 * (tools/schema.c) must agree: everything the grammar can generate, the validator accepts
 * (a property test walks the grammars at random, tests/unit/test_llm.c). So each keyword
 * the validator checks is either generated exactly or, where a grammar cannot say it, by a
 * subset that is still always valid, or refused with an error naming it; never a looser
 * grammar:
 *   type (and lists), const, enum, properties, required, additionalProperties (false: only
 *   the listed properties; a schema: the values of a map without properties), items,
 *   minItems/maxItems, minLength/maxLength, anyOf; integer minimum/maximum/exclusive* as
 *   exact digit-range rules; number bounds as the whole numbers inside them; uniqueItems
 *   as at most one item; oneOf only over branches of distinct types (one match by
 *   construction). Refused: pattern, allOf, $ref, oneOf over overlapping branches.
 * A node without "type" but with keywords of some types (maxLength, minimum...) is the
 * union of every type, each under them. String lengths stop at 2000 (llama.cpp's bound on
 * a repetition: minLength above it is refused, maxLength capped).
 * Objects emit required properties first, in schema order, then optional ones, each
 * optional. Strings never hold a \u escape of a control character or a UTF-16 surrogate
 * (one character to the validator, however it is written).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "llm.h"

#define GRAMMAR_MAX_DEPTH 32
/* llama.cpp's grammar parser refuses a repetition {m,n} with m above 2000 and reads an n
 * above it as unbounded (MAX_REPETITION_THRESHOLD in llama-grammar.cpp) */
#define GRAMMAR_MAX_REPEAT 2000

static const char JSON_BASE_RULES[] =
    "ws ::= [ \\t\\n]{0,3}\n"
    "value ::= object | array | string | number | boolean | null\n"
    "object ::= \"{\" ws ( string \":\" ws value ( \",\" ws string \":\" ws value )* )? \"}\" ws\n"
    "array ::= \"[\" ws ( value ( \",\" ws value )* )? \"]\" ws\n"
    "char ::= [^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" uesc )\n"
    "uesc ::= \"00\" [2-9a-fA-F] [0-9a-fA-F] | \"0\" [1-9a-fA-F] [0-9a-fA-F]{2} | [1-9a-cA-C] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2} | [eEfF] [0-9a-fA-F]{3}\n"
    "string ::= \"\\\"\" char* \"\\\"\" ws\n"
    "integer ::= \"-\"? ( [0-9] | [1-9] [0-9]{1,15} ) ws\n"
    "uinteger ::= ( [0-9] | [1-9] [0-9]{1,15} ) ws\n"
    "number ::= \"-\"? ( [0-9] | [1-9] [0-9]{1,15} ) ( \".\" [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,2} )? ws\n"
    "boolean ::= ( \"true\" | \"false\" ) ws\n"
    "null ::= \"null\" ws\n";

typedef struct gctx {
    strbuf *rules;
    int next_rule;
    char *err;
    size_t errlen;
} gctx;

/* A GBNF string literal for the raw bytes s. */
static int lit(strbuf *o, const char *s) {
    int rc = sb_append(o, "\"", 1);
    for (; !rc && *s; s++) {
        if (*s == '"' || *s == '\\') rc = sb_printf(o, "\\%c", *s);
        else if (*s == '\n') rc = sb_puts(o, "\\n");
        else if (*s == '\r') rc = sb_puts(o, "\\r");
        else if (*s == '\t') rc = sb_puts(o, "\\t");
        else if ((unsigned char)*s < 0x20) rc = sb_printf(o, "\\x%02X", (unsigned char)*s);
        else rc = sb_append(o, s, 1);
    }
    return rc ? rc : sb_append(o, "\"", 1);
}

/* The literal JSON text of item (as a string value would appear in the output). */
static int lit_json(strbuf *o, const cJSON *item) {
    char *txt = cJSON_PrintUnformatted(item);
    if (!txt) return AIOS_ERR_NOMEM;
    int rc = lit(o, txt);
    free(txt);
    return rc ? rc : sb_puts(o, " ws");
}

static int fail(gctx *g, const char *what) {
    snprintf(g->err, g->errlen, "schema: %s", what);
    return AIOS_ERR_INVALID;
}

static int emit(gctx *g, const cJSON *s, strbuf *expr, int depth);

/* oneOf passes the validator only when exactly one branch matches: generated only over
 * branches of distinct single types (integer and number overlap), one match by construction. */
static bool branches_exclusive(const cJSON *arr) {
    for (const cJSON *a = arr->child; a; a = a->next) {
        const cJSON *ta = cJSON_GetObjectItemCaseSensitive(a, "type");
        if (!cJSON_IsString(ta)) return false;
        for (const cJSON *b = a->next; b; b = b->next) {
            const cJSON *tb = cJSON_GetObjectItemCaseSensitive(b, "type");
            if (!cJSON_IsString(tb) || !strcmp(ta->valuestring, tb->valuestring)) return false;
            bool na = !strcmp(ta->valuestring, "number") || !strcmp(ta->valuestring, "integer");
            bool nb = !strcmp(tb->valuestring, "number") || !strcmp(tb->valuestring, "integer");
            if (na && nb) return false;
        }
    }
    return true;
}

static int emit_alternatives(gctx *g, const cJSON *arr, strbuf *expr, int depth) {
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0) return fail(g, "anyOf/oneOf must be a non-empty array");
    int rc = sb_puts(expr, "( ");
    int i = 0;
    for (const cJSON *it = arr->child; it && !rc; it = it->next, i++) {
        if (i) rc = sb_puts(expr, " | ");
        if (!rc) rc = emit(g, it, expr, depth + 1);
    }
    return rc ? rc : sb_puts(expr, " )");
}

static int emit_enum(gctx *g, const cJSON *arr, strbuf *expr) {
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0) return fail(g, "enum must be a non-empty array");
    int rc = sb_puts(expr, "( ");
    int i = 0;
    for (const cJSON *it = arr->child; it && !rc; it = it->next, i++) {
        if (i) rc = sb_puts(expr, " | ");
        if (!rc) rc = lit_json(expr, it);
    }
    return rc ? rc : sb_puts(expr, " )");
}

/* Defines a new rule `rN ::= body` and appends its name to expr. Repetitions go in rules of
 * their own: llama.cpp expands x{m,n} into n rules and refuses a repetition of a group that
 * holds more than 2000 of them all told (a bounded string inside a repeated array item), but
 * a rule reference counts as one. */
static int define_rule(gctx *g, strbuf *body, strbuf *expr) {
    int id = g->next_rule++;
    int rc = sb_printf(g->rules, "r%d ::= %s\n", id, body->data ? body->data : "\"\"");
    sb_free(body);
    return rc ? rc : sb_printf(expr, "r%d", id);
}

/* ---- integer ranges as digit rules ----
 * Non-negative integers in [lo, hi] (hi < 0: no upper bound) without leading zeros,
 * split by digit count; within one count, the classic digit-string range recursion. The
 * base rules allow 16 digits at most, so "no bound" means below 10^16. */
#define INT_DIGITS 16

static long long pow10ll(int d) {
    long long p = 1;
    while (d-- > 0) p *= 10;
    return p;
}

/* Equal-length digit strings x..y (x <= y). */
static int digits_range(strbuf *o, const char *x, const char *y) {
    size_t n = strlen(x);
    if (n == 1) return sb_printf(o, "[%c-%c]", x[0], y[0]);
    if (x[0] == y[0]) {
        int rc = sb_printf(o, "\"%c\" ", x[0]);
        return rc ? rc : digits_range(o, x + 1, y + 1);
    }
    bool x_low = strspn(x + 1, "0") == n - 1, y_high = strspn(y + 1, "9") == n - 1;
    if (x_low && y_high) return sb_printf(o, "[%c-%c] [0-9]{%zu}", x[0], y[0], n - 1);
    char nines[INT_DIGITS + 1], zeros[INT_DIGITS + 1];
    memset(nines, '9', n - 1), nines[n - 1] = 0;
    memset(zeros, '0', n - 1), zeros[n - 1] = 0;
    int rc = sb_printf(o, "( \"%c\" ", x[0]);
    if (!rc) rc = x_low ? sb_printf(o, "[0-9]{%zu}", n - 1) : digits_range(o, x + 1, nines);
    if (!rc && x[0] + 1 <= y[0] - 1) rc = sb_printf(o, " | [%c-%c] [0-9]{%zu}", x[0] + 1, y[0] - 1, n - 1);
    if (!rc) rc = sb_printf(o, " | \"%c\" ", y[0]);
    if (!rc) rc = y_high ? sb_printf(o, "[0-9]{%zu}", n - 1) : digits_range(o, zeros, y + 1);
    return rc ? rc : sb_puts(o, " )");
}

static int uint_range(strbuf *o, long long lo, long long hi) {
    int rc = sb_puts(o, "( ");
    bool first = true;
    for (int d = 1; d <= INT_DIGITS && !rc; d++) {
        long long a = d == 1 ? 0 : pow10ll(d - 1), b = pow10ll(d) - 1;
        if (a < lo) a = lo;
        if (hi >= 0 && b > hi) b = hi;
        if (a > b) continue;
        char xs[24], ys[24];
        snprintf(xs, sizeof xs, "%lld", a);
        snprintf(ys, sizeof ys, "%lld", b);
        if (!first) rc = sb_puts(o, " | ");
        first = false;
        if (!rc) rc = digits_range(o, xs, ys);
    }
    if (first) return AIOS_ERR_INVALID; /* empty */
    return rc ? rc : sb_puts(o, " )");
}

/* Integers in [lo, hi]; has_lo / has_hi false: unbounded on that side. */
static int int_range(gctx *g, strbuf *expr, bool has_lo, long long lo, bool has_hi, long long hi) {
    long long lim = pow10ll(INT_DIGITS) - 1;
    if (!has_lo || lo < -lim) lo = -lim;
    if (!has_hi || hi > lim) hi = lim;
    if (lo > hi) return fail(g, "minimum/maximum leave no integer");
    strbuf b;
    sb_init(&b, 0);
    int rc = sb_puts(&b, "( ");
    bool any = false;
    if (lo < 0) { /* negatives: "-" then |v| in [max(1, -hi), -lo] */
        rc = sb_puts(&b, "\"-\" ");
        if (!rc) rc = uint_range(&b, hi < 0 ? -hi : 1, -lo);
        any = true;
    }
    if (!rc && hi >= 0) {
        if (any) rc = sb_puts(&b, " | ");
        if (!rc) rc = uint_range(&b, lo > 0 ? lo : 0, hi);
    }
    if (!rc) rc = sb_puts(&b, " ) ws");
    if (rc) {
        sb_free(&b);
        return rc == AIOS_ERR_INVALID ? fail(g, "minimum/maximum leave no integer") : rc;
    }
    return define_rule(g, &b, expr);
}

/* The integer bounds of s (minimum, maximum, exclusiveMinimum, exclusiveMaximum as
 * numbers), rounded inward. */
static void int_bounds(const cJSON *s, bool *has_lo, long long *lo, bool *has_hi, long long *hi) {
    const char *keys[] = {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"};
    *has_lo = *has_hi = false;
    for (int k = 0; k < 4; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, keys[k]);
        if (!cJSON_IsNumber(v)) continue;
        double x = v->valuedouble;
        if (x > 1e17) x = 1e17;
        if (x < -1e17) x = -1e17;
        if (k < 2) {
            long long b = (long long)ceil(x);
            if (k == 1 && (double)b == x) b++;
            if (!*has_lo || b > *lo) *lo = b;
            *has_lo = true;
        } else {
            long long b = (long long)floor(x);
            if (k == 3 && (double)b == x) b--;
            if (!*has_hi || b < *hi) *hi = b;
            *has_hi = true;
        }
    }
}

static int emit_prop(gctx *g, const cJSON *prop, strbuf *b, int depth) {
    cJSON *key = cJSON_CreateString(prop->string);
    if (!key) return AIOS_ERR_NOMEM;
    int rc = lit_json(b, key);
    cJSON_Delete(key);
    if (!rc) rc = sb_puts(b, " \":\" ws ");
    if (!rc) rc = emit(g, prop, b, depth + 1);
    return rc;
}

static bool is_required(const cJSON *req, const char *name) {
    for (const cJSON *r = req ? req->child : NULL; r; r = r->next)
        if (cJSON_IsString(r) && strcmp(r->valuestring, name) == 0) return true;
    return false;
}

/* An object without properties: {} when additionalProperties is false, a map of its
 * schema's values when it is one, else any object. */
static int emit_map(gctx *g, const cJSON *s, const cJSON *req, strbuf *expr, int depth) {
    const cJSON *add = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
    if (req && req->child) return fail(g, "required names a property that is not in properties");
    if (cJSON_IsFalse(add)) return sb_puts(expr, "( \"{\" ws \"}\" ws )");
    if (!cJSON_IsObject(add)) return sb_puts(expr, "object");
    strbuf v, b;
    sb_init(&v, 0);
    sb_init(&b, 0);
    int rc = emit(g, add, &v, depth + 1);
    if (!rc) rc = sb_printf(&b, "\"{\" ws ( string \":\" ws %s ( \",\" ws string \":\" ws %s )* )? \"}\" ws", v.data, v.data);
    sb_free(&v);
    if (rc) {
        sb_free(&b);
        return rc;
    }
    return define_rule(g, &b, expr);
}

static int emit_object(gctx *g, const cJSON *s, strbuf *expr, int depth) {
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required");
    if (props && !cJSON_IsObject(props)) return fail(g, "properties must be an object");
    if (req && !cJSON_IsArray(req)) return fail(g, "required must be an array");
    if (!props || !props->child) return emit_map(g, s, req, expr, depth);
    for (const cJSON *r = req ? req->child : NULL; r; r = r->next)
        if (!cJSON_IsString(r) || !cJSON_GetObjectItemCaseSensitive(props, r->valuestring))
            return fail(g, "required names a property that is not in properties");
    strbuf b;
    sb_init(&b, 0);
    int rc = sb_puts(&b, "\"{\" ws ");
    int n_req = 0;
    for (const cJSON *p = props->child; p && !rc; p = p->next) {
        if (!is_required(req, p->string)) continue;
        if (n_req++) rc = sb_puts(&b, " \",\" ws ");
        if (!rc) rc = emit_prop(g, p, &b, depth);
    }
    /* optional properties: each may follow; with no required ones the first opens a chain */
    int n_opt = 0;
    for (const cJSON *p = props->child; p && !rc; p = p->next) {
        if (is_required(req, p->string)) continue;
        /* after required ones each optional stands alone; otherwise they nest as a chain */
        rc = sb_puts(&b, n_req || n_opt ? " ( \",\" ws " : " ( ");
        if (!rc) rc = emit_prop(g, p, &b, depth);
        if (!rc && n_req) rc = sb_puts(&b, " )?");
        n_opt++;
    }
    for (int i = 0; !n_req && i < n_opt && !rc; i++) rc = sb_puts(&b, " )?");
    if (!rc) rc = sb_puts(&b, " \"}\" ws");
    if (rc) {
        sb_free(&b);
        return rc;
    }
    return define_rule(g, &b, expr);
}

static int get_count(const cJSON *s, const char *key, long dflt, long *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, key);
    if (!v) {
        *out = dflt;
        return AIOS_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 100000) return AIOS_ERR_INVALID;
    *out = (long)v->valuedouble;
    return AIOS_OK;
}

static int emit_array(gctx *g, const cJSON *s, strbuf *expr, int depth) {
    long lo, hi;
    if (get_count(s, "minItems", 0, &lo) || get_count(s, "maxItems", -1, &hi) || (hi >= 0 && hi < lo))
        return fail(g, "minItems/maxItems must be non-negative integers with minItems <= maxItems");
    if (lo > 64) return fail(g, "minItems above 64 is not supported");
    if (hi > 64 || hi < 0) hi = 64; /* keeps the expanded grammar small; at most 64 items is still valid */
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "uniqueItems"))) { /* one item is always unique */
        if (lo > 1) return fail(g, "uniqueItems with minItems above 1 is not supported");
        if (hi > 1) hi = 1;
    }
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
    strbuf item;
    sb_init(&item, 0);
    int rc = items ? emit(g, items, &item, depth + 1) : sb_puts(&item, "value");
    if (!rc && items) { /* the item as a rule: repeated below (define_rule) */
        strbuf body = item;
        sb_init(&item, 0);
        rc = define_rule(g, &body, &item);
    }
    strbuf b;
    sb_init(&b, 0);
    if (!rc) rc = sb_puts(&b, "\"[\" ws ");
    if (!rc && hi != 0) {
        long tail_lo = lo > 0 ? lo - 1 : 0;
        if (!rc) rc = sb_printf(&b, "%s%s ( \",\" ws %s )", lo == 0 ? "( " : "", item.data, item.data);
        if (!rc) rc = hi < 0 ? sb_printf(&b, "{%ld,}", tail_lo) : sb_printf(&b, "{%ld,%ld}", tail_lo, hi - 1);
        if (!rc && lo == 0) rc = sb_puts(&b, " )?");
    }
    if (!rc) rc = sb_puts(&b, " \"]\" ws");
    sb_free(&item);
    if (rc) {
        sb_free(&b);
        return rc;
    }
    return define_rule(g, &b, expr);
}

static int emit_string(gctx *g, const cJSON *s, strbuf *expr) {
    if (cJSON_GetObjectItemCaseSensitive(s, "pattern")) return fail(g, "'pattern' is not supported");
    long lo, hi;
    if (get_count(s, "minLength", 0, &lo) || get_count(s, "maxLength", -1, &hi) || (hi >= 0 && hi < lo))
        return fail(g, "minLength/maxLength must be non-negative integers with minLength <= maxLength");
    if (lo > GRAMMAR_MAX_REPEAT) return fail(g, "minLength above 2000 is not supported");
    if (hi > GRAMMAR_MAX_REPEAT) hi = GRAMMAR_MAX_REPEAT; /* llama.cpp's bound; shorter is still valid */
    if (lo == 0 && hi < 0) return sb_puts(expr, "string");
    strbuf b; /* a rule of its own: see define_rule */
    sb_init(&b, 0);
    int rc = hi < 0 ? sb_printf(&b, "\"\\\"\" char{%ld,} \"\\\"\" ws", lo)
                    : sb_printf(&b, "\"\\\"\" char{%ld,%ld} \"\\\"\" ws", lo, hi);
    if (rc) {
        sb_free(&b);
        return rc;
    }
    return define_rule(g, &b, expr);
}

static int emit_type(gctx *g, const cJSON *s, const char *type, strbuf *expr, int depth) {
    if (!strcmp(type, "object")) return emit_object(g, s, expr, depth);
    if (!strcmp(type, "array")) return emit_array(g, s, expr, depth);
    if (!strcmp(type, "string")) return emit_string(g, s, expr);
    bool has_lo, has_hi;
    long long lo = 0, hi = 0;
    int_bounds(s, &has_lo, &lo, &has_hi, &hi);
    if (!strcmp(type, "number")) /* bounded: the whole numbers inside the bounds */
        return has_lo || has_hi ? int_range(g, expr, has_lo, lo, has_hi, hi) : sb_puts(expr, "number");
    if (!strcmp(type, "integer")) return has_lo || has_hi ? int_range(g, expr, has_lo, lo, has_hi, hi) : sb_puts(expr, "integer");
    if (!strcmp(type, "boolean")) return sb_puts(expr, "boolean");
    if (!strcmp(type, "null")) return sb_puts(expr, "null");
    char what[96];
    snprintf(what, sizeof what, "unknown type '%.40s'", type);
    return fail(g, what);
}

/* Whether s has a keyword that constrains some types only (the validator applies it to a
 * value of such a type whatever the schema's "type"). */
static bool has_type_keyword(const cJSON *s) {
    static const char *const KW[] = {"minimum",   "maximum",    "exclusiveMinimum", "exclusiveMaximum",     "minLength",
                                     "maxLength", "pattern",    "required",         "additionalProperties", "minItems",
                                     "maxItems",  "uniqueItems"};
    for (size_t i = 0; i < sizeof KW / sizeof KW[0]; i++)
        if (cJSON_GetObjectItemCaseSensitive(s, KW[i])) return true;
    return false;
}

/* A value of any of the types named in the array `types`, each under s's keywords. */
static int emit_types(gctx *g, const cJSON *s, const cJSON *types, strbuf *expr, int depth) {
    int rc = sb_puts(expr, "( ");
    int i = 0;
    for (const cJSON *t = types->child; t && !rc; t = t->next, i++) {
        if (!cJSON_IsString(t)) return fail(g, "type must be a string or a non-empty array of strings");
        if (i) rc = sb_puts(expr, " | ");
        if (!rc) rc = emit_type(g, s, t->valuestring, expr, depth);
    }
    return rc ? rc : sb_puts(expr, " )");
}

static int emit(gctx *g, const cJSON *s, strbuf *expr, int depth) {
    if (depth > GRAMMAR_MAX_DEPTH) return fail(g, "nested too deeply");
    if (cJSON_IsTrue(s)) return sb_puts(expr, "value");
    if (!cJSON_IsObject(s)) return fail(g, "every schema must be an object");
    if (cJSON_GetObjectItemCaseSensitive(s, "$ref")) return fail(g, "'$ref' is not supported");
    if (cJSON_GetObjectItemCaseSensitive(s, "allOf")) return fail(g, "'allOf' is not supported");
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "const"))) return lit_json(expr, v);
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "enum"))) return emit_enum(g, v, expr);
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "oneOf")) && !(cJSON_IsArray(v) && branches_exclusive(v)))
        return fail(g, "'oneOf' is supported only over branches of distinct types");
    if (v || (v = cJSON_GetObjectItemCaseSensitive(s, "anyOf"))) return emit_alternatives(g, v, expr, depth);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(s, "type");
    if (!type) {
        if (cJSON_GetObjectItemCaseSensitive(s, "properties")) return emit_object(g, s, expr, depth);
        if (cJSON_GetObjectItemCaseSensitive(s, "items")) return emit_array(g, s, expr, depth);
        if (!has_type_keyword(s)) return sb_puts(expr, "value");
        /* the keywords bind each type they apply to: every type, each under its keywords */
        static const char *const ALL[] = {"object", "array", "string", "number", "boolean", "null"};
        cJSON *all = cJSON_CreateStringArray(ALL, (int)(sizeof ALL / sizeof ALL[0]));
        int rc = all ? emit_types(g, s, all, expr, depth) : AIOS_ERR_NOMEM;
        cJSON_Delete(all);
        return rc;
    }
    if (cJSON_IsString(type)) return emit_type(g, s, type->valuestring, expr, depth);
    if (!cJSON_IsArray(type) || !type->child) return fail(g, "type must be a string or a non-empty array of strings");
    return emit_types(g, s, type, expr, depth);
}

/* json_object mode: any object, but bounded (two levels, 16 members or items, strings
 * up to 200 characters), because a tiny model given an unbounded grammar can nest or
 * repeat until max_tokens and leave invalid JSON. A json_schema lifts the bounds. */
static const char BOUNDED_OBJECT_RULES[] =
    "root ::= \"{\" ws ( kv1 ( \",\" ws kv1 ){0,15} )? \"}\" ws\n"
    "kv1 ::= key \":\" ws ( obj2 | arr2 | prim )\n"
    "obj2 ::= \"{\" ws ( key \":\" ws ( arr2 | prim ) ( \",\" ws key \":\" ws ( arr2 | prim ) ){0,15} )? \"}\" ws\n"
    "arr2 ::= \"[\" ws ( prim ( \",\" ws prim ){0,15} )? \"]\" ws\n"
    "key ::= \"\\\"\" char{1,40} \"\\\"\" ws\n"
    "sstr ::= \"\\\"\" char{0,200} \"\\\"\" ws\n"
    "prim ::= sstr | number | boolean | null\n";

int llm_grammar_json_object(strbuf *out) {
    int rc = sb_puts(out, BOUNDED_OBJECT_RULES);
    return rc ? rc : sb_puts(out, JSON_BASE_RULES);
}

int llm_grammar_from_schema(const cJSON *schema, strbuf *out, char *err, size_t errlen) {
    strbuf expr;
    sb_init(&expr, 0);
    gctx g = {.rules = out, .next_rule = 1, .err = err, .errlen = errlen};
    int rc = emit(&g, schema, &expr, 0);
    if (!rc) rc = sb_printf(out, "root ::= %s\n", expr.data);
    if (!rc) rc = sb_puts(out, JSON_BASE_RULES);
    sb_free(&expr);
    return rc;
}

int llm_grammar_tool_calls(const char *const *names, const cJSON *const *schemas, int n, int max_calls, strbuf *out, char *err,
                           size_t errlen) {
    if (n <= 0) {
        snprintf(err, errlen, "tools: at least one tool is needed");
        return AIOS_ERR_INVALID;
    }
    gctx g = {.rules = out, .next_rule = 1, .err = err, .errlen = errlen};
    strbuf calls;
    sb_init(&calls, 0);
    int rc = sb_puts(&calls, "call ::= ");
    for (int i = 0; i < n && !rc; i++) {
        strbuf b;
        sb_init(&b, 0);
        cJSON *name = cJSON_CreateString(names[i]);
        rc = name ? AIOS_OK : AIOS_ERR_NOMEM;
        if (!rc) rc = sb_puts(&b, "\"{\" ws \"\\\"name\\\"\" ws \":\" ws ");
        if (!rc) rc = lit_json(&b, name);
        cJSON_Delete(name);
        if (!rc) rc = sb_puts(&b, " \",\" ws \"\\\"parameters\\\"\" ws \":\" ws ");
        if (!rc) rc = schemas[i] ? emit(&g, schemas[i], &b, 1) : sb_puts(&b, "object");
        if (!rc) rc = sb_puts(&b, " \"}\" ws");
        if (!rc && i) rc = sb_puts(&calls, " | ");
        if (!rc) rc = define_rule(&g, &b, &calls);
        else sb_free(&b);
    }
    if (max_calls < 1) max_calls = 1;
    if (!rc) rc = sb_printf(out, "%s\nroot ::= \"[\" ws call ( \",\" ws call ){0,%d} \"]\" ws\n", calls.data, max_calls - 1);
    if (!rc) rc = sb_puts(out, JSON_BASE_RULES);
    sb_free(&calls);
    return rc;
}

/* ---- the kernel's argument grammars inside a template's tool-call grammar ---- */

/* A GBNF rule name as llama.cpp's converter makes it: each run of characters outside
 * [a-zA-Z0-9-] becomes one '-'. */
static int rule_name(const char *s, strbuf *out) {
    int rc = AIOS_OK;
    for (const char *p = s; *p && !rc;) {
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-';
        if (ok) rc = sb_append(out, p++, 1);
        else {
            while (*p && !((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-')) p++;
            rc = sb_puts(out, "-");
        }
    }
    return rc;
}

/* Appends gbnf (a grammar of ours) with every rule name prefixed: identifiers outside
 * string literals and character classes are rule names in GBNF. */
static int prefixed_rules(const char *gbnf, const char *prefix, strbuf *out) {
    int rc = AIOS_OK;
    for (const char *p = gbnf; *p && !rc;) {
        if (*p == '"' || *p == '[') { /* a literal or a class, escapes included, copied as is */
            char close = *p == '"' ? '"' : ']';
            const char *q = p + 1;
            while (*q && *q != close) q += q[0] == '\\' && q[1] ? 2 : 1;
            if (*q) q++;
            rc = sb_append(out, p, (size_t)(q - p));
            p = q;
        } else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')) {
            size_t n = strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");
            rc = sb_printf(out, "%s%.*s", prefix, (int)n, p);
            p += n;
        } else {
            rc = sb_append(out, p++, 1);
        }
    }
    return rc;
}

int llm_grammar_swap_tool_args(const char *grammar, const char *const *names, const cJSON *const *schemas, int n, strbuf *out,
                               char *err, size_t errlen) {
    strbuf ours, head;
    sb_init(&ours, 0);
    sb_init(&head, 0);
    int rc = sb_puts(out, grammar);
    for (int i = 0; i < n && !rc; i++) {
        strbuf g, body;
        sb_init(&g, 0);
        sb_init(&body, 0);
        char prefix[24];
        snprintf(prefix, sizeof prefix, "aios%d-", i);
        sb_reset(&head);
        rc = sb_puts(&head, "tool-");
        if (!rc) rc = rule_name(names[i], &head);
        if (!rc) rc = sb_puts(&head, "-schema ::= ");
        const char *at = rc ? NULL : strstr(out->data, head.data);
        while (at && at != out->data && at[-1] != '\n') at = strstr(at + 1, head.data); /* a rule starts a line */
        if (at && schemas[i]) rc = llm_grammar_from_schema(schemas[i], &g, err, errlen);
        else if (at && !(rc = sb_puts(&g, "root ::= object\n"))) rc = sb_puts(&g, JSON_BASE_RULES);
        if (at && !rc) rc = prefixed_rules(g.data, prefix, &ours);
        if (at && !rc) { /* the rule's line now names our root */
            size_t start = (size_t)(at - out->data) + head.len, end = start;
            while (end < out->len && out->data[end] != '\n') end++;
            rc = sb_printf(&body, "%.*s%sroot%s", (int)start, out->data, prefix, out->data + end);
            if (!rc) {
                sb_reset(out);
                rc = sb_append(out, body.data, body.len);
            }
        }
        sb_free(&g);
        sb_free(&body);
    }
    if (!rc && ours.len) rc = sb_printf(out, "%s%s", out->len && out->data[out->len - 1] == '\n' ? "" : "\n", ours.data);
    sb_free(&ours);
    sb_free(&head);
    return rc;
}
