/*
 * memory.c - the memory manager (memory.h): per-agent block tables, the LRU-K resident
 * set, write-through to SQLite, page-in, and retrieval through the vector index.
 *
 * Locking: an agent's mutex guards its blocks, heap and index updates; db_mu guards the
 * one SQLite connection and is always taken after an agent's mutex, never before. The
 * agents table has its own mutex. Agents live until mem_close.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include "memory.h"
#include "../storage/storage.h"

typedef struct mem_block {
    uint64_t id;
    char *content, *meta;     /* NULL while evicted */
    size_t bytes;             /* strlen(content) + strlen(meta) */
    uint64_t hist[MEM_K_MAX]; /* access times, most recent first (0 = none) */
    int heap_pos;             /* index in the agent's heap; -1 = not resident */
    double created, updated;  /* wall clock */
    unsigned gen;             /* bumped when the content changes (stale embeddings are dropped) */
} mem_block;

typedef struct mem_agent {
    mem_manager *m;
    char name[AIOS_NAME_MAX];
    pthread_mutex_t mu;
    pthread_cond_t idle; /* signalled when pending reaches 0 */
    u64map blocks;
    mem_block **heap; /* resident blocks, min-heap by LRU-K key */
    int heap_len, heap_cap;
    long resident, limit;
    vec_index *ix;
    int pending; /* embeddings queued and not yet indexed */
} mem_agent;

struct mem_manager {
    mem_params p;
    sqlite3 *db;
    sdb_ckpt *ckpt;
    pthread_mutex_t db_mu;
    sqlite3_stmt *q_insert, *q_load, *q_page, *q_update, *q_meta, *q_delete, *q_vec;
    pthread_mutex_t agents_mu;
    strmap agents;
    _Atomic uint64_t clock;
    pthread_mutex_t st_mu;
    mem_stats st;
};

static const char *SCHEMA = "CREATE TABLE IF NOT EXISTS memories(id INTEGER PRIMARY KEY AUTOINCREMENT, agent TEXT NOT NULL,"
                            " content TEXT NOT NULL, meta TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL, vec BLOB);"
                            "CREATE INDEX IF NOT EXISTS memories_agent ON memories(agent);";

mem_params mem_default_params(void) {
    return (mem_params){.limit_bytes = 64L << 20,
                        .eviction_k = 2,
                        .max_item_bytes = 64L << 10,
                        .max_items = 1000000,
                        .max_agents = 4096,
                        .max_k = 100,
                        .index = vec_index_default_params(0)};
}

#define STAT_ADD(m, field, n) \
    do { \
        pthread_mutex_lock(&(m)->st_mu); \
        (m)->st.field += (n); \
        pthread_mutex_unlock(&(m)->st_mu); \
    } while (0)

/* ---------- LRU-K heap: the root is the next victim ---------- */

/* a is a better victim than b: older K-th access (0 = fewer than K accesses), then older last access */
static bool victim_before(const mem_manager *m, const mem_block *a, const mem_block *b) {
    int k = m->p.eviction_k - 1;
    if (a->hist[k] != b->hist[k]) return a->hist[k] < b->hist[k];
    return a->hist[0] < b->hist[0];
}

static void heap_set(mem_agent *a, int i, mem_block *b) {
    a->heap[i] = b;
    b->heap_pos = i;
}

static void heap_up(mem_agent *a, int i) {
    mem_block *b = a->heap[i];
    while (i > 0) {
        int parent = (i - 1) / 2;
        if (!victim_before(a->m, b, a->heap[parent])) break;
        heap_set(a, i, a->heap[parent]);
        i = parent;
    }
    heap_set(a, i, b);
}

static void heap_down(mem_agent *a, int i) {
    mem_block *b = a->heap[i];
    for (;;) {
        int c = 2 * i + 1;
        if (c >= a->heap_len) break;
        if (c + 1 < a->heap_len && victim_before(a->m, a->heap[c + 1], a->heap[c])) c++;
        if (!victim_before(a->m, a->heap[c], b)) break;
        heap_set(a, i, a->heap[c]);
        i = c;
    }
    heap_set(a, i, b);
}

