/*
 * remote.c - the remote backends: a model served by an OpenAI-compatible server (`openai`:
 * vLLM, SGLang, llama-server, Ollama's /v1, LM Studio, OpenAI) or an Anthropic Messages
 * server (`anthropic`, remote_anthropic.c) behind the kernel's scheduler, access control and
 * accounting (DESIGN.md §1, issue 13).
 *
 * One I/O thread per core drives libcurl's multi interface: it takes syscalls from the
 * core's run queue while fewer than `max_inflight` are upstream (the rest wait under the
 * scheduling policy, as local work does), sends each as a streamed chat completion, and
 * passes every content delta to the syscall as it arrives, whichever front door the agent
 * used. Tool calls come back through the same side channel as a template's parser
 * (llm_request_parse_output), so the doors see them as calls. Usage is the upstream's.
 * A client that goes away cancels the transfer at once. Failures end as kernel errors
 * naming the model and the upstream: 502 when it cannot be reached or fails, 504 when it
 * does not answer in time, its own 4xx message as a 400 (429 as 429). The API key is read
 * from the environment variable `api_key_env` names and is never logged or echoed.
 */
#include <curl/curl.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "remote_internal.h"

#define RM_LINE_MAX (1 << 20) /* one SSE line */
#define RM_ERRBODY_MAX 4096   /* kept of an error answer */

typedef struct rm_xfer {
    bool used;
    bool anthropic;
    CURL *easy;
    struct curl_slist *hdrs;
    syscall_t *sc; /* the scheduler's reference while upstream */
    llm_request *req;
    strbuf line;    /* the SSE line being received */
    strbuf errbody; /* an answer that is not a stream (an error), bounded */
    rm_stream st;   /* what the dialect reads into */
    long status;
    int ep;          /* the endpoint it is on (or last was) */
    int attempt;     /* retries so far */
    double retry_at; /* waiting to be sent again (monotonic), 0 = upstream */
    double t_sent;   /* when this attempt was sent */
    bool got_bytes;  /* the upstream has started answering */
    bool overlong;   /* it sent a line longer than RM_LINE_MAX */
    int charged;     /* prompt tokens charged at dispatch (an estimate: 4 bytes a token) */
} rm_xfer;

typedef struct rm_engine {
    aios_model_cfg cfg;
    bool anthropic; /* the Messages dialect, else chat completions */
    sched_t *sched;
    rm_fleet fleet; /* the endpoints */
    bool fleet_ready;
    int n_slots; /* max_inflight on each endpoint */
    char *auth;  /* "Authorization: Bearer ..." or NULL */
    CURLM *multi;
    rm_xfer *x;
    int n_up;         /* requests held: upstream or waiting to retry */
    double next_wake; /* the I/O thread's next timed event (a retry set while finishing) */
    pthread_t thread;
    bool thread_started;
    atomic_bool stop;
    pthread_mutex_t st_mu;
    llm_core_stats st;
} rm_engine;

static void rm_close(void *impl);
static void *rm_run(void *arg);

static int open_dialect(const aios_model_cfg *m, sched_t *sched, bool anthropic, void **out, char *err, size_t errlen) {
    /* (the endpoints' URLs were checked with the config: check_endpoints) */
    const char *key = m->api_key_env[0] ? getenv(m->api_key_env) : NULL;
    bool no_key = m->api_key_env[0] && (!key || !*key);
    if (no_key && !m->key_implicit) {
        snprintf(err, errlen, "model '%s': api_key_env names %s, which is not set", m->name, m->api_key_env);
        return AIOS_ERR_CONFIG;
    }
    rm_engine *e = calloc(1, sizeof *e);
    if (!e) return AIOS_ERR_NOMEM;
    e->cfg = *m;
    e->anthropic = anthropic;
    e->sched = sched;
    pthread_mutex_init(&e->st_mu, NULL);
    if (key && asprintf(&e->auth, anthropic ? "x-api-key: %s" : "Authorization: Bearer %s", key) < 0) e->auth = NULL;
    e->fleet_ready =
        rm_fleet_init(&e->fleet, &e->cfg, anthropic ? "/messages" : "/chat/completions", e->auth, anthropic) == AIOS_OK;
    if (e->fleet_ready && no_key) { /* a cloud model named without its key (AIOS's config.yaml): down, with the reason */
        char why[160];
        snprintf(why, sizeof why, "no API key: $%s is not set", m->api_key_env);
        rm_fleet_disable(&e->fleet, why);
        log_warn("model '%s': %s; it is down", m->name, why);
    }
    e->n_slots = e->fleet.max_inflight * e->fleet.n;
    e->multi = curl_multi_init();
    e->x = calloc((size_t)(e->n_slots > 0 ? e->n_slots : 1), sizeof *e->x);
    if (!e->fleet_ready) {
        snprintf(err, errlen, "model '%s': no endpoint (hostname or endpoints)", m->name);
        rm_close(e);
        return AIOS_ERR_CONFIG;
    }
    if (!e->multi || !e->x || (key && !e->auth)) {
        rm_close(e);
        return AIOS_ERR_NOMEM;
    }
    if (pthread_create(&e->thread, NULL, rm_run, e) != 0) {
        snprintf(err, errlen, "cannot start the I/O thread of model '%s'", m->name);
        rm_close(e);
        return AIOS_ERR_INTERNAL;
    }
    e->thread_started = true;
    log_info("model '%s': backend %s at %s%s, upstream model '%s', %d requests in flight at most on each", m->name,
             anthropic ? "anthropic" : "openai", e->fleet.ep[0].url, e->fleet.n > 1 ? " and more" : "",
             m->model[0] ? m->model : m->name, e->fleet.max_inflight);
    *out = e;
    return AIOS_OK;
}

