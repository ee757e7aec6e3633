/*
 * server.c - libmicrohttpd daemon, request lifecycle, routing, replies, and the bridge
 * between suspended connections and syscalls.
 *
 * Lifecycle of a request: MHD calls on_request() with headers, then with body pieces
 * (accumulated up to server.max_body_bytes; beyond that the rest is drained and the answer
 * is 413), then once more with no data: we route it. LLM routes submit a syscall and
 * suspend the connection; the syscall's sink resumes it (from the engine thread, under the
 * syscall's mutex, which also guards `suspended`) when the result is ready or, for
 * streams, when new text arrives. on_completed() runs when MHD is done with the
 * connection (answered, or the client went away) and cancels unfinished work.
 *
 * MHD does not notice a client hang-up while a connection is suspended, so a watcher
 * thread polls the sockets of suspended connections (POLLRDHUP) every 50 ms and cancels
 * the syscalls of those that closed.
 *
 * Slow and idle clients (slowloris): MHD's own timeout restarts on every byte, so one
 * header line a second holds a connection forever. Every connection is therefore tracked
 * from accept (MHD_OPTION_NOTIFY_CONNECTION) through phases with their own deadlines: the
 * request headers must be complete within server.header_timeout_ms of accept (or of the end
 * of the previous answer on a kept-alive connection, within server.connection_timeout_s);
 * a body must arrive at server.min_body_rate bytes/s on average once that grace has passed;
 * a request being served (suspended on the engine, streaming) has no deadline. The watcher
 * enforces them by answering 408 and shutting the socket down; MHD then sees the end of the
 * stream and cleans up in its own thread. MHD itself may hold more connections than
 * server.max_connections (so it never stops accepting and leaves clients in the listen
 * backlog): at the limit a new connection takes the place of the oldest one still waiting
 * for its headers, or, when every slot serves a request, is answered 503 at once. When
 * fewer than server.reserved_connections slots are left, only identities (a verified bearer
 * token) are served; others get 503.
 *
 * libmicrohttpd 0.9.75 closes a connection whose request line does not parse (no space,
 * as in "GARBAGE" or "GET") without an answer and without calling back (connection.c:
 * parse_initial_message_line() -> CONNECTION_CLOSE_ERROR_CHECK), and answers a bad HTTP
 * version with its own HTML 400; neither can be turned into a JSON error here. Both close
 * the connection at once.
 */
#include <arpa/inet.h>
#include <linux/tcp.h> /* struct tcp_info with tcpi_bytes_received and tcpi_bytes_sent */
#include <netinet/in.h>
#include <poll.h>
#include <strings.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include "api_internal.h"

/* Phases of a connection (api_conn), in the order a request goes through them. */
typedef enum conn_phase {
    CONN_PHASE_HEAD,    /* accepted; the first request's headers are not complete */
    CONN_PHASE_IDLE,    /* kept alive after an answer; the next request's headers are not complete */
    CONN_PHASE_BODY,    /* headers in, the body arriving */
    CONN_PHASE_BUSY,    /* the request is complete and being served (no deadline) */
    CONN_PHASE_REFUSED, /* over the limit: answered 503, closed after CONN_REFUSED_LINGER_S */
    CONN_PHASE_DEAD,    /* shut down by us; MHD has not cleaned it up yet */
} conn_phase;

/* A refused connection keeps reading for this long after its 503, so that the request the
 * client sent meanwhile does not turn the close into a reset that loses the answer. */
#define CONN_REFUSED_LINGER_S 1.0
/* File descriptors kept for everything but HTTP connections (models, databases, tools). */
#define CONN_FD_RESERVE 256

/* One TCP connection, from MHD's accept to its cleanup (MHD's socket context). The fd stays
 * open until the entry is unlinked: MHD closes it only after NOTIFY_CONNECTION_CLOSED. */
struct api_conn {
    int fd;
    conn_phase phase;
    double t;            /* when the phase began (kern_now_mono) */
    uint64_t body_bytes; /* BODY: received so far */
    api_conn *prev, *next;
};

typedef struct conn_stats {
    unsigned long long refused, evicted, header_timeouts, slow_bodies, reserved_refused, malformed;
} conn_stats;

/* Per door (API dialect): requests by status class, latency histogram, tokens. */
static const double DOOR_BUCKETS[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
#define N_DOOR_BUCKETS (sizeof DOOR_BUCKETS / sizeof DOOR_BUCKETS[0])
static const char *const DOOR_NAMES[API_DOOR__COUNT] = {"aios",   "openai", "responses", "anthropic",
                                                        "ollama", "llama",  "admin",     "other"};

typedef struct door_stats {
    unsigned long long by_class[3]; /* 2xx (and 1xx/3xx), 4xx, 5xx */
    kern_hist latency;              /* seconds, over DOOR_BUCKETS */
    unsigned long long prompt_tokens, completion_tokens;
} door_stats;

struct api_server {
    const aios_config *cfg;
    llm_core *const *cores;
    int n_cores; /* grows when a model is added at run time: atomic loads and stores */
    int (*add_model)(void *ctx, const char *const *keys, const char *const *values, int n, char *err, size_t errlen);
    void *add_ctx;
    mem_manager *mem;
    storage_manager *storage;
    llm_embedder *embedder;
    runq_t *runq[SYSCALL_KIND__COUNT]; /* memory, storage; NULL for the other kinds */
    tool_manager *tools;
    access_manager *access;
    api_gatekeeper *gate;
    atomic_bool ready; /* every model loaded */
    struct MHD_Daemon *mhd;
    double started;
    pthread_mutex_t gate_mu; /* closing + submit */
    bool closing;
    pthread_mutex_t in_mu;   /* in-flight list */
    pthread_mutex_t load_mu; /* requests waiting for their model to load */
    pthread_mutex_t sel_mu;  /* the LLMs selected with POST /user/select/llms (AIOS) */
    char selected[AIOS_MAX_MODELS][AIOS_NAME_MAX];
    int n_selected;
    api_req *inflight;
    pthread_t watcher;
    bool watcher_running;
    atomic_bool watcher_stop;
    pthread_mutex_t conn_mu; /* the connection list, its counts and stats */
    api_conn *conns;
    int n_open;         /* HEAD, IDLE, BODY, BUSY */
    int n_busy;         /* BODY, BUSY */
    int max_conns;      /* server.max_connections, or less if file descriptors are short */
    int reserved;       /* server.reserved_connections, at most half of max_conns */
    unsigned mhd_limit; /* MHD's own limit: max_conns + room for those being closed */
    conn_stats cstat;
    char *ans_head_timeout; /* raw HTTP answers written by the connection accounting */
    char *ans_slow_body;
    char *ans_over_limit;
    char *ans_malformed;
    pthread_mutex_t door_mu;
    door_stats doors[API_DOOR__COUNT];
    agents_t *_Atomic agents; /* set once the kernel runs agents (api_server_set_agents) */
    pthread_mutex_t ev_mu;    /* GET /events subscribers, ticked by the watcher */
    syscall_t *ev_subs[API_MAX_EVENT_SUBS];
    int n_ev;
    double ev_last;
};

const aios_config *api_cfg(api_req *r) { return r->srv->cfg; }
int api_n_cores(api_req *r) { return __atomic_load_n(&r->srv->n_cores, __ATOMIC_ACQUIRE); }
llm_core *api_core_at(api_req *r, int i) { return r->srv->cores[i]; }
double api_uptime(api_req *r) { return kern_now_mono() - r->srv->started; }
bool api_ready(api_req *r) { return atomic_load(&r->srv->ready); }
void api_server_ready(api_server *s) { atomic_store(&s->ready, true); }
mem_manager *api_mem(api_req *r) { return r->srv->mem; }
storage_manager *api_storage(api_req *r) { return r->srv->storage; }
llm_embedder *api_embedder(api_req *r) { return r->srv->embedder; }
tool_manager *api_tools(api_req *r) { return r->srv->tools; }
agents_t *api_agents(api_req *r) { return atomic_load(&r->srv->agents); }
void api_server_set_agents(api_server *s, agents_t *a) {
    if (s) atomic_store(&s->agents, a);
}
access_manager *api_access(api_req *r) { return r->srv->access; }
runq_t *api_runq(api_req *r, syscall_kind kind) { return kind < SYSCALL_KIND__COUNT ? r->srv->runq[kind] : NULL; }

api_gatekeeper *api_gatekeeper_of(api_req *r) { return r->srv->gate; }

llm_core *api_core(api_req *r, const char *name) {
    const aios_config *cfg = r->srv->cfg;
    int n = api_n_cores(r);
    int i = config_model_index(cfg, name); /* its name or an alias */
    /* a model that is down hands its requests to its fallback (a chain; config checks it ends) */
    for (int hops = 0; i >= 0 && i < n && hops < n; hops++) {
        int next = config_model_index(cfg, cfg->llms.models[i].fallback);
        if (!cfg->llms.models[i].fallback[0] || next < 0 || next >= n || !llm_core_down(r->srv->cores[i], NULL, 0)) break;
        i = next;
    }
    return i >= 0 && i < n ? r->srv->cores[i] : NULL;
}

void api_select_llms(api_req *r, const char *const *names, int n) {
    api_server *s = r->srv;
    pthread_mutex_lock(&s->sel_mu);
    s->n_selected = 0;
    for (int i = 0; i < n && s->n_selected < AIOS_MAX_MODELS; i++)
        snprintf(s->selected[s->n_selected++], AIOS_NAME_MAX, "%s", names[i]);
    pthread_mutex_unlock(&s->sel_mu);
}

int api_selected_llms(api_req *r, char (*out)[AIOS_NAME_MAX], int max) {
    api_server *s = r->srv;
    pthread_mutex_lock(&s->sel_mu);
    int n = s->n_selected < max ? s->n_selected : max;
    memcpy(out, s->selected, (size_t)n * sizeof *out);
    pthread_mutex_unlock(&s->sel_mu);
    return n;
}

int api_add_model(api_req *r, const char *const *keys, const char *const *values, int n, char *err, size_t errlen) {
    api_server *s = r->srv;
    if (!s->add_model) {
        snprintf(err, errlen, "this kernel adds no models at run time");
        return AIOS_ERR_NOT_IMPLEMENTED;
    }
    int i = s->add_model(s->add_ctx, keys, values, n, err, errlen);
    if (i >= 0) __atomic_store_n(&s->n_cores, i + 1, __ATOMIC_RELEASE); /* the core is in place: served from now */
    return i;
}

void api_models_known(api_req *r, char *out, size_t cap) {
    const aios_config *cfg = r->srv->cfg;
    size_t n = 0;
    out[0] = 0;
    for (int i = 0; i < api_n_cores(r) && n < cap; i++) {
        const aios_model_cfg *m = &cfg->llms.models[i];
        n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? ", " : "", m->name);
        if (m->aliases[0] && n < cap) n += (size_t)snprintf(out + n, cap - n, " (aliases: %s)", m->aliases);
    }
}

