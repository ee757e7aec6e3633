/*
 * llamacpp_ctx.c - the context manager of the embedded llama.cpp core: how a generation
 * enters the engine, leaves it when preempted, and what stays behind when it ends.
 *
 *  - Start: a preempted generation comes back from its KV snapshot
 *    (llama_state_seq_set_data) and continues from the exact token; a new one (or one
 *    resumed from text) first takes the longest cached prefix of its feed: from a resident
 *    entry by sharing its cells (llama_memory_seq_cp), from a snapshot entry by restoring
 *    it, and prefills only the rest.
 *  - Preempt: the KV of the sequence is saved (llama_state_seq_get_data) into the snapshot
 *    store (RAM, spilling to disk) and its cells freed; in text mode, or when the store is
 *    full, only its tokens are kept and it resumes by prefilling prompt + partial output.
 *  - Release: a finished conversation stays resident as a cache entry, so the agent's next
 *    turn (and any request with the same prefix) prefills only new tokens. Under pressure,
 *    least recently used unpinned entries are evicted: resident -> snapshot (RAM, then
 *    disk) -> dropped.
 *  - The attention view: llama.cpp attends over every cell up to the highest in use, so an
 *    entry idle for cold_ms is cooled (a snapshot of its own cells; its shared prefix stays
 *    with its parent), and the cache is repacked (saved and restored whole, in order) when
 *    holes make the view much larger than the cells held; in deterministic mode at every
 *    hole, so each sequence's cells stay in position order.
 * The sharing tree and the KV accounting are described in llamacpp_internal.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "llamacpp_internal.h"

static llama_memory_t mem(lc_engine *e) { return llama_get_memory(e->ctx); }

int lc_ctx_init(lc_engine *e) {
    e->n_entries = e->cp.cache_entries + e->cp.snapshot_entries;
    e->entries = calloc((size_t)(e->n_entries ? e->n_entries : 1), sizeof *e->entries);
    e->parked = calloc((size_t)(e->cp.cache_entries ? e->cp.cache_entries : 1), sizeof *e->parked);
    e->seq_busy = calloc((size_t)(e->cp.cache_entries ? e->cp.cache_entries : 1), sizeof *e->seq_busy);
    e->agent_cells = calloc((size_t)(e->max_active + e->cp.cache_entries), sizeof *e->agent_cells);
    for (int i = 0; i < e->max_active && e->seqs; i++) e->seqs[i].parent = -1;
    return e->entries && e->seq_busy && e->parked && e->agent_cells ? AIOS_OK : AIOS_ERR_NOMEM;
}

void lc_ctx_free(lc_engine *e) {
    for (int i = 0; e->entries && i < e->n_entries; i++) {
        free(e->entries[i].tokens);
        ctx_snap_free(e->entries[i].snap);
    }
    for (int i = 0; e->parked && i < e->n_parked; i++) syscall_unref(e->parked[i]); /* cells die with the context */
    free(e->parked);
    free(e->entries);
    free(e->seq_busy);
    free(e->agent_cells);
    e->agent_cells = NULL;
    e->n_agent_cells = 0;
    e->parked = NULL;
    e->entries = NULL;
    e->seq_busy = NULL;
}

/* ---------- stats ---------- */

/* Adds cells to agent's row of the published per-agent gauges (st_mu held). */
static void agent_cells_add(lc_engine *e, const char *agent, int cells) {
    int i = 0;
    while (i < e->n_agent_cells && strcmp(e->agent_cells[i].agent, agent)) i++;
    if (i == e->n_agent_cells) { /* (rows: one per running or parked generation at most) */
        snprintf(e->agent_cells[i].agent, sizeof e->agent_cells[i].agent, "%s", agent);
        e->agent_cells[i].cells = 0;
        e->n_agent_cells++;
    }
    e->agent_cells[i].cells += cells;
}

int lc_agent_kv(void *impl, const char *agent) {
    lc_engine *e = impl;
    int cells = 0;
    pthread_mutex_lock(&e->st_mu);
    for (int i = 0; i < e->n_agent_cells; i++)
        if (!strcmp(e->agent_cells[i].agent, agent)) cells = e->agent_cells[i].cells;
    pthread_mutex_unlock(&e->st_mu);
    return cells;
}

void lc_publish_gauges_locked(lc_engine *e) {
    int resident = 0, snaps = 0, cached = 0, running = 0;
    for (int i = 0; i < e->n_entries; i++) {
        const lc_entry *x = &e->entries[i];
        if (!x->used) continue;
        if (x->seq >= 0) resident++, cached += x->charge;
        else snaps++;
    }
    e->n_agent_cells = 0;
    for (int i = 0; i < e->max_active; i++)
        if (e->seqs[i].used) {
            running += e->seqs[i].charge;
            agent_cells_add(e, e->seqs[i].sc->agent, e->seqs[i].charge);
        }
    for (int i = 0; i < e->n_parked; i++) {
        int c = ((llm_request *)e->parked[i]->args)->park_charge;
        running += c;
        agent_cells_add(e, e->parked[i]->agent, c);
    }
    if (cached + running != e->kv_used && !e->audit_failed) { /* an accounting bug; say it once */
        log_error("context: KV accounting drift: %d cells counted, %d held", e->kv_used, cached + running);
        e->audit_failed = true;
    }
    e->st.active = e->n_active;
    e->st.kv_reserved = e->kv_reserved;
    e->st.kv_used = e->kv_used;
    e->st.kv_cached = cached;
    e->st.cache_resident = resident;
    e->st.parked = e->n_parked;
    e->st.cache_snapshots = snaps;
}

