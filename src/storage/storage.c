/*
 * storage.c - the storage manager (storage.h): versioned per-agent files in SQLite,
 * sharing, quotas, and semantic retrieval over each agent's files.
 *
 * One mutex guards the connection and the per-agent records (usage, vector index,
 * pending embeddings); storage calls are short transactions. Embeddings of written
 * content are computed after the write commits (queued to the embedder) and stored
 * with the file, so a restart rebuilds each agent's index without re-embedding.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <cjson/cJSON.h>
#include "storage.h"

typedef struct st_agent {
    char name[AIOS_NAME_MAX];
    vec_index *ix;
    int pending;
    pthread_cond_t idle;
    long bytes, files; /* all kept versions; files + directories */
    char root[AIOS_PATH_MAX];
} st_agent;

struct storage_manager {
    storage_params p;
    sqlite3 *db;
    sdb_ckpt *ckpt;
    pthread_mutex_t mu;
    strmap agents;
    storage_stats st;
};

static const char *SCHEMA =
    "CREATE TABLE IF NOT EXISTS files(id INTEGER PRIMARY KEY AUTOINCREMENT, agent TEXT NOT NULL, path TEXT NOT NULL,"
    " is_dir INTEGER NOT NULL, version INTEGER NOT NULL, size INTEGER NOT NULL, mtime REAL NOT NULL, vec BLOB,"
    " UNIQUE(agent, path));"
    "CREATE TABLE IF NOT EXISTS versions(file_id INTEGER NOT NULL, version INTEGER NOT NULL, content BLOB NOT NULL,"
    " mtime REAL NOT NULL, PRIMARY KEY(file_id, version)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS shares(owner TEXT NOT NULL, path TEXT NOT NULL, grantee TEXT NOT NULL,"
    " PRIMARY KEY(owner, path, grantee)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS mounts(agent TEXT PRIMARY KEY, root TEXT NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS responses(agent TEXT NOT NULL, id TEXT NOT NULL, created REAL NOT NULL,"
    " response BLOB NOT NULL, history BLOB NOT NULL, PRIMARY KEY(agent, id)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS responses_age ON responses(agent, created);";

storage_params storage_default_params(void) {
    return (storage_params){.max_versions = 16,
                            .max_file_bytes = 16L << 20,
                            .quota_bytes = 1L << 30,
                            .max_files = 100000,
                            .max_path = 1024,
                            .max_k = 100,
                            .index = vec_index_default_params(0)};
}

/* ---------- small SQL helpers (all under s->mu) ---------- */

/* Runs sql with text/int binds described by fmt ('t' text, 'i' int64, 'd' double, 'b'
 * blob as pointer+length), calling row(st, ud) for each row. */
static int q_run(storage_manager *s, const char *sql, const char *fmt, int (*row)(sqlite3_stmt *, void *), void *ud, ...) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
        log_error("storage: cannot prepare '%s': %s", sql, sqlite3_errmsg(s->db));
        return AIOS_ERR_INTERNAL;
    }
    va_list ap;
    va_start(ap, ud);
    for (int i = 0; fmt[i]; i++) {
        if (fmt[i] == 't') sqlite3_bind_text(st, i + 1, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
        else if (fmt[i] == 'i') sqlite3_bind_int64(st, i + 1, va_arg(ap, long long));
        else if (fmt[i] == 'd') sqlite3_bind_double(st, i + 1, va_arg(ap, double));
        else {
            const void *b = va_arg(ap, const void *);
            int n = va_arg(ap, int);
            sqlite3_bind_blob(st, i + 1, b, n, SQLITE_TRANSIENT);
        }
    }
    va_end(ap);
    int rc = AIOS_OK, r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW)
        if (row && (rc = row(st, ud))) break;
    if (!rc && r != SQLITE_DONE && r != SQLITE_ROW) {
        log_error("storage: '%s': %s", sql, sqlite3_errmsg(s->db));
        rc = r == SQLITE_FULL ? AIOS_ERR_QUOTA : AIOS_ERR_IO;
    }
    sqlite3_finalize(st);
    return rc;
}

typedef struct file_row {
    bool found;
    long long id, version, size;
    int is_dir;
    double mtime;
} file_row;

static int file_row_cb(sqlite3_stmt *st, void *ud) {
    file_row *f = ud;
    f->found = true;
    f->id = sqlite3_column_int64(st, 0);
    f->is_dir = sqlite3_column_int(st, 1);
    f->version = sqlite3_column_int64(st, 2);
    f->size = sqlite3_column_int64(st, 3);
    f->mtime = sqlite3_column_double(st, 4);
    return AIOS_OK;
}

static int file_lookup(storage_manager *s, const char *agent, const char *path, file_row *f) {
    memset(f, 0, sizeof *f);
    return q_run(s, "SELECT id, is_dir, version, size, mtime FROM files WHERE agent=? AND path=?", "tt", file_row_cb, f, agent,
                 path);
}

static int long_cb(sqlite3_stmt *st, void *ud) {
    *(long *)ud = (long)sqlite3_column_int64(st, 0);
    return AIOS_OK;
}

/* The first column of the row as text in a strbuf (found set). */
typedef struct blob_out {
    strbuf sb;
    bool found;
} blob_out;

static int blob_cb(sqlite3_stmt *st, void *ud) {
    blob_out *o = ud;
    const void *b = sqlite3_column_blob(st, 0);
    int n = sqlite3_column_bytes(st, 0);
    o->found = true;
    sb_reset(&o->sb);
    return sb_append(&o->sb, b ? b : "", (size_t)n);
}

/* ---------- agents ---------- */

typedef struct load_ctx {
    st_agent *a;
    int dim;
} load_ctx;

static int load_vec_cb(sqlite3_stmt *st, void *ud) {
    load_ctx *l = ud;
    const void *v = sqlite3_column_blob(st, 1);
    if (v && sqlite3_column_bytes(st, 1) == l->dim * (int)sizeof(float))
        vec_index_put(l->a->ix, (uint64_t)sqlite3_column_int64(st, 0), v);
    return AIOS_OK;
}

