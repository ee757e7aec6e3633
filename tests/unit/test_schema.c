/*
 * test_schema.c - unit tests of the tool-parameter schema validator (src/tools/schema.h):
 * every keyword with an accepting and a rejecting value and the exact field path in the
 * message, lint of good and bad manifests with the path of the bad keyword, the depth
 * limit, boolean and empty schemas, fail-closed checks of unlinted schemas, and error
 * buffers that are small, absent, or left over from a failed anyOf branch.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tools/schema.h"
#include "aios/result.h"

#define ERRLEN 512

static cJSON *parse(const char *json) {
    cJSON *j = cJSON_Parse(json);
    if (!j) print_error("bad test JSON: %s\n", json);
    assert_non_null(j);
    return j;
}

static int check(const char *schema, const char *value, char *err, size_t errlen) {
    cJSON *s = parse(schema), *v = parse(value);
    int rc = tool_schema_check(s, v, err, errlen);
    cJSON_Delete(s);
    cJSON_Delete(v);
    return rc;
}

static void accepts(const char *schema, const char *value) {
    char err[ERRLEN];
    int rc = check(schema, value, err, sizeof err);
    if (rc != AIOS_OK) print_error("%s should accept %s: %s\n", schema, value, err);
    assert_int_equal(rc, AIOS_OK);
    assert_string_equal(err, "");
}

/* The check fails and its message contains want (a path and what was expected). */
static void rejects(const char *schema, const char *value, const char *want) {
    char err[ERRLEN];
    int rc = check(schema, value, err, sizeof err);
    if (rc != AIOS_ERR_INVALID || !strstr(err, want))
        print_error("%s on %s: rc %d, err \"%s\", wanted \"%s\"\n", schema, value, rc, err, want);
    assert_int_equal(rc, AIOS_ERR_INVALID);
    assert_non_null(strstr(err, want));
}

static void lint_ok(const char *schema) {
    char err[ERRLEN];
    cJSON *s = parse(schema);
    int rc = tool_schema_lint(s, err, sizeof err);
    cJSON_Delete(s);
    if (rc != AIOS_OK) print_error("lint of %s: %s\n", schema, err);
    assert_int_equal(rc, AIOS_OK);
    assert_string_equal(err, "");
}

static void lint_bad(const char *schema, const char *want) {
    char err[ERRLEN];
    cJSON *s = parse(schema);
    int rc = tool_schema_lint(s, err, sizeof err);
    cJSON_Delete(s);
    if (rc != AIOS_ERR_INVALID || !strstr(err, want))
        print_error("lint of %s: rc %d, err \"%s\", wanted \"%s\"\n", schema, rc, err, want);
    assert_int_equal(rc, AIOS_ERR_INVALID);
    assert_non_null(strstr(err, want));
}

/* {"type":"object","properties":{"x": <prop>}}: one field under test. */
static const char *field(char *buf, size_t n, const char *prop) {
    snprintf(buf, n, "{\"type\":\"object\",\"properties\":{\"x\":%s}}", prop);
    return buf;
}

static void test_type_single(void **st) {
    (void)st;
    char err[ERRLEN];
    const char *s = "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}";
    accepts(s, "{\"city\":\"Paris\"}");
    assert_int_equal(check(s, "{\"city\":3}", err, sizeof err), AIOS_ERR_INVALID);
    assert_string_equal(err, "parameters.city: expected a string, got number");
    rejects(s, "[]", "parameters: expected an object, got array");
    accepts("{\"type\":\"array\"}", "[1]");
    rejects("{\"type\":\"array\"}", "{}", "parameters: expected an array, got object");
    accepts("{\"type\":\"boolean\"}", "false");
    rejects("{\"type\":\"boolean\"}", "\"true\"", "parameters: expected a boolean, got string");
    accepts("{\"type\":\"null\"}", "null");
    rejects("{\"type\":\"null\"}", "0", "parameters: expected null, got number");
    accepts("{\"type\":\"number\"}", "2.5");
    rejects("{\"type\":\"number\"}", "true", "parameters: expected a number, got boolean");
}

