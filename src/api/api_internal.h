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
#define API_MAX_CHOICES 64        /* the most `n` (llms.max_n) */
typedef struct api_conn api_conn; /* a connection's accounting entry (server.c) */

/* The API dialect a route belongs to: requests, latency and tokens are counted per door. */
typedef enum api_door {
    API_DOOR_AIOS,      /* /query */
    API_DOOR_OPENAI,    /* /v1/chat/completions, /v1/completions, /v1/models, /v1/embeddings */
    API_DOOR_RESPONSES, /* /v1/responses (OpenAI Responses) */
    API_DOOR_ANTHROPIC, /* /v1/messages (Anthropic Messages) */
    API_DOOR_OLLAMA,    /* /api/... (Ollama) */
    API_DOOR_LLAMA,     /* llama-server's helpers: /tokenize, /detokenize, /apply-template */
    API_DOOR_ADMIN,
    API_DOOR_OTHER,
    API_DOOR__COUNT
} api_door;

/* ---- the admission gate (admit.c) ----
 * A route's plan names what its request asks for; the gate decides it. */
typedef enum api_gate_class {
    API_GATE_ADMIN = 0, /* the admin rule (enforce mode): the default, so a route that forgets is closed */
    API_GATE_AGENT,     /* any caller the gate identifies: listings, status, metrics */
    API_GATE_SYSCALL,   /* a syscall: the route's plan names its kind and resources */
    API_GATE_PUBLIC,    /* no identity, no rules, also while the models load: /health */
} api_gate_class;

typedef struct api_claim {
    access_kind kind;
    char *resource; /* owned; NULL = the asking agent's own namespace (OWNED kinds) */
    unsigned action;
    const cJSON *params; /* borrowed from the body; hashed into the audit line; may be NULL */
    bool soft;           /* a refusal is recorded in granted, not answered */
    bool granted;        /* the gate's decision */
} api_claim;

typedef struct api_admission {
    syscall_kind kind;
    const char *agent_name; /* the agent the body names (/query's agent_name), borrowed; NULL = none */
    bool name_required;     /* without a token or bearer name, the body must name the agent */
    llm_core *core;         /* the model an LLM syscall runs on, resolved once by the plan */
    api_claim *claims;      /* owned */
    int n, cap;
} api_admission;

typedef struct api_gatekeeper api_gatekeeper; /* the gate's state: per-agent token buckets */
api_gatekeeper *api_gatekeeper_new(const aios_config *cfg);
void api_gatekeeper_free(api_gatekeeper *g);                  /* accepts NULL */
unsigned long long api_gatekeeper_limited(api_gatekeeper *g); /* requests answered 429 */
/* Adds a claim (resource is copied); AIOS_ERR_NOMEM. */
int api_claim_add(api_admission *a, access_kind kind, const char *resource, unsigned action, const cJSON *params, bool soft);
void api_admission_free(api_admission *a);
/* Drops what a borrowed from the request body (freed before the request ends). */
void api_admission_unborrow(api_admission *a);
/* A call of tool name: its claim, and for a built-in storage tool the claim on the
 * caller's own storage namespace it acts on. */
int api_claim_tool(api_req *r, api_admission *a, const char *name, const cJSON *params);
/* Whether a claimed (kind, resource): a handler meeting a resource its plan did not name
 * refuses rather than run it unchecked. */
bool api_claimed(const api_admission *a, access_kind kind, const char *resource);
/* The access action of a memory or storage operation (read, write or share). */
unsigned api_storage_action(const char *op);
/* Credentials of the headers into r->agent; 401 / 400 with err. */
int api_gate_identify(api_req *r, char *err, size_t errlen);
/* Admits r (identified) with its plan a, or refuses with a result code and err. */
int api_gate_admit(api_req *r, api_gate_class gate, api_admission *a, char *err, size_t errlen);

/* Builds a response for a finished syscall (non-streaming) or produces SSE text. */
typedef enum MHD_Result (*api_done_fn)(api_req *r);
/* Streaming: formats new text (delta, may be empty) and, once `final`, the closing events. */
typedef void (*api_stream_fn)(api_req *r, const char *delta, size_t n, bool final, strbuf *sse);