/* Fills a->ix from the stored vectors of the agent's files. */
static void load_index(storage_manager *s, st_agent *a) {
    load_ctx l = {a, s->p.index.dim};
    q_run(s, "SELECT id, vec FROM files WHERE agent=? AND is_dir=0 AND vec IS NOT NULL", "t", load_vec_cb, &l, a->name);
}

static int root_cb(sqlite3_stmt *st, void *ud) {
    snprintf(((st_agent *)ud)->root, AIOS_PATH_MAX, "%s", (const char *)sqlite3_column_text(st, 0));
    return AIOS_OK;
}

static void queue_file_embed(storage_manager *s, st_agent *a, long long id, const char *text);

typedef struct pend_ctx {
    storage_manager *s;
    st_agent *a;
} pend_ctx;

static int reembed_cb(sqlite3_stmt *st, void *ud) {
    pend_ctx *c = ud;
    const void *b = sqlite3_column_blob(st, 1);
    char *text = strndup(b ? b : "", (size_t)sqlite3_column_bytes(st, 1));
    if (text) queue_file_embed(c->s, c->a, sqlite3_column_int64(st, 0), text);
    free(text);
    return AIOS_OK;
}

/* agent's files and the bytes of all their versions, from the store. */
static void count_usage(storage_manager *s, const char *agent, long *files, long *bytes) {
    q_run(s, "SELECT COUNT(*) FROM files WHERE agent=?", "t", long_cb, files, agent);
    q_run(s, "SELECT COALESCE(SUM(length(v.content)),0) FROM versions v JOIN files f ON f.id=v.file_id WHERE f.agent=?", "t",
          long_cb, bytes, agent);
}

static st_agent *agent_get(storage_manager *s, const char *name) {
    st_agent *a = strmap_get(&s->agents, name);
    if (a) return a;
    a = calloc(1, sizeof *a);
    vec_index_params ip = s->p.index;
    if (!a || !(a->ix = vec_index_new(&ip)) || strmap_put(&s->agents, name, a)) {
        if (a) vec_index_free(a->ix);
        free(a);
        return NULL;
    }
    snprintf(a->name, sizeof a->name, "%s", name);
    pthread_cond_init(&a->idle, NULL);
    load_index(s, a);
    count_usage(s, name, &a->files, &a->bytes);
    q_run(s, "SELECT root FROM mounts WHERE agent=?", "t", root_cb, a, name);
    if (s->p.embedder) { /* files a crash left without an embedding */
        pend_ctx c = {s, a};
        q_run(s,
              "SELECT f.id, v.content FROM files f JOIN versions v ON v.file_id=f.id AND v.version=f.version"
              " WHERE f.agent=? AND f.is_dir=0 AND f.vec IS NULL",
              "t", reembed_cb, &c, name);
    }
    return a;
}

/* ---------- embeddings ---------- */

typedef struct st_ticket {
    storage_manager *s;
    st_agent *a;
    long long id;
} st_ticket;

static void file_embedded_cb(void *ctx, int rc, const float *vec, int n_tokens) {
    (void)n_tokens;
    st_ticket *t = ctx;
    storage_manager *s = t->s;
    pthread_mutex_lock(&s->mu);
    if (!rc) {
        int dim = s->p.index.dim;
        long n = 0; /* still there (not deleted meanwhile)? */
        q_run(s, "SELECT COUNT(*) FROM files WHERE id=?", "i", long_cb, &n, t->id);
        if (n) {
            q_run(s, "UPDATE files SET vec=? WHERE id=?", "bi", NULL, NULL, vec, dim * (int)sizeof(float), t->id);
            vec_index_put(t->a->ix, (uint64_t)t->id, vec);
            s->st.embedded++;
        }
    }
    if (--t->a->pending == 0) pthread_cond_broadcast(&t->a->idle);
    pthread_mutex_unlock(&s->mu);
    free(t);
}

static void queue_file_embed(storage_manager *s, st_agent *a, long long id, const char *text) {
    if (!s->p.embedder) return;
    st_ticket *t = malloc(sizeof *t);
    if (!t) return;
    *t = (st_ticket){s, a, id};
    int rc = llm_embed_async(s->p.embedder, a->name, text, file_embedded_cb, t);
    if (rc == AIOS_OK) a->pending++;
    else { /* left without a vector: embedded at the next start */
        log_warn("storage: file %lld of '%s' is embedded later: %s", id, a->name,
                 rc == AIOS_ERR_BUSY ? "the embedding queue is full" : aios_strerror(rc));
        free(t);
    }
}

/* ---------- open / close ---------- */

storage_manager *storage_open(const storage_params *p, char *err, size_t errlen) {
    storage_manager *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *p;
    s->p.index.dim = p->embedder ? llm_embedder_dim(p->embedder) : 1;
    pthread_mutex_init(&s->mu, NULL);
    if (sdb_open(p->db_path, p->sync_full, SCHEMA, &s->db, &s->ckpt, err, errlen)) {
        storage_close(s);
        return NULL;
    }
    return s;
}

static void agent_free_cb(const char *key, void *val, void *ctx) {
    (void)key;
    (void)ctx;
    st_agent *a = val;
    vec_index_free(a->ix);
    pthread_cond_destroy(&a->idle);
    free(a);
}

