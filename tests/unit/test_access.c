/*
 * test_access.c - unit tests of the access manager: rule syntax, group rules and the
 * built-in groups, deny rules and the own namespace, identities (hashed tokens, revocation, persistence across a reopen),
 * approvals (approve, deny, timeout, cancel, the waiting bound), the audit log (one
 * JSON line per decision with the parameters' SHA-256, rotation by size) and budgets.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <cjson/cJSON.h>
#include "access/access.h"

#define TMPDB_NAME "acc"
#include "tmpdb.h"

static char g_audit[300];
static aios_config g_cfg;

static const char *YAML =
    "access:\n"
    "  groups:\n"
    "    readers: [\"memory:bob:read\", \"tool:demo/*\", \"llm:qwen*\", \"storage:bob:read,share\"]\n"
    "    nothing: []\n"
    "    guarded: [\"llm:*\", \"tool:*\", \"!tool:demo/rm\", \"memory:*:read\", \"!memory:carol\", \"!memory:self:write\", \"!storage:self\"]\n"
    "agents:\n"
    "  gus:\n"
    "    group: guarded\n"
    "  alice:\n"
    "    group: readers\n"
    "  root:\n"
    "    group: admin\n";

static int setup(void **st) {
    tmpdb_setup(st);
    snprintf(g_audit, sizeof g_audit, "/tmp/aios-test-audit-%d.log", (int)getpid());
    unlink(g_audit);
    config_defaults(&g_cfg);
    char path[300], err[256] = "";
    snprintf(path, sizeof path, "/tmp/aios-test-acc-%d.yaml", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(YAML, f);
    fclose(f);
    int rc = config_load_file(&g_cfg, path, err, sizeof err);
    unlink(path);
    if (rc) fail_msg("config: %s", err);
    return 0;
}

static int teardown(void **st) {
    tmpdb_teardown(st);
    char p[320];
    unlink(g_audit);
    for (int i = 1; i <= 10; i++) {
        snprintf(p, sizeof p, "%s.%d", g_audit, i);
        unlink(p);
    }
    return 0;
}

static access_manager *open_am(void) {
    char err[256] = "";
    access_params p = access_default_params();
    p.cfg = &g_cfg;
    p.db_path = g_db;
    p.audit_path = g_audit;
    access_manager *am = access_open(&p, err, sizeof err);
    if (!am) fail_msg("access_open: %s", err);
    return am;
}

static int check(access_manager *am, const char *agent, access_kind kind, const char *res, unsigned action) {
    char err[256];
    return access_check(am, agent, kind, res, action, NULL, NULL, err, sizeof err);
}

/* The audit file's lines, parsed; *n gets how many. */
static cJSON **audit_lines(const char *path, int *n) {
    static cJSON *lines[4096];
    char buf[2048];
    FILE *f = fopen(path, "r");
    *n = 0;
    if (!f) return lines;
    while (*n < 4096 && fgets(buf, sizeof buf, f)) {
        assert_non_null(strchr(buf, '\n')); /* whole lines only */
        lines[*n] = cJSON_Parse(buf);
        if (!lines[*n]) fail_msg("audit line is not JSON: %s", buf);
        (*n)++;
    }
    fclose(f);
    return lines;
}

static void free_lines(cJSON **lines, int n) {
    for (int i = 0; i < n; i++) cJSON_Delete(lines[i]);
}

