/*
 * test_calc.c - unit tests of the calculator tool's expression evaluator: operator
 * precedence and left-associativity, right-associativity of ^ and **, unary minus against
 * power (-2^2 = -4), numbers, whitespace, every function and constant, each kind of error
 * with the exact message and offset, and the length and nesting-depth limits.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "tools/calc.h"
#include "aios/result.h"

#define PI 3.14159265358979323846

/* Evaluates e, which must succeed, and checks its value to a relative 1e-12. */
static void ok(const char *e, double want) {
    double v = NAN;
    char err[128] = "x";
    int rc = tool_calc_eval(e, &v, err, sizeof err);
    if (rc != AIOS_OK) print_error("'%s': %s\n", e, err);
    assert_int_equal(rc, AIOS_OK);
    assert_string_equal(err, "");
    if (fabs(v - want) > 1e-12 * fmax(1.0, fabs(want))) {
        print_error("'%s' = %.17g, want %.17g\n", e, v, want);
        fail();
    }
}

/* Evaluates e, which must fail with exactly the message want and leave *out alone. */
static void bad(const char *e, const char *want) {
    double v = 42;
    char err[256] = "";
    assert_int_equal(tool_calc_eval(e, &v, err, sizeof err), AIOS_ERR_INVALID);
    assert_string_equal(err, want);
    assert_true(v == 42);
}

static void test_precedence(void **st) {
    (void)st;
    ok("1+2*3", 7);
    ok("(1+2)*3", 9);
    ok("10-4-3", 3); /* left-associative */
    ok("100/10/5", 2);
    ok("2*3^2", 18);
    ok("7%3", 1);
    ok("-7%3", -1); /* fmod keeps the dividend's sign */
    ok("7.5%2", 1.5);
    ok("1+8%3*2", 5); /* % binds like * */
    ok("2 - -3", 5);
    ok("1.5e3", 1500);
    ok("2E-3", 0.002);
    ok("1e+2", 100);
    ok(".5+1.", 1.5);
    ok("007", 7);
    ok(" \t1 +\n2\r\n ", 3);
}

static void test_power(void **st) {
    (void)st;
    ok("2^3^2", 512); /* right-associative: 2^(3^2) */
    ok("2**3**2", 512);
    ok("2^3**2", 512);
    ok("(2^3)^2", 64);
    ok("-2^2", -4); /* unary minus binds looser than power */
    ok("-2**2", -4);
    ok("(-2)^2", 4);
    ok("2^-1", 0.5);      /* but the exponent may carry a sign */
    ok("2^-2^2", 0.0625); /* 2^(-(2^2)) */
    ok("4^0.5", 2);
    ok("2 ^ 10 * 2", 2048);
    ok("--3", 3);
    ok("+-+3", -3);
    ok("0^0", 1);
}

static void test_functions_and_constants(void **st) {
    (void)st;
    ok("pi", PI);
    ok("e", exp(1.0));
    ok("2*pi", 2 * PI);
    ok("sqrt(16)", 4);
    ok("abs(-3)", 3);
    ok("sin(pi/2)", 1);
    ok("cos(0)", 1);
    ok("tan(pi/4)", 1);
    ok("asin(1)", PI / 2);
    ok("acos(1)", 0);
    ok("atan(1)", PI / 4);
    ok("log(e^2)", 2);
    ok("log10(1000)", 3);
    ok("log2(8)", 3);
    ok("exp(0)", 1);
    ok("floor(-1.5)", -2);
    ok("ceil(1.2)", 2);
    ok("round(2.5)", 3);
    ok("round(-2.5)", -3);
    ok("pow(2, 10)", 1024);
    ok("hypot(3,4)", 5);
    ok("min(3)", 3);
    ok("min(3, 1, 2)", 1);
    ok("max(1, 5, 2, -7)", 5);
    ok("sqrt(abs(-16)) + max(1, min(5, 3))", 7);
    ok("-sqrt(4)^2", -4);
    ok("sqrt (9)", 3); /* blanks between a name and its '(' */
}