static int rm_open_openai(const aios_model_cfg *m, sched_t *sched, int max_active, const llm_context_params *cp, void **out,
                          char *err, size_t errlen) {
    (void)max_active;
    (void)cp;
    return open_dialect(m, sched, false, out, err, errlen);
}

static int rm_open_anthropic(const aios_model_cfg *m, sched_t *sched, int max_active, const llm_context_params *cp, void **out,
                             char *err, size_t errlen) {
    (void)max_active;
    (void)cp;
    return open_dialect(m, sched, true, out, err, errlen);
}

static void rm_wake(void *impl) {
    rm_engine *e = impl;
    if (e->multi) curl_multi_wakeup(e->multi);
}

static void rm_close(void *impl) {
    rm_engine *e = impl;
    if (!e) return;
    atomic_store(&e->stop, true);
    if (e->thread_started) {
        rm_wake(e);
        pthread_join(e->thread, NULL);
    }
    if (e->fleet_ready) rm_fleet_free(&e->fleet, e->multi);
    if (e->multi) curl_multi_cleanup(e->multi);
    free(e->x);
    if (e->auth) {
        memset(e->auth, 0, strlen(e->auth));
        free(e->auth);
    }
    pthread_mutex_destroy(&e->st_mu);
    free(e);
}

static void rm_info(void *impl, llm_core_info *o) {
    rm_engine *e = impl;
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", e->cfg.name);
    o->backend = e->anthropic ? "anthropic" : "openai";
    snprintf(o->desc, sizeof o->desc, "%.60s at %.50s%s", e->cfg.model[0] ? e->cfg.model : e->cfg.name, e->fleet.ep[0].base,
             e->fleet.n > 1 ? " +" : "");
    o->max_active = e->n_slots;
    o->tools_native = true; /* tools go upstream as tools; calls come back as calls */
}

static void rm_stats(void *impl, llm_core_stats *o) {
    rm_engine *e = impl;
    pthread_mutex_lock(&e->st_mu);
    *o = e->st;
    pthread_mutex_unlock(&e->st_mu);
    rm_fleet_stats(&e->fleet, o, kern_now_mono());
}

static bool rm_down(void *impl, char *why, size_t cap) {
    rm_engine *e = impl;
    return rm_fleet_down(&e->fleet, why, cap);
}

static int no_tokenizer(rm_engine *e, char *err, size_t errlen) {
    snprintf(err, errlen, "model '%s' is remote (backend %s): the kernel has no tokenizer or template for it", e->cfg.name,
             e->anthropic ? "anthropic" : "openai");
    return AIOS_ERR_UNSUPPORTED;
}

static int rm_render(void *impl, const llm_chat *chat, strbuf *out, char *err, size_t errlen) {
    (void)chat;
    (void)out;
    return no_tokenizer(impl, err, errlen);
}

static int rm_tokenize(void *impl, const char *text, bool add_special, int32_t **out, int *n, char *err, size_t errlen) {
    (void)text;
    (void)add_special;
    *out = NULL;
    *n = 0;
    return no_tokenizer(impl, err, errlen);
}

static int rm_detokenize(void *impl, const int32_t *tokens, int n, strbuf *out, char *err, size_t errlen) {
    (void)tokens;
    (void)n;
    (void)out;
    return no_tokenizer(impl, err, errlen);
}

/* ---------- prepare: the upstream request body ---------- */

