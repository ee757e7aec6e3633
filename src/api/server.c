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
 */
#include <arpa/inet.h>
#include <poll.h>
#include <strings.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "api_internal.h"

struct api_server {
    const aios_config *cfg;
    llm_core *const *cores;
    int n_cores;
    mem_manager *mem;
    storage_manager *storage;
    llm_embedder *embedder;
    workq *workers;
    tool_manager *tools;
    access_manager *access;
    struct MHD_Daemon *mhd;
    double started;
    pthread_mutex_t gate_mu;   /* closing + submit */
    bool closing;
    pthread_mutex_t in_mu;     /* in-flight list */
    api_req *inflight;
    pthread_t watcher;
    bool watcher_running;
    volatile bool watcher_stop;
};

const aios_config *api_cfg(api_req *r) { return r->srv->cfg; }
int api_n_cores(api_req *r) { return r->srv->n_cores; }
llm_core *api_core_at(api_req *r, int i) { return r->srv->cores[i]; }
double api_uptime(api_req *r) { return kern_now_mono() - r->srv->started; }
mem_manager *api_mem(api_req *r) { return r->srv->mem; }
storage_manager *api_storage(api_req *r) { return r->srv->storage; }
llm_embedder *api_embedder(api_req *r) { return r->srv->embedder; }
tool_manager *api_tools(api_req *r) { return r->srv->tools; }
access_manager *api_access(api_req *r) { return r->srv->access; }

int api_check(api_req *r, access_kind kind, const char *resource, unsigned action, const cJSON *params, char *err,
              size_t errlen) {
    char *p = params ? cJSON_PrintUnformatted(params) : NULL;
    int rc = access_check(r->srv->access, r->agent, kind, resource, action, p, err, errlen);
    free(p);
    return rc;
}

llm_core *api_core(api_req *r, const char *name) {
    const aios_config *cfg = r->srv->cfg;
    if (!name || !*name) name = cfg->llms.default_model;
    for (int i = 0; i < r->srv->n_cores; i++)
        if (strcmp(cfg->llms.models[i].name, name) == 0) return r->srv->cores[i];
    return NULL;
}

/* ---------- replies ---------- */

static enum MHD_Result reply_buf(api_req *r, int status, const char *ctype, char *buf, size_t len) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(buf);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    r->answered = true;
    return ret;
}

enum MHD_Result api_reply_text(api_req *r, int status, const char *ctype, const char *text) {
    char *copy = strdup(text);
    return copy ? reply_buf(r, status, ctype, copy, strlen(copy)) : MHD_NO;
}

enum MHD_Result api_reply_json(api_req *r, int status, cJSON *json) {
    char *txt = json ? cJSON_PrintUnformatted(json) : NULL;
    cJSON_Delete(json);
    if (!txt) return api_reply_text(r, 500, "application/json", "{\"error\":{\"code\":\"out_of_memory\",\"message\":\"out of memory\"}}");
    return reply_buf(r, status, "application/json", txt, strlen(txt));
}

cJSON *api_error_json(int rc, const char *msg) {
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "code", aios_errcode(rc));
    cJSON_AddStringToObject(e, "message", msg && *msg ? msg : aios_strerror(rc));
    int st = aios_http_status(rc);
    cJSON_AddStringToObject(e, "type", st == 401 ? "authentication_error" : st == 403 ? "permission_error" : st == 404 ? "not_found_error"
                                       : st < 500 ? "invalid_request_error" : "server_error");
    return root;
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
    return api_reply_json(r, aios_http_status(rc), api_error_json(rc, msg));
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
        free(delta);
        if (done) r->final_sent = true;
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
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
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

enum MHD_Result api_run_syscall(api_req *r, llm_core *core, syscall_t *sc, api_done_fn on_done, api_stream_fn on_stream) {
    api_server *s = r->srv;
    r->sc = sc;
    r->core = core;
    r->on_done = on_done;
    r->on_stream = on_stream;
    r->streaming = on_stream != NULL;
    sb_init(&r->sse, 0);
    syscall_set_sink(sc, req_notify, r);
    pthread_mutex_lock(&s->gate_mu);
    int rc = s->closing ? AIOS_ERR_SHUTDOWN : llm_core_submit(core, sc);
    pthread_mutex_unlock(&s->gate_mu);
    if (rc) {
        syscall_set_sink(sc, NULL, NULL);
        syscall_complete(sc, rc, NULL);
        return api_reply_error(r, rc, rc == AIOS_ERR_BUSY ? "the run queue of this model is full (scheduler.max_queue)" : NULL);
    }
    inflight_add(s, r);
    return r->streaming ? start_stream(r) : wait_or_answer(r);
}

/* A worker-pool job: runs fn on the syscall's args and completes the syscall. */
typedef struct api_job {
    syscall_t *sc;   /* the job's own reference */
    api_work_fn fn;
} api_job;