static const char *str(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static void test_rule_syntax(void **st) {
    (void)st;
    char err[256];
    const char *good[] = {"*", "llm:*", "tool:demo/*", "memory:bob:read", "storage:bob:read,write,share", "admin", "tool:x:call"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        if (access_rule_check(good[i], err, sizeof err)) fail_msg("%s: %s", good[i], err);
    assert_int_equal(access_rule_check("disk:*", err, sizeof err), AIOS_ERR_CONFIG);
    assert_non_null(strstr(err, "unknown kind 'disk'"));
    assert_int_equal(access_rule_check("llm:x:read", err, sizeof err), AIOS_ERR_CONFIG); /* read is not an llm action */
    assert_non_null(strstr(err, "do not apply to llm"));
    assert_int_equal(access_rule_check("memory:bob:fly", err, sizeof err), AIOS_ERR_CONFIG);
    /* a bad rule in the config refuses to open */
    snprintf(g_cfg.access.groups[1].rules[0], AIOS_RULE_MAX, "tool:x:write");
    g_cfg.access.groups[1].n_rules = 1;
    access_params p = access_default_params();
    p.cfg = &g_cfg;
    p.db_path = g_db;
    p.audit_path = g_audit;
    assert_null(access_open(&p, err, sizeof err));
    assert_non_null(strstr(err, "access.groups.nothing"));
}

static void test_group_rules(void **st) {
    (void)st;
    access_manager *am = open_am();
    /* readers: bob's memory read only, demo/ tools, qwen models, bob's files read+share */
    assert_int_equal(check(am, "alice", ACCESS_KIND_MEMORY, "bob", ACCESS_READ), AIOS_OK);
    assert_int_equal(check(am, "alice", ACCESS_KIND_MEMORY, "bob", ACCESS_WRITE), AIOS_ERR_FORBIDDEN);
    assert_int_equal(check(am, "alice", ACCESS_KIND_MEMORY, "carol", ACCESS_READ), AIOS_ERR_FORBIDDEN);
    assert_int_equal(check(am, "alice", ACCESS_KIND_TOOL, "demo/echo", ACCESS_CALL), AIOS_OK);
    assert_int_equal(check(am, "alice", ACCESS_KIND_TOOL, "aios/write_file", ACCESS_CALL), AIOS_ERR_FORBIDDEN);
    assert_int_equal(check(am, "alice", ACCESS_KIND_LLM, "qwen2.5-0.5b", ACCESS_USE), AIOS_OK);
    assert_int_equal(check(am, "alice", ACCESS_KIND_LLM, "llama", ACCESS_USE), AIOS_ERR_FORBIDDEN);
    assert_int_equal(check(am, "alice", ACCESS_KIND_STORAGE, "bob", ACCESS_SHARE), AIOS_OK);
    assert_int_equal(check(am, "alice", ACCESS_KIND_STORAGE, "bob", ACCESS_WRITE), AIOS_ERR_FORBIDDEN);
    assert_int_equal(check(am, "alice", ACCESS_KIND_ADMIN, "api", ACCESS_ADMIN), AIOS_ERR_FORBIDDEN);
    /* the built-in default group: every model and tool, nobody else's data, no admin */
    assert_int_equal(check(am, "dave", ACCESS_KIND_LLM, "anything", ACCESS_USE), AIOS_OK);
    assert_int_equal(check(am, "dave", ACCESS_KIND_TOOL, "aios/write_file", ACCESS_CALL), AIOS_OK);
    assert_int_equal(check(am, "dave", ACCESS_KIND_MEMORY, "bob", ACCESS_READ), AIOS_ERR_FORBIDDEN);
    assert_int_equal(check(am, "dave", ACCESS_KIND_ADMIN, "api", ACCESS_ADMIN), AIOS_ERR_FORBIDDEN);
    /* the built-in admin group: everything */
    assert_int_equal(check(am, "root", ACCESS_KIND_MEMORY, "bob", ACCESS_WRITE), AIOS_OK);
    assert_int_equal(check(am, "root", ACCESS_KIND_ADMIN, "api", ACCESS_ADMIN), AIOS_OK);
    /* a group the config defines with no rules: nothing, not even models */
    snprintf(g_cfg.agents[g_cfg.n_agents].name, AIOS_NAME_MAX, "eve");
    snprintf(g_cfg.agents[g_cfg.n_agents++].group, AIOS_NAME_MAX, "nothing");
    assert_int_equal(check(am, "eve", ACCESS_KIND_LLM, "qwen", ACCESS_USE), AIOS_ERR_FORBIDDEN);
    char err[256];
    assert_int_equal(access_check(am, "eve", ACCESS_KIND_TOOL, "demo/x", ACCESS_CALL, NULL, NULL, err, sizeof err),
                     AIOS_ERR_FORBIDDEN);
    assert_non_null(strstr(err, "agent 'eve' (group 'nothing') may not call tool 'demo/x'"));
    access_close(am);
    /* every decision was audited */
    int n;
    cJSON **lines = audit_lines(g_audit, &n);
    assert_int_equal(n, 18);
    assert_string_equal(str(lines[0], "agent"), "alice");
    assert_string_equal(str(lines[0], "resource"), "memory:bob");
    assert_string_equal(str(lines[0], "action"), "read");
    assert_string_equal(str(lines[0], "decision"), "allow");
    assert_string_equal(str(lines[1], "decision"), "deny");
    free_lines(lines, n);
}

static void test_identities(void **st) {
    (void)st;
    access_manager *am = open_am();
    char tok[80], tok2[80], agent[AIOS_NAME_MAX], err[256];
    assert_int_equal(access_identity_create(am, "alice", "readers", false, tok, sizeof tok, err, sizeof err), AIOS_OK);
    assert_int_equal(strncmp(tok, "aios_", 5), 0);
    assert_int_equal(strlen(tok), 5 + 48);
    assert_int_equal(access_authenticate(am, tok, agent, sizeof agent), AIOS_OK);
    assert_string_equal(agent, "alice");
    assert_int_equal(access_identity_create(am, "alice", NULL, false, tok2, sizeof tok2, err, sizeof err), AIOS_ERR_EXISTS);
    assert_int_equal(access_identity_create(am, "bad name", NULL, false, tok2, sizeof tok2, err, sizeof err), AIOS_ERR_INVALID);
    assert_int_equal(access_identity_create(am, "", NULL, false, tok2, sizeof tok2, err, sizeof err), AIOS_ERR_INVALID);
    assert_int_equal(access_authenticate(am, "aios_000000", agent, sizeof agent), AIOS_ERR_UNAUTHORIZED);
    /* the identity's group wins over agents.<name>.group; an unknown agent gets the default */
    assert_int_equal(access_identity_create(am, "root", "readers", false, tok2, sizeof tok2, err, sizeof err), AIOS_OK);
    char group[AIOS_NAME_MAX];
    access_agent_group(am, "root", group, sizeof group);
    assert_string_equal(group, "readers");
    access_agent_group(am, "nobody", group, sizeof group);
    assert_string_equal(group, "default");
    assert_true(access_group_has_member(am, "readers"));
    assert_false(access_group_has_member(am, "admin"));
    /* the listing never shows a token or its hash */
    cJSON *list = access_identities_json(am);
    char *text = cJSON_PrintUnformatted(list);
    assert_int_equal(cJSON_GetArraySize(list), 2);
    assert_null(strstr(text, tok + 5));
    char hash[65];
    access_sha256_hex(tok, strlen(tok), hash);
    assert_null(strstr(text, hash));
    free(text);
    cJSON_Delete(list);
    /* revocation stops the token at once; revoking twice is NOT_FOUND; the name can be reused */
    assert_int_equal(access_identity_revoke(am, "alice", err, sizeof err), AIOS_OK);
    assert_int_equal(access_authenticate(am, tok, agent, sizeof agent), AIOS_ERR_UNAUTHORIZED);
    assert_int_equal(access_identity_revoke(am, "alice", err, sizeof err), AIOS_ERR_NOT_FOUND);
    access_agent_group(am, "root", group, sizeof group);
    assert_string_equal(group, "readers");
    access_close(am);
    /* the database holds hashes only, and a reopen keeps revocations and live tokens */
    FILE *f = fopen(g_db, "rb");
    assert_non_null(f);
    static char db[1 << 20];
    size_t n = fread(db, 1, sizeof db, f);
    fclose(f);
    assert_null(memmem(db, n, tok2 + 5, strlen(tok2 + 5)));
    am = open_am();
    assert_int_equal(access_authenticate(am, tok, agent, sizeof agent), AIOS_ERR_UNAUTHORIZED);
    assert_int_equal(access_authenticate(am, tok2, agent, sizeof agent), AIOS_OK);
    assert_string_equal(agent, "root");
    assert_int_equal(access_identity_create(am, "alice", "readers", false, tok, sizeof tok, err, sizeof err), AIOS_OK);
    assert_int_equal(access_authenticate(am, tok, agent, sizeof agent), AIOS_OK);
    access_close(am);
}

static char g_reset[64];
static int g_resets;
static void on_reset(void *ctx, const char *name) {
    (void)ctx;
    snprintf(g_reset, sizeof g_reset, "%s", name);
    g_resets++;
}

/* A revoked name that gets a new identity starts empty (the reset hook runs once), unless
 * keep_data; a first identity or a live name never triggers it. */
static void test_identity_reset(void **state) {
    (void)state;
    char err[256] = "", tok[80];
    access_params p = access_default_params();
    p.cfg = &g_cfg;
    p.db_path = g_db;
    p.audit_path = g_audit;
    p.reset_agent = on_reset;
    g_resets = 0;
    access_manager *am = access_open(&p, err, sizeof err);
    assert_non_null(am);
    assert_int_equal(access_identity_create(am, "alice", NULL, false, tok, sizeof tok, err, sizeof err), AIOS_OK);
    assert_int_equal(access_identity_create(am, "alice", NULL, false, tok, sizeof tok, err, sizeof err), AIOS_ERR_EXISTS);
    assert_int_equal(g_resets, 0);
    assert_int_equal(access_identity_revoke(am, "alice", err, sizeof err), AIOS_OK);
    assert_int_equal(access_identity_create(am, "alice", NULL, false, tok, sizeof tok, err, sizeof err), AIOS_OK);
    assert_int_equal(g_resets, 1);
    assert_string_equal(g_reset, "alice");
    assert_int_equal(access_identity_revoke(am, "alice", err, sizeof err), AIOS_OK);
    assert_int_equal(access_identity_create(am, "alice", NULL, true, tok, sizeof tok, err, sizeof err), AIOS_OK);
    assert_int_equal(g_resets, 1);
    access_close(am);
}

typedef struct waiter {
    access_manager *am;
    atomic_bool cancel;
    int rc;
    char err[256];
} waiter;

static void *wait_thread(void *arg) {
    waiter *w = arg;
    w->rc = access_await_approval(w->am, "alice", "demo/rm", "{\"path\":\"x\"}", &w->cancel, w->err, sizeof w->err);
    return NULL;
}

/* Starts a waiter and returns the id of its approval once it is listed. */
static uint64_t start_waiter(waiter *w, pthread_t *t) {
    assert_int_equal(pthread_create(t, NULL, wait_thread, w), 0);
    for (int i = 0; i < 500; i++) {
        cJSON *list = access_approvals_json(w->am);
        cJSON *first = cJSON_GetArrayItem(list, 0);
        uint64_t id = first ? (uint64_t)cJSON_GetObjectItem(first, "id")->valuedouble : 0;
        if (first) {
            assert_string_equal(str(first, "state"), "awaiting_approval");
            assert_string_equal(str(first, "tool"), "demo/rm");
            assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(first, "parameters"), "path")->valuestring, "x");
        }
        cJSON_Delete(list);
        if (id) return id;
        usleep(10000);
    }
    fail_msg("the call never showed up as awaiting approval");
    return 0;
}

