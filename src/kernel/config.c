/*
 * config.c - the configuration table and its three sources (YAML file, AIOS_* environment,
 * command-line `--set`). One row per scalar key: its dotted name, type, bounds, default and
 * documentation. The same table generates docs/config.md (`aiosd --print-config-doc`), so
 * the reference can never fall behind the code. `llms.models` is the one list; its entries
 * have their own small field table.
 */
#include <ctype.h>
#include <stdarg.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>
#include "kernel.h"

typedef enum cfg_type { CFG_STR, CFG_INT, CFG_LONG } cfg_type;

typedef struct cfg_key {
    const char *name; /* "section.key" */
    cfg_type type;
    size_t off, size; /* offset in the struct; size for strings */
    long min, max;    /* bounds for numbers */
    const char *def;  /* default, as text */
    const char *doc;
    const char *allowed; /* enumerated strings: "a|b|c", or NULL */
} cfg_key;

#define K_STR(n, field, d, doc) \
    { n, CFG_STR, offsetof(aios_config, field), sizeof(((aios_config *)0)->field), 0, 0, d, doc, NULL }
#define K_ENUM(n, field, d, allowed, doc) \
    { n, CFG_STR, offsetof(aios_config, field), sizeof(((aios_config *)0)->field), 0, 0, d, doc, allowed }
#define K_INT(n, field, lo, hi, d, doc) \
    { n, CFG_INT, offsetof(aios_config, field), 0, lo, hi, d, doc, NULL }
#define K_LONG(n, field, lo, hi, d, doc) \
    { n, CFG_LONG, offsetof(aios_config, field), 0, lo, hi, d, doc, NULL }