void storage_close(storage_manager *s) {
    if (!s) return;
    strmap_foreach(&s->agents, agent_free_cb, NULL);
    strmap_free(&s->agents);
    sdb_ckpt_stop(s->ckpt);
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ---------- parameters ---------- */

/* The first of `names` present in params: a string into *out. */
static int param_str(const cJSON *params, const char *const *names, bool required, const char **out, char *err, size_t errlen) {
    for (int i = 0; names[i]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(params, names[i]);
        if (!v || cJSON_IsNull(v)) continue;
        if (!cJSON_IsString(v)) {
            snprintf(err, errlen, "'%s' must be a string", names[i]);
            return AIOS_ERR_INVALID;
        }
        *out = v->valuestring;
        return AIOS_OK;
    }
    if (required) {
        snprintf(err, errlen, "missing '%s' in params", names[0]);
        return AIOS_ERR_INVALID;
    }
    return AIOS_OK;
}

static int param_int(const cJSON *params, const char *const *names, long lo, long hi, long *out, char *err, size_t errlen) {
    for (int i = 0; names[i]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(params, names[i]);
        if (!v || cJSON_IsNull(v)) continue;
        double d = cJSON_IsNumber(v) ? v->valuedouble : -1e300;
        if (d != (double)(long)d || d < (double)lo || d > (double)hi) {
            snprintf(err, errlen, "'%s' must be an integer from %ld to %ld", names[i], lo, hi);
            return AIOS_ERR_INVALID;
        }
        *out = (long)d;
        return AIOS_OK;
    }
    return AIOS_OK;
}

static const char *const P_FILE[] = {"file_path", "path", NULL};
static const char *const P_DIR[] = {"dir_path", "path", NULL};
static const char *const P_ANY[] = {"file_path", "dir_path", "path", NULL};
static const char *const P_ROOT[] = {"root_dir", "root", NULL};
static const char *const P_CONTENT[] = {"content", NULL};
static const char *const P_OWNER[] = {"owner", NULL};
static const char *const P_QUERY[] = {"query_text", "query", NULL};
static const char *const P_K[] = {"k", "n", NULL};
static const char *const P_N[] = {"n", "k", NULL};
static const char *const P_VERSION[] = {"version", NULL};
static const char *const P_TARGET[] = {"agent", "target_agent", "to", NULL};

/* One storage call in flight: its agent, resolved path, and answer. */
typedef struct st_call {
    storage_manager *s;
    const char *agent;
    st_agent *a;
    const cJSON *params;
    char path[AIOS_PATH_MAX];
    strbuf msg;
    char *err;
    size_t errlen;
} st_call;

/* The path parameter (the first of names present), normalised under root into out. */
static int param_path(st_call *c, const char *const *names, bool required, const char *root, char *out, size_t outlen) {
    const char *p = NULL;
    int rc = param_str(c->params, names, required, &p, c->err, c->errlen);
    if (!rc) rc = storage_path_norm(root, p ? p : "", (size_t)c->s->p.max_path, out, outlen, c->err, c->errlen);
    return rc;
}

/* Resolves the path parameter against the agent's mount root into c->path. */
static int call_path(st_call *c, const char *const *names, bool required) {
    return param_path(c, names, required, c->a->root, c->path, sizeof c->path);
}

static int fail(st_call *c, int rc, const char *fmt, const char *path) {
    snprintf(c->err, c->errlen, fmt, path);
    return rc;
}

/* ---------- writes ---------- */

static int begin(storage_manager *s) { return sdb_exec(s->db, "BEGIN IMMEDIATE"); }
static int finish(storage_manager *s, int rc) {
    if (!rc) rc = sdb_exec(s->db, "COMMIT");
    if (rc) sdb_exec(s->db, "ROLLBACK");
    return rc;
}

/* Creates the directory rows of every ancestor of path (agent's own namespace). */
static int make_parents(st_call *c, const char *path) {
    char dir[AIOS_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    for (char *sl = strchr(dir, '/'); sl; sl = strchr(sl + 1, '/')) {
        *sl = 0;
        file_row f;
        int rc = file_lookup(c->s, c->agent, dir, &f);
        if (!rc && f.found && !f.is_dir) return fail(c, AIOS_ERR_EXISTS, "'%s' is a file, not a directory", dir);
        if (!rc && !f.found) {
            if (c->a->files >= c->s->p.max_files) return fail(c, AIOS_ERR_QUOTA, "storage.max_files reached creating '%s'", dir);
            rc = q_run(c->s, "INSERT INTO files(agent,path,is_dir,version,size,mtime) VALUES(?,?,1,0,0,?)", "ttd", NULL, NULL,
                       c->agent, dir, kern_now_wall());
            if (!rc) c->a->files++;
        }
        if (rc) return rc;
        *sl = '/';
    }
    return AIOS_OK;
}

static int op_mount(st_call *c) {
    char norm[AIOS_PATH_MAX];
    int rc = param_path(c, P_ROOT, false, "", norm, sizeof norm);
    if (rc) return rc;
    rc = begin(c->s);
    if (!rc && *norm) {
        char probe[AIOS_PATH_MAX + 2];
        snprintf(probe, sizeof probe, "%s/x", norm);
        rc = make_parents(c, probe);
    }
    if (!rc) rc = q_run(c->s, "INSERT OR REPLACE INTO mounts(agent, root) VALUES(?,?)", "tt", NULL, NULL, c->agent, norm);
    rc = finish(c->s, rc);
    if (!rc) {
        snprintf(c->a->root, sizeof c->a->root, "%s", norm);
        sb_printf(&c->msg, "mounted '%s' as the root of agent '%s'", *norm ? norm : "/", c->agent);
    }
    return rc;
}

static int op_create_dir(st_call *c) {
    int rc = call_path(c, P_DIR, true);
    if (rc) return rc;
    if (!*c->path) return fail(c, AIOS_ERR_EXISTS, "'%s' is the namespace root", "/");
    file_row f;
    if ((rc = file_lookup(c->s, c->agent, c->path, &f))) return rc;
    if (f.found) return fail(c, AIOS_ERR_EXISTS, "'%s' already exists", c->path);
    char probe[AIOS_PATH_MAX + 2];
    snprintf(probe, sizeof probe, "%s/x", c->path);
    rc = begin(c->s);
    if (!rc) rc = make_parents(c, probe);
    rc = finish(c->s, rc);
    if (!rc) sb_printf(&c->msg, "created directory '%s'", c->path);
    return rc;
}

/* Adds version `ver` of file f with content (transaction open); drops old versions. */
static int add_version(st_call *c, long long file_id, long long ver, const char *content, size_t n, long *delta) {
    storage_manager *s = c->s;
    long dropped = 0;
    int rc = q_run(s, "INSERT INTO versions(file_id, version, content, mtime) VALUES(?,?,?,?)", "iibd", NULL, NULL, file_id, ver,
                   content, (int)n, kern_now_wall());
    if (!rc)
        rc = q_run(s, "SELECT COALESCE(SUM(length(content)),0) FROM versions WHERE file_id=? AND version<=?", "ii", long_cb,
                   &dropped, file_id, ver - s->p.max_versions);
    if (!rc)
        rc = q_run(s, "DELETE FROM versions WHERE file_id=? AND version<=?", "ii", NULL, NULL, file_id, ver - s->p.max_versions);
    if (!rc)
        rc = q_run(s, "UPDATE files SET version=?, size=?, mtime=?, vec=NULL WHERE id=?", "iidi", NULL, NULL, ver, (long long)n,
                   kern_now_wall(), file_id);
    *delta = (long)n - dropped;
    if (!rc && c->a->bytes + *delta > s->p.quota_bytes) {
        snprintf(c->err, c->errlen, "writing %zu bytes to '%s' exceeds storage.quota_bytes (%ld) of agent '%s'", n, c->path,
                 s->p.quota_bytes, c->agent);
        rc = AIOS_ERR_QUOTA;
    }
    return rc;
}

/* write (create_only: create_file, which refuses an existing path and writes nothing). */
static int do_write(st_call *c, bool create_only) {
    int rc = call_path(c, P_FILE, true);
    const char *content = "";
    if (!rc && !create_only) rc = param_str(c->params, P_CONTENT, true, &content, c->err, c->errlen);
    if (rc) return rc;
    size_t n = strlen(content);
    if (!*c->path) return fail(c, AIOS_ERR_INVALID, "%s: a file path is required", "file_path");
    if ((long)n > c->s->p.max_file_bytes) {
        snprintf(c->err, c->errlen, "content of %zu bytes exceeds storage.max_file_bytes (%ld)", n, c->s->p.max_file_bytes);
        return AIOS_ERR_TOO_LARGE;
    }
    /* backpressure on the writer whose texts wait to be embedded, not on everyone */
    if (c->s->p.embedder && (rc = llm_embed_admit(c->s->p.embedder, c->agent, c->err, c->errlen))) return rc;
    file_row f;
    if ((rc = file_lookup(c->s, c->agent, c->path, &f))) return rc;
    if (f.found && f.is_dir) return fail(c, AIOS_ERR_EXISTS, "'%s' is a directory", c->path);
    if (f.found && create_only) return fail(c, AIOS_ERR_EXISTS, "'%s' already exists", c->path);
    if (!f.found && c->a->files >= c->s->p.max_files)
        return fail(c, AIOS_ERR_QUOTA, "storage.max_files reached; cannot create '%s'", c->path);
    long delta = 0;
    rc = begin(c->s);
    if (!rc && !f.found) rc = make_parents(c, c->path);
    if (!rc && !f.found) {
        rc = q_run(c->s, "INSERT INTO files(agent,path,is_dir,version,size,mtime) VALUES(?,?,0,0,0,?)", "ttd", NULL, NULL,
                   c->agent, c->path, kern_now_wall());
        f.id = sqlite3_last_insert_rowid(c->s->db);
    }
    if (!rc) rc = add_version(c, f.id, f.version + 1, content, n, &delta);
    rc = finish(c->s, rc);
    if (rc) { /* make_parents counted directories the rollback undid */
        q_run(c->s, "SELECT COUNT(*) FROM files WHERE agent=?", "t", long_cb, &c->a->files, c->agent);
        return rc;
    }
    c->a->bytes += delta;
    if (!f.found) c->a->files++;
    vec_index_remove(c->a->ix, (uint64_t)f.id);
    queue_file_embed(c->s, c->a, f.id, content);
    c->s->st.writes++;
    if (create_only) sb_printf(&c->msg, "created file '%s'", c->path);
    else sb_printf(&c->msg, "wrote %zu bytes to '%s' (version %lld)", n, c->path, f.version + 1);
    return AIOS_OK;
}

static int op_create_file(st_call *c) { return do_write(c, true); }
static int op_write(st_call *c) { return do_write(c, false); }

/* ---------- reads (own namespace, or an owner's share) ---------- */

static int share_cb(sqlite3_stmt *st, void *ud) {
    (void)st;
    *(bool *)ud = true;
    return AIOS_OK;
}

/* Whether owner shared path (or a directory above it) with agent. */
static bool shared_with(storage_manager *s, const char *owner, const char *path, const char *agent) {
    char p[AIOS_PATH_MAX];
    snprintf(p, sizeof p, "%s", path);
    for (;;) {
        bool ok = false;
        q_run(s, "SELECT 1 FROM shares WHERE owner=? AND path=? AND (grantee=? OR grantee='*')", "ttt", share_cb, &ok, owner, p,
              agent);
        if (ok) return true;
        char *sl = strrchr(p, '/');
        if (!sl) return false;
        *sl = 0;
    }
}

/* Sets c->path for a read: own namespace (mount root applies) or "owner" (its namespace root). */
static int read_target(st_call *c, const char *const *names, bool required, const char **ns) {
    const char *owner = NULL;
    int rc = param_str(c->params, P_OWNER, false, &owner, c->err, c->errlen);
    if (rc) return rc;
    if (!owner || !strcmp(owner, c->agent)) {
        *ns = c->agent;
        return call_path(c, names, required);
    }
    rc = param_path(c, names, required, "", c->path, sizeof c->path); /* the owner's namespace root */
    if (rc) return rc;
    if (!shared_with(c->s, owner, c->path, c->agent)) {
        snprintf(c->err, c->errlen, "agent '%s' has not shared '%s' with '%s'", owner, *c->path ? c->path : "/", c->agent);
        return AIOS_ERR_FORBIDDEN;
    }
    *ns = owner;
    return AIOS_OK;
}

static int op_read(st_call *c) {
    const char *ns;
    int rc = read_target(c, P_FILE, true, &ns);
    long ver = 0;
    if (!rc) rc = param_int(c->params, P_VERSION, 1, 1L << 40, &ver, c->err, c->errlen);
    if (rc) return rc;
    file_row f;
    if ((rc = file_lookup(c->s, ns, c->path, &f))) return rc;
    if (!f.found) return fail(c, AIOS_ERR_NOT_FOUND, "no file '%s'", c->path);
    if (f.is_dir) return fail(c, AIOS_ERR_INVALID, "'%s' is a directory (use list)", c->path);
    blob_out body = {.found = false};
    sb_init(&body.sb, 0);
    rc = q_run(c->s, "SELECT content FROM versions WHERE file_id=? AND version=?", "ii", blob_cb, &body, f.id,
               ver ? (long long)ver : f.version);
    if (!rc && !body.found) {
        snprintf(c->err, c->errlen, "version %ld of '%s' is not kept (storage.max_versions is %d)", ver, c->path,
                 c->s->p.max_versions);
        rc = AIOS_ERR_NOT_FOUND;
    }
    if (rc) {
        sb_free(&body.sb);
        return rc;
    }
    sb_puts(&body.sb, ""); /* an empty file is still a string */
    sb_free(&c->msg);
    c->msg = body.sb;
    c->s->st.reads++;
    return AIOS_OK;
}

typedef struct list_ctx {
    cJSON *arr;
    size_t prefix;
} list_ctx;

static int list_cb(sqlite3_stmt *st, void *ud) {
    list_ctx *l = ud;
    const char *path = (const char *)sqlite3_column_text(st, 0);
    const char *name = path + l->prefix;
    if (strchr(name, '/')) return AIOS_OK; /* deeper than a direct child */
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "name", name);
    cJSON_AddStringToObject(e, "path", path);
    cJSON_AddStringToObject(e, "type", sqlite3_column_int(st, 1) ? "dir" : "file");
    cJSON_AddNumberToObject(e, "size", (double)sqlite3_column_int64(st, 2));
    cJSON_AddNumberToObject(e, "version", (double)sqlite3_column_int64(st, 3));
    cJSON_AddNumberToObject(e, "mtime", sqlite3_column_double(st, 4));
    kern_json_push(l->arr, e);
    return AIOS_OK;
}

static int op_list(st_call *c) {
    const char *ns;
    int rc = read_target(c, P_DIR, false, &ns);
    if (rc) return rc;
    if (*c->path) {
        file_row f;
        if ((rc = file_lookup(c->s, ns, c->path, &f))) return rc;
        if (!f.found) return fail(c, AIOS_ERR_NOT_FOUND, "no directory '%s'", c->path);
        if (!f.is_dir) return fail(c, AIOS_ERR_INVALID, "'%s' is a file, not a directory", c->path);
    }
    char lo[AIOS_PATH_MAX + 2], hi[AIOS_PATH_MAX + 2];
    snprintf(lo, sizeof lo, "%s/", c->path);
    snprintf(hi, sizeof hi, "%s0", c->path); /* '0' follows '/': the range is everything under "path/" */
    list_ctx l = {cJSON_CreateArray(), *c->path ? strlen(lo) : 0};
    if (*c->path)
        rc =
            q_run(c->s, "SELECT path, is_dir, size, version, mtime FROM files WHERE agent=? AND path>=? AND path<? ORDER BY path",
                  "ttt", list_cb, &l, ns, lo, hi);
    else /* the root: every path (names may start with any byte) */
        rc =
            q_run(c->s, "SELECT path, is_dir, size, version, mtime FROM files WHERE agent=? ORDER BY path", "t", list_cb, &l, ns);
    char *txt = rc ? NULL : cJSON_PrintUnformatted(l.arr);
    cJSON_Delete(l.arr);
    if (!rc && !txt) rc = AIOS_ERR_NOMEM;
    if (!rc) sb_puts(&c->msg, txt);
    free(txt);
    return rc;
}

/* ---------- delete, rollback, share ---------- */

typedef struct id_list {
    long long ids[256];
    int n;
    bool more;
} id_list;

static int id_cb(sqlite3_stmt *st, void *ud) {
    id_list *l = ud;
    if (l->n == (int)(sizeof l->ids / sizeof l->ids[0])) {
        l->more = true;
        return AIOS_OK;
    }
    l->ids[l->n++] = sqlite3_column_int64(st, 0);
    return AIOS_OK;
}

static int op_delete(st_call *c) {
    int rc = call_path(c, P_ANY, true);
    if (rc) return rc;
    if (!*c->path) return fail(c, AIOS_ERR_INVALID, "refusing to delete the namespace root%s", "");
    bool recursive = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c->params, "recursive"));
    file_row f;
    if ((rc = file_lookup(c->s, c->agent, c->path, &f))) return rc;
    if (!f.found) return fail(c, AIOS_ERR_NOT_FOUND, "no file or directory '%s'", c->path);
    char lo[AIOS_PATH_MAX + 2], hi[AIOS_PATH_MAX + 2];
    snprintf(lo, sizeof lo, "%s/", c->path);
    snprintf(hi, sizeof hi, "%s0", c->path);
    long children = 0;
    if (f.is_dir)
        q_run(c->s, "SELECT COUNT(*) FROM files WHERE agent=? AND path>=? AND path<?", "ttt", long_cb, &children, c->agent, lo,
              hi);
    if (children && !recursive)
        return fail(c, AIOS_ERR_EXISTS, "directory '%s' is not empty (pass \"recursive\": true)", c->path);
    long bytes = 0;
    rc = begin(c->s);
    const char *sel = "SELECT id FROM files WHERE agent=? AND (path=? OR (path>=? AND path<?))";
    if (!rc)
        rc = q_run(c->s,
                   "SELECT COALESCE(SUM(length(v.content)),0) FROM versions v JOIN files f ON f.id=v.file_id"
                   " WHERE f.agent=? AND (f.path=? OR (f.path>=? AND f.path<?))",
                   "tttt", long_cb, &bytes, c->agent, c->path, lo, hi);
    id_list ids = {.n = 0};
    if (!rc) rc = q_run(c->s, sel, "tttt", id_cb, &ids, c->agent, c->path, lo, hi);
    if (!rc)
        rc = q_run(
            c->s,
            "DELETE FROM versions WHERE file_id IN (SELECT id FROM files WHERE agent=? AND (path=? OR (path>=? AND path<?)))",
            "tttt", NULL, NULL, c->agent, c->path, lo, hi);
    if (!rc)
        rc = q_run(c->s, "DELETE FROM shares WHERE owner=? AND (path=? OR (path>=? AND path<?))", "tttt", NULL, NULL, c->agent,
                   c->path, lo, hi);
    if (!rc)
        rc = q_run(c->s, "DELETE FROM files WHERE agent=? AND (path=? OR (path>=? AND path<?))", "tttt", NULL, NULL, c->agent,
                   c->path, lo, hi);
    rc = finish(c->s, rc);
    if (rc) return rc;
    for (int i = 0; i < ids.n; i++) vec_index_remove(c->a->ix, (uint64_t)ids.ids[i]);
    vec_index_params ip = c->s->p.index;
    vec_index *fresh = ids.more ? vec_index_new(&ip) : NULL;
    if (fresh) { /* more than one batch of files went: rebuild the index from what is left */
        vec_index_free(c->a->ix);
        c->a->ix = fresh;
        load_index(c->s, c->a);
    } /* (without memory for a new one, the old index keeps labels whose rows are gone: retrieval skips them) */
    c->a->bytes -= bytes;
    c->a->files -= 1 + children;
    c->s->st.deletes++;
    sb_printf(&c->msg, "deleted '%s'%s", c->path, children ? " and everything under it" : "");
    return AIOS_OK;
}