/* ---------- replies ---------- */

/* server.cors_origins: the request's Origin when it is listed (or the list is "*"). */
static const char *cors_allowed(api_req *r) {
    const char *list = r->srv->cfg->server.cors_origins;
    const char *origin = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Origin");
    if (!list[0] || !origin || !*origin) return NULL;
    if (!strcmp(list, "*")) return origin;
    size_t n = strlen(origin);
    for (const char *p = list; *p;) {
        size_t k = strcspn(p, ",");
        while (k && p[k - 1] == ' ') k--;
        if (k == n && !strncmp(p, origin, n)) return origin;
        p += strcspn(p, ",");
        p += strspn(p, ", ");
    }
    return NULL;
}

/* Retry-After and the CORS headers every answer of r carries. */
static void add_headers(api_req *r, struct MHD_Response *resp) {
    if (r->retry_after_s > 0) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", r->retry_after_s);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    if (r->cors_origin) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", r->cors_origin);
        MHD_add_response_header(resp, "Vary", "Origin");
        MHD_add_response_header(resp, "Access-Control-Expose-Headers", "Retry-After");
    }
}

/* A CORS preflight (OPTIONS on a known path): 204 with what may be sent, for an allowed
 * origin; 204 without them otherwise (the browser then refuses). */
static enum MHD_Result preflight(api_req *r) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    add_headers(r, resp);
    if (r->cors_origin) {
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
        MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                                "Authorization, Content-Type, X-AIOS-Priority, x-api-key, anthropic-version");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
    }
    r->status = 204;
    enum MHD_Result ret = MHD_queue_response(r->conn, 204, resp);
    MHD_destroy_response(resp);
    r->answered = true;
    return ret;
}

/* No memory for an answer: a fixed 500 (MHD's own memory). r is the request, or NULL when
 * not even its record could be made (then the connection is closed after it, its body
 * unread). */
static enum MHD_Result answer_no_memory(struct MHD_Connection *conn, api_req *r) {
    static const char BODY[] = "{\"error\":{\"code\":\"out_of_memory\",\"message\":\"out of memory\",\"type\":\"server_error\"}}";
    struct MHD_Response *resp = MHD_create_response_from_buffer(sizeof BODY - 1, (void *)BODY, MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (r) {
        add_headers(r, resp);
        r->status = 500;
        r->answered = true;
    } else {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    }
    enum MHD_Result ret = MHD_queue_response(conn, 500, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result reply_buf(api_req *r, int status, const char *ctype, char *buf, size_t len) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(buf);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    add_headers(r, resp);
    r->status = status;
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    r->answered = true;
    return ret;
}

enum MHD_Result api_reply_text(api_req *r, int status, const char *ctype, const char *text) {
    char *copy = strdup(text);
    return copy ? reply_buf(r, status, ctype, copy, strlen(copy)) : answer_no_memory(r->conn, r);
}

enum MHD_Result api_reply_json(api_req *r, int status, cJSON *json) {
    /* an answer that lost a part for want of memory is not sent as if whole */
    char *txt = json && !kern_json_oom() ? cJSON_PrintUnformatted(json) : NULL;
    cJSON_Delete(json);
    if (!txt) return answer_no_memory(r->conn, r);
    return reply_buf(r, status, "application/json", txt, strlen(txt));
}

cJSON *api_error_json(int rc, const char *msg) {
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    /* messages quote input (a URL, a method, a cut-off name): keep the answer valid UTF-8 */
    char *clean = msg && *msg ? strdup(msg) : NULL;
    if (clean) kern_utf8_sanitize(clean);
    cJSON_AddStringToObject(e, "code", aios_errcode(rc));
    cJSON_AddStringToObject(e, "message", clean ? clean : aios_strerror(rc));
    free(clean);
    int st = aios_http_status(rc);
    cJSON_AddStringToObject(e, "type",
                            st == 401       ? "authentication_error"
                                : st == 403 ? "permission_error"
                                : st == 404 ? "not_found_error"
                                : st < 500  ? "invalid_request_error"
                                            : "server_error");
    return root;
}

/* Anthropic's error types by HTTP status. */
static const char *anthropic_error_type(int st) {
    switch (st) {
        case 401: return "authentication_error";
        case 403: return "permission_error";
        case 404: return "not_found_error";
        case 413: return "request_too_large";
        case 429: return "rate_limit_error";
        case 503: return "overloaded_error";
        default: return st < 500 ? "invalid_request_error" : "api_error";
    }
}

cJSON *api_door_error_json(api_door door, int rc, const char *msg) {
    if (door != API_DOOR_ANTHROPIC && door != API_DOOR_OLLAMA) return api_error_json(rc, msg);
    cJSON *oa = api_error_json(rc, msg); /* its message, cleaned */
    const char *text = kern_json_str(cJSON_GetObjectItemCaseSensitive(oa, "error"), "message");
    cJSON *o = cJSON_CreateObject();
    if (door == API_DOOR_OLLAMA) {
        cJSON_AddStringToObject(o, "error", text);
    } else {
        cJSON_AddStringToObject(o, "type", "error");
        cJSON *e = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(e, "type", anthropic_error_type(aios_http_status(rc)));
        cJSON_AddStringToObject(e, "message", text);
    }
    cJSON_Delete(oa);
    return o;
}

enum MHD_Result api_reply_error(api_req *r, int rc, const char *fmt, ...) {
    char msg[512] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
    }
    log_debug("%s %s -> %d %s: %s", r->method, r->url, aios_http_status(rc), aios_errcode(rc), msg);
    return api_reply_json(r, aios_http_status(rc), api_door_error_json(r->door, rc, msg));
}

/* ---------- syscall bridge ---------- */

/* Sink: runs with sc->mu held (engine thread, or whoever completed the syscall). */
static void req_notify(void *ctx) {
    api_req *r = ctx;
    if (r->suspended && (r->streaming || r->sc->state == SYSCALL_STATE_DONE)) {
        r->suspended = false;
        MHD_resume_connection(r->conn);
    }
}

static void inflight_add(api_server *s, api_req *r) {
    pthread_mutex_lock(&s->in_mu);
    r->in_next = s->inflight;
    if (s->inflight) s->inflight->in_prev = r;
    s->inflight = r;
    pthread_mutex_unlock(&s->in_mu);
}

static void inflight_remove(api_server *s, api_req *r) {
    pthread_mutex_lock(&s->in_mu);
    if (r->in_prev) r->in_prev->in_next = r->in_next;
    else if (s->inflight == r) s->inflight = r->in_next;
    if (r->in_next) r->in_next->in_prev = r->in_prev;
    r->in_prev = r->in_next = NULL;
    pthread_mutex_unlock(&s->in_mu);
}

void api_sse_event(strbuf *sse, const char *event, cJSON *o) {
    char *txt = cJSON_PrintUnformatted(o);
    if (event) sb_printf(sse, "event: %s\n", event); /* event may point into o */
    cJSON_Delete(o);
    if (txt) sb_printf(sse, "data: %s\n\n", txt);
    free(txt);
}

void api_ndjson_line(strbuf *out, cJSON *o) {
    char *txt = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (txt) sb_printf(out, "%s\n", txt);
    free(txt);
}

static void switch_choice(api_req *r);

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    api_req *r = cls;
    if (r->sse_off >= r->sse.len) {
        sb_reset(&r->sse);
        r->sse_off = 0;
        if (r->final_sent) return MHD_CONTENT_READER_END_OF_STREAM;
        syscall_t *sc = r->sc;
        pthread_mutex_lock(&sc->mu);
        size_t avail = sc->out.len - r->sent;
        bool done = sc->state == SYSCALL_STATE_DONE;
        char *delta = avail ? strndup(sc->out.data + r->sent, avail) : NULL;
        r->sent += delta ? avail : 0;
        if (!delta && !done) {
            r->suspended = true;
            MHD_suspend_connection(r->conn);
            pthread_mutex_unlock(&sc->mu);
            return 0;
        }
        pthread_mutex_unlock(&sc->mu);
        r->on_stream(r, delta ? delta : "", delta ? avail : 0, done, &r->sse);
        kern_json_sweep(); /* (the events are text now) */
        free(delta);
        if (done && r->choice + 1 < r->n_choices) switch_choice(r);
        else if (done) r->final_sent = true;
        if (r->sse.len == 0) return r->final_sent ? MHD_CONTENT_READER_END_OF_STREAM : 0;
    }
    size_t n = r->sse.len - r->sse_off < max ? r->sse.len - r->sse_off : max;
    memcpy(buf, r->sse.data + r->sse_off, n);
    r->sse_off += n;
    return (ssize_t)n;
}