struct api_req {
    api_server *srv;
    struct MHD_Connection *conn;
    char method[16];
    char *url; /* in the same allocation as the record */
    strbuf body;
    bool too_large;
    bool body_oom; /* the body could not be kept (no memory): answered 500 */
    bool answered;
    char agent[AIOS_NAME_MAX];
    bool token_agent;         /* agent named by a verified identity token */
    bool bearer_name;         /* local mode: agent named by a bearer value that is not a token */
    api_admission adm;        /* what the route's plan claimed and the gate decided */
    int retry_after_s;        /* > 0: a Retry-After header on the answer */
    const char *cors_origin;  /* the request's Origin when server.cors_origins allows it (MHD's copy) */
    api_door door;            /* its route's (API_DOOR_OTHER: no route); errors take its shape */
    cJSON *door_body;         /* owned: the body in the chat completions shape, made by a door's plan */
    const char *stream_ctype; /* a stream's Content-Type (static); NULL = text/event-stream */
    char public_id[48];       /* the id its door gave the client while it runs (a Responses id); "" = none */
    int status;               /* the HTTP status answered (0: none) */
    double t_begin;           /* monotonic, when its headers arrived */
    int priority;             /* from X-AIOS-Priority or the body; -1 = the agent's default */
    api_conn *cn;             /* the connection's entry; valid until on_completed */
    bool reserved_only;       /* came when only server.reserved_connections slots were left */

    /* async LLM work */
    syscall_t *sc; /* our reference */
    llm_core *core;
    bool suspended; /* guarded by sc->mu */
    bool streaming;
    api_done_fn on_done;
    api_stream_fn on_stream;
    size_t sent; /* bytes of sc->out already turned into events */
    bool final_sent;
    strbuf sse; /* stream bytes not yet sent; a door may put its opening events here before api_run_syscall */
    size_t sse_off;
    /* n > 1: the other choices, submitted with the first and answered one after another */
    syscall_t *choices[API_MAX_CHOICES];            /* our references to choices r->choice + 1 .. n_choices - 1 */
    int choice, n_choices;                          /* the choice r->sc is, and how many (0 or 1: a single one) */
    int done_prompt_tokens, done_completion_tokens; /* of the choices already answered */
    void *data;                                     /* route state, freed with data_free */
    void (*data_free)(void *);
    api_req *in_prev, *in_next; /* in-flight list, for the hang-up watcher */
    /* waiting, suspended, for its model to load (guarded by the server's load_mu) */
    bool load_waiting;
    bool redispatch; /* resumed from that wait: dispatched again from the start */
    llm_core *load_core;
#ifdef AIOS_TORTURE
    long torture_left; /* allocations left before the one that fails (server.c, torture.c) */
    bool torture_armed, torture_hit;
#endif
};

typedef enum MHD_Result (*api_handler_fn)(api_req *r, cJSON *body);
/* A route's plan: from the parsed body, the syscall kind, the agent the body names and the
 * claims the gate must decide (a->core for LLM routes). Errors answer 4xx before the gate;
 * a malformed part it cannot plan from is left for the handler to report. */
typedef int (*api_plan_fn)(api_req *r, const cJSON *body, api_admission *a, char *err, size_t errlen);

typedef struct api_route {
    const char *method;
    const char *path;
    api_handler_fn handler;
    bool json_body; /* parse the body as a JSON object first */
    api_gate_class gate;
    api_plan_fn plan; /* API_GATE_SYSCALL routes */
    api_door door;
} api_route;

extern const api_route api_routes_aios[];
extern const api_route api_routes_openai[];
extern const api_route api_routes_mem[];
extern const api_route api_routes_tools[];
extern const api_route api_routes_responses[];
extern const api_route api_routes_anthropic[];
extern const api_route api_routes_ollama[];
extern const api_route api_routes_models[];
/* The tool kind of POST /query (routes_tools.c). */
enum MHD_Result api_query_tool(api_req *r, const cJSON *qd);
/* call_tool: runs the tool calls an LLM answer made (calls: chat_tool_calls of it, taken) and
 * answers with their results; replaces r->sc by the tool syscall. */
enum MHD_Result api_run_model_tool_calls(api_req *r, cJSON *calls);
/* Appends the tool series to a /metrics body. */
void api_metrics_tools(api_req *r, strbuf *b);
tool_manager *api_tools(api_req *r);
access_manager *api_access(api_req *r);
api_gatekeeper *api_gatekeeper_of(api_req *r);
/* Whether r may take a connection slot: false (counted, err set) when only
 * server.reserved_connections slots were left at its accept and no token names its agent. */
bool api_conn_admits(api_req *r, char *err, size_t errlen);
/* The plans of the syscall routes that live with their kinds' handlers: the LLM kind of
 * /query (routes_aios.c), memory and storage (routes_mem.c), tool (routes_tools.c); qd is
 * query_data. And the kernel tools named in a request's `tools` (chat.c): one call claim each. */
int api_plan_llm_query(api_req *r, const cJSON *qd, api_admission *a, char *err, size_t errlen);
int api_plan_mem(api_req *r, syscall_kind kind, const cJSON *qd, api_admission *a, char *err, size_t errlen);
int api_plan_tool_calls(api_req *r, const cJSON *qd, api_admission *a, char *err, size_t errlen);
int chat_plan_tools(api_req *r, const cJSON *tools, api_admission *a, char *err, size_t errlen);
/* Switches r to a new syscall run by the tool manager (the previous one, if any, is
 * released) and suspends until it completes; on_done then answers. */
