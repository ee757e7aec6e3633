/*
 * test_llm.c - unit tests of the llm module's pure parts: releasing generated text
 * (UTF-8 boundaries, stop strings across tokens) and JSON Schema -> GBNF. Grammars are
 * checked with llama.cpp's own grammar engine on the default model's vocabulary (loaded
 * vocab-only): each must parse, accept valid documents token by token, and reject invalid
 * ones. The property test walks each grammar at random (any token it allows, on the real
 * vocabulary) and checks that the tool validator (tools/schema.c) accepts every document
 * it produces: grammar and validator agree. Needs the model (`make model`); AIOS_MODEL
 * overrides its path.
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
#include "llm/chat_template.h"
#include "tools/schema.h"
#include "tools/tools_internal.h"
#include "../grammar_walk.h"

static const struct llama_vocab *vocab;
static struct llama_model *model;

static size_t rel(const char *s, const char *const *stop, int n, long *at) {
    return llm_text_releasable(s, strlen(s), stop, n, at);
}

static void test_text_release(void **st) {
    (void)st;
    long at;
    const char *stops[] = {"</end>", "STOP"};
    assert_int_equal(rel("hello", NULL, 0, &at), 5);
    assert_int_equal(at, -1);
    assert_int_equal(rel("hello </e", stops, 2, &at), 6); /* "</e" may become "</end>" */
    assert_int_equal(rel("hello </x", stops, 2, &at), 9);
    assert_int_equal(rel("abc</end>def", stops, 2, &at), 3);
    assert_int_equal(at, 3);
    assert_int_equal(rel("xxSTOP</end>", stops, 2, &at), 2); /* earliest stop wins */
    assert_int_equal(rel("ST", stops, 2, &at), 0);
    assert_int_equal(rel("caf\xc3", NULL, 0, &at), 3); /* incomplete 2-byte char held */
    assert_int_equal(rel("caf\xc3\xa9", NULL, 0, &at), 5);
    assert_int_equal(rel("\xe2\x82", NULL, 0, &at), 0); /* 2 of 3 bytes */
    assert_int_equal(rel("\xf0\x9f\x98\x80", NULL, 0, &at), 4);
    const char *empty[] = {""};
    assert_int_equal(rel("abc", empty, 1, &at), 3);
}

/* Feeds text to a fresh grammar sampler token by token; true if every token and then an
 * end-of-generation token are allowed. */
/* Feeds text to grammar sampler g token by token; true if it allowed every token. */
static bool feeds(struct llama_sampler *g, const char *text) {
    llama_token toks[4096];
    int n = llama_tokenize(vocab, text, (int32_t)strlen(text), toks, 4096, false, false);
    assert_true(n > 0);
    for (int i = 0; i < n; i++) {
        llama_token_data td = {toks[i], 0.0f, 0.0f};
        llama_token_data_array arr = {&td, 1, -1, false};
        llama_sampler_apply(g, &arr);
        if (isinf(td.logit)) return false;
        llama_sampler_accept(g, toks[i]);
    }
    return true;
}

static bool accepts(const char *gbnf, const char *text) {
    struct llama_sampler *g = llama_sampler_init_grammar(vocab, gbnf, "root");
    assert_non_null(g);
    bool ok = feeds(g, text);
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
    assert_false(accepts(g, "{\"unit\": \"celsius\"}")); /* required missing */
    assert_false(accepts(g, "{\"city\": \"Paris\", \"unit\": \"kelvin\"}"));
    assert_false(accepts(g, "{\"city\": 12}"));
    assert_false(accepts(g, "{\"city\": \"Paris\", \"days\": -1}"));
    assert_false(accepts(g, "{\"city\": \"Paris\"")); /* unterminated */
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
    g = grammar_for("{\"maxLength\":3,\"maximum\":9}"); /* no type: strings and numbers still bounded */
    assert_true(accepts(g, "\"abc\""));
    assert_true(accepts(g, "9"));
    assert_true(accepts(g, "null"));
    assert_false(accepts(g, "\"abcd\""));
    assert_false(accepts(g, "10"));
    free(g);
    g = grammar_for("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"boolean\"},\"b\":{\"type\":\"null\"}}}");
    assert_true(accepts(g, "{}"));
    assert_true(accepts(g, "{\"a\": false, \"b\": null}"));
    free(g);
}

