/*
 * test_llm.c - unit tests of the llm module's pure parts: releasing generated text
 * (UTF-8 boundaries, stop strings across tokens) and JSON Schema -> GBNF. Grammars are
 * checked with llama.cpp's own grammar engine on the default model's vocabulary (loaded
 * vocab-only): each must parse, accept valid documents token by token, and reject invalid
 * ones. Needs the model (`make model`); AIOS_MODEL overrides its path.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include <llama.h>
#include "llm/llm.h"

static const struct llama_vocab *vocab;
static struct llama_model *model;

static size_t rel(const char *s, const char *const *stop, int n, long *at) { return llm_text_releasable(s, strlen(s), stop, n, at); }

static void test_text_release(void **st) {
    (void)st;
    long at;
    const char *stops[] = {"</end>", "STOP"};
    assert_int_equal(rel("hello", NULL, 0, &at), 5);
    assert_int_equal(at, -1);
    assert_int_equal(rel("hello </e", stops, 2, &at), 6);   /* "</e" may become "</end>" */
    assert_int_equal(rel("hello </x", stops, 2, &at), 9);
    assert_int_equal(rel("abc</end>def", stops, 2, &at), 3);
    assert_int_equal(at, 3);
    assert_int_equal(rel("xxSTOP</end>", stops, 2, &at), 2); /* earliest stop wins */
    assert_int_equal(rel("ST", stops, 2, &at), 0);
    assert_int_equal(rel("caf\xc3", NULL, 0, &at), 3);      /* incomplete 2-byte char held */
    assert_int_equal(rel("caf\xc3\xa9", NULL, 0, &at), 5);
    assert_int_equal(rel("\xe2\x82", NULL, 0, &at), 0);      /* 2 of 3 bytes */
    assert_int_equal(rel("\xf0\x9f\x98\x80", NULL, 0, &at), 4);
    const char *empty[] = {""};
    assert_int_equal(rel("abc", empty, 1, &at), 3);
}

/* Feeds text to a fresh grammar sampler token by token; true if every token and then an
 * end-of-generation token are allowed. */
static bool accepts(const char *gbnf, const char *text) {
    struct llama_sampler *g = llama_sampler_init_grammar(vocab, gbnf, "root");
    assert_non_null(g);
    llama_token toks[4096];
    int n = llama_tokenize(vocab, text, (int32_t)strlen(text), toks, 4096, false, false);
    assert_true(n > 0);
    bool ok = true;
    for (int i = 0; i < n && ok; i++) {
        llama_token_data td = {toks[i], 0.0f, 0.0f};
        llama_token_data_array arr = {&td, 1, -1, false};
        llama_sampler_apply(g, &arr);
        ok = !isinf(td.logit);
        if (ok) llama_sampler_accept(g, toks[i]);
    }
    if (ok) {
        llama_token_data td = {llama_vocab_eos(vocab), 0.0f, 0.0f};
        llama_token_data_array arr = {&td, 1, -1, false};
        llama_sampler_apply(g, &arr);
        ok = !isinf(td.logit);
    }
    llama_sampler_free(g);
    return ok;
}

static char *grammar_for(const char *schema_json) {
    cJSON *s = cJSON_Parse(schema_json);
    assert_non_null(s);
    strbuf b;
    sb_init(&b, 0);
    char err[256] = "";
    int rc = llm_grammar_from_schema(s, &b, err, sizeof err);
    cJSON_Delete(s);
    if (rc) fail_msg("schema %s: %s", schema_json, err);
    return sb_steal(&b);
}

static void test_schema_object(void **st) {
    (void)st;
    char *g = grammar_for("{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},"
                          "\"unit\":{\"enum\":[\"celsius\",\"fahrenheit\"]},\"days\":{\"type\":\"integer\",\"minimum\":0}},"
                          "\"required\":[\"city\"]}");
    assert_true(accepts(g, "{\"city\": \"Paris\"}"));
    assert_true(accepts(g, "{\"city\": \"Paris\", \"unit\": \"celsius\"}"));
    assert_true(accepts(g, "{\"city\": \"Paris\", \"days\": 3}"));
    assert_false(accepts(g, "{\"unit\": \"celsius\"}"));              /* required missing */
    assert_false(accepts(g, "{\"city\": \"Paris\", \"unit\": \"kelvin\"}"));
    assert_false(accepts(g, "{\"city\": 12}"));
    assert_false(accepts(g, "{\"city\": \"Paris\", \"days\": -1}"));
    assert_false(accepts(g, "{\"city\": \"Paris\""));                  /* unterminated */
    free(g);
}