static const cfg_key
    KEYS
        [] =
            {
                K_STR("server.host", server.host, "127.0.0.1", "Address to listen on. Loopback by default."),
                K_STR(
                    "server.cors_origins", server.cors_origins, "",
                    "Browser origins allowed to call the API (CORS), comma-separated (`https://app.example,http://localhost:3000`) or `*`; a preflight `OPTIONS` is answered for them. Empty = no CORS headers (browsers on other origins are refused by the browser)."),
                K_INT("server.port", server.port, 1, 65535, "8000", "TCP port (the Cerebrum SDK's default is 8000)."),
                K_LONG("server.max_body_bytes", server.max_body_bytes, 1024, 1L << 30, "1048576",
                       "Largest request body accepted; larger bodies get 413."),
                K_INT("server.json_max_depth", server.json_max_depth, 2, 512, "64",
                      "Deepest JSON nesting accepted in a request; deeper gets 400."),
                K_INT("server.max_connections", server.max_connections, 4, 100000, "1024", "Concurrent HTTP connections."),
                K_INT("server.connection_timeout_s", server.connection_timeout_s, 0, 86400, "300",
                      "Idle connection timeout in seconds (0 = none). Generation in progress is never idle."),
                K_INT("server.max_stream_buffer_kb", server.max_stream_buffer_kb, 4, 1 << 20, "1024",
                      "Generated text kept per request (KiB); also caps one response."),
                K_INT(
                    "server.header_timeout_ms", server.header_timeout_ms, 100, 3600000, "10000",
                    "A new connection must complete its request headers within this (counted from accept, not reset by each byte); later 408 and closed. Also the grace before `server.min_body_rate` applies."),
                K_LONG(
                    "server.min_body_rate", server.min_body_rate, 0, 1L << 30, "1024",
                    "Slowest request body accepted, in bytes/s averaged over the body once `server.header_timeout_ms` has passed; slower gets 408 and is closed (0 = no floor). A request being served (generating, streaming) has no deadline."),
                K_INT(
                    "server.reserved_connections", server.reserved_connections, 0, 100000, "16",
                    "Connections (of `server.max_connections`, at most half) kept for identities: when fewer are left, a request without a verified bearer token gets 503. At the limit a new connection replaces the oldest one still waiting for its headers, or gets 503 at once when every slot serves a request."),
                K_STR(
                    "agents.dir", procs.dir, "",
                    "Installed agent packages: AIOS `POST /agents/submit` names one by `agent_id` (a folder here in Cerebrum's layout, `config.json` + `agent.py`, or with an `agent.json` manifest giving its command). Empty = none (docs/agents.md)."),
                K_STR(
                    "agents.workdir", procs.workdir, "",
                    "Where each agent's log and workdir live (`<id>/output.log`, `<id>/work`). Empty = `<data_dir>/agents`. Every directory above it must be searchable by other uids (o+x) for agents to run under uids of their own (a root kernel with `tools.sandbox_uid_base`); else they run under the kernel's uid."),
                K_STR(
                    "agents.cerebrum_runner", procs.cerebrum_runner, "",
                    "Command line (split at spaces) that runs a Cerebrum-layout package: the package is at /agent in the sandbox and the task in `AIOS_TASK`; the runner prints the agent's result as its last line of output. Empty = such packages are refused (docs/agents.md shows one for a Cerebrum SDK install)."),
                K_LONG(
                    "agents.log_max_bytes", procs.log_max_bytes, 4096, 1L << 34, "1048576",
                    "Output (stdout and stderr) kept per agent before its log rotates; one older file is kept, so at most twice this."),
                K_LONG("agents.log_quota_bytes", procs.log_quota_bytes, 4096, 1L << 40, "268435456",
                       "Logs of every agent together; beyond it the logs of the oldest finished agents are deleted."),
                K_INT("agents.max_running", procs.max_running, 1, 4096, "64",
                      "Agent processes alive (starting, running or stopped) at once; more get 503."),
                K_INT("agents.max_records", procs.max_records, 1, 1000000, "1000",
                      "Agents kept in the table (`aios ps`); beyond it the oldest finished ones are dropped with their logs."),
                K_INT("agents.max_restarts", procs.max_restarts, 0, 1000, "3",
                      "`restart: on-failure` restarts an agent at most this many times (backoff 1 s, doubling to 30 s)."),
                K_ENUM(
                    "agents.default_network", procs.default_network, "kernel-only", "kernel-only|none|full",
                    "Network of an agent that names none: `kernel-only` (TCP to the kernel's port only; needs Linux 6.7+ landlock), `none`, `full`."),
                K_STR(
                    "agents.cgroup", procs.cgroup, "auto",
                    "Cgroup v2 directory delegated to the kernel: each agent gets a cgroup below it (memory.max, cpu.weight, pids.max where the host delegates those controllers; cgroup.freeze for stop; cgroup.kill for kill). `auto` = the kernel's own cgroup when it is writable (systemd's `Delegate=yes`), `off` = none: rlimits, the watchdog and signals (docs/agents.md)."),
                K_STR(
                    "llms.default_model", llms.default_model, "smollm2",
                    "Model used when a request names none (AIOS `llms: null`, OpenAI without `model`); a named model that is not served gets 404."),
                K_INT("llms.default_max_tokens", llms.default_max_tokens, 1, 1 << 20, "1000",
                      "max_tokens when a request gives none (the Cerebrum SDK sends 1000)."),
                K_INT(
                    "llms.allow_oversubscribe", llms.allow_oversubscribe, 0, 1, "0",
                    "1 lets the local models' decode threads (`threads`, 0 = every online CPU) total more than the online CPUs; by default that is a configuration error, since ggml's threads spin and models on shared cores slow each other down."),
                K_INT("llms.max_messages", llms.max_messages, 1, 1 << 20, "1024", "Most messages in one chat request."),
                K_LONG("llms.max_prompt_bytes", llms.max_prompt_bytes, 256, 1L << 30, "1048576",
                       "Largest rendered prompt (bytes) before tokenizing."),
                K_INT("llms.max_stop", llms.max_stop, 0, 64, "8", "Most stop strings per request."),
                K_INT("llms.max_n", llms.max_n, 1, 64, "8",
                      "Most choices (`n`) of one chat completion; they run side by side, sharing the prompt's KV."),
                K_ENUM("scheduler.policy", scheduler.policy, "fifo", "fifo|rr|priority|fair|agent",
                       "LLM scheduling policy: `fifo` (arrival order, no preemption), `rr` (round robin: a generation yields after `time_slice` tokens), `priority` (higher `priority` first, preempting lower), `fair` (least attained service per agent first), "
                       "`agent` (an agent's multi-turn program is the job: agents inside their programs first, new ones as places free; for mean completion time)."),
                K_INT("scheduler.max_active", scheduler.max_active, 1, 255, "16",
                      "Sequences decoded together in one batch; the rest wait in the run queue."),
                K_INT("scheduler.max_queue", scheduler.max_queue, 1, 1 << 20, "4096",
                      "Waiting requests per model before new ones get 503 (preempted requests do not count)."),
                K_INT("scheduler.time_slice", scheduler.time_slice, 1, 1 << 20, "32",
                      "Tokens a generation produces before `rr` or `fair` may preempt it for a waiting one."),
                K_INT(
                    "scheduler.deterministic", scheduler.deterministic, 0, 1, "0",
                    "1 = batch-invariant decoding: at temperature 0 a request's output is byte-identical to its solo run whatever runs beside it, preemption, parking or where its cells sit. "
                    "Steps are decoded in ubatches of exactly 16 rows (padded), all with logits, so llama.cpp's CPU kernels take one path for every row; "
                    "the KV cache is kept without holes, so each sequence attends over its cells in position order. Costs throughput (docs/architecture.md)."),
                K_INT("scheduler.fair_window_s", scheduler.fair_window_s, 1, 86400, "60",
                      "Length of the service window of `fair`, in seconds: per-agent service counts restart each window."),
                K_INT(
                    "scheduler.agent_hot_ms", scheduler.agent_hot_ms, 0, 86400000, "2000",
                    "`agent` policy: a turn that arrives within this many ms of its agent's last one continues the agent's program (goes ahead of agents that have not started); "
                    "its place is kept for twice its usual pause, at most this long."),
                K_INT(
                    "scheduler.starve_factor", scheduler.starve_factor, 1, 1 << 20, "16",
                    "`agent` policy: a waiting turn goes first once an equal share of the engine would have given it this many time slices meanwhile."),
                K_INT("scheduler.default_priority", scheduler.default_priority, AIOS_PRIORITY_MIN, AIOS_PRIORITY_MAX, "50",
                      "Priority of a request that gives none and whose agent has no `agents.<name>.priority`."),
                K_INT("scheduler.max_agents", scheduler.max_agents, 1, 1 << 20, "1024",
                      "Per-agent service records kept by the scheduler (idle agents' records are recycled)."),
                K_ENUM(
                    "context.mode", context.mode, "kv", "kv|text",
                    "How a preempted generation is saved: `kv` snapshots its KV state (llama_state_seq_get_data) and restores it exactly; `text` keeps its tokens and prefills prompt + partial output again."),
                K_INT(
                    "context.ram_budget_mb", context.ram_budget_mb, 0, 1 << 20, "1024",
                    "Host memory for KV snapshots (preempted generations and evicted conversations); older snapshots beyond it spill to files under the data dir."),
                K_INT(
                    "context.disk_budget_mb", context.disk_budget_mb, 0, 1 << 24, "8192",
                    "Disk for spilled snapshots; beyond it the oldest cached conversation snapshots are dropped (recomputed when needed) and a preempted generation falls back to text resume."),
                K_INT(
                    "context.park", context.park, 0, 1, "1",
                    "Preempt by parking: a preempted generation's KV stays in place under a spare cache sequence id (no copy) until it resumes or KV runs short; 0 = always snapshot. Parked neighbours enlarge the attention view, and llama.cpp's CPU attention picks its kernel by view size, so outside `scheduler.deterministic` only `0` gives outputs byte-identical to solo runs."),
                K_INT(
                    "context.cold_ms", context.cold_ms, 0, 1 << 30, "1000",
                    "A cached conversation nothing has used for this long leaves the KV cache for a snapshot of its own cells (RAM, then disk); "
                    "the prefix it shares stays resident with its parent. Each step then attends over the cells in use only; the next turn restores it. 0 = keep conversations resident until KV runs short."),
                K_INT(
                    "context.compact_min_cells", context.compact_min_cells, 0, 1 << 24, "512",
                    "Repack the KV cache (cells in use moved to the front, in their order) when that shrinks the attention view by at least this many cells: "
                    "llama.cpp attends over every cell up to the highest in use, so holes cost each step. At most ~5% of decode time goes to repacking; 0 = never."),
                K_INT(
                    "context.cache_entries", context.cache_entries, 0, 254, "32",
                    "Finished conversations and shared prompt prefixes kept resident in the KV cache for reuse (prefix sharing, conversation retention); 0 disables both. `scheduler.max_active` + this must be at most 255."),
                K_INT("context.snapshot_entries", context.snapshot_entries, 0, 1 << 16, "256",
                      "Evicted conversations kept as snapshots (RAM, then disk) for reuse."),
                K_INT(
                    "context.prefix_min_tokens", context.prefix_min_tokens, 1, 1 << 20, "16",
                    "Shortest prompt prefix worth reusing from the cache. A prompt found whole computes only its last token; like llama-server's prompt cache, that can round differently from a full prefill (`scheduler.deterministic` replays exactly)."),
                K_INT(
                    "context.verify_prefix", context.verify_prefix, 0, 1, "0",
                    "Self-check (slow; for tests): every prefix taken from the cache is compared byte for byte with a solo prefill of the same tokens; mismatches are counted on /metrics."),
                K_LONG(
                    "memory.limit_bytes", memory.limit_bytes, 0, 1L << 40, "67108864",
                    "Resident memory (content + metadata bytes) per agent; beyond it LRU-K evicts blocks to the store, and they are paged back in on access. Per agent: `agents.<name>.memory_limit_bytes`."),
                K_INT(
                    "memory.eviction_k", memory.eviction_k, 1, 8, "2",
                    "K of LRU-K: the evicted block is the one whose K-th most recent access is oldest (blocks with fewer than K accesses go first, least recently used among them)."),
                K_LONG("memory.max_item_bytes", memory.max_item_bytes, 16, 1L << 30, "65536",
                       "Largest memory block (content + metadata bytes); larger gets 413."),
                K_LONG("memory.max_items", memory.max_items, 1, 1L << 40, "1000000",
                       "Memory blocks per agent, resident or evicted; more gets 507."),
                K_INT("memory.max_agents", memory.max_agents, 1, 1 << 24, "4096",
                      "Agents with a memory space; a new agent beyond it gets 503."),
                K_INT("storage.max_versions", storage.max_versions, 1, 100000, "16",
                      "Versions kept per file (rollback reaches back this far); older ones are dropped at each write."),
                K_LONG(
                    "storage.max_file_bytes", storage.max_file_bytes, 0, 1L << 40, "1048576",
                    "Largest content of one write; larger gets 413 (request bodies are also capped by server.max_body_bytes)."),
                K_LONG("storage.quota_bytes", storage.quota_bytes, 0, 1L << 50, "1073741824",
                       "All kept versions of all files of one agent; a write beyond it gets 507."),
                K_LONG("storage.max_files", storage.max_files, 1, 1L << 40, "100000", "Files and directories per agent."),
                K_INT("storage.max_path_bytes", storage.max_path_bytes, 16, 1000, "1000",
                      "Longest normalised path (mount root included)."),
                K_ENUM(
                    "storage.synchronous", storage.synchronous, "normal", "normal|full",
                    "SQLite durability of memory and storage writes: `normal` (WAL; an acknowledged write survives the kernel being killed) or `full` (also fsync at every commit; survives power loss, slower)."),
                K_STR(
                    "storage.embedding_model", storage.embedding_model, "",
                    "GGUF embedding model for retrieval and /v1/embeddings. Empty = all-MiniLM-L6-v2 from the cache (`make model` fetches it) when present, else the chat model with mean pooling."),
                K_INT(
                    "storage.embed_batch_tokens", storage.embed_batch_tokens, 64, 1 << 16, "512",
                    "Tokens per embedding batch; also the longest text embedded (and at most the model's trained context: longer texts are truncated for the embedding, never for storage)."),
                K_INT(
                    "storage.embed_threads", storage.embed_threads, 0, 1024, "0",
                    "Threads for embedding; 0 = half the online CPUs (at least 1), leaving the rest to request handling and the chat engine."),
                K_INT(
                    "storage.embed_nice", storage.embed_nice, 0, 19, "10",
                    "Nice value of the embedding threads: bulk embedding yields the CPU to request handling and the chat engine."),
                K_INT("storage.embed_queue", storage.embed_queue, 1, 1 << 24, "65536",
                      "Texts waiting for embedding; a memory add beyond it gets 503."),
                K_INT(
                    "storage.embed_agent_queue", storage.embed_agent_queue, 1, 1 << 24, "4096",
                    "Texts one agent may have waiting for embedding; its memory adds and file writes beyond it get 503 (other agents are not affected). Agents' texts are embedded round robin."),
                K_INT("storage.retrieve_timeout_ms", storage.retrieve_timeout_ms, 0, 86400000, "30000", "A memory or storage retrieval must be served in this time (its query embedded and the agent's own pending texts indexed): one that the embedder's backlog alone would keep longer, at the rate it has been embedding, is refused at once with 503 (overloaded); one that still runs past it answers 504; both say why. 0 = no limit."),
                K_INT("storage.hnsw_m", storage.hnsw_m, 4, 128, "16", "HNSW links per vector (hnswlib M)."),
                K_INT("storage.hnsw_ef_search", storage.hnsw_ef_search, 8, 4096, "96",
                      "HNSW search beam (hnswlib ef); higher = better recall, slower."),
                K_INT("storage.exact_below", storage.exact_below, 0, 1 << 30, "2048",
                      "Below this many vectors an agent's index is a flat array that retrieval scans whole (exact, and cheaper "
                      "there); at it the HNSW graph is built, and dropped again under half of it."),
                K_INT("storage.max_k", storage.max_k, 1, 10000, "100", "Largest k (or n) of one memory or storage retrieval."),
                K_STR(
                    "tools.dir", tools.dir, "",
                    "Directory of tool manifests (one JSON file per tool); reloaded when it changes. Empty = only built-in and MCP tools."),
                K_STR("tools.workdir", tools.workdir, "",
                      "Where per-agent tool workdirs live (`<agent>/<tool>`). Empty = `<data_dir>/tools`."),
                K_LONG(
                    "tools.max_output_bytes", tools.max_output_bytes, 64, 1L << 30, "1048576",
                    "Most stdout bytes kept from one tool call; beyond it the tool is stopped, its output cut with a marker, and the call answers 413."),
                K_INT(
                    "tools.default_timeout_ms", tools.default_timeout_ms, 1, 86400000, "30000",
                    "Timeout of a tool call whose manifest gives no `timeout_ms`; the whole process group is killed and the call answers 408."),
                K_INT("tools.default_max_parallel", tools.default_max_parallel, 1, 100000, "8",
                      "Calls of one tool running at once when its manifest gives no `max_parallel`; the rest queue."),
                K_INT("tools.max_calls", tools.max_calls, 1, 1024, "16",
                      "Tool calls in one request (one tool query, or one LLM answer under `call_tool`)."),
                K_INT("tools.max_pending", tools.max_pending, 1, 1 << 20, "4096",
                      "Tool calls running or queued in all; more get 503."),
                K_INT("tools.cpu_seconds", tools.cpu_seconds, 1, 86400, "10",
                      "CPU-time limit (RLIMIT_CPU) of a process tool call; the manifest's `limits.cpu_seconds` overrides."),
                K_INT("tools.memory_mb", tools.memory_mb, 16, 1 << 20, "512",
                      "Address-space limit (RLIMIT_AS, MiB) of a process tool call; `limits.memory_mb` overrides."),
                K_INT("tools.file_size_mb", tools.file_size_mb, 0, 1 << 20, "64",
                      "Largest file a process tool may write (RLIMIT_FSIZE, MiB); `limits.file_size_mb` overrides."),
                K_INT(
                    "tools.max_procs", tools.max_procs, 1, 65536, "32",
                    "Processes of one tool call (RLIMIT_NPROC under its own uid; stops fork bombs); `limits.max_procs` overrides."),
                K_LONG(
                    "tools.sandbox_uid_base", tools.sandbox_uid_base, 0, 4000000000L, "200000",
                    "When the kernel runs as root, each running process tool call gets its own uid from base + slot, so per-call process limits hold; 0 = keep the kernel's uid."),
                K_INT("tools.mcp_timeout_ms", tools.mcp_timeout_ms, 100, 600000, "20000",
                      "How long an MCP server may take to start and answer the handshake and tools/list."),
                K_ENUM(
                    "access.mode", access.mode, "local", "local|enforce",
                    "`local`: loopback only; the AIOS envelope's `agent_name` (or a bearer token) names the agent. `enforce`: every route needs `Authorization: Bearer TOKEN` of an identity (`aios agent create`); required to bind beyond loopback."),
                K_INT("access.approval_timeout", access.approval_timeout_s, 1, 86400 * 7, "300",
                      "Seconds a call to an irreversible tool waits for `aios approve`; then it is denied."),
                K_INT(
                    "access.rate_limit", access.rate_limit, 0, 1000000, "0",
                    "Syscalls (LLM, memory, storage and tool requests) one agent may make per second, sustained; more get 429 with Retry-After. 0 = no limit."),
                K_INT(
                    "access.rate_burst", access.rate_burst, 1, 1000000, "20",
                    "Syscalls one agent may make at once above `access.rate_limit` before it applies (the token bucket's size)."),
                K_INT("access.max_approvals", access.max_approvals, 1, 1 << 20, "1024",
                      "Calls waiting for approval at once; more are denied at once."),
                K_STR("access.audit_file", access.audit_file, "",
                      "Audit log (JSON lines, append-only). Empty = `<data_dir>/audit.log`."),
                K_LONG("access.audit_max_bytes", access.audit_max_bytes, 4096, 1L << 40, "67108864",
                       "Size at which the audit log is rotated (`audit.log.1`, ...)."),
                K_INT("access.audit_keep", access.audit_keep, 1, 1000, "5", "Rotated audit files kept."),
                K_STR(
                    "access.default_group", access.default_group, "default",
                    "Group of an agent with no `agents.<name>.group` and no identity. Unless `access.groups` defines it, it may use every model and every tool."),
                K_STR("access.admin_group", access.admin_group, "admin",
                      "Group whose members may use the admin API (identities, approvals) in `enforce` mode."),
                K_INT(
                    "responses.max_stored", responses.max_stored, 1, 1 << 24, "1000",
                    "Responses one agent keeps stored (`store: true` on /v1/responses, for `previous_response_id` and GET); beyond it the oldest are dropped."),
                K_INT(
                    "responses.ttl_s", responses.ttl_s, 0, 1 << 30, "2592000",
                    "Age in seconds at which a stored response is dropped (30 days by default); 0 = kept until `responses.max_stored` pushes it out."),
                K_INT(
                    "kernel.workers", workers, 1, 256, "4",
                    "Worker threads of each worker resource's run queue (memory, storage; /v1/embeddings runs on memory's), off the HTTP thread: 2 x this in all."),
                K_INT("kernel.max_jobs", max_jobs, 1, 1 << 24, "4096",
                      "Operations waiting in one resource's run queue (memory, storage); more get 503."),
                K_INT(
                    "kernel.max_jobs_per_agent", max_jobs_per_agent, 1, 1 << 24, "1024",
                    "Operations one agent may have waiting in one resource's run queue; its next ones get 503 while other agents still get in."),
                K_STR(
                    "kernel.data_dir", data_dir, "",
                    "Directory for kernel state (created at start; used by the context and storage managers). Empty = $AIOS_CACHE/data (~/.cache/aios/data)."),
                K_ENUM("kernel.log_level", log_level, "info", "debug|info|warn|error",
                       "Least severe message logged: debug, info, warn or error."),
};
#define N_KEYS (sizeof KEYS / sizeof KEYS[0])