static void test_schema_errors(void **st) {
    (void)st;
    static const char *const BAD[][2] = {
        {"{\"$ref\":\"#/x\"}", "$ref"},      {"{\"type\":\"string\",\"pattern\":\"a+\"}", "pattern"},
        {"{\"type\":\"tensor\"}", "tensor"}, {"{\"type\":\"object\",\"properties\":{\"a\":{}},\"required\":[\"b\"]}", "required"},
        {"{\"enum\":[]}", "enum"},           {"[1]", "object"},
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
    assert_int_equal(llm_grammar_tool_calls(names, schemas, 2, 8, &b, err, sizeof err), AIOS_OK);
    assert_true(accepts(b.data, "[{\"name\": \"demo__get_weather\", \"parameters\": {\"city\": \"Oslo\"}}]"));
    assert_true(accepts(
        b.data,
        "[{\"name\": \"demo__now\", \"parameters\": {}}, {\"name\": \"demo__get_weather\", \"parameters\": {\"city\": \"Rome\"}}]"));
    assert_false(accepts(b.data, "[{\"name\": \"demo__other\", \"parameters\": {}}]"));
    assert_false(accepts(b.data, "[{\"name\": \"demo__get_weather\", \"parameters\": {}}]"));
    assert_false(accepts(b.data, "Sure! Here you go"));
    sb_free(&b);
    assert_int_equal(llm_grammar_tool_calls(names, schemas, 0, 8, &b, err, sizeof err), AIOS_ERR_INVALID);
    cJSON_Delete(p1);
}

/* tool_choice auto: a lazy grammar (chat.c's trigger) leaves text free, and once the output
 * opens a JSON array it allows only tool calls. */
static void test_lazy_tool_grammar(void **st) {
    (void)st;
    cJSON *p = cJSON_Parse("{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}");
    const char *names[] = {"get_weather"};
    const cJSON *schemas[] = {p};
    strbuf b;
    sb_init(&b, 0);
    char err[256] = "";
    assert_int_equal(llm_grammar_tool_calls(names, schemas, 1, 8, &b, err, sizeof err), AIOS_OK);
    const char *trig[] = {"^\\s*(\\[[\\s\\S]*)"};
    struct llama_sampler *g = llama_sampler_init_grammar_lazy_patterns(vocab, b.data, "root", trig, 1, NULL, 0);
    assert_non_null(g);
    assert_true(feeds(g, "It is sunny in Paris, {\"name\": whatever} [not a call]")); /* text: free */
    llama_sampler_free(g);
    g = llama_sampler_init_grammar_lazy_patterns(vocab, b.data, "root", trig, 1, NULL, 0);
    assert_true(feeds(g, "[{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}]"));
    llama_sampler_free(g);
    g = llama_sampler_init_grammar_lazy_patterns(vocab, b.data, "root", trig, 1, NULL, 0);
    assert_false(feeds(g, "[{\"name\": \"rm_rf\"")); /* opened a call: constrained */
    llama_sampler_free(g);
    g = llama_sampler_init_grammar_lazy_patterns(vocab, b.data, "root", trig, 1, NULL, 0);
    assert_false(feeds(g, " [{\"name\": \"get_weather\", \"parameters\": {}}]")); /* city required */
    llama_sampler_free(g);
    sb_free(&b);
    cJSON_Delete(p);
}

/* ---- property: whatever a grammar can generate, the validator accepts ---- */

static llama_token *g_cands; /* short tokens (every byte and character) plus a sample of longer ones */
static int g_n_cands;
static unsigned long long g_rng = 0x9E3779B97F4A7C15ull;

static unsigned rnd(void *ctx) {
    (void)ctx;
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (unsigned)(g_rng >> 11);
}

static void build_candidates(void) {
    g_cands = gw_candidates(vocab, 40, rnd, NULL, &g_n_cands);
    assert_non_null(g_cands);
}

/* One random document of the grammar (grammar_walk.h); NULL if it ran past max_steps. */
static char *walk_from(const char *gbnf, const char *prefill, int max_steps) {
    struct llama_sampler *g = llama_sampler_init_grammar(vocab, gbnf, "root");
    assert_non_null(g);
    if (prefill) assert_int_equal(lc_tmpl_prefill(g, vocab, prefill), AIOS_OK);
    strbuf text;
    sb_init(&text, 0);
    int done = gw_walk(vocab, g, g_cands, g_n_cands, max_steps, rnd, NULL, &text);
    llama_sampler_free(g);
    assert_true(done >= 0); /* a grammar that cannot go on must allow the end */
    if (done != 1) sb_free(&text);
    return done == 1 ? sb_steal(&text) : NULL;
}

static char *walk(const char *gbnf, int max_steps) { return walk_from(gbnf, NULL, max_steps); }

/* Walks schema's grammar until `want` complete documents; each must parse and validate. */
static void agree(const char *name, const cJSON *schema, int want) {
    char err[512] = "";
    if (tool_schema_lint(schema, err, sizeof err)) fail_msg("%s: the validator refuses the schema: %s", name, err);
    strbuf g;
    sb_init(&g, 0);
    if (llm_grammar_from_schema(schema, &g, err, sizeof err)) fail_msg("%s: no grammar: %s", name, err);
    int got = 0;
    for (int tries = 0; got < want && tries < want * 20; tries++) {
        char *doc = walk(g.data, 400);
        if (!doc) continue;
        cJSON *v = cJSON_Parse(doc);
        if (!v) fail_msg("%s: the grammar produced text that is not JSON: %s", name, doc);
        if (tool_schema_check(schema, v, err, sizeof err))
            fail_msg("%s: the grammar produced %s, which the validator refuses: %s", name, doc, err);
        cJSON_Delete(v);
        free(doc);
        got++;
    }
    sb_free(&g);
    if (got < want) fail_msg("%s: only %d of %d random walks ended", name, got, want);
}

/* ---- the model's own template (chat_template.h, llama.cpp's common chat library) ---- */

#ifndef AIOS_LLAMA_TEMPLATES
#error "AIOS_LLAMA_TEMPLATES: the pinned llama.cpp source's models/templates (Makefile)"
#endif

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot read %s", path);
    strbuf b;
    sb_init(&b, 0);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) sb_append(&b, buf, n);
    fclose(f);
    return sb_steal(&b);
}