static void test_type_integer(void **st) {
    (void)st;
    accepts("{\"type\":\"integer\"}", "3");
    accepts("{\"type\":\"integer\"}", "3.0");
    accepts("{\"type\":\"integer\"}", "-1e3");
    rejects("{\"type\":\"integer\"}", "3.5", "parameters: expected an integer, got number");
    rejects("{\"type\":\"integer\"}", "\"3\"", "parameters: expected an integer, got string");
}

static void test_type_list(void **st) {
    (void)st;
    const char *s = "{\"type\":[\"string\",\"null\"]}";
    accepts(s, "\"a\"");
    accepts(s, "null");
    rejects(s, "1", "parameters: expected null or string, got number");
}

static void test_properties_nested(void **st) {
    (void)st;
    const char *s = "{\"type\":\"object\",\"properties\":{\"address\":{\"type\":\"object\","
                    "\"properties\":{\"zip\":{\"type\":\"string\"}}}}}";
    accepts(s, "{\"address\":{\"zip\":\"75001\",\"other\":1},\"more\":true}");
    rejects(s, "{\"address\":{\"zip\":75001}}", "parameters.address.zip: expected a string, got number");
    rejects(s, "{\"address\":[]}", "parameters.address: expected an object, got array");
}

static void test_required(void **st) {
    (void)st;
    char err[ERRLEN];
    const char *s = "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}";
    accepts(s, "{\"city\":\"Oslo\"}");
    assert_int_equal(check(s, "{\"town\":\"Oslo\"}", err, sizeof err), AIOS_ERR_INVALID);
    assert_string_equal(err, "parameters: missing required field 'city'");
    rejects("{\"properties\":{\"a\":{\"required\":[\"b\"]}}}", "{\"a\":{}}", "parameters.a: missing required field 'b'");
    accepts("{\"required\":[\"b\"]}", "7"); /* applies to objects only */
}

static void test_additional_properties(void **st) {
    (void)st;
    char err[ERRLEN];
    const char *closed = "{\"type\":\"object\",\"properties\":{\"a\":{}},\"additionalProperties\":false}";
    accepts(closed, "{\"a\":1}");
    assert_int_equal(check(closed, "{\"a\":1,\"extra\":2}", err, sizeof err), AIOS_ERR_INVALID);
    assert_string_equal(err, "parameters: unknown field 'extra'");
    const char *typed = "{\"type\":\"object\",\"properties\":{\"a\":{}},\"additionalProperties\":{\"type\":\"integer\"}}";
    accepts(typed, "{\"a\":\"s\",\"b\":2}");
    rejects(typed, "{\"a\":1,\"b\":\"two\"}", "parameters.b: expected an integer, got string");
    accepts("{\"additionalProperties\":true}", "{\"z\":1}");
    rejects("{\"additionalProperties\":false}", "{\"z\":1}", "parameters: unknown field 'z'");
}

static void test_enum(void **st) {
    (void)st;
    char err[ERRLEN];
    const char *s = "{\"type\":\"object\",\"properties\":{\"unit\":{\"enum\":[\"c\",\"f\"]}}}";
    accepts(s, "{\"unit\":\"f\"}");
    assert_int_equal(check(s, "{\"unit\":\"kelvin\"}", err, sizeof err), AIOS_ERR_INVALID);
    assert_string_equal(err, "parameters.unit: 'kelvin' is not one of \"c\", \"f\"");
    const char *mixed = "{\"enum\":[1,null,{\"a\":[1,2]}]}";
    accepts(mixed, "1.0");
    accepts(mixed, "null");
    accepts(mixed, "{\"a\":[1,2]}");
    rejects(mixed, "2", "parameters: 2 is not one of 1, null, {\"a\":[1,2]}");
    rejects(mixed, "{\"a\":[2,1]}", "parameters: {\"a\":[2,1]} is not one of");
}