typedef struct model_field {
    const char *name;
    cfg_type type;
    size_t off, size;
    long min, max;
    const char *def, *doc;
} model_field;

#define M_STR(n, f, d, doc) \
    { n, CFG_STR, offsetof(aios_model_cfg, f), sizeof(((aios_model_cfg *)0)->f), 0, 0, d, doc }
#define M_INT(n, f, lo, hi, d, doc) \
    { n, CFG_INT, offsetof(aios_model_cfg, f), 0, lo, hi, d, doc }
static const model_field MODEL_FIELDS[] = {
    M_STR("name", name, "smollm2", "Name clients use (`model` in OpenAI requests, `llms[].name` in AIOS ones)."),
    M_STR(
        "backend", backend, "llamacpp",
        "LLM core: `llamacpp` (embedded, the GGUF at `path`) or `openai` (an OpenAI-compatible server at `hostname`: vLLM, SGLang, llama-server, Ollama's /v1, OpenAI; AIOS's names `vllm`, `sglang`, `ollama`, `deepseek`, `groq`, `lmstudio` and `google` mean `openai`) or `anthropic` (an Anthropic Messages server at `hostname`). `openai`, `anthropic`, `google`, `groq` and `deepseek` without `hostname` mean the provider's own API, with the key in OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, GROQ_API_KEY or DEEPSEEK_API_KEY (unset: the model is down, with the reason). See docs/models.md."),
    M_STR(
        "path", path, "(cache)",
        "GGUF file. Default: the fetched SmolLM2-135M-Instruct in the cache (`--model` / AIOS_MODEL override the first model)."),
    M_INT("ctx_size", ctx_size, 0, 1 << 20, "0",
          "Largest prompt + output of one request, in tokens; 0 = the model's trained context."),
    M_INT("kv_size", kv_size, 256, 1 << 22, "32768",
          "KV cache cells shared by all running sequences; a request starts only when its prompt + max_tokens fit."),
    M_INT("threads", threads, 0, 1024, "0", "Threads for llama_decode; 0 = online CPUs."),
    M_INT("batch_size", batch_size, 16, 1 << 16, "512",
          "Most tokens in one llama_decode step (decodes first, then prefill chunks)."),
    M_INT("prefill_chunk", prefill_chunk, 0, 1 << 16, "128",
          "Most prompt tokens in one step while other sequences are generating (chunked prefill: a long "
          "prompt is spread over steps so running streams keep their pace); 0 = up to `batch_size`."),
    M_STR(
        "chat_template_file", chat_template_file, "",
        "Jinja chat template file that replaces the model's own (as llama-server's `--chat-template-file`); every chat is then rendered with it. Empty = the model's template."),
    M_STR(
        "aliases", aliases, "",
        "Other names requests may give this model, comma-separated (YAML: a list), e.g. `gpt-4o,gpt-4o-mini`, so agents written for a cloud model run on this one. Listed by /v1/models; unique across all models' names and aliases."),
    M_STR(
        "hostname", hostname, "",
        "Remote backends: the server's base URL, with or without `/v1` (`http://127.0.0.1:8080`, `https://api.openai.com/v1`)."),
    M_STR("model", model, "", "Remote backends: the model id sent upstream. Empty = `name`."),
    M_STR(
        "api_key_env", api_key_env, "",
        "Remote backends: the environment variable holding the API key (sent as a bearer token; never logged or echoed). Empty = no key."),
    M_INT("max_inflight", max_inflight, 1, 4096, "8",
          "Remote backends: requests upstream at once; the rest wait in the model's run queue under `scheduler.policy`."),
    M_INT(
        "timeout_s", timeout_s, 1, 86400, "600",
        "Remote backends: longest one request may take upstream (also 10 s to connect, and at most 60 s without a byte); then 504."),
    M_INT(
        "first_token_timeout_s", first_token_timeout_s, 0, 86400, "0",
        "Remote backends: longest wait for the first byte of the answer (prompt processing upstream); then 504. 0 = `timeout_s`."),
    M_STR(
        "endpoints", endpoints, "",
        "Remote backends: replicas serving the same model, base URLs comma-separated (YAML: a list of URLs or of `{hostname: URL}`); replaces `hostname`. Requests go to the replica with the fewest outstanding (an agent keeps its replica, see `affinity`), at most `max_inflight` on each."),
    M_INT(
        "health_interval_s", health_interval_s, 0, 3600, "5",
        "Remote backends: seconds between active health checks of each endpoint (GET `health_path`); 0 = passive checks only (failed requests)."),
    M_STR(
        "health_path", health_path, "",
        "Remote backends: the path health checks GET (`/health` for llama-server and vLLM); empty = the dialect's `/v1/models`. Any answer below 500 but 408 and 429 means up."),
    M_INT(
        "retries", retries, 0, 10, "2",
        "Remote backends: retries of a request that failed before its first token was sent (connect errors, 429, 5xx): at once on another endpoint when one can take it, else on the same after an exponential backoff with jitter (100 ms, 200 ms, ...). Never after the first token."),
    M_INT(
        "breaker_failures", breaker_failures, 1, 1000, "3",
        "Remote backends: consecutive failed requests that open an endpoint's circuit breaker (a refused connection opens it at once); it is then out of rotation until a health check passes."),
    M_INT("breaker_open_s", breaker_open_s, 1, 3600, "5",
          "Remote backends: seconds an opened breaker keeps its endpoint out before health checks probe it back in."),
    M_INT(
        "affinity", affinity, 0, 1, "1",
        "Remote backends with several endpoints: 1 = an agent's requests go to the replica it was first given (its prefix cache keeps the conversation) while that replica is healthy and has room; 0 = each request to the least loaded."),
    M_INT(
        "idle_unload_s", idle_unload_s, 0, 86400 * 30, "0",
        "Unload the model after this many seconds without a request (its memory is freed; a remote model closes its connections); 0 = never. The next request loads it again (`load_on_request`)."),
    M_INT(
        "load_on_request", load_on_request, 0, 1, "1",
        "1: a request to a model that is unloaded (idle, or by an admin) or unloading waits while it is loaded; 0: it is answered 503 until `POST /models/load`."),
    M_INT(
        "gpu_layers", gpu_layers, 0, 10000, "0",
        "llama.cpp models: layers offloaded to the GPU (more than the model has = all); needs a build with a GPU backend (`make llama GPU=cuda`). 0 = CPU only."),
    M_INT("main_gpu", main_gpu, 0, 63, "0",
          "llama.cpp models: the GPU (index among ggml's GPU devices, as /status lists them) that holds the model."),
    M_STR(
        "gpu_fallback", gpu_fallback, "none",
        "llama.cpp models with `gpu_layers`: `none` = a model that cannot get its GPU (no GPU backend, no such device) stops the kernel (or fails its load) with the reason; `cpu` = it says so and runs on the CPU."),
    M_STR(
        "fallback", fallback, "",
        "A model (name or alias) that serves this model's requests while it is down (every endpoint out); its own fallback continues the chain."),
    M_STR("tool_format", tool_format, "auto",
          "How tool calls are written. `native`: in the template's own format (rendered and parsed by llama.cpp's common chat library; the template must describe tools). `json`: the kernel's format, a JSON array of calls, for any model. `auto`: native when the template has a tool-call format, else json."),
};
#define N_MODEL_FIELDS (sizeof MODEL_FIELDS / sizeof MODEL_FIELDS[0])

/* ---- setting one value ---- */

static int parse_long(const char *s, long lo, long hi, long *out, char *err, size_t errlen, const char *key) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    while (end && isspace((unsigned char)*end)) end++;
    if (errno || end == s || *end) {
        snprintf(err, errlen, "%s: expected an integer, got '%s'", key, s);
        return AIOS_ERR_CONFIG;
    }
    if (v < lo || v > hi) {
        snprintf(err, errlen, "%s: %ld is out of range [%ld, %ld]", key, v, lo, hi);
        return AIOS_ERR_CONFIG;
    }
    *out = v;
    return AIOS_OK;
}

static int set_field(void *base, cfg_type type, size_t off, size_t size, long lo, long hi, const char *key, const char *value,
                     char *err, size_t errlen) {
    char *p = (char *)base + off;
    if (type == CFG_STR) {
        if (strlen(value) >= size) {
            snprintf(err, errlen, "%s: value longer than %zu bytes", key, size - 1);
            return AIOS_ERR_CONFIG;
        }
        memcpy(p, value, strlen(value) + 1);
        return AIOS_OK;
    }
    long v;
    int rc = parse_long(value, lo, hi, &v, err, errlen, key);
    if (rc) return rc;
    if (type == CFG_INT) *(int *)p = (int)v;
    else *(long *)p = v;
    return AIOS_OK;
}

static const cfg_key *find_key(const char *name) {
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(KEYS[i].name, name) == 0) return &KEYS[i];
    return NULL;
}

static int set_model_field(aios_model_cfg *m, const char *field, const char *value, char *err, size_t errlen) {
    for (size_t i = 0; i < N_MODEL_FIELDS; i++) {
        const model_field *f = &MODEL_FIELDS[i];
        if (strcmp(f->name, field)) continue;
        char key[96];
        snprintf(key, sizeof key, "llms.models[].%s", field);
        return set_field(m, f->type, f->off, f->size, f->min, f->max, key, value, err, errlen);
    }
    snprintf(err, errlen, "llms.models[]: unknown field '%s'", field);
    return AIOS_ERR_CONFIG;
}

static void model_defaults(aios_model_cfg *m) {
    char err[64];
    for (size_t i = 0; i < N_MODEL_FIELDS; i++)
        if (strcmp(MODEL_FIELDS[i].name, "path")) set_model_field(m, MODEL_FIELDS[i].name, MODEL_FIELDS[i].def, err, sizeof err);
    config_default_model_path(m->path, sizeof m->path);
}

static int check_enum(const cfg_key *k, const char *value, char *err, size_t errlen);

/* "tokens_per_minute:N,tokens_per_day:N,requests_per_minute:N[,model:M]" as a budget of who
 * (an agent, or a group), appended to cfg->budgets. */