static enum MHD_Result start_stream(api_req *r) {
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, r, NULL);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->stream_ctype ? r->stream_ctype : "text/event-stream");
    add_headers(r, resp);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    r->status = 200;
    enum MHD_Result ret = MHD_queue_response(r->conn, 200, resp);
    MHD_destroy_response(resp);
    r->answered = true;
    return ret;
}

/* Suspends until the syscall is done; or answers now if it already is. */
static enum MHD_Result wait_or_answer(api_req *r) {
    pthread_mutex_lock(&r->sc->mu);
    bool done = r->sc->state == SYSCALL_STATE_DONE;
    if (!done) {
        r->suspended = true;
        MHD_suspend_connection(r->conn);
    }
    pthread_mutex_unlock(&r->sc->mu);
    return done ? r->on_done(r) : MHD_YES;
}

/* r takes sc (the caller's reference): its answer or stream follows sc's output. */
static void attach(api_req *r, llm_core *core, syscall_t *sc, api_done_fn on_done, api_stream_fn on_stream) {
    r->sc = sc;
    r->core = core;
    r->on_done = on_done;
    r->on_stream = on_stream;
    r->streaming = on_stream != NULL;
    if (!r->sse.data) sb_init(&r->sse, 0); /* a door may have put its opening events there */
    syscall_set_sink(sc, req_notify, r);
}

enum MHD_Result api_run_syscall(api_req *r, llm_core *core, syscall_t *sc, api_done_fn on_done, api_stream_fn on_stream) {
    api_server *s = r->srv;
    attach(r, core, sc, on_done, on_stream);
    pthread_mutex_lock(&s->gate_mu);
    /* a request that lost a part for want of memory while it was made is not run */
    int rc = kern_json_oom() ? AIOS_ERR_NOMEM : s->closing ? AIOS_ERR_SHUTDOWN : llm_core_submit(core, sc);
    pthread_mutex_unlock(&s->gate_mu);
    if (rc) {
        syscall_set_sink(sc, NULL, NULL);
        syscall_complete(sc, rc, NULL);
        return api_reply_error(r, rc, rc == AIOS_ERR_BUSY ? "the run queue of this model is full (scheduler.max_queue)" : NULL);
    }
    inflight_add(s, r);
    return r->streaming ? start_stream(r) : wait_or_answer(r);
}

/* r->sc (done) gives way to the next choice: its tokens are counted, its reference dropped. */
static void switch_choice(api_req *r) {
    syscall_t *done = r->sc;
    r->done_prompt_tokens += llm_request_prompt_tokens(done->args);
    r->done_completion_tokens += llm_request_completion_tokens(done->args);
    syscall_set_sink(done, NULL, NULL);
    r->choice++;
    r->sent = 0;
    pthread_mutex_lock(&r->srv->in_mu); /* the hang-up watcher reads r->sc under in_mu */
    r->sc = r->choices[r->choice];
    pthread_mutex_unlock(&r->srv->in_mu);
    r->choices[r->choice] = NULL;
    syscall_unref(done);
    syscall_set_sink(r->sc, req_notify, r);
}

enum MHD_Result api_next_choice(api_req *r) {
    switch_choice(r);
    return wait_or_answer(r);
}

enum MHD_Result api_run_choices(api_req *r, llm_core *core, syscall_t **scs, int n, api_done_fn on_done,
                                api_stream_fn on_stream) {
    api_server *s = r->srv;
    int rc = AIOS_OK;
    r->n_choices = n;
    r->core = core;
    for (int i = 1; i < n; i++) { /* owned by r from here: on_completed cancels and drops them */
        r->choices[i] = scs[i];
        if (rc) {
            syscall_complete(scs[i], rc, NULL);
            continue;
        }
        pthread_mutex_lock(&s->gate_mu);
        rc = s->closing ? AIOS_ERR_SHUTDOWN : llm_core_submit(core, scs[i]);
        pthread_mutex_unlock(&s->gate_mu);
        if (rc) syscall_complete(scs[i], rc, NULL);
    }
    if (rc) { /* the first is not submitted: it completes here, and the request answers the error */
        syscall_complete(scs[0], rc, NULL);
        syscall_unref(scs[0]);
        return api_reply_error(r, rc, rc == AIOS_ERR_BUSY ? "the run queue of this model is full (scheduler.max_queue)" : NULL);
    }
    return api_run_syscall(r, core, scs[0], on_done, on_stream);
}

/* A run-queue job: runs fn on the syscall's args and completes the syscall. */
typedef struct api_job {
    syscall_t *sc; /* the job's own reference */
    api_work_fn fn;
} api_job;

static void job_main(void *arg) {
    api_job *j = arg;
    syscall_t *sc = j->sc;
    char err[512] = "";
    syscall_round_begin(sc);
    kern_json_oom_clear(); /* (this job's JSON only) */
#ifdef AIOS_TORTURE
    syscall_torture_take(sc);
#endif
    int rc = atomic_load(&sc->cancel) ? AIOS_ERR_CANCELLED : j->fn(sc->args, err, sizeof err);
    kern_json_sweep();
#ifdef AIOS_TORTURE
    syscall_torture_return(sc);
#endif
    syscall_round_end(sc);
    syscall_complete(sc, rc, "%s", err);
    syscall_unref(sc);
    free(j);
}

