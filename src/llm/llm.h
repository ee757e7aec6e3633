/*
 * llm.h - LLM cores behind one interface (DESIGN.md §1).
 *
 * A core is one loaded model with its own run queue (a sched_t) and its own engine. The
 * API layer turns a chat into an llm_request with llm_core_prepare() (template, tokenize,
 * limits, sampler and grammar, all checked before anything is queued, so bad input is a
 * synchronous 400), wraps it in a syscall and hands it to llm_core_submit(). Backends
 * implement llm_backend_ops; llamacpp (embedded, continuous batching) is the first, and
 * remote backends plug in without touching the scheduler or the API.
 */
#ifndef AIOS_LLM_H
#define AIOS_LLM_H

#include <stdbool.h>
#include <stdint.h>
#include "../kernel/kernel.h"
#include "../context/ctx.h"
#include "../sched/sched.h"
#include "../syscall/syscall.h"

typedef struct cJSON cJSON;

typedef struct llm_message {
    const char *role;
    const char *content;
} llm_message;

typedef struct llm_sampling {
    float temperature; /* 0 = greedy */
    float top_p;       /* 1 = off */
    int top_k;         /* 0 = off */
    float min_p;       /* 0 = off */
    uint32_t seed;     /* LLM_SEED_RANDOM = fresh per request */
    int max_tokens;
    bool ignore_eos;         /* never end at an end-of-generation token (fixed-length output) */
    float repeat_penalty;    /* 1 = off */
    float frequency_penalty; /* 0 = off (OpenAI's, -2 to 2) */
    float presence_penalty;  /* 0 = off */
    int penalty_last_n;      /* generated tokens the penalties look back over */
    /* logit_bias: n_bias (token, bias) pairs, borrowed until prepare; a bias of -INFINITY bans */
    const int32_t *bias_tokens;
    const float *bias_values;
    int n_bias;
    bool logprobs;    /* record each generated token's log-probability */
    int top_logprobs; /* ... and the most likely alternatives (0 to LLM_TOP_LOGPROBS_MAX) */
} llm_sampling;

/* One generated token's log-probability under the model (the softmax of its logits, before
 * sampling), with the top_logprobs most likely tokens at that step. */
#define LLM_TOP_LOGPROBS_MAX 20
typedef struct llm_logprob {
    int32_t token;
    float logprob;
    int n_top;
    int32_t top_token[LLM_TOP_LOGPROBS_MAX];
    float top_logprob[LLM_TOP_LOGPROBS_MAX];
} llm_logprob;
#define LLM_SEED_RANDOM 0xFFFFFFFFu

llm_sampling llm_default_sampling(void);

typedef enum llm_finish {
    LLM_FINISH_NONE,
    LLM_FINISH_STOP,   /* end-of-generation token or a stop string */
    LLM_FINISH_LENGTH, /* max_tokens or the context reached */
    LLM_FINISH_CANCELLED,
    LLM_FINISH_ERROR,
} llm_finish;
const char *llm_finish_name(llm_finish f); /* "stop", "length", ... (OpenAI finish_reason) */

typedef enum llm_tool_choice { LLM_TOOLS_AUTO, LLM_TOOLS_REQUIRED, LLM_TOOLS_NONE } llm_tool_choice;

/* What a chat request asks of a core (borrowed pointers; prepare copies what it keeps). */
typedef struct llm_chat {
    const llm_message *messages;
    int n_messages;
    llm_sampling sampling;
    const char *const *stop;
    int n_stop;
    const char *grammar; /* GBNF constraining the output, or NULL */
    /* A regex: the grammar constrains the output only once it matches, from its first
     * group on (a lazy grammar: free text until the model opens a tool call); NULL = the
     * grammar applies from the first token. */
    const char *grammar_trigger;
    bool raw_prompt; /* messages[0].content is the whole prompt (no template) */
    /* Tool calls in the model's own format (a core whose info says tools_native): the
     * conversation and tools as OpenAI chat-completions JSON (messages with tool_calls and
     * tool_call_id; [{"type":"function","function":{...}}]). The core renders them with the
     * model's template, constrains calls with the template family's grammar (lazy under
     * auto) and keeps its parser for llm_request_parse_output. messages_json replaces
     * messages; grammar and grammar_trigger must be NULL. */
    const char *messages_json;
    const char *tools_json;
    llm_tool_choice tool_choice;
    bool parallel_calls;
    /* JSON output: the schema the grammar states ("{}" = any object), for backends that take
     * a schema instead of a grammar (remote ones); NULL when not JSON output. */
    const char *json_schema;
} llm_chat;

