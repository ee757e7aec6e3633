/*
 * calc.c - the arithmetic evaluator behind the built-in calculator tool (see calc.h for the
 * grammar and the contract).
 *
 * A recursive-descent parser that evaluates as it parses: one function per precedence level,
 * no syntax tree, no allocation. The input is untrusted model output, so:
 *   - its length is checked before anything else and the recursion depth is counted at the
 *     three places that nest (parentheses, function arguments, exponents); runs of unary
 *     signs and chains of binary operators are loops, so they cost no stack;
 *   - numbers are scanned here and only the validated span is handed to strtod, which would
 *     otherwise also accept hex, "inf", "nan" and leading blanks (strtod follows LC_NUMERIC;
 *     the kernel never calls setlocale, so the decimal point is '.');
 *   - every operation checks its result, so the first overflow, NaN or division by zero is
 *     reported at the offset of the operator or function that produced it.
 * Internal functions return 0 on success and -1 after recording the first error; only
 * tool_calc_eval speaks in aios result codes.
 */
#include "tools/calc.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aios/result.h"

#define CALC_NOWHERE SIZE_MAX /* error not tied to an offset */
#define CALC_NAME_SHOW 32     /* longest name quoted back in an error */
#define CALC_NUM_MAX 255      /* longest number literal; a double holds 17 digits anyway */

typedef struct calc_parser {
    const char *s;
    size_t pos; /* byte offset of the next unread character */
    int depth;  /* current nesting, bounded by TOOL_CALC_MAX_DEPTH */
    char *err;
    size_t errlen;
} calc_parser;

typedef struct calc_fn {
    const char *name;
    int nargs;                    /* exact argument count, or -1: one or more, folded with f2 */
    double (*f1)(double);         /* for nargs == 1 */
    double (*f2)(double, double); /* for nargs == 2 and nargs == -1 */
} calc_fn;

static const calc_fn calc_fns[] = {
    {"sqrt", 1, sqrt, NULL},   {"abs", 1, fabs, NULL},    {"sin", 1, sin, NULL},     {"cos", 1, cos, NULL},
    {"tan", 1, tan, NULL},     {"asin", 1, asin, NULL},   {"acos", 1, acos, NULL},   {"atan", 1, atan, NULL},
    {"log", 1, log, NULL},     {"log10", 1, log10, NULL}, {"log2", 1, log2, NULL},   {"exp", 1, exp, NULL},
    {"floor", 1, floor, NULL}, {"ceil", 1, ceil, NULL},   {"round", 1, round, NULL}, {"pow", 2, NULL, pow},
    {"hypot", 2, NULL, hypot}, {"min", -1, NULL, fmin},   {"max", -1, NULL, fmax},
};

static const struct {
    const char *name;
    double value;
} calc_consts[] = {
    {"pi", 3.14159265358979323846},
    {"e", 2.71828182845904523536},
};

static int calc_sum(calc_parser *p, double *out);
static int calc_unary(calc_parser *p, double *out);

/* ---- errors ---------------------------------------------------------------------------- */

/* Records the first error (later ones are consequences of it), " at offset N" appended
 * unless at is CALC_NOWHERE; always returns -1. */
__attribute__((format(printf, 3, 4))) static int calc_fail(calc_parser *p, size_t at, const char *fmt, ...) {
    if (!p->err || p->errlen == 0 || p->err[0]) return -1;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(p->err, p->errlen, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < p->errlen && at != CALC_NOWHERE) snprintf(p->err + n, p->errlen - (size_t)n, " at offset %zu", at);
    return -1;
}

/* Reports the character at the current position as unexpected. */
static int calc_unexpected(calc_parser *p) {
    unsigned char c = (unsigned char)p->s[p->pos];
    if (c == '\0') return calc_fail(p, p->pos, "unexpected end of expression");
    if (c >= 0x20 && c < 0x7f) return calc_fail(p, p->pos, "unexpected '%c'", c);
    return calc_fail(p, p->pos, "unexpected byte 0x%02x", c);
}

static int calc_check(calc_parser *p, double v, size_t at) {
    return isfinite(v) ? 0 : calc_fail(p, at, "result is not a finite number");
}

/* Enters one level of nesting that starts at offset at; the caller leaves with depth--. */
static int calc_enter(calc_parser *p, size_t at) {
    if (++p->depth > TOOL_CALC_MAX_DEPTH) return calc_fail(p, at, "nesting deeper than %d", TOOL_CALC_MAX_DEPTH);
    return 0;
}

/* ---- lexing ---------------------------------------------------------------------------- */

static bool calc_is_digit(char c) { return c >= '0' && c <= '9'; }
static bool calc_is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }

