/*
 * test_kernel.c - unit tests of the kernel module: result table, string buffer, and the
 * layered configuration (defaults, YAML, environment, --set, validation, reference doc).
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
#include "kernel/kernel.h"

static void test_result_table(void **st) {
    (void)st;
    assert_int_equal(aios_http_status(AIOS_OK), 200);
    assert_int_equal(aios_http_status(AIOS_ERR_INVALID), 400);
    assert_int_equal(aios_http_status(AIOS_ERR_NOT_FOUND), 404);
    assert_int_equal(aios_http_status(AIOS_ERR_TOO_LARGE), 413);
    assert_int_equal(aios_http_status(AIOS_ERR_CONTEXT), 400);
    assert_int_equal(aios_http_status(AIOS_ERR_NOT_IMPLEMENTED), 501);
    assert_string_equal(aios_errcode(AIOS_ERR_CONTEXT), "context_length_exceeded");
    assert_string_equal(aios_strerror(AIOS_ERR_BUSY), "queue full, retry later");
    assert_string_equal(aios_strerror(-9999), "unknown error");
    assert_int_equal(aios_http_status(-9999), 500);
}

static void test_strbuf_limits(void **st) {
    (void)st;
    strbuf b;
    sb_init(&b, 8);
    assert_int_equal(sb_puts(&b, "abcd"), AIOS_OK);
    assert_int_equal(sb_printf(&b, "%d", 1234), AIOS_OK);
    assert_int_equal(b.len, 8);
    assert_int_equal(sb_puts(&b, "x"), AIOS_ERR_TOO_LARGE);
    assert_string_equal(b.data, "abcd1234"); /* unchanged by the refused append */
    char *s = sb_steal(&b);
    assert_string_equal(s, "abcd1234");
    assert_null(b.data);
    free(s);
    sb_free(&b);
    sb_free(NULL);
}

static char *write_tmp(const char *text) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/aios-test-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_config_defaults(void **st) {
    (void)st;
    aios_config c;
    config_defaults(&c);
    char err[256];
    assert_string_equal(c.server.host, "127.0.0.1");
    assert_int_equal(c.server.port, 8000);
    assert_int_equal(c.scheduler.max_active, 16);
    assert_string_equal(c.scheduler.policy, "fifo");
    assert_int_equal(c.llms.n_models, 1);
    assert_string_equal(c.llms.models[0].name, "smollm2");
    assert_non_null(strstr(c.llms.models[0].path, "SmolLM2-135M-Instruct-Q8_0.gguf"));
    assert_int_equal(config_validate(&c, err, sizeof err), AIOS_OK);
    assert_ptr_equal(config_model(&c, NULL), &c.llms.models[0]);
    assert_null(config_model(&c, "nope"));
}

static void test_config_yaml(void **st) {
    (void)st;
    aios_config c;
    config_defaults(&c);
    char err[256] = "";
    const char *p = write_tmp(
        "server:\n  port: 9100\n  max_body_bytes: 4096\nllms:\n  default_model: a\n  allow_oversubscribe: 1\n  models:\n"
        "    - name: a\n      backend: llamacpp\n      path: /x/a.gguf\n      ctx_size: 512\n"
        "    - name: b\n      path: /x/b.gguf\nscheduler:\n  max_active: 4\nmemory:\n  limit_bytes: 1024\n"
        "  eviction_k: 3\nstorage:\n  synchronous: full\nagents:\n  planner:\n    memory_limit_bytes: 77\n"
        "tools:\n  dir: x\n");
    assert_int_equal(config_load_file(&c, p, err, sizeof err), AIOS_OK);
    unlink(p);
    assert_int_equal(c.server.port, 9100);
    assert_int_equal(c.server.max_body_bytes, 4096);
    assert_int_equal(c.llms.n_models, 2);
    assert_string_equal(c.llms.models[1].name, "b");
    assert_int_equal(c.llms.models[0].ctx_size, 512);
    assert_int_equal(c.llms.models[1].kv_size, 32768); /* a default per entry */
    assert_int_equal(c.scheduler.max_active, 4);
    assert_int_equal(c.memory.limit_bytes, 1024);
    assert_int_equal(c.memory.eviction_k, 3);
    assert_string_equal(c.storage.synchronous, "full");
    assert_int_equal(config_agent_memory_limit(&c, "planner"), 77);
    assert_int_equal(config_agent_memory_limit(&c, "other"), 1024);
    assert_int_equal(config_agent_priority(&c, "planner"), c.scheduler.default_priority); /* only its memory was set */
    assert_ptr_equal(config_model(&c, NULL), &c.llms.models[0]);
    assert_int_equal(config_validate(&c, err, sizeof err), AIOS_OK);
}