static void job_main(void *arg) {
    api_job *j = arg;
    syscall_t *sc = j->sc;
    char err[512] = "";
    syscall_round_begin(sc);
    int rc = atomic_load(&sc->cancel) ? AIOS_ERR_CANCELLED : j->fn(sc->args, err, sizeof err);
    syscall_round_end(sc);
    syscall_complete(sc, rc, "%s", err);
    syscall_unref(sc);
    free(j);
}

enum MHD_Result api_run_job(api_req *r, syscall_t *sc, api_work_fn fn, api_done_fn on_done) {
    api_server *s = r->srv;
    api_job *j = malloc(sizeof *j);
    if (!j) {
        syscall_unref(sc);
        return MHD_NO;
    }
    *j = (api_job){syscall_ref(sc), fn};
    r->sc = sc;
    r->core = NULL;
    r->on_done = on_done;
    sb_init(&r->sse, 0);
    syscall_set_sink(sc, req_notify, r);
    pthread_mutex_lock(&s->gate_mu);
    int rc = s->closing ? AIOS_ERR_SHUTDOWN : workq_submit(s->workers, job_main, j);
    pthread_mutex_unlock(&s->gate_mu);
    if (rc) {
        syscall_unref(j->sc);
        free(j);
        syscall_set_sink(sc, NULL, NULL);
        syscall_complete(sc, rc, NULL);
        return api_reply_error(r, rc, rc == AIOS_ERR_BUSY ? "the worker queue is full (kernel.max_jobs); retry later" : NULL);
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
    pthread_mutex_lock(&s->gate_mu);
    int rc = s->closing ? AIOS_ERR_SHUTDOWN : tools_submit(s->tools, sc);
    pthread_mutex_unlock(&s->gate_mu);
    if (rc) {
        syscall_set_sink(sc, NULL, NULL);
        syscall_complete(sc, rc, NULL);
        return api_reply_error(r, rc, rc == AIOS_ERR_BUSY ? "too many tool calls are pending (tools.max_pending); retry later" : NULL);
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
            const union MHD_ConnectionInfo *ci = watch ? MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD) : NULL;
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
        usleep(50 * 1000);
    }
    return NULL;
}

/* ---------- MHD callbacks ---------- */

static const api_route *find_route(const char *method, const char *url, bool *path_known) {
    const api_route *tables[] = {api_routes_aios, api_routes_openai, api_routes_mem, api_routes_tools};
    *path_known = false;
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++)
        for (const api_route *rt = tables[t]; rt->path; rt++) {
            if (strcmp(rt->path, url) != 0) continue;
            *path_known = true;
            if (strcmp(rt->method, method) == 0) return rt;
        }
    return NULL;
}

/* Who asks. A bearer token of an identity names its agent (in both modes). In enforce
 * mode nothing else is accepted (401). In local mode a bearer value that is not a token
 * is taken as the agent's name (any OpenAI client can pick one), and /query's agent_name
 * names the agent when no token did. */
static int authenticate(api_req *r, char *err, size_t errlen) {
    const char *auth = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    const char *tok = auth && strncasecmp(auth, "Bearer ", 7) == 0 && auth[7] ? auth + 7 : NULL;
    bool enforce = !strcmp(r->srv->cfg->access.mode, "enforce");
    snprintf(r->agent, sizeof r->agent, "anonymous");
    if (tok && access_authenticate(r->srv->access, tok, r->agent, sizeof r->agent) == AIOS_OK) {
        r->token_agent = true;
        return AIOS_OK;
    }
    if (enforce) {
        snprintf(err, errlen, tok ? "the bearer token is unknown or revoked" : "access.mode is enforce: send Authorization: Bearer TOKEN (aios agent create NAME prints one)");
        return AIOS_ERR_UNAUTHORIZED;
    }
    if (tok && strncmp(tok, "aios_", 5) == 0) {
        snprintf(err, errlen, "the bearer token is unknown or revoked");
        return AIOS_ERR_UNAUTHORIZED;
    }
    if (tok) snprintf(r->agent, sizeof r->agent, "%s", tok);
    return AIOS_OK;
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

/* Whether JSON text holds a \u0000 escape. cJSON would cut the string there, so a path
 * or name could silently mean something shorter; the kernel refuses NUL in any string. */
static bool has_nul_escape(const char *s, size_t n) {
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] != '\\') continue;
        if (s[i + 1] == 'u' && i + 5 < n && !memcmp(s + i + 2, "0000", 4)) return true;
        i++; /* skip the escaped character */
    }
    return false;
}

