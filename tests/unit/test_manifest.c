/*
 * test_manifest.c - unit tests of tool manifest loading: a full manifest sets every field
 * (and an empty one takes the tools.* defaults), each kind of bad manifest is refused
 * with an error naming the file and the field, and tool names that could become "." or ".."
 * or an empty segment of a path are refused wherever they come from.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tools/tools_internal.h"

static char g_path[256];
static aios_config g_cfg;

static tool_def *load(const char *json, char *err, size_t errlen) {
    snprintf(g_path, sizeof g_path, "/tmp/aios-test-manifest-%d.json", (int)getpid());
    FILE *f = fopen(g_path, "w");
    assert_non_null(f);
    fputs(json, f);
    fclose(f);
    config_defaults(&g_cfg);
    tool_def *d = manifest_load(g_path, &g_cfg, err, errlen);
    unlink(g_path);
    return d;
}

static void test_full_manifest(void **st) {
    (void)st;
    char err[512] = "";
    tool_def *d =
        load("{\"name\": \"demo/grep\", \"description\": \"search\", \"version\": \"1.2\","
             " \"parameters\": {\"type\": \"object\", \"properties\": {\"q\": {\"type\": \"string\", \"maxLength\": 10}},"
             "  \"required\": [\"q\"]},"
             " \"kind\": \"process\", \"command\": \"run.sh\", \"args\": [\"-n\", \"x\"],"
             " \"timeout_ms\": 1500, \"max_parallel\": 3, \"irreversible\": true,"
             " \"sandbox\": {\"fs\": \"workdir\", \"network\": true},"
             " \"limits\": {\"cpu_seconds\": 2, \"memory_mb\": 64, \"file_size_mb\": 1, \"max_procs\": 4}}",
             err, sizeof err);
    if (!d) fail_msg("%s", err);
    assert_string_equal(d->name, "demo/grep");
    assert_string_equal(d->description, "search");
    assert_string_equal(d->version, "1.2");
    assert_int_equal(d->kind, TOOL_KIND_PROCESS);
    assert_string_equal(d->command, "run.sh");
    assert_int_equal(d->n_args, 2);
    assert_string_equal(d->args[1], "x");
    assert_int_equal(d->timeout_ms, 1500);
    assert_int_equal(d->max_parallel, 3);
    assert_true(d->irreversible);
    assert_int_equal(d->fs, TOOL_FS_WORKDIR);
    assert_true(d->network);
    assert_int_equal(d->cpu_seconds, 2);
    assert_int_equal(d->memory_mb, 64);
    assert_int_equal(d->file_size_mb, 1);
    assert_int_equal(d->max_procs, 4);
    assert_non_null(d->schema);
    assert_string_equal(d->dir, "/tmp");
    assert_string_equal(d->source, g_path);
    tool_def_unref(d);
    /* the smallest manifest takes the tools.* defaults: no fs, no network, reversible */
    d = load("{\"name\": \"x\", \"command\": \"/bin/true\"}", err, sizeof err);
    if (!d) fail_msg("%s", err);
    assert_int_equal(d->timeout_ms, g_cfg.tools.default_timeout_ms);
    assert_int_equal(d->max_parallel, g_cfg.tools.default_max_parallel);
    assert_int_equal(d->memory_mb, g_cfg.tools.memory_mb);
    assert_int_equal(d->fs, TOOL_FS_NONE);
    assert_false(d->network);
    assert_false(d->irreversible);
    assert_null(d->schema);
    tool_def_unref(d);
    /* the other kinds */
    d = load("{\"name\": \"t\", \"kind\": \"mcp\", \"server\": \"time\", \"tool\": \"get_current_time\"}", err, sizeof err);
    if (!d) fail_msg("%s", err);
    assert_int_equal(d->kind, TOOL_KIND_MCP);
    assert_string_equal(d->remote, "time/get_current_time");
    tool_def_unref(d);
    d = load("{\"name\": \"calc\", \"kind\": \"builtin\", \"builtin\": \"aios/calculator\"}", err, sizeof err);
    if (!d) fail_msg("%s", err);
    assert_int_equal(d->kind, TOOL_KIND_BUILTIN);
    assert_string_equal(d->remote, "aios/calculator");
    tool_def_unref(d);
}