enum MHD_Result api_run_job(api_req *r, syscall_t *sc, api_work_fn fn, api_done_fn on_done) {
    api_server *s = r->srv;
    api_job *j = kern_json_oom() ? NULL : malloc(sizeof *j); /* (a job made without all its parts is not run) */
    if (!j) {
        syscall_unref(sc);
        return api_reply_error(r, AIOS_ERR_NOMEM, NULL);
    }
    *j = (api_job){syscall_ref(sc), fn};
    r->sc = sc;
    r->core = NULL;
    r->on_done = on_done;
    sb_init(&r->sse, 0);
    syscall_set_sink(sc, req_notify, r);
    /* the run queue of the syscall's resource, in its policy's order (sched/runq.c) */
    runq_t *q = api_runq(r, sc->kind);
    runq_job rj = {.fn = job_main, .arg = j, .agent = sc->agent, .priority = sc->priority};
    char qerr[256] = "";
#ifdef AIOS_TORTURE
    syscall_torture_hand(sc); /* the job's allocations are the request's next ones */
#endif
    pthread_mutex_lock(&s->gate_mu);
    int rc = s->closing ? AIOS_ERR_SHUTDOWN : q ? runq_submit(q, &rj, qerr, sizeof qerr) : AIOS_ERR_NOT_IMPLEMENTED;
    pthread_mutex_unlock(&s->gate_mu);
    if (rc) { /* j was not queued: it is still ours */
        syscall_unref(j->sc);
        free(j);
        syscall_set_sink(sc, NULL, NULL);
        syscall_complete(sc, rc, NULL);
        return qerr[0] ? api_reply_error(r, rc, "%s", qerr) : api_reply_error(r, rc, NULL);
    }
    inflight_add(s, r);
    return wait_or_answer(r);
}

enum MHD_Result api_run_tools(api_req *r, syscall_t *sc, api_done_fn on_done) {
    api_server *s = r->srv;
    bool chained = r->sc != NULL;
    if (chained) { /* call_tool: the LLM syscall is done; the tool syscall takes its place */
        syscall_set_sink(r->sc, NULL, NULL);
        syscall_unref(r->sc);
    } else sb_init(&r->sse, 0);
    r->sc = sc;
    r->core = NULL;
    r->on_done = on_done;
    syscall_set_sink(sc, req_notify, r);
#ifdef AIOS_TORTURE
    syscall_torture_hand(sc); /* the tool run's allocations are the request's next ones */
#endif
    pthread_mutex_lock(&s->gate_mu);
    int rc = s->closing ? AIOS_ERR_SHUTDOWN : tools_submit(s->tools, sc);
    pthread_mutex_unlock(&s->gate_mu);
    if (rc) {
        syscall_set_sink(sc, NULL, NULL);
        syscall_complete(sc, rc, NULL);
        return api_reply_error(r, rc,
                               rc == AIOS_ERR_BUSY ? "too many tool calls are pending (tools.max_pending); retry later" : NULL);
    }
    if (!chained) inflight_add(s, r);
    return wait_or_answer(r);
}

/* Cancels an abandoned request: LLM work through its core; a worker job checks the flag
 * before it starts (a storage write that already committed stays committed). */
static void cancel_work(llm_core *core, syscall_t *sc) {
    if (core) llm_core_cancel(core, sc);
    else syscall_cancel(sc);
}

void api_server_cancel_agent(api_server *s, const char *agent) {
    syscall_t *scs[256];
    llm_core *cores[256];
    int n = 0;
    pthread_mutex_lock(&s->in_mu);
    for (api_req *o = s->inflight; o && n < 256; o = o->in_next)
        if (o->sc && !strcmp(o->agent, agent)) {
            scs[n] = syscall_ref(o->sc);
            cores[n++] = o->core;
        }
    pthread_mutex_unlock(&s->in_mu);
    for (int i = 0; i < n; i++) {
        cancel_work(cores[i], scs[i]);
        syscall_unref(scs[i]);
    }
}

enum MHD_Result api_follow(api_req *r, syscall_t *sc, api_stream_fn on_stream) {
    attach(r, NULL, sc, NULL, on_stream);
    inflight_add(r->srv, r);
    return start_stream(r);
}

int api_inflight_find(api_req *r, api_door door, const char *public_id, bool cancel) {
    api_server *s = r->srv;
    syscall_t *sc = NULL;
    llm_core *core = NULL;
    pthread_mutex_lock(&s->in_mu);
    for (api_req *o = s->inflight; o && !sc; o = o->in_next)
        if (o->door == door && !strcmp(o->public_id, public_id) && !strcmp(o->agent, r->agent)) {
            sc = syscall_ref(o->sc);
            core = o->core;
        }
    pthread_mutex_unlock(&s->in_mu);
    if (!sc) return AIOS_ERR_NOT_FOUND;
    if (cancel && !syscall_is_done(sc)) cancel_work(core, sc);
    syscall_unref(sc);
    return AIOS_OK;
}

/* ---------- connection accounting: limits and deadlines ---------- */

static bool phase_open(conn_phase p) { return p <= CONN_PHASE_BUSY; }
static bool phase_busy(conn_phase p) { return p == CONN_PHASE_BODY || p == CONN_PHASE_BUSY; }

/* conn_mu held. */
static void conn_set_phase(api_server *s, api_conn *c, conn_phase p, double now) {
    s->n_open += (int)phase_open(p) - (int)phase_open(c->phase);
    s->n_busy += (int)phase_busy(p) - (int)phase_busy(c->phase);
    c->phase = p;
    c->t = now;
}

/* Closes c from our side (conn_mu held): an answer first if given, then both directions.
 * MHD sees the end of the stream in its own thread and cleans the connection up. */
static void conn_kill(api_server *s, api_conn *c, const char *answer, double now) {
    if (answer) (void)!send(c->fd, answer, strlen(answer), MSG_NOSIGNAL | MSG_DONTWAIT);
    shutdown(c->fd, SHUT_RDWR);
    conn_set_phase(s, c, CONN_PHASE_DEAD, now);
}

/* The connection that has waited longest for request headers (a first request, or the next
 * one on a kept-alive connection), to make room for a new one; NULL if every slot serves a
 * request. The oldest, not any: a connection accepted a moment ago may simply not have
 * been read yet. */
static api_conn *conn_victim(api_server *s) {
    api_conn *best = NULL;
    for (api_conn *c = s->conns; c; c = c->next)
        if ((c->phase == CONN_PHASE_HEAD || c->phase == CONN_PHASE_IDLE) && (!best || c->t < best->t)) best = c;
    return best;
}

/* A complete HTTP answer with the error JSON of rc, for writing straight to a socket. */
static char *raw_answer(int rc, const char *msg) {
    cJSON *j = api_error_json(rc, msg);
    char *body = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    strbuf b;
    sb_init(&b, 0);
    int st = aios_http_status(rc);
    if (body)
        sb_printf(&b, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                  st,
                  st == 400       ? "Bad Request"
                      : st == 408 ? "Request Timeout"
                                  : "Service Unavailable",
                  strlen(body), body);
    free(body);
    return b.data;
}

/* A connection closing before its first request reached us (conn_mu held): libmicrohttpd
 * drops a request line or header it cannot parse without a word (or after its own
 * answer). When the client sent bytes and nothing went back, it gets the JSON 400 before
 * the socket goes (MHD_USE_TURBO: MHD has not shut the sending side down yet). */
static void conn_malformed(api_server *s, const api_conn *c) {
    struct tcp_info ti;
    socklen_t n = sizeof ti;
    memset(&ti, 0, sizeof ti);
    if (c->phase != CONN_PHASE_HEAD || getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &n) ||
        n < offsetof(struct tcp_info, tcpi_bytes_sent) + sizeof ti.tcpi_bytes_sent)
        return;
    if (ti.tcpi_bytes_received == 0 || ti.tcpi_bytes_sent != 0) return;
    size_t len = strlen(s->ans_malformed);
    if (send(c->fd, s->ans_malformed, len, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)len) s->cstat.malformed++;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx, enum MHD_ConnectionNotificationCode code) {
    api_server *s = cls;
    api_conn *c = *socket_ctx;
    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        if (!c) return;
        pthread_mutex_lock(&s->conn_mu);
        conn_malformed(s, c);
        conn_set_phase(s, c, CONN_PHASE_DEAD, 0);
        if (c->prev) c->prev->next = c->next;
        else s->conns = c->next;
        if (c->next) c->next->prev = c->prev;
        pthread_mutex_unlock(&s->conn_mu);
        free(c);
        *socket_ctx = NULL;
        return;
    }
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return;
    c = calloc(1, sizeof *c);
    if (!c) { /* cannot account for it: do not serve it */
        shutdown(ci->connect_fd, SHUT_RDWR);
        return;
    }
    c->fd = ci->connect_fd;
    c->phase = CONN_PHASE_DEAD;
    double now = kern_now_mono();
    pthread_mutex_lock(&s->conn_mu);
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    api_conn *victim = s->n_open >= s->max_conns ? conn_victim(s) : NULL;
    if (victim) {
        conn_kill(s, victim, NULL, now);
        s->cstat.evicted++;
    }
    if (s->n_open < s->max_conns) {
        conn_set_phase(s, c, CONN_PHASE_HEAD, now);
    } else { /* every slot serves a request: refuse now rather than leave it in the backlog */
        (void)!send(c->fd, s->ans_over_limit, strlen(s->ans_over_limit), MSG_NOSIGNAL | MSG_DONTWAIT);
        shutdown(c->fd, SHUT_WR);
        c->phase = CONN_PHASE_REFUSED;
        c->t = now;
        s->cstat.refused++;
    }
    pthread_mutex_unlock(&s->conn_mu);
    *socket_ctx = c;
}