/* Qwen 2.5's template (tools in <tools>, calls as <tool_call>{json}</tool_call>), from the
 * pinned llama.cpp source: a real tool-calling family on the test vocabulary. */
static lc_tmpl *qwen_template(void) {
    char *src = read_text(AIOS_LLAMA_TEMPLATES "/Qwen-Qwen2.5-7B-Instruct.jinja");
    char err[256] = "";
    lc_tmpl *t = lc_tmpl_new(model, src, err, sizeof err);
    free(src);
    if (!t) fail_msg("the Qwen template did not load: %s", err);
    return t;
}

static char *one_tool(const char *schema) {
    char *s = malloc(strlen(schema) + 128);
    sprintf(s, "[{\"type\":\"function\",\"function\":{\"name\":\"get_v\",\"description\":\"d\",\"parameters\":%s}}]", schema);
    return s;
}

static const char *USER_MSG = "[{\"role\":\"user\",\"content\":\"What time is it in Paris?\"}]";

/* A schema's native grammar under `required`: every walk is a call whose arguments the
 * validator accepts (the kernel also checks each parsed call, chat.c). */
static int g_native_walks;

static void agree_native(const cJSON *s) {
    char *schema_json = cJSON_PrintUnformatted(s);
    lc_tmpl *tm = qwen_template();
    char *tools = one_tool(schema_json), err[256] = "";
    lc_tmpl_out o;
    assert_int_equal(lc_tmpl_apply(tm, USER_MSG, tools, LC_TOOLS_REQUIRED, false, &o, err, sizeof err), AIOS_OK);
    const char *names[] = {"get_v"};
    const cJSON *schemas[] = {s};
    strbuf swapped; /* what the engine samples with: the kernel's argument grammar inside the template's */
    sb_init(&swapped, 0);
    if (llm_grammar_swap_tool_args(o.grammar, names, schemas, 1, &swapped, err, sizeof err)) fail_msg("%s: %s", schema_json, err);
    assert_non_null(strstr(swapped.data, "tool-get-v-schema ::= aios0-root"));
    int got = 0;
    for (int tries = 0; got < 6 && tries < 120; tries++) {
        char *doc = walk_from(swapped.data, o.prefill, 400);
        if (!doc) continue;
        lc_tmpl_msg m;
        if (lc_tmpl_parse(o.parser, doc, false, &m) || m.n_calls < 1) fail_msg("%s: no call parsed from %s", schema_json, doc);
        for (int i = 0; i < m.n_calls; i++) {
            cJSON *v = cJSON_Parse(m.calls[i].arguments);
            if (!v || tool_schema_check(s, v, err, sizeof err))
                fail_msg("%s: the template grammar produced %s, which the validator refuses: %s", schema_json, doc, err);
            cJSON_Delete(v);
        }
        lc_tmpl_msg_free(&m);
        free(doc);
        got++;
    }
    if (got < 6) fail_msg("%s: only %d native walks ended", schema_json, got);
    g_native_walks += got;
    sb_free(&swapped);
    lc_tmpl_out_free(&o);
    free(tools);
    free(schema_json);
    lc_tmpl_free(tm);
}