static void test_const(void **st) {
    (void)st;
    char buf[256];
    accepts(field(buf, sizeof buf, "{\"const\":\"fast\"}"), "{\"x\":\"fast\"}");
    rejects(buf, "{\"x\":\"slow\"}", "parameters.x: 'slow' is not the constant \"fast\"");
    accepts("{\"const\":[1,true]}", "[1,true]");
    rejects("{\"const\":[1,true]}", "[1]", "parameters: [1] is not the constant [1,true]");
}

static void test_minimum_maximum(void **st) {
    (void)st;
    char err[ERRLEN], buf[256];
    const char *s = field(buf, sizeof buf, "{\"type\":\"integer\",\"minimum\":1,\"maximum\":10}");
    accepts(s, "{\"x\":1}");
    accepts(s, "{\"x\":10}");
    rejects(s, "{\"x\":0}", "parameters.x: 0 is below the minimum 1");
    assert_int_equal(check("{\"properties\":{\"n\":{\"maximum\":10}}}", "{\"n\":12}", err, sizeof err), AIOS_ERR_INVALID);
    assert_string_equal(err, "parameters.n: 12 is above the maximum 10");
    rejects("{\"minimum\":0.1}", "0.05", "parameters: 0.05 is below the minimum 0.1");
    accepts("{\"maximum\":10}", "\"not a number\""); /* applies to numbers only */
}

static void test_exclusive_bounds(void **st) {
    (void)st;
    const char *s = "{\"exclusiveMinimum\":0,\"exclusiveMaximum\":10}";
    accepts(s, "0.001");
    accepts(s, "9.5");
    rejects(s, "0", "parameters: 0 is not above the exclusive minimum 0");
    rejects(s, "10", "parameters: 10 is not below the exclusive maximum 10");
}

static void test_string_lengths_utf8(void **st) {
    (void)st;
    char err[ERRLEN], buf[256];
    const char *s = "{\"properties\":{\"name\":{\"type\":\"string\",\"minLength\":2,\"maxLength\":8}}}";
    accepts(s, "{\"name\":\"ab\"}");
    accepts(s, "{\"name\":\"h\u00e9llo w\u00f6\"}");           /* 8 code points, 10 bytes */
    accepts(s, "{\"name\":\"\\ud83d\\ude00\\ud83d\\ude00\"}"); /* 2 code points, 8 bytes */
    assert_int_equal(check(s, "{\"name\":\"abcdefghi\"}", err, sizeof err), AIOS_ERR_INVALID);
    assert_string_equal(err, "parameters.name: longer than maxLength 8");
    rejects(s, "{\"name\":\"\\u00e9\"}", "parameters.name: shorter than minLength 2");
    accepts(field(buf, sizeof buf, "{\"maxLength\":1}"), "{\"x\":5}"); /* strings only */
}

static void test_pattern(void **st) {
    (void)st;
    char buf[256];
    const char *s = field(buf, sizeof buf, "{\"type\":\"string\",\"pattern\":\"^[a-z]+(-[a-z]+)*$\"}");
    accepts(s, "{\"x\":\"foo-bar\"}");
    rejects(s, "{\"x\":\"Foo\"}", "parameters.x: does not match pattern '^[a-z]+(-[a-z]+)*$'");
    accepts("{\"pattern\":\"b+\"}", "\"abbc\""); /* unanchored, like JSON Schema */
    rejects("{\"pattern\":\"b+\"}", "\"ac\"", "parameters: does not match pattern 'b+'");
}