static int add_budget(aios_config *cfg, const char *who, size_t n, bool group, const char *spec, char *err, size_t errlen) {
    const char *what = group ? "groups" : "agents";
    if (cfg->n_budgets >= AIOS_MAX_BUDGETS) {
        snprintf(err, errlen, "%s.%.*s.budget: at most %d budgets in all", what, (int)n, who, AIOS_MAX_BUDGETS);
        return AIOS_ERR_CONFIG;
    }
    aios_budget_cfg b = {.group = group};
    memcpy(b.who, who, n);
    char item[AIOS_NAME_MAX + 32], key[AIOS_NAME_MAX + 64];
    snprintf(key, sizeof key, "%s.%.*s.budget", what, (int)n, who);
    for (int k = 0; config_list_at(spec, k, item, sizeof item); k++) {
        char *colon = strchr(item, ':');
        if (colon) *colon = 0;
        const char *v = colon ? colon + 1 : "";
        while (*v == ' ') v++;
        long *lim = !strcmp(item, "tokens_per_minute") ? &b.tokens_per_minute
            : !strcmp(item, "tokens_per_day")          ? &b.tokens_per_day
            : !strcmp(item, "requests_per_minute")     ? &b.requests_per_minute
                                                       : NULL;
        int rc = AIOS_OK;
        if (lim) rc = parse_long(v, 0, 1L << 50, lim, err, errlen, key);
        else if (!strcmp(item, "model") && *v && strlen(v) < sizeof b.model) snprintf(b.model, sizeof b.model, "%s", v);
        else {
            snprintf(err, errlen, "%s: '%.64s' is not one of tokens_per_minute, tokens_per_day, requests_per_minute, model", key,
                     item);
            rc = AIOS_ERR_CONFIG;
        }
        if (rc) return rc;
    }
    if (!b.tokens_per_minute && !b.tokens_per_day && !b.requests_per_minute) {
        snprintf(err, errlen, "%s: set tokens_per_minute, tokens_per_day or requests_per_minute", key);
        return AIOS_ERR_CONFIG;
    }
    cfg->budgets[cfg->n_budgets++] = b;
    return AIOS_OK;
}

/* "NAME.budget" of groups.<name>.budget */
static int set_group(aios_config *cfg, const char *rest, const char *value, char *err, size_t errlen) {
    const char *dot = strrchr(rest, '.');
    size_t n = dot ? (size_t)(dot - rest) : 0;
    if (!dot || n == 0 || n >= AIOS_NAME_MAX || strcmp(dot + 1, "budget")) {
        snprintf(err, errlen, "groups.%s: expected groups.<name>.budget (name 1 to %d bytes)", rest, AIOS_NAME_MAX - 1);
        return AIOS_ERR_CONFIG;
    }
    return add_budget(cfg, rest, n, true, value, err, errlen);
}

/* "NAME.priority" or "NAME.memory_limit_bytes" = value: per-agent settings (NAME may contain dots). */
static int set_agent(aios_config *cfg, const char *rest, const char *value, char *err, size_t errlen) {
    const char *dot = strrchr(rest, '.');
    size_t n = dot ? (size_t)(dot - rest) : 0;
    if (dot && n > 0 && n < AIOS_NAME_MAX && !strcmp(dot + 1, "budget"))
        return add_budget(cfg, rest, n, false, value, err, errlen);
    bool prio = dot && !strcmp(dot + 1, "priority"), mem = dot && !strcmp(dot + 1, "memory_limit_bytes");
    bool grp = dot && !strcmp(dot + 1, "group");
    if (!dot || n == 0 || n >= AIOS_NAME_MAX || (!prio && !mem && !grp)) {
        snprintf(err, errlen,
                 "agents.%s: expected agents.<name>.priority, .memory_limit_bytes, .group or .budget (name 1 to %d bytes)", rest,
                 AIOS_NAME_MAX - 1);
        return AIOS_ERR_CONFIG;
    }
    long v = 0;
    char key[AIOS_NAME_MAX + 40];
    snprintf(key, sizeof key, "agents.%s", rest);
    if (grp && (!*value || strlen(value) >= AIOS_NAME_MAX)) {
        snprintf(err, errlen, "%s: a group name of 1 to %d bytes", key, AIOS_NAME_MAX - 1);
        return AIOS_ERR_CONFIG;
    }
    int rc = grp ? AIOS_OK
        : prio   ? parse_long(value, AIOS_PRIORITY_MIN, AIOS_PRIORITY_MAX, &v, err, errlen, key)
                 : parse_long(value, 0, 1L << 40, &v, err, errlen, key);
    if (rc) return rc;
    int i = 0;
    while (i < cfg->n_agents && (strlen(cfg->agents[i].name) != n || strncmp(cfg->agents[i].name, rest, n))) i++;
    if (i == AIOS_MAX_AGENT_CFG) {
        snprintf(err, errlen, "agents: at most %d agents can be configured", AIOS_MAX_AGENT_CFG);
        return AIOS_ERR_CONFIG;
    }
    if (i == cfg->n_agents) {
        cfg->n_agents++;
        memcpy(cfg->agents[i].name, rest, n);
        cfg->agents[i].name[n] = 0;
        cfg->agents[i].priority = -1;
        cfg->agents[i].memory_limit = -1;
    }
    if (prio) cfg->agents[i].priority = (int)v;
    else if (mem) cfg->agents[i].memory_limit = v;
    else snprintf(cfg->agents[i].group, sizeof cfg->agents[i].group, "%s", value);
    return AIOS_OK;
}

/* "llms.models.<i>.<field>": a field of a configured model (--set). */
static int set_indexed_model(aios_config *cfg, const char *key, const char *value, char *err, size_t errlen) {
    char *end;
    long i = strtol(key, &end, 10);
    if (end == key || *end != '.' || i < 0 || i >= cfg->llms.n_models) {
        snprintf(err, errlen, "llms.models.%s: expected llms.models.<index>.<field> with an index below %d", key,
                 cfg->llms.n_models);
        return AIOS_ERR_CONFIG;
    }
    return set_model_field(&cfg->llms.models[i], end + 1, value, err, errlen);
}

int config_set(aios_config *cfg, const char *key, const char *value, char *err, size_t errlen) {
    if (strcmp(key, "llms.model") == 0 || strcmp(key, "model") == 0) /* shorthand: first model's path */
        return set_model_field(&cfg->llms.models[0], "path", value, err, errlen);
    if (strncmp(key, "llms.models.", 12) == 0) return set_indexed_model(cfg, key + 12, value, err, errlen);
    if (strncmp(key, "agents.", 7) == 0 && !find_key(key)) return set_agent(cfg, key + 7, value, err, errlen);
    if (strncmp(key, "groups.", 7) == 0) return set_group(cfg, key + 7, value, err, errlen);
    const cfg_key *k = find_key(key);
    if (!k) {
        snprintf(err, errlen, "unknown configuration key '%s' (see docs/config.md)", key);
        return AIOS_ERR_CONFIG;
    }
    if (k->allowed && check_enum(k, value, err, errlen)) return AIOS_ERR_CONFIG; /* before the length check */
    return set_field(cfg, k->type, k->off, k->size, k->min, k->max, k->name, value, err, errlen);
}

void config_default_model_path(char *out, size_t outlen) {
    const char *cache = getenv("AIOS_CACHE");
    const char *home = getenv("HOME");
    if (cache && *cache) snprintf(out, outlen, "%s/models/SmolLM2-135M-Instruct-Q8_0.gguf", cache);
    else snprintf(out, outlen, "%s/.cache/aios/models/SmolLM2-135M-Instruct-Q8_0.gguf", home ? home : ".");
}

void config_defaults(aios_config *cfg) {
    char err[128];
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < N_KEYS; i++) config_set(cfg, KEYS[i].name, KEYS[i].def, err, sizeof err);
    cfg->llms.n_models = 1;
    model_defaults(&cfg->llms.models[0]);
}

/* ---- YAML ---- */

static const char *scalar(yaml_document_t *doc, yaml_node_t *n) {
    (void)doc;
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int yaml_err(char *err, size_t errlen, const char *path, yaml_node_t *n, const char *what) {
    snprintf(err, errlen, "%s:%zu: %s", path, n ? n->start_mark.line + 1 : 0, what);
    return AIOS_ERR_CONFIG;
}

/* A YAML list of scalars (or of mappings with a `hostname`, as AIOS writes endpoints), joined
 * with commas into out; -1 when an item is neither or it does not fit. */
static int join_list(yaml_document_t *doc, yaml_node_t *seq, char *out, size_t cap) {
    size_t len = 0;
    out[0] = 0;
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
        yaml_node_t *item = yaml_document_get_node(doc, *it);
        const char *v = scalar(doc, item);
        for (yaml_node_pair_t *p = item && item->type == YAML_MAPPING_NODE ? item->data.mapping.pairs.start : NULL;
             p && p < item->data.mapping.pairs.top; p++) {
            const char *k = scalar(doc, yaml_document_get_node(doc, p->key));
            if (k && !strcmp(k, "hostname")) v = scalar(doc, yaml_document_get_node(doc, p->value));
        }
        if (!v || strchr(v, ',')) return -1;
        int n = snprintf(out + len, cap - len, "%s%s", len ? "," : "", v);
        if (n < 0 || (size_t)n >= cap - len) return -1;
        len += (size_t)n;
    }
    return 0;
}

/* One line of what an AIOS config.yaml became (printed by --check-config, logged at start). */
static void compat_note(aios_config *cfg, const char *fmt, ...) {
    if (cfg->n_compat >= (int)(sizeof cfg->compat / sizeof cfg->compat[0])) return;
    char line[sizeof cfg->compat[0]];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    memcpy(cfg->compat[cfg->n_compat++], line, sizeof line);
}

/* A cloud backend named without a server (as AIOS's config.yaml writes `backend: openai`):
 * the provider's OpenAI-compatible (or Messages) URL and the usual variable of its key. */
static void cloud_defaults(aios_model_cfg *m) {
    static const struct {
        const char *backend, *url, *key;
    } CLOUD[] = {
        {"openai", "https://api.openai.com/v1", "OPENAI_API_KEY"},
        {"anthropic", "https://api.anthropic.com", "ANTHROPIC_API_KEY"},
        {"google", "https://generativelanguage.googleapis.com/v1beta/openai", "GEMINI_API_KEY"},
        {"groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY"},
        {"deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"},
    };
    if (m->hostname[0] || m->endpoints[0]) return;
    for (size_t i = 0; i < sizeof CLOUD / sizeof CLOUD[0]; i++) {
        if (strcmp(m->backend, CLOUD[i].backend)) continue;
        snprintf(m->hostname, sizeof m->hostname, "%s", CLOUD[i].url);
        if (!m->api_key_env[0]) {
            snprintf(m->api_key_env, sizeof m->api_key_env, "%s", CLOUD[i].key);
            m->key_implicit = true;
        }
    }
}