/* Skips whitespace and returns the next character ('\0' at the end). */
static char calc_peek(calc_parser *p) {
    for (;;) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\v' && c != '\f') return c;
        p->pos++;
    }
}

/* number := digits ['.' digits*] | '.' digits, then optionally [eE][+-]digits */
static int calc_number(calc_parser *p, double *out) {
    const char *s = p->s;
    size_t start = p->pos, i = start;
    while (calc_is_digit(s[i])) i++;
    if (s[i] == '.') {
        i++;
        while (calc_is_digit(s[i])) i++;
    }
    if (s[i] == 'e' || s[i] == 'E') {
        size_t j = i + 1;
        if (s[j] == '+' || s[j] == '-') j++;
        if (!calc_is_digit(s[j])) return calc_fail(p, i, "malformed exponent in number");
        while (calc_is_digit(s[j])) j++;
        i = j;
    }
    if (i - start > CALC_NUM_MAX) return calc_fail(p, start, "number longer than %d characters", CALC_NUM_MAX);
    char buf[CALC_NUM_MAX + 1]; /* small: this frame may sit under 64 levels of recursion */
    memcpy(buf, s + start, i - start);
    buf[i - start] = '\0';
    p->pos = i;
    *out = strtod(buf, NULL);
    return isfinite(*out) ? 0 : calc_fail(p, start, "number out of range");
}

/* ---- names: constants and function calls ----------------------------------------------- */

static int calc_show(size_t len) { return (int)(len < CALC_NAME_SHOW ? len : CALC_NAME_SHOW); }

static const calc_fn *calc_find_fn(const char *name, size_t len) {
    for (size_t i = 0; i < sizeof calc_fns / sizeof calc_fns[0]; i++)
        if (strlen(calc_fns[i].name) == len && memcmp(calc_fns[i].name, name, len) == 0) return &calc_fns[i];
    return NULL;
}

static bool calc_find_const(const char *name, size_t len, double *out) {
    for (size_t i = 0; i < sizeof calc_consts / sizeof calc_consts[0]; i++)
        if (strlen(calc_consts[i].name) == len && memcmp(calc_consts[i].name, name, len) == 0) {
            *out = calc_consts[i].value;
            return true;
        }
    return false;
}

/* Keeps what apply needs of argument n: the first two as given, or the running fold. */
static void calc_add_arg(const calc_fn *fn, double *args, int n, double v) {
    if (fn->nargs < 0 && n > 0) args[0] = fn->f2(args[0], v);
    else if (n < 2) args[n] = v;
}

static int calc_apply(calc_parser *p, const calc_fn *fn, size_t at, const double *args, int n, double *out) {
    if (fn->nargs < 0 && n < 1) return calc_fail(p, at, "function '%s' takes at least 1 argument, got 0", fn->name);
    if (fn->nargs >= 0 && n != fn->nargs)
        return calc_fail(p, at, "function '%s' takes %d argument%s, got %d", fn->name, fn->nargs, fn->nargs == 1 ? "" : "s", n);
    double v = fn->nargs == 1 ? fn->f1(args[0]) : fn->nargs == 2 ? fn->f2(args[0], args[1]) : args[0];
    if (calc_check(p, v, at) < 0) return -1;
    *out = v;
    return 0;
}

/* Parses '(' [sum (',' sum)*] ')' at the current position and applies fn (named at at). */
static int calc_call(calc_parser *p, const calc_fn *fn, size_t at, double *out) {
    size_t open = p->pos;
    double args[2] = {0, 0};
    int n = 0;
    if (calc_enter(p, open) < 0) return -1;
    p->pos++;
    if (calc_peek(p) != ')') {
        for (;;) {
            double v;
            if (calc_sum(p, &v) < 0) return -1;
            calc_add_arg(fn, args, n++, v);
            char c = calc_peek(p);
            if (c == ')') break;
            if (c == '\0') return calc_fail(p, open, "unclosed '('");
            if (c != ',') return calc_unexpected(p);
            p->pos++;
        }
    }
    p->pos++;
    p->depth--;
    return calc_apply(p, fn, at, args, n, out);
}

static int calc_name(calc_parser *p, double *out) {
    const char *name = p->s + p->pos;
    size_t at = p->pos, len = 0;
    while (calc_is_alpha(name[len]) || calc_is_digit(name[len])) len++;
    p->pos += len;
    const calc_fn *fn = calc_find_fn(name, len);
    double c;
    if (calc_peek(p) == '(') {
        if (fn) return calc_call(p, fn, at, out);
        if (calc_find_const(name, len, &c)) return calc_fail(p, at, "'%.*s' is a constant, not a function", calc_show(len), name);
        return calc_fail(p, at, "unknown function '%.*s'", calc_show(len), name);
    }
    if (calc_find_const(name, len, out)) return 0;
    if (fn) return calc_fail(p, at, "function '%s' needs '(' after its name", fn->name);
    return calc_fail(p, at, "unknown name '%.*s'", calc_show(len), name);
}