static void add_sampling(cJSON *b, const llm_sampling *s) {
    cJSON_AddNumberToObject(b, "max_tokens", s->max_tokens);
    cJSON_AddNumberToObject(b, "temperature", s->temperature);
    if (s->top_p < 1.0f) cJSON_AddNumberToObject(b, "top_p", s->top_p);
    if (s->seed != LLM_SEED_RANDOM) cJSON_AddNumberToObject(b, "seed", s->seed);
    if (s->frequency_penalty != 0.0f) cJSON_AddNumberToObject(b, "frequency_penalty", s->frequency_penalty);
    if (s->presence_penalty != 0.0f) cJSON_AddNumberToObject(b, "presence_penalty", s->presence_penalty);
    /* the extensions vLLM, SGLang and llama-server take, sent only when asked for */
    if (s->top_k > 0) cJSON_AddNumberToObject(b, "top_k", s->top_k);
    if (s->min_p > 0.0f) cJSON_AddNumberToObject(b, "min_p", s->min_p);
    if (s->repeat_penalty != 1.0f) cJSON_AddNumberToObject(b, "repetition_penalty", s->repeat_penalty);
    if (s->ignore_eos) cJSON_AddTrueToObject(b, "ignore_eos");
}

/* What a remote model cannot take: a raw prompt, a grammar that is not a JSON schema,
 * options in token ids of the kernel's vocabulary. */
static int check_remote(rm_engine *e, const llm_chat *chat, char *err, size_t errlen) {
    const char *what = chat->raw_prompt       ? "a raw prompt (/v1/completions)"
        : chat->grammar && !chat->json_schema ? "a grammar"
        : chat->sampling.n_bias               ? "logit_bias (token ids of another vocabulary)"
        : chat->sampling.logprobs             ? "logprobs"
                                              : NULL;
    if (!what) return AIOS_OK;
    snprintf(err, errlen, "model '%s' is remote (backend %s) and does not take %s", e->cfg.name,
             e->anthropic ? "anthropic" : "openai", what);
    return AIOS_ERR_UNSUPPORTED;
}

static char *request_body(rm_engine *e, const llm_chat *chat) {
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "model", e->cfg.model[0] ? e->cfg.model : e->cfg.name);
    kern_json_add(b, "messages", llm_chat_messages(chat));
    cJSON_AddTrueToObject(b, "stream");
    cJSON_AddTrueToObject(cJSON_AddObjectToObject(b, "stream_options"), "include_usage");
    add_sampling(b, &chat->sampling);
    if (chat->n_stop > 0) {
        cJSON *stop = cJSON_AddArrayToObject(b, "stop");
        for (int i = 0; i < chat->n_stop; i++) kern_json_push(stop, cJSON_CreateString(chat->stop[i]));
    }
    if (chat->tools_json) {
        static const char *const CHOICE[] = {"auto", "required", "none"};
        kern_json_add(b, "tools", cJSON_Parse(chat->tools_json));
        cJSON_AddStringToObject(b, "tool_choice", CHOICE[chat->tool_choice]);
        cJSON_AddBoolToObject(b, "parallel_tool_calls", chat->parallel_calls);
    }
    if (chat->json_schema) {
        cJSON *rf = cJSON_AddObjectToObject(b, "response_format"), *schema = cJSON_Parse(chat->json_schema);
        if (cJSON_IsObject(schema) && schema->child) {
            cJSON_AddStringToObject(rf, "type", "json_schema");
            cJSON *js = cJSON_AddObjectToObject(rf, "json_schema");
            cJSON_AddStringToObject(js, "name", "output");
            kern_json_add(js, "schema", schema);
        } else {
            cJSON_AddStringToObject(rf, "type", "json_object");
            cJSON_Delete(schema);
        }
    }
    char *s = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    return s;
}

static int rm_prepare(void *impl, const llm_chat *chat, llm_request **out, char *err, size_t errlen) {
    rm_engine *e = impl;
    int rc = check_remote(e, chat, err, errlen);
    if (rc) return rc;
    llm_request *r = llm_request_new(chat);
    if (!r) return AIOS_ERR_NOMEM;
    r->remote_body = e->anthropic ? rm_anthropic_body(&e->cfg, chat) : request_body(e, chat);
    r->remote_calls = chat->tools_json ? cJSON_CreateArray() : NULL;
    r->remote = true;
    if (!r->remote_body || (chat->tools_json && !r->remote_calls)) {
        llm_request_free(r);
        return AIOS_ERR_NOMEM;
    }
    *out = r;
    return AIOS_OK;
}

/* ---------- the I/O thread ---------- */

