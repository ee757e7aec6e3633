/*
 * test_storage.c - unit tests of the storage manager without an embedder: path
 * confinement, create / write / read / list / delete, versions and rollback (bounded by
 * max_versions), sharing and its refusals, quotas and limits, unknown operations, and
 * durability across a reopen.
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
#include <sys/stat.h>
#include <cjson/cJSON.h>
#include "storage/storage.h"

#define TMPDB_NAME "st"
#include "tmpdb.h"

static storage_manager *open_st(void) {
    char err[256] = "";
    storage_params p = storage_default_params();
    p.db_path = g_db;
    p.max_versions = 3;
    p.max_file_bytes = 1000;
    p.quota_bytes = 5000;
    p.max_files = 20;
    storage_manager *s = storage_open(&p, err, sizeof err);
    assert_non_null(s);
    return s;
}

/* Runs op with params given as JSON text; returns the result code, *msg the answer. */
static int call(storage_manager *s, const char *agent, const char *op, const char *params, char **msg, char *err) {
    cJSON *p = cJSON_Parse(params);
    assert_non_null(p);
    int rc = storage_call(s, agent, op, p, msg, err, 512);
    cJSON_Delete(p);
    return rc;
}

static void expect(storage_manager *s, const char *agent, const char *op, const char *params, int want, const char *msg_has) {
    char *msg = NULL, err[512] = "";
    int rc = call(s, agent, op, params, &msg, err);
    if (rc != want) fail_msg("%s %s %s: got %d (%s), want %d", agent, op, params, rc, err, want);
    if (msg_has) assert_non_null(strstr(rc ? err : msg, msg_has));
    free(msg);
}

static void test_path_rules(void **st) {
    (void)st;
    char out[64], err[256];
    assert_int_equal(storage_path_norm("root", "a//b/./c/", 63, out, sizeof out, err, sizeof err), AIOS_OK);
    assert_string_equal(out, "root/a/b/c");
    assert_int_equal(storage_path_norm("", ".", 63, out, sizeof out, err, sizeof err), AIOS_OK);
    assert_string_equal(out, "");
    assert_int_equal(storage_path_norm("", "/etc/passwd", 63, out, sizeof out, err, sizeof err), AIOS_ERR_INVALID);
    assert_non_null(strstr(err, "absolute"));
    assert_int_equal(storage_path_norm("", "a/../../b", 63, out, sizeof out, err, sizeof err), AIOS_ERR_INVALID);
    assert_non_null(strstr(err, ".."));
    assert_int_equal(storage_path_norm("", "..", 63, out, sizeof out, err, sizeof err), AIOS_ERR_INVALID);
    assert_int_equal(storage_path_norm("", "a\\..\\b", 63, out, sizeof out, err, sizeof err), AIOS_ERR_INVALID);
    assert_int_equal(storage_path_norm("", "a\nb", 63, out, sizeof out, err, sizeof err), AIOS_ERR_INVALID);
    assert_int_equal(storage_path_norm("", "a/...", 63, out, sizeof out, err, sizeof err), AIOS_OK); /* a name, not a step up */
    char lng[200];
    memset(lng, 'x', sizeof lng - 1);
    lng[sizeof lng - 1] = 0;
    assert_int_equal(storage_path_norm("", lng, 63, out, sizeof out, err, sizeof err), AIOS_ERR_INVALID);
}