static enum MHD_Result dispatch(api_req *r) {
    if (r->too_large)
        return api_reply_error(r, AIOS_ERR_TOO_LARGE, "request body exceeds server.max_body_bytes (%ld bytes)",
                               r->srv->cfg->server.max_body_bytes);
    bool known;
    const api_route *rt = find_route(r->method, r->url, &known);
    if (!rt) {
        if (known) return api_reply_error(r, AIOS_ERR_METHOD, "%s is not allowed on %s", r->method, r->url);
        return api_reply_error(r, AIOS_ERR_NOT_FOUND, "no route %s %s", r->method, r->url);
    }
    char aerr[200];
    if (authenticate(r, aerr, sizeof aerr)) return api_reply_error(r, AIOS_ERR_UNAUTHORIZED, "%s", aerr);
    if (!strncmp(r->url, "/admin/", 7) && strcmp(r->srv->cfg->access.mode, "local") &&
        api_check(r, ACCESS_KIND_ADMIN, r->url, ACCESS_ADMIN, NULL, aerr, sizeof aerr))
        return api_reply_error(r, AIOS_ERR_FORBIDDEN, "%s", aerr);
    if (priority_from_header(r))
        return api_reply_error(r, AIOS_ERR_INVALID, "X-AIOS-Priority must be an integer in [%d, %d]", AIOS_PRIORITY_MIN,
                               AIOS_PRIORITY_MAX);
    cJSON *body = NULL;
    if (rt->json_body) {
        if (!r->body.len) return api_reply_error(r, AIOS_ERR_INVALID, "the request body must be a JSON object");
        body = cJSON_ParseWithLength(r->body.data, r->body.len);
        if (!body) return api_reply_error(r, AIOS_ERR_INVALID, "malformed JSON in the request body");
        if (has_nul_escape(r->body.data, r->body.len)) {
            cJSON_Delete(body);
            return api_reply_error(r, AIOS_ERR_INVALID, "strings in the request must not contain NUL (\\u0000)");
        }
        if (!cJSON_IsObject(body)) {
            cJSON_Delete(body);
            return api_reply_error(r, AIOS_ERR_INVALID, "the request body must be a JSON object");
        }
        if (!jp_depth_ok(body, r->srv->cfg->server.json_max_depth)) {
            cJSON_Delete(body);
            return api_reply_error(r, AIOS_ERR_INVALID, "JSON nested deeper than server.json_max_depth (%d)",
                                   r->srv->cfg->server.json_max_depth);
        }
    }
    enum MHD_Result ret = rt->handler(r, body);
    cJSON_Delete(body);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    api_server *s = cls;
    api_req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->srv = s;
        r->conn = conn;
        snprintf(r->method, sizeof r->method, "%s", method);
        r->url = strdup(url);
        sb_init(&r->body, (size_t)s->cfg->server.max_body_bytes);
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoll(cl, NULL, 10) > s->cfg->server.max_body_bytes) r->too_large = true;
        *con_cls = r;
        return r->url ? MHD_YES : MHD_NO;
    }
    if (*upload_size) {
        if (!r->too_large && sb_append(&r->body, upload, *upload_size) != AIOS_OK) {
            r->too_large = true;
            sb_free(&r->body);
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->sc) { /* resumed: the syscall finished (or a spurious wake-up) */
        if (r->answered) return MHD_YES;
        return wait_or_answer(r);
    }
    if (r->answered) return MHD_YES;
    return dispatch(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)conn;
    api_server *s = cls;
    api_req *r = *con_cls;
    if (!r) return;
    if (r->sc) {
        syscall_set_sink(r->sc, NULL, NULL);
        inflight_remove(s, r);
        if (!syscall_is_done(r->sc)) {
            log_debug("request %llu ended early (%d); cancelling", (unsigned long long)r->sc->id, (int)toe);
            cancel_work(r->core, r->sc);
        }
        syscall_unref(r->sc);
    }
    if (r->data_free) r->data_free(r->data);
    sb_free(&r->body);
    sb_free(&r->sse);
    free(r->url);
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

api_server *api_server_start(const api_params *p, char *err, size_t errlen) {
    api_server *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->cfg = p->cfg;
    s->cores = p->cores;
    s->n_cores = p->n_cores;
    s->mem = p->mem;
    s->storage = p->storage;
    s->embedder = p->embedder;
    s->workers = p->workers;
    s->tools = p->tools;
    s->access = p->access;
    s->started = kern_now_mono();
    pthread_mutex_init(&s->gate_mu, NULL);
    pthread_mutex_init(&s->in_mu, NULL);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p->cfg->server.port)};
    if (inet_pton(AF_INET, p->cfg->server.host, &sa.sin_addr) != 1) {
        snprintf(err, errlen, "server.host: '%s' is not an IPv4 address", p->cfg->server.host);
        free(s);
        return NULL;
    }
    s->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG,
                              (uint16_t)p->cfg->server.port, NULL, NULL, on_request, s,
                              MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)p->cfg->server.max_connections,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)p->cfg->server.connection_timeout_s,
                              MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
    if (!s->mhd) {
        snprintf(err, errlen, "cannot listen on %s:%d (is the port in use?)", p->cfg->server.host, p->cfg->server.port);
        free(s);
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
    pthread_mutex_destroy(&s->gate_mu);
    pthread_mutex_destroy(&s->in_mu);
    free(s);
}