void lc_store_stats(lc_engine *e, llm_core_stats *o) {
    if (!e->cp.store) return;
    ctx_store_stats ss;
    ctx_store_get_stats(e->cp.store, &ss);
    o->store_ram_bytes = ss.ram_bytes;
    o->store_disk_bytes = ss.disk_bytes;
    o->store_spills = ss.spills;
    o->store_disk_reads = ss.disk_reads;
}

static void publish(lc_engine *e) {
    pthread_mutex_lock(&e->st_mu);
    lc_publish_gauges_locked(e);
    pthread_mutex_unlock(&e->st_mu);
}

/* ---------- snapshots ---------- */

static void snap_free(void *sn) { ctx_snap_free(sn); }

static void drop_entry(lc_engine *e, int i);
static int lru_snapshot_entry(lc_engine *e);

/* Saves the KV of llama sequence `seq` into the store; when the store is full, cached
 * conversation snapshots (least recently used first) make room. NULL if it cannot. */
static ctx_snap *snapshot_seq(lc_engine *e, int seq) {
    if (!e->cp.store) return NULL;
    double t0 = kern_now_mono();
    size_t size = llama_state_seq_get_size(e->ctx, seq), cap = 0;
    void *buf = size ? ctx_buf_alloc(e->cp.store, size, &cap) : NULL;
    size_t n = buf ? llama_state_seq_get_data(e->ctx, buf, size, seq) : 0;
    ctx_snap *sn = NULL;
    int rc = n ? ctx_snap_put(e->cp.store, buf, n, cap, &sn) : AIOS_ERR_NOMEM;
    for (int victim; rc == AIOS_ERR_NOMEM && n && (victim = lru_snapshot_entry(e)) >= 0;) {
        drop_entry(e, victim);
        rc = ctx_snap_put(e->cp.store, buf, n, cap, &sn);
    }
    pthread_mutex_lock(&e->st_mu);
    if (rc == AIOS_OK) {
        e->st.snapshots++;
        e->st.snapshot_bytes += n;
        e->st.snapshot_seconds += kern_now_mono() - t0;
    } else {
        e->st.snapshot_failures++;
    }
    pthread_mutex_unlock(&e->st_mu);
    if (rc != AIOS_OK) {
        if (buf) ctx_buf_free(e->cp.store, buf, cap);
        return NULL;
    }
    return sn;
}

static void compact(lc_engine *e, int skip);

/* Loads a snapshot into llama sequence `seq` (whatever it held is replaced). */
static int restore_seq(lc_engine *e, ctx_snap *sn, int seq) {
    if (e->cp.deterministic) compact(e, seq); /* no hole: the cells go above every other */
    double t0 = kern_now_mono();
    const void *data;
    void *to_free;
    size_t n;
    int rc = ctx_snap_read(sn, &data, &n, &to_free);
    if (rc == AIOS_OK && llama_state_seq_set_data(e->ctx, data, n, seq) != n) rc = AIOS_ERR_MODEL;
    free(to_free);
    if (rc != AIOS_OK) {
        llama_memory_seq_rm(mem(e), seq, -1, -1);
        log_warn("context: a snapshot could not be restored (%s); recomputing instead", aios_strerror(rc));
        return rc;
    }
    pthread_mutex_lock(&e->st_mu);
    e->st.restores++;
    e->st.restore_seconds += kern_now_mono() - t0;
    pthread_mutex_unlock(&e->st_mu);
    return AIOS_OK;
}

/* ---------- cache entries ---------- */

static void unpin(lc_engine *e, int i) {
    if (i >= 0) e->entries[i].pins--;
}

/* Frees a resident entry's cells and sequence id (it stays a record, or is dropped). */
static void entry_unload(lc_engine *e, lc_entry *x) {
    if (x->seq < 0) return;
    llama_memory_seq_rm(mem(e), x->seq, -1, -1);
    e->seq_busy[x->seq - e->max_active] = false;
    e->kv_used -= x->charge;
    unpin(e, x->parent);
    x->seq = -1;
    x->parent = -1;
    x->shared = 0;
    x->charge = 0;
}