static int load_models(aios_config *cfg, yaml_document_t *doc, yaml_node_t *seq, const char *path, char *err, size_t errlen) {
    if (seq->type != YAML_SEQUENCE_NODE) return yaml_err(err, errlen, path, seq, "llms.models: expected a list");
    int n = 0;
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
        yaml_node_t *m = yaml_document_get_node(doc, *it);
        if (!m || m->type != YAML_MAPPING_NODE)
            return yaml_err(err, errlen, path, m, "llms.models: each entry must be a mapping");
        if (n >= AIOS_MAX_MODELS) return yaml_err(err, errlen, path, m, "llms.models: too many models (at most 16)");
        aios_model_cfg *mc = &cfg->llms.models[n];
        memset(mc, 0, sizeof *mc);
        model_defaults(mc);
        for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
            yaml_node_t *kn = yaml_document_get_node(doc, p->key), *vn = yaml_document_get_node(doc, p->value);
            const char *k = scalar(doc, kn), *v = scalar(doc, vn);
            char joined[sizeof mc->endpoints];
            bool listed = k && (!strcmp(k, "aliases") || !strcmp(k, "endpoints"));
            if (listed && !v && vn && vn->type == YAML_SEQUENCE_NODE) { /* a list: joined */
                if (join_list(doc, vn, joined, sizeof joined)) {
                    char sub[160];
                    snprintf(sub, sizeof sub, "llms.models[].%s: a list of %s, %zu bytes in all", k,
                             strcmp(k, "aliases") ? "URLs (or {hostname: URL})" : "names", sizeof joined - 1);
                    return yaml_err(err, errlen, path, vn, sub);
                }
                v = joined;
            }
            if (!k || !v) return yaml_err(err, errlen, path, vn, "llms.models[]: fields must be scalars");
            char sub[256];
            if (set_model_field(mc, k, v, sub, sizeof sub)) return yaml_err(err, errlen, path, kn, sub);
        }
        char was[sizeof mc->hostname];
        snprintf(was, sizeof was, "%s", mc->hostname);
        cloud_defaults(mc);
        if (!was[0] && mc->hostname[0] && !mc->endpoints[0])
            compat_note(cfg, "%s:%zu: model '%s' (backend %s): %s, key from $%s", path, m->start_mark.line + 1, mc->name,
                        mc->backend, mc->hostname, mc->api_key_env);
        n++;
    }
    if (n == 0) return yaml_err(err, errlen, path, seq, "llms.models: the list is empty");
    cfg->llms.n_models = n;
    return AIOS_OK;
}

static int copy_scalar(char *dst, size_t size, const char *v, const char *what, const char *path, yaml_node_t *n, char *err,
                       size_t errlen) {
    char sub[160];
    if (!v) {
        snprintf(sub, sizeof sub, "%s: expected a scalar", what);
        return yaml_err(err, errlen, path, n, sub);
    }
    if (strlen(v) >= size) {
        snprintf(sub, sizeof sub, "%s: longer than %zu bytes", what, size - 1);
        return yaml_err(err, errlen, path, n, sub);
    }
    memcpy(dst, v, strlen(v) + 1);
    return AIOS_OK;
}

/* A YAML list of scalars into dst[max][size]. */
static int load_str_list(yaml_document_t *doc, yaml_node_t *seq, char (*dst)[256], int max, int *n, const char *what,
                         const char *path, char *err, size_t errlen) {
    if (seq->type != YAML_SEQUENCE_NODE) return yaml_err(err, errlen, path, seq, "expected a list");
    *n = 0;
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
        yaml_node_t *v = yaml_document_get_node(doc, *it);
        if (*n >= max) return yaml_err(err, errlen, path, v, "too many entries (at most 16)");
        int rc = copy_scalar(dst[(*n)++], 256, scalar(doc, v), what, path, v, err, errlen);
        if (rc) return rc;
    }
    return AIOS_OK;
}

/* ---- tools.mcp_servers ---- */

#define P_STR(n, f, d, doc) \
    { n, CFG_STR, offsetof(aios_mcp_cfg, f), sizeof(((aios_mcp_cfg *)0)->f), 0, 0, d, doc }
#define P_INT(n, f, lo, hi, d, doc) \
    { n, CFG_INT, offsetof(aios_mcp_cfg, f), 0, lo, hi, d, doc }
/* The scalar fields of one server; the lists (args, env, ro_paths) and `network` are read
 * by load_mcp_entry itself and documented in MCP_LIST_DOC. */
static const model_field MCP_FIELDS[] = {
    P_STR("name", name, "(required)", "Its tools are named `<name>/<tool>`; no `/`."),
    P_STR(
        "command", command, "(required)",
        "The server's executable: an absolute path, or a name found on the sandbox's PATH (`/usr/bin:/bin`). An absolute command outside `/usr` has its install directory (the parent of its `bin/`, else its own directory) bound read-only at the same path, e.g. a Python venv."),
    P_STR(
        "fs", fs, "workdir",
        "Its own directory `<tools.workdir>/.mcp/<name>` at `/work` (its cwd and HOME): `workdir` read-write, `ro` read-only, `none` absent (cwd `/`)."),
    P_INT("memory_mb", memory_mb, 16, 1 << 20, "tools.memory_mb", "Address-space limit (RLIMIT_AS, MiB) of the server."),
    P_INT("file_size_mb", file_size_mb, 0, 1 << 20, "tools.file_size_mb", "Largest file it may write (RLIMIT_FSIZE, MiB)."),
    P_INT(
        "max_procs", max_procs, 1, 65536, "tools.max_procs",
        "Processes and threads of the server (RLIMIT_NPROC), applied when it runs under a uid of its own (a root kernel with `tools.sandbox_uid_base`)."),
    P_STR(
        "group", group, "",
        "When set, only agents of this access group (or of `access.admin_group`) may call its tools (every tool named `<name>/...`); others get 403. Their group's rules must allow the tool too."),
};
#define N_MCP_FIELDS (sizeof MCP_FIELDS / sizeof MCP_FIELDS[0])

static const char *const MCP_LIST_DOC[][3] = {
    {"args", "[]", "Arguments after the command."},
    {"env", "{}",
     "Its environment besides `PATH=/usr/bin:/bin`, `HOME=/work` and `LANG=C.UTF-8` (which it may override): a mapping `{K: V}` or a list of `K=V`; at most 16. The kernel's own environment is never passed."},
    {"ro_paths", "[]",
     "More host directories bound read-only at the same path (at most 8). Neither these nor the install directory may hold or lie inside the data dir, the tools workdir root, a model file or the audit log, nor hold the cache dir (`$AIOS_CACHE`); such a server is not started."},
    {"network", "false",
     "`false`: a network namespace of its own (loopback only, nothing listening) and `socket(2)` refused by seccomp; `true`: the host's network."},
};

static int set_mcp_field(aios_mcp_cfg *m, const char *field, const char *value, char *err, size_t errlen) {
    for (size_t i = 0; i < N_MCP_FIELDS; i++) {
        const model_field *f = &MCP_FIELDS[i];
        if (strcmp(f->name, field)) continue;
        char key[96];
        snprintf(key, sizeof key, "tools.mcp_servers[].%s", field);
        if (!strcmp(field, "fs") && strcmp(value, "workdir") && strcmp(value, "ro") && strcmp(value, "none")) {
            snprintf(err, errlen, "%s: unknown value '%s' (allowed: workdir, ro, none)", key, value);
            return AIOS_ERR_CONFIG;
        }
        return set_field(m, f->type, f->off, f->size, f->min, f->max, key, value, err, errlen);
    }
    snprintf(err, errlen,
             "tools.mcp_servers[]: unknown field '%s' (allowed: name, command, args, env, ro_paths, fs, network, "
             "memory_mb, file_size_mb, max_procs, group)",
             field);
    return AIOS_ERR_CONFIG;
}

static void mcp_defaults(aios_mcp_cfg *m) {
    memset(m, 0, sizeof *m);
    snprintf(m->fs, sizeof m->fs, "workdir");
    m->memory_mb = m->file_size_mb = m->max_procs = -1;
}

/* env: {K: V} or ["K=V", ...] into m->env. */
static int load_mcp_env(aios_mcp_cfg *m, yaml_document_t *doc, yaml_node_t *vn, const char *path, char *err, size_t errlen) {
    static const char WHAT[] =
        "tools.mcp_servers[].env: a mapping {KEY: VALUE} or a list of KEY=VALUE, at most 16, each under 256 bytes";
    if (vn->type == YAML_SEQUENCE_NODE) {
        int rc = load_str_list(doc, vn, m->env, AIOS_MCP_MAX_ARGS, &m->n_env, "tools.mcp_servers[].env", path, err, errlen);
        for (int i = 0; !rc && i < m->n_env; i++)
            if (!strchr(m->env[i], '=') || m->env[i][0] == '=') rc = yaml_err(err, errlen, path, vn, WHAT);
        return rc;
    }
    if (vn->type != YAML_MAPPING_NODE) return yaml_err(err, errlen, path, vn, WHAT);
    m->n_env = 0;
    for (yaml_node_pair_t *q = vn->data.mapping.pairs.start; q < vn->data.mapping.pairs.top; q++) {
        const char *ek = scalar(doc, yaml_document_get_node(doc, q->key)),
                   *ev = scalar(doc, yaml_document_get_node(doc, q->value));
        if (!ek || !ev || !*ek || strchr(ek, '=') || m->n_env >= AIOS_MCP_MAX_ARGS || strlen(ek) + strlen(ev) + 2 > 256)
            return yaml_err(err, errlen, path, vn, WHAT);
        snprintf(m->env[m->n_env++], 256, "%s=%s", ek, ev);
    }
    return AIOS_OK;
}

/* ro_paths: absolute directories. */
static int load_mcp_ro_paths(aios_mcp_cfg *m, yaml_document_t *doc, yaml_node_t *vn, const char *path, char *err, size_t errlen) {
    if (vn->type != YAML_SEQUENCE_NODE) return yaml_err(err, errlen, path, vn, "tools.mcp_servers[].ro_paths: expected a list");
    m->n_ro_paths = 0;
    for (yaml_node_item_t *it = vn->data.sequence.items.start; it < vn->data.sequence.items.top; it++) {
        yaml_node_t *v = yaml_document_get_node(doc, *it);
        const char *s = scalar(doc, v);
        if (m->n_ro_paths >= AIOS_MCP_MAX_RO || !s || s[0] != '/')
            return yaml_err(err, errlen, path, v, "tools.mcp_servers[].ro_paths: at most 8 absolute paths");
        int rc =
            copy_scalar(m->ro_paths[m->n_ro_paths++], AIOS_PATH_MAX, s, "tools.mcp_servers[].ro_paths", path, v, err, errlen);
        if (rc) return rc;
    }
    return AIOS_OK;
}

static int load_mcp_field(aios_mcp_cfg *m, yaml_document_t *doc, const char *k, yaml_node_t *kn, yaml_node_t *vn,
                          const char *path, char *err, size_t errlen) {
    if (!strcmp(k, "args"))
        return load_str_list(doc, vn, m->args, AIOS_MCP_MAX_ARGS, &m->n_args, "tools.mcp_servers[].args", path, err, errlen);
    if (!strcmp(k, "env")) return load_mcp_env(m, doc, vn, path, err, errlen);
    if (!strcmp(k, "ro_paths")) return load_mcp_ro_paths(m, doc, vn, path, err, errlen);
    const char *v = scalar(doc, vn);
    if (!v) return yaml_err(err, errlen, path, vn, "tools.mcp_servers[]: expected a scalar value");
    if (!strcmp(k, "network")) {
        bool t = !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on"),
             f = !strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off");
        if (!t && !f) return yaml_err(err, errlen, path, vn, "tools.mcp_servers[].network: expected true or false");
        m->network = t;
        return AIOS_OK;
    }
    char sub[256];
    if (set_mcp_field(m, k, v, sub, sizeof sub)) return yaml_err(err, errlen, path, kn, sub);
    return AIOS_OK;
}