/* One generation; owned by its syscall (args), freed with llm_request_free. The engine
 * writes the output fields; read them only once the syscall is DONE. */
typedef struct llm_request llm_request;
void llm_request_free(void *req);
int llm_request_prompt_tokens(const llm_request *r);
int llm_request_completion_tokens(const llm_request *r);
/* Of its prompt tokens, those taken from the prefix / conversation cache (not computed). */
int llm_request_cached_tokens(const llm_request *r);
/* The stop string that ended it (owned by r), or NULL: an end-of-generation token, length, ... */
const char *llm_request_stop_string(const llm_request *r);
llm_finish llm_request_finish(const llm_request *r);
/* The recorded log-probabilities (sampling.logprobs), in generation order; read once the
 * syscall is DONE. Returns how many. */
int llm_request_logprobs(const llm_request *r, const llm_logprob **out);
/* Of a request prepared with tools_json: text (its output so far, or whole) parsed in the
 * template's format: a new {"content": "...", "tool_calls": [{"name","arguments"}]}
 * (arguments as the JSON text the model wrote; partial: a call may still be growing) the
 * caller owns. NULL for any other request (or on OOM). */
cJSON *llm_request_parse_output(const llm_request *r, const char *text, bool partial);

/* ---- backend interface ---- */
typedef struct llm_core_info {
    char name[AIOS_NAME_MAX];
    const char *backend;
    char desc[128];
    int ctx; /* largest prompt + output of one request */
    int ctx_train;
    int kv_size;
    int max_active;
    int64_t n_params;
    uint64_t size_bytes;
    bool tools_native; /* tool calls in the template's own format (llm_chat.tools_json) */
    bool jinja;        /* chats are rendered by the Jinja template (else llama_chat_apply_template) */
    int gpu_layers;    /* layers offloaded to a GPU (0: on the CPU) */
    char device[64];   /* where it runs: "CPU", or the GPU's ggml name ("CUDA0") */
} llm_core_info;

/* What runs the models: the pinned llama.cpp, where its backends load from, the host CPU
 * and the ggml CPU variant running on it
 * (loads ggml's backends if not yet). */
void llm_engine_version(char *out, size_t cap);

/* A compute device ggml can use (the CPU, GPUs of a build with a GPU backend). */
typedef struct llm_device {
    char name[64], description[128];
    const char *type; /* "cpu", "gpu", "igpu", "accel" */
    size_t memory_free, memory_total;
} llm_device;
/* The devices (at most max into out); how many there are. Loads ggml's backends if not yet. */
int llm_devices(llm_device *out, int max);

/* One endpoint (replica) of a remote model. */
typedef struct llm_endpoint_stats {
    char url[160];
    const char *state; /* "probing" (not yet checked), "up", "suspect" (failing), "down" (breaker open) */
    int outstanding;   /* requests upstream on it now */
    unsigned long long requests, failures, retries, breaker_opens;
    double last_ok_ago_s; /* seconds since it last answered well (-1 = never) */
    char last_error[160];
} llm_endpoint_stats;

/* The engine's steps (one llama_decode each; /metrics aios_step_*, bench/profile.sh): the
 * seconds of each phase and the shape of the batch and of the attention view. */