static void test_template_tools(void **st) {
    (void)st;
    lc_tmpl *t = qwen_template();
    assert_true(lc_tmpl_tool_calls(t));
    char *tools = one_tool("{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}");
    char err[256] = "";
    lc_tmpl_out o;
    /* auto: tools rendered the template's way; a lazy grammar whose trigger only fires at the start */
    assert_int_equal(lc_tmpl_apply(t, USER_MSG, tools, LC_TOOLS_AUTO, true, &o, err, sizeof err), AIOS_OK);
    assert_non_null(strstr(o.prompt, "<tools>"));
    assert_non_null(strstr(o.prompt, "\"get_v\""));
    assert_true(o.lazy);
    assert_true(o.n_patterns + o.n_tokens > 0);
    for (int i = 0; i < o.n_patterns; i++) assert_true(o.patterns[i][0] == '^');
    struct llama_sampler *g = llama_sampler_init_grammar_lazy_patterns(vocab, o.grammar, "root", (const char **)o.patterns,
                                                                       (size_t)o.n_patterns, o.tokens, (size_t)o.n_tokens);
    assert_non_null(g);
    assert_true(feeds(g, "It is noon. <tool_call> is how I would call a tool.")); /* text first: free */
    llama_sampler_free(g);
    g = llama_sampler_init_grammar_lazy_patterns(vocab, o.grammar, "root", (const char **)o.patterns, (size_t)o.n_patterns,
                                                 o.tokens, (size_t)o.n_tokens);
    assert_false(feeds(g, "<tool_call>\n{\"name\": \"rm_rf\"")); /* an opened call is constrained */
    llama_sampler_free(g);
    /* the parser: a call, text, and a partial marker that is held (no content yet) */
    lc_tmpl_msg m;
    assert_int_equal(lc_tmpl_parse(o.parser,
                                   "<tool_call>\n{\"name\": \"get_v\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
                                   false, &m),
                     AIOS_OK);
    assert_int_equal(m.n_calls, 1);
    assert_string_equal(m.calls[0].name, "get_v");
    cJSON *args = cJSON_Parse(m.calls[0].arguments);
    assert_string_equal(cJSON_GetObjectItem(args, "city")->valuestring, "Paris");
    cJSON_Delete(args);
    lc_tmpl_msg_free(&m);
    assert_int_equal(lc_tmpl_parse(o.parser, "It is noon.", false, &m), AIOS_OK);
    assert_int_equal(m.n_calls, 0);
    assert_string_equal(m.content, "It is noon.");
    lc_tmpl_msg_free(&m);
    assert_int_equal(lc_tmpl_parse(o.parser, "<tool_c", true, &m), AIOS_OK);
    assert_int_equal(m.n_calls, 0);
    assert_string_equal(m.content, "");
    lc_tmpl_msg_free(&m);
    lc_tmpl_out_free(&o);
    /* required: the grammar starts at the call (no free text first), after the generation prompt */
    assert_int_equal(lc_tmpl_apply(t, USER_MSG, tools, LC_TOOLS_REQUIRED, false, &o, err, sizeof err), AIOS_OK);
    assert_non_null(strstr(o.grammar, "tool-calls ::= (tool-call space){1,1}")); /* one call without parallel_tool_calls */
    assert_false(o.lazy);
    assert_non_null(o.prefill);
    g = llama_sampler_init_grammar(vocab, o.grammar, "root");
    assert_int_equal(lc_tmpl_prefill(g, vocab, o.prefill), AIOS_OK);
    assert_false(feeds(g, "Sure. <tool_call>"));
    llama_sampler_free(g);
    g = llama_sampler_init_grammar(vocab, o.grammar, "root");
    assert_int_equal(lc_tmpl_prefill(g, vocab, o.prefill), AIOS_OK);
    assert_true(feeds(g, "<tool_call>\n{\"name\": \"get_v\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>"));
    llama_sampler_free(g);
    lc_tmpl_out_free(&o);
    /* a tool result round trip renders; bad input is an error, not an abort */
    const char *conv =
        "[{\"role\":\"user\",\"content\":\"time?\"},{\"role\":\"assistant\",\"content\":null,\"tool_calls\":"
        "[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"get_v\",\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"14:05\"}]";
    assert_int_equal(lc_tmpl_apply(t, conv, tools, LC_TOOLS_AUTO, true, &o, err, sizeof err), AIOS_OK);
    assert_non_null(strstr(o.prompt, "<tool_response>\n14:05"));
    lc_tmpl_out_free(&o);
    assert_int_equal(lc_tmpl_apply(t, "[{\"content\":\"no role\"}]", tools, LC_TOOLS_AUTO, true, &o, err, sizeof err),
                     AIOS_ERR_INVALID);
    assert_non_null(strstr(err, "role"));
    assert_int_equal(lc_tmpl_apply(t, "not json", NULL, LC_TOOLS_AUTO, true, &o, err, sizeof err), AIOS_ERR_INVALID);
    free(tools);
    lc_tmpl_free(t);
    /* the test model's own template (SmolLM2) has no tool-call format: the kernel's JSON calls */
    t = lc_tmpl_new(model, NULL, err, sizeof err);
    assert_non_null(t);
    assert_false(lc_tmpl_tool_calls(t));
    lc_tmpl_free(t);
    char bad[] = "{% if %}";
    assert_null(lc_tmpl_new(model, bad, err, sizeof err));
    assert_non_null(strstr(err, "template"));
}

