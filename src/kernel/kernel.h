/*
 * kernel.h - the kernel module's public header: configuration, logging, clocks and a
 * bounded string buffer. Every other module may include it; it includes no other module.
 *
 * Configuration is layered like DESIGN.md §4 says: built-in defaults, then the YAML file,
 * then AIOS_* environment variables, then command-line flags. Every scalar key lives in
 * one table (config.c) that also drives docs/config.md, env names and `--set key=value`.
 */
#ifndef AIOS_KERNEL_H
#define AIOS_KERNEL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "aios/result.h"

/* ---------- the kernel ---------- */
/* aiosd's life (boot.c): configuration from argv (as aiosd's flags), then it serves until
 * SIGINT / SIGTERM, which it takes with sigwait on the calling thread (they stay blocked in
 * every thread it starts); the exit status. Once per process. */
int kernel_main(int argc, char **argv);

/* ---------- clocks ---------- */
double kern_now_mono(void); /* seconds, CLOCK_MONOTONIC */
/* cJSON allocates through kern_json_malloc (set up once, in main, before any thread), which
 * notes a failed allocation for the calling thread: kern_json_oom() says whether one failed
 * since kern_json_oom_clear(), so a parse that failed for want of memory answers 500, not a
 * "malformed JSON" 400. */
void kern_json_init(void);
/* cJSON_AddItemToObject that never loses item: when the key cannot be copied (no memory),
 * item is still attached (under a constant empty key, so it is freed with obj and every
 * pointer to it stays valid) and the thread's kern_json_oom() is set; false then. When obj
 * is NULL (a parent that could not be made), item is parked on the thread's orphan list,
 * still valid, and freed at the thread's next kern_json_sweep(). Always takes item. The
 * kernel's JSON answers are built with it and kern_json_push. */
struct cJSON;
bool kern_json_add(struct cJSON *obj, const char *key, struct cJSON *item);
/* cJSON_AddItemToArray with the same promise (arr NULL: item is parked; false). */
bool kern_json_push(struct cJSON *arr, struct cJSON *item);
/* Frees the calling thread's orphans: called where none of the JSON it built is still in
 * use: the end of an HTTP callback, of a run-queue job. */
void kern_json_sweep(void);
/* The string member key of o, or "" when there is none (an object the kernel built may lack
 * a member it could not add: see kern_json_add). */
const char *kern_json_str(const struct cJSON *o, const char *key);
void kern_json_oom_clear(void);
bool kern_json_oom(void);
#ifdef AIOS_TORTURE
/* torture.c (the torture build only): the calling thread's n-th allocation from now fails,
 * once; torture_disarm stops that and says whether it happened (and how many were left). */
void torture_arm(long n);
long torture_disarm(bool *injected);
#endif
double kern_now_wall(void); /* seconds since the epoch */
/* The process's memory as the operating system and the allocator see it (/metrics): resident
 * bytes (/proc/self/statm), bytes in live allocations and free bytes the allocator holds
 * (glibc's mallinfo2 over every arena, mmapped chunks counted as live; both 0 under a
 * sanitizer's allocator), and open file descriptors. A resident size that grows while the
 * live bytes do not is fragmentation, not a leak. */
typedef struct kern_mem_stats {
    size_t resident, heap_live, heap_free;
    long fds;
} kern_mem_stats;
void kern_mem_stats_get(kern_mem_stats *out);
/* A histogram over fixed upper bounds, kept cumulative as Prometheus writes it (bucket i
 * counts the values <= le[i]). The owner locks. */
#define KERN_HIST_MAX 16
typedef struct kern_hist {
    const double *le; /* ascending bounds (static; borrowed) */
    int n;
    unsigned long long bucket[KERN_HIST_MAX], count;
    double sum;
} kern_hist;
void kern_hist_init(kern_hist *h, const double *le, int n); /* n <= KERN_HIST_MAX */
void kern_hist_add(kern_hist *h, double v);
struct timespec;
void kern_deadline(struct timespec *ts, long ms); /* now + ms on CLOCK_REALTIME (pthread_cond_timedwait) */
/* Waits on cv (mu held) until *count is 0, or until timeout_ms (<= 0: no limit) have passed
 * since t0 (kern_now_mono): AIOS_ERR_DEADLINE then. */
