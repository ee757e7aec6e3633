/*
 * fuzz_schema.c - the JSON Schema subset (src/tools/schema.c: lint and check) and the
 * schema-to-grammar converter (src/llm/grammar.c), which read schemas from tool manifests,
 * MCP servers and API requests (response_format, tools). Input: schema JSON, newline, value
 * JSON. Properties: no crash, no unbounded recursion; a check that fails says why; a schema
 * the linter accepts converts to a grammar with a root rule, or says why not.
 */
#include <cjson/cJSON.h>
#include "fuzz.h"
#include "aios/result.h"
#include "kernel/kernel.h"
#include "llm/llm.h"
#include "tools/schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s = fuzz_str(data, size), *v, err[512];
    if (!s) return 0;
    fuzz_split(s, &v);
    cJSON *schema = cJSON_Parse(s), *value = cJSON_Parse(v);
    if (schema) {
        int lint = tool_schema_lint(schema, err, sizeof err);
        if (value && tool_schema_check(schema, value, err, sizeof err) != AIOS_OK) FUZZ_CHECK(err[0] != 0);
        strbuf g;
        sb_init(&g, 1 << 20);
        err[0] = 0;
        int rc = llm_grammar_from_schema(schema, &g, err, sizeof err);
        if (rc == AIOS_OK) FUZZ_CHECK(g.data && strstr(g.data, "root ::= "));
        else FUZZ_CHECK(err[0] != 0 || rc == AIOS_ERR_NOMEM || rc == AIOS_ERR_TOO_LARGE);
        sb_free(&g);
        if (lint == AIOS_OK) {
            const char *names[] = {"f"};
            const cJSON *schemas[] = {schema};
            sb_init(&g, 1 << 20);
            llm_grammar_tool_calls(names, schemas, 1, 2, &g, err, sizeof err);
            sb_free(&g);
        }
    }
    cJSON_Delete(schema);
    cJSON_Delete(value);
    free(s);
    return 0;
}