static void drop_entry(lc_engine *e, int i) {
    lc_entry *x = &e->entries[i];
    if (x->seq < 0) unpin(e, x->parent); /* a cooled entry's pin */
    entry_unload(e, x);
    ctx_snap_free(x->snap);
    free(x->tokens);
    memset(x, 0, sizeof *x);
    x->seq = x->parent = -1;
}

static int lru_snapshot_entry(lc_engine *e) {
    int best = -1;
    for (int i = 0; i < e->n_entries; i++) {
        const lc_entry *x = &e->entries[i];
        if (x->used && x->seq < 0 && (best < 0 || x->last_use < e->entries[best].last_use)) best = i;
    }
    return best;
}

/* Marks the entries that must stay resident: the ancestors of running slots and of `keep`. */
static void mark_locked(lc_engine *e, bool *locked, int keep) {
    memset(locked, 0, (size_t)e->n_entries * sizeof *locked);
    for (int i = 0; i < e->max_active; i++)
        for (int p = e->seqs[i].used ? e->seqs[i].parent : -1; p >= 0 && !locked[p]; p = e->entries[p].parent) locked[p] = true;
    for (int p = keep; p >= 0 && !locked[p]; p = e->entries[p].parent) locked[p] = true;
}

/* The least recently used resident entry nothing depends on and not locked, or -1. */
static int lru_leaf(lc_engine *e, const bool *locked) {
    int best = -1;
    for (int i = 0; i < e->n_entries; i++) {
        const lc_entry *x = &e->entries[i];
        if (!x->used || x->seq < 0 || x->pins > 0 || locked[i]) continue;
        if (best < 0 || x->last_use < e->entries[best].last_use) best = i;
    }
    return best;
}

/* Evicts a resident entry: to a snapshot when there is a place for one, else dropped. */
static void evict_entry(lc_engine *e, int i) {
    lc_entry *x = &e->entries[i];
    ctx_snap *sn = !e->cp.text_mode && e->cp.snapshot_entries > 0 ? snapshot_seq(e, x->seq) : NULL;
    pthread_mutex_lock(&e->st_mu);
    e->st.cache_evictions++;
    if (!sn) e->st.cache_dropped++;
    pthread_mutex_unlock(&e->st_mu);
    if (!sn) {
        drop_entry(e, i);
        return;
    }
    entry_unload(e, x);
    x->snap = sn;
}

static void to_text_resume(llm_request *r);

static void park_free(lc_engine *e, int i);

/* A live generation whose KV could not be kept resumes from its tokens (counted). */
static void text_resume_counted(lc_engine *e, llm_request *r) {
    to_text_resume(r);
    pthread_mutex_lock(&e->st_mu);
    e->st.text_resumes++;
    pthread_mutex_unlock(&e->st_mu);
}

/* Frees parked generation i's cells and sequence id. A live one keeps its context as a
 * snapshot (or, failing that, as text); a finished one (cancelled while waiting) just goes. */
static void park_evict(lc_engine *e, int i) {
    syscall_t *sc = e->parked[i];
    llm_request *r = sc->args;
    if (!syscall_is_done(sc)) {
        ctx_snap *sn = snapshot_seq(e, r->park_seq);
        if (sn) {
            r->snap = sn;
            r->snap_free = snap_free;
        } else {
            text_resume_counted(e, r);
        }
    }
    park_free(e, i);
}

/* Parked generation i lets go of its cells, sequence id, pin and record. */
static void park_free(lc_engine *e, int i) {
    syscall_t *sc = e->parked[i];
    llm_request *r = sc->args;
    llama_memory_seq_rm(mem(e), r->park_seq, -1, -1);
    e->seq_busy[r->park_seq - e->max_active] = false;
    unpin(e, r->park_parent);
    e->kv_used -= r->park_charge;
    r->park_seq = -1;
    e->parked[i] = e->parked[--e->n_parked];
    syscall_unref(sc);
}

void lc_reap_parked(lc_engine *e) {
    bool gone = false;
    for (int i = e->n_parked - 1; i >= 0; i--)
        if (syscall_is_done(e->parked[i])) park_evict(e, i), gone = true;
    if (gone) publish(e);
}

/* The least recently used cooled entry not locked, or -1: dropping it unpins its parent. */
static int lru_cooled(lc_engine *e, const bool *locked) {
    int best = -1;
    for (int i = 0; i < e->n_entries; i++) {
        const lc_entry *x = &e->entries[i];
        if (!x->used || x->seq >= 0 || x->parent < 0 || locked[i]) continue;
        if (best < 0 || x->last_use < e->entries[best].last_use) best = i;
    }
    return best;
}

/* Frees one resident leaf (or, with take_parked, a parked generation); when every leaf is
 * locked or pinned only by cooled entries, drops the least recently used cooled entry so
 * its parent can go next. False when nothing can be freed. */
static bool free_one(lc_engine *e, int keep, bool take_parked) {
    bool locked[e->n_entries ? e->n_entries : 1];
    mark_locked(e, locked, keep);
    int v = lru_leaf(e, locked);
    if (v >= 0) evict_entry(e, v);
    else if (take_parked && e->n_parked) park_evict(e, 0);
    else if ((v = lru_cooled(e, locked)) >= 0) drop_entry(e, v);
    else return false;
    return true;
}

