/*
 * db.c - how the kernel opens its SQLite databases (storage.h): WAL journal, the
 * configured synchronous level, a busy timeout, and the schema applied in one
 * transaction. Shared by the storage manager and by the memory manager, whose evicted
 * blocks live in the same kind of store.
 *
 * Durability: in WAL mode a committed transaction is in the log (the OS page cache) when
 * sqlite3_step returns, so it survives a kill -9 of the kernel with synchronous=NORMAL;
 * synchronous=FULL also fsyncs the log at every commit, for power loss.
 *
 * Checkpoints (copying the log into the database, with an fsync) do not run on requests: a
 * checkpointer thread with its own connection runs a PASSIVE checkpoint every 200 ms, which
 * never blocks writers. Automatic checkpoints stay on only as a safety net at 64 MiB of log.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "storage.h"

sdb_ckpt *sdb_ckpt_start(const char *path, int interval_ms);

int sdb_open(const char *path, bool sync_full, const char *schema, sqlite3 **out, sdb_ckpt **ckpt, char *err, size_t errlen) {
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    char *msg = NULL;
    if (rc == SQLITE_OK) sqlite3_busy_timeout(db, 5000);
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, &msg);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", NULL, NULL, &msg);
    /* the checkpointer thread keeps the log short; a commit checkpoints by itself only if the
     * log reached 64 MiB anyway (a writer outrunning it), and the file shrinks back to that */
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, "PRAGMA wal_autocheckpoint=16384", NULL, NULL, &msg);
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, "PRAGMA journal_size_limit=67108864", NULL, NULL, &msg);
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
    *ckpt = sdb_ckpt_start(path, 200);
    if (!*ckpt) {
        log_warn("%s: no checkpointer thread; commits checkpoint themselves", path);
        sqlite3_exec(db, "PRAGMA wal_autocheckpoint=1000", NULL, NULL, NULL);
    }
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

int sdb_exec_text(sqlite3 *db, const char *sql, const char *arg) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        log_error("sqlite: cannot prepare '%s': %s", sql, sqlite3_errmsg(db));
        return AIOS_ERR_IO;
    }
    sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    int rc = sdb_step_done(db, st);
    sqlite3_finalize(st);
    return rc;
}

struct sdb_ckpt {
    sqlite3 *db;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    int interval_ms;
};

static void *ckpt_main(void *arg) {
    sdb_ckpt *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        struct timespec ts;
        kern_deadline(&ts, c->interval_ms);
        pthread_cond_timedwait(&c->cv, &c->mu, &ts);
        pthread_mutex_unlock(&c->mu);
        int log = 0, done = 0;
        int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY) log_warn("sqlite checkpoint: %s", sqlite3_errmsg(c->db));
        else if (rc == SQLITE_OK && log < 0) log_warn("sqlite checkpoint: the database is not in WAL mode");
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

sdb_ckpt *sdb_ckpt_start(const char *path, int interval_ms) {
    sdb_ckpt *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->interval_ms = interval_ms;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    /* the read makes this connection open the database in WAL mode: until a connection has
     * read it, a checkpoint on it is a silent no-op (it answers "not in WAL mode") */
    if (sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
        sqlite3_exec(c->db, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL) != SQLITE_OK ||
        pthread_create(&c->thread, NULL, ckpt_main, c)) {
        sqlite3_close(c->db);
        free(c);
        return NULL;
    }
    sqlite3_busy_timeout(c->db, 1000);
    return c;
}

void sdb_ckpt_stop(sdb_ckpt *c) {
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL); /* a clean stop leaves a small log */
    sqlite3_close(c->db);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

long long sdb_memory_used(void) { return sqlite3_memory_used(); }