static void test_files_and_versions(void **st) {
    (void)st;
    storage_manager *s = open_st();
    expect(s, "a", "create_file", "{\"file_path\":\"notes/x.txt\"}", AIOS_OK, "created");
    expect(s, "a", "create_file", "{\"file_path\":\"notes/x.txt\"}", AIOS_ERR_EXISTS, "already exists");
    expect(s, "a", "read", "{\"file_path\":\"notes/x.txt\"}", AIOS_OK, "");
    for (int v = 1; v <= 5; v++) {
        char p[128];
        snprintf(p, sizeof p, "{\"file_path\":\"notes/x.txt\",\"content\":\"v%d\"}", v);
        expect(s, "a", "write", p, AIOS_OK, "bytes");
    }
    expect(s, "a", "read", "{\"file_path\":\"notes/x.txt\"}", AIOS_OK, "v5");
    expect(s, "a", "read", "{\"file_path\":\"notes/x.txt\",\"version\":5}", AIOS_OK, "v4"); /* create_file was version 1 */
    expect(s, "a", "rollback", "{\"file_path\":\"notes/x.txt\",\"n\":2}", AIOS_OK, "version 4");
    expect(s, "a", "read", "{\"file_path\":\"notes/x.txt\"}", AIOS_OK, "v3");
    expect(s, "a", "rollback", "{\"file_path\":\"notes/x.txt\",\"n\":3}", AIOS_ERR_NOT_FOUND, "versions are kept");
    expect(s, "a", "read", "{\"file_path\":\"notes/x.txt\"}", AIOS_OK, "v3"); /* the failed rollback changed nothing */
    expect(s, "a", "list", "{\"dir_path\":\"notes\"}", AIOS_OK, "\"name\":\"x.txt\"");
    expect(s, "a", "list", "{}", AIOS_OK, "\"type\":\"dir\"");
    expect(s, "a", "write", "{\"file_path\":\"\u00e9t\u00e9.txt\",\"content\":\"x\"}", AIOS_OK, NULL);
    expect(s, "a", "list", "{}", AIOS_OK, "\u00e9t\u00e9.txt"); /* a name starting with a non-ASCII byte */
    expect(s, "a", "create_dir", "{\"dir_path\":\"notes/sub\"}", AIOS_OK, "created directory");
    expect(s, "a", "write", "{\"file_path\":\"notes/x.txt/y\",\"content\":\"z\"}", AIOS_ERR_EXISTS, "is a file");
    expect(s, "a", "write", "{\"file_path\":\"notes\",\"content\":\"z\"}", AIOS_ERR_EXISTS, "is a directory");
    expect(s, "a", "delete", "{\"dir_path\":\"notes\"}", AIOS_ERR_EXISTS, "not empty");
    expect(s, "a", "delete", "{\"dir_path\":\"notes\",\"recursive\":true}", AIOS_OK, "deleted");
    expect(s, "a", "read", "{\"file_path\":\"notes/x.txt\"}", AIOS_ERR_NOT_FOUND, "no file");
    expect(s, "a", "read", "{\"file_path\":\"../b/x\"}", AIOS_ERR_INVALID, "..");
    expect(s, "a", "read", "{\"file_path\":\"/abs\"}", AIOS_ERR_INVALID, "absolute");
    expect(s, "a", "read", "{}", AIOS_ERR_INVALID, "file_path");
    expect(s, "a", "write", "{\"file_path\":\"f\",\"content\":3}", AIOS_ERR_INVALID, "'content' must be a string");
    expect(s, "a", "rollback", "{\"file_path\":\"f\",\"n\":0}", AIOS_ERR_INVALID, "'n'");
    expect(s, "a", "format_disk", "{}", AIOS_ERR_INVALID, "unknown storage operation_type");
    expect(s, "a", "retrieve", "{\"query_text\":\"q\"}", AIOS_ERR_UNSUPPORTED, "embedding model");
    storage_close(s);
}

static void test_mount_share_isolation(void **st) {
    (void)st;
    storage_manager *s = open_st();
    expect(s, "a", "mount", "{\"root_dir\":\"proj\"}", AIOS_OK, "mounted 'proj'");
    expect(s, "a", "write", "{\"file_path\":\"doc.txt\",\"content\":\"secret plan\"}", AIOS_OK, "'proj/doc.txt'");
    expect(s, "a", "mount", "{\"root\":\"../..\"}", AIOS_ERR_INVALID, "..");
    /* b cannot read, list or roll back a's files: its own namespace has none, and a's needs a share */
    expect(s, "b", "read", "{\"file_path\":\"proj/doc.txt\"}", AIOS_ERR_NOT_FOUND, NULL);
    expect(s, "b", "read", "{\"file_path\":\"proj/doc.txt\",\"owner\":\"a\"}", AIOS_ERR_FORBIDDEN, "has not shared");
    expect(s, "b", "list", "{\"dir_path\":\"proj\",\"owner\":\"a\"}", AIOS_ERR_FORBIDDEN, NULL);
    expect(s, "b", "rollback", "{\"file_path\":\"proj/doc.txt\"}", AIOS_ERR_NOT_FOUND, NULL);
    expect(s, "a", "share", "{\"file_path\":\"doc.txt\",\"agent\":\"b\"}", AIOS_OK, "agent 'b'");
    expect(s, "b", "read", "{\"file_path\":\"proj/doc.txt\",\"owner\":\"a\"}", AIOS_OK, "secret plan");
    expect(s, "c", "read", "{\"file_path\":\"proj/doc.txt\",\"owner\":\"a\"}", AIOS_ERR_FORBIDDEN, NULL);
    expect(s, "a", "share", "{\"file_path\":\"missing.txt\"}", AIOS_ERR_NOT_FOUND, NULL);
    expect(s, "a", "share", "{\"file_path\":\".\"}", AIOS_OK, "every agent"); /* the mount root, to all */
    expect(s, "c", "list", "{\"dir_path\":\"proj\",\"owner\":\"a\"}", AIOS_OK, "doc.txt");
    expect(s, "b", "write", "{\"file_path\":\"mine.txt\",\"content\":\"b's\"}", AIOS_OK, NULL);
    expect(s, "a", "read", "{\"file_path\":\"mine.txt\",\"owner\":\"b\"}", AIOS_ERR_FORBIDDEN, NULL);
    storage_close(s);
}