enum MHD_Result api_run_tools(api_req *r, syscall_t *sc, api_done_fn on_done);
/* The memory / storage kinds of POST /query (routes_mem.c); qd is query_data. */
enum MHD_Result api_query_memory(api_req *r, const cJSON *qd);
enum MHD_Result api_query_storage(api_req *r, const cJSON *qd);
enum MHD_Result api_embed(
    api_req *r, const cJSON *input, const char *fmt,
    cJSON *(*shape)(
        api_req *r,
        cJSON *
            list)); /* routes_mem.c: embeds input on memory's run queue; shape (NULL: none) takes the OpenAI list and makes the answer */
/* The AIOS answer envelope: {"response": response (taken), "start_times", "end_times",
 * "waiting_times", "turnaround_times"} from the syscall's scheduling rounds. */
cJSON *api_envelope(syscall_t *sc, cJSON *response);
/* Appends the memory, storage, embedder and run-queue series to a /metrics body. */
void api_metrics_mem(api_req *r, strbuf *b);
/* Appends the HTTP connection series (open, busy, refused, timed out) to a /metrics body. */
void api_metrics_http(api_req *r, strbuf *b);
/* One series without labels, with its HELP and TYPE lines (type: "counter" or "gauge"). */
void api_metric_unlabelled(strbuf *b, const char *name, const char *type, const char *help, double v);
/* The bucket, sum and count lines of histogram h of series name under labels (`a="x",b="y"`,
 * already escaped); HELP and TYPE are the caller's. */
void api_metric_hist(strbuf *b, const char *name, const char *labels, const kern_hist *h);

const aios_config *api_cfg(api_req *r);
/* The core serving `name` (NULL/empty: the default model); NULL if unknown. */
llm_core *api_core(api_req *r, const char *name);
int api_n_cores(api_req *r);
llm_core *api_core_at(api_req *r, int i);
double api_uptime(api_req *r);
/* Whether every configured model is loaded (api_server_ready was called). */
bool api_ready(api_req *r);

enum MHD_Result api_reply_json(api_req *r, int status, cJSON *json); /* takes ownership of json */
enum MHD_Result api_reply_text(api_req *r, int status, const char *ctype, const char *text);
/* {"error":{"code","message","type"}} for rc. */
cJSON *api_error_json(int rc, const char *msg);
/* The error body of rc in door's shape: OpenAI's (above) for most doors, Anthropic's
 * {"type":"error","error":{"type","message"}}, Ollama's {"error":"..."}. */
cJSON *api_door_error_json(api_door door, int rc, const char *msg);
enum MHD_Result api_reply_error(api_req *r, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* An in-flight request of r's agent at door with public_id: AIOS_OK (its syscall is
 * cancelled first when cancel is set) or AIOS_ERR_NOT_FOUND. */
int api_inflight_find(api_req *r, api_door door, const char *public_id, bool cancel);
/* Appends one server-sent event: "event: NAME" (when event is given) and "data: JSON"; takes o. */
void api_sse_event(strbuf *sse, const char *event, cJSON *o);
/* Appends o as one line of newline-delimited JSON (Ollama's streams); takes o. */
void api_ndjson_line(strbuf *out, cJSON *o);
/* Submits sc (takes ownership of the caller's reference) and suspends until done, or
 * starts an SSE response when on_stream is set. Answers errors itself. */
enum MHD_Result api_run_syscall(api_req *r, llm_core *core, syscall_t *sc, api_done_fn on_done, api_stream_fn on_stream);

/* n > 1 (chat completions' `n`): submits all n syscalls (takes the caller's references) so
 * the engine batches them, and answers them in order: r->sc is choice r->choice. Non-streaming,
 * on_done runs once per choice and calls api_next_choice until r->choice is the last;
 * streaming, on_stream gets each choice to its final call in turn (the last one ends the
 * stream). Answers errors itself. */
enum MHD_Result api_run_choices(api_req *r, llm_core *core, syscall_t **scs, int n, api_done_fn on_done, api_stream_fn on_stream);
/* From a non-streaming on_done: the next choice becomes r->sc; on_done runs again once it is done. */
enum MHD_Result api_next_choice(api_req *r);
/* Work run by a resource's run queue: reads and writes its args (the syscall's), returns a
 * result code with err set on failure. */
typedef int (*api_work_fn)(void *args, char *err, size_t errlen);
/* Queues fn(sc->args) on the run queue of sc->kind's resource, ordered by its priority and
 * agent (takes ownership of the caller's reference to sc), and suspends until it completes;
 * on_done then answers. A full queue, or the agent's full share of it, answers 503. */