/* Schemas the grammar must refuse rather than loosen (the validator checks what it cannot say). */
static void refused(const char *schema_json, const char *what) {
    cJSON *s = cJSON_Parse(schema_json);
    strbuf g;
    sb_init(&g, 0);
    char err[256] = "";
    assert_int_equal(llm_grammar_from_schema(s, &g, err, sizeof err), AIOS_ERR_INVALID);
    assert_non_null(strstr(err, what));
    sb_free(&g);
    cJSON_Delete(s);
}

static void test_grammar_agrees_with_validator(void **st) {
    (void)st;
    build_candidates();
    cJSON *builtins = builtin_schemas();
    for (const cJSON *b = builtins->child; b; b = b->next) {
        agree(b->string, b, 12);
        agree_native(b);
    }
    cJSON_Delete(builtins);
    /* manifest-style schemas over every keyword the validator checks */
    static const char *const SCHEMAS[] = {
        "{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"integer\",\"maximum\":10},\"unit\":{\"enum\":[\"c\",\"f\"]}},\"required\":[\"x\"]}",
        "{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false}",
        "{\"type\":\"object\",\"additionalProperties\":{\"type\":\"integer\",\"minimum\":-5,\"exclusiveMaximum\":7}}",
        "{\"type\":\"integer\",\"minimum\":-1234,\"maximum\":98765}",
        "{\"type\":\"integer\",\"exclusiveMinimum\":99,\"exclusiveMaximum\":1001}",
        "{\"type\":\"integer\",\"minimum\":-20,\"maximum\":-3}",
        "{\"type\":\"number\",\"minimum\":0.5,\"maximum\":3.5}",
        "{\"type\":\"number\",\"exclusiveMinimum\":-1}",
        "{\"type\":\"string\",\"minLength\":2,\"maxLength\":5}",
        "{\"type\":\"array\",\"items\":{\"type\":\"boolean\"},\"minItems\":1,\"maxItems\":3}",
        "{\"type\":\"array\",\"items\":{\"enum\":[1,2,3]},\"uniqueItems\":true}",
        "{\"anyOf\":[{\"type\":\"string\",\"maxLength\":3},{\"type\":\"integer\",\"minimum\":5,\"maximum\":9}]}",
        "{\"oneOf\":[{\"type\":\"string\"},{\"type\":\"null\"},{\"type\":\"boolean\"}]}",
        "{\"type\":[\"integer\",\"null\"],\"minimum\":3}",
        "{\"maxLength\":3,\"minimum\":2,\"maximum\":4}", /* untyped: each keyword binds its own types */
        "{\"type\":\"string\",\"minLength\":1,\"maxLength\":5000}",
        "{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":100},\"maxItems\":20}", /* 2000 rules when inline */
        "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"object\",\"properties\":{\"b\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"minLength\":1}}},"
        "\"required\":[\"b\"],\"additionalProperties\":false},\"c\":{\"const\":\"k\"}},\"required\":[\"a\"],\"additionalProperties\":false}",
    };
    for (size_t i = 0; i < sizeof SCHEMAS / sizeof SCHEMAS[0]; i++) {
        cJSON *s = cJSON_Parse(SCHEMAS[i]);
        assert_non_null(s);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(s, "type");
        if (!cJSON_IsString(t) || strcmp(t->valuestring, "object")) { /* tool parameters are an object: {"v": s} */
            cJSON *w = cJSON_CreateObject();
            cJSON_AddStringToObject(w, "type", "object");
            cJSON_AddItemToObject(cJSON_AddObjectToObject(w, "properties"), "v", s);
            cJSON_AddItemToArray(cJSON_AddArrayToObject(w, "required"), cJSON_CreateString("v"));
            cJSON_AddFalseToObject(w, "additionalProperties");
            s = w;
        }
        agree(SCHEMAS[i], s, 12);
        agree_native(s);
        cJSON_Delete(s);
    }
    assert_true(g_native_walks >= 6 * (int)(sizeof SCHEMAS / sizeof SCHEMAS[0]));
    refused("{\"type\":\"string\",\"pattern\":\"^a+$\"}", "pattern");
    refused("{\"allOf\":[{\"type\":\"integer\"},{\"minimum\":1}]}", "allOf");
    refused("{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}", "oneOf");
    refused("{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", "no integer");
    refused("{\"type\":\"array\",\"uniqueItems\":true,\"minItems\":2}", "uniqueItems");
    refused("{\"type\":\"string\",\"minLength\":2001}", "minLength"); /* llama.cpp repeats at most 2000 */
    free(g_cands);
}