/* Enforces the deadlines of the connection phases (the watcher, every 50 ms). */
static void conn_sweep(api_server *s) {
    const aios_config *cfg = s->cfg;
    double now = kern_now_mono(), grace = cfg->server.header_timeout_ms / 1000.0;
    double idle = cfg->server.connection_timeout_s, rate = (double)cfg->server.min_body_rate;
    pthread_mutex_lock(&s->conn_mu);
    for (api_conn *c = s->conns; c; c = c->next) {
        double age = now - c->t;
        if (c->phase == CONN_PHASE_HEAD && age > grace) {
            conn_kill(s, c, s->ans_head_timeout, now);
            s->cstat.header_timeouts++;
        } else if (c->phase == CONN_PHASE_IDLE && idle > 0 && age > idle) {
            conn_kill(s, c, NULL, now);
        } else if (c->phase == CONN_PHASE_BODY && rate > 0 && age > grace && (double)c->body_bytes < rate * age) {
            conn_kill(s, c, s->ans_slow_body, now);
            s->cstat.slow_bodies++;
        } else if (c->phase == CONN_PHASE_REFUSED && age > CONN_REFUSED_LINGER_S) {
            conn_kill(s, c, NULL, now);
        }
    }
    pthread_mutex_unlock(&s->conn_mu);
}

/* The request's headers are complete: its connection enters the body phase. Returns false
 * for a connection refused at accept (closed without a second answer). */
static bool conn_request_begins(api_req *r, struct MHD_Connection *conn) {
    api_server *s = r->srv;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    r->cn = ci ? ci->socket_context : NULL;
    if (!r->cn) return true;
    pthread_mutex_lock(&s->conn_mu);
    bool refused = r->cn->phase == CONN_PHASE_REFUSED || r->cn->phase == CONN_PHASE_DEAD;
    if (!refused) {
        conn_set_phase(s, r->cn, CONN_PHASE_BODY, kern_now_mono());
        r->cn->body_bytes = 0;
        r->reserved_only = s->reserved > 0 && s->n_busy - 1 >= s->max_conns - s->reserved;
    }
    pthread_mutex_unlock(&s->conn_mu);
    return !refused;
}

/* The request left the phase it was in: BODY -> BUSY (complete), BUSY -> IDLE (answered). */
static void conn_request_moves(api_req *r, conn_phase from, conn_phase to) {
    if (!r->cn) return;
    pthread_mutex_lock(&r->srv->conn_mu);
    if (r->cn->phase == from) conn_set_phase(r->srv, r->cn, to, kern_now_mono());
    pthread_mutex_unlock(&r->srv->conn_mu);
}

static void conn_body_bytes(api_req *r, size_t n) {
    if (!r->cn) return;
    pthread_mutex_lock(&r->srv->conn_mu);
    r->cn->body_bytes += n;
    pthread_mutex_unlock(&r->srv->conn_mu);
}

/* MHD's own limit stays above server.max_connections, so that MHD keeps accepting and this
 * file decides (refuse or make room). Raises the soft file-descriptor limit if needed (as
 * redis does); if the hard limit is too low, serves fewer connections and says so. */
static void conn_limits(api_server *s) {
    int n = s->cfg->server.max_connections;
    unsigned hard = (unsigned)n + (unsigned)n / 4 + 16;
    struct rlimit rl;
    rlim_t need = (rlim_t)hard + CONN_FD_RESERVE;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < need) {
            hard = rl.rlim_cur > 2 * CONN_FD_RESERVE ? (unsigned)(rl.rlim_cur - CONN_FD_RESERVE) : (unsigned)rl.rlim_cur / 2;
            int fit = (int)(hard * 4 / 5);
            if (fit < n) {
                log_warn(
                    "server.max_connections=%d needs %llu file descriptors, the limit (ulimit -n) is %llu: serving at most %d", n,
                    (unsigned long long)need, (unsigned long long)rl.rlim_cur, fit < 4 ? 4 : fit);
                n = fit < 4 ? 4 : fit;
            }
        }
    }
    s->max_conns = n;
    s->mhd_limit = hard;
    s->reserved = s->cfg->server.reserved_connections < n / 2 ? s->cfg->server.reserved_connections : n / 2;
}

/* aios_door_*: requests, latency and tokens per API dialect. */
static void metrics_doors(api_server *s, strbuf *b) {
    door_stats d[API_DOOR__COUNT];
    pthread_mutex_lock(&s->door_mu);
    memcpy(d, s->doors, sizeof d);
    pthread_mutex_unlock(&s->door_mu);
    static const char *const CLASS[3] = {"2xx", "4xx", "5xx"};
    sb_puts(b,
            "# HELP aios_door_requests_total Requests answered, per API door and status class.\n"
            "# TYPE aios_door_requests_total counter\n");
    for (int k = 0; k < API_DOOR__COUNT; k++)
        for (int c = 0; c < 3; c++)
            sb_printf(b, "aios_door_requests_total{door=\"%s\",status=\"%s\"} %llu\n", DOOR_NAMES[k], CLASS[c], d[k].by_class[c]);
    sb_puts(
        b,
        "# HELP aios_door_request_seconds Time from a request's headers to the end of its answer (streams: the last event), per door.\n"
        "# TYPE aios_door_request_seconds histogram\n");
    for (int k = 0; k < API_DOOR__COUNT; k++) {
        char labels[48];
        snprintf(labels, sizeof labels, "door=\"%s\"", DOOR_NAMES[k]);
        api_metric_hist(b, "aios_door_request_seconds", labels, &d[k].latency);
    }
    sb_puts(b,
            "# HELP aios_door_tokens_total Prompt and completion tokens of the LLM requests that came through each door.\n"
            "# TYPE aios_door_tokens_total counter\n");
    for (int k = 0; k < API_DOOR__COUNT; k++)
        sb_printf(
            b,
            "aios_door_tokens_total{door=\"%s\",kind=\"prompt\"} %llu\naios_door_tokens_total{door=\"%s\",kind=\"completion\"} %llu\n",
            DOOR_NAMES[k], d[k].prompt_tokens, DOOR_NAMES[k], d[k].completion_tokens);
}

