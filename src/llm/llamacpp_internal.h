/*
 * llamacpp_internal.h - what the two halves of the embedded llama.cpp core share: the
 * engine (llamacpp.c: loading, prepare, the decode loop) and its context manager
 * (llamacpp_ctx.c: starting, preempting and finishing sequences, snapshots, and the cache
 * of resident prefixes and conversations that later requests reuse).
 *
 * Sequence ids: [0, max_active) are the engine's slots (running generations);
 * [max_active, max_active + cache_entries) hold resident cache entries.
 *
 * Preemption parks a generation when it can: its cells move to a free cache sequence id
 * (no copy) and come back when it resumes; only under KV pressure is a parked generation
 * snapshotted out (then RAM, then disk), like a cached conversation.
 *
 * KV accounting (cells): a running slot is charged its reserve (prompt + max_tokens) less
 * the cells it shares with the cache entry it copied its prefix from; a resident entry is
 * charged its length less what it shares with its parent entry. Sharing is a tree: an
 * entry or slot pins its parent (`pins`), and only unpinned resident entries (leaves) can
 * be evicted, so shared cells are counted exactly once and eviction frees what it counts.
 *
 * A cooled entry (context.cold_ms) is a snapshot of its own cells only (positions shared..n)
 * that keeps its parent resident and pinned; restoring it copies the shared prefix from the
 * parent again. An evicted entry's snapshot holds all its cells and pins nothing.
 */
#ifndef AIOS_LLAMACPP_INTERNAL_H
#define AIOS_LLAMACPP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <llama.h>
#include "llm_internal.h"

/* Deterministic mode (llm_context_params.deterministic): the rows of every ubatch. Between
 * 2 and 63, llama.cpp's CPU flash attention takes its per-row path for every row (1 row with
 * a view of 512+ cells splits the view across threads; 64+ rows take the tiled path), and a
 * fixed count gives every matmul one shape. */
#define LC_DET_ROWS 16

typedef struct lc_seq {
    bool used;
    int id;             /* llama seq_id == slot index */
    syscall_t *sc;      /* our reference, from sched_next */
    llm_request *req;   /* sc->args: the generation's context (progress, snapshot) */
    int reserve;        /* positions it may occupy: prompt + max_tokens */
    int parent, shared; /* cache entry whose first `shared` cells it shares (pinned), -1 = none */
    int charge;         /* cells accounted to it */
    int bidx;           /* logits index in the current batch, -1 = none */
    int n_in_batch;     /* tokens it has in the current batch */
} lc_seq;

typedef struct lc_entry {
    bool used;
    int seq;         /* llama seq id while resident, -1 = kept only as a snapshot */
    int32_t *tokens; /* the tokens whose KV it holds (positions 0..n-1) */
    int n;
    ctx_snap *snap;     /* when not resident */
    int parent, shared; /* resident parent entry and the cells shared with it (-1 = none); a
                           snapshot with a parent holds positions shared..n only (cooled) */
    int pins;           /* slots and entries sharing its cells */
    int charge;
    double last_use;
} lc_entry;

/* KV cells charged to one agent's running and parked generations (published gauges). */
typedef struct lc_agent_cells {
    char agent[AIOS_NAME_MAX];
    int cells;
} lc_agent_cells;

typedef struct lc_engine {
    aios_model_cfg cfg;
    char device[64]; /* where the model runs: "CPU" or a GPU's ggml name */
    llm_context_params cp;
    struct llama_model *model;
    struct llama_context *ctx;
    struct llama_context *vctx;
    struct ggml_threadpool *tp;
    /* the decode thread pool (ours: its poll level is set) */ /* the prefix self-check's fresh context (verify_prefix only) */
    const struct llama_vocab *vocab;
    char *tmpl;
    struct lc_tmpl *jinja; /* the Jinja template every chat is rendered with, or NULL (llama_chat_apply_template) */
    bool tools_native;     /* tool calls in the template's format (chat_template.h) */
    int n_ctx, kv_size, max_active, batch_size;
    int prefill_chunk; /* prompt tokens per step while sequences decode (cfg; 0: batch_size) */
    sched_t *sched;
    pthread_t thread;
    bool thread_started;
    atomic_bool stop;
    lc_seq *seqs;
    int n_active, kv_reserved, kv_used;
    syscall_t **parked; /* preempted generations whose KV stays in a cache sequence (our refs) */
    int n_parked;
    bool audit_failed; /* the KV accounting check fired (logged once) */
    lc_entry *entries; /* cache_entries + snapshot_entries records */
    int n_entries;
    bool *seq_busy; /* cache seq ids in use, indexed from max_active */
    struct llama_batch batch;
    struct llama_sampler *no_eog; /* logit bias banning end-of-generation tokens (ignore_eos) */
    llama_token_data *cur;        /* n_vocab candidates, the engine thread's sampling scratch */
    pthread_mutex_t st_mu;
    llm_core_stats st;
    lc_agent_cells *agent_cells; /* st_mu: per agent, at most max_active + cache_entries */
    int n_agent_cells;
    /* compaction (lc_compact): the most cells held since the cache was last packed, the
     * decode time since then, and what the last repack took */
    int cells_peak;
    double decode_since_compact, compact_cost;
    bool kv_lost; /* a repack failed: the cache is gone (the engine fails what runs) */
    int pad_seq;  /* deterministic mode: the sequence id of padding rows, else -1 */
} lc_engine;