/* Frees cells until `need` fit: least recently used cache leaves first, then parked
 * generations (oldest first); false if it cannot. */
static bool make_room(lc_engine *e, int need, int keep) {
    while (need > e->kv_size - e->kv_used)
        if (!free_one(e, keep, true)) return false;
    return true;
}

/* Cells that evicting every unlocked resident entry and every parked generation would free. */
static int evictable_cells(lc_engine *e, int keep) {
    bool locked[e->n_entries ? e->n_entries : 1];
    mark_locked(e, locked, keep);
    int n = 0;
    for (int i = 0; i < e->n_entries; i++)
        if (e->entries[i].used && e->entries[i].seq >= 0 && !locked[i]) n += e->entries[i].charge;
    for (int i = 0; i < e->n_parked; i++) n += ((llm_request *)e->parked[i]->args)->park_charge;
    return n;
}

/* A free record (dropping the least recently used snapshot entry if all are taken), or -1. */
static int alloc_record(lc_engine *e) {
    for (int i = 0; i < e->n_entries; i++)
        if (!e->entries[i].used) return i;
    int v = lru_snapshot_entry(e);
    if (v >= 0) drop_entry(e, v);
    return v;
}

/* A free cache sequence id, evicting a cache leaf outside keep's chain if needed (or, with
 * take_parked, a parked generation), or -1. */
static int alloc_seq(lc_engine *e, int keep, bool take_parked) {
    do {
        for (int i = 0; i < e->cp.cache_entries; i++)
            if (!e->seq_busy[i]) return e->max_active + i;
    } while (free_one(e, keep, take_parked));
    return -1;
}

static int common_prefix(const int32_t *a, int na, const llm_request *r, int nb) {
    int n = na < nb ? na : nb, i = 0;
    while (i < n && a[i] == llm_feed_token(r, i)) i++;
    return i;
}

/* The cache entry sharing the longest prefix with r's feed (at most n_feed - 1 tokens: the
 * last one is fed again for its logits), preferring resident and then shorter entries
 * (the root of a shared prefix); -1 if none reaches prefix_min_tokens. */
static int entry_match(lc_engine *e, const llm_request *r, int *len) {
    int best = -1, best_len = 0;
    for (int i = 0; i < e->n_entries; i++) {
        const lc_entry *x = &e->entries[i];
        if (!x->used) continue;
        int l = common_prefix(x->tokens, x->n, r, r->n_feed - 1);
        bool better = l > best_len;
        if (!better && l == best_len && best >= 0 && l > 0) {
            const lc_entry *b = &e->entries[best];
            better = (x->seq >= 0 && b->seq < 0) || ((x->seq >= 0) == (b->seq >= 0) && x->n < b->n);
        }
        if (better) best = i, best_len = l;
    }
    if (best_len < e->cp.prefix_min_tokens) return -1;
    *len = best_len;
    return best;
}

/* Cells r needs to start now, given the entry it would reuse. */
static int start_need(lc_engine *e, const llm_request *r, int m, int len) {
    int reserve = r->n_tokens + r->samp.max_tokens;
    if (r->snap || m < 0) return reserve;
    const lc_entry *x = &e->entries[m];
    if (x->seq >= 0) return reserve - len;
    int shared = x->parent >= 0 ? x->shared : 0;       /* a cooled entry's prefix stays with its parent */
    return (reserve > x->n ? reserve : x->n) - shared; /* the whole snapshot comes in before it is trimmed */
}

bool lc_fits(syscall_t *sc, void *ctx) {
    lc_engine *e = ctx;
    const llm_request *r = sc->args;
    if (r->park_seq >= 0) return true; /* its cells are already held */
    int len = 0, m = r->snap ? -1 : entry_match(e, r, &len);
    int need = start_need(e, r, m, len);
    return need <= e->kv_size - e->kv_used || need <= e->kv_size - e->kv_used + evictable_cells(e, m);
}

/* Splits entry m at len: a new resident entry holds its first len tokens and becomes its
 * parent, so later requests share exactly the common prefix. Returns the new entry or -1. */
static int split_entry(lc_engine *e, int m, int len) {
    if (e->entries[m].shared > len) return -1;
    int seq = alloc_seq(e, m, true);
    int k = seq >= 0 ? alloc_record(e) : -1;
    if (k < 0) return -1;
    lc_entry *x = &e->entries[m], *p = &e->entries[k];
    int32_t *tokens = malloc((size_t)len * sizeof *tokens);
    if (!tokens) return -1;
    memcpy(tokens, x->tokens, (size_t)len * sizeof *tokens);
    llama_memory_seq_cp(mem(e), x->seq, seq, 0, len);
    e->seq_busy[seq - e->max_active] = true;
    *p = (lc_entry){.used = true,
                    .seq = seq,
                    .tokens = tokens,
                    .n = len,
                    .parent = x->parent,
                    .shared = x->shared,
                    .pins = 1,
                    .charge = len - x->shared,
                    .last_use = x->last_use};
    int old = x->charge;
    x->parent = k;
    x->shared = len;
    x->charge = x->n - len;
    e->kv_used += p->charge + x->charge - old;
    return k;
}