void api_metric_unlabelled(strbuf *b, const char *name, const char *type, const char *help, double v) {
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

void api_metric_hist(strbuf *b, const char *name, const char *labels, const kern_hist *h) {
    for (int i = 0; i < h->n; i++) sb_printf(b, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels, h->le[i], h->bucket[i]);
    sb_printf(b, "%s_bucket{%s,le=\"+Inf\"} %llu\n%s_sum{%s} %.9g\n%s_count{%s} %llu\n", name, labels, h->count, name, labels,
              h->sum, name, labels, h->count);
}

void api_metrics_http(api_req *r, strbuf *b) {
    api_server *s = r->srv;
    pthread_mutex_lock(&s->conn_mu);
    int open = s->n_open, busy = s->n_busy;
    conn_stats st = s->cstat;
    pthread_mutex_unlock(&s->conn_mu);
    sb_printf(b,
              "# HELP aios_http_connections Open HTTP connections (server.max_connections at most).\n"
              "# TYPE aios_http_connections gauge\naios_http_connections %d\n",
              open);
    sb_printf(b,
              "# HELP aios_http_connections_busy Connections whose request is arriving or being served.\n"
              "# TYPE aios_http_connections_busy gauge\naios_http_connections_busy %d\n",
              busy);
    const struct {
        const char *name, *help;
        unsigned long long v;
    } c[] = {
        {"aios_http_connections_refused_total", "Connections answered 503 at accept: every slot was serving a request.",
         st.refused},
        {"aios_http_connections_evicted_total",
         "Connections still waiting for their request headers, closed to make room for a new one.", st.evicted},
        {"aios_http_header_timeouts_total",
         "Connections closed (408) for not completing their request headers within server.header_timeout_ms.",
         st.header_timeouts},
        {"aios_http_slow_bodies_total", "Requests closed (408) for sending their body slower than server.min_body_rate.",
         st.slow_bodies},
        {"aios_http_reserved_refused_total",
         "Requests without an identity token answered 503 while only server.reserved_connections slots were left.",
         st.reserved_refused},
        {"aios_http_malformed_total", "Connections whose first request line or header could not be parsed, answered 400.",
         st.malformed},
        {"aios_http_rate_limited_total", "Syscalls answered 429: their agent was over access.rate_limit.",
         api_gatekeeper_limited(s->gate)},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) api_metric_unlabelled(b, c[i].name, "counter", c[i].help, (double)c[i].v);
    metrics_doors(s, b);
}

/* ---------- the events tick (GET /events) ---------- */

int api_events_subscribe(api_req *r, syscall_t *sc) {
    api_server *s = r->srv;
    pthread_mutex_lock(&s->ev_mu);
    int rc = s->n_ev < API_MAX_EVENT_SUBS ? AIOS_OK : AIOS_ERR_BUSY;
    if (!rc) s->ev_subs[s->n_ev++] = syscall_ref(sc);
    pthread_mutex_unlock(&s->ev_mu);
    if (!rc) syscall_emit(sc, ".", 1); /* the first snapshot at once */
    return rc;
}

/* Every second a byte to each subscriber (its stream then sends a snapshot); the ones whose
 * client left, or everyone when closing, complete and go. */
static void events_tick(api_server *s, bool closing) {
    double now = kern_now_mono();
    if (!closing && now - s->ev_last < 1.0) return;
    s->ev_last = now;
    pthread_mutex_lock(&s->ev_mu);
    syscall_fanout(s->ev_subs, &s->n_ev, ".", 1, closing);
    pthread_mutex_unlock(&s->ev_mu);
}

/* ---------- hang-up watcher ---------- */

static void *watcher_main(void *arg) {
    api_server *s = arg;
    enum { BATCH = 256 };
    while (!s->watcher_stop) {
        struct pollfd fds[BATCH];
        syscall_t *scs[BATCH];
        llm_core *cores[BATCH];
        int n = 0;
        pthread_mutex_lock(&s->in_mu);
        for (api_req *r = s->inflight; r && n < BATCH; r = r->in_next) {
            pthread_mutex_lock(&r->sc->mu);
            bool watch = r->suspended && r->sc->state != SYSCALL_STATE_DONE;
            pthread_mutex_unlock(&r->sc->mu);
            const union MHD_ConnectionInfo *ci =
                watch ? MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD) : NULL;
            if (!ci) continue;
            fds[n] = (struct pollfd){.fd = ci->connect_fd, .events = POLLRDHUP};
            scs[n] = syscall_ref(r->sc);
            cores[n] = r->core;
            n++;
        }
        pthread_mutex_unlock(&s->in_mu);
        if (n && poll(fds, (nfds_t)n, 0) > 0)
            for (int i = 0; i < n; i++)
                if (fds[i].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
                    log_debug("client of syscall %llu hung up; cancelling", (unsigned long long)scs[i]->id);
                    cancel_work(cores[i], scs[i]);
                }
        for (int i = 0; i < n; i++) syscall_unref(scs[i]);
        conn_sweep(s);
        events_tick(s, false);
        usleep(50 * 1000);
    }
    events_tick(s, true);
    return NULL;
}

/* ---------- MHD callbacks ---------- */

/* Whether url matches a route's path, where a "*" segment matches one non-empty segment. */
static bool path_matches(const char *pat, const char *url) {
    while (*pat && *url) {
        if (pat[0] == '*' && (pat[1] == '/' || !pat[1]) && pat[-1] == '/') {
            size_t seg = strcspn(url, "/");
            if (!seg) return false;
            url += seg;
            pat++;
        } else if (*pat++ != *url++) {
            return false;
        }
    }
    return !*pat && !*url;
}

#ifdef AIOS_TORTURE
/* The torture tier (src/kernel/torture.c, docs/testing.md): POST /admin/torture {"fail_at": N}
 * arms the next request to arrive: every call into it runs with its allocations counted, and
 * its N-th fails; GET /admin/torture says whether the last armed request that ended had its
 * allocation fail ("injected"), so the harness knows when N has passed them all. */
static atomic_long g_torture_next;
static atomic_int g_torture_last = -1;

static enum MHD_Result h_torture_arm(api_req *r, cJSON *body) {
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(body, "fail_at");
    if (!cJSON_IsNumber(n) || n->valuedouble < 1) return api_reply_error(r, AIOS_ERR_INVALID, "'fail_at' must be >= 1");
    atomic_store(&g_torture_next, (long)n->valuedouble);
    atomic_store(&g_torture_last, -1);
    return api_reply_text(r, 200, "application/json", "{\"armed\":true}");
}

static enum MHD_Result h_torture_get(api_req *r, cJSON *body) {
    (void)body;
    int last = atomic_load(&g_torture_last);
    return api_reply_text(r, 200, "application/json",
                          last < 0   ? "{\"injected\":null}"
                              : last ? "{\"injected\":true}"
                                     : "{\"injected\":false}");
}

static const api_route api_routes_torture[] = {
    {"POST", "/admin/torture", h_torture_arm, true, API_GATE_ADMIN, NULL, API_DOOR_ADMIN},
    {"GET", "/admin/torture", h_torture_get, false, API_GATE_ADMIN, NULL, API_DOOR_ADMIN},
    {NULL, NULL, NULL, false, API_GATE_ADMIN, NULL, API_DOOR_ADMIN},
};
#endif

static const api_route *find_route(const char *method, const char *url, bool *path_known, api_door *door) {
    const api_route *tables[] = {
        api_routes_aios,    api_routes_openai, api_routes_mem,    api_routes_tools,  api_routes_responses, api_routes_anthropic,
        api_routes_ollama,  api_routes_models, api_routes_compat, api_routes_agents, api_routes_ui,
#ifdef AIOS_TORTURE
        api_routes_torture,
#endif
    };
    *path_known = false;
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++)
        for (const api_route *rt = tables[t]; rt->path; rt++) {
            if (!path_matches(rt->path, url)) continue;
            *path_known = true;
            *door = rt->door; /* a wrong method is answered in the path's door's shape */
            if (strcmp(rt->method, method) == 0) return rt;
        }
    return NULL;
}

/* X-AIOS-Priority: an integer in [AIOS_PRIORITY_MIN, AIOS_PRIORITY_MAX]; -1 when absent. */
static int priority_from_header(api_req *r) {
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-AIOS-Priority");
    r->priority = -1;
    if (!h) return AIOS_OK;
    char *end;
    long v = strtol(h, &end, 10);
    if (end == h || *end || v < AIOS_PRIORITY_MIN || v > AIOS_PRIORITY_MAX) return AIOS_ERR_INVALID;
    r->priority = (int)v;
    return AIOS_OK;
}

bool api_conn_admits(api_req *r, char *err, size_t errlen) {
    if (!r->reserved_only || r->token_agent) return true;
    pthread_mutex_lock(&r->srv->conn_mu);
    r->srv->cstat.reserved_refused++;
    pthread_mutex_unlock(&r->srv->conn_mu);
    snprintf(err, errlen,
             "all but server.reserved_connections (%d) of server.max_connections (%d) connections are busy; "
             "the rest are kept for identities (a bearer token): retry later",
             r->srv->reserved, r->srv->max_conns);
    return false;
}

/* The request's JSON body through the one JSON gate (json.c) into *body. */
static int parse_body(api_req *r, cJSON **body, char *err, size_t errlen) {
    int rc = jp_parse_body(r->body.data, r->body.len, r->srv->cfg->server.json_max_depth, body, err, errlen);
    if (!rc && !strncmp(r->url, "/v1/", 4)) rc = jp_openai_common(*body, err, errlen);
    return rc;
}

/* ---------- requests waiting for their model to load ---------- */