static void test_items(void **st) {
    (void)st;
    char err[ERRLEN];
    const char *s = "{\"type\":\"object\",\"properties\":{\"items\":{\"type\":\"array\",\"items\":{\"type\":\"object\","
                    "\"properties\":{\"name\":{\"type\":\"string\"}},\"required\":[\"name\"]}}}}";
    accepts(s, "{\"items\":[{\"name\":\"a\"},{\"name\":\"b\"}]}");
    accepts(s, "{\"items\":[]}");
    assert_int_equal(check(s, "{\"items\":[{\"name\":\"a\"},{\"name\":\"b\"},{\"name\":3}]}", err, sizeof err), AIOS_ERR_INVALID);
    assert_string_equal(err, "parameters.items[2].name: expected a string, got number");
    rejects(s, "{\"items\":[{\"name\":\"a\"},{}]}", "parameters.items[1]: missing required field 'name'");
    rejects("{\"items\":{\"items\":{\"type\":\"integer\"}}}", "[[1],[2,2.5]]",
            "parameters[1][1]: expected an integer, got number");
}

static void test_min_max_items(void **st) {
    (void)st;
    const char *s = "{\"type\":\"array\",\"minItems\":1,\"maxItems\":2}";
    accepts(s, "[1]");
    accepts(s, "[1,2]");
    rejects(s, "[]", "parameters: fewer items than minItems 1");
    rejects(s, "[1,2,3]", "parameters: more items than maxItems 2");
}

static void test_unique_items(void **st) {
    (void)st;
    char buf[256];
    const char *s = field(buf, sizeof buf, "{\"uniqueItems\":true}");
    accepts(s, "{\"x\":[1,\"1\",[1],{\"a\":1}]}");
    rejects(s, "{\"x\":[1,2,1]}", "parameters.x: items [0] and [2] are equal");
    rejects(s, "{\"x\":[{\"a\":1},{\"a\":1}]}", "parameters.x: items [0] and [1] are equal");
    accepts("{\"uniqueItems\":false}", "[1,1]");
}

static void test_any_of(void **st) {
    (void)st;
    char buf[256];
    const char *s = field(buf, sizeof buf, "{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"integer\",\"minimum\":0}]}");
    accepts(s, "{\"x\":\"a\"}");
    accepts(s, "{\"x\":3}");
    rejects(s, "{\"x\":-1}", "parameters.x: matches none of the anyOf schemas (anyOf[0]: parameters.x: expected a string");
}

static void test_one_of(void **st) {
    (void)st;
    const char *s = "{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"number\",\"maximum\":5}]}";
    accepts(s, "7");
    accepts(s, "2.5");
    rejects(s, "3", "parameters: matches both oneOf[0] and oneOf[1], expected exactly one");
    rejects(s, "\"a\"", "parameters: matches none of the oneOf schemas");
}

static void test_all_of(void **st) {
    (void)st;
    char buf[256];
    const char *s = field(buf, sizeof buf, "{\"allOf\":[{\"type\":\"string\"},{\"maxLength\":3}]}");
    accepts(s, "{\"x\":\"abc\"}");
    rejects(s, "{\"x\":\"abcd\"}", "parameters.x: longer than maxLength 3");
    rejects(s, "{\"x\":1}", "parameters.x: expected a string, got number");
}

static void test_ignored_keywords(void **st) {
    (void)st;
    const char *s = "{\"$schema\":\"http://json-schema.org/draft-07/schema#\",\"title\":\"t\",\"description\":\"d\","
                    "\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"string\",\"default\":\"a\",\"examples\":[1],"
                    "\"format\":\"email\",\"x-custom\":{}}}}";
    lint_ok(s);
    accepts(s, "{\"x\":\"not an email\"}");
    rejects(s, "{\"x\":1}", "parameters.x: expected a string");
}