static void test_schema_types(void **st) {
    (void)st;
    char *g = grammar_for("{\"type\":\"array\",\"items\":{\"type\":[\"number\",\"null\"]},\"minItems\":1,\"maxItems\":3}");
    assert_true(accepts(g, "[1, 2.5, null]"));
    assert_false(accepts(g, "[]"));
    assert_false(accepts(g, "[1, 2, 3, 4]"));
    assert_false(accepts(g, "[\"a\"]"));
    free(g);
    g = grammar_for("{\"anyOf\":[{\"type\":\"boolean\"},{\"const\":\"x\"}]}");
    assert_true(accepts(g, "true"));
    assert_true(accepts(g, "\"x\""));
    assert_false(accepts(g, "\"y\""));
    free(g);
    g = grammar_for("{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}");
    assert_true(accepts(g, "\"ab\""));
    assert_false(accepts(g, "\"a\""));
    assert_false(accepts(g, "\"abcd\""));
    free(g);
    g = grammar_for("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"boolean\"},\"b\":{\"type\":\"null\"}}}");
    assert_true(accepts(g, "{}"));
    assert_true(accepts(g, "{\"a\": false, \"b\": null}"));
    free(g);
}

static void test_schema_errors(void **st) {
    (void)st;
    static const char *const BAD[][2] = {
        {"{\"$ref\":\"#/x\"}", "$ref"},
        {"{\"type\":\"string\",\"pattern\":\"a+\"}", "pattern"},
        {"{\"type\":\"tensor\"}", "tensor"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{}},\"required\":[\"b\"]}", "required"},
        {"{\"enum\":[]}", "enum"},
        {"[1]", "object"},
    };
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        cJSON *s = cJSON_Parse(BAD[i][0]);
        strbuf b;
        sb_init(&b, 0);
        char err[256] = "";
        assert_int_equal(llm_grammar_from_schema(s, &b, err, sizeof err), AIOS_ERR_INVALID);
        if (!strstr(err, BAD[i][1])) fail_msg("'%s' lacks '%s'", err, BAD[i][1]);
        sb_free(&b);
        cJSON_Delete(s);
    }
}

static void test_json_object_and_tool_calls(void **st) {
    (void)st;
    strbuf b;
    sb_init(&b, 0);
    assert_int_equal(llm_grammar_json_object(&b), AIOS_OK);
    assert_true(accepts(b.data, "{\"name\": \"Tom\", \"age\": 3, \"tags\": [\"a\", 1], \"o\": {\"k\": true}}"));
    assert_false(accepts(b.data, "[1]"));
    assert_false(accepts(b.data, "{\"a\": {\"b\": {\"c\": 1}}}")); /* deeper than two levels */
    sb_free(&b);

    cJSON *p1 = cJSON_Parse("{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}");
    const char *names[] = {"demo__get_weather", "demo__now"};
    const cJSON *schemas[] = {p1, NULL};
    char err[256];
    sb_init(&b, 0);
    assert_int_equal(llm_grammar_tool_calls(names, schemas, 2, &b, err, sizeof err), AIOS_OK);
    assert_true(accepts(b.data, "[{\"name\": \"demo__get_weather\", \"parameters\": {\"city\": \"Oslo\"}}]"));
    assert_true(accepts(b.data, "[{\"name\": \"demo__now\", \"parameters\": {}}, {\"name\": \"demo__get_weather\", \"parameters\": {\"city\": \"Rome\"}}]"));
    assert_false(accepts(b.data, "[{\"name\": \"demo__other\", \"parameters\": {}}]"));
    assert_false(accepts(b.data, "[{\"name\": \"demo__get_weather\", \"parameters\": {}}]"));
    assert_false(accepts(b.data, "Sure! Here you go"));
    sb_free(&b);
    assert_int_equal(llm_grammar_tool_calls(names, schemas, 0, &b, err, sizeof err), AIOS_ERR_INVALID);
    cJSON_Delete(p1);
}

static void quiet(enum ggml_log_level level, const char *text, void *ud) { (void)level; (void)text; (void)ud; }

static int setup(void **st) {
    (void)st;
    llama_log_set(quiet, NULL);
    char path[1024];
    const char *env = getenv("AIOS_MODEL");
    if (env && *env) snprintf(path, sizeof path, "%s", env);
    else config_default_model_path(path, sizeof path);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    model = llama_model_load_from_file(path, mp);
    if (!model) {
        fprintf(stderr, "test_llm: cannot load %s (run `make model`)\n", path);
        return -1;
    }
    vocab = llama_model_get_vocab(model);
    return 0;
}

static int teardown(void **st) {
    (void)st;
    llama_model_free(model);
    llama_backend_free();
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_release),  cmocka_unit_test(test_schema_object),
        cmocka_unit_test(test_schema_types),  cmocka_unit_test(test_schema_errors),
        cmocka_unit_test(test_json_object_and_tool_calls),
    };
    return cmocka_run_group_tests_name("llm", tests, setup, teardown);
}