/* ---- precedence levels ----------------------------------------------------------------- */

static int calc_group(calc_parser *p, double *out) {
    size_t open = p->pos;
    if (calc_enter(p, open) < 0) return -1;
    p->pos++;
    if (calc_sum(p, out) < 0) return -1;
    char c = calc_peek(p);
    if (c == '\0') return calc_fail(p, open, "unclosed '('");
    if (c != ')') return calc_unexpected(p);
    p->pos++;
    p->depth--;
    return 0;
}

static int calc_primary(calc_parser *p, double *out) {
    char c = calc_peek(p);
    if (calc_is_digit(c) || (c == '.' && calc_is_digit(p->s[p->pos + 1]))) return calc_number(p, out);
    if (calc_is_alpha(c)) return calc_name(p, out);
    if (c == '(') return calc_group(p, out);
    return calc_unexpected(p);
}

/* power := primary (('^' | '**') unary)? -- the exponent recurses, hence right-associative */
static int calc_power(calc_parser *p, double *out) {
    if (calc_primary(p, out) < 0) return -1;
    char c = calc_peek(p);
    size_t at = p->pos, oplen = c == '^' ? 1 : (c == '*' && p->s[at + 1] == '*') ? 2 : 0;
    if (oplen == 0) return 0;
    double ex;
    if (calc_enter(p, at) < 0) return -1;
    p->pos += oplen;
    if (calc_unary(p, &ex) < 0) return -1;
    p->depth--;
    *out = pow(*out, ex);
    return calc_check(p, *out, at);
}

/* unary := ('+' | '-')* power -- a loop, so a long run of signs costs no stack */
static int calc_unary(calc_parser *p, double *out) {
    bool neg = false;
    for (char c = calc_peek(p); c == '+' || c == '-'; c = calc_peek(p)) {
        neg ^= c == '-';
        p->pos++;
    }
    if (calc_power(p, out) < 0) return -1;
    if (neg) *out = -*out;
    return 0;
}

static int calc_mul(calc_parser *p, char op, size_t at, double *acc, double rhs) {
    if (op == '/' && rhs == 0) return calc_fail(p, at, "division by zero");
    if (op == '%' && rhs == 0) return calc_fail(p, at, "modulo by zero");
    *acc = op == '*' ? *acc * rhs : op == '/' ? *acc / rhs : fmod(*acc, rhs);
    return calc_check(p, *acc, at);
}

/* term := unary (('*' | '/' | '%') unary)* -- "**" never gets here: calc_power took it */
static int calc_term(calc_parser *p, double *out) {
    if (calc_unary(p, out) < 0) return -1;
    for (;;) {
        char op = calc_peek(p);
        if (op != '*' && op != '/' && op != '%') return 0;
        size_t at = p->pos++;
        double rhs;
        if (calc_unary(p, &rhs) < 0 || calc_mul(p, op, at, out, rhs) < 0) return -1;
    }
}

/* sum := term (('+' | '-') term)* */
static int calc_sum(calc_parser *p, double *out) {
    if (calc_term(p, out) < 0) return -1;
    for (;;) {
        char op = calc_peek(p);
        if (op != '+' && op != '-') return 0;
        size_t at = p->pos++;
        double rhs;
        if (calc_term(p, &rhs) < 0) return -1;
        *out = op == '+' ? *out + rhs : *out - rhs;
        if (calc_check(p, *out, at) < 0) return -1;
    }
}

/* ---- entry point ----------------------------------------------------------------------- */

int tool_calc_eval(const char *expr, double *out, char *err, size_t errlen) {
    calc_parser p = {.s = expr, .err = err, .errlen = errlen};
    if (err && errlen) err[0] = '\0';
    if (!expr || !out) {
        calc_fail(&p, CALC_NOWHERE, "no expression");
        return AIOS_ERR_INVALID;
    }
    if (strnlen(expr, TOOL_CALC_MAX_LEN + 1) > TOOL_CALC_MAX_LEN) {
        calc_fail(&p, CALC_NOWHERE, "expression longer than %d bytes", TOOL_CALC_MAX_LEN);
        return AIOS_ERR_INVALID;
    }
    if (calc_peek(&p) == '\0') {
        calc_fail(&p, CALC_NOWHERE, "empty expression");
        return AIOS_ERR_INVALID;
    }
    double v;
    if (calc_sum(&p, &v) < 0) return AIOS_ERR_INVALID;
    if (calc_peek(&p) != '\0') {
        calc_unexpected(&p);
        return AIOS_ERR_INVALID;
    }
    *out = v; /* finite: every step was checked */
    return AIOS_OK;
}