static void test_null_empty_and_boolean_schemas(void **st) {
    (void)st;
    char err[ERRLEN];
    cJSON *v = parse("{\"anything\":[1,2]}");
    assert_int_equal(tool_schema_check(NULL, v, err, sizeof err), AIOS_OK);
    assert_int_equal(tool_schema_check(NULL, NULL, err, sizeof err), AIOS_OK);
    cJSON_Delete(v);
    accepts("{}", "[\"x\"]");
    accepts("true", "1");
    rejects("false", "1", "parameters: no value is allowed here");
    rejects("{\"properties\":{\"x\":false}}", "{\"x\":1}", "parameters.x: no value is allowed here");
    cJSON *s = parse("{\"type\":\"object\"}");
    assert_int_equal(tool_schema_check(s, NULL, err, sizeof err), AIOS_ERR_INVALID);
    assert_string_equal(err, "parameters: expected an object, got nothing");
    cJSON_Delete(s);
}

/* {"properties":{"a":{"properties":{"a": ... {"type":"integer"} ...}}}} with n levels. */
static char *nested_schema(int n) {
    size_t cap = (size_t)n * 32 + 64, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (int i = 0; i < n; i++) len += (size_t)snprintf(buf + len, cap - len, "{\"properties\":{\"a\":");
    len += (size_t)snprintf(buf + len, cap - len, "{\"type\":\"integer\"}");
    for (int i = 0; i < n; i++) len += (size_t)snprintf(buf + len, cap - len, "}}");
    return buf;
}

static char *nested_value(int n) {
    size_t cap = (size_t)n * 8 + 16, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (int i = 0; i < n; i++) len += (size_t)snprintf(buf + len, cap - len, "{\"a\":");
    len += (size_t)snprintf(buf + len, cap - len, "\"s\"");
    for (int i = 0; i < n; i++) len += (size_t)snprintf(buf + len, cap - len, "}");
    return buf;
}

static void test_depth_limit(void **st) {
    (void)st;
    char *s = nested_schema(20), *v = nested_value(20);
    rejects(s, v, ".a.a: expected an integer, got string"); /* deep but within the limit */
    free(s);
    free(v);
    s = nested_schema(40);
    v = nested_value(40);
    rejects(s, v, "schema nested deeper than 32 levels");
    accepts(s, "{\"a\":{}}"); /* check goes only as deep as the value */
    char buf[4096];
    snprintf(buf, sizeof buf, "{\"type\":\"object\",\"properties\":{\"a\":%s}}", s);
    lint_bad(buf, "schema nested deeper than 32 levels");
    free(s);
    free(v);
    s = nested_schema(60); /* anyOf inside: the branch's failure is the depth error */
    snprintf(buf, sizeof buf, "{\"anyOf\":[%s]}", s);
    v = nested_value(60);
    rejects(buf, v, "deeper than 32 levels");
    free(s);
    free(v);
}

static void test_lint_good(void **st) {
    (void)st;
    char err[ERRLEN] = "stale";
    assert_int_equal(tool_schema_lint(NULL, err, sizeof err), AIOS_OK);
    assert_string_equal(err, "");
    lint_ok("{}");
    lint_ok("{\"type\":\"object\",\"properties\":{"
            "\"city\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":64,\"pattern\":\"^[A-Za-z ]+$\"},"
            "\"unit\":{\"enum\":[\"c\",\"f\"],\"default\":\"c\"},"
            "\"days\":{\"type\":[\"integer\",\"null\"],\"minimum\":1,\"maximum\":14,\"exclusiveMaximum\":15},"
            "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"minItems\":0,\"maxItems\":5,\"uniqueItems\":true},"
            "\"mode\":{\"const\":\"fast\"},"
            "\"v\":{\"anyOf\":[{\"type\":\"string\"},true],\"oneOf\":[{},false],\"allOf\":[{\"exclusiveMinimum\":-1.5}]}},"
            "\"required\":[\"city\"],\"additionalProperties\":false}");
}

