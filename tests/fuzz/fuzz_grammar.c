/*
 * fuzz_grammar.c - the property that whatever the schema-to-grammar converter
 * (src/llm/grammar.c) lets the model generate, the tool validator (src/tools/schema.c)
 * accepts, over fuzzed schemas. Input: a schema (JSON), a newline, then bytes that choose
 * the walk: llama.cpp's grammar sampler, on the default model's vocabulary (loaded
 * vocab-only; AIOS_MODEL overrides its path), offers the candidates it allows at each step
 * and the bytes pick one (tests/grammar_walk.h). Properties: a schema the validator lints
 * clean converts to a grammar llama.cpp accepts, or is refused with a reason; every
 * document a walk completes is JSON the validator accepts; a walk is never stuck.
 */
#include <cjson/cJSON.h>
#include <llama.h>
#include "fuzz.h"
#include "aios/result.h"
#include "kernel/kernel.h"
#include "llm/llm.h"
#include "tools/schema.h"
#include "../grammar_walk.h"

static const struct llama_vocab *vocab;
static llama_token *cands;
static int n_cands;

typedef struct chooser {
    const uint8_t *p, *end;
    unsigned long long rng; /* once the bytes run out */
} chooser;

static unsigned pick(void *ctx) {
    chooser *c = ctx;
    if (c->p < c->end) return *c->p++;
    c->rng ^= c->rng << 13, c->rng ^= c->rng >> 7, c->rng ^= c->rng << 17;
    return (unsigned)(c->rng >> 11);
}

static void quiet(enum ggml_log_level level, const char *text, void *ud) { (void)level, (void)text, (void)ud; }

static void load_vocab(void) {
    char path[1024];
    const char *env = getenv("AIOS_MODEL");
    if (env && *env) snprintf(path, sizeof path, "%s", env);
    else config_default_model_path(path, sizeof path);
    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    struct llama_model *model = llama_model_load_from_file(path, mp);
    if (!model) {
        fprintf(stderr, "fuzz_grammar: cannot load the vocabulary of %s (make model)\n", path);
        abort();
    }
    vocab = llama_model_get_vocab(model);
    chooser c = {NULL, NULL, 0x9E3779B97F4A7C15ull};
    cands = gw_candidates(vocab, 200, pick, &c, &n_cands);
    if (!cands) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!vocab) load_vocab();
    const uint8_t *nl = memchr(data, '\n', size);
    size_t slen = nl ? (size_t)(nl - data) : size;
    cJSON *schema = cJSON_ParseWithLength((const char *)data, slen);
    char err[512] = "";
    if (!schema || tool_schema_lint(schema, err, sizeof err) != AIOS_OK) {
        cJSON_Delete(schema);
        return 0;
    }
    strbuf g;
    sb_init(&g, 1 << 20);
    int rc = llm_grammar_from_schema(schema, &g, err, sizeof err);
    if (rc != AIOS_OK) {
        FUZZ_CHECK(err[0] || rc == AIOS_ERR_TOO_LARGE);
    } else {
        struct llama_sampler *gs = llama_sampler_init_grammar(vocab, g.data, "root");
        if (!gs) fprintf(stderr, "grammar llama.cpp refused:\n%s\n", g.data);
        FUZZ_CHECK(gs != NULL);
        chooser c = {nl ? nl + 1 : data + size, data + size, 0x2545F4914F6CDD1Dull ^ size};
        strbuf doc;
        sb_init(&doc, 0);
        int done = gw_walk(vocab, gs, cands, n_cands, 300, pick, &c, &doc);
        llama_sampler_free(gs);
        FUZZ_CHECK(done >= 0 || done == -2);
        if (done == 1) {
            cJSON *v = cJSON_ParseWithLength(doc.data ? doc.data : "", doc.len);
            if (!v || tool_schema_check(schema, v, err, sizeof err) != AIOS_OK)
                fprintf(stderr, "schema %.*s\ngenerated %s\nrefused: %s\n", (int)slen, (const char *)data,
                        doc.data ? doc.data : "", v ? err : "not JSON");
            FUZZ_CHECK(v && tool_schema_check(schema, v, err, sizeof err) == AIOS_OK);
            cJSON_Delete(v);
        }
        sb_free(&doc);
    }
    sb_free(&g);
    cJSON_Delete(schema);
    return 0;
}
