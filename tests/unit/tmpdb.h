/*
 * tmpdb.h - a scratch SQLite database path for the store unit tests (memory, storage):
 * cmocka setup gives each test a fresh one, teardown removes it with its WAL files.
 */
#ifndef AIOS_TEST_TMPDB_H
#define AIOS_TEST_TMPDB_H

#include <stdio.h>
#include <unistd.h>

static char g_db[256];

static void tmpdb_remove(void) {
    char p[300];
    unlink(g_db);
    snprintf(p, sizeof p, "%s-wal", g_db);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", g_db);
    unlink(p);
}

static int tmpdb_setup(void **st) {
    (void)st;
    snprintf(g_db, sizeof g_db, "/tmp/aios-test-%s-%d.db", TMPDB_NAME, (int)getpid());
    tmpdb_remove();
    return 0;
}

static int tmpdb_teardown(void **st) {
    (void)st;
    tmpdb_remove();
    return 0;
}

#endif