static int load_mcp_entry(aios_mcp_cfg *m, yaml_document_t *doc, yaml_node_t *map, const char *path, char *err, size_t errlen) {
    if (map->type != YAML_MAPPING_NODE)
        return yaml_err(err, errlen, path, map, "tools.mcp_servers: each entry must be a mapping");
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(doc, p->key), *vn = yaml_document_get_node(doc, p->value);
        const char *k = scalar(doc, kn);
        if (!k || !vn) return yaml_err(err, errlen, path, kn, "tools.mcp_servers[]: keys must be scalars");
        int rc = load_mcp_field(m, doc, k, kn, vn, path, err, errlen);
        if (rc) return rc;
    }
    if (!m->name[0] || !m->command[0] || strchr(m->name, '/'))
        return yaml_err(err, errlen, path, map, "tools.mcp_servers[]: needs a 'name' (without '/') and a 'command'");
    return AIOS_OK;
}

static int load_mcp(aios_config *cfg, yaml_document_t *doc, yaml_node_t *seq, const char *path, char *err, size_t errlen) {
    if (seq->type != YAML_SEQUENCE_NODE) return yaml_err(err, errlen, path, seq, "tools.mcp_servers: expected a list");
    cfg->tools.n_mcp = 0;
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
        yaml_node_t *m = yaml_document_get_node(doc, *it);
        if (cfg->tools.n_mcp >= AIOS_MAX_MCP) return yaml_err(err, errlen, path, m, "tools.mcp_servers: at most 8 servers");
        aios_mcp_cfg *mc = &cfg->tools.mcp[cfg->tools.n_mcp];
        mcp_defaults(mc);
        int rc = load_mcp_entry(mc, doc, m, path, err, errlen);
        if (rc) return rc;
        cfg->tools.n_mcp++;
    }
    return AIOS_OK;
}

/* access.groups: {GROUP: ["kind:pattern[:actions]", ...]} */
static int load_groups(aios_config *cfg, yaml_document_t *doc, yaml_node_t *map, const char *path, char *err, size_t errlen) {
    if (map->type != YAML_MAPPING_NODE)
        return yaml_err(err, errlen, path, map, "access.groups: expected a mapping of group names to rule lists");
    cfg->access.n_groups = 0;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(doc, p->key), *vn = yaml_document_get_node(doc, p->value);
        if (cfg->access.n_groups >= AIOS_MAX_GROUPS) return yaml_err(err, errlen, path, kn, "access.groups: at most 16 groups");
        aios_group_cfg *g = &cfg->access.groups[cfg->access.n_groups];
        memset(g, 0, sizeof *g);
        int rc = copy_scalar(g->name, sizeof g->name, scalar(doc, kn), "access.groups: group name", path, kn, err, errlen);
        if (rc) return rc;
        if (vn->type != YAML_SEQUENCE_NODE)
            return yaml_err(err, errlen, path, vn, "access.groups.<group>: expected a list of rules");
        for (yaml_node_item_t *it = vn->data.sequence.items.start; it < vn->data.sequence.items.top; it++) {
            yaml_node_t *r = yaml_document_get_node(doc, *it);
            if (g->n_rules >= AIOS_MAX_RULES) return yaml_err(err, errlen, path, r, "access.groups.<group>: at most 32 rules");
            if ((rc = copy_scalar(g->rules[g->n_rules++], AIOS_RULE_MAX, scalar(doc, r), "access.groups rule", path, r, err,
                                  errlen)))
                return rc;
        }
        cfg->access.n_groups++;
    }
    return AIOS_OK;
}

/* A YAML budget (a mapping, or a list of mappings) of `key` ("agents.NAME.budget"), each
 * mapping set as "k:v,k:v". */
static int load_budget(aios_config *cfg, yaml_document_t *doc, yaml_node_t *vn, const char *key, const char *path, char *err,
                       size_t errlen) {
    yaml_node_item_t one[1], *items = one, *top = one + 1;
    if (vn->type == YAML_SEQUENCE_NODE) items = vn->data.sequence.items.start, top = vn->data.sequence.items.top;
    else one[0] = (yaml_node_item_t)(vn - doc->nodes.start + 1);
    for (yaml_node_item_t *it = items; it < top; it++) {
        yaml_node_t *m = yaml_document_get_node(doc, *it);
        if (!m || m->type != YAML_MAPPING_NODE)
            return yaml_err(err, errlen, path, m, "budget: a mapping of limits, or a list of them");
        char spec[512] = "", sub[256];
        size_t len = 0;
        for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < m->data.mapping.pairs.top; q++) {
            const char *k = scalar(doc, yaml_document_get_node(doc, q->key)),
                       *v = scalar(doc, yaml_document_get_node(doc, q->value));
            if (!k || !v || strchr(v, ',')) return yaml_err(err, errlen, path, m, "budget: limits must be scalars");
            len += (size_t)snprintf(spec + len, len < sizeof spec ? sizeof spec - len : 0, "%s%s:%s", len ? "," : "", k, v);
        }
        if (len >= sizeof spec) return yaml_err(err, errlen, path, m, "budget: too long");
        if (config_set(cfg, key, spec, sub, sizeof sub)) return yaml_err(err, errlen, path, m, sub);
    }
    return AIOS_OK;
}

/* agents: {NAME: {priority: N, budget: {...}}, ...} -- per-agent defaults; groups: {NAME:
 * {budget: ...}} the same for groups (sect says which). */
static int load_agents(aios_config *cfg, yaml_document_t *doc, yaml_node_t *map, const char *path, char *err, size_t errlen,
                       const char *sect) {
    if (map->type != YAML_MAPPING_NODE) return yaml_err(err, errlen, path, map, "expected a mapping of agent or group names");
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *an = yaml_document_get_node(doc, p->key), *fields = yaml_document_get_node(doc, p->value);
        const char *agent = scalar(doc, an), *value = fields ? scalar(doc, fields) : NULL;
        char key[256], sub[256];
        snprintf(key, sizeof key, "%s.%s", sect, agent ? agent : "");
        if (agent && value && find_key(key)) { /* agents.dir, agents.max_running, ...: the kernel's own */
            if (config_set(cfg, key, value, sub, sizeof sub)) return yaml_err(err, errlen, path, an, sub);
            continue;
        }
        if (!agent || !fields || fields->type != YAML_MAPPING_NODE)
            return yaml_err(err, errlen, path, an, "each agent or group maps to its settings (priority, budget, ...)");
        for (yaml_node_pair_t *q = fields->data.mapping.pairs.start; q < fields->data.mapping.pairs.top; q++) {
            yaml_node_t *kn = yaml_document_get_node(doc, q->key), *vn = yaml_document_get_node(doc, q->value);
            const char *k = scalar(doc, kn), *v = scalar(doc, vn);
            snprintf(key, sizeof key, "%s.%s.%s", sect, agent, k ? k : "");
            if (k && !v && vn && !strcmp(k, "budget")) {
                int rc = load_budget(cfg, doc, vn, key, path, err, errlen);
                if (rc) return rc;
                continue;
            }
            if (!k || !v) return yaml_err(err, errlen, path, kn, "agents: settings must be scalars");
            if (config_set(cfg, key, v, sub, sizeof sub)) return yaml_err(err, errlen, path, kn, sub);
        }
    }
    return AIOS_OK;
}

/* Keys of AIOS's own config.yaml (aios/config/config.yaml.example) that are not aiosd's:
 * mapped to an aiosd key, or accepted and reported as ignored with the reason, so one file
 * serves both kernels. Sections are the entries without a dot. */
static const struct {
    const char *key, *maps_to, *why;
} AIOS_KEYS[] = {
    {"storage.root_dir", "kernel.data_dir", NULL},
    {"llms.log_mode", NULL, "aiosd logs to stderr at kernel.log_level"},
    {"llms.use_context_manager", NULL, "aiosd's context manager is always on (context.mode)"},
    {"memory.log_mode", NULL, "aiosd logs to stderr at kernel.log_level"},
    {"storage.use_vector_db", NULL, "semantic retrieval over memory and storage is always on"},
    {"scheduler.log_mode", NULL, "aiosd logs to stderr at kernel.log_level"},
    {"agent_factory", NULL, "agents are processes the kernel runs; AIOS's agent factory has no counterpart"},
    {"api_keys", NULL,
     "keys come from environment variables (llms.models[].api_key_env; OPENAI_API_KEY, "
     "ANTHROPIC_API_KEY, GEMINI_API_KEY, GROQ_API_KEY, DEEPSEEK_API_KEY by default)"},
};

/* An AIOS key (section.key, or a section): mapped (set) or ignored, noted once with its
 * place; -1 when key is not one of them. */
static int aios_key(aios_config *cfg, const char *key, const char *v, const char *path, yaml_node_t *n, char *err,
                    size_t errlen) {
    for (size_t i = 0; i < sizeof AIOS_KEYS / sizeof AIOS_KEYS[0]; i++) {
        if (strcmp(AIOS_KEYS[i].key, key)) continue;
        size_t line = n ? n->start_mark.line + 1 : 0;
        if (AIOS_KEYS[i].maps_to) {
            char sub[256];
            if (!v) return yaml_err(err, errlen, path, n, "expected a scalar value");
            if (config_set(cfg, AIOS_KEYS[i].maps_to, v, sub, sizeof sub)) return yaml_err(err, errlen, path, n, sub);
            compat_note(cfg, "%s:%zu: AIOS's %s mapped to %s = %s", path, line, key, AIOS_KEYS[i].maps_to, v);
        } else {
            compat_note(cfg, "%s:%zu: AIOS's %s ignored: %s", path, line, key, AIOS_KEYS[i].why);
        }
        return AIOS_OK;
    }
    return -1;
}

static int load_section(aios_config *cfg, yaml_document_t *doc, const char *sect, yaml_node_t *map, const char *path, char *err,
                        size_t errlen) {
    if (map->type != YAML_MAPPING_NODE) return yaml_err(err, errlen, path, map, "expected a mapping under a section");
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(doc, p->key), *vn = yaml_document_get_node(doc, p->value);
        const char *k = scalar(doc, kn);
        if (!k) return yaml_err(err, errlen, path, kn, "keys must be scalars");
        char full[128], sub[256];
        snprintf(full, sizeof full, "%s.%s", sect, k);
        int (*list_loader)(aios_config *, yaml_document_t *, yaml_node_t *, const char *, char *, size_t) =
            !strcmp(full, "llms.models")         ? load_models
            : !strcmp(full, "tools.mcp_servers") ? load_mcp
            : !strcmp(full, "access.groups")     ? load_groups
                                                 : NULL;
        if (list_loader) {
            int rc = list_loader(cfg, doc, vn, path, err, errlen);
            if (rc) return rc;
            continue;
        }
        const char *v = scalar(doc, vn);
        int arc = aios_key(cfg, full, v, path, kn, err, errlen);
        if (arc >= 0) {
            if (arc) return arc;
            continue;
        }
        if (!v) return yaml_err(err, errlen, path, vn, "expected a scalar value");
        if (config_set(cfg, full, v, sub, sizeof sub)) return yaml_err(err, errlen, path, kn, sub);
    }
    return AIOS_OK;
}

/* A file that lists models but leaves llms.default_model at its built-in value, which names
 * none of them (AIOS's config.yaml has no default): the first model is the default. */