/* The exact edges of the integer digit ranges. */
static void test_integer_ranges(void **st) {
    (void)st;
    char *g = grammar_for("{\"type\":\"integer\",\"minimum\":-105,\"maximum\":1999}");
    const char *yes[] = {"-105", "-100", "-99", "-1", "0", "9", "10", "199", "1000", "1999"};
    const char *no[] = {"-106", "-0", "2000", "10000", "01", "-1000"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        if (!accepts(g, yes[i])) fail_msg("%s refused", yes[i]);
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        if (accepts(g, no[i])) fail_msg("%s accepted", no[i]);
    free(g);
    g = grammar_for("{\"type\":\"integer\",\"exclusiveMinimum\":5}");
    assert_false(accepts(g, "5"));
    assert_true(accepts(g, "6"));
    assert_true(accepts(g, "123456789"));
    free(g);
}

static void quiet(enum ggml_log_level level, const char *text, void *ud) {
    (void)level;
    (void)text;
    (void)ud;
}

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
        cmocka_unit_test(test_text_release),
        cmocka_unit_test(test_schema_object),
        cmocka_unit_test(test_schema_types),
        cmocka_unit_test(test_schema_errors),
        cmocka_unit_test(test_json_object_and_tool_calls),
        cmocka_unit_test(test_integer_ranges),
        cmocka_unit_test(test_lazy_tool_grammar),
        cmocka_unit_test(test_template_tools),
        cmocka_unit_test(test_grammar_agrees_with_validator),
    };
    return cmocka_run_group_tests_name("llm", tests, setup, teardown);
}