typedef enum llm_step_hist {
    LLM_STEP_DECODE_S,   /* llama_decode */
    LLM_STEP_SAMPLE_S,   /* sampling, grammar, stop strings, passing text on */
    LLM_STEP_SCHEDULE_S, /* admission, preemption decisions, prefix matching, cache bookkeeping */
    LLM_STEP_SWITCH_S,   /* context switches: KV snapshots taken and restored */
    LLM_STEP_TOKENS,     /* tokens in the batch */
    LLM_STEP_SEQS,       /* sequences in the batch */
    LLM_STEP_KV_CELLS,   /* cells resident in the KV cache: the least the attention view spans */
    LLM_STEP_OWN_CELLS,  /* the batch's sequences' own contexts, summed: what it needs to attend to */
    LLM_STEP__COUNT
} llm_step_hist;
extern const char *const LLM_STEP_NAMES[LLM_STEP__COUNT];

typedef struct llm_core_stats {
    unsigned long long requests_done, requests_failed, requests_cancelled;
    /* a remote model's endpoints; down: none can take work, down_reason says why */
    int n_endpoints;
    llm_endpoint_stats endpoints[AIOS_MAX_ENDPOINTS];
    bool down;
    char down_reason[400];
    unsigned long long prompt_tokens, completion_tokens, decode_steps, batch_tokens;
    double busy_seconds;
    int active, kv_reserved; /* running sequences; cells reserved by them (prompt + max_tokens) */
    int kv_used, kv_cached;  /* cells accounted in all (shared cells once); held by cache entries */
    /* context switches (preemptions) and snapshots */
    unsigned long long preemptions, snapshots, snapshot_bytes, restores, text_resumes, snapshot_failures;
    unsigned long long parks; /* preemptions that left the KV in place (a spare sequence id) */
    int parked;               /* preempted generations parked right now */
    double snapshot_seconds, restore_seconds;
    /* prefill and the prefix / conversation cache */
    unsigned long long prefill_computed, prefill_reused, cache_hits, cache_evictions, cache_dropped;
    unsigned long long verify_ok, verify_mismatch;
    int cache_resident, cache_snapshots;
    /* KV compaction: repacks of the cache that close the holes in the attention view */
    unsigned long long compactions, compacted_cells;
    unsigned long long cache_cooled; /* idle cached conversations moved out of the KV cache (context.cold_ms) */
    double compact_seconds;
    /* the snapshot store */
    unsigned long long store_ram_bytes, store_disk_bytes, store_spills, store_disk_reads;
    kern_hist step[LLM_STEP__COUNT]; /* local engines; empty (n 0) for remote ones */
} llm_core_stats;

/* How a core saves and reuses contexts (the context manager's knobs, DESIGN.md §1). */
typedef struct llm_context_params {
    bool text_mode;        /* resume preempted work from text (tokens) instead of KV snapshots */
    int cache_entries;     /* resident cached sequences (prefixes, finished conversations) */
    int snapshot_entries;  /* cached sequences kept only as snapshots */
    int prefix_min_tokens; /* shortest prefix worth reusing */
    bool verify_prefix;    /* compare every reused prefix with a solo prefill (tests) */
    bool park;             /* preempt by leaving the KV in place when a sequence id is spare */
    int cold_ms;           /* a cached conversation idle this long leaves the KV cache for a snapshot (0: never) */
    bool deterministic;    /* batch-invariant decoding: fixed-shape steps, a cache without holes */
    int compact_min_cells; /* repack the KV cache when it would shrink the attention view by this many cells (0: never) */
    ctx_store *store;      /* where snapshots go (borrowed; outlives the core) */
} llm_context_params;

llm_context_params llm_default_context_params(void);