static void test_config_yaml_errors(void **st) {
    (void)st;
    static const struct {
        const char *yaml, *needle;
    } CASES[] = {
        {"server:\n  prot: 1\n", "server.prot"},
        {"server:\n  port: 99999\n", "out of range"},
        {"server:\n  port: eighty\n", "expected an integer"},
        {"bogus:\n  x: 1\n", "unknown section 'bogus'"},
        {"server: [1, 2\n", "YAML error"},
        {"llms:\n  models: []\n", "empty"},
        {"llms:\n  models:\n    - name: a\n      colour: red\n", "colour"},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        aios_config c;
        config_defaults(&c);
        char err[256] = "";
        const char *p = write_tmp(CASES[i].yaml);
        assert_int_equal(config_load_file(&c, p, err, sizeof err), AIOS_ERR_CONFIG);
        unlink(p);
        if (!strstr(err, CASES[i].needle)) fail_msg("case %zu: '%s' lacks '%s'", i, err, CASES[i].needle);
        assert_non_null(strstr(err, ":")); /* file:line: prefix */
    }
    aios_config c;
    config_defaults(&c);
    char err[256];
    assert_int_equal(config_load_file(&c, "/nonexistent/aios.yaml", err, sizeof err), AIOS_ERR_CONFIG);
    assert_non_null(strstr(err, "/nonexistent/aios.yaml"));
}

static const char *fake_env(const char *name) {
    if (!strcmp(name, "AIOS_SERVER_PORT")) return "8123";
    if (!strcmp(name, "AIOS_SCHEDULER_MAX_ACTIVE")) return "3";
    if (!strcmp(name, "AIOS_MODEL")) return "/m/model.gguf";
    return NULL;
}
static const char *bad_env(const char *name) { return !strcmp(name, "AIOS_SERVER_PORT") ? "x" : NULL; }

static void test_config_env_and_set(void **st) {
    (void)st;
    aios_config c;
    config_defaults(&c);
    char err[256] = "";
    assert_int_equal(config_load_env(&c, fake_env, err, sizeof err), AIOS_OK);
    assert_int_equal(c.server.port, 8123);
    assert_int_equal(c.scheduler.max_active, 3);
    assert_string_equal(c.llms.models[0].path, "/m/model.gguf");
    assert_int_equal(config_load_env(&c, bad_env, err, sizeof err), AIOS_ERR_CONFIG);
    assert_non_null(strstr(err, "AIOS_SERVER_PORT"));
    assert_int_equal(config_set(&c, "server.port", "8200", err, sizeof err), AIOS_OK);
    assert_int_equal(c.server.port, 8200);
    assert_int_equal(config_set(&c, "server.nope", "1", err, sizeof err), AIOS_ERR_CONFIG);
    assert_non_null(strstr(err, "server.nope"));
    char longv[200];
    memset(longv, 'a', sizeof longv - 1);
    longv[sizeof longv - 1] = 0;
    assert_int_equal(config_set(&c, "server.host", longv, err, sizeof err), AIOS_ERR_CONFIG);
}

static void test_config_validate(void **st) {
    (void)st;
    aios_config c;
    config_defaults(&c);
    char err[256];
    snprintf(c.scheduler.policy, sizeof c.scheduler.policy, "lottery");
    assert_int_equal(config_validate(&c, err, sizeof err), AIOS_ERR_CONFIG);
    assert_non_null(strstr(err, "scheduler.policy"));
    assert_non_null(strstr(err, "allowed: fifo"));
    config_defaults(&c);
    snprintf(c.llms.models[0].backend, sizeof c.llms.models[0].backend, "quantum");
    assert_int_equal(config_validate(&c, err, sizeof err), AIOS_ERR_CONFIG);
    assert_non_null(strstr(err, "backend"));
    config_defaults(&c);
    snprintf(c.log_level, sizeof c.log_level, "loud");
    assert_int_equal(config_validate(&c, err, sizeof err), AIOS_ERR_CONFIG);
    /* two local models on every CPU each oversubscribe; their own threads, or the flag, fit */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    config_defaults(&c);
    c.llms.n_models = 2;
    c.llms.models[1] = c.llms.models[0];
    snprintf(c.llms.models[1].name, sizeof c.llms.models[1].name, "second");
    assert_int_equal(config_validate(&c, err, sizeof err), AIOS_ERR_CONFIG);
    assert_non_null(strstr(err, "llms.allow_oversubscribe"));
    c.llms.allow_oversubscribe = 1;
    assert_int_equal(config_validate(&c, err, sizeof err), AIOS_OK);
    c.llms.allow_oversubscribe = 0;
    c.llms.models[0].threads = 1;
    c.llms.models[1].threads = ncpu > 1 ? (int)ncpu - 1 : 1;
    assert_int_equal(config_validate(&c, err, sizeof err), ncpu > 1 ? AIOS_OK : AIOS_ERR_CONFIG);
    /* a remote model takes no local threads; an alias may not name another model */
    snprintf(c.llms.models[1].backend, sizeof c.llms.models[1].backend, "openai");
    snprintf(c.llms.models[1].hostname, sizeof c.llms.models[1].hostname, "http://127.0.0.1:9");
    c.llms.models[0].threads = 0;
    assert_int_equal(config_validate(&c, err, sizeof err), AIOS_OK);
    snprintf(c.llms.models[1].aliases, sizeof c.llms.models[1].aliases, "gpt-4o, %s", c.llms.models[0].name);
    assert_int_equal(config_validate(&c, err, sizeof err), AIOS_ERR_CONFIG);
    assert_non_null(strstr(err, "already names model"));
    assert_true(config_model_alias(&c.llms.models[1], "gpt-4o"));
    assert_int_equal(config_model_index(&c, "gpt-4o"), 1);
}