static void default_model_of_file(aios_config *cfg, const char *path) {
    if (config_model_index(cfg, cfg->llms.default_model) >= 0 || strcmp(cfg->llms.default_model, "smollm2")) return;
    memcpy(cfg->llms.default_model, cfg->llms.models[0].name, sizeof cfg->llms.default_model);
    compat_note(cfg, "%s: no llms.default_model: the first model, '%s'", path, cfg->llms.default_model);
}

int config_load_file(aios_config *cfg, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return AIOS_ERR_CONFIG;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    int rc = AIOS_OK;
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, errlen, "%s:%zu: YAML error: %s", path, parser.problem_mark.line + 1,
                 parser.problem ? parser.problem : "unknown");
        yaml_parser_delete(&parser);
        fclose(f);
        return AIOS_ERR_CONFIG;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && root->type != YAML_MAPPING_NODE)
        rc = yaml_err(err, errlen, path, root, "top level must be a mapping of sections");
    for (yaml_node_pair_t *p = root && !rc ? root->data.mapping.pairs.start : NULL; p && p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(&doc, p->key), *vn = yaml_document_get_node(&doc, p->value);
        const char *s = scalar(&doc, kn);
        if (!s) {
            rc = yaml_err(err, errlen, path, kn, "section names must be scalars");
            break;
        }
        if (aios_key(cfg, s, NULL, path, kn, err, errlen) >= 0) continue; /* agent_factory, api_keys */
        if (strcmp(s, "agents") == 0 || strcmp(s, "groups") == 0) {
            if ((rc = load_agents(cfg, &doc, vn, path, err, errlen, s))) break;
            continue;
        }
        if (strcmp(s, "server") && strcmp(s, "llms") && strcmp(s, "scheduler") && strcmp(s, "context") && strcmp(s, "memory") &&
            strcmp(s, "storage") && strcmp(s, "kernel") && strcmp(s, "tools") && strcmp(s, "access") && strcmp(s, "responses")) {
            char what[200];
            snprintf(
                what, sizeof what,
                "unknown section '%s' (allowed: server, llms, scheduler, context, memory, storage, tools, access, responses, agents, groups, kernel)",
                s);
            rc = yaml_err(err, errlen, path, kn, what);
            break;
        }
        if ((rc = load_section(cfg, &doc, s, vn, path, err, errlen))) break;
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(f);
    if (!rc) default_model_of_file(cfg, path);
    return rc;
}

/* ---- environment ---- */

static void env_name(const char *key, char *out, size_t outlen) {
    size_t j = (size_t)snprintf(out, outlen, "AIOS_");
    for (const char *p = key; *p && j + 1 < outlen; p++) out[j++] = *p == '.' ? '_' : (char)toupper((unsigned char)*p);
    out[j] = 0;
}

int config_load_env(aios_config *cfg, const char *(*get)(const char *), char *err, size_t errlen) {
    char name[96];
    for (size_t i = 0; i < N_KEYS; i++) {
        env_name(KEYS[i].name, name, sizeof name);
        const char *v = get(name);
        if (!v) continue;
        char sub[256];
        if (config_set(cfg, KEYS[i].name, v, sub, sizeof sub)) {
            snprintf(err, errlen, "%s: %s", name, sub);
            return AIOS_ERR_CONFIG;
        }
    }
    static const char *const ALIASES[][2] = {{"AIOS_MODEL", "llms.model"},
                                             {"AIOS_HOST", "server.host"},
                                             {"AIOS_PORT", "server.port"},
                                             {"AIOS_DATA_DIR", "kernel.data_dir"}};
    for (size_t i = 0; i < sizeof ALIASES / sizeof ALIASES[0]; i++) {
        const char *v = get(ALIASES[i][0]);
        char sub[256];
        if (v && config_set(cfg, ALIASES[i][1], v, sub, sizeof sub)) {
            snprintf(err, errlen, "%s: %s", ALIASES[i][0], sub);
            return AIOS_ERR_CONFIG;
        }
    }
    return AIOS_OK;
}

/* ---- validation and lookup ---- */

/* 0 if value is one of k->allowed ("a|b|c"); else err names the key and the allowed values. */
static int check_enum(const cfg_key *k, const char *value, char *err, size_t errlen) {
    size_t n = strlen(value);
    for (const char *a = k->allowed; *a;) {
        const char *bar = strchr(a, '|');
        size_t len = bar ? (size_t)(bar - a) : strlen(a);
        if (len == n && strncmp(a, value, n) == 0) return 0;
        a += len + (bar ? 1 : 0);
    }
    char list[128];
    size_t j = 0;
    for (const char *c = k->allowed; *c && j + 3 < sizeof list; c++) {
        if (*c == '|') list[j++] = ',', list[j++] = ' ';
        else list[j++] = *c;
    }
    list[j] = 0;
    snprintf(err, errlen, "%s: unknown value '%s' (allowed: %s)", k->name, value, list);
    return AIOS_ERR_CONFIG;
}

/* The local models' decode threads must fit the online CPUs (llms.allow_oversubscribe). */
static int check_threads(const aios_config *cfg, char *err, size_t errlen) {
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    long total = 0;
    int local = 0;
    if (ncpu < 1 || cfg->llms.allow_oversubscribe) return AIOS_OK;
    for (int i = 0; i < cfg->llms.n_models; i++)
        if (!strcmp(cfg->llms.models[i].backend, "llamacpp")) {
            total += cfg->llms.models[i].threads > 0 ? cfg->llms.models[i].threads : ncpu;
            local++;
        }
    if (total <= ncpu) return AIOS_OK;
    snprintf(err, errlen,
             "llms.models: the %d local model%s decode threads total %ld on %ld online CPUs (threads 0 = all of "
             "them); give each model its own `threads`, or set llms.allow_oversubscribe: 1",
             local, local == 1 ? "'s" : "s'", total, ncpu);
    return AIOS_ERR_CONFIG;
}

/* Each alias of model i: a plain name (no control bytes), not a name or alias of another model. */
static int check_aliases(const aios_config *cfg, int i, char *err, size_t errlen) {
    const aios_model_cfg *m = &cfg->llms.models[i];
    char a[sizeof m->aliases];
    for (int k = 0; config_model_alias_at(m, k, a, sizeof a); k++) {
        if (strlen(a) >= AIOS_NAME_MAX) {
            snprintf(err, errlen, "llms.models[%d].aliases: '%.64s...' is longer than %d bytes", i, a, AIOS_NAME_MAX - 1);
            return AIOS_ERR_CONFIG;
        }
        for (int j = 0; j < cfg->llms.n_models; j++) {
            const aios_model_cfg *o = &cfg->llms.models[j];
            if ((j != i && config_model_alias(o, a)) || !strcmp(o->name, a)) {
                snprintf(err, errlen, "llms.models[%d].aliases: '%s' already names model '%s'", i, a, o->name);
                return AIOS_ERR_CONFIG;
            }
        }
    }
    return AIOS_OK;
}

/* A remote model's endpoints: 1 to AIOS_MAX_ENDPOINTS http(s) URLs, no two the same. */
static int check_endpoints(const aios_model_cfg *m, int i, char *err, size_t errlen) {
    char u[AIOS_PATH_MAX], v[AIOS_PATH_MAX];
    int k = 0;
    for (; config_model_endpoint_at(m, k, u, sizeof u); k++) {
        if (k >= AIOS_MAX_ENDPOINTS) {
            snprintf(err, errlen, "llms.models[%d].endpoints: more than %d", i, AIOS_MAX_ENDPOINTS);
            return AIOS_ERR_CONFIG;
        }
        if (strncmp(u, "http://", 7) && strncmp(u, "https://", 8)) {
            snprintf(err, errlen, "llms.models[%d].endpoints: '%.200s' is not an http:// or https:// URL", i, u);
            return AIOS_ERR_CONFIG;
        }
        for (int j = 0; j < k && config_model_endpoint_at(m, j, v, sizeof v); j++)
            if (!strcmp(u, v)) {
                snprintf(err, errlen, "llms.models[%d].endpoints: '%.200s' is listed twice", i, u);
                return AIOS_ERR_CONFIG;
            }
    }
    if (k == 0) {
        snprintf(err, errlen, "llms.models[%d].endpoints: the list is empty", i);
        return AIOS_ERR_CONFIG;
    }
    return AIOS_OK;
}

/* Model i's fallback chain names models that exist and never comes back round. */
static int check_fallback(const aios_config *cfg, int i, char *err, size_t errlen) {
    int cur = i;
    for (int hops = 0; cfg->llms.models[cur].fallback[0]; hops++) {
        const char *f = cfg->llms.models[cur].fallback;
        int next = config_model_index(cfg, f);
        if (next < 0) {
            snprintf(err, errlen, "llms.models[%d].fallback: no model is named '%s'", cur, f);
            return AIOS_ERR_CONFIG;
        }
        if (next == i || hops >= cfg->llms.n_models) {
            snprintf(err, errlen, "llms.models[%d].fallback: the chain from model '%s' comes back round to '%s'", i,
                     cfg->llms.models[i].name, cfg->llms.models[next].name);
            return AIOS_ERR_CONFIG;
        }
        cur = next;
    }
    return AIOS_OK;
}

int config_validate(const aios_config *cfg, char *err, size_t errlen) {
    for (size_t i = 0; i < N_KEYS; i++)
        if (KEYS[i].allowed && check_enum(&KEYS[i], (const char *)cfg + KEYS[i].off, err, errlen)) return AIOS_ERR_CONFIG;
    if (cfg->scheduler.max_active + cfg->context.cache_entries > 255) {
        snprintf(err, errlen, "scheduler.max_active (%d) + context.cache_entries (%d) must be at most 255 (llama.cpp sequences)",
                 cfg->scheduler.max_active, cfg->context.cache_entries);
        return AIOS_ERR_CONFIG;
    }
    if (!strcmp(cfg->access.mode, "local") && !config_host_is_loopback(cfg->server.host)) {
        snprintf(err, errlen, "server.host: '%s' is beyond loopback; that needs access.mode: enforce (tokens on every route)",
                 cfg->server.host);
        return AIOS_ERR_CONFIG;
    }
    const char *cg = cfg->procs.cgroup;
    if (strcmp(cg, "auto") && strcmp(cg, "off") && cg[0] != '/') {
        snprintf(err, errlen, "agents.cgroup: '%s' is not auto, off or an absolute path", cg);
        return AIOS_ERR_CONFIG;
    }
    for (int i = 0; i < cfg->tools.n_mcp; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(cfg->tools.mcp[i].name, cfg->tools.mcp[j].name)) {
                snprintf(err, errlen, "tools.mcp_servers[%d].name: duplicate server name '%s'", i, cfg->tools.mcp[i].name);
                return AIOS_ERR_CONFIG;
            }
    int rc;
    for (int i = 0; i < cfg->llms.n_models; i++) {
        const aios_model_cfg *m = &cfg->llms.models[i];
        static const char *const BACKENDS[] = {"llamacpp", "openai", "anthropic", "vllm",   "sglang", "ollama",
                                               "deepseek", "groq",   "lmstudio",  "google", NULL};
        int b = 0;
        while (BACKENDS[b] && strcmp(BACKENDS[b], m->backend)) b++;
        if (!BACKENDS[b]) {
            snprintf(err, errlen,
                     "llms.models[%d].backend: unknown backend '%s' (allowed: llamacpp, openai, anthropic, vllm, "
                     "sglang, ollama, deepseek, groq, lmstudio, google)",
                     i, m->backend);
            return AIOS_ERR_CONFIG;
        }
        if (b > 0 && !m->hostname[0] && !m->endpoints[0]) {
            snprintf(err, errlen, "llms.models[%d].hostname: backend '%s' needs the server's URL (or `endpoints`)", i,
                     m->backend);
            return AIOS_ERR_CONFIG;
        }
        if (b > 0 && (rc = check_endpoints(m, i, err, errlen))) return rc;
        if (!m->name[0]) {
            snprintf(err, errlen, "llms.models[%d].name: must not be empty", i);
            return AIOS_ERR_CONFIG;
        }
        if (strcmp(m->gpu_fallback, "none") && strcmp(m->gpu_fallback, "cpu")) {
            snprintf(err, errlen, "llms.models[%d].gpu_fallback: '%s' is not one of none, cpu", i, m->gpu_fallback);
            return AIOS_ERR_CONFIG;
        }
        if (strcmp(m->tool_format, "auto") && strcmp(m->tool_format, "native") && strcmp(m->tool_format, "json")) {
            snprintf(err, errlen, "llms.models[%d].tool_format: '%s' is not one of auto, native, json", i, m->tool_format);
            return AIOS_ERR_CONFIG;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(cfg->llms.models[j].name, m->name) == 0 || config_model_alias(&cfg->llms.models[j], m->name)) {
                snprintf(err, errlen, "llms.models[%d].name: '%s' already names model '%s'", i, m->name,
                         cfg->llms.models[j].name);
                return AIOS_ERR_CONFIG;
            }
        rc = check_aliases(cfg, i, err, errlen);
        if (rc) return rc;
    }
    for (int i = 0; i < cfg->llms.n_models; i++)
        if ((rc = check_fallback(cfg, i, err, errlen))) return rc;
    for (int i = 0; i < cfg->n_budgets; i++)
        if (cfg->budgets[i].model[0] && config_model_index(cfg, cfg->budgets[i].model) < 0) {
            snprintf(err, errlen, "%s.%s.budget: no model is named '%s'", cfg->budgets[i].group ? "groups" : "agents",
                     cfg->budgets[i].who, cfg->budgets[i].model);
            return AIOS_ERR_CONFIG;
        }
    return check_threads(cfg, err, errlen);
}