static int heap_push(mem_agent *a, mem_block *b) {
    if (a->heap_len == a->heap_cap) {
        int cap = a->heap_cap ? a->heap_cap * 2 : 64;
        mem_block **h = realloc(a->heap, (size_t)cap * sizeof *h);
        if (!h) return AIOS_ERR_NOMEM;
        a->heap = h;
        a->heap_cap = cap;
    }
    heap_set(a, a->heap_len++, b);
    heap_up(a, b->heap_pos);
    return AIOS_OK;
}

static void heap_remove(mem_agent *a, mem_block *b) {
    int i = b->heap_pos;
    b->heap_pos = -1;
    mem_block *last = a->heap[--a->heap_len];
    if (i == a->heap_len) return;
    heap_set(a, i, last);
    heap_up(a, i);
    heap_down(a, last->heap_pos);
}

/* An access: shifts the history and re-keys the block (a later key sinks in the heap). */
static void touch(mem_agent *a, mem_block *b) {
    memmove(&b->hist[1], &b->hist[0], (MEM_K_MAX - 1) * sizeof b->hist[0]);
    b->hist[0] = ++a->m->clock;
    if (b->heap_pos >= 0) heap_down(a, b->heap_pos);
}

/* ---------- residency ---------- */

static void evict(mem_agent *a, mem_block *b) {
    heap_remove(a, b);
    a->resident -= (long)b->bytes;
    free(b->content);
    free(b->meta);
    b->content = b->meta = NULL;
}

/* Makes b resident (it holds content and meta), evicting LRU-K victims first. A block
 * larger than the whole limit is never resident: it is served from the store. */
static void make_resident(mem_agent *a, mem_block *b) {
    if ((long)b->bytes > a->limit) return;
    unsigned long long n = 0;
    while (a->heap_len && a->resident + (long)b->bytes > a->limit) {
        evict(a, a->heap[0]);
        n++;
    }
    if (heap_push(a, b) == AIOS_OK) a->resident += (long)b->bytes;
    if (n) STAT_ADD(a->m, evictions, n);
}

/* Frees the text of a block that is not resident (it was paged in for one access only). */
static void drop_text(mem_block *b) {
    if (b->heap_pos < 0) {
        free(b->content);
        free(b->meta);
        b->content = b->meta = NULL;
    }
}

static char *col_text(sqlite3_stmt *st, int i) {
    const unsigned char *t = sqlite3_column_text(st, i);
    return strdup(t ? (const char *)t : "");
}

/* Brings an evicted block's text back from the store (page-in). */
static int page_in(mem_agent *a, mem_block *b) {
    mem_manager *m = a->m;
    if (b->content) {
        STAT_ADD(m, hits, 1);
        return AIOS_OK;
    }
    pthread_mutex_lock(&m->db_mu);
    sqlite3_bind_int64(m->q_page, 1, (sqlite3_int64)b->id);
    int rc = sqlite3_step(m->q_page) == SQLITE_ROW ? AIOS_OK : AIOS_ERR_IO;
    if (!rc) {
        b->content = col_text(m->q_page, 0);
        b->meta = col_text(m->q_page, 1);
    }
    sqlite3_reset(m->q_page);
    pthread_mutex_unlock(&m->db_mu);
    if (rc) return rc;
    if (!b->content || !b->meta) {
        drop_text(b);
        return AIOS_ERR_NOMEM;
    }
    STAT_ADD(m, page_ins, 1);
    make_resident(a, b);
    return AIOS_OK;
}

/* ---------- embeddings ---------- */

typedef struct embed_ticket {
    mem_agent *a;
    uint64_t id;
    unsigned gen;
} embed_ticket;