/* Prefills the first len tokens of r's feed into sequence 0 of the verifier context. */
static bool verifier_prefill(lc_engine *e, const llm_request *r, int len) {
    struct llama_batch *bt = &e->batch;
    for (int done = 0; done < len;) {
        bt->n_tokens = 0;
        for (; done < len && bt->n_tokens < e->batch_size; done++) {
            int i = bt->n_tokens++;
            bt->token[i] = llm_feed_token(r, done);
            bt->pos[i] = done;
            bt->n_seq_id[i] = 1;
            bt->seq_id[i][0] = 0;
            bt->logits[i] = false;
        }
        if (e->cp.deterministic) lc_batch_pad(bt, 1, false); /* in the engine's shape (its K/V is compared) */
        int rc = llama_decode(e->vctx, *bt);
        if (e->cp.deterministic) llama_memory_seq_rm(llama_get_memory(e->vctx), 1, -1, -1);
        if (rc != 0) return false;
    }
    return true;
}

/* Sequence 0 of the verifier context as a state blob (malloc'd), or NULL. */
static uint8_t *verifier_state(lc_engine *e, size_t *n) {
    *n = llama_state_seq_get_size(e->vctx, 0);
    uint8_t *b = *n ? malloc(*n) : NULL;
    if (b && llama_state_seq_get_data(e->vctx, b, *n, 0) != *n) {
        free(b);
        b = NULL;
    }
    return b;
}

/* Self-check (context.verify_prefix): the len cells slot s just took from the cache must be
 * byte-identical to a solo prefill of the same tokens in a fresh context (a separate small
 * llama context, so the solo run starts at cell 0 like a first request does). Both states
 * are compared as sequence 0 of that context, so the sequence ids in them agree. */
static void verify_prefix(lc_engine *e, lc_seq *s, int len) {
    size_t na = llama_state_seq_get_size(e->ctx, s->id), nb = 0, nc = 0;
    uint8_t *a = na ? malloc(na) : NULL, *b = NULL, *c = NULL;
    llama_memory_t vm = llama_get_memory(e->vctx);
    bool ok = a && llama_state_seq_get_data(e->ctx, a, na, s->id) == na;
    llama_memory_clear(vm, true);
    if (ok && verifier_prefill(e, s->req, len)) b = verifier_state(e, &nb);
    llama_memory_clear(vm, true);
    if (b && llama_state_seq_set_data(e->vctx, a, na, 0) == na) c = verifier_state(e, &nc);
    llama_memory_clear(vm, true);
    bool same = b && c && nb == nc && memcmp(b, c, nb) == 0;
    if (!same) log_warn("context: reused prefix of %d tokens differs from a solo prefill (%zu vs %zu bytes)", len, nc, nb);
    free(a);
    free(b);
    free(c);
    pthread_mutex_lock(&e->st_mu);
    if (same) e->st.verify_ok++;
    else e->st.verify_mismatch++;
    pthread_mutex_unlock(&e->st_mu);
}

/* Takes len cells of resident entry m into slot s: consumes the entry when s covers it
 * (the agent's next turn), else shares its (split-off) prefix. */
static void reuse_resident(lc_engine *e, lc_seq *s, int m, int len) {
    lc_entry *x = &e->entries[m];
    x->last_use = kern_now_mono();
    if (x->pins == 0 && len >= x->n - e->cp.prefix_min_tokens) {
        llama_memory_seq_cp(mem(e), x->seq, s->id, 0, len);
        s->parent = x->parent; /* x's pin on its parent passes to s */
        s->shared = x->shared < len ? x->shared : len;
        x->parent = -1;
        drop_entry(e, m);
        if (e->vctx) verify_prefix(e, s, len);
        return;
    }
    int k = len < x->n - e->cp.prefix_min_tokens ? split_entry(e, m, len) : -1;
    int src = k >= 0 ? k : m;
    llama_memory_seq_cp(mem(e), e->entries[src].seq, s->id, 0, len);
    e->entries[src].pins++;
    s->parent = src;
    s->shared = len;
    if (e->vctx) verify_prefix(e, s, len);
}

/* Takes the first len tokens of snapshot entry m into slot s (consumed when s covers it).
 * A cooled entry's own cells come from its snapshot and its prefix from its parent, which
 * s then shares (and pins) like a resident prefix. */