static int op_rollback(st_call *c) {
    long n = 1;
    int rc = call_path(c, P_FILE, true);
    if (!rc) rc = param_int(c->params, P_N, 1, 1L << 30, &n, c->err, c->errlen);
    if (rc) return rc;
    file_row f;
    if ((rc = file_lookup(c->s, c->agent, c->path, &f))) return rc;
    if (!f.found || f.is_dir) return fail(c, AIOS_ERR_NOT_FOUND, "no file '%s'", c->path);
    long long target = f.version - n;
    long kept = 0, bytes = 0;
    if (target >= 1)
        q_run(c->s, "SELECT COUNT(*) FROM versions WHERE file_id=? AND version=?", "ii", long_cb, &kept, f.id, target);
    if (!kept) {
        snprintf(c->err, c->errlen,
                 "cannot roll '%s' back %ld version(s): it is at version %lld and versions are kept back to %lld", c->path, n,
                 f.version, f.version - c->s->p.max_versions + 1 > 1 ? f.version - c->s->p.max_versions + 1 : 1);
        return AIOS_ERR_NOT_FOUND;
    }
    blob_out content = {.found = false};
    sb_init(&content.sb, 0);
    sb_puts(&content.sb, "");
    rc = begin(c->s);
    if (!rc)
        rc = q_run(c->s, "SELECT COALESCE(SUM(length(content)),0) FROM versions WHERE file_id=? AND version>?", "ii", long_cb,
                   &bytes, f.id, target);
    if (!rc) rc = q_run(c->s, "DELETE FROM versions WHERE file_id=? AND version>?", "ii", NULL, NULL, f.id, target);
    if (!rc)
        rc = q_run(c->s, "SELECT content FROM versions WHERE file_id=? AND version=?", "ii", blob_cb, &content, f.id, target);
    if (!rc)
        rc = q_run(c->s, "UPDATE files SET version=?, size=?, mtime=?, vec=NULL WHERE id=?", "iidi", NULL, NULL, target,
                   (long long)content.sb.len, kern_now_wall(), f.id);
    rc = finish(c->s, rc);
    if (!rc) {
        c->a->bytes -= bytes;
        vec_index_remove(c->a->ix, (uint64_t)f.id);
        queue_file_embed(c->s, c->a, f.id, content.sb.data);
        c->s->st.rollbacks++;
        sb_printf(&c->msg, "rolled '%s' back to version %lld", c->path, target);
    }
    sb_free(&content.sb);
    return rc;
}