static enum MHD_Result dispatch(api_req *r);

/* The model is ready, or is not going to be: the request is dispatched again (the core's
 * lifecycle thread, no core lock held). */
static void model_settled(void *ctx) {
    api_req *r = ctx;
    pthread_mutex_lock(&r->srv->load_mu);
    if (r->load_waiting) {
        r->load_waiting = false;
        r->redispatch = true;
        MHD_resume_connection(r->conn);
    }
    pthread_mutex_unlock(&r->srv->load_mu);
}

/* After the plan: an LLM request whose model is not ready (loading, unloading, or unloaded
 * with load_on_request) waits for it, suspended, and starts over when it is. True when it
 * waits. */
static bool wait_for_model(api_req *r) {
    llm_core *core = r->adm.core;
    if (!core || llm_core_get_state(core, NULL, 0, NULL) == LLM_CORE_READY) return false;
    const aios_model_cfg *m = config_model(r->srv->cfg, llm_core_name(core));
    pthread_mutex_lock(&r->srv->load_mu); /* before the callback can run: it takes load_mu */
    bool waits = llm_core_when_ready(core, m && m->load_on_request, model_settled, r);
    if (waits) {
        r->load_waiting = true;
        r->load_core = core;
        MHD_suspend_connection(r->conn);
    }
    pthread_mutex_unlock(&r->srv->load_mu);
    return waits;
}

/* Resumed from that wait: everything the first dispatch built goes, and it starts over. */
static enum MHD_Result redispatch(api_req *r) {
    r->redispatch = false;
    pthread_mutex_lock(&r->srv->gate_mu);
    bool closing = r->srv->closing;
    pthread_mutex_unlock(&r->srv->gate_mu);
    if (closing) return api_reply_error(r, AIOS_ERR_SHUTDOWN, "the kernel is shutting down");
    cJSON_Delete(r->door_body);
    r->door_body = NULL;
    api_admission_free(&r->adm);
    return dispatch(r);
}

/* Route, credentials, JSON gate, the route's plan, a wait for its model when it is not
 * ready, the admission gate, then the handler. */
static enum MHD_Result dispatch(api_req *r) {
    r->cors_origin = cors_allowed(r);
    if (r->body_oom) return api_reply_error(r, AIOS_ERR_NOMEM, "no memory for the request body");
    if (r->too_large)
        return api_reply_error(r, AIOS_ERR_TOO_LARGE, "request body exceeds server.max_body_bytes (%ld bytes)",
                               r->srv->cfg->server.max_body_bytes);
    bool known;
    r->door = !strncmp(r->url, "/api/", 5) ? API_DOOR_OLLAMA : API_DOOR_OTHER;
    const api_route *rt = find_route(r->method, r->url, &known, &r->door);
    if (!rt && known && !strcmp(r->method, "OPTIONS")) return preflight(r);
    if (!rt) {
        if (known) return api_reply_error(r, AIOS_ERR_METHOD, "%s is not allowed on %s", r->method, r->url);
        return api_reply_error(r, AIOS_ERR_NOT_FOUND, "no route %s %s", r->method, r->url);
    }
    char err[512] = "";
    if (rt->gate == API_GATE_PUBLIC) return rt->handler(r, NULL);
    if (!atomic_load(&r->srv->ready)) {
        r->retry_after_s = 1;
        return api_reply_error(r, AIOS_ERR_LOADING, "the models are still loading (GET /health says when they are ready)");
    }
    int rc = api_gate_identify(r, err, sizeof err);
    if (rc) return api_reply_error(r, rc, "%s", err);
    if (priority_from_header(r))
        return api_reply_error(r, AIOS_ERR_INVALID, "X-AIOS-Priority must be an integer in [%d, %d]", AIOS_PRIORITY_MIN,
                               AIOS_PRIORITY_MAX);
    if (r->priority < 0) { /* a kernel-run agent's own */
        int p = agents_priority(api_agents(r), r->agent);
        r->priority = p >= 0 ? p : -1;
    }
    cJSON *body = NULL;
    if (rt->json_body) rc = parse_body(r, &body, err, sizeof err);
    if (!rc && rt->plan) rc = rt->plan(r, body, &r->adm, err, sizeof err);
    if (!rc && kern_json_oom()) { /* the plan (a door's translation) lost a part for want of memory */
        snprintf(err, sizeof err, "out of memory");
        rc = AIOS_ERR_NOMEM;
    }
    if (!rc && rt->gate == API_GATE_SYSCALL && wait_for_model(r)) { /* before the gate: counted once */
        cJSON_Delete(body);
        return MHD_YES;
    }
    if (!rc) rc = api_gate_admit(r, rt->gate, &r->adm, err, sizeof err);
    if (!rc && rt->gate == API_GATE_SYSCALL)
        agents_note(api_agents(r), r->agent, &(agents_usage){.syscall = true, .tool = r->adm.kind == SYSCALL_KIND_TOOL});
    api_admission_unborrow(&r->adm); /* the handler reads what it needs now; body goes below */
    enum MHD_Result ret = rc ? api_reply_error(r, rc, "%s", err) : rt->handler(r, body);
    cJSON_Delete(body);
    return ret;
}

static enum MHD_Result on_request_inner(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                        const char *upload, size_t *upload_size, void **con_cls) {
    api_server *s = cls;
    api_req *r = *con_cls;
    kern_json_oom_clear(); /* (api_reply_json: this call's answer only) */
    if (!r) {
        size_t ul = strlen(url) + 1;
        r = calloc(1, sizeof *r + ul); /* the URL after the record: one allocation */
        if (!r) return answer_no_memory(conn, NULL);
        r->srv = s;
        r->conn = conn;
        r->t_begin = kern_now_mono();
        r->door = API_DOOR_OTHER;
        snprintf(r->method, sizeof r->method, "%s", method);
        r->url = memcpy((char *)(r + 1), url, ul);
        sb_init(&r->body, (size_t)s->cfg->server.max_body_bytes);
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoll(cl, NULL, 10) > s->cfg->server.max_body_bytes) r->too_large = true;
        *con_cls = r;
        if (!conn_request_begins(r, conn)) return MHD_NO; /* refused at accept: already answered 503 */
        return MHD_YES;
    }
    if (*upload_size) {
        conn_body_bytes(r, *upload_size);
        int rc = r->too_large || r->body_oom ? AIOS_OK : sb_append(&r->body, upload, *upload_size);
        if (rc) { /* the rest of the body is read and dropped; the answer says which limit */
            r->too_large = rc == AIOS_ERR_TOO_LARGE;
            r->body_oom = rc != AIOS_ERR_TOO_LARGE;
            sb_free(&r->body);
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->redispatch) return redispatch(r); /* resumed: its model is ready, or is not going to be */
    if (r->sc) {                             /* resumed: the syscall finished (or a spurious wake-up) */
        if (r->answered) return MHD_YES;
        return wait_or_answer(r);
    }
    if (r->answered) return MHD_YES;
    conn_request_moves(r, CONN_PHASE_BODY, CONN_PHASE_BUSY);
    return dispatch(r);
}

#ifdef AIOS_TORTURE
/* What a worker that ran for r left of its countdown, and whether it failed one
 * (syscall_torture_return): before each call arms the thread, and after it, as the call may
 * have answered at once. */
static void torture_take_back(api_req *r) {
    if (!r || !r->sc) return;
    long back = atomic_exchange(&r->sc->torture_left, 0);
    if (back) r->torture_left = back;
    if (atomic_exchange(&r->sc->torture_hit, false)) r->torture_hit = true;
}
#endif

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
#ifdef AIOS_TORTURE
    api_req *r = *con_cls;
    torture_take_back(r);
    long n = r ? (r->torture_hit ? 0 : r->torture_left) : atomic_exchange(&g_torture_next, 0);
    torture_arm(n);
    enum MHD_Result ret = on_request_inner(cls, conn, url, method, upload, upload_size, con_cls);
    kern_json_sweep(); /* (what this call built is answered or kept whole by now) */
    bool hit;
    long left = torture_disarm(&hit);
    if (!r && (r = *con_cls)) r->torture_armed = n > 0;
    if (r) {
        r->torture_left = left;
        r->torture_hit |= hit;
        torture_take_back(r); /* (a worker that finished before this call answered) */
    } else if (hit) {
        atomic_store(&g_torture_last, 1); /* the request's own record was the allocation */
    }
    return ret;