enum MHD_Result api_run_job(api_req *r, syscall_t *sc, api_work_fn fn, api_done_fn on_done);
mem_manager *api_mem(api_req *r);
storage_manager *api_storage(api_req *r);
llm_embedder *api_embedder(api_req *r);
/* The run queue of a worker resource (memory, storage), or NULL. */
runq_t *api_runq(api_req *r, syscall_kind kind);
/* Adds "run_queues": [{resource, policy, workers, queued, running, ...}] to a /status object. */
void api_status_runq(api_req *r, cJSON *status);
/* The i-th model's listing fields, added to o: backend, state (ready once the kernel
 * serves), load (active, queued, max_active) and aliases. Every model listing uses it. */
void api_model_fields(api_req *r, int i, cJSON *o);
/* Adds a model made of n (field, value) pairs of an llms.models[] entry (POST /models/load):
 * its index (it is served from now, loading), or an error code with err. */
int api_add_model(api_req *r, const char *const *keys, const char *const *values, int n, char *err, size_t errlen);
/* The AIOS LLM selection (POST /user/select/llms): replaced whole; n = 0 clears it. */
void api_select_llms(api_req *r, const char *const *names, int n);
/* Copies the selection (model names as given) into out; how many. */
int api_selected_llms(api_req *r, char (*out)[AIOS_NAME_MAX], int max);
extern const api_route api_routes_compat[];
extern const api_route api_routes_agents[];
agents_t *api_agents(api_req *r); /* NULL until the kernel runs agents */
extern const api_route api_routes_ui[];
/* The body of GET /status (caller frees). */
cJSON *api_status_json(api_req *r);
/* Every agent record, newest first, live ones with what they hold now (routes_agents.c); new array. */
cJSON *api_agents_json(api_req *r);
/* Subscribes sc to the server's one-second tick (GET /events): a byte is emitted into it each
 * second until it is cancelled (the client left) or the server closes. Takes a reference of
 * its own; AIOS_ERR_BUSY when API_MAX_EVENT_SUBS are subscribed. */
int api_events_subscribe(api_req *r, syscall_t *sc);
#define API_MAX_EVENT_SUBS 32
/* Streams sc, which someone else feeds (syscall_emit) and completes (an agent's log
 * follower): like a streaming syscall, without submitting it. Takes the caller's reference. */
enum MHD_Result api_follow(api_req *r, syscall_t *sc, api_stream_fn on_stream);
/* The models this kernel serves, for an error naming an unknown one: "a, b (aliases: x,y)". */
void api_models_known(api_req *r, char *out, size_t cap);

/* ---- JSON parameter helpers (json.c): each returns AIOS_OK, or AIOS_ERR_INVALID with
 * err naming the field and what was expected. Absent (or null) optional fields keep *out. */
int jp_string(const cJSON *obj, const char *key, bool required, const char **out, char *err, size_t errlen);
int jp_number(const cJSON *obj, const char *key, double lo, double hi, double *out, char *err, size_t errlen);
int jp_int(const cJSON *obj, const char *key, long lo, long hi, long *out, char *err, size_t errlen);
int jp_bool(const cJSON *obj, const char *key, bool *out, char *err, size_t errlen);
int jp_depth_ok(const cJSON *j, int max_depth);
/* Formats err and returns AIOS_ERR_INVALID: a door's "this field is wrong" in one line. */
int jp_invalid(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The JSON gate: parses a request body into *out (a JSON object; caller frees) after
 * checking the raw text: strict UTF-8 everywhere, no raw control bytes, \u0000 or lone
 * surrogate escapes in strings, at most max_depth levels, nothing but whitespace after the
 * document. Errors (AIOS_ERR_INVALID) name the field: "messages[0].content: invalid UTF-8". */
int jp_parse_body(const char *text, size_t len, int max_depth, cJSON **out, char *err, size_t errlen);
/* Fields every OpenAI-compatible body shares: `model` (a non-empty string when given) and
 * `user` (a string). */
int jp_openai_common(const cJSON *body, char *err, size_t errlen);
/* A name (agent, bearer value) is non-empty valid UTF-8 without control characters. */
bool jp_printable_name(const char *s);
/* (chat.c) Checks a request's `tools`: null, or an array of at most 128 function tools,
 * each with a non-empty name and an object (or null) as parameters. */
int chat_check_tools(const cJSON *tools, char *err, size_t errlen);
/* A "priority" member of obj, if present, into r->priority (400 when out of range). */
int jp_priority(api_req *r, const cJSON *obj, char *err, size_t errlen);
/* Adds an array of doubles to obj under key. */
void jp_add_doubles(cJSON *obj, const char *key, const double *v, int n);

#endif
