/*
 * memory.h - the memory manager (DESIGN.md §1): each agent's short-term memory, with a
 * per-agent byte limit, LRU-K eviction and semantic retrieval.
 *
 * Every block is written through to SQLite (memory.db under the data dir) when it is
 * added or changed, so an acknowledged add survives a kill -9; RAM holds each agent's
 * resident blocks up to its limit. Over the limit, LRU-K (memory.eviction_k) evicts the
 * block whose K-th most recent access is oldest (blocks with fewer than K accesses first,
 * least recently used among them); an evicted block's text leaves RAM and is paged back
 * in from the store on its next access. Retrieval ranks by cosine similarity of pooled
 * embeddings (the embedder) in a per-agent vector index (vector.h); blocks are embedded
 * asynchronously after the add is acknowledged, and a retrieval first waits for the
 * agent's own pending embeddings, so it always sees every add acknowledged before it.
 *
 * Isolation: an agent only ever reaches its own blocks; an id of another agent's block is
 * "not found". Thread-safe: per-agent locks, one lock for the database connection.
 */
#ifndef AIOS_MEMORY_H
#define AIOS_MEMORY_H

#include "../kernel/kernel.h"
#include "../llm/llm.h"
#include "../vector/vector.h"

#define MEM_ID_MAX 24
#define MEM_K_MAX 8

typedef struct mem_manager mem_manager;

typedef struct mem_params {
    const char *db_path;                            /* SQLite file (created) */
    bool sync_full;                                 /* fsync at each commit (power loss), not only process death */
    long limit_bytes;                               /* resident bytes per agent (content + metadata) */
    long (*limit_for)(void *ud, const char *agent); /* per-agent override (< 0: none); may be NULL */
    void *limit_ud;
    int eviction_k;          /* K of LRU-K, 1..MEM_K_MAX */
    long max_item_bytes;     /* content + metadata of one block */
    long max_items;          /* blocks per agent, resident or not */
    int max_agents;          /* agents with memory */
    int max_k;               /* largest k of a retrieval */
    llm_embedder *embedder;  /* borrowed, must outlive the manager's use; NULL = no retrieval */
    vec_index_params index;  /* dim is taken from the embedder */
    int retrieve_timeout_ms; /* a retrieval that cannot be served in this time answers AIOS_ERR_TIMEOUT */
} mem_params;

typedef struct mem_item {
    char id[MEM_ID_MAX];
    char *content, *metadata; /* owned (malloc); metadata is JSON object text */
    double created, updated;  /* wall-clock seconds */
    float score;              /* retrieval only: cosine similarity */
} mem_item;

typedef struct mem_stats {
    unsigned long long adds, gets, updates, removes, retrievals;
    unsigned long long hits, page_ins, evictions, embedded, embed_failures;
    long resident_bytes, items, resident_items;
    int agents, pending;
} mem_stats;

mem_params mem_default_params(void);
mem_manager *mem_open(const mem_params *p, char *err, size_t errlen);
/* Accepts NULL. Free the embedder first: its queued callbacks still reach the manager. */
void mem_close(mem_manager *m);

/* Each returns AIOS_OK or an error code with err saying why (the field, the limit). */
int mem_add(mem_manager *m, const char *agent, const char *content, const char *metadata, char id[MEM_ID_MAX], char *err,
            size_t errlen);
int mem_get(mem_manager *m, const char *agent, const char *id, mem_item *out, char *err, size_t errlen);
/* content and/or metadata may be NULL (kept). */
int mem_update(mem_manager *m, const char *agent, const char *id, const char *content, const char *metadata, char *err,
               size_t errlen);
int mem_remove(mem_manager *m, const char *agent, const char *id, char *err, size_t errlen);
/* Deletes every block of agent (store, RAM and index): a new identity of a revoked name
 * starts empty. */
int mem_purge(mem_manager *m, const char *agent);
/* Up to k blocks most similar to query, best first; *out (n items) is the caller's to free
 * with mem_items_free. exact: full scan instead of the HNSW graph (the reference). */
int mem_retrieve(mem_manager *m, const char *agent, const char *query, int k, bool exact, mem_item **out, int *n, char *err,
                 size_t errlen);
void mem_item_clear(mem_item *it);
void mem_items_free(mem_item *items, int n);
void mem_get_stats(mem_manager *m, mem_stats *out);
/* agent's blocks (in the store) and the bytes of them resident now (0 when none is loaded). */
void mem_agent_usage(mem_manager *m, const char *agent, long *items, long *resident_bytes);

#endif