static void store_vec(mem_manager *m, uint64_t id, const float *v, int dim) {
    pthread_mutex_lock(&m->db_mu);
    sqlite3_bind_blob(m->q_vec, 1, v, dim * (int)sizeof *v, SQLITE_STATIC);
    sqlite3_bind_int64(m->q_vec, 2, (sqlite3_int64)id);
    sdb_step_done(m->db, m->q_vec);
    pthread_mutex_unlock(&m->db_mu);
}

static void embedded_cb(void *ctx, int rc, const float *vec, int n_tokens) {
    (void)n_tokens;
    embed_ticket *t = ctx;
    mem_agent *a = t->a;
    mem_manager *m = a->m;
    pthread_mutex_lock(&a->mu);
    mem_block *b = u64map_get(&a->blocks, t->id);
    if (!rc && b && b->gen == t->gen) {
        if (vec_index_put(a->ix, b->id, vec) == AIOS_OK) store_vec(m, b->id, vec, llm_embedder_dim(m->p.embedder));
        STAT_ADD(m, embedded, 1);
    } else if (rc && rc != AIOS_ERR_SHUTDOWN) {
        log_warn("memory: embedding block %llu of '%s' failed: %s", (unsigned long long)t->id, a->name, aios_strerror(rc));
        STAT_ADD(m, embed_failures, 1);
    }
    if (--a->pending == 0) pthread_cond_broadcast(&a->idle);
    pthread_mutex_unlock(&a->mu);
    free(t);
}

/* Queues b's content for embedding (agent locked). */
static int queue_embed(mem_agent *a, mem_block *b, const char *content) {
    if (!a->m->p.embedder) return AIOS_OK;
    embed_ticket *t = malloc(sizeof *t);
    if (!t) return AIOS_ERR_NOMEM;
    *t = (embed_ticket){a, b->id, b->gen};
    int rc = llm_embed_async(a->m->p.embedder, a->name, content, embedded_cb, t);
    if (rc) free(t);
    else a->pending++;
    return rc;
}

/* ---------- agents ---------- */

static void agent_free(mem_agent *a) {
    if (!a) return;
    for (size_t i = 0; i < a->blocks.cap; i++) {
        if (!a->blocks.used[i]) continue;
        mem_block *b = a->blocks.vals[i];
        free(b->content);
        free(b->meta);
        free(b);
    }
    u64map_free(&a->blocks);
    free(a->heap);
    vec_index_free(a->ix);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->idle);
    free(a);
}

/* Loads an agent's blocks (not resident) and stored vectors; queues missing embeddings. */
static int agent_load(mem_manager *m, mem_agent *a) {
    int dim = m->p.index.dim, rc = AIOS_OK, n = 0;
    pthread_mutex_lock(&m->db_mu);
    sqlite3_bind_text(m->q_load, 1, a->name, -1, SQLITE_STATIC);
    while (!rc && sqlite3_step(m->q_load) == SQLITE_ROW) {
        mem_block *b = calloc(1, sizeof *b);
        if (!b) {
            rc = AIOS_ERR_NOMEM;
            break;
        }
        b->id = (uint64_t)sqlite3_column_int64(m->q_load, 0);
        b->bytes = (size_t)sqlite3_column_int64(m->q_load, 1);
        b->heap_pos = -1;
        b->created = sqlite3_column_double(m->q_load, 3);
        b->updated = sqlite3_column_double(m->q_load, 4);
        const void *v = sqlite3_column_blob(m->q_load, 2);
        if (v && sqlite3_column_bytes(m->q_load, 2) == dim * (int)sizeof(float)) vec_index_put(a->ix, b->id, v);
        else b->gen = 1; /* marks "needs an embedding" below */
        if ((rc = u64map_put(&a->blocks, b->id, b))) free(b);
        n++;
    }
    sqlite3_reset(m->q_load);
    pthread_mutex_unlock(&m->db_mu);
    for (size_t i = 0; !rc && i < a->blocks.cap; i++) { /* re-embed blocks a crash left without a vector */
        mem_block *b = a->blocks.used[i] ? a->blocks.vals[i] : NULL;
        if (!b || b->gen != 1 || !m->p.embedder) continue;
        b->gen = 0;
        if (page_in(a, b) == AIOS_OK) queue_embed(a, b, b->content);
        drop_text(b);
    }
    if (n) log_info("memory: loaded %d blocks of agent '%s'", n, a->name);
    return rc;
}