typedef struct llm_backend_ops {
    const char *name;
    int (*open)(const aios_model_cfg *m, sched_t *sched, int max_active, const llm_context_params *cp, void **impl, char *err,
                size_t errlen);
    void (*close)(void *impl);
    void (*info)(void *impl, llm_core_info *out);
    int (*prepare)(void *impl, const llm_chat *chat, llm_request **out, char *err, size_t errlen);
    /* The prompt chat makes (the chat template; what prepare tokenizes). */
    int (*render)(void *impl, const llm_chat *chat, strbuf *out, char *err, size_t errlen);
    int (*tokenize)(void *impl, const char *text, bool add_special, int32_t **out, int *n, char *err, size_t errlen);
    int (*detokenize)(void *impl, const int32_t *tokens, int n, strbuf *out, char *err, size_t errlen);
    void (*stats)(void *impl, llm_core_stats *out);
    void (*wake)(void *impl);
    /* Optional: true when the core cannot take work now (every endpoint out), why says so. */
    bool (*down)(void *impl, char *why, size_t cap);
    /* Optional: KV cells charged to agent's running and parked generations now. */
    int (*agent_kv)(void *impl, const char *agent);
} llm_backend_ops;

extern const llm_backend_ops llm_backend_llamacpp;
extern const llm_backend_ops llm_backend_openai;    /* remote.c: an OpenAI-compatible server */
extern const llm_backend_ops llm_backend_anthropic; /* remote.c: an Anthropic Messages server */
/* The backend a model's `backend` names (AIOS's names for OpenAI-compatible servers, such as
 * vllm, sglang or ollama, are the openai backend), or NULL. */
const llm_backend_ops *llm_backend_named(const char *name);

/* ---- cores ---- */
typedef struct llm_core llm_core;

typedef struct llm_core_params {
    const aios_model_cfg *model;
    sched_params sched;
    llm_context_params context;
    bool lazy; /* return at once, loading on the lifecycle thread (state loading; a failure: failed) */
} llm_core_params;

llm_core *llm_core_open(const llm_core_params *p, char *err, size_t errlen);
void llm_core_free(llm_core *c); /* accepts NULL; cancels queued and running work */

/* ---- life cycle: a core's backend is loaded and unloaded at run time ---- */
typedef enum llm_core_state {
    LLM_CORE_READY,
    LLM_CORE_LOADING,
    LLM_CORE_UNLOADING, /* the work in flight finishes first */
    LLM_CORE_UNLOADED,  /* by an admin, or idle for idle_unload_s */
    LLM_CORE_FAILED,    /* a load failed; why says how */
} llm_core_state;
const char *llm_core_state_name(llm_core_state s); /* "ready", "loading", ... */
/* The state; why (may be NULL) gets the reason of unloaded / failed; idle_s (may be NULL)
 * the seconds since the last request was submitted. */
llm_core_state llm_core_get_state(llm_core *c, char *why, size_t cap, double *idle_s);
/* Starts loading (on the core's lifecycle thread) unless ready; the state it is going to. */
llm_core_state llm_core_load(llm_core *c);
/* Starts unloading a ready core: new work waits (or is refused), the work in flight
 * finishes, then the backend closes. The state it is going to. */
llm_core_state llm_core_unload(llm_core *c);
/* When the core is not ready but will be (loading, unloading, or, with load, unloaded: a
 * load starts), registers fn(ctx) to be called once (on another thread, no lock of the
 * core held) when it is ready or has given up, and returns true; else false (ready, failed,
 * or unloaded without load). */
bool llm_core_when_ready(llm_core *c, bool load, void (*fn)(void *), void *ctx);
/* Drops the waits registered with ctx (their fn will not be called). */
void llm_core_forget(llm_core *c, void *ctx);
void llm_core_get_info(llm_core *c, llm_core_info *out);
/* The model's configured name (fixed for the core's life; no backend call, no lock). */
const char *llm_core_name(const llm_core *c);
void llm_core_get_stats(llm_core *c, llm_core_stats *out, sched_stats *sched_out);
/* The prompt text the model's chat template makes of chat (POST /apply-template). */
int llm_core_render(llm_core *c, const llm_chat *chat, strbuf *out, char *err, size_t errlen);
/* The tokens of text (valid UTF-8, else AIOS_ERR_INVALID) in the model's vocabulary,
 * special tokens parsed; *out is malloc'd (caller frees), *n its count. */