void rm_call_append(llm_request *r, int i, const char *name, const char *args) {
    if (!r->remote_calls || i < 0 || i > cJSON_GetArraySize(r->remote_calls) || i >= 64) return;
    cJSON *c = cJSON_GetArrayItem(r->remote_calls, i);
    if (!c) {
        if (!(c = cJSON_CreateObject())) return;
        cJSON_AddStringToObject(c, "name", "");
        cJSON_AddStringToObject(c, "arguments", "");
        kern_json_push(r->remote_calls, c);
    }
    const char *parts[2] = {name, args};
    static const char *const KEYS[2] = {"name", "arguments"};
    for (int k = 0; k < 2; k++) {
        if (!parts[k] || !*parts[k]) continue;
        strbuf b;
        sb_init(&b, 0);
        sb_puts(&b, kern_json_str(c, KEYS[k]));
        sb_puts(&b, parts[k]);
        cJSON_ReplaceItemInObjectCaseSensitive(c, KEYS[k], cJSON_CreateString(b.data ? b.data : ""));
        sb_free(&b);
    }
}

void rm_emit(rm_stream *s, const char *text) {
    if (!*text) return;
    if (s->req->n_gen >= s->req->samp.max_tokens) { /* an upstream past max_tokens (each delta is a token or more) */
        s->capped = true;
        return;
    }
    if (syscall_emit(s->sc, text, strlen(text)) == AIOS_OK) {
        s->req->n_gen++;
        sched_charge(s->sched, s->sc, 1, 1);
    } else s->capped = true; /* as the local engine: the answer ends at the cap, as length */
}

/* One tool-call delta {index, id, function: {name, arguments}} into the request's list. */
static void add_call_delta(llm_request *r, const cJSON *d) {
    const cJSON *idx = cJSON_GetObjectItemCaseSensitive(d, "index");
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(d, "function");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(f, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(f, "arguments");
    int i = cJSON_IsNumber(idx) ? idx->valueint : cJSON_GetArraySize(r->remote_calls);
    rm_call_append(r, i, cJSON_IsString(name) ? name->valuestring : NULL, cJSON_IsString(args) ? args->valuestring : NULL);
}

static llm_finish finish_of(const char *s) { return !strcmp(s, "length") ? LLM_FINISH_LENGTH : LLM_FINISH_STOP; }

void rm_error_event(rm_stream *s, const cJSON *msg) {
    bool said = cJSON_IsString(msg) && msg->valuestring[0];
    snprintf(s->errmsg, sizeof s->errmsg, "%s", said ? msg->valuestring : "an error event");
    s->error = true;
}

/* One `data:` event of a chat completions stream. */
static void openai_event(rm_stream *s, const char *data) {
    if (!strcmp(data, "[DONE]")) return;
    cJSON *ev = cJSON_Parse(data);
    if (!ev) return; /* not JSON: ignored, as OpenAI clients do */
    llm_request *r = s->req;
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(ev, "error");
    if (error) {
        rm_error_event(s, cJSON_GetObjectItemCaseSensitive(error, "message"));
    }
    const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ev, "choices"), 0);
    const cJSON *delta = cJSON_GetObjectItemCaseSensitive(ch, "delta");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(delta, "content");
    if (cJSON_IsString(content)) rm_emit(s, content->valuestring);
    const cJSON *calls = cJSON_GetObjectItemCaseSensitive(delta, "tool_calls");
    for (const cJSON *c = cJSON_IsArray(calls) && r->remote_calls ? calls->child : NULL; c; c = c->next) add_call_delta(r, c);
    const cJSON *fin = cJSON_GetObjectItemCaseSensitive(ch, "finish_reason");
    if (cJSON_IsString(fin)) r->finish = finish_of(fin->valuestring);
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(ev, "usage");
    if (cJSON_IsObject(usage)) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens");
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens");
        const cJSON *cached =
            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens_details"), "cached_tokens");
        if (cJSON_IsNumber(p)) r->n_tokens = p->valueint;
        if (cJSON_IsNumber(g)) r->n_completion = g->valueint;
        if (cJSON_IsNumber(cached)) r->n_cached = cached->valueint;
    }
    cJSON_Delete(ev);
}

/* Whether a line of a 200 answer is part of an event stream (else it is kept: a JSON body). */
static bool sse_line(const char *l) {
    return !*l || *l == ':' || !strncmp(l, "data:", 5) || !strncmp(l, "event:", 6) || !strncmp(l, "id:", 3) ||
        !strncmp(l, "retry:", 6);
}

static void keep_body(strbuf *body, const char *p, size_t n) {
    size_t room = RM_ERRBODY_MAX > body->len ? RM_ERRBODY_MAX - body->len : 0;
    sb_append(body, p, n < room ? n : room);
}