static void test_lint_bad(void **st) {
    (void)st;
    char err[ERRLEN];
    cJSON *s = parse("{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"integr\"}}}");
    assert_int_equal(tool_schema_lint(s, err, sizeof err), AIOS_ERR_INVALID);
    assert_string_equal(err, "parameters.properties.x.type: unknown type 'integr'");
    cJSON_Delete(s);
    lint_bad("[]", "parameters: must be a JSON object schema");
    lint_bad("{\"type\":\"array\"}", "parameters: must be an object schema");
    lint_bad("{\"properties\":{}}", "parameters: must be an object schema");
    lint_bad("{\"type\":\"object\",\"properties\":{\"x\":{\"type\":[]}}}", "parameters.properties.x.type: must be");
    lint_bad("{\"type\":\"object\",\"properties\":{\"x\":{\"type\":[\"string\",1]}}}",
             "parameters.properties.x.type: must list type names");
    lint_bad("{\"type\":\"object\",\"properties\":[]}", "parameters.properties: must be an object");
    lint_bad("{\"type\":\"object\",\"properties\":{\"x\":3}}", "parameters.properties.x: must be a schema");
    lint_bad("{\"type\":\"object\",\"required\":[\"a\",2]}", "parameters.required: entry 1 must be a field name");
    lint_bad("{\"type\":\"object\",\"required\":\"a\"}", "parameters.required: must be an array");
    lint_bad("{\"type\":\"object\",\"additionalProperties\":3}", "parameters.additionalProperties: must be a schema");
    lint_bad("{\"type\":\"object\",\"properties\":{\"u\":{\"enum\":[]}}}",
             "parameters.properties.u.enum: must be a non-empty array");
    lint_bad("{\"type\":\"object\",\"properties\":{\"n\":{\"minimum\":\"5\"}}}",
             "parameters.properties.n.minimum: must be a number");
    lint_bad("{\"type\":\"object\",\"properties\":{\"n\":{\"exclusiveMaximum\":true}}}",
             "parameters.properties.n.exclusiveMaximum: must be a number");
    lint_bad("{\"type\":\"object\",\"properties\":{\"s\":{\"minLength\":-1}}}",
             "parameters.properties.s.minLength: must be a non-negative integer");
    lint_bad("{\"type\":\"object\",\"properties\":{\"l\":{\"maxItems\":1.5}}}",
             "parameters.properties.l.maxItems: must be a non-negative integer");
    lint_bad("{\"type\":\"object\",\"properties\":{\"p\":{\"pattern\":\"(ab\"}}}",
             "parameters.properties.p.pattern: invalid pattern '(ab'");
    lint_bad("{\"type\":\"object\",\"properties\":{\"p\":{\"pattern\":5}}}", "parameters.properties.p.pattern: must be a string");
    lint_bad("{\"type\":\"object\",\"properties\":{\"l\":{\"items\":[{}]}}}", "parameters.properties.l.items: must be a schema");
    lint_bad("{\"type\":\"object\",\"properties\":{\"l\":{\"uniqueItems\":\"yes\"}}}",
             "parameters.properties.l.uniqueItems: must be true or false");
    lint_bad("{\"type\":\"object\",\"properties\":{\"v\":{\"anyOf\":[{},{\"type\":\"strng\"}]}}}",
             "parameters.properties.v.anyOf[1].type: unknown type 'strng'");
    lint_bad("{\"type\":\"object\",\"allOf\":[]}", "parameters.allOf: must be a non-empty array");
    lint_bad("{\"type\":\"object\",\"oneOf\":{}}", "parameters.oneOf: must be a non-empty array");
    lint_bad("{\"type\":\"object\",\"properties\":{\"l\":{\"items\":{\"properties\":{\"q\":{\"maxLength\":\"2\"}}}}}}",
             "parameters.properties.l.items.properties.q.maxLength: must be a non-negative integer");
}

/* check does not trust an unlinted schema to mean "anything goes". */
static void test_check_fails_closed(void **st) {
    (void)st;
    rejects("{\"type\":\"integr\"}", "1", "parameters: unknown type 'integr'");
    rejects("{\"properties\":{\"p\":{\"pattern\":\"(ab\"}}}", "{\"p\":\"ab\"}", "parameters.p: invalid pattern '(ab'");
    accepts("{\"minimum\":\"5\",\"required\":7,\"items\":3,\"anyOf\":{}}", "[1]"); /* other malformed keywords skip */
}