static void test_bad_manifests(void **st) {
    (void)st;
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"{\"name\": ", "not valid JSON"},
        {"[1]", "(top level): must be a JSON object"},
        {"{\"command\": \"x\"}", "name: required"},
        {"{\"name\": 7, \"command\": \"x\"}", "name: must be a string"},
        {"{\"name\": \"../etc\", \"command\": \"x\"}", "name: '../etc' must be"},
        {"{\"name\": \"a__b\", \"command\": \"x\"}", "name: 'a__b' must be"},
        /* a name is used as a path component: no segment may be empty or dots only */
        {"{\"name\": \".\", \"command\": \"x\"}", "name: '.' must be"},
        {"{\"name\": \"..\", \"command\": \"x\"}", "name: '..' must be"},
        {"{\"name\": \"a/./b\", \"command\": \"x\"}", "name: 'a/./b' must be"},
        {"{\"name\": \"a//b\", \"command\": \"x\"}", "name: 'a//b' must be"},
        {"{\"name\": \"/a\", \"command\": \"x\"}", "name: '/a' must be"},
        {"{\"name\": \"a/\", \"command\": \"x\"}", "name: 'a/' must be"},
        {"{\"name\": \"a/.\", \"command\": \"x\"}", "name: 'a/.' must be"},
        {"{\"name\": \"./a\", \"command\": \"x\"}", "name: './a' must be"},
        {"{\"name\": \"\", \"command\": \"x\"}", "name: '' must be"},
        {"{\"name\": \"x\"}", "command: required"},
        {"{\"name\": \"x\", \"command\": \"\"}", "command: must not be empty"},
        {"{\"name\": \"x\", \"command\": \"c\", \"args\": [1]}", "args: must be a list of strings"},
        {"{\"name\": \"x\", \"kind\": \"python\"}", "kind: 'python' is not one of process, mcp, builtin"},
        {"{\"name\": \"x\", \"kind\": \"mcp\", \"server\": \"s\"}", "tool: required"},
        {"{\"name\": \"x\", \"kind\": \"builtin\"}", "builtin: required"},
        {"{\"name\": \"x\", \"command\": \"c\", \"timeout_ms\": 0}", "timeout_ms: must be an integer in [1, 86400000]"},
        {"{\"name\": \"x\", \"command\": \"c\", \"max_parallel\": 1.5}", "max_parallel: must be an integer"},
        {"{\"name\": \"x\", \"command\": \"c\", \"irreversible\": \"yes\"}", "irreversible: must be true or false"},
        {"{\"name\": \"x\", \"command\": \"c\", \"sandbox\": {\"fs\": \"rw\"}}",
         "sandbox.fs: 'rw' is not one of none, ro, workdir"},
        {"{\"name\": \"x\", \"command\": \"c\", \"sandbox\": {\"network\": 1}}", "network: must be true or false"},
        {"{\"name\": \"x\", \"command\": \"c\", \"limits\": {\"memory_mb\": 1}}", "memory_mb: must be an integer in [16,"},
        {"{\"name\": \"x\", \"command\": \"c\", \"parameters\": []}", "parameters: must be a JSON Schema object"},
        {"{\"name\": \"x\", \"command\": \"c\", \"parameters\": {\"type\": \"strang\"}}", "parameters: "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char err[512] = "";
        tool_def *d = load(cases[i].json, err, sizeof err);
        if (d) fail_msg("%s: loaded, want '%s'", cases[i].json, cases[i].want);
        if (strncmp(err, g_path, strlen(g_path)) || !strstr(err, cases[i].want))
            fail_msg("%s: error '%s' lacks the file or '%s'", cases[i].json, err, cases[i].want);
    }
    char err[512];
    assert_null(manifest_load("/nonexistent/x.json", &g_cfg, err, sizeof err));
    assert_string_equal(err, "/nonexistent/x.json: cannot open");
}

/* The validator every source of tools shares (manifests, MCP "<server>/<tool>"). */
static void test_tool_names(void **st) {
    (void)st;
    static const char *const good[] = {"x", "demo/grep", "time/get_current_time", "a.b/c-d_e", ".hidden", "a/b.", "v1.2/x"};
    static const char *const bad[] = {"",    ".",   "..",   "...",  "a/./b", "a/../b", "a//b",        "/a",   "a/",
                                      "a/.", "./a", "a__b", "a..b", "a b",   "a\\b",   "caf\xc3\xa9", "x/%2E"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        if (!tool_name_ok(good[i])) fail_msg("'%s' refused", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (tool_name_ok(bad[i])) fail_msg("'%s' accepted", bad[i]);
    char longest[TOOL_NAME_MAX];
    memset(longest, 'a', sizeof longest - 1);
    longest[sizeof longest - 1] = 0;
    assert_true(tool_name_ok(longest));
    char too_long[TOOL_NAME_MAX + 1];
    memset(too_long, 'a', sizeof too_long - 1);
    too_long[sizeof too_long - 1] = 0;
    assert_false(tool_name_ok(too_long));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_manifest),
        cmocka_unit_test(test_bad_manifests),
        cmocka_unit_test(test_tool_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
