/*
 * ctx.h - the context manager's snapshot store (DESIGN.md §1): where the saved state of a
 * generation lives while it is not in the engine.
 *
 * A snapshot is an opaque byte blob (a sequence's KV state from llama_state_seq_get_data).
 * The store keeps snapshots in host memory up to `ram_budget` bytes; beyond it the oldest
 * ones spill to files under `dir` (up to `disk_budget` bytes) and are read back
 * transparently. When both budgets are full a put is refused (AIOS_ERR_NOMEM) and the
 * caller falls back (drop a cached snapshot, or resume from text).
 *
 * Threads: the engine puts and reads; any thread may free a snapshot (a cancelled request
 * is freed by whoever drops its last reference). Every snapshot holds a reference on its
 * store, so the store outlives the requests that carry snapshots.
 */
#ifndef AIOS_CTX_H
#define AIOS_CTX_H

#include <stddef.h>
#include "../kernel/kernel.h"

typedef struct ctx_store ctx_store;
typedef struct ctx_snap ctx_snap;

typedef struct ctx_store_params {
    const char *dir;    /* spill files go to dir/<pid>/ (removed at the end; those of dead processes at start) */
    size_t ram_budget;  /* bytes of snapshots kept in memory */
    size_t disk_budget; /* bytes of spilled snapshots */
} ctx_store_params;

ctx_store_params ctx_store_default_params(void);
ctx_store *ctx_store_new(const ctx_store_params *p, char *err, size_t errlen);
/* Drops the creator's reference; the store goes when its last snapshot is freed. */
void ctx_store_release(ctx_store *st);

/* A buffer of at least n bytes for a snapshot (*cap gets its size): a recycled one when the
 * store has one, so a context switch does not pay for fresh pages; NULL on OOM. */
void *ctx_buf_alloc(ctx_store *st, size_t n, size_t *cap);
/* Gives a buffer from ctx_buf_alloc back (kept for reuse within the RAM budget, or freed). */
void ctx_buf_free(ctx_store *st, void *buf, size_t cap);

/* Stores `data` (from ctx_buf_alloc, n bytes used of cap; ownership passes to the store on
 * success, stays with the caller on failure). AIOS_ERR_NOMEM when neither budget has room. */
int ctx_snap_put(ctx_store *st, void *data, size_t n, size_t cap, ctx_snap **out);
/* The snapshot's bytes: *data points into the store (RAM) or into *to_free (read back from
 * disk; the caller frees it). */
int ctx_snap_read(ctx_snap *sn, const void **data, size_t *n, void **to_free);
size_t ctx_snap_size(const ctx_snap *sn);
void ctx_snap_free(ctx_snap *sn); /* accepts NULL */

typedef struct ctx_store_stats {
    size_t ram_bytes, disk_bytes, ram_count, disk_count;
    size_t ram_budget; /* the configured budget (what one transient buffer may take at most) */
    unsigned long long puts, put_bytes, refused, spills, disk_reads;
} ctx_store_stats;
void ctx_store_get_stats(ctx_store *st, ctx_store_stats *out);

#endif