static void test_config_reference(void **st) {
    (void)st;
    char path[] = "/tmp/aios-doc-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    assert_int_equal(config_write_reference(path), AIOS_OK);
    FILE *f = fopen(path, "r");
    static char buf[1 << 17];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    assert_true(n < sizeof buf - 1); /* the whole reference was read */
    buf[n] = 0;
    fclose(f);
    unlink(path);
    assert_non_null(strstr(buf, "`server.port` | `8000` | `AIOS_SERVER_PORT`"));
    assert_non_null(strstr(buf, "`scheduler.max_active`"));
    assert_non_null(strstr(buf, "| `kv_size` |"));
}

static void test_u64map(void **st) {
    (void)st;
    u64map m;
    u64map_init(&m);
    static int vals[5000];
    for (int i = 0; i < 5000; i++) assert_int_equal(u64map_put(&m, (uint64_t)i * 7919, &vals[i]), AIOS_OK);
    assert_int_equal(m.len, 5000);
    for (int i = 0; i < 5000; i += 2) assert_ptr_equal(u64map_del(&m, (uint64_t)i * 7919), &vals[i]);
    assert_null(u64map_del(&m, 0)); /* already gone */
    for (int i = 0; i < 5000; i++) {
        void *v = u64map_get(&m, (uint64_t)i * 7919);
        if (i % 2) assert_ptr_equal(v, &vals[i]); /* backward-shift deletion kept every chain intact */
        else assert_null(v);
    }
    assert_int_equal(m.len, 2500);
    u64map_free(&m);
}

static void count_cb(const char *key, void *val, void *ctx) {
    (void)key;
    (void)val;
    (*(int *)ctx)++;
}

static void test_strmap(void **st) {
    (void)st;
    strmap m;
    strmap_init(&m);
    char key[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "agent-%d", i);
        assert_int_equal(strmap_put(&m, key, (void *)(intptr_t)(i + 1)), AIOS_OK);
    }
    assert_int_equal(strmap_put(&m, "agent-5", (void *)(intptr_t)99), AIOS_OK); /* replace */
    assert_int_equal(m.len, 1000);
    assert_int_equal((intptr_t)strmap_get(&m, "agent-5"), 99);
    assert_int_equal((intptr_t)strmap_del(&m, "agent-7"), 8);
    assert_null(strmap_get(&m, "agent-7"));
    assert_int_equal((intptr_t)strmap_get(&m, "agent-999"), 1000);
    int n = 0;
    strmap_foreach(&m, count_cb, &n);
    assert_int_equal(n, 999);
    strmap_free(&m);
}

/* The one UTF-8 check (the JSON gate's, and the LLM module's before llama.cpp's tokenizer,
 * which throws on what it cannot decode). */
static void test_utf8(void **st) {
    (void)st;
    const char *good[] = {"plain", "\xc3\xa9t\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf", ""};
    const char *bad[] = {"\xc0\xaf",         /* overlong '/' */
                         "\xe0\x80\xaf",     /* overlong, 3 bytes */
                         "\xed\xa0\x80",     /* a UTF-16 surrogate (CESU-8) */
                         "\xf4\x90\x80\x80", /* past U+10FFFF */
                         "\xf5\x80\x80\x80", /* 5-byte lead range */
                         "\x80",
                         "a\xe2\x82"}; /* a stray continuation byte; cut short */
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) assert_true(kern_utf8_valid(good[i], strlen(good[i])));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) assert_false(kern_utf8_valid(bad[i], strlen(bad[i])));
    assert_int_equal(kern_utf8_len((const unsigned char *)"\xe2\x82", 2), -1);
    char s[] = "ok\xf4\x90\x80\x80\xc3\xa9";
    kern_utf8_sanitize(s);
    assert_string_equal(s, "ok????\xc3\xa9");
    assert_true(kern_utf8_valid(s, strlen(s)));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_result_table),
        cmocka_unit_test(test_strbuf_limits),
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test(test_config_yaml),
        cmocka_unit_test(test_config_yaml_errors),
        cmocka_unit_test(test_config_env_and_set),
        cmocka_unit_test(test_config_validate),
        cmocka_unit_test(test_config_reference),
        cmocka_unit_test(test_u64map),
        cmocka_unit_test(test_strmap),
        cmocka_unit_test(test_utf8),
    };
    return cmocka_run_group_tests_name("kernel", tests, NULL, NULL);
}