static int reuse_snapshot(lc_engine *e, lc_seq *s, int m, int len) {
    lc_entry *x = &e->entries[m];
    x->last_use = kern_now_mono();
    if (x->parent >= 0 && len <= x->shared) { /* the parent holds all of it */
        reuse_resident(e, s, x->parent, len);
        return len;
    }
    if (restore_seq(e, x->snap, s->id)) {
        drop_entry(e, m);
        return 0;
    }
    if (x->parent >= 0) {
        llama_memory_seq_cp(mem(e), e->entries[x->parent].seq, s->id, 0, x->shared);
        e->entries[x->parent].pins++;
        s->parent = x->parent;
        s->shared = x->shared;
    }
    llama_memory_seq_rm(mem(e), s->id, len, -1);
    if (len >= x->n - e->cp.prefix_min_tokens) drop_entry(e, m);
    if (e->vctx) verify_prefix(e, s, len);
    return len;
}

/* A generation that lost its snapshot (or runs in text mode) resumes from its tokens. */
static void to_text_resume(llm_request *r) {
    r->n_feed = r->n_tokens + r->n_gen;
    r->n_fed = r->n_past = 0;
    r->decoding = false;
}

static void start_from_feed(lc_engine *e, lc_seq *s, int m, int len) {
    llm_request *r = s->req;
    r->n_fed = r->n_past = 0;
    if (m < 0) return;
    int got = e->entries[m].seq >= 0 ? (reuse_resident(e, s, m, len), len) : reuse_snapshot(e, s, m, len);
    r->n_fed = r->n_past = got;
    if (!r->n_gen) r->n_cached = got;
    pthread_mutex_lock(&e->st_mu);
    e->st.prefill_reused += (unsigned long long)got;
    if (got) e->st.cache_hits++;
    pthread_mutex_unlock(&e->st_mu);
}

/* Moves parked r's cells back into slot s (no copy) with its sharing and accounting. */
static void unpark(lc_engine *e, lc_seq *s, llm_request *r) {
    llama_memory_seq_cp(mem(e), r->park_seq, s->id, -1, -1);
    llama_memory_seq_rm(mem(e), r->park_seq, -1, -1);
    e->seq_busy[r->park_seq - e->max_active] = false;
    s->parent = r->park_parent; /* the pin passes back to the slot */
    s->shared = r->park_shared;
    e->kv_used -= r->park_charge; /* counted again as the slot's charge */
    r->park_seq = -1;
    for (int i = 0; i < e->n_parked; i++) {
        if (e->parked[i]->args != r) continue;
        syscall_unref(e->parked[i]); /* the slot holds the scheduler's reference */
        e->parked[i] = e->parked[--e->n_parked];
        break;
    }
}

void lc_start(lc_engine *e, lc_seq *s, syscall_t *sc) {
    llm_request *r = sc->args;
    bool first = !r->snap && r->n_gen == 0 && r->n_fed == 0;
    s->used = true;
    s->sc = sc;
    s->req = r;
    s->reserve = r->n_tokens + r->samp.max_tokens;
    s->parent = -1;
    s->shared = 0;
    if (r->park_seq >= 0) {
        unpark(e, s, r);
    } else if (r->snap) {
        make_room(e, start_need(e, r, -1, 0), -1);
        int rc = restore_seq(e, r->snap, s->id);
        r->snap_free(r->snap);
        r->snap = NULL;
        if (rc) to_text_resume(r);
    }
    if (!r->decoding) { /* new, or resuming from text (only decoding generations are preempted) */
        int len = 0, m = entry_match(e, r, &len);
        make_room(e, start_need(e, r, m, len), m);
        start_from_feed(e, s, m, len);
    }
    s->charge = s->reserve - s->shared;
    e->kv_used += s->charge;
    e->kv_reserved += s->reserve;
    e->n_active++;
    lc_cells_note(e, 0); /* a restore may have taken cells */
    pthread_mutex_lock(&e->st_mu);
    if (first) e->st.prompt_tokens += (unsigned long long)r->n_tokens;
    lc_publish_gauges_locked(e);
    pthread_mutex_unlock(&e->st_mu);
    syscall_round_begin(sc);
}

/* Frees slot s's accounting (its cells are already gone or handed over). */
static void slot_clear(lc_engine *e, lc_seq *s) {
    e->kv_used -= s->charge;
    e->kv_reserved -= s->reserve;
    e->n_active--;
    s->used = false;
    s->sc = NULL;
    s->req = NULL;
    s->parent = -1;
    s->shared = s->charge = 0;
}

/* Leaves s's KV in place under a spare cache sequence id; false if there is none. */
static bool park(lc_engine *e, lc_seq *s) {
    if (!e->cp.park || e->cp.text_mode || e->n_parked >= e->cp.cache_entries) return false;
    int seq = alloc_seq(e, -1, false);
    if (seq < 0) return false;
    llm_request *r = s->req;
    llama_memory_seq_cp(mem(e), s->id, seq, -1, -1);
    llama_memory_seq_rm(mem(e), s->id, -1, -1);
    e->seq_busy[seq - e->max_active] = true;
    r->park_seq = seq;
    r->park_parent = s->parent; /* the slot's pin on its parent stays with the parked cells */
    r->park_shared = s->shared;
    r->park_charge = s->charge;
    e->kv_used += s->charge; /* slot_clear takes the slot's charge off */
    e->parked[e->n_parked++] = syscall_ref(s->sc);
    return true;
}