bool config_model_alias_at(const aios_model_cfg *m, int k, char *out, size_t cap) {
    return config_list_at(m->aliases, k, out, cap);
}

bool config_model_endpoint_at(const aios_model_cfg *m, int k, char *out, size_t cap) {
    if (m->endpoints[0]) return config_list_at(m->endpoints, k, out, cap);
    if (k || !m->hostname[0]) return false;
    snprintf(out, cap, "%s", m->hostname);
    return true;
}

bool config_list_at(const char *list, int k, char *out, size_t cap) {
    const char *p = list;
    for (int i = 0;; i++) {
        p += strspn(p, ", ");
        if (!*p) return false;
        size_t n = strcspn(p, ","), t = n;
        while (t && p[t - 1] == ' ') t--;
        if (i == k) {
            snprintf(out, cap, "%.*s", (int)t, p);
            return true;
        }
        p += n;
    }
}

bool config_model_alias(const aios_model_cfg *m, const char *name) {
    char a[sizeof m->aliases];
    for (int k = 0; config_model_alias_at(m, k, a, sizeof a); k++)
        if (!strcmp(a, name)) return true;
    return false;
}

int config_n_models(const aios_config *cfg) { return __atomic_load_n(&cfg->llms.n_models, __ATOMIC_ACQUIRE); }

int config_model_index(const aios_config *cfg, const char *name) {
    if (!name || !*name) name = cfg->llms.default_model;
    int n = config_n_models(cfg);
    for (int i = 0; i < n; i++)
        if (strcmp(cfg->llms.models[i].name, name) == 0) return i;
    for (int i = 0; i < n; i++)
        if (config_model_alias(&cfg->llms.models[i], name)) return i;
    return -1;
}

int config_model_add(aios_config *cfg, const char *const *keys, const char *const *values, int n, char *err, size_t errlen) {
    int i = config_n_models(cfg);
    if (i >= AIOS_MAX_MODELS) {
        snprintf(err, errlen, "llms.models: already %d models, the most a kernel serves", AIOS_MAX_MODELS);
        return AIOS_ERR_INVALID;
    }
    aios_config *trial = malloc(sizeof *trial); /* the whole config with the new model, validated as a whole */
    if (!trial) return AIOS_ERR_NOMEM;
    memcpy(trial, cfg, sizeof *trial);
    aios_model_cfg *m = &trial->llms.models[i];
    memset(m, 0, sizeof *m);
    model_defaults(m);
    int rc = AIOS_OK;
    for (int k = 0; k < n && !rc; k++) rc = set_model_field(m, keys[k], values[k], err, errlen);
    trial->llms.n_models = i + 1;
    if (!rc) rc = config_validate(trial, err, errlen);
    if (!rc) {
        cfg->llms.models[i] = *m; /* readers see it only once the count says so */
        __atomic_store_n(&cfg->llms.n_models, i + 1, __ATOMIC_RELEASE);
    }
    free(trial);
    return rc ? (rc == AIOS_ERR_CONFIG ? AIOS_ERR_INVALID : rc) : i;
}

const aios_model_cfg *config_model(const aios_config *cfg, const char *name) {
    int i = config_model_index(cfg, name);
    return i < 0 ? NULL : &cfg->llms.models[i];
}

int config_write_reference(const char *path) {
    FILE *f = strcmp(path, "-") ? fopen(path, "w") : stdout;
    if (!f) return AIOS_ERR_IO;
    char env[96];
    fprintf(f, "| key | default | environment | meaning |\n|---|---|---|---|\n");
    for (size_t i = 0; i < N_KEYS; i++) {
        env_name(KEYS[i].name, env, sizeof env);
        fprintf(f, "| `%s` | `%s` | `%s` | %s |\n", KEYS[i].name, KEYS[i].def, env, KEYS[i].doc);
    }
    fprintf(
        f,
        "| `agents.<name>.priority` | (none) | (`--set` or YAML `agents:`) | Default priority of one agent's requests, in [%d, %d]; YAML: `agents: {planner: {priority: 80}}`. |\n",
        AIOS_PRIORITY_MIN, AIOS_PRIORITY_MAX);
    fprintf(
        f,
        "| `agents.<name>.memory_limit_bytes` | (none) | (`--set` or YAML `agents:`) | Resident memory limit of one agent, overriding `memory.limit_bytes`. |\n");
    fprintf(
        f,
        "| `agents.<name>.budget` | (none) | (`--set` or YAML `agents:`) | A budget of one agent across every door: `tokens_per_minute`, `tokens_per_day`, `requests_per_minute` (0 = no limit), optionally for one `model` (else all models together); YAML: `agents: {planner: {budget: {tokens_per_minute: 20000, model: gpt-4o}}}` or a list of such mappings; `--set agents.planner.budget=tokens_per_minute:20000,model:gpt-4o` adds one. Over it: 429 with Retry-After naming the budget (docs/models.md). |\n");
    fprintf(
        f,
        "| `groups.<name>.budget` | (none) | (`--set` or YAML `groups:`) | The same for all the agents of a group together (YAML: `groups: {interns: {budget: {...}}}`). |\n");
    fprintf(
        f,
        "| `agents.<name>.group` | (none) | (`--set` or YAML `agents:`) | Privilege group of an agent named by `agent_name` in `local` mode (identities carry their own group). |\n");
    fprintf(
        f,
        "| `tools.mcp_servers` | `[]` | (YAML only) | MCP servers started over stdio, each in a sandbox (docs/tools.md): `[{name, command, args: [...], env: {K: V}, ...}]` (fields below); their tools are named `<name>/<tool>`. |\n");
    fprintf(
        f,
        "| `access.groups` | (none) | (YAML only) | Privilege groups: `{GROUP: [RULE, ...]}`, a rule being `kind:pattern[:actions]`, or `!kind:pattern[:actions]` to deny (see docs/access.md). |\n");
    fprintf(f,
            "\nEach entry of `llms.models` (a list) has these fields (on the command line: `--set "
            "llms.models.<index>.<field>=value`, e.g. `llms.models.0.tool_format=json`):\n\n"
            "| field | default | meaning |\n|---|---|---|\n");
    for (size_t i = 0; i < N_MODEL_FIELDS; i++)
        fprintf(f, "| `%s` | `%s` | %s |\n", MODEL_FIELDS[i].name, MODEL_FIELDS[i].def, MODEL_FIELDS[i].doc);
    fprintf(f,
            "\nEach entry of `tools.mcp_servers` (a list) has these fields:\n\n| field | default | meaning |\n|---|---|---|\n");
    for (size_t i = 0; i < N_MCP_FIELDS; i++)
        fprintf(f, "| `%s` | `%s` | %s |\n", MCP_FIELDS[i].name, MCP_FIELDS[i].def, MCP_FIELDS[i].doc);
    for (size_t i = 0; i < sizeof MCP_LIST_DOC / sizeof MCP_LIST_DOC[0]; i++)
        fprintf(f, "| `%s` | `%s` | %s |\n", MCP_LIST_DOC[i][0], MCP_LIST_DOC[i][1], MCP_LIST_DOC[i][2]);
    if (f != stdout) fclose(f);
    return AIOS_OK;
}

int config_agent_priority(const aios_config *cfg, const char *agent) {
    for (int i = 0; agent && i < cfg->n_agents; i++)
        if (strcmp(cfg->agents[i].name, agent) == 0 && cfg->agents[i].priority >= 0) return cfg->agents[i].priority;
    return cfg->scheduler.default_priority;
}

const char *config_agent_group(const aios_config *cfg, const char *agent) {
    for (int i = 0; agent && i < cfg->n_agents; i++)
        if (strcmp(cfg->agents[i].name, agent) == 0 && cfg->agents[i].group[0]) return cfg->agents[i].group;
    return cfg->access.default_group;
}

const aios_group_cfg *config_group(const aios_config *cfg, const char *name) {
    for (int i = 0; name && i < cfg->access.n_groups; i++)
        if (strcmp(cfg->access.groups[i].name, name) == 0) return &cfg->access.groups[i];
    return NULL;
}

bool config_host_is_loopback(const char *host) {
    return !strncmp(host, "127.", 4) || !strcmp(host, "::1") || !strcmp(host, "localhost");
}

long config_agent_memory_limit(const aios_config *cfg, const char *agent) {
    for (int i = 0; agent && i < cfg->n_agents; i++)
        if (strcmp(cfg->agents[i].name, agent) == 0 && cfg->agents[i].memory_limit >= 0) return cfg->agents[i].memory_limit;
    return cfg->memory.limit_bytes;
}

void config_embedding_model(const aios_config *cfg, char *out, size_t outlen) {
    if (cfg->storage.embedding_model[0]) {
        snprintf(out, outlen, "%s", cfg->storage.embedding_model);
        return;
    }
    const char *cache = getenv("AIOS_CACHE"), *home = getenv("HOME");
    if (cache && *cache) snprintf(out, outlen, "%s/models/all-MiniLM-L6-v2-f16.gguf", cache);
    else snprintf(out, outlen, "%s/.cache/aios/models/all-MiniLM-L6-v2-f16.gguf", home ? home : ".");
    if (access(out, R_OK) != 0) snprintf(out, outlen, "%s", config_model(cfg, NULL)->path);
}
