/*
 * storage.h - the storage manager (DESIGN.md §1): durable, versioned per-agent files with
 * semantic retrieval, and the SQLite helpers the kernel's stores share.
 *
 * Each agent has its own namespace of files and directories kept in SQLite (storage.db
 * under the data dir, WAL): a write is one transaction that adds a version and drops the
 * oldest beyond storage.max_versions, acknowledged only once committed, so it survives a
 * kill -9. Paths are relative to the agent's mount root and confined to its namespace:
 * absolute paths, `..`, control bytes and over-long paths are refused before anything is
 * touched, and the namespace is virtual (rows, not host files), so no host path or
 * symlink is ever followed. Another agent reads a file only if its owner shared it.
 * Retrieval ranks an agent's files by cosine similarity of their embeddings.
 */
#ifndef AIOS_STORAGE_H
#define AIOS_STORAGE_H

#include <sqlite3.h>
#include "../kernel/kernel.h"
#include "../llm/llm.h"
#include "../vector/vector.h"

/* ---- shared SQLite helpers (db.c) ---- */
typedef struct sdb_ckpt sdb_ckpt;
/* Opens (creating) path in WAL mode with synchronous NORMAL or FULL, applies schema, and
 * starts its checkpointer (*ckpt; stop it with sdb_ckpt_stop before closing the db). */
int sdb_open(const char *path, bool sync_full, const char *schema, sqlite3 **out, sdb_ckpt **ckpt, char *err, size_t errlen);
int sdb_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **out); /* persistent statement */
/* Steps a statement that returns no rows we need, resets it; AIOS_OK or AIOS_ERR_IO. */
int sdb_step_done(sqlite3 *db, sqlite3_stmt *st);
int sdb_exec(sqlite3 *db, const char *sql);
int sdb_exec_text(sqlite3 *db, const char *sql, const char *arg); /* one statement, ?1 = arg */
/* The checkpointer: path's WAL is checkpointed every 200 ms from its own thread and
 * connection (PASSIVE: never blocks writers), so no commit on a request pays for one. */
void sdb_ckpt_stop(sdb_ckpt *c); /* accepts NULL; a final TRUNCATE checkpoint */
long long sdb_memory_used(void); /* bytes SQLite holds now, every database together (page caches, statements) */

/* ---- path rules (path.c) ---- */
/* Joins root and path and normalises ("a//b/./c" -> "a/b/c"; "" = the namespace root).
 * AIOS_ERR_INVALID (err says why) for absolute paths, "..", control bytes, backslashes or
 * more than max_len bytes. */
int storage_path_norm(const char *root, const char *path, size_t max_len, char *out, size_t outlen, char *err, size_t errlen);

/* ---- the manager ---- */
typedef struct storage_manager storage_manager;

typedef struct storage_params {
    const char *db_path;
    bool sync_full;
    int max_versions;       /* versions kept per file */
    long max_file_bytes;    /* one version's content */
    long quota_bytes;       /* all versions of all files of one agent */
    long max_files;         /* files and directories per agent */
    int max_path;           /* bytes of a normalised path */
    int max_k;              /* largest k of a retrieval */
    llm_embedder *embedder; /* borrowed; NULL = no retrieval */
    vec_index_params index;
    int retrieve_timeout_ms; /* a retrieval not served in this time answers AIOS_ERR_DEADLINE (0 = no limit) */
} storage_params;

typedef struct storage_stats {
    unsigned long long writes, reads, deletes, rollbacks, retrievals, shares, embedded;
    long files, bytes;
    int agents, pending;
} storage_stats;

storage_params storage_default_params(void);
storage_manager *storage_open(const storage_params *p, char *err, size_t errlen);
void storage_close(storage_manager *s); /* accepts NULL; free the embedder first */
/* Deletes every file, version, mount and share of agent, and every share granted to it:
 * a new identity of a revoked name starts empty. */
int storage_purge(storage_manager *s, const char *agent);

/* One storage syscall: op and its params (the AIOS/Cerebrum shapes, see docs/api.md);
 * on success *message is the response_message text (JSON text for list and retrieve),
 * owned by the caller. Errors: AIOS_ERR_* with err naming the field or path. */
int storage_call(storage_manager *s, const char *agent, const char *op, const cJSON *params, char **message, char *err,
                 size_t errlen);
void storage_get_stats(storage_manager *s, storage_stats *out);
/* agent's files and directories, and the bytes of all their versions (its quota's measure). */
void storage_agent_usage(storage_manager *s, const char *agent, long *files, long *bytes);

/* ---- stored responses (the OpenAI Responses door's `store`) ----
 * One row per (agent, id): the answer object's JSON and the conversation it ends (JSON
 * messages), so a later request can continue it. Another agent's ids are never found. */
/* Stores (replaces) id, then drops agent's responses older than ttl_s (0 = none) and all but
 * its max_kept newest, in one transaction. */
int storage_response_put(storage_manager *s, const char *agent, const char *id, const char *response, const char *history,
                         int max_kept, double ttl_s);
/* The stored response text and/or history of agent's id (either out may be NULL; caller
 * frees), AIOS_ERR_NOT_FOUND if there is none younger than ttl_s (0 = any age). */
int storage_response_get(storage_manager *s, const char *agent, const char *id, double ttl_s, char **response, char **history);
int storage_response_delete(storage_manager *s, const char *agent, const char *id); /* AIOS_ERR_NOT_FOUND */

#endif