bool rm_feed(rm_stream *s, bool anthropic, strbuf *line, strbuf *body, const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\n') {
            if (line->len >= RM_LINE_MAX) return false; /* an endless line */
            sb_append(line, p + i, 1);
            continue;
        }
        const char *l = line->data ? line->data : "";
        if (line->len && l[line->len - 1] == '\r') line->data[--line->len] = 0;
        if (!strncmp(l, "data:", 5)) (anthropic ? rm_anthropic_event : openai_event)(s, l + 5 + (l[5] == ' '));
        else if (!sse_line(l)) keep_body(body, l, line->len); /* not a stream: a JSON answer, kept for its error */
        sb_reset(line);
    }
    return true;
}

void rm_feed_end(strbuf *line, strbuf *body) {
    if (line->len && line->len <= RM_LINE_MAX && !sse_line(line->data)) keep_body(body, line->data, line->len);
}

bool rm_body_error(const char *body, char *out, size_t cap) {
    cJSON *b = cJSON_Parse(body ? body : "");
    const cJSON *er = cJSON_GetObjectItemCaseSensitive(b, "error");
    const cJSON *m = cJSON_IsObject(er) ? cJSON_GetObjectItemCaseSensitive(er, "message") : er;
    bool got = cJSON_IsString(m) && m->valuestring[0];
    if (got) snprintf(out, cap, "%s", m->valuestring);
    cJSON_Delete(b);
    return got;
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud) {
    rm_xfer *x = ud;
    size_t n = size * nmemb;
    long status = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    x->got_bytes = true;
    if (status != 200) { /* an error answer: keep its start */
        keep_body(&x->errbody, ptr, n);
        return n;
    }
    if (!rm_feed(&x->st, x->anthropic, &x->line, &x->errbody, ptr, n)) { /* an endless line: the transfer fails */
        x->overlong = true;
        return 0;
    }
    return atomic_load(&x->sc->cancel) || x->st.capped ? 0 : n; /* a cancelled or capped request stops the transfer */
}

/* Sends x (again) to its endpoint. */
static void send_xfer(rm_engine *e, rm_xfer *x, double now) {
    const rm_endpoint *ep = &e->fleet.ep[x->ep];
    x->retry_at = 0;
    x->t_sent = now;
    x->got_bytes = false;
    x->overlong = false;
    x->easy = curl_easy_init();
    x->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    x->hdrs = curl_slist_append(x->hdrs, "Accept: text/event-stream");
    if (e->auth) x->hdrs = curl_slist_append(x->hdrs, e->auth);
    if (e->anthropic) x->hdrs = curl_slist_append(x->hdrs, "anthropic-version: 2023-06-01");
    long timeout = e->cfg.timeout_s > 0 ? e->cfg.timeout_s : 600;
    curl_easy_setopt(x->easy, CURLOPT_URL, ep->url);
    curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, x->req->remote_body);
    curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
    curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(x->easy, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(x->easy, CURLOPT_TIMEOUT, timeout);
    curl_easy_setopt(x->easy, CURLOPT_LOW_SPEED_LIMIT, 1L); /* idle: nothing for a minute */
    curl_easy_setopt(x->easy, CURLOPT_LOW_SPEED_TIME, timeout < 60 ? timeout : 60L);
    curl_easy_setopt(x->easy, CURLOPT_TCP_NODELAY, 1L);
    curl_multi_add_handle(e->multi, x->easy);
}

/* A new syscall in slot x, on endpoint ep (-1: none could take it; it waits to be placed). */
static void start(rm_engine *e, rm_xfer *x, syscall_t *sc, int ep, double now) {
    *x = (rm_xfer){.used = true,
                   .sc = sc,
                   .req = sc->args,
                   .anthropic = e->anthropic,
                   .ep = ep,
                   .st = {.req = sc->args, .sc = sc, .sched = e->sched, .cur_call = -1},
                   .charged = (int)(strlen(((llm_request *)sc->args)->remote_body) / 4)};
    sb_init(&x->line, 0);
    sb_init(&x->errbody, 0);
    syscall_round_begin(sc);
    sched_charge(e->sched, sc, x->charged, 0); /* its prompt, estimated, while it is upstream (fair share) */
    e->n_up++;
    if (ep >= 0) send_xfer(e, x, now);
    else x->retry_at = now;
}

/* Frees x's transfer (the slot and its syscall stay). */
static void drop_transfer(rm_engine *e, rm_xfer *x) {
    if (!x->easy) return;
    curl_multi_remove_handle(e->multi, x->easy);
    curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->hdrs);
    x->easy = NULL;
    x->hdrs = NULL;
    sb_reset(&x->line);
    sb_reset(&x->errbody);
}