/* The agent's record, created (and loaded from the store) on first use; returned locked. */
static int agent_lock(mem_manager *m, const char *agent, mem_agent **out) {
    pthread_mutex_lock(&m->agents_mu);
    mem_agent *a = strmap_get(&m->agents, agent);
    int rc = AIOS_OK;
    if (!a && (int)m->agents.len >= m->p.max_agents) rc = AIOS_ERR_BUSY;
    if (!a && !rc) {
        a = calloc(1, sizeof *a);
        vec_index_params ip = m->p.index;
        if (a) a->ix = vec_index_new(&ip);
        if (!a || !a->ix || strmap_put(&m->agents, agent, a)) {
            if (a) vec_index_free(a->ix);
            free(a);
            a = NULL;
            rc = AIOS_ERR_NOMEM;
        } else {
            a->m = m;
            snprintf(a->name, sizeof a->name, "%s", agent);
            pthread_mutex_init(&a->mu, NULL);
            pthread_cond_init(&a->idle, NULL);
            long lim = m->p.limit_for ? m->p.limit_for(m->p.limit_ud, agent) : -1;
            a->limit = lim >= 0 ? lim : m->p.limit_bytes;
            pthread_mutex_lock(&a->mu); /* before anyone else can see it half-loaded */
            pthread_mutex_unlock(&m->agents_mu);
            rc = agent_load(m, a);
            if (rc) pthread_mutex_unlock(&a->mu);
            *out = rc ? NULL : a;
            return rc;
        }
    }
    pthread_mutex_unlock(&m->agents_mu);
    if (rc) return rc;
    pthread_mutex_lock(&a->mu);
    *out = a;
    return AIOS_OK;
}

/* ---------- open / close ---------- */

mem_manager *mem_open(const mem_params *p, char *err, size_t errlen) {
    mem_manager *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->p = *p;
    if (m->p.eviction_k < 1) m->p.eviction_k = 1;
    if (m->p.eviction_k > MEM_K_MAX) m->p.eviction_k = MEM_K_MAX;
    m->p.index.dim = p->embedder ? llm_embedder_dim(p->embedder) : 1;
    pthread_mutex_init(&m->db_mu, NULL);
    pthread_mutex_init(&m->agents_mu, NULL);
    pthread_mutex_init(&m->st_mu, NULL);
    if (sdb_open(p->db_path, p->sync_full, SCHEMA, &m->db, &m->ckpt, err, errlen) ||
        sdb_prepare(m->db, "INSERT INTO memories(agent,content,meta,created,updated) VALUES(?,?,?,?,?)", &m->q_insert) ||
        sdb_prepare(
            m->db,
            "SELECT id, length(CAST(content AS BLOB)) + length(CAST(meta AS BLOB)), vec, created, updated FROM memories WHERE agent=?",
            &m->q_load) ||
        sdb_prepare(m->db, "SELECT content, meta FROM memories WHERE id=?", &m->q_page) ||
        sdb_prepare(m->db, "UPDATE memories SET content=?, meta=?, updated=?, vec=NULL WHERE id=?", &m->q_update) ||
        sdb_prepare(m->db, "UPDATE memories SET meta=?, updated=? WHERE id=?", &m->q_meta) ||
        sdb_prepare(m->db, "DELETE FROM memories WHERE id=?", &m->q_delete) ||
        sdb_prepare(m->db, "UPDATE memories SET vec=? WHERE id=?", &m->q_vec)) {
        if (!*err) snprintf(err, errlen, "%s: cannot prepare the memory store", p->db_path);
        mem_close(m);
        return NULL;
    }
    return m;
}

static void free_agent_cb(const char *key, void *val, void *ctx) {
    (void)key;
    (void)ctx;
    agent_free(val);
}

