/*
 * db.c - how the kernel opens its SQLite databases (storage.h): WAL journal, the
 * configured synchronous level, a busy timeout, and the schema applied in one
 * transaction. Shared by the storage manager and by the memory manager, whose evicted
 * blocks live in the same kind of store.
 *
 * Durability: in WAL mode a committed transaction is in the log (the OS page cache) when
 * sqlite3_step returns, so it survives a kill -9 of the kernel with synchronous=NORMAL;
 * synchronous=FULL also fsyncs the log at every commit, for power loss.
 */
#include <stdio.h>
#include <string.h>
#include "storage.h"

int sdb_open(const char *path, bool sync_full, const char *schema, sqlite3 **out, char *err, size_t errlen) {
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    char *msg = NULL;
    if (rc == SQLITE_OK) sqlite3_busy_timeout(db, 5000);
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, &msg);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", NULL, NULL, &msg);
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, "BEGIN", NULL, NULL, &msg);
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, schema, NULL, NULL, &msg);
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, "COMMIT", NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, msg ? msg : db ? sqlite3_errmsg(db) : "cannot open");
        sqlite3_free(msg);
        sqlite3_close(db);
        return AIOS_ERR_IO;
    }
    *out = db;
    return AIOS_OK;
}

int sdb_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **out) {
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL) != SQLITE_OK) {
        log_error("sqlite: cannot prepare '%s': %s", sql, sqlite3_errmsg(db));
        return AIOS_ERR_INTERNAL;
    }
    return AIOS_OK;
}

int sdb_step_done(sqlite3 *db, sqlite3_stmt *st) {
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc == SQLITE_DONE || rc == SQLITE_ROW) return AIOS_OK;
    log_error("sqlite: %s", sqlite3_errmsg(db));
    return rc == SQLITE_FULL ? AIOS_ERR_QUOTA : AIOS_ERR_IO;
}

int sdb_exec(sqlite3 *db, const char *sql) {
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        log_error("sqlite: '%s': %s", sql, msg ? msg : "?");
        sqlite3_free(msg);
        return rc == SQLITE_FULL ? AIOS_ERR_QUOTA : AIOS_ERR_IO;
    }
    return AIOS_OK;
}
