/*
 * agents.h - agents as processes the kernel runs (issue 14; docs/agents.md): the top layer
 * of the AIOS paper, the agent applications the kernel launches and tracks.
 *
 * An agent is a program started in the sandbox of src/tools (bubblewrap, seccomp, its own
 * workdir, a network mode) with an identity of its own: the kernel mints a token for it at
 * start (revoked when it ends) and hands it over in the environment (AIOS_TOKEN, and as the
 * OpenAI / Anthropic API key with their base URLs pointing here), so every syscall it makes,
 * through any door, is its own: scheduled with its priority, checked against its group's
 * rules, counted in its record.
 *
 * Lifecycle: starting -> running <-> stopped -> exited | killed; `lost` when the kernel
 * restarted under it (the table lives in SQLite, <data_dir>/agents.db). `stop` stops every
 * process of its pid namespace (SIGSTOP) and holds its LLM work (the scheduler parks its
 * generations exactly); `cont` resumes both; `kill` ends it, cancels its syscalls and
 * revokes its token. Limits: memory (resident set, watched every 250 ms: over it the agent
 * is killed, as an OOM kill), wall time, processes (RLIMIT_NPROC under a uid of its own),
 * CPU weight (niceness); the record says how each was applied. Output (stdout + stderr) goes
 * to a log per agent, rotated at agents.log_max_bytes, followed live by subscribers.
 *
 * One thread (the supervisor) polls every agent's pidfd and output pipes and ticks the
 * watchdog; API threads call the rest under one mutex.
 */
#ifndef AIOS_AGENTS_H
#define AIOS_AGENTS_H

#include <stdbool.h>
#include <cjson/cJSON.h>
#include "../kernel/kernel.h"
#include "../syscall/syscall.h"
#include "../access/access.h"

typedef struct agents agents_t;

/* What the kernel does to an agent's work elsewhere (wired by main to the LLM cores and the
 * API server's in-flight requests). Called without the agents lock held. */
typedef struct agents_hooks {
    void *ctx;
    void (*hold)(void *ctx, const char *agent, bool hold); /* park / resume its LLM work */
    void (*cancel)(void *ctx, const char *agent);          /* cancel its in-flight syscalls */
} agents_hooks;

typedef struct agents_params {
    const aios_config *cfg; /* borrowed; agents.*, server.port, data_dir */
    access_manager *access; /* borrowed; tokens are minted and revoked here */
    agents_hooks hooks;
} agents_params;

agents_params agents_default_params(void);
/* Opens the table (agents that were alive are marked lost, or restarted per their policy)
 * and starts the supervisor. NULL with err. */
agents_t *agents_open(const agents_params *p, char *err, size_t errlen);
/* Kills every live agent (their processes die with the kernel anyway), reaps them and
 * closes the table; the records stay readable (API threads may still ask) until free. */
void agents_close(agents_t *a); /* accepts NULL */
void agents_free(agents_t *a);  /* accepts NULL; closes first */

/* Starts an agent from a native spec ({"name", "command": [...], "env", "workdir", "group",
 * "priority", "limits", "restart", "network"}; docs/agents.md). *out (caller frees) is
 * {"id", "name", "token_agent"}; an error code with err otherwise (400 bad spec, 409 name
 * taken, 503 too many running). */
int agents_start(agents_t *a, const cJSON *spec, cJSON **out, char *err, size_t errlen);
/* AIOS /agents/submit: agent_id names a package under agents.dir; config (may be NULL) is
 * its agent_config ({"task", ...}). The new agent's id into id. */
int agents_submit_package(agents_t *a, const char *agent_id, const cJSON *config, char *id, size_t idlen, char *err,
                          size_t errlen);
/* [record...] newest first (caller frees); GET /agents. */
cJSON *agents_list(agents_t *a);
/* One record (caller frees), or NULL (not found). */
cJSON *agents_get(agents_t *a, const char *id);
/* AIOS status: "running" | "completed" (with its result) | "failed"; NULL if unknown. */
cJSON *agents_aios_status(agents_t *a, const char *id);
typedef enum agents_op { AGENTS_STOP, AGENTS_CONT, AGENTS_KILL } agents_op;
/* stop / cont / kill: AIOS_OK, AIOS_ERR_NOT_FOUND, or AIOS_ERR_INVALID (not in a state that
 * allows it: err says which it is in). */
int agents_signal(agents_t *a, const char *id, agents_op op, char *err, size_t errlen);
/* The last max bytes of its log (rotated file first) into out. */
int agents_log_tail(agents_t *a, const char *id, size_t max, strbuf *out);
/* Subscribes sc to the agent's output: its last `tail` bytes first, then every new chunk
 * as it comes (syscall_emit); sc completes when the agent ends (or sc is cancelled, or its
 * buffer is full). Takes a reference of its own. */
int agents_follow(agents_t *a, const char *id, size_t tail, syscall_t *sc);
/* The state of the agent a finished follow ended with: {"id","state",...} (caller frees). */
cJSON *agents_end_event(agents_t *a, const char *id);
/* What one request of identity `agent` used, counted in the record of the live agent of that
 * name, if any: at admission a syscall (a tool call or not); at its end its tokens and the
 * time it waited in run queues. */
typedef struct agents_usage {
    bool syscall, tool;
    long tokens;
    double wait_s;
} agents_usage;
void agents_note(agents_t *a, const char *agent, const agents_usage *u);
/* The priority of the live agent carrying identity `agent` (its spec's; -1: none given), or
 * AGENTS_NOT_RUNNING when no agent the kernel runs carries it. */
#define AGENTS_NOT_RUNNING (-2)
int agents_priority(agents_t *a, const char *agent);

#endif