void lc_preempt(lc_engine *e, lc_seq *s) {
    llm_request *r = s->req;
    syscall_t *sc = s->sc;
    bool parked = park(e, s);
    ctx_snap *sn = parked || e->cp.text_mode ? NULL : snapshot_seq(e, s->id);
    if (sn) {
        r->snap = sn;
        r->snap_free = snap_free;
    } else if (!parked) {
        to_text_resume(r);
    }
    if (!parked) {
        llama_memory_seq_rm(mem(e), s->id, -1, -1);
        unpin(e, s->parent);
    }
    slot_clear(e, s);
    pthread_mutex_lock(&e->st_mu);
    e->st.preemptions++;
    if (parked) e->st.parks++;
    else if (!sn) e->st.text_resumes++;
    lc_publish_gauges_locked(e);
    pthread_mutex_unlock(&e->st_mu);
    syscall_round_end(sc);
    sched_requeue(e->sched, sc); /* our reference passes to the run queue */
}

/* True if some entry already holds exactly these n tokens of r's feed. */
static bool already_cached(lc_engine *e, const llm_request *r, int n) {
    for (int i = 0; i < e->n_entries; i++)
        if (e->entries[i].used && e->entries[i].n == n && common_prefix(e->entries[i].tokens, n, r, n) == n) return true;
    return false;
}

/* Turns slot s's KV into a cache entry; false if there is no place (the caller drops it). */
static bool retain(lc_engine *e, lc_seq *s) {
    llm_request *r = s->req;
    int n = r->n_past;
    if (e->cp.cache_entries == 0 || n < e->cp.prefix_min_tokens || already_cached(e, r, n)) return false;
    int seq = alloc_seq(e, -1, true);
    int k = seq >= 0 ? alloc_record(e) : -1;
    int32_t *tokens = k >= 0 ? malloc((size_t)n * sizeof *tokens) : NULL;
    if (!tokens) return false;
    for (int i = 0; i < n; i++) tokens[i] = llm_feed_token(r, i);
    llama_memory_seq_cp(mem(e), s->id, seq, -1, -1);
    llama_memory_seq_rm(mem(e), s->id, -1, -1);
    e->seq_busy[seq - e->max_active] = true;
    e->entries[k] = (lc_entry){.used = true,
                               .seq = seq,
                               .tokens = tokens,
                               .n = n,
                               .parent = s->parent,
                               .shared = s->shared,
                               .charge = n - s->shared,
                               .last_use = kern_now_mono()};
    e->kv_used += e->entries[k].charge;
    return true;
}

void lc_release(lc_engine *e, lc_seq *s, bool keep) {
    if (!keep || !retain(e, s)) {
        llama_memory_seq_rm(mem(e), s->id, -1, -1);
        unpin(e, s->parent);
    }
    slot_clear(e, s);
    publish(e);
}

/* ---------- cooling and compaction ---------- */

/* Moves resident entry i (a leaf) out of the KV cache into a snapshot of its own cells; the
 * prefix it shares stays with its parent, which it keeps pinned. False (and nothing changed)
 * when the store refuses the snapshot. */
static bool entry_cool(lc_engine *e, int i) {
    lc_entry *x = &e->entries[i];
    int parent_seq = x->parent >= 0 ? e->entries[x->parent].seq : -1;
    if (parent_seq >= 0) llama_memory_seq_rm(mem(e), x->seq, 0, x->shared); /* the parent keeps those cells */
    ctx_snap *sn = snapshot_seq(e, x->seq);
    if (!sn) {
        if (parent_seq >= 0) llama_memory_seq_cp(mem(e), parent_seq, x->seq, 0, x->shared);
        return false;
    }
    llama_memory_seq_rm(mem(e), x->seq, -1, -1);
    e->seq_busy[x->seq - e->max_active] = false;
    e->kv_used -= x->charge;
    x->seq = -1;
    x->charge = 0;
    x->snap = sn;
    if (parent_seq < 0) { /* a whole snapshot: it needs no parent */
        unpin(e, x->parent);
        x->parent = -1;
        x->shared = 0;
    }
    pthread_mutex_lock(&e->st_mu);
    e->st.cache_cooled++;
    pthread_mutex_unlock(&e->st_mu);
    return true;
}

void lc_cool(lc_engine *e) {
    if (e->cp.cold_ms <= 0 || e->cp.text_mode || e->cp.snapshot_entries == 0 || !e->cp.store) return;
    double now = kern_now_mono(), cold = e->cp.cold_ms / 1000.0;
    bool any = false;
    for (int i = 0; i < e->n_entries; i++) {
        const lc_entry *x = &e->entries[i];
        if (x->used && x->seq >= 0 && x->pins == 0 && now - x->last_use >= cold) any |= entry_cool(e, i);
    }
    if (any) publish(e);
}

