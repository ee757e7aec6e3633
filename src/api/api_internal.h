/*
 * api_internal.h - shared by the api module's files: the per-request context, the route
 * table entry, and helpers to answer with JSON, errors and server-sent events.
 */
#ifndef AIOS_API_INTERNAL_H
#define AIOS_API_INTERNAL_H

#include <microhttpd.h>
#include <cjson/cJSON.h>
#include "api.h"

typedef struct api_req api_req;

/* Builds a response for a finished syscall (non-streaming) or produces SSE text. */
typedef enum MHD_Result (*api_done_fn)(api_req *r);
/* Streaming: formats new text (delta, may be empty) and, once `final`, the closing events. */
typedef void (*api_stream_fn)(api_req *r, const char *delta, size_t n, bool final, strbuf *sse);

struct api_req {
    api_server *srv;
    struct MHD_Connection *conn;
    char method[16];
    char *url;
    strbuf body;
    bool too_large;
    bool answered;
    char agent[AIOS_NAME_MAX];
    bool token_agent;       /* agent named by a verified identity token */
    int priority;           /* from X-AIOS-Priority or the body; -1 = the agent's default */

    /* async LLM work */
    syscall_t *sc;          /* our reference */
    llm_core *core;
    bool suspended;         /* guarded by sc->mu */
    bool streaming;
    api_done_fn on_done;
    api_stream_fn on_stream;
    size_t sent;            /* bytes of sc->out already turned into events */
    bool final_sent;
    strbuf sse;
    size_t sse_off;
    void *data;             /* route state, freed with data_free */
    void (*data_free)(void *);
    api_req *in_prev, *in_next; /* in-flight list, for the hang-up watcher */
};

typedef enum MHD_Result (*api_handler_fn)(api_req *r, cJSON *body);

typedef struct api_route {
    const char *method;
    const char *path;
    api_handler_fn handler;
    bool json_body;    /* parse the body as a JSON object first */
} api_route;

extern const api_route api_routes_aios[];
extern const api_route api_routes_openai[];
extern const api_route api_routes_mem[];
extern const api_route api_routes_tools[];
/* The tool kind of POST /query (routes_tools.c). */
enum MHD_Result api_query_tool(api_req *r, const cJSON *qd);
/* call_tool: runs the tool calls an LLM answer made (text is its constrained output) and
 * answers with their results; replaces r->sc by the tool syscall. */
enum MHD_Result api_run_model_tool_calls(api_req *r, const char *text, const char *const *model_names,
                                         const char *const *names, int n_names);
/* Appends the tool series to a /metrics body. */
void api_metrics_tools(api_req *r, strbuf *b);
tool_manager *api_tools(api_req *r);
access_manager *api_access(api_req *r);
/* An access decision for r->agent (audited); AIOS_OK or AIOS_ERR_FORBIDDEN with err. */
int api_check(api_req *r, access_kind kind, const char *resource, unsigned action, const cJSON *params, char *err,
              size_t errlen);
/* Switches r to a new syscall run by the tool manager (the previous one, if any, is
 * released) and suspends until it completes; on_done then answers. */
enum MHD_Result api_run_tools(api_req *r, syscall_t *sc, api_done_fn on_done);
/* The memory / storage kinds of POST /query (routes_mem.c); qd is query_data. */
enum MHD_Result api_query_memory(api_req *r, const cJSON *qd);
enum MHD_Result api_query_storage(api_req *r, const cJSON *qd);
/* The AIOS answer envelope: {"response": response (taken), "start_times", "end_times",
 * "waiting_times", "turnaround_times"} from the syscall's scheduling rounds. */
cJSON *api_envelope(syscall_t *sc, cJSON *response);
/* Appends the memory, storage and embedder series to a /metrics body. */
void api_metrics_mem(api_req *r, strbuf *b);

const aios_config *api_cfg(api_req *r);
/* The core serving `name` (NULL/empty: the default model); NULL if unknown. */
llm_core *api_core(api_req *r, const char *name);
int api_n_cores(api_req *r);
llm_core *api_core_at(api_req *r, int i);
double api_uptime(api_req *r);

enum MHD_Result api_reply_json(api_req *r, int status, cJSON *json); /* takes ownership of json */
enum MHD_Result api_reply_text(api_req *r, int status, const char *ctype, const char *text);
/* {"error":{"code","message","type"}} for rc. */
cJSON *api_error_json(int rc, const char *msg);
enum MHD_Result api_reply_error(api_req *r, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Submits sc (takes ownership of the caller's reference) and suspends until done, or
 * starts an SSE response when on_stream is set. Answers errors itself. */
enum MHD_Result api_run_syscall(api_req *r, llm_core *core, syscall_t *sc, api_done_fn on_done, api_stream_fn on_stream);

/* Work run on the worker pool: reads and writes its args (the syscall's), returns a result
 * code with err set on failure. */
typedef int (*api_work_fn)(void *args, char *err, size_t errlen);
/* Runs fn(sc->args) on the worker pool (takes ownership of the caller's reference to sc)
 * and suspends until it completes; on_done then answers. */
enum MHD_Result api_run_job(api_req *r, syscall_t *sc, api_work_fn fn, api_done_fn on_done);
mem_manager *api_mem(api_req *r);
storage_manager *api_storage(api_req *r);
llm_embedder *api_embedder(api_req *r);

/* ---- JSON parameter helpers (json.c): each returns AIOS_OK, or AIOS_ERR_INVALID with
 * err naming the field and what was expected. Absent (or null) optional fields keep *out. */
int jp_string(const cJSON *obj, const char *key, bool required, const char **out, char *err, size_t errlen);
int jp_number(const cJSON *obj, const char *key, double lo, double hi, double *out, char *err, size_t errlen);
int jp_int(const cJSON *obj, const char *key, long lo, long hi, long *out, char *err, size_t errlen);
int jp_bool(const cJSON *obj, const char *key, bool *out, char *err, size_t errlen);
int jp_depth_ok(const cJSON *j, int max_depth);
/* A "priority" member of obj, if present, into r->priority (400 when out of range). */
int jp_priority(api_req *r, const cJSON *obj, char *err, size_t errlen);
/* Adds an array of doubles to obj under key. */
void jp_add_doubles(cJSON *obj, const char *key, const double *v, int n);

#endif