static int upstream_status_error(rm_engine *e, rm_xfer *x, const char *host, char *msg, size_t cap) {
    char m[160];
    snprintf(msg, cap, "model '%.60s': upstream %.100s answered %ld: %.150s", e->cfg.name, host, x->status,
             rm_body_error(x->errbody.data, m, sizeof m) ? m
                 : x->errbody.data                       ? x->errbody.data
                                                         : "");
    kern_utf8_sanitize(msg);
    return x->status == 429 ? AIOS_ERR_RATE_LIMITED : x->status >= 500 ? AIOS_ERR_UPSTREAM : AIOS_ERR_INVALID;
}

/* A 200 that did not finish: its error event, a JSON error body, or a cut stream. */
static void unfinished(rm_engine *e, rm_xfer *x, const char *host, char *msg, size_t cap) {
    char m[160];
    if (x->st.error || rm_body_error(x->errbody.data, m, sizeof m))
        snprintf(msg, cap, "model '%.60s': upstream %.100s sent an error: %.150s", e->cfg.name, host,
                 x->st.error ? x->st.errmsg : m);
    else if (x->errbody.len)
        snprintf(msg, cap, "model '%.60s': upstream %.100s answered 200 without an event stream: %.100s", e->cfg.name, host,
                 x->errbody.data);
    else snprintf(msg, cap, "model '%.60s': upstream %.100s ended the stream without finishing", e->cfg.name, host);
    kern_utf8_sanitize(msg);
}

/* The outcome of x's transfer: a result code, the message of an error, and what it says of
 * the endpoint. */
static int classify(rm_engine *e, rm_xfer *x, CURLcode cc, char *msg, size_t cap, rm_health *h) {
    llm_request *r = x->req;
    const char *host = x->ep >= 0 ? e->fleet.ep[x->ep].base : e->cfg.name;
    *h = RM_HEALTH_NEUTRAL;
    if (atomic_load(&e->stop)) return AIOS_ERR_SHUTDOWN;
    if (atomic_load(&x->sc->cancel)) {
        r->finish = LLM_FINISH_CANCELLED;
        return AIOS_ERR_CANCELLED;
    }
    *h = RM_HEALTH_OK;
    if (x->st.capped) {
        r->finish = LLM_FINISH_LENGTH;
        return AIOS_OK;
    }
    if (cc == CURLE_OPERATION_TIMEDOUT) {
        *h = RM_HEALTH_FAILED;
        snprintf(msg, cap, "model '%.60s': upstream %.100s did not %s in time (%d s)", e->cfg.name, host,
                 x->got_bytes ? "finish" : "start answering",
                 x->got_bytes || !e->cfg.first_token_timeout_s ? e->cfg.timeout_s : e->cfg.first_token_timeout_s);
        return AIOS_ERR_UPSTREAM_TIMEOUT;
    }
    if (cc != CURLE_OK) {
        *h = cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST ? RM_HEALTH_REFUSED : RM_HEALTH_FAILED;
        snprintf(msg, cap, "model '%.60s': upstream %.100s: %.80s", e->cfg.name, host,
                 x->overlong ? "it sent a line longer than 1 MiB" : curl_easy_strerror(cc));
        return AIOS_ERR_UPSTREAM;
    }
    if (x->status != 200) {
        *h = x->status >= 500 ? RM_HEALTH_FAILED : RM_HEALTH_NEUTRAL; /* a 4xx is the request's, a 429 the load's */
        return upstream_status_error(e, x, host, msg, cap);
    }
    if (x->st.error || r->finish == LLM_FINISH_NONE) {
        *h = x->st.error ? RM_HEALTH_NEUTRAL : RM_HEALTH_FAILED;
        unfinished(e, x, host, msg, cap);
        return AIOS_ERR_UPSTREAM;
    }
    return AIOS_OK;
}

/* A failure before anything reached the client that another try may cure: a connection
 * that failed or broke, a 429 or a 5xx. Never once a token or a call has been passed on. */
static bool retryable(rm_engine *e, rm_xfer *x, CURLcode cc, int rc) {
    if (rc == AIOS_OK || rc == AIOS_ERR_CANCELLED || rc == AIOS_ERR_SHUTDOWN || x->attempt >= e->cfg.retries) return false;
    if (x->req->n_gen > 0 || (x->req->remote_calls && cJSON_GetArraySize(x->req->remote_calls) > 0)) return false;
    switch (cc) {
        case CURLE_COULDNT_CONNECT:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE: return true;
        case CURLE_OK: return x->status == 429 || x->status >= 500;
        default: return false;
    }
}