static int op_share(st_call *c) {
    const char *target = NULL;
    int rc = call_path(c, P_ANY, true);
    if (!rc) rc = param_str(c->params, P_TARGET, false, &target, c->err, c->errlen);
    if (rc) return rc;
    if (target && (!*target || strlen(target) >= AIOS_NAME_MAX))
        return fail(c, AIOS_ERR_INVALID, "'agent' must be 1 to 63 bytes%s", "");
    file_row f;
    if ((rc = file_lookup(c->s, c->agent, c->path, &f))) return rc;
    if (!f.found && *c->path) return fail(c, AIOS_ERR_NOT_FOUND, "no file or directory '%s'", c->path);
    rc = q_run(c->s, "INSERT OR IGNORE INTO shares(owner, path, grantee) VALUES(?,?,?)", "ttt", NULL, NULL, c->agent, c->path,
               target ? target : "*");
    if (rc) return rc;
    c->s->st.shares++;
    sb_printf(&c->msg,
              "shared '%s' of agent '%s' (read-only) with %s%s%s; it reads it with {\"owner\": \"%s\", \"file_path\": \"%s\"}",
              c->path, c->agent, target ? "agent '" : "every agent on this kernel", target ? target : "", target ? "'" : "",
              c->agent, c->path);
    return AIOS_OK;
}

