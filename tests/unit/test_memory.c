/*
 * test_memory.c - unit tests of the memory manager without an embedder: add, get,
 * update, remove, per-agent isolation, the item limit, LRU-K victim choice (which differs
 * from plain LRU), page-in of evicted blocks with their content intact, per-agent limit
 * overrides, and durability across a reopen of the store.
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
#include "memory/memory.h"

#define TMPDB_NAME "mem"
#include "tmpdb.h"

static mem_manager *open_mem(long limit, int k) {
    char err[256] = "";
    mem_params p = mem_default_params();
    p.db_path = g_db;
    p.limit_bytes = limit;
    p.eviction_k = k;
    p.max_item_bytes = 4096;
    p.max_items = 50;
    mem_manager *m = mem_open(&p, err, sizeof err);
    assert_non_null(m);
    return m;
}

/* 100 bytes of content + "{}" = 102 bytes per block */
static void add_block(mem_manager *m, const char *agent, char tag, char id[MEM_ID_MAX]) {
    char content[101], err[256];
    memset(content, tag, 100);
    content[100] = 0;
    assert_int_equal(mem_add(m, agent, content, NULL, id, err, sizeof err), AIOS_OK);
}

static void get_ok(mem_manager *m, const char *agent, const char *id, char tag) {
    mem_item it;
    char err[256];
    assert_int_equal(mem_get(m, agent, id, &it, err, sizeof err), AIOS_OK);
    assert_int_equal(strlen(it.content), 100);
    for (int i = 0; i < 100; i++) assert_int_equal(it.content[i], tag);
    assert_string_equal(it.metadata, "{}");
    mem_item_clear(&it);
}

static void test_crud_and_isolation(void **st) {
    (void)st;
    mem_manager *m = open_mem(1 << 20, 2);
    char id[MEM_ID_MAX], err[256];
    mem_item it;
    assert_int_equal(mem_add(m, "alice", "hello", "{\"tags\":[\"x\"]}", id, err, sizeof err), AIOS_OK);
    assert_int_equal(mem_get(m, "alice", id, &it, err, sizeof err), AIOS_OK);
    assert_string_equal(it.content, "hello");
    assert_string_equal(it.metadata, "{\"tags\":[\"x\"]}");
    assert_true(it.created > 0);
    mem_item_clear(&it);
    /* bob cannot reach alice's block, not even by its id */
    assert_int_equal(mem_get(m, "bob", id, &it, err, sizeof err), AIOS_ERR_NOT_FOUND);
    assert_int_equal(mem_update(m, "bob", id, "x", NULL, err, sizeof err), AIOS_ERR_NOT_FOUND);
    assert_int_equal(mem_remove(m, "bob", id, err, sizeof err), AIOS_ERR_NOT_FOUND);
    /* update content only, then metadata only */
    assert_int_equal(mem_update(m, "alice", id, "hello again", NULL, err, sizeof err), AIOS_OK);
    assert_int_equal(mem_update(m, "alice", id, NULL, "{\"k\":1}", err, sizeof err), AIOS_OK);
    assert_int_equal(mem_get(m, "alice", id, &it, err, sizeof err), AIOS_OK);
    assert_string_equal(it.content, "hello again");
    assert_string_equal(it.metadata, "{\"k\":1}");
    mem_item_clear(&it);
    /* bad ids and oversize blocks */
    assert_int_equal(mem_get(m, "alice", "nope", &it, err, sizeof err), AIOS_ERR_NOT_FOUND);
    assert_int_equal(mem_get(m, "alice", "-1", &it, err, sizeof err), AIOS_ERR_NOT_FOUND);
    char big[5000];
    memset(big, 'b', sizeof big - 1);
    big[sizeof big - 1] = 0;
    assert_int_equal(mem_add(m, "alice", big, NULL, id, err, sizeof err), AIOS_ERR_TOO_LARGE);
    assert_non_null(strstr(err, "memory.max_item_bytes"));
    assert_int_equal(mem_update(m, "alice", "1", big, NULL, err, sizeof err), AIOS_ERR_TOO_LARGE);
    assert_int_equal(mem_get(m, "alice", "1", &it, err, sizeof err), AIOS_OK); /* unchanged */
    assert_string_equal(it.content, "hello again");
    mem_item_clear(&it);
    /* remove */
    assert_int_equal(mem_remove(m, "alice", "1", err, sizeof err), AIOS_OK);
    assert_int_equal(mem_get(m, "alice", "1", &it, err, sizeof err), AIOS_ERR_NOT_FOUND);
    /* retrieval without an embedder says so */
    mem_item *hits;
    int n;
    assert_int_equal(mem_retrieve(m, "alice", "q", 3, false, &hits, &n, err, sizeof err), AIOS_ERR_UNSUPPORTED);
    mem_close(m);
}

static void test_max_items(void **st) {
    (void)st;
    mem_manager *m = open_mem(1 << 20, 2);
    char id[MEM_ID_MAX], err[256];
    for (int i = 0; i < 50; i++) assert_int_equal(mem_add(m, "c", "x", NULL, id, err, sizeof err), AIOS_OK);
    assert_int_equal(mem_add(m, "c", "x", NULL, id, err, sizeof err), AIOS_ERR_QUOTA);
    assert_int_equal(mem_add(m, "d", "x", NULL, id, err, sizeof err), AIOS_OK); /* per agent */
    mem_close(m);
}