static void test_syntax_errors(void **st) {
    (void)st;
    bad("1 + )", "unexpected ')' at offset 4");
    bad("3)", "unexpected ')' at offset 1");
    bad("1 2", "unexpected '2' at offset 2"); /* trailing garbage */
    bad("pi e", "unexpected 'e' at offset 3");
    bad("1 $ 2", "unexpected '$' at offset 2");
    bad("1\x01", "unexpected byte 0x01 at offset 1");
    bad("0x10", "unexpected 'x' at offset 1"); /* no hex */
    bad("1.5.3", "unexpected '.' at offset 3");
    bad("2***3", "unexpected '*' at offset 3");
    bad("2 * * 3", "unexpected '*' at offset 4");
    bad("1 +", "unexpected end of expression at offset 3");
    bad("()", "unexpected ')' at offset 1");
    bad("(1+2", "unclosed '(' at offset 0");
    bad("2*(3", "unclosed '(' at offset 2");
    bad("max(1,2", "unclosed '(' at offset 3");
    bad("max(1,", "unexpected end of expression at offset 6");
    bad("max(1;2)", "unexpected ';' at offset 5");
    bad("2e+", "malformed exponent in number at offset 1");
    bad("1e", "malformed exponent in number at offset 1");
    bad("", "empty expression");
    bad(" \t\n", "empty expression");
}

static void test_name_errors(void **st) {
    (void)st;
    bad("foo(1)", "unknown function 'foo' at offset 0");
    bad("2 * bar", "unknown name 'bar' at offset 4");
    bad("inf", "unknown name 'inf' at offset 0"); /* no way to type a non-finite */
    bad("nan", "unknown name 'nan' at offset 0");
    bad("PI", "unknown name 'PI' at offset 0"); /* names are case-sensitive */
    bad("1 + sqrt 4", "function 'sqrt' needs '(' after its name at offset 4");
    bad("pi(2)", "'pi' is a constant, not a function at offset 0");
    bad("pow(1)", "function 'pow' takes 2 arguments, got 1 at offset 0");
    bad("1+hypot(1,2,3)", "function 'hypot' takes 2 arguments, got 3 at offset 2");
    bad("sqrt(1, 2)", "function 'sqrt' takes 1 argument, got 2 at offset 0");
    bad("sqrt()", "function 'sqrt' takes 1 argument, got 0 at offset 0");
    bad("min()", "function 'min' takes at least 1 argument, got 0 at offset 0");
    /* a long unknown name is quoted back cut to 32 characters */
    char e[128];
    memset(e, 'x', 100);
    strcpy(e + 100, "(1)");
    bad(e, "unknown function 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' at offset 0");
}

static void test_math_errors(void **st) {
    (void)st;
    bad("1/0", "division by zero at offset 1");
    bad("1 / (2 - 2)", "division by zero at offset 2");
    bad("5 % (2-2)", "modulo by zero at offset 2");
    bad("0/0", "division by zero at offset 1");
    bad("exp(1000)", "result is not a finite number at offset 0");
    bad("1 + sqrt(-1)", "result is not a finite number at offset 4");
    bad("log(0)", "result is not a finite number at offset 0");
    bad("asin(2)", "result is not a finite number at offset 0");
    bad("10^400", "result is not a finite number at offset 2");
    bad("(-8)^(1/3)", "result is not a finite number at offset 4");
    bad("0^-1", "result is not a finite number at offset 1");
    bad("1e308*10", "result is not a finite number at offset 5");
    bad("1e308+1e308", "result is not a finite number at offset 5");
    bad("1e999", "number out of range at offset 0");
    ok("1e-400", 0); /* underflow to zero is a finite answer */
    ok("1/(1e308*1e-10)", 1e-298);
}