/* ---------- retrieval ---------- */

typedef struct hit_ctx {
    cJSON *arr;
    float score;
    const char *const *keywords;
    int n_keywords;
} hit_ctx;

static int hit_cb(sqlite3_stmt *st, void *ud) {
    hit_ctx *h = ud;
    const void *b = sqlite3_column_blob(st, 1);
    int n = sqlite3_column_bytes(st, 1);
    char *text = strndup(b ? b : "", (size_t)n);
    if (!text) return AIOS_ERR_NOMEM;
    for (int i = 0; i < h->n_keywords; i++)
        if (!strcasestr(text, h->keywords[i])) {
            free(text);
            return AIOS_OK;
        }
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "file_path", (const char *)sqlite3_column_text(st, 0));
    cJSON_AddNumberToObject(e, "score", (double)h->score);
    if (n > 240) text[240] = 0; /* a snippet; read fetches the whole file */
    cJSON_AddStringToObject(e, "snippet", text);
    cJSON_AddNumberToObject(e, "version", (double)sqlite3_column_int64(st, 2));
    kern_json_push(h->arr, e);
    free(text);
    return AIOS_OK;
}

static int keywords_of(st_call *c, const char **kw, int max, int *n) {
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(c->params, "keywords");
    *n = 0;
    if (!k || cJSON_IsNull(k)) return AIOS_OK;
    if (cJSON_IsString(k)) {
        if (*k->valuestring) kw[(*n)++] = k->valuestring;
        return AIOS_OK;
    }
    if (!cJSON_IsArray(k)) return fail(c, AIOS_ERR_INVALID, "'keywords' must be a string or a list of strings%s", "");
    for (const cJSON *e = k->child; e; e = e->next) {
        if (!cJSON_IsString(e)) return fail(c, AIOS_ERR_INVALID, "'keywords' must be a string or a list of strings%s", "");
        if (*n == max) return fail(c, AIOS_ERR_INVALID, "at most 16 'keywords'%s", "");
        if (*e->valuestring) kw[(*n)++] = e->valuestring;
    }
    return AIOS_OK;
}