/* KV cells written now: the running slots' and parked generations' own positions and the
 * resident entries' cells (cells shared along the tree counted once); slot `skip` (one being
 * restored, whose cells are not in yet) is left out. */
static int cells_held(lc_engine *e, int skip) {
    int n = 0;
    for (int i = 0; i < e->max_active; i++)
        if (e->seqs[i].used && i != skip) n += e->seqs[i].req->n_past - e->seqs[i].shared;
    for (int i = 0; i < e->n_parked; i++) {
        const llm_request *r = e->parked[i]->args;
        n += r->n_past - r->park_shared;
    }
    for (int i = 0; i < e->n_entries; i++)
        if (e->entries[i].used && e->entries[i].seq >= 0) n += e->entries[i].charge;
    return n;
}

void lc_cells_note(lc_engine *e, double decode_s) {
    int n = cells_held(e, -1);
    if (n > e->cells_peak) e->cells_peak = n;
    e->decode_since_compact += decode_s;
}

/* Whether a repack is due: llama.cpp puts new cells into the lowest free ones, so the
 * attention view (every cell up to the highest in use, padded to 256) spans at most
 * cells_peak, the most cells held at once since the last repack, and the cache has no hole
 * when that equals the cells held. A repack pays when the gap is compact_min_cells, while
 * repacks stay under ~5% of decode time. Deterministic mode
 * closes every hole, so new cells always go above a sequence's others. */
static bool compact_due(lc_engine *e, int held) {
    int gap = e->cells_peak - held;
    if (e->cp.deterministic) return gap > 0;
    return e->cp.compact_min_cells > 0 && gap >= e->cp.compact_min_cells && e->decode_since_compact >= 20 * e->compact_cost;
}

/* The whole cache goes out (llama_state_seq_get_data with sequence -1) and back in:
 * llama.cpp restores it from cell 0 in the same order with every cell's sequences, so
 * sharing, positions and the order each sequence attends in stay as they were; only the
 * holes are gone. The buffer comes from the snapshot store, at most its RAM budget. */
static void compact(lc_engine *e, int skip) {
    int held = cells_held(e, skip);
    if (held > e->cells_peak) e->cells_peak = held;
    if (!compact_due(e, held)) return;
    double t0 = kern_now_mono();
    size_t size = llama_state_seq_get_size(e->ctx, -1), cap = 0, budget = (size_t)1 << 30;
    if (e->cp.store) {
        ctx_store_stats ss;
        ctx_store_get_stats(e->cp.store, &ss);
        budget = ss.ram_budget;
    }
    void *buf = NULL;
    if (size && (size <= budget || e->cp.deterministic)) /* deterministic mode needs it whatever it costs */
        buf = e->cp.store ? ctx_buf_alloc(e->cp.store, size, &cap) : malloc(size);
    bool saved = buf && llama_state_seq_get_data(e->ctx, buf, size, -1) == size;
    bool ok = !saved || llama_state_seq_set_data(e->ctx, buf, size, -1) == size;
    if (buf && e->cp.store) ctx_buf_free(e->cp.store, buf, cap);
    else free(buf);
    e->cells_peak = held; /* also when skipped: wait for the view to grow again */
    e->decode_since_compact = 0;
    e->compact_cost = kern_now_mono() - t0;
    if (!saved) {
        if (e->cp.deterministic)
            log_warn("context: no memory for a KV repack (%zu bytes); outputs may differ from solo runs", size);
        return;
    }
    pthread_mutex_lock(&e->st_mu);
    e->st.compactions++;
    e->st.compacted_cells += (unsigned long long)held;
    e->st.compact_seconds += e->compact_cost;
    pthread_mutex_unlock(&e->st_mu);
    if (!ok) {
        log_error("context: the KV cache could not be restored after compaction; its sequences are lost");
        e->kv_lost = true;
    }
}

void lc_compact(lc_engine *e) { compact(e, -1); }

void lc_kv_lost(lc_engine *e) {
    while (e->n_parked) {
        if (!syscall_is_done(e->parked[0])) text_resume_counted(e, e->parked[0]->args);
        park_free(e, 0);
    }
    for (int i = 0; i < e->n_entries; i++) /* cooled entries need their parents' cells */
        if (e->entries[i].used && e->entries[i].seq < 0 && e->entries[i].parent >= 0) drop_entry(e, i);
    for (int i = 0; i < e->n_entries; i++) /* all go: no pin needs undoing */
        if (e->entries[i].used) e->entries[i].parent = -1;
    for (int i = 0; i < e->n_entries; i++)
        if (e->entries[i].used && e->entries[i].seq >= 0) drop_entry(e, i);
    llama_memory_clear(mem(e), true);
    e->cells_peak = 0;
    e->kv_lost = false;
    publish(e);
}