static void test_approvals(void **st) {
    (void)st;
    g_cfg.access.approval_timeout_s = 1;
    access_manager *am = open_am();
    waiter w = {.am = am};
    pthread_t t;
    char err[256];
    /* approve */
    uint64_t id = start_waiter(&w, &t);
    assert_int_equal(access_decide(am, id + 100, true, "admin", err, sizeof err), AIOS_ERR_NOT_FOUND);
    assert_int_equal(access_decide(am, id, true, "admin", err, sizeof err), AIOS_OK);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, AIOS_OK);
    assert_int_equal(access_decide(am, id, false, "admin", err, sizeof err), AIOS_ERR_NOT_FOUND); /* already decided */
    /* deny */
    id = start_waiter(&w, &t);
    assert_int_equal(access_decide(am, id, false, "operator", err, sizeof err), AIOS_OK);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, AIOS_ERR_FORBIDDEN);
    assert_non_null(strstr(w.err, "was denied by operator"));
    /* timeout */
    start_waiter(&w, &t);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, AIOS_ERR_FORBIDDEN);
    assert_non_null(strstr(w.err, "within access.approval_timeout (1 s)"));
    /* cancel (the request went away) */
    start_waiter(&w, &t);
    atomic_store(&w.cancel, true);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, AIOS_ERR_CANCELLED);
    atomic_store(&w.cancel, false);
    /* the waiting bound refuses at once */
    g_cfg.access.max_approvals = 1;
    g_cfg.access.approval_timeout_s = 30;
    id = start_waiter(&w, &t);
    waiter w2 = {.am = am};
    wait_thread(&w2);
    assert_int_equal(w2.rc, AIOS_ERR_FORBIDDEN);
    assert_non_null(strstr(w2.err, "access.max_approvals"));
    /* shutdown denies whoever still waits */
    access_stop_approvals(am);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, AIOS_ERR_FORBIDDEN);
    assert_non_null(strstr(w.err, "denied"));
    cJSON *list = access_approvals_json(am);
    assert_int_equal(cJSON_GetArraySize(list), 0);
    cJSON_Delete(list);
    access_close(am);
    /* each call left its decision in the audit log */
    int n;
    cJSON **lines = audit_lines(g_audit, &n);
    const char *want[] = {"approved", "denied", "timeout", "cancelled"};
    size_t found = 0;
    for (int i = 0; i < n && found < 4; i++)
        if (!strcmp(str(lines[i], "decision"), want[found])) found++;
    assert_int_equal(found, 4);
    free_lines(lines, n);
}