static int op_retrieve(st_call *c) {
    storage_manager *s = c->s;
    const char *query = NULL, *kw[16];
    long k = 5;
    int nkw = 0;
    int rc = param_str(c->params, P_QUERY, true, &query, c->err, c->errlen);
    if (!rc) rc = param_int(c->params, P_K, 1, s->p.max_k, &k, c->err, c->errlen);
    if (!rc) rc = keywords_of(c, kw, 16, &nkw);
    if (rc) return rc;
    if (!s->p.embedder) return fail(c, AIOS_ERR_UNSUPPORTED, "retrieval needs an embedding model, and none is loaded%s", "");
    bool exact = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c->params, "exact"));
    int dim = s->p.index.dim, want = nkw ? (int)k * 4 : (int)k;
    float *q = malloc((size_t)dim * sizeof *q), *scores = malloc((size_t)want * sizeof *scores);
    uint64_t *labels = malloc((size_t)want * sizeof *labels);
    if (!q || !scores || !labels) rc = AIOS_ERR_NOMEM;
    pthread_mutex_unlock(&s->mu); /* embedding the query takes a while: let other calls run */
    double t0 = kern_now_mono();
    int limit = s->p.retrieve_timeout_ms;
    if (!rc) rc = llm_embed_admit_query(s->p.embedder, c->agent, limit, c->err, c->errlen); /* (503 now, not 504 later) */
    if (!rc && (rc = llm_embed(s->p.embedder, c->agent, query, q, NULL, limit)) == AIOS_ERR_DEADLINE)
        snprintf(c->err, c->errlen,
                 "retrieval not served within storage.retrieve_timeout_ms (%d ms): the query was not "
                 "embedded in time",
                 limit);
    pthread_mutex_lock(&s->mu);
    /* see every acknowledged write, within the deadline */
    if (!rc && (rc = kern_wait_zero(&c->a->idle, &s->mu, &c->a->pending, limit, t0)))
        snprintf(c->err, c->errlen,
                 "retrieval not served within storage.retrieve_timeout_ms (%d ms): %d files of '%s' "
                 "are still waiting to be embedded",
                 limit, c->a->pending, c->agent);
    if (!rc) {
        int found = vec_index_search(c->a->ix, q, want, exact, labels, scores);
        hit_ctx h = {cJSON_CreateArray(), 0, kw, nkw};
        for (int i = 0; i < found && !rc && cJSON_GetArraySize(h.arr) < k; i++) {
            h.score = scores[i];
            rc =
                q_run(s,
                      "SELECT f.path, v.content, f.version FROM files f JOIN versions v ON v.file_id=f.id AND v.version=f.version"
                      " WHERE f.id=? AND f.agent=?",
                      "it", hit_cb, &h, (long long)labels[i], c->agent);
        }
        char *txt = rc ? NULL : cJSON_PrintUnformatted(h.arr);
        cJSON_Delete(h.arr);
        if (!rc && !txt) rc = AIOS_ERR_NOMEM;
        if (!rc) sb_puts(&c->msg, txt);
        free(txt);
        if (!rc) s->st.retrievals++;
    }
    free(q);
    free(scores);
    free(labels);
    if (rc && !*c->err) snprintf(c->err, c->errlen, "retrieval failed: %s", aios_strerror(rc));
    return rc;
}

/* ---------- dispatch ---------- */

typedef struct st_op {
    const char *name;
    int (*fn)(st_call *c);
} st_op;

static const st_op OPS[] = {
    {"mount", op_mount},
    {"create_file", op_create_file},
    {"create_dir", op_create_dir},
    {"write", op_write},
    {"read", op_read},
    {"list", op_list},
    {"delete", op_delete},
    {"retrieve", op_retrieve},
    {"rollback", op_rollback},
    {"share", op_share},
};