/* Exponential backoff with jitter: 100 ms, 200 ms, 400 ms ... times 0.5 to 1.5. */
static double backoff_s(int attempt) {
    double base = 0.1 * (double)(1u << (attempt < 8 ? attempt : 8));
    return base * (0.5 + (double)rand() / ((double)RAND_MAX + 1.0));
}

/* Completes x's syscall with rc (msg: the error) and frees the slot. */
static void complete(rm_engine *e, rm_xfer *x, int rc, const char *msg) {
    llm_request *r = x->req;
    syscall_t *sc = x->sc;
    if (rc && rc != AIOS_ERR_CANCELLED) r->finish = LLM_FINISH_ERROR;
    if (!r->n_completion) r->n_completion = r->n_gen;
    drop_transfer(e, x);
    sb_free(&x->line);
    sb_free(&x->errbody);
    x->used = false;
    e->n_up--;
    pthread_mutex_lock(&e->st_mu);
    if (rc == AIOS_OK) e->st.requests_done++;
    else if (rc == AIOS_ERR_CANCELLED) e->st.requests_cancelled++;
    else e->st.requests_failed++;
    e->st.prompt_tokens += (unsigned long long)r->n_tokens;
    e->st.completion_tokens += (unsigned long long)r->n_completion;
    e->st.active = e->n_up;
    pthread_mutex_unlock(&e->st_mu);
    /* the rest of its service: the prompt beyond the estimate, tokens beyond the deltas */
    int more_prompt = r->n_tokens > x->charged ? r->n_tokens - x->charged : 0;
    int more_gen = r->n_completion > r->n_gen ? r->n_completion - r->n_gen : 0;
    sched_charge(e->sched, sc, more_prompt + more_gen, more_gen);
    sched_done(e->sched, sc);
    if (rc && rc != AIOS_ERR_CANCELLED) log_warn("%s", msg);
    syscall_complete(sc, rc, msg && msg[0] ? "%s" : NULL, msg);
    syscall_unref(sc);
}

static void finish(rm_engine *e, rm_xfer *x, CURLcode cc, double now) {
    char msg[400] = "";
    rm_health h = RM_HEALTH_NEUTRAL;
    if (x->easy) curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->status);
    if (!x->overlong) rm_feed_end(&x->line, &x->errbody); /* a last, unended line */
    int rc = classify(e, x, cc, msg, sizeof msg, &h);
    bool upstream = x->easy != NULL; /* else it was waiting to be placed: on no endpoint */
    bool again = upstream && retryable(e, x, cc, rc);
    drop_transfer(e, x);
    if (upstream) rm_fleet_result(&e->fleet, x->ep, h, msg, again, now);
    if (!again) {
        complete(e, x, rc, msg);
        return;
    }
    x->attempt++;
    /* at once on another endpoint; after a backoff when only this one can take it again */
    x->retry_at = rm_fleet_other(&e->fleet, x->ep) ? now : now + backoff_s(x->attempt - 1);
    if (x->retry_at < e->next_wake) e->next_wake = x->retry_at;
    log_info("%s; try %d of %d in %.0f ms", msg, x->attempt + 1, e->cfg.retries + 1, (x->retry_at - now) * 1e3);
    x->st = (rm_stream){.req = x->req, .sc = x->sc, .sched = e->sched, .cur_call = -1};
    snprintf(x->st.errmsg, sizeof x->st.errmsg, "%.199s", msg); /* the error if no endpoint takes it again */
    x->req->finish = LLM_FINISH_NONE;
    x->status = 0;
}

/* Requests waiting to be placed on an endpoint (new ones no endpoint could take, retries). */
static void place_waiting(rm_engine *e, double now, double *next) {
    for (int i = 0; i < e->n_slots; i++) {
        rm_xfer *x = &e->x[i];
        if (!x->used || x->easy) continue;
        if (atomic_load(&x->sc->cancel)) {
            complete(e, x, AIOS_ERR_CANCELLED, NULL);
            continue;
        }
        if (x->retry_at > now) {
            if (x->retry_at < *next) *next = x->retry_at;
            continue;
        }
        int ep = rm_fleet_pick(&e->fleet, x->sc->agent, x->ep);
        if (ep >= 0) {
            x->ep = ep;
            send_xfer(e, x, now);
        } else if (rm_fleet_room(&e->fleet) == RM_DOWN) {
            char why[400];
            rm_fleet_down(&e->fleet, why, sizeof why);
            complete(e, x, x->st.errmsg[0] ? AIOS_ERR_UPSTREAM : AIOS_ERR_MODEL_DOWN, x->st.errmsg[0] ? x->st.errmsg : why);
        } else {
            x->retry_at = now + 0.02; /* every endpoint full or being checked: soon again */
        }
    }
}