#else
    enum MHD_Result ret = on_request_inner(cls, conn, url, method, upload, upload_size, con_cls);
    kern_json_sweep(); /* (what this call built is answered or kept whole by now) */
    return ret;
#endif
}

/* A request's end: its door's counters (answered ones only) and its agent's budgets. */
static void door_count(api_server *s, api_req *r) {
    if (!r->status) return;
    double dt = kern_now_mono() - r->t_begin;
    int pt = 0, ct = 0;
    if (r->sc && r->sc->kind == SYSCALL_KIND_LLM && syscall_is_done(r->sc)) {
        pt = llm_request_prompt_tokens(r->sc->args);
        ct = llm_request_completion_tokens(r->sc->args);
    }
    pt += r->done_prompt_tokens;
    ct += r->done_completion_tokens;
    if (r->adm.kind == SYSCALL_KIND_LLM && r->adm.core && pt + ct > 0) /* budgets: what the request used */
        access_budget_charge(s->access, r->agent, llm_core_name(r->adm.core), pt + ct);
    agents_t *ag = atomic_load(&s->agents);
    if (ag && r->sc && syscall_is_done(r->sc)) { /* a kernel-run agent's record */
        double st[SYSCALL_MAX_ROUNDS], en[SYSCALL_MAX_ROUNDS], w[SYSCALL_MAX_ROUNDS], ta[SYSCALL_MAX_ROUNDS], wait = 0;
        int n = syscall_timings(r->sc, st, en, w, ta, SYSCALL_MAX_ROUNDS);
        for (int i = 0; i < n; i++) wait += w[i];
        agents_note(ag, r->agent, &(agents_usage){.tokens = pt + ct, .wait_s = wait});
    }
    pthread_mutex_lock(&s->door_mu);
    door_stats *d = &s->doors[r->door];
    d->by_class[r->status >= 500 ? 2 : r->status >= 400 ? 1 : 0]++;
    kern_hist_add(&d->latency, dt);
    d->prompt_tokens += (unsigned long long)pt;
    d->completion_tokens += (unsigned long long)ct;
    pthread_mutex_unlock(&s->door_mu);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)conn;
    api_server *s = cls;
    api_req *r = *con_cls;
    if (!r) return;
#ifdef AIOS_TORTURE
    if (r->torture_armed) atomic_store(&g_torture_last, r->torture_hit);
#endif
    /* answered (or abandoned): a kept-alive connection now waits for its next request */
    conn_request_moves(r, CONN_PHASE_BUSY, CONN_PHASE_IDLE);
    conn_request_moves(r, CONN_PHASE_BODY, CONN_PHASE_IDLE);
    door_count(s, r);
    pthread_mutex_lock(&s->load_mu);
    if (r->load_waiting) llm_core_forget(r->load_core, r); /* gone while waiting for its model */
    r->load_waiting = false;
    pthread_mutex_unlock(&s->load_mu);
    if (r->sc) {
        syscall_set_sink(r->sc, NULL, NULL);
        inflight_remove(s, r);
        if (!syscall_is_done(r->sc)) {
            log_debug("request %llu ended early (%d); cancelling", (unsigned long long)r->sc->id, (int)toe);
            cancel_work(r->core, r->sc);
        }
        syscall_unref(r->sc);
    }
    for (int i = r->choice + 1; i < r->n_choices; i++) { /* choices the answer did not reach */
        if (!r->choices[i]) continue;
        if (!syscall_is_done(r->choices[i])) cancel_work(r->core, r->choices[i]);
        syscall_unref(r->choices[i]);
    }
    if (r->data_free) r->data_free(r->data);
    cJSON_Delete(r->door_body);
    api_admission_free(&r->adm);
    sb_free(&r->body);
    sb_free(&r->sse);
    free(r);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && line[n - 1] == '\n') line[--n] = 0;
    log_debug("http: %s", line);
}

/* Frees what api_server_start set up besides the daemon (MHD has closed every connection). */
static void server_free_parts(api_server *s) {
    while (s->conns) {
        api_conn *c = s->conns;
        s->conns = c->next;
        free(c);
    }
    free(s->ans_head_timeout);
    free(s->ans_slow_body);
    free(s->ans_over_limit);
    free(s->ans_malformed);
    api_gatekeeper_free(s->gate);
    pthread_mutex_destroy(&s->gate_mu);
    pthread_mutex_destroy(&s->in_mu);
    pthread_mutex_destroy(&s->load_mu);
    pthread_mutex_destroy(&s->sel_mu);
    pthread_mutex_destroy(&s->conn_mu);
    pthread_mutex_destroy(&s->door_mu);
    pthread_mutex_destroy(&s->ev_mu);
    free(s);
}

api_server *api_server_start(const api_params *p, char *err, size_t errlen) {
    api_server *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->cfg = p->cfg;
    s->cores = p->cores;
    s->n_cores = p->n_cores;
    s->add_model = p->add_model;
    s->add_ctx = p->add_ctx;
    s->mem = p->mem;
    s->storage = p->storage;
    s->embedder = p->embedder;
    memcpy(s->runq, p->runq, sizeof s->runq);
    s->tools = p->tools;
    s->access = p->access;
    s->started = kern_now_mono();
    pthread_mutex_init(&s->gate_mu, NULL);
    pthread_mutex_init(&s->in_mu, NULL);
    pthread_mutex_init(&s->load_mu, NULL);
    pthread_mutex_init(&s->sel_mu, NULL);
    pthread_mutex_init(&s->conn_mu, NULL);
    pthread_mutex_init(&s->door_mu, NULL);
    for (int k = 0; k < API_DOOR__COUNT; k++) kern_hist_init(&s->doors[k].latency, DOOR_BUCKETS, (int)N_DOOR_BUCKETS);
    pthread_mutex_init(&s->ev_mu, NULL);
    conn_limits(s);
    s->ans_head_timeout = raw_answer(AIOS_ERR_TIMEOUT, "the request headers did not arrive within server.header_timeout_ms");
    s->ans_slow_body = raw_answer(AIOS_ERR_TIMEOUT, "the request body arrived slower than server.min_body_rate bytes/s");
    s->ans_over_limit = raw_answer(AIOS_ERR_BUSY, "server.max_connections connections are serving requests; retry later");
    s->ans_malformed = raw_answer(AIOS_ERR_INVALID,
                                  "the request line or a header is not HTTP/1.1 (METHOD /path HTTP/1.1, then Name: value lines)");
    s->gate = api_gatekeeper_new(p->cfg);
    if (!s->ans_head_timeout || !s->ans_slow_body || !s->ans_over_limit || !s->ans_malformed || !s->gate) {
        snprintf(err, errlen, "out of memory");
        server_free_parts(s);
        return NULL;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p->cfg->server.port)};
    if (inet_pton(AF_INET, p->cfg->server.host, &sa.sin_addr) != 1) {
        snprintf(err, errlen, "server.host: '%s' is not an IPv4 address", p->cfg->server.host);
        server_free_parts(s);
        return NULL;
    }
    s->mhd = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_TURBO,
        (uint16_t)p->cfg->server.port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_CONNECTION_LIMIT,
        s->mhd_limit, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)p->cfg->server.connection_timeout_s, MHD_OPTION_EXTERNAL_LOGGER,
        mhd_log, NULL, MHD_OPTION_END);
    if (!s->mhd) {
        snprintf(err, errlen, "cannot listen on %s:%d (is the port in use?)", p->cfg->server.host, p->cfg->server.port);
        server_free_parts(s);
        return NULL;
    }
    if (pthread_create(&s->watcher, NULL, watcher_main, s) == 0) s->watcher_running = true;
    return s;
}

void api_server_close(api_server *s) {
    if (!s) return;
    pthread_mutex_lock(&s->gate_mu);
    s->closing = true;
    pthread_mutex_unlock(&s->gate_mu);
    s->watcher_stop = true;
    if (s->watcher_running) pthread_join(s->watcher, NULL);
    s->watcher_running = false;
}

void api_server_free(api_server *s) {
    if (!s) return;
    api_server_close(s);
    /* let the event thread flush answers of connections resumed by the final completions */
    for (int i = 0; i < 20; i++) {
        pthread_mutex_lock(&s->in_mu);
        bool busy = s->inflight != NULL;
        pthread_mutex_unlock(&s->in_mu);
        if (!busy) break;
        usleep(50 * 1000);
    }
    MHD_stop_daemon(s->mhd);
    server_free_parts(s);
}