int llm_core_tokenize(llm_core *c, const char *text, bool add_special, int32_t **out, int *n, char *err, size_t errlen);
/* The text of tokens, appended to out; a token outside the vocabulary is AIOS_ERR_INVALID
 * naming it. The text may end inside a UTF-8 character (a cut sequence); the caller keeps
 * its answer valid. */
int llm_core_detokenize(llm_core *c, const int32_t *tokens, int n, strbuf *out, char *err, size_t errlen);
/* Validates and tokenizes; on success *out is a new request the caller owns. */
int llm_core_prepare(llm_core *c, const llm_chat *chat, llm_request **out, char *err, size_t errlen);
/* Queues the syscall (whose args is an llm_request from this core). */
int llm_core_submit(llm_core *c, syscall_t *sc);
/* Cancels: a waiting syscall completes at once; a running one at the engine's next step. */
void llm_core_cancel(llm_core *c, syscall_t *sc);
/* True when the core cannot take work now (a remote model with every endpoint out); why
 * (may be NULL) says so, naming the model and each endpoint's last error. */
bool llm_core_down(llm_core *c, char *why, size_t cap);
/* KV cells held for agent's generations on this core now (running and parked; cells of a
 * shared prefix count once, in the cache); 0 for a remote model. */
int llm_core_agent_kv(llm_core *c, const char *agent);
/* Per-agent service of this core's scheduler (sched_foreach_agent). */
void llm_core_foreach_agent(llm_core *c, sched_agent_fn fn, void *ud);
/* Holds agent's work on this core (its process is stopped) or releases it: its generations
 * are parked exactly (context manager) and its queued requests wait; a request streaming
 * from a remote upstream is not cut. AIOS_ERR_BUSY when too many agents are held. */
int llm_core_hold(llm_core *c, const char *agent, bool hold);

/* ---- embeddings (embed.c) ----
 * One pooled-embedding model on its own thread; texts from every caller are batched
 * together. Vectors are L2-normalised, llm_embedder_dim() floats. */
typedef struct llm_embedder llm_embedder;
typedef struct llm_embed_params {
    const char *model_path;  /* GGUF: an embedding model, or the chat model (mean pooling) */
    const char *name;        /* the model name /v1/embeddings reports */
    int threads;             /* 0 = half the online CPUs (at least 1) */
    int batch_tokens;        /* tokens per decode; also the longest text (longer ones are truncated) */
    int max_seqs;            /* texts per decode */
    int max_queue;           /* texts waiting before llm_embed_async answers AIOS_ERR_BUSY */
    int max_queue_per_owner; /* texts one owner (agent) may have waiting; beyond: AIOS_ERR_BUSY for it only */
    int nice;                /* nice value of the embedding threads (0 = as the kernel) */
} llm_embed_params;
typedef struct llm_embed_stats {
    unsigned long long texts, tokens, truncated, batches, failures;
    double seconds;
    int queued;
} llm_embed_stats;
/* Called on the embedder thread: vec (dim floats, valid only during the call) or rc != 0. */
typedef void (*llm_embed_cb)(void *ctx, int rc, const float *vec, int n_tokens);

/* One real decode (a short prompt, then n <= 32 greedy tokens) of the model at model_path,
 * outside any core: proves the engine runs on this host. out gets what ran, err why not. */
int llm_self_test(const char *model_path, int n, char *out, size_t outlen, char *err, size_t errlen);

llm_embed_params llm_embed_default_params(void);
llm_embedder *llm_embedder_new(const llm_embed_params *p, char *err, size_t errlen);
/* Stops after the batch in flight; every text still queued gets its callback with
 * AIOS_ERR_SHUTDOWN (the stores re-embed what lacks a vector at the next start), and later
 * calls are refused the same way. The embedder stays valid until llm_embedder_free. */