void mem_close(mem_manager *m) {
    if (!m) return;
    strmap_foreach(&m->agents, free_agent_cb, NULL);
    strmap_free(&m->agents);
    sqlite3_stmt *stmts[] = {m->q_insert, m->q_load, m->q_page, m->q_update, m->q_meta, m->q_delete, m->q_vec};
    for (size_t i = 0; i < sizeof stmts / sizeof stmts[0]; i++) sqlite3_finalize(stmts[i]);
    sdb_ckpt_stop(m->ckpt);
    sqlite3_close(m->db);
    pthread_mutex_destroy(&m->db_mu);
    pthread_mutex_destroy(&m->agents_mu);
    pthread_mutex_destroy(&m->st_mu);
    free(m);
}

/* ---------- operations ---------- */

static int check_item(mem_manager *m, const char *content, const char *meta, char *err, size_t errlen) {
    size_t n = (content ? strlen(content) : 0) + (meta ? strlen(meta) : 0);
    if ((long)n > m->p.max_item_bytes) {
        snprintf(err, errlen, "memory block of %zu bytes (content + metadata) exceeds memory.max_item_bytes (%ld)", n,
                 m->p.max_item_bytes);
        return AIOS_ERR_TOO_LARGE;
    }
    return AIOS_OK;
}

static int parse_id(const char *id, uint64_t *out, char *err, size_t errlen) {
    char *end;
    unsigned long long v = id && *id ? strtoull(id, &end, 10) : 0;
    if (!v || *end || id[0] == '-' || id[0] == '+') {
        snprintf(err, errlen, "memory_id '%.40s' is not an id this kernel issued", id ? id : "");
        return AIOS_ERR_NOT_FOUND;
    }
    *out = v;
    return AIOS_OK;
}

static mem_block *find_block(mem_agent *a, const char *id, char *err, size_t errlen) {
    uint64_t v;
    if (parse_id(id, &v, err, errlen)) return NULL;
    mem_block *b = u64map_get(&a->blocks, v);
    if (!b) snprintf(err, errlen, "no memory '%.40s' for agent '%s'", id, a->name);
    return b;
}

int mem_add(mem_manager *m, const char *agent, const char *content, const char *metadata, char id[MEM_ID_MAX], char *err,
            size_t errlen) {
    if (!metadata) metadata = "{}";
    int rc = check_item(m, content, metadata, err, errlen);
    mem_agent *a;
    if (!rc && (rc = agent_lock(m, agent, &a)))
        snprintf(err, errlen, "memory: cannot open agent '%s' (%s)", agent, aios_strerror(rc));
    if (rc) return rc;
    if ((long)a->blocks.len >= m->p.max_items) {
        pthread_mutex_unlock(&a->mu);
        snprintf(err, errlen, "agent '%s' has memory.max_items (%ld) blocks", agent, m->p.max_items);
        return AIOS_ERR_QUOTA;
    }
    mem_block *b = calloc(1, sizeof *b);
    char *c = strdup(content), *md = strdup(metadata);
    double now = kern_now_wall();
    rc = b && c && md ? AIOS_OK : AIOS_ERR_NOMEM;
    pthread_mutex_lock(&m->db_mu);
    if (!rc) {
        sqlite3_bind_text(m->q_insert, 1, agent, -1, SQLITE_STATIC);
        sqlite3_bind_text(m->q_insert, 2, content, -1, SQLITE_STATIC);
        sqlite3_bind_text(m->q_insert, 3, metadata, -1, SQLITE_STATIC);
        sqlite3_bind_double(m->q_insert, 4, now);
        sqlite3_bind_double(m->q_insert, 5, now);
        rc = sdb_step_done(m->db, m->q_insert);
        if (!rc) b->id = (uint64_t)sqlite3_last_insert_rowid(m->db);
    }
    pthread_mutex_unlock(&m->db_mu);
    if (!rc) {
        b->content = c;
        b->meta = md;
        b->bytes = strlen(c) + strlen(md);
        b->heap_pos = -1;
        b->created = b->updated = now;
        rc = u64map_put(&a->blocks, b->id, b);
        if (!rc && (rc = queue_embed(a, b, c))) u64map_del(&a->blocks, b->id);
        if (rc) { /* nothing half-written: undo the row */
            pthread_mutex_lock(&m->db_mu);
            sqlite3_bind_int64(m->q_delete, 1, (sqlite3_int64)b->id);
            sdb_step_done(m->db, m->q_delete);
            pthread_mutex_unlock(&m->db_mu);
            if (rc == AIOS_ERR_BUSY)
                snprintf(err, errlen,
                         "'%s' has too many texts waiting to be embedded (storage.embed_agent_queue, "
                         "storage.embed_queue); retry later",
                         agent);
            else snprintf(err, errlen, "memory: %s", aios_strerror(rc));
        }
    } else {
        snprintf(err, errlen, "memory store: %s", aios_strerror(rc));
    }
    if (rc) {
        free(c);
        free(md);
        free(b);
    } else {
        touch(a, b);
        make_resident(a, b);
        drop_text(b);
        snprintf(id, MEM_ID_MAX, "%llu", (unsigned long long)b->id);
    }
    pthread_mutex_unlock(&a->mu);
    if (!rc) STAT_ADD(m, adds, 1);
    return rc;
}