/* A syscall taken from the queue while every endpoint is out: 503 naming them. */
static void refuse_down(rm_engine *e, syscall_t *sc) {
    char why[400];
    rm_fleet_down(&e->fleet, why, sizeof why);
    pthread_mutex_lock(&e->st_mu);
    e->st.requests_failed++;
    pthread_mutex_unlock(&e->st_mu);
    sched_done(e->sched, sc);
    syscall_complete(sc, AIOS_ERR_MODEL_DOWN, "%s", why);
    syscall_unref(sc);
}

static void admit(rm_engine *e, double now) {
    int slot = 0;
    while (!atomic_load(&e->stop)) {
        rm_room room = rm_fleet_room(&e->fleet);
        if (room == RM_FULL || room == RM_WAIT) return;
        while (room != RM_DOWN && slot < e->n_slots && e->x[slot].used) slot++;
        if (slot >= e->n_slots) return;
        syscall_t *sc = sched_next(e->sched, NULL, NULL);
        if (!sc) return;
        if (room == RM_DOWN) refuse_down(e, sc);
        else start(e, &e->x[slot], sc, rm_fleet_pick(&e->fleet, sc->agent, -1), now);
    }
}

/* Transfers to end now: cancelled ones, and those past first_token_timeout_s without a byte. */
static void expire(rm_engine *e, double now, double *next) {
    double ftt = e->cfg.first_token_timeout_s;
    for (int i = 0; i < e->n_slots; i++) {
        rm_xfer *x = &e->x[i];
        if (!x->used || !x->easy) continue;
        if (atomic_load(&x->sc->cancel)) finish(e, x, CURLE_ABORTED_BY_CALLBACK, now);
        else if (ftt > 0 && !x->got_bytes && now >= x->t_sent + ftt) finish(e, x, CURLE_OPERATION_TIMEDOUT, now);
        else if (ftt > 0 && !x->got_bytes && x->t_sent + ftt < *next) *next = x->t_sent + ftt;
    }
}

static void *rm_run(void *arg) {
    rm_engine *e = arg;
    while (!atomic_load(&e->stop)) {
        double now = kern_now_mono();
        e->next_wake = now + 1.0;
        double next = rm_fleet_tick(&e->fleet, e->multi, now);
        place_waiting(e, now, &next);
        admit(e, now);
        expire(e, now, &next);
        int running = 0;
        curl_multi_perform(e->multi, &running);
        CURLMsg *m;
        int left, ended = 0;
        now = kern_now_mono();
        while ((m = curl_multi_info_read(e->multi, &left)))
            if (m->msg == CURLMSG_DONE && !rm_fleet_probe_done(&e->fleet, e->multi, m->easy_handle, m->data.result, now)) {
                rm_xfer *x = NULL;
                curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
                if (x) finish(e, x, m->data.result, now);
                ended++;
            }
        pthread_mutex_lock(&e->st_mu);
        e->st.active = e->n_up;
        pthread_mutex_unlock(&e->st_mu);
        if (ended) continue; /* their room goes to the waiting ones now, not after the poll's timeout */
        double wait = (next < e->next_wake ? next : e->next_wake) - kern_now_mono();
        int ms = wait <= 0 ? 0 : wait >= 1.0 ? 1000 : (int)(wait * 1e3) + 1;
        curl_multi_poll(e->multi, NULL, 0, ms, NULL); /* woken by submit and cancel (rm_wake) */
    }
    for (int i = 0; i < e->n_slots; i++) /* shutting down: what is upstream ends as such */
        if (e->x[i].used) finish(e, &e->x[i], CURLE_ABORTED_BY_CALLBACK, kern_now_mono());
    return NULL;
}

const llm_backend_ops llm_backend_openai = {
    .name = "openai",
    .open = rm_open_openai,
    .close = rm_close,
    .info = rm_info,
    .prepare = rm_prepare,
    .stats = rm_stats,
    .wake = rm_wake,
    .render = rm_render,
    .tokenize = rm_tokenize,
    .detokenize = rm_detokenize,
    .down = rm_down,
};

const llm_backend_ops llm_backend_anthropic = {
    .name = "anthropic",
    .open = rm_open_anthropic,
    .close = rm_close,
    .info = rm_info,
    .prepare = rm_prepare,
    .stats = rm_stats,
    .wake = rm_wake,
    .render = rm_render,
    .tokenize = rm_tokenize,
    .detokenize = rm_detokenize,
    .down = rm_down,
};