static void test_api_edges(void **st) {
    (void)st;
    double v = 42;
    char err[64];
    assert_int_equal(tool_calc_eval(NULL, &v, err, sizeof err), AIOS_ERR_INVALID);
    assert_string_equal(err, "no expression");
    assert_int_equal(tool_calc_eval("1", NULL, err, sizeof err), AIOS_ERR_INVALID);
    assert_int_equal(tool_calc_eval("1/0", &v, NULL, 0), AIOS_ERR_INVALID); /* no buffer */
    assert_int_equal(tool_calc_eval("6*7", &v, NULL, 0), AIOS_OK);
    assert_true(v == 42);
    char small[8];
    assert_int_equal(tool_calc_eval("1/0", &v, small, sizeof small), AIOS_ERR_INVALID);
    assert_string_equal(small, "divisio"); /* truncated, still terminated */
    memset(err, 'x', sizeof err);
    assert_int_equal(tool_calc_eval("1+1", &v, err, sizeof err), AIOS_OK);
    assert_string_equal(err, "");
}

static void test_length_limit(void **st) {
    (void)st;
    char *e = malloc(TOOL_CALC_MAX_LEN + 2);
    assert_non_null(e);
    /* "1+1+...+1" plus one blank: exactly 4096 bytes, 2048 ones */
    e[0] = '1';
    for (int i = 1; i < TOOL_CALC_MAX_LEN - 1; i += 2) memcpy(e + i, "+1", 2);
    e[TOOL_CALC_MAX_LEN - 1] = ' ';
    e[TOOL_CALC_MAX_LEN] = '\0';
    assert_int_equal(strlen(e), 4096);
    ok(e, 2048);
    e[TOOL_CALC_MAX_LEN] = ' ';
    e[TOOL_CALC_MAX_LEN + 1] = '\0';
    bad(e, "expression longer than 4096 bytes");
    /* a long run of signs is a loop, not recursion: fine at any length under the limit */
    memset(e, '-', TOOL_CALC_MAX_LEN - 1);
    strcpy(e + TOOL_CALC_MAX_LEN - 1, "7");
    ok(e, -7); /* 4095 minus signs: an odd count */
    memset(e, '0', 300);
    strcpy(e + 300, "1");
    bad(e, "number longer than 255 characters at offset 0");
    free(e);
}

/* Builds n copies of open, then mid, then n copies of close into buf. */
static void nest(char *buf, int n, const char *open, const char *mid, const char *close) {
    buf[0] = '\0';
    for (int i = 0; i < n; i++) strcat(buf, open);
    strcat(buf, mid);
    for (int i = 0; i < n; i++) strcat(buf, close);
}

static void test_depth_limit(void **st) {
    (void)st;
    char e[1024];
    nest(e, TOOL_CALC_MAX_DEPTH, "(", "1", ")");
    ok(e, 1);
    nest(e, TOOL_CALC_MAX_DEPTH + 1, "(", "1", ")");
    bad(e, "nesting deeper than 64 at offset 64");
    nest(e, TOOL_CALC_MAX_DEPTH, "abs(", "-1", ")");
    ok(e, 1);
    nest(e, TOOL_CALC_MAX_DEPTH + 1, "abs(", "-1", ")");
    bad(e, "nesting deeper than 64 at offset 259"); /* the 65th '(' */
    nest(e, 32, "(", "1", ")");                     /* calls and parentheses count together */
    char e2[1024];
    nest(e2, 33, "abs(", e, ")");
    bad(e2, "nesting deeper than 64 at offset 163");
    nest(e, TOOL_CALC_MAX_DEPTH, "1^", "1", ""); /* each exponent nests too */
    ok(e, 1);
    nest(e, TOOL_CALC_MAX_DEPTH + 1, "1^", "1", "");
    bad(e, "nesting deeper than 64 at offset 129");
    /* deep but within the limit, with a sibling after it: depth is given back on the way out */
    nest(e, TOOL_CALC_MAX_DEPTH, "(", "1", ")");
    strcpy(e2, e);
    strcat(e2, "+");
    strcat(e2, e);
    ok(e2, 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_precedence),    cmocka_unit_test(test_power),        cmocka_unit_test(test_functions_and_constants),
        cmocka_unit_test(test_syntax_errors), cmocka_unit_test(test_name_errors),  cmocka_unit_test(test_math_errors),
        cmocka_unit_test(test_api_edges),     cmocka_unit_test(test_length_limit), cmocka_unit_test(test_depth_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