/* Copies b (paged in) into out; agent locked. */
static int read_block(mem_agent *a, mem_block *b, mem_item *out) {
    int rc = page_in(a, b);
    if (rc) return rc;
    touch(a, b);
    memset(out, 0, sizeof *out);
    snprintf(out->id, sizeof out->id, "%llu", (unsigned long long)b->id);
    out->created = b->created;
    out->updated = b->updated;
    out->content = strdup(b->content);
    out->metadata = strdup(b->meta);
    drop_text(b);
    if (!out->content || !out->metadata) {
        mem_item_clear(out);
        return AIOS_ERR_NOMEM;
    }
    return AIOS_OK;
}

int mem_get(mem_manager *m, const char *agent, const char *id, mem_item *out, char *err, size_t errlen) {
    mem_agent *a;
    int rc = agent_lock(m, agent, &a);
    if (rc) return rc;
    mem_block *b = find_block(a, id, err, errlen);
    rc = b ? read_block(a, b, out) : AIOS_ERR_NOT_FOUND;
    pthread_mutex_unlock(&a->mu);
    if (rc && b) snprintf(err, errlen, "memory: reading '%s' failed (%s)", id, aios_strerror(rc));
    if (!rc) STAT_ADD(m, gets, 1);
    return rc;
}

int mem_update(mem_manager *m, const char *agent, const char *id, const char *content, const char *metadata, char *err,
               size_t errlen) {
    mem_agent *a;
    int rc = agent_lock(m, agent, &a);
    if (rc) return rc;
    mem_block *b = find_block(a, id, err, errlen);
    rc = b ? page_in(a, b) : AIOS_ERR_NOT_FOUND;
    const char *nc = b && !rc ? (content ? content : b->content) : NULL, *nm = b && !rc ? (metadata ? metadata : b->meta) : NULL;
    if (!rc) rc = check_item(m, nc, nm, err, errlen);
    char *c = NULL, *md = NULL;
    if (!rc && (!(c = strdup(nc)) || !(md = strdup(nm)))) rc = AIOS_ERR_NOMEM;
    double now = kern_now_wall();
    if (!rc) {
        pthread_mutex_lock(&m->db_mu);
        sqlite3_stmt *st = content ? m->q_update : m->q_meta;
        int i = 1;
        if (content) sqlite3_bind_text(st, i++, c, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, i++, md, -1, SQLITE_STATIC);
        sqlite3_bind_double(st, i++, now);
        sqlite3_bind_int64(st, i, (sqlite3_int64)b->id);
        rc = sdb_step_done(m->db, st);
        pthread_mutex_unlock(&m->db_mu);
    }
    if (!rc) {
        bool resident = b->heap_pos >= 0;
        if (resident) evict(a, b); /* re-enter with its new size */
        else drop_text(b);
        b->content = c;
        b->meta = md;
        b->bytes = strlen(c) + strlen(md);
        b->updated = now;
        c = md = NULL;
        if (content) {
            b->gen++;
            vec_index_remove(a->ix, b->id);
            queue_embed(a, b, b->content);
        }
        touch(a, b);
        make_resident(a, b);
        drop_text(b);
    } else if (b) {
        drop_text(b);
    }
    free(c);
    free(md);
    pthread_mutex_unlock(&a->mu);
    if (!rc) STAT_ADD(m, updates, 1);
    return rc;
}