int kern_wait_zero(pthread_cond_t *cv, pthread_mutex_t *mu, const int *count, int timeout_ms, double t0);

/* ---------- logging ---------- */
typedef enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR } log_level;
void log_set_level(log_level lvl);
int log_parse_level(const char *s, log_level *out); /* 0 or AIOS_ERR_INVALID */
void log_msg(log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)

/* ---------- bounded string buffer ----------
 * Grows on demand up to `cap` bytes (0 = unbounded); appends past the cap fail with
 * AIOS_ERR_TOO_LARGE and leave the buffer unchanged. Always NUL-terminated once used. */
typedef struct strbuf {
    char *data;
    size_t len, alloc, cap;
    bool oom; /* an append failed for want of memory (sticky until sb_free): the text lacks a part */
} strbuf;
void sb_init(strbuf *sb, size_t cap);
void sb_free(strbuf *sb);
void sb_reset(strbuf *sb);
int sb_append(strbuf *sb, const char *s, size_t n);
int sb_puts(strbuf *sb, const char *s);
int sb_printf(strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Takes the data out of the buffer; the caller owns (and frees) it. Never NULL. */
char *sb_steal(strbuf *sb);
/* Appends the last max bytes of file path (all of it when shorter); true when the file was
 * longer, so the first line appended may be cut. false too when it cannot be opened. */
bool sb_append_file_tail(strbuf *sb, const char *path, size_t max);

/* ---------- UTF-8 (util.c) ---------- */
/* Length of the UTF-8 sequence at s (n bytes left): 1-4, 0 if invalid (overlong forms,
 * surrogates, past U+10FFFF, stray continuation bytes), -1 if cut short by the end. */
int kern_utf8_len(const unsigned char *s, size_t n);
bool kern_utf8_valid(const char *s, size_t n);
/* Replaces every byte that is not part of a valid UTF-8 sequence by '?', in place. */
void kern_utf8_sanitize(char *s);

/* ---------- hash maps (maps.c) ----------
 * Open addressing, linear probing, backward-shift deletion; not thread-safe (the owner
 * locks). Values are borrowed; strmap copies its keys. Zero-initialised maps are empty. */
typedef struct u64map {
    uint64_t *keys;
    void **vals;
    bool *used;
    size_t len, cap;
} u64map;
void u64map_init(u64map *m);
void u64map_free(u64map *m);
void *u64map_get(const u64map *m, uint64_t key);
int u64map_put(u64map *m, uint64_t key, void *val); /* AIOS_OK or AIOS_ERR_NOMEM */
void *u64map_del(u64map *m, uint64_t key);          /* the removed value, or NULL */

typedef struct strmap {
    char **keys;
    void **vals;
    uint64_t *hashes;
    bool *used;
    size_t len, cap;
} strmap;
void strmap_init(strmap *m);
void strmap_free(strmap *m);
void *strmap_get(const strmap *m, const char *key);
int strmap_put(strmap *m, const char *key, void *val);
void *strmap_del(strmap *m, const char *key);
void strmap_foreach(const strmap *m, void (*fn)(const char *key, void *val, void *ctx), void *ctx);

/* ---------- configuration ---------- */
#define AIOS_MAX_MODELS 16
#define AIOS_NAME_MAX 64
#define AIOS_PATH_MAX 1024
#define AIOS_MAX_AGENT_CFG 256
#define AIOS_MAX_MCP 8       /* tools.mcp_servers entries */
#define AIOS_MCP_MAX_ARGS 16 /* args and env entries of one MCP server */
#define AIOS_MAX_GROUPS 16   /* access.groups */
#define AIOS_MAX_RULES 32    /* rules of one group */
#define AIOS_RULE_MAX 128
#define AIOS_PRIORITY_MIN 0 /* request priorities (the priority policy runs higher first) */
#define AIOS_PRIORITY_MAX 100

#define AIOS_MAX_ENDPOINTS 16 /* replicas of one remote model */

typedef struct aios_model_cfg {
    char name[AIOS_NAME_MAX];
    char backend[32]; /* "llamacpp" */
    char path[AIOS_PATH_MAX];
    int ctx_size;                           /* max tokens of one request (prompt + output); 0 = model's trained size */
    int kv_size;                            /* KV cells shared by all running sequences */
    int threads;                            /* decode threads; 0 = online CPUs */
    int batch_size;                         /* tokens per llama_decode step (prefill chunks + decodes) */
    int prefill_chunk;                      /* prompt tokens per step while others decode (0: batch_size) */
    char chat_template_file[AIOS_PATH_MAX]; /* Jinja template replacing the model's; "" = the model's */
    char tool_format[16];                   /* auto | native | json: how tool calls are written (docs/config.md) */
    char aliases[512];                      /* other names requests may use, comma-separated ("gpt-4o,gpt-4o-mini") */
    /* remote backends (openai): the server, the upstream model id, the key's variable, limits */
    char hostname[AIOS_PATH_MAX];
    char model[128];
    char api_key_env[64];
    int max_inflight; /* per endpoint */
    int timeout_s;
    int first_token_timeout_s; /* 0 = timeout_s */
    /* fleets: replicas of one model, health, breaker, retries, fallback (docs/models.md) */
    char endpoints[2048];         /* base URLs, comma-separated; "" = hostname alone */
    int health_interval_s;        /* active health checks; 0 = none (only passive ones) */
    char health_path[64];         /* "" = the dialect's /v1/models */
    int retries;                  /* before the first token: connect errors, 429 and 5xx */
    int breaker_failures;         /* consecutive failures that take an endpoint out */
    int breaker_open_s;           /* how long it stays out before it is probed back in */
    int affinity;                 /* 1: an agent keeps its replica (its prefix cache) while healthy */
    char fallback[AIOS_NAME_MAX]; /* the model to serve requests while this one is down */
    /* run time loading (docs/models.md) */
    int idle_unload_s;   /* unload after this long without a request; 0 = never */
    int load_on_request; /* 1: a request to an unloaded model loads it (and waits); 0: 503 */
    /* GPUs (llama.cpp models; a build with a GPU backend: make llama GPU=cuda) */
    int gpu_layers;       /* layers offloaded; 0 = CPU only */
    int main_gpu;         /* the device index (of ggml's GPU devices) */
    char gpu_fallback[8]; /* none | cpu: what happens when no GPU can be had */
    bool key_implicit;    /* (not a setting) api_key_env is a cloud default: unset, the model is down, not an error */
} aios_model_cfg;

#define AIOS_MCP_MAX_RO 8 /* ro_paths of one MCP server */

/* One MCP server. It runs in a sandbox like a process tool's (docs/tools.md): the limits
 * are -1 for "the tools.* default". */
typedef struct aios_mcp_cfg {
    char name[AIOS_NAME_MAX]; /* its tools are named "<name>/<tool>" */
    char command[AIOS_PATH_MAX];
    char args[AIOS_MCP_MAX_ARGS][256];
    int n_args;
    char env[AIOS_MCP_MAX_ARGS][256]; /* "KEY=VALUE": its whole environment besides PATH, HOME, LANG */
    int n_env;
    char ro_paths[AIOS_MCP_MAX_RO][AIOS_PATH_MAX]; /* host directories bound read-only at the same path */
    int n_ro_paths;
    char fs[8]; /* workdir | ro | none: its own directory at /work */
    bool network;
    int memory_mb, file_size_mb, max_procs;
    char group[AIOS_NAME_MAX]; /* "" = anyone whose rules allow; else only this group and admins */
} aios_mcp_cfg;

typedef struct aios_group_cfg {
    char name[AIOS_NAME_MAX];
    char rules[AIOS_MAX_RULES][AIOS_RULE_MAX]; /* "kind:pattern[:actions]" (access.h) */
    int n_rules;
} aios_group_cfg;

#define AIOS_MAX_BUDGETS 64

/* One budget: the agent's or the group's use of one model ("" = all models together) in
 * fixed windows (a wall-clock minute, a UTC day); a limit of 0 is none. */
typedef struct aios_budget_cfg {
    char who[AIOS_NAME_MAX];
    bool group;
    char model[AIOS_NAME_MAX];
    long tokens_per_minute, tokens_per_day, requests_per_minute;
} aios_budget_cfg;

typedef struct aios_config {
    struct {
        char host[64];
        int port;
        long max_body_bytes;
        int json_max_depth;
        int max_connections;
        int connection_timeout_s;
        int max_stream_buffer_kb;
        int header_timeout_ms;    /* request headers complete within this of accept */
        long min_body_rate;       /* bytes/s floor for a body after the grace; 0 = none */
        int reserved_connections; /* slots kept for identities */
        char cors_origins[1024];  /* "a,b" or "*"; "" = no CORS headers */
    } server;
    struct {
        aios_model_cfg models[AIOS_MAX_MODELS];
        int n_models;
        char default_model[AIOS_NAME_MAX];
        int default_max_tokens;
        int allow_oversubscribe; /* local models' threads may total more than the CPUs */
        int max_messages;
        long max_prompt_bytes;
        int max_stop;
        int max_n; /* choices of one chat completion (`n`) */
    } llms;
    struct {
        char policy[16];
        int max_active;
        int max_queue;
        int time_slice;
        int fair_window_s;
        int default_priority;
        int max_agents;
        int agent_hot_ms;  /* agent policy: a turn within this of the agent's last continues its program */
        int starve_factor; /* agent policy: time slices an equal share may owe a waiting turn */
        int deterministic; /* batch-invariant decoding (llm_context_params.deterministic) */
    } scheduler;
    struct {
        char mode[8]; /* kv | text */
        int ram_budget_mb, disk_budget_mb;
        int cache_entries, snapshot_entries;
        int prefix_min_tokens;
        int verify_prefix;
        int park;
        int compact_min_cells;
        int cold_ms;
    } context;
    struct {
        long limit_bytes; /* resident memory per agent */
        int eviction_k;
        long max_item_bytes;
        long max_items;
        int max_agents;
    } memory;
    struct {
        int max_versions;
        long max_file_bytes, quota_bytes, max_files;
        int max_path_bytes;
        char synchronous[8]; /* normal | full */
        char embedding_model[AIOS_PATH_MAX];
        int embed_batch_tokens, embed_threads, embed_queue, embed_nice, embed_agent_queue, retrieve_timeout_ms;
        int hnsw_m, hnsw_ef_search, exact_below, max_k;
    } storage;
    struct {
        char dir[AIOS_PATH_MAX];     /* manifests; "" = none */
        char workdir[AIOS_PATH_MAX]; /* per-agent tool workdirs; "" = <data_dir>/tools */
        long max_output_bytes;
        int default_timeout_ms, default_max_parallel, max_calls, max_pending;
        int cpu_seconds, memory_mb, file_size_mb, max_procs;
        long sandbox_uid_base; /* 0 = keep the kernel's uid */
        int mcp_timeout_ms;
        aios_mcp_cfg mcp[AIOS_MAX_MCP];
        int n_mcp;
    } tools;
    struct {                                 /* agents as processes the kernel runs (src/agents) */
        char dir[AIOS_PATH_MAX];             /* installed agent packages (AIOS /agents/submit agent_id) */
        char workdir[AIOS_PATH_MAX];         /* agents' logs and workdirs; "" = <data_dir>/agents */
        char cerebrum_runner[AIOS_PATH_MAX]; /* command line that runs a Cerebrum-layout package */
        long log_max_bytes;                  /* one agent's log before it rotates (one older file kept) */
        long log_quota_bytes;                /* every agent's logs together; beyond, the oldest finished go */
        int max_running;                     /* agents alive at once */
        int max_records;                     /* agents kept in the table (finished ones beyond are dropped) */
        int max_restarts;                    /* restart: on-failure gives up after this many */
        char default_network[16];            /* kernel-only | none | full */
        char cgroup[AIOS_PATH_MAX];          /* auto | off | a cgroup v2 directory delegated to the kernel */
    } procs;
    struct {
        char mode[8]; /* local | enforce */
        int approval_timeout_s, max_approvals;
        int rate_limit, rate_burst;     /* syscalls/s per agent (0 = none), bucket size */
        char audit_file[AIOS_PATH_MAX]; /* "" = <data_dir>/audit.log */
        long audit_max_bytes;
        int audit_keep;
        char default_group[AIOS_NAME_MAX], admin_group[AIOS_NAME_MAX];
        aios_group_cfg groups[AIOS_MAX_GROUPS];
        int n_groups;
    } access;
    struct {
        int max_stored; /* stored responses per agent (the Responses door) */
        int ttl_s;      /* age at which a stored response is dropped; 0 = never */
    } responses;
    struct {
        char name[AIOS_NAME_MAX];
        int priority;              /* -1 = scheduler.default_priority */
        long memory_limit;         /* -1 = memory.limit_bytes */
        char group[AIOS_NAME_MAX]; /* "" = access.default_group (local mode; tokens carry their own) */
    } agents[AIOS_MAX_AGENT_CFG];
    int n_agents;
    aios_budget_cfg budgets[AIOS_MAX_BUDGETS]; /* agents.<name>.budget, groups.<name>.budget */
    int n_budgets;
    /* what an AIOS config.yaml said that aiosd maps or ignores, one line each ("file:line: ...") */
    char compat[32][240];
    int n_compat;
    char data_dir[AIOS_PATH_MAX];
    char log_level[16];
    int workers, max_jobs, max_jobs_per_agent; /* each worker resource's run queue (sched/runq.c) */
} aios_config;

/* Built-in defaults (zero-config start: the default model in the cache). */
void config_defaults(aios_config *cfg);
/* Loads YAML from `path` over cfg. err gets "file:line: key: reason". */
int config_load_file(aios_config *cfg, const char *path, char *err, size_t errlen);
/* Applies AIOS_<SECTION>_<KEY> environment overrides (getenv-like `get` for tests). */
int config_load_env(aios_config *cfg, const char *(*get)(const char *), char *err, size_t errlen);
/* Sets one key ("server.port") from its string form. */
int config_set(aios_config *cfg, const char *key, const char *value, char *err, size_t errlen);
/* Final checks (ranges, model list, policy names). */
int config_validate(const aios_config *cfg, char *err, size_t errlen);
/* Writes the key reference (markdown table) used for docs/config.md. */
int config_write_reference(const char *path);
/* The default priority of `agent`'s requests (agents.<name>.priority, else scheduler.default_priority). */
int config_agent_priority(const aios_config *cfg, const char *agent);
/* agents.<name>.memory_limit_bytes, else memory.limit_bytes. */
long config_agent_memory_limit(const aios_config *cfg, const char *agent);
/* agents.<name>.group, else access.default_group. */
const char *config_agent_group(const aios_config *cfg, const char *agent);
/* The group named `name`, or NULL. */
const aios_group_cfg *config_group(const aios_config *cfg, const char *name);
/* Whether host is a loopback address (127.0.0.0/8, ::1, localhost). */
bool config_host_is_loopback(const char *host);
/* The embedding model file: storage.embedding_model, else the fetched all-MiniLM-L6-v2
 * when present in the cache, else the default chat model (mean pooling). */
void config_embedding_model(const aios_config *cfg, char *out, size_t outlen);
/* The model entry named `name`, or the default model when name is NULL/empty. */
/* The model a request names (its name or one of its aliases; NULL or "" = llms.default_model),
 * or NULL; config_model_index: its place in llms.models, or -1. */
const aios_model_cfg *config_model(const aios_config *cfg, const char *name);
int config_model_index(const aios_config *cfg, const char *name);
/* How many models there are now (models added at run time included; an acquire load). */
int config_n_models(const aios_config *cfg);
/* Appends a model made of n (field, value) pairs of llms.models[] (as in YAML) after
 * validating the whole config with it: its index, or AIOS_ERR_INVALID with err naming the
 * field or the conflict. The entry is written before the count grows, so a concurrent
 * config_model_index sees it whole or not at all; callers serialize adds. */
int config_model_add(aios_config *cfg, const char *const *keys, const char *const *values, int n, char *err, size_t errlen);
/* Whether name is one of m's aliases. */
bool config_model_alias(const aios_model_cfg *m, const char *name);
/* The k-th alias of m (from 0) into out; false past the last. */
bool config_model_alias_at(const aios_model_cfg *m, int k, char *out, size_t cap);
/* Endpoint k of a remote model (its `endpoints`, else `hostname` as the one); false past the last. */
bool config_model_endpoint_at(const aios_model_cfg *m, int k, char *out, size_t cap);
/* Item k of a comma-separated list (spaces around items dropped); false past the last. */
bool config_list_at(const char *list, int k, char *out, size_t cap);
/* Where the default model lives: $AIOS_CACHE or ~/.cache/aios, then models/... */
void config_default_model_path(char *out, size_t outlen);

#endif