/* Three 102-byte blocks fit in 310 bytes. The access pattern makes LRU-K (K=2) and plain
 * LRU pick different victims; the counters show which blocks were resident. */
static void test_lru_k_eviction_and_page_in(void **st) {
    (void)st;
    mem_manager *m = open_mem(310, 2);
    char a[MEM_ID_MAX], b[MEM_ID_MAX], c[MEM_ID_MAX], d[MEM_ID_MAX];
    mem_stats s0, s1;
    add_block(m, "ag", 'a', a);
    add_block(m, "ag", 'b', b);
    add_block(m, "ag", 'c', c);
    get_ok(m, "ag", a, 'a');
    get_ok(m, "ag", a, 'a');
    get_ok(m, "ag", b, 'b');
    mem_get_stats(m, &s0);
    assert_int_equal(s0.evictions, 0);
    assert_int_equal(s0.hits, 3);
    add_block(m, "ag", 'd', d); /* evicts c: the only block with fewer than K=2 accesses... */
    mem_get_stats(m, &s1);
    assert_int_equal(s1.evictions, 1);
    assert_int_equal(s1.resident_bytes, 306);
    get_ok(m, "ag", c, 'c'); /* ...so c pages back in (intact), evicting d (one access) */
    mem_get_stats(m, &s1);
    assert_int_equal(s1.page_ins, 1);
    assert_int_equal(s1.evictions, 2);
    get_ok(m, "ag", d, 'd'); /* d pages in; LRU-K evicts b (oldest 2nd-last access); LRU would evict a */
    mem_get_stats(m, &s1);
    assert_int_equal(s1.page_ins, 2);
    assert_int_equal(s1.evictions, 3);
    unsigned long long hits = s1.hits;
    get_ok(m, "ag", a, 'a'); /* a is still resident */
    mem_get_stats(m, &s1);
    assert_int_equal(s1.hits, hits + 1);
    assert_int_equal(s1.page_ins, 2);
    get_ok(m, "ag", b, 'b'); /* b was the victim */
    mem_get_stats(m, &s1);
    assert_int_equal(s1.page_ins, 3);
    assert_true(s1.resident_bytes <= 310);
    assert_int_equal(s1.items, 4);
    mem_close(m);
}

static void test_k1_is_lru(void **st) {
    (void)st;
    mem_manager *m = open_mem(310, 1);
    char a[MEM_ID_MAX], b[MEM_ID_MAX], c[MEM_ID_MAX], d[MEM_ID_MAX];
    mem_stats s;
    add_block(m, "ag", 'a', a);
    add_block(m, "ag", 'b', b);
    add_block(m, "ag", 'c', c);
    get_ok(m, "ag", a, 'a');
    add_block(m, "ag", 'd', d); /* LRU victim: b */
    get_ok(m, "ag", a, 'a');
    get_ok(m, "ag", c, 'c');
    mem_get_stats(m, &s);
    assert_int_equal(s.page_ins, 0);
    get_ok(m, "ag", b, 'b');
    mem_get_stats(m, &s);
    assert_int_equal(s.page_ins, 1);
    mem_close(m);
}

static long limit_for(void *ud, const char *agent) {
    (void)ud;
    return strcmp(agent, "tiny") == 0 ? 0 : -1;
}

static void test_agent_limit_and_reopen(void **st) {
    (void)st;
    char err[256] = "", id[MEM_ID_MAX], big_id[MEM_ID_MAX];
    mem_params p = mem_default_params();
    p.db_path = g_db;
    p.limit_for = limit_for;
    mem_manager *m = mem_open(&p, err, sizeof err);
    assert_non_null(m);
    assert_int_equal(mem_add(m, "tiny", "never resident", NULL, id, err, sizeof err), AIOS_OK);
    mem_stats s;
    mem_get_stats(m, &s);
    assert_int_equal(s.resident_bytes, 0); /* a limit of 0 keeps nothing in RAM... */
    mem_item it;
    assert_int_equal(mem_get(m, "tiny", id, &it, err, sizeof err), AIOS_OK); /* ...yet it reads back */
    assert_string_equal(it.content, "never resident");
    mem_item_clear(&it);
    assert_int_equal(mem_add(m, "keep", "survives a reopen", "{\"a\":1}", big_id, err, sizeof err), AIOS_OK);
    mem_close(m);
    m = mem_open(&p, err, sizeof err);
    assert_non_null(m);
    assert_int_equal(mem_get(m, "keep", big_id, &it, err, sizeof err), AIOS_OK);
    assert_string_equal(it.content, "survives a reopen");
    assert_string_equal(it.metadata, "{\"a\":1}");
    mem_item_clear(&it);
    assert_int_equal(mem_get(m, "keep", id, &it, err, sizeof err), AIOS_ERR_NOT_FOUND); /* tiny's */
    mem_close(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_crud_and_isolation, tmpdb_setup, tmpdb_teardown),
        cmocka_unit_test_setup_teardown(test_max_items, tmpdb_setup, tmpdb_teardown),
        cmocka_unit_test_setup_teardown(test_lru_k_eviction_and_page_in, tmpdb_setup, tmpdb_teardown),
        cmocka_unit_test_setup_teardown(test_k1_is_lru, tmpdb_setup, tmpdb_teardown),
        cmocka_unit_test_setup_teardown(test_agent_limit_and_reopen, tmpdb_setup, tmpdb_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