static void test_audit_lines_and_rotation(void **st) {
    (void)st;
    g_cfg.access.audit_max_bytes = 4096;
    g_cfg.access.audit_keep = 2;
    access_manager *am = open_am();
    access_audit(am, "alice", "tool:demo/x", "call", "allow", "abc", "ok", 1.5);
    access_close(am);
    int n;
    cJSON **lines = audit_lines(g_audit, &n);
    assert_int_equal(n, 1);
    assert_string_equal(str(lines[0], "params_sha256"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_string_equal(str(lines[0], "outcome"), "ok");
    assert_string_equal(str(lines[0], "resource"), "tool:demo/x");
    assert_true(cJSON_GetObjectItem(lines[0], "ms")->valuedouble == 1.5);
    assert_int_equal(strlen(str(lines[0], "time")), 24); /* 2026-11-21T10:00:00.000Z */
    free_lines(lines, n);
    /* appended across a reopen, rotated at max_bytes, keeping audit_keep old files */
    am = open_am();
    for (int i = 0; i < 200; i++) access_audit(am, "alice", "tool:demo/x", "call", "allow", "{}", "ok", -1);
    access_close(am);
    char p[320];
    struct stat sb;
    for (int i = 1; i <= 2; i++) {
        snprintf(p, sizeof p, "%s.%d", g_audit, i);
        assert_int_equal(stat(p, &sb), 0);
        assert_true(sb.st_size >= 4096 && sb.st_size < 4096 + 300);
        assert_int_equal(sb.st_mode & 0777, 0600);
    }
    snprintf(p, sizeof p, "%s.3", g_audit);
    assert_int_not_equal(stat(p, &sb), 0);
    assert_int_equal(stat(g_audit, &sb), 0);
    assert_true(sb.st_size < 4096);
}

/* Deny rules win over any allow rule, `self` is the asking agent, and an agent's own
 * namespace is refused only by a deny rule (and only then audited). */
static void test_deny_rules(void **st) {
    (void)st;
    char err[256];
    assert_int_equal(access_rule_check("!memory:self:write", err, sizeof err), AIOS_OK);
    assert_int_equal(access_rule_check("!*", err, sizeof err), AIOS_OK);
    assert_int_equal(access_rule_check("!bogus:x", err, sizeof err), AIOS_ERR_CONFIG);
    access_manager *am = open_am();
    assert_int_equal(check(am, "gus", ACCESS_KIND_TOOL, "demo/ls", ACCESS_CALL), AIOS_OK);
    bool by_deny = false;
    assert_int_equal(access_check(am, "gus", ACCESS_KIND_TOOL, "demo/rm", ACCESS_CALL, NULL, &by_deny, err, sizeof err),
                     AIOS_ERR_FORBIDDEN);
    assert_true(by_deny);
    assert_non_null(strstr(err, "deny rule"));
    assert_int_equal(check(am, "gus", ACCESS_KIND_MEMORY, "bob", ACCESS_READ), AIOS_OK);
    assert_int_equal(check(am, "gus", ACCESS_KIND_MEMORY, "carol", ACCESS_READ), AIOS_ERR_FORBIDDEN); /* deny wins */
    assert_int_equal(access_check(am, "gus", ACCESS_KIND_MEMORY, "bob", ACCESS_WRITE, NULL, &by_deny, err, sizeof err),
                     AIOS_ERR_FORBIDDEN); /* no allow rule: refused, but not by a deny rule */
    assert_false(by_deny);
    /* own memory: read allowed (no rule needed), write denied by self */
    assert_int_equal(check(am, "gus", ACCESS_KIND_MEMORY, "gus", ACCESS_READ), AIOS_OK);
    assert_int_equal(check(am, "gus", ACCESS_KIND_MEMORY, "gus", ACCESS_WRITE), AIOS_ERR_FORBIDDEN);
    assert_int_equal(check(am, "gus", ACCESS_KIND_STORAGE, "gus", ACCESS_READ), AIOS_ERR_FORBIDDEN);
    /* an agent of a group without deny rules keeps its own namespace, unaudited */
    assert_int_equal(check(am, "alice", ACCESS_KIND_STORAGE, "alice", ACCESS_WRITE), AIOS_OK);
    assert_int_equal(check(am, "nobody", ACCESS_KIND_MEMORY, "nobody", ACCESS_WRITE), AIOS_OK);
    access_close(am);
    int n;
    cJSON **lines = audit_lines(g_audit, &n);
    bool gus_own = false, alice_own = false;
    for (int i = 0; i < n; i++) {
        gus_own |= !strcmp(str(lines[i], "agent"), "gus") && !strcmp(str(lines[i], "resource"), "memory:gus");
        alice_own |= !strcmp(str(lines[i], "agent"), "alice") && !strcmp(str(lines[i], "resource"), "storage:alice");
    }
    free_lines(lines, n);
    assert_true(gus_own);
    assert_false(alice_own);
}

/* Budgets: which budgets a request counts against (the agent's, its group's; all models or
 * one, named by an alias), refusal with the limit and the seconds to wait, and usage that a
 * reopen (a restart) keeps. */
static void test_budgets(void **st) {
    (void)st;
    char err[256];
    g_cfg.llms.n_models = 2;
    snprintf(g_cfg.llms.models[1].name, sizeof g_cfg.llms.models[1].name, "big");
    snprintf(g_cfg.llms.models[1].aliases, sizeof g_cfg.llms.models[1].aliases, "gpt-4o");
    assert_int_equal(config_set(&g_cfg, "agents.alice.budget", "tokens_per_minute:100", err, sizeof err), AIOS_OK);
    assert_int_equal(config_set(&g_cfg, "agents.gus.budget", "requests_per_minute:2,model:gpt-4o", err, sizeof err), AIOS_OK);
    assert_int_equal(config_set(&g_cfg, "groups.readers.budget", "tokens_per_day:250", err, sizeof err), AIOS_OK);
    assert_int_not_equal(config_set(&g_cfg, "agents.x.budget", "tokens_per_week:1", err, sizeof err), AIOS_OK);
    assert_non_null(strstr(err, "tokens_per_week"));
    assert_int_not_equal(config_set(&g_cfg, "agents.x.budget", "model:big", err, sizeof err), AIOS_OK);
    access_manager *am = open_am();
    int retry = 0;
    /* alice: her tokens per minute, and her group's (readers) tokens per day */
    assert_int_equal(access_budget_admit(am, "alice", "smollm2", &retry, err, sizeof err), AIOS_OK);
    access_budget_charge(am, "alice", "smollm2", 120);
    assert_int_equal(access_budget_admit(am, "alice", "big", &retry, err, sizeof err), AIOS_ERR_RATE_LIMITED);
    assert_non_null(strstr(err, "agents.alice.budget: tokens_per_minute 100"));
    assert_true(retry >= 1 && retry <= 60);
    /* gus: two requests a minute to big (named by its alias in the budget), none to others */
    for (int i = 0; i < 2; i++) assert_int_equal(access_budget_admit(am, "gus", "big", &retry, err, sizeof err), AIOS_OK);
    assert_int_equal(access_budget_admit(am, "gus", "big", &retry, err, sizeof err), AIOS_ERR_RATE_LIMITED);
    assert_non_null(strstr(err, "of model gpt-4o: requests_per_minute 2"));
    assert_int_equal(access_budget_admit(am, "gus", "smollm2", &retry, err, sizeof err), AIOS_OK);
    cJSON *j = access_budgets_json(am);
    assert_int_equal(cJSON_GetArraySize(j), 3);
    cJSON_Delete(j);
    access_close(am); /* saves */
    am = open_am();
    assert_int_equal(access_budget_admit(am, "gus", "big", &retry, err, sizeof err), AIOS_ERR_RATE_LIMITED);
    access_budget_charge(am, "bob", "smollm2", 1000); /* no budget covers bob */
    j = access_budgets_json(am);
    const cJSON *group = cJSON_GetArrayItem(j, 2);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(group, "group")), "readers");
    const cJSON *day = cJSON_GetObjectItem(group, "tokens_per_day");
    assert_int_equal((int)cJSON_GetNumberValue(cJSON_GetObjectItem(day, "used")), 120);
    assert_int_equal((int)cJSON_GetNumberValue(cJSON_GetObjectItem(day, "limit")), 250);
    cJSON_Delete(j);
    access_close(am);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rule_syntax, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deny_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identities, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identity_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_approvals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_lines_and_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budgets, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