/* ---- llamacpp_ctx.c (engine thread only, unless noted) ---- */
int lc_ctx_init(lc_engine *e);
void lc_ctx_free(lc_engine *e);
/* sched fits callback: could sc start now (evicting cache entries if needed)? */
bool lc_fits(syscall_t *sc, void *ctx);
/* Starts sc in free slot s: restores its snapshot, or reuses the best cached prefix. */
void lc_start(lc_engine *e, lc_seq *s, syscall_t *sc);
/* Saves s's context (snapshot, or text), frees its KV and hands it back to the scheduler. */
void lc_preempt(lc_engine *e, lc_seq *s);
/* Frees the cells of parked generations that finished while waiting (cancelled). */
void lc_reap_parked(lc_engine *e);
/* Releases s's KV when its generation ends: kept as a cache entry if `retain`. */
void lc_release(lc_engine *e, lc_seq *s, bool retain);
/* Deterministic mode: gives every row of b logits (when all_logits) and pads b to whole
 * ubatches of LC_DET_ROWS rows with tokens of pad_seq; the caller removes pad_seq's cells
 * after decoding. */
void lc_batch_pad(struct llama_batch *b, int pad_seq, bool all_logits);
/* Moves cached conversations idle for cold_ms out of the KV cache (snapshots of their own cells). */
void lc_cool(lc_engine *e);
/* After a decode step of decode_s seconds: notes the cells now held (see lc_compact). */
void lc_cells_note(lc_engine *e, double decode_s);
/* Repacks the KV cache when the attention view has grown well past the cells in use (in
 * deterministic mode: whenever it may have a hole). If the repack fails the cache is lost:
 * kv_lost is set and the engine fails what runs (lc_kv_lost). */
void lc_compact(lc_engine *e);
/* Drops every cached entry and parked generation's KV (parked ones resume from text), after
 * the cache was lost. */
void lc_kv_lost(lc_engine *e);
/* Copies the engine-owned gauges into the stats readers see; st_mu held. */
void lc_publish_gauges_locked(lc_engine *e);
/* The KV cells charged to agent's generations now (any thread). */
int lc_agent_kv(void *impl, const char *agent);
/* The snapshot store's gauges into o (any thread). */
void lc_store_stats(lc_engine *e, llm_core_stats *o);

/* ---- shared with the embedder (embed.c) ---- */
/* backend.c: loads the best ggml CPU variant for this host (once) and llama_backend_init;
 * llama.cpp logs errors through ours. Fails (err says why) when no CPU backend loads. */
int lc_backend_init(char *err, size_t errlen);
const char *lc_backend_describe(void); /* host CPU features and the variant running ("" before init) */
/* Where model m goes: its gpu_layers on its main_gpu when that GPU exists; else the CPU
 * (gpu_fallback: cpu, said in the log) or AIOS_ERR_MODEL with err saying why. device gets
 * the device's name ("CPU", "CUDA0"). */
int lc_gpu_placement(const aios_model_cfg *m, int *n_gpu_layers, int *main_gpu, char *device, size_t devlen, char *err,
                     size_t errlen);
struct ggml_threadpool *lc_threadpool_new(struct ggml_threadpool_params *p); /* the CPU backend's */
void lc_threadpool_free(struct ggml_threadpool *tp);                         /* NULL ok */
void lc_log(enum ggml_log_level level, const char *text, void *ud);
bool lc_progress(float p, void *ud); /* ud: int, the last percentage printed (start -100) */
/* AIOS_OK when path exists and starts with the GGUF magic; err says how to fix it otherwise. */
int lc_check_gguf(const char *path, char *err, size_t errlen);

#endif