int mem_remove(mem_manager *m, const char *agent, const char *id, char *err, size_t errlen) {
    mem_agent *a;
    int rc = agent_lock(m, agent, &a);
    if (rc) return rc;
    mem_block *b = find_block(a, id, err, errlen);
    rc = b ? AIOS_OK : AIOS_ERR_NOT_FOUND;
    if (!rc) {
        pthread_mutex_lock(&m->db_mu);
        sqlite3_bind_int64(m->q_delete, 1, (sqlite3_int64)b->id);
        rc = sdb_step_done(m->db, m->q_delete);
        pthread_mutex_unlock(&m->db_mu);
    }
    if (!rc) {
        if (b->heap_pos >= 0) evict(a, b);
        vec_index_remove(a->ix, b->id);
        u64map_del(&a->blocks, b->id);
        free(b);
    }
    pthread_mutex_unlock(&a->mu);
    if (!rc) STAT_ADD(m, removes, 1);
    return rc;
}

int mem_purge(mem_manager *m, const char *agent) {
    mem_agent *a;
    int rc = agent_lock(m, agent, &a);
    if (rc) return rc;
    pthread_mutex_lock(&m->db_mu);
    rc = sdb_exec_text(m->db, "DELETE FROM memories WHERE agent=?", agent);
    pthread_mutex_unlock(&m->db_mu);
    for (size_t i = 0; !rc && i < a->blocks.cap; i++) {
        mem_block *b = a->blocks.used[i] ? a->blocks.vals[i] : NULL;
        if (!b) continue;
        if (b->heap_pos >= 0) evict(a, b);
        vec_index_remove(a->ix, b->id);
        free(b->content);
        free(b->meta);
        free(b);
    }
    if (!rc) { /* an embedding still queued finds no block and is dropped */
        u64map_free(&a->blocks);
        memset(&a->blocks, 0, sizeof a->blocks);
    }
    pthread_mutex_unlock(&a->mu);
    return rc;
}

