/*
 * api.h - the HTTP front of the kernel: AIOS (/query, /status, /core/llms/list),
 * OpenAI-compatible (/v1/...) and admin (/metrics) routes over libmicrohttpd.
 *
 * One MHD event thread owns every socket and never blocks: a request that needs the LLM
 * becomes a syscall, its connection is suspended, and the engine's completion (or each
 * streamed token) resumes it. A watcher thread polls suspended connections for client
 * hang-ups so an abandoned generation is cancelled at once.
 */
#ifndef AIOS_API_H
#define AIOS_API_H

#include "../kernel/kernel.h"
#include "../llm/llm.h"
#include "../memory/memory.h"
#include "../storage/storage.h"
#include "../tools/tools.h"
#include "../access/access.h"
#include "../agents/agents.h"

typedef struct api_server api_server;

typedef struct api_params {
    const aios_config *cfg; /* borrowed; outlives the server */
    llm_core *const *cores; /* borrowed; cores[i] serves cfg->llms.models[i] */
    int n_cores;
    mem_manager *mem;                  /* borrowed; NULL = memory queries get 501 */
    storage_manager *storage;          /* borrowed; NULL = storage queries get 501 */
    llm_embedder *embedder;            /* borrowed; NULL = /v1/embeddings gets 501 */
    runq_t *runq[SYSCALL_KIND__COUNT]; /* borrowed; [SYSCALL_KIND_MEMORY] runs memory and embedding
                                        * requests, [SYSCALL_KIND_STORAGE] storage requests;
                                        * [SYSCALL_KIND_TOOL] the tool manager's, only shown */
    tool_manager *tools;               /* borrowed; NULL = tool queries get 501 */
    access_manager *access;            /* borrowed; identities, rules, approvals, audit (required) */
    /* POST /models/load with a new model entry (NULL: refused): validates the n (field,
     * value) pairs into cfg, opens the model's core (it loads on its own thread) into
     * cores[index] and returns that index, or an error code with err. */
    int (*add_model)(void *ctx, const char *const *keys, const char *const *values, int n, char *err, size_t errlen);
    void *add_ctx;
} api_params;

/* Binds and starts serving. NULL with err set on failure (port in use, ...). */
api_server *api_server_start(const api_params *p, char *err, size_t errlen);
/* Stops taking new work (new LLM requests get 503) and stops the hang-up watcher.
 * Call before freeing the cores. */
/* Every configured model is loaded: the server stops answering 503 "loading" (it listens,
 * and /health answers, from the start). */
void api_server_ready(api_server *s);
void api_server_close(api_server *s);
/* Stops the daemon and frees the server; every syscall must be done (cores freed). */
void api_server_free(api_server *s);
/* The agents the kernel runs (routes /agents...; their priorities and counts); NULL: none. */
void api_server_set_agents(api_server *s, agents_t *a);
/* Cancels every in-flight request of agent (it was killed or ended). */
void api_server_cancel_agent(api_server *s, const char *agent);

#endif