int storage_purge(storage_manager *s, const char *agent) {
    pthread_mutex_lock(&s->mu);
    int rc = begin(s);
    if (!rc) rc = q_run(s, "DELETE FROM versions WHERE file_id IN (SELECT id FROM files WHERE agent=?)", "t", NULL, NULL, agent);
    if (!rc) rc = q_run(s, "DELETE FROM files WHERE agent=?", "t", NULL, NULL, agent);
    if (!rc) rc = q_run(s, "DELETE FROM shares WHERE owner=? OR grantee=?", "tt", NULL, NULL, agent, agent);
    if (!rc) rc = q_run(s, "DELETE FROM mounts WHERE agent=?", "t", NULL, NULL, agent);
    if (!rc) rc = q_run(s, "DELETE FROM responses WHERE agent=?", "t", NULL, NULL, agent);
    rc = finish(s, rc);
    st_agent *a = rc ? NULL : strmap_get(&s->agents, agent);
    vec_index_params ip = s->p.index;
    vec_index *fresh = a ? vec_index_new(&ip) : NULL;
    if (a) { /* an embedding still queued finds no file row and is dropped; without a fresh index
              * the old labels name deleted rows, which retrieval never returns */
        if (fresh) {
            vec_index_free(a->ix);
            a->ix = fresh;
        }
        a->bytes = a->files = 0;
        a->root[0] = 0;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int storage_call(storage_manager *s, const char *agent, const char *op, const cJSON *params, char **message, char *err,
                 size_t errlen) {
    *message = NULL;
    err[0] = 0;
    const st_op *o = NULL;
    for (size_t i = 0; i < sizeof OPS / sizeof OPS[0]; i++)
        if (!strcmp(OPS[i].name, op)) o = &OPS[i];
    if (!o) {
        snprintf(
            err, errlen,
            "unknown storage operation_type '%.40s' (allowed: mount, create_file, create_dir, write, read, list, delete, retrieve, rollback, share)",
            op);
        return AIOS_ERR_INVALID;
    }
    if (params && !cJSON_IsObject(params)) {
        snprintf(err, errlen, "'params' must be an object");
        return AIOS_ERR_INVALID;
    }
    const cJSON *owner = cJSON_GetObjectItemCaseSensitive(params, "owner");
    if (cJSON_IsString(owner) && strcmp(owner->valuestring, agent) && strcmp(op, "read") && strcmp(op, "list")) {
        snprintf(err, errlen, "'%s' works only in the agent's own namespace: shares from '%.63s' are read-only (read, list)", op,
                 owner->valuestring);
        return AIOS_ERR_FORBIDDEN;
    }
    st_call c = {.s = s, .agent = agent, .params = params, .err = err, .errlen = errlen};
    sb_init(&c.msg, 0);
    pthread_mutex_lock(&s->mu);
    c.a = agent_get(s, agent);
    int rc = c.a ? o->fn(&c) : AIOS_ERR_NOMEM;
    pthread_mutex_unlock(&s->mu);
    if (rc) {
        if (!*err) snprintf(err, errlen, "storage %s failed: %s", op, aios_strerror(rc));
        sb_free(&c.msg);
        return rc;
    }
    if (!c.msg.data) sb_puts(&c.msg, "");
    *message = sb_steal(&c.msg);
    return AIOS_OK;
}

/* ---------- stored responses (the Responses door) ---------- */

int storage_response_put(storage_manager *s, const char *agent, const char *id, const char *response, const char *history,
                         int max_kept, double ttl_s) {
    double now = kern_now_wall();
    pthread_mutex_lock(&s->mu);
    int rc = begin(s);
    if (!rc)
        rc = q_run(s, "INSERT OR REPLACE INTO responses(agent, id, created, response, history) VALUES(?,?,?,?,?)", "ttdbb", NULL,
                   NULL, agent, id, now, response, (int)strlen(response), history, (int)strlen(history));
    if (!rc && ttl_s > 0)
        rc = q_run(s, "DELETE FROM responses WHERE agent=? AND created<?", "td", NULL, NULL, agent, now - ttl_s);
    if (!rc)
        rc = q_run(s,
                   "DELETE FROM responses WHERE agent=? AND id NOT IN (SELECT id FROM responses WHERE agent=?"
                   " ORDER BY created DESC LIMIT ?)",
                   "tti", NULL, NULL, agent, agent, (long long)max_kept);
    rc = finish(s, rc);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* Columns 0 and 1 of the row into two blob_outs. */
static int two_blobs_cb(sqlite3_stmt *st, void *ud) {
    blob_out *o = ud;
    const void *b = sqlite3_column_blob(st, 1);
    int rc = blob_cb(st, &o[0]);
    o[1].found = true;
    return rc ? rc : sb_append(&o[1].sb, b ? b : "", (size_t)sqlite3_column_bytes(st, 1));
}

int storage_response_get(storage_manager *s, const char *agent, const char *id, double ttl_s, char **response, char **history) {
    blob_out o[2] = {{.found = false}, {.found = false}};
    sb_init(&o[0].sb, 0);
    sb_init(&o[1].sb, 0);
    double oldest = ttl_s > 0 ? kern_now_wall() - ttl_s : 0;
    pthread_mutex_lock(&s->mu);
    int rc = q_run(s, "SELECT response, history FROM responses WHERE agent=? AND id=? AND created>=?", "ttd", two_blobs_cb, o,
                   agent, id, oldest);
    pthread_mutex_unlock(&s->mu);
    if (!rc && !o[0].found) rc = AIOS_ERR_NOT_FOUND;
    char *texts[2] = {sb_steal(&o[0].sb), sb_steal(&o[1].sb)};
    if (!rc && response) *response = texts[0], texts[0] = NULL;
    if (!rc && history) *history = texts[1], texts[1] = NULL;
    free(texts[0]);
    free(texts[1]);
    return rc;
}

int storage_response_delete(storage_manager *s, const char *agent, const char *id) {
    pthread_mutex_lock(&s->mu);
    int rc = q_run(s, "DELETE FROM responses WHERE agent=? AND id=?", "tt", NULL, NULL, agent, id);
    int n = rc ? 0 : sqlite3_changes(s->db);
    pthread_mutex_unlock(&s->mu);
    return rc ? rc : n ? AIOS_OK : AIOS_ERR_NOT_FOUND;
}

void storage_agent_usage(storage_manager *s, const char *agent, long *files, long *bytes) {
    *files = *bytes = 0;
    pthread_mutex_lock(&s->mu);
    st_agent *a = strmap_get(&s->agents, agent);
    if (a) {
        *files = a->files;
        *bytes = a->bytes;
    } else { /* not used in this run: from the store */
        count_usage(s, agent, files, bytes);
    }
    pthread_mutex_unlock(&s->mu);
}

void storage_get_stats(storage_manager *s, storage_stats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    out->agents = (int)s->agents.len;
    out->files = out->bytes = 0;
    out->pending = 0;
    for (size_t i = 0; i < s->agents.cap; i++) {
        if (!s->agents.used[i]) continue;
        st_agent *a = s->agents.vals[i];
        out->files += a->files;
        out->bytes += a->bytes;
        out->pending += a->pending;
    }
    pthread_mutex_unlock(&s->mu);
}