void llm_embedder_stop(llm_embedder *e);
/* Stops (if not yet) and frees. Accepts NULL. */
void llm_embedder_free(llm_embedder *e);
int llm_embedder_dim(const llm_embedder *e);
const char *llm_embedder_name(const llm_embedder *e);
void llm_embedder_get_stats(llm_embedder *e, llm_embed_stats *out);
/* Queues a copy of text on owner's queue (an agent name; NULL or "" = one shared anonymous
 * queue). Owners are served round robin, one text each, so a flood by one agent delays
 * the others' texts by a round, not by its backlog. cb runs exactly once (AIOS_ERR_BUSY:
 * the embedder's or this owner's queue is full, or NOMEM, mean it never will). */
int llm_embed_async(llm_embedder *e, const char *owner, const char *text, llm_embed_cb cb, void *ctx);
/* Texts owner has waiting. */
int llm_embed_backlog(llm_embedder *e, const char *owner);
/* AIOS_OK when owner may queue another text now; AIOS_ERR_BUSY with err saying why. */
int llm_embed_admit(llm_embedder *e, const char *owner, char *err, size_t errlen);
/* A retrieval of owner that must see its query and every text owner has waiting embedded
 * within timeout_ms: AIOS_OK when the embedder may do that, AIOS_ERR_BUSY (err says by how
 * much it is behind) when, at the rate it has been embedding, the texts ahead of them in the
 * round robin alone would take longer, so the caller refuses at once (503) rather than hold
 * a worker until the deadline (504). 0 = no limit. */
int llm_embed_admit_query(llm_embedder *e, const char *owner, int timeout_ms, char *err, size_t errlen);
/* Blocking: out gets dim floats. The text goes ahead of owner's queued texts (someone
 * waits on it). AIOS_ERR_DEADLINE when it was not embedded within timeout_ms (0 = no
 * limit); it is then withdrawn. Thread-safe; not from a callback. */
int llm_embed(llm_embedder *e, const char *owner, const char *text, float *out, int *n_tokens, int timeout_ms);

/* ---- generated text helpers (text.c) ---- */
/* How many leading bytes of `buf` may be released now: stops at an incomplete UTF-8
 * sequence and holds back any suffix that could still grow into a stop string. Sets
 * *stop_at to the offset of a complete stop string (-1 if none). */
size_t llm_text_releasable(const char *buf, size_t len, const char *const *stop, int n_stop, long *stop_at);

/* ---- grammars (grammar.c): JSON Schema -> GBNF for llama.cpp grammar sampling ---- */
/* Any JSON object. */
int llm_grammar_json_object(strbuf *out);
/* Values matching `schema` (a subset of JSON Schema: type, properties, required, items,
 * grammar.c's header lists the keywords and how each agrees with the tool validator). err
 * names the unsupported part. */
int llm_grammar_from_schema(const cJSON *schema, strbuf *out, char *err, size_t errlen);
/* A JSON array of 1 to max_calls tool calls [{"name": N, "parameters": {...}}], each
 * call's parameters constrained by its tool's schema. names[i] are the model-facing names. */
int llm_grammar_tool_calls(const char *const *names, const cJSON *const *schemas, int n, int max_calls, strbuf *out, char *err,
                           size_t errlen);
/* grammar (a template's tool-call grammar from llama.cpp's converter) into out with each
 * tool's argument rule ("tool-<name>-schema") replaced by the kernel's grammar of schemas[i]
 * (NULL: any object), rules prefixed, so calls in the template's format hold the kernel's
 * guarantee: every argument object the grammar allows, the tool validator accepts. A tool
 * whose rule is absent (a format without JSON arguments) keeps the library's rule. err names
 * a schema keyword the kernel refuses (as in llm_grammar_from_schema). */
int llm_grammar_swap_tool_args(const char *grammar, const char *const *names, const cJSON *const *schemas, int n, strbuf *out,
                               char *err, size_t errlen);

#endif
