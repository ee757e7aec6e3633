/*
 * fuzz_mcp.c - what the kernel reads from an MCP server (src/tools/mcp.c): JSON-RPC
 * messages, one per line, on the server's stdout. The input is that output; mcp_replay reads
 * it with the code that reads a live server: its answers to initialize (id 1) and tools/list
 * (id 2) give tools, its answer to id 3 is a tools/call's result, and its own requests are
 * answered (on a pipe here). Properties: no crash or leak; every tool taken has a valid name
 * under the server's, a description, and an object schema or none; a call's output stays
 * within max_output plus the truncation note; a failed call says why.
 */
#include <fcntl.h>
#include <cjson/cJSON.h>
#include "fuzz.h"
#include "aios/result.h"
#include "tools/tools_internal.h"

#define MAX_OUTPUT 256

static aios_config *cfg;
static int answers[2]; /* a pipe: what the kernel answers the server's requests (drained, dropped) */

static void drain(void) {
    char buf[4096];
    while (read(answers[0], buf, sizeof buf) > 0) {}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!cfg) {
        if (!(cfg = malloc(sizeof *cfg)) || pipe2(answers, O_NONBLOCK)) abort();
        config_defaults(cfg);
        log_set_level(LOG_LEVEL_ERROR); /* ("ready, N tools" and bad tool names, on every input) */
    }
    aios_mcp_cfg m = {0};
    snprintf(m.name, sizeof m.name, "fz");
    tool_def *called = tool_def_new(), **defs = NULL;
    if (!called) return 0;
    snprintf(called->name, sizeof called->name, "fz/t");
    snprintf(called->remote, sizeof called->remote, "t");
    int nd = 0, cap = 0;
    strbuf out;
    sb_init(&out, MAX_OUTPUT + 256);
    bool out_json = false, truncated = false;
    atomic_bool no = false;
    char err[512] = "";
    tool_run run = {.agent = "fuzz",
                    .params = "{}",
                    .cancel = &no,
                    .stop = &no,
                    .max_output = MAX_OUTPUT,
                    .out = &out,
                    .out_json = &out_json,
                    .truncated = &truncated,
                    .err = err,
                    .errlen = sizeof err};
    int rc = mcp_replay(&m, cfg, (const char *)data, size, answers[1], &defs, &nd, &cap, called, &run);
    drain();
    for (int i = 0; i < nd; i++) {
        FUZZ_CHECK(tool_name_ok(defs[i]->name) && !strncmp(defs[i]->name, "fz/", 3) && defs[i]->description);
        FUZZ_CHECK(!defs[i]->schema || cJSON_IsObject(defs[i]->schema));
        tool_def_unref(defs[i]);
    }
    free(defs);
    FUZZ_CHECK(out.len <= MAX_OUTPUT + 128);
    if (rc != AIOS_OK && rc != AIOS_ERR_NOMEM) FUZZ_CHECK(err[0] != 0);
    if (truncated) FUZZ_CHECK(rc == AIOS_ERR_TOO_LARGE);
    sb_free(&out);
    tool_def_unref(called);
    return 0;
}