static void test_limits_and_reopen(void **st) {
    (void)st;
    storage_manager *s = open_st();
    char big[1100], p[1300];
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = 0;
    snprintf(p, sizeof p, "{\"file_path\":\"big\",\"content\":\"%s\"}", big);
    expect(s, "a", "write", p, AIOS_ERR_TOO_LARGE, "storage.max_file_bytes");
    big[900] = 0;
    /* quota 5000: five 900-byte versions fit (3 kept per file), across files it runs out */
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "{\"file_path\":\"f%d\",\"content\":\"%s\"}", i, big);
        expect(s, "a", "write", p, AIOS_OK, NULL);
    }
    snprintf(p, sizeof p, "{\"file_path\":\"f9\",\"content\":\"%s\"}", big);
    expect(s, "a", "write", p, AIOS_ERR_QUOTA, "storage.quota_bytes");
    expect(s, "a", "read", "{\"file_path\":\"f9\"}", AIOS_ERR_NOT_FOUND, NULL); /* nothing half-written */
    expect(s, "a", "delete", "{\"file_path\":\"f0\"}", AIOS_OK, NULL);
    expect(s, "a", "write", p, AIOS_OK, NULL); /* room again */
    storage_stats stt;
    storage_get_stats(s, &stt);
    assert_int_equal(stt.bytes, 4500);
    storage_close(s);
    s = open_st();
    expect(s, "a", "read", "{\"file_path\":\"f9\"}", AIOS_OK, "qqq");
    expect(s, "a", "write", "{\"file_path\":\"f8\",\"content\":\"ok\"}", AIOS_OK, NULL); /* usage was reloaded */
    snprintf(p, sizeof p, "{\"file_path\":\"f7\",\"content\":\"%s\"}", big);
    expect(s, "a", "write", p, AIOS_ERR_QUOTA, NULL);
    storage_close(s);
}

/* The checkpointer thread really checkpoints: after a burst of commits the data reaches the
 * database file (a first version's checkpointer connection had never read the database, so
 * its checkpoints were silent no-ops and the log grew without bound). */
static void test_checkpointer(void **st) {
    (void)st;
    storage_manager *s = open_st();
    char p[200], wal[300];
    for (int i = 0; i < 300; i++) {
        snprintf(p, sizeof p, "{\"file_path\":\"c%d\",\"content\":\"%0100d\"}", i % 4, i);
        expect(s, "a", "write", p, AIOS_OK, NULL);
    }
    struct stat db_st = {0}, wal_st = {0};
    for (int t = 0; t < 50 && db_st.st_size <= 8192; t++) { /* up to 5 s for a 200 ms period */
        usleep(100 * 1000);
        stat(g_db, &db_st);
    }
    snprintf(wal, sizeof wal, "%s-wal", g_db);
    stat(wal, &wal_st);
    assert_true(db_st.st_size > 8192);
    assert_true(wal_st.st_size <= 64L << 20);
    storage_close(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_rules),
        cmocka_unit_test_setup_teardown(test_files_and_versions, tmpdb_setup, tmpdb_teardown),
        cmocka_unit_test_setup_teardown(test_mount_share_isolation, tmpdb_setup, tmpdb_teardown),
        cmocka_unit_test_setup_teardown(test_limits_and_reopen, tmpdb_setup, tmpdb_teardown),
        cmocka_unit_test_setup_teardown(test_checkpointer, tmpdb_setup, tmpdb_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