static void test_error_buffers(void **st) {
    (void)st;
    char err[ERRLEN], small[16], cut[17];
    /* a failed anyOf branch writes the message; success clears it again */
    const char *s = "{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"integer\"}]}";
    assert_int_equal(check(s, "4", err, sizeof err), AIOS_OK);
    assert_string_equal(err, "");
    assert_int_equal(check(s, "4.5", NULL, 0), AIOS_ERR_INVALID);
    assert_int_equal(check(s, "4.5", small, sizeof small), AIOS_ERR_INVALID);
    assert_string_equal(small, "parameters: ..."); /* cut, marked, NUL-terminated */
    /* a cut never leaves half a UTF-8 character: in 17 bytes the text is cut at offset 13
     * to make room for "...", which would split the \u00e9 of "x\u00e9" (offsets 12-13) */
    assert_int_equal(check("{\"properties\":{\"x\\u00e9\":false}}", "{\"x\\u00e9\":1}", cut, sizeof cut), AIOS_ERR_INVALID);
    assert_string_equal(cut, "parameters.x...");
    assert_int_equal(check("{\"properties\":{\"xy\\u00e9\":false}}", "{\"xy\\u00e9\":1}", cut, sizeof cut), AIOS_ERR_INVALID);
    assert_string_equal(cut, "parameters.xy...");
    /* a path longer than the path buffer is cut, not overrun */
    char name[600], schema[1600], value[1000];
    memset(name, 'k', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    snprintf(schema, sizeof schema, "{\"properties\":{\"%s\":{\"properties\":{\"%s\":{\"type\":\"string\"}}}}}", name, "b");
    snprintf(value, sizeof value, "{\"%s\":{\"b\":1}}", name);
    assert_int_equal(check(schema, value, err, sizeof err), AIOS_ERR_INVALID);
    assert_string_equal(err, "parameters...: expected a string, got number"); /* whole segments only */
    snprintf(schema, sizeof schema, "{\"properties\":{\"%.200s\":{\"properties\":{\"%s\":{\"type\":\"string\"}}}}}", name, name);
    snprintf(value, sizeof value, "{\"%.200s\":{\"%s\":1}}", name, name);
    assert_int_equal(check(schema, value, err, sizeof err), AIOS_ERR_INVALID);
    assert_int_equal(strncmp(err, "parameters.kkk", 14), 0);
    assert_non_null(strstr(err, "kkk...: expected a string, got number"));
    assert_int_equal(strlen(err), strlen("parameters.") + 200 + strlen("...: expected a string, got number"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_single),
        cmocka_unit_test(test_type_integer),
        cmocka_unit_test(test_type_list),
        cmocka_unit_test(test_properties_nested),
        cmocka_unit_test(test_required),
        cmocka_unit_test(test_additional_properties),
        cmocka_unit_test(test_enum),
        cmocka_unit_test(test_const),
        cmocka_unit_test(test_minimum_maximum),
        cmocka_unit_test(test_exclusive_bounds),
        cmocka_unit_test(test_string_lengths_utf8),
        cmocka_unit_test(test_pattern),
        cmocka_unit_test(test_items),
        cmocka_unit_test(test_min_max_items),
        cmocka_unit_test(test_unique_items),
        cmocka_unit_test(test_any_of),
        cmocka_unit_test(test_one_of),
        cmocka_unit_test(test_all_of),
        cmocka_unit_test(test_ignored_keywords),
        cmocka_unit_test(test_null_empty_and_boolean_schemas),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_lint_good),
        cmocka_unit_test(test_lint_bad),
        cmocka_unit_test(test_check_fails_closed),
        cmocka_unit_test(test_error_buffers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