int mem_retrieve(mem_manager *m, const char *agent, const char *query, int k, bool exact, mem_item **out, int *n, char *err,
                 size_t errlen) {
    *out = NULL;
    *n = 0;
    err[0] = 0;
    if (!m->p.embedder) {
        snprintf(err, errlen, "retrieval needs an embedding model, and none is loaded");
        return AIOS_ERR_UNSUPPORTED;
    }
    if (k < 1 || k > m->p.max_k) {
        snprintf(err, errlen, "'k' must be 1 to %d", m->p.max_k);
        return AIOS_ERR_INVALID;
    }
    int dim = m->p.index.dim;
    float *q = malloc((size_t)dim * sizeof *q);
    uint64_t *labels = malloc((size_t)k * sizeof *labels);
    float *scores = malloc((size_t)k * sizeof *scores);
    mem_item *items = calloc((size_t)k, sizeof *items);
    double t0 = kern_now_mono();
    int rc = q && labels && scores && items ? llm_embed_admit_query(m->p.embedder, agent, m->p.retrieve_timeout_ms, err, errlen)
                                            : AIOS_ERR_NOMEM;
    if (!rc) rc = llm_embed(m->p.embedder, agent, query, q, NULL, m->p.retrieve_timeout_ms);
    mem_agent *a = NULL;
    if (!rc) rc = agent_lock(m, agent, &a);
    if (!rc && (rc = kern_wait_zero(&a->idle, &a->mu, &a->pending, m->p.retrieve_timeout_ms, t0))) {
        snprintf(err, errlen,
                 "retrieval not served within storage.retrieve_timeout_ms (%d ms): %d texts of '%s' are "
                 "still waiting to be embedded",
                 m->p.retrieve_timeout_ms, a->pending, agent);
        pthread_mutex_unlock(&a->mu);
    } else if (!rc) {
        int found = vec_index_search(a->ix, q, k, exact, labels, scores);
        for (int i = 0; i < found && !rc; i++) {
            mem_block *b = u64map_get(&a->blocks, labels[i]);
            if (!b) continue;
            rc = read_block(a, b, &items[*n]);
            if (!rc) items[(*n)++].score = scores[i];
        }
        pthread_mutex_unlock(&a->mu);
    }
    free(q);
    free(labels);
    free(scores);
    if (rc) {
        if (rc == AIOS_ERR_DEADLINE && !*err)
            snprintf(err, errlen,
                     "retrieval not served within storage.retrieve_timeout_ms (%d ms): the query was not "
                     "embedded in time",
                     m->p.retrieve_timeout_ms);
        else if (rc != AIOS_ERR_DEADLINE && !*err) snprintf(err, errlen, "memory retrieval failed: %s", aios_strerror(rc));
        mem_items_free(items, *n);
        *n = 0;
        return rc;
    }
    *out = items;
    STAT_ADD(m, retrievals, 1);
    return AIOS_OK;
}

void mem_item_clear(mem_item *it) {
    free(it->content);
    free(it->metadata);
    it->content = it->metadata = NULL;
}

void mem_items_free(mem_item *items, int n) {
    for (int i = 0; items && i < n; i++) mem_item_clear(&items[i]);
    free(items);
}

typedef struct stat_acc {
    mem_stats *st;
} stat_acc;

static void agent_stats_cb(const char *key, void *val, void *ctx) {
    (void)key;
    mem_agent *a = val;
    mem_stats *st = ((stat_acc *)ctx)->st;
    pthread_mutex_lock(&a->mu);
    st->resident_bytes += a->resident;
    st->items += (long)a->blocks.len;
    st->resident_items += a->heap_len;
    st->pending += a->pending;
    pthread_mutex_unlock(&a->mu);
}

void mem_agent_usage(mem_manager *m, const char *agent, long *items, long *resident_bytes) {
    *items = *resident_bytes = 0;
    pthread_mutex_lock(&m->agents_mu);
    mem_agent *a = strmap_get(&m->agents, agent);
    if (a) {
        pthread_mutex_lock(&a->mu);
        *items = (long)a->blocks.len;
        *resident_bytes = a->resident;
        pthread_mutex_unlock(&a->mu);
    }
    pthread_mutex_unlock(&m->agents_mu);
    if (a) return;
    sqlite3_stmt *st = NULL; /* not loaded in this run: what the store holds */
    pthread_mutex_lock(&m->db_mu);
    if (sqlite3_prepare_v2(m->db, "SELECT COUNT(*) FROM memories WHERE agent=?", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_bind_text(st, 1, agent, -1, SQLITE_STATIC) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        *items = (long)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    pthread_mutex_unlock(&m->db_mu);
}

void mem_get_stats(mem_manager *m, mem_stats *out) {
    pthread_mutex_lock(&m->st_mu);
    *out = m->st;
    pthread_mutex_unlock(&m->st_mu);
    out->resident_bytes = out->items = out->resident_items = 0;
    out->pending = 0;
    stat_acc acc = {out};
    pthread_mutex_lock(&m->agents_mu);
    out->agents = (int)m->agents.len;
    strmap_foreach(&m->agents, agent_stats_cb, &acc);
    pthread_mutex_unlock(&m->agents_mu);
}
