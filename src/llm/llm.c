/*
 * llm.c - the backend-neutral part of an LLM core: it owns the core's run queue (sched_t),
 * picks the backend by name, and routes submit/cancel. The engine of a backend is the only
 * consumer of that run queue.
 *
 * A core also has a life cycle (issue 13, part 6): its backend can be unloaded and loaded
 * again at run time, by an admin or after idle_unload_s without work, while the core, its
 * run queue and its place in the kernel stay. A lifecycle thread per core does the loading
 * and unloading; unloading waits for the work in flight to finish. Every use of the backend
 * holds a read lock, and load and unload swap it under the write lock, so a request never
 * meets a half-closed engine: it finds the backend, or gets AIOS_ERR_MODEL_DOWN. Requests
 * that arrive while the model is not ready wait (llm_core_when_ready) and are told when it
 * is, or is not going to be.
 */
#include <pthread.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "chat_template.h"
#include "llm_internal.h"

const char *const LLM_STEP_NAMES[LLM_STEP__COUNT] = {"decode",       "sample",          "schedule", "switch",
                                                     "batch_tokens", "batch_sequences", "kv_cells", "context_cells"};

typedef struct llm_core_waiter {
    void (*fn)(void *ctx);
    void *ctx;
    struct llm_core_waiter *next;
} llm_core_waiter;

typedef enum llm_core_cmd { LLM_CMD_NONE, LLM_CMD_LOAD } llm_core_cmd;

struct llm_core {
    const llm_backend_ops *ops;
    aios_model_cfg model; /* a copy: the core outlives no one, but reloads need it */
    llm_core_params params;
    sched_t *sched;        /* lives as long as the core, loaded or not */
    pthread_rwlock_t lk;   /* readers use impl; load and unload swap it */
    void *impl;            /* the backend; NULL while unloaded */
    llm_core_info info;    /* as of the last load (listings while unloaded) */
    pthread_mutex_t st_mu; /* the life cycle: */
    pthread_cond_t st_cv;
    llm_core_state state;
    char why[400];            /* unloaded or failed: why */
    llm_core_cmd cmd;         /* for the lifecycle thread */
    double last_used;         /* monotonic: the last submit (idle_unload_s) */
    llm_core_waiter *waiters; /* called once it is ready (or is not going to be) */
    pthread_t thread;
    bool thread_started, stop;
};

static const llm_backend_ops *const BACKENDS[] = {&llm_backend_llamacpp, &llm_backend_openai, &llm_backend_anthropic, NULL};
/* AIOS's backend names for OpenAI-compatible servers */
static const char *const OPENAI_ALIASES[] = {"vllm", "sglang", "ollama", "deepseek", "groq", "lmstudio", "google", NULL};

const llm_backend_ops *llm_backend_named(const char *name) {
    for (int i = 0; OPENAI_ALIASES[i]; i++)
        if (!strcmp(OPENAI_ALIASES[i], name)) return &llm_backend_openai;
    for (int i = 0; BACKENDS[i]; i++)
        if (!strcmp(BACKENDS[i]->name, name)) return BACKENDS[i];
    return NULL;
}

llm_sampling llm_default_sampling(void) {
    return (llm_sampling){.temperature = 1.0f,
                          .top_p = 1.0f,
                          .top_k = 0,
                          .min_p = 0.0f,
                          .seed = LLM_SEED_RANDOM,
                          .max_tokens = 1000,
                          .repeat_penalty = 1.0f,
                          .penalty_last_n = 64};
}

const char *llm_finish_name(llm_finish f) {
    switch (f) {
        case LLM_FINISH_STOP: return "stop";
        case LLM_FINISH_LENGTH: return "length";
        case LLM_FINISH_CANCELLED: return "cancelled";
        case LLM_FINISH_ERROR: return "error";
        default: return "none";
    }
}

llm_context_params llm_default_context_params(void) {
    return (llm_context_params){.text_mode = false,
                                .cache_entries = 32,
                                .snapshot_entries = 256,
                                .prefix_min_tokens = 16,
                                .verify_prefix = false,
                                .park = true,
                                .cold_ms = 1000,
                                .deterministic = false,
                                .compact_min_cells = 512,
                                .store = NULL};
}

llm_request *llm_request_new(const llm_chat *chat) {
    llm_request *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->samp = chat->sampling;
    r->samp.bias_tokens = NULL; /* borrowed: prepare builds them into the sampler */
    r->samp.bias_values = NULL;
    r->samp.n_bias = 0;
    r->park_seq = -1;
    sb_init(&r->pending, 0);
    if (chat->n_stop > 0) {
        r->stop = calloc((size_t)chat->n_stop, sizeof *r->stop);
        if (!r->stop) {
            free(r);
            return NULL;
        }
        for (int i = 0; i < chat->n_stop; i++) {
            r->stop[i] = strdup(chat->stop[i]);
            if (!r->stop[i]) {
                r->n_stop = i;
                llm_request_free(r);
                return NULL;
            }
        }
        r->n_stop = chat->n_stop;
    }
    return r;
}

void llm_request_free(void *p) {
    llm_request *r = p;
    if (!r) return;
    if (r->sampler && r->sampler_free) r->sampler_free(r->sampler);
    if (r->grammar && r->sampler_free) r->sampler_free(r->grammar);
    if (r->snap && r->snap_free) r->snap_free(r->snap);
    sb_free(&r->pending);
    free(r->gen);
    free(r->lp);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->stop);
    free(r->tokens);
    lc_tmpl_parser_free(r->parser);
    free(r->remote_body);
    cJSON_Delete(r->remote_calls);
    free(r);
}

cJSON *llm_chat_messages(const llm_chat *chat) {
    if (chat->messages_json) return cJSON_Parse(chat->messages_json);
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < chat->n_messages; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", chat->messages[i].role);
        cJSON_AddStringToObject(m, "content", chat->messages[i].content ? chat->messages[i].content : "");
        kern_json_push(a, m);
    }
    return a;
}

int llm_request_add_stops(llm_request *r, char *const *stops, int n) {
    if (n <= 0) return AIOS_OK;
    char **grown = realloc(r->stop, (size_t)(r->n_stop + n) * sizeof *grown);
    if (!grown) return AIOS_ERR_NOMEM;
    r->stop = grown;
    for (int i = 0; i < n; i++) {
        if (!(r->stop[r->n_stop] = strdup(stops[i]))) return AIOS_ERR_NOMEM;
        r->n_stop++;
    }
    return AIOS_OK;
}

/* A remote request's answer: its text, and the calls the upstream sent once it is done (a
 * call wins over text around it: the upstream decided). */
static cJSON *remote_output(const llm_request *r, const char *text, bool partial) {
    cJSON *calls = !partial && r->remote_calls ? cJSON_Duplicate(r->remote_calls, 1) : cJSON_CreateArray();
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "content", cJSON_GetArraySize(calls) ? "" : text);
    kern_json_add(o, "tool_calls", calls);
    return o;
}

cJSON *llm_request_parse_output(const llm_request *r, const char *text, bool partial) {
    if (r->remote) return remote_output(r, text, partial);
    if (!r->parser) return NULL;
    lc_tmpl_msg m;
    lc_tmpl_parse(r->parser, text, partial, &m); /* text it cannot parse comes back as content */
    cJSON *o = cJSON_CreateObject(), *calls = cJSON_AddArrayToObject(o, "tool_calls");
    cJSON_AddStringToObject(o, "content", m.content ? m.content : "");
    for (int i = 0; i < m.n_calls; i++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "name", m.calls[i].name ? m.calls[i].name : "");
        cJSON_AddStringToObject(c, "arguments", m.calls[i].arguments ? m.calls[i].arguments : "");
        kern_json_push(calls, c);
    }
    lc_tmpl_msg_free(&m);
    return o;
}

int llm_request_prompt_tokens(const llm_request *r) { return r->n_tokens; }
int llm_request_completion_tokens(const llm_request *r) { return r->n_completion; }
int llm_request_cached_tokens(const llm_request *r) { return r->n_cached; }
const char *llm_request_stop_string(const llm_request *r) { return r->stop_matched ? r->stop[r->stop_matched - 1] : NULL; }
llm_finish llm_request_finish(const llm_request *r) { return r->finish; }
int llm_request_logprobs(const llm_request *r, const llm_logprob **out) {
    *out = r->lp;
    return r->n_lp;
}

/* ---------- cores and their life cycle ---------- */

static const char *const STATE_NAME[] = {"ready", "loading", "unloading", "unloaded", "failed"};
const char *llm_core_state_name(llm_core_state s) { return STATE_NAME[s]; }

/* Opens the backend (loads the model); the lifecycle thread, or llm_core_open. */
static int open_impl(llm_core *c, char *err, size_t errlen) {
    void *impl = NULL;
    int rc = c->ops->open(&c->model, c->sched, c->params.sched.max_active, &c->params.context, &impl, err, errlen);
    if (rc) return rc;
    pthread_rwlock_wrlock(&c->lk);
    c->impl = impl;
    c->ops->info(impl, &c->info); /* kept for listings while unloaded */
    pthread_rwlock_unlock(&c->lk);
    return AIOS_OK;
}

/* Sets the state (st_mu held) and, once it is settled, tells the waiters, with st_mu
 * released meanwhile (they take their own locks). */
static void set_state(llm_core *c, llm_core_state s, const char *why) {
    c->state = s;
    if (why != c->why) snprintf(c->why, sizeof c->why, "%s", why ? why : "");
    pthread_cond_broadcast(&c->st_cv);
    if (s == LLM_CORE_LOADING || s == LLM_CORE_UNLOADING || !c->waiters) return;
    llm_core_waiter *w = c->waiters;
    c->waiters = NULL;
    pthread_mutex_unlock(&c->st_mu);
    while (w) { /* they look again */
        llm_core_waiter *next = w->next;
        w->fn(w->ctx);
        free(w);
        w = next;
    }
    pthread_mutex_lock(&c->st_mu);
}

static bool sched_idle(llm_core *c) {
    sched_stats ss;
    sched_get_stats(c->sched, &ss);
    return ss.queued == 0 && ss.active == 0;
}

/* Unloads (lifecycle thread, st_mu held on entry and exit): waits for the work in flight,
 * then closes the backend; a submit that comes later finds no backend and is refused. */
static void do_unload(llm_core *c, const char *why) {
    set_state(c, LLM_CORE_UNLOADING, why);
    for (;;) {
        while (!c->stop && !sched_idle(c)) {
            pthread_mutex_unlock(&c->st_mu);
            nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
            pthread_mutex_lock(&c->st_mu);
        }
        pthread_rwlock_wrlock(&c->lk);
        if (c->stop || sched_idle(c)) break;
        pthread_rwlock_unlock(&c->lk); /* one slipped in before the lock: it finishes too */
    }
    void *impl = c->impl;
    c->impl = NULL;
    pthread_rwlock_unlock(&c->lk);
    pthread_mutex_unlock(&c->st_mu);
    c->ops->close(impl);
    log_info("model '%s' unloaded (%s)", c->model.name, why);
    pthread_mutex_lock(&c->st_mu);
    set_state(c, LLM_CORE_UNLOADED, why);
}

static void do_load(llm_core *c) {
    set_state(c, LLM_CORE_LOADING, NULL);
    pthread_mutex_unlock(&c->st_mu);
    char err[400] = "";
    double t0 = kern_now_mono();
    int rc = open_impl(c, err, sizeof err);
    if (rc) log_error("model '%s': load failed: %s", c->model.name, err);
    else log_info("model '%s' loaded in %.2f s", c->model.name, kern_now_mono() - t0);
    pthread_mutex_lock(&c->st_mu);
    c->last_used = kern_now_mono();
    set_state(c, rc ? LLM_CORE_FAILED : LLM_CORE_READY, rc ? err : NULL);
}

static void request_load(llm_core *c);

/* The lifecycle thread: loads and unloads on request, and unloads a model idle for
 * idle_unload_s (its next request loads it again). */
static void *lifecycle(void *arg) {
    llm_core *c = arg;
    pthread_mutex_lock(&c->st_mu);
    while (!c->stop) {
        bool idle = c->model.idle_unload_s > 0 && c->state == LLM_CORE_READY &&
            kern_now_mono() - c->last_used >= c->model.idle_unload_s && sched_idle(c);
        if (c->state == LLM_CORE_UNLOADING && c->impl) { /* an unload asked for (the state says so) */
            char why[sizeof c->why];
            snprintf(why, sizeof why, "%s", c->why);
            do_unload(c, why);
        } else if (idle) {
            do_unload(c, "idle");
        } else if (c->cmd == LLM_CMD_LOAD && c->state != LLM_CORE_READY && !c->impl) {
            c->cmd = LLM_CMD_NONE;
            do_load(c);
        } else {
            if (c->state == LLM_CORE_READY) c->cmd = LLM_CMD_NONE; /* loaded already */
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 1;
            pthread_cond_timedwait(&c->st_cv, &c->st_mu, &until);
        }
        /* requests waiting on an unloaded model load it again (load_on_request), or are refused */
        if (c->state == LLM_CORE_UNLOADED && c->waiters && c->model.load_on_request) request_load(c);
        else if (c->state == LLM_CORE_UNLOADED && c->waiters) set_state(c, LLM_CORE_UNLOADED, c->why);
    }
    pthread_mutex_unlock(&c->st_mu);
    return NULL;
}

llm_core *llm_core_open(const llm_core_params *p, char *err, size_t errlen) {
    const llm_backend_ops *ops = llm_backend_named(p->model->backend);
    if (!ops) {
        snprintf(err, errlen,
                 "unknown LLM backend '%s' (allowed: llamacpp, openai and its aliases vllm, sglang, ollama, "
                 "deepseek, groq, lmstudio, and anthropic)",
                 p->model->backend);
        return NULL;
    }
    llm_core *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->ops = ops;
    c->model = *p->model;
    c->params = *p;
    c->params.model = &c->model;
    pthread_rwlockattr_t la; /* writers first: a steady stream of readers must not hold off an unload */
    pthread_rwlockattr_init(&la);
    pthread_rwlockattr_setkind_np(&la, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&c->lk, &la);
    pthread_rwlockattr_destroy(&la);
    pthread_mutex_init(&c->st_mu, NULL);
    pthread_cond_init(&c->st_cv, NULL);
    snprintf(c->info.name, sizeof c->info.name, "%s", c->model.name); /* listed before a lazy load */
    c->info.backend = ops->name;
    c->sched = sched_new(&p->sched, err, errlen);
    if (!c->sched || (!p->lazy && open_impl(c, err, errlen))) {
        llm_core_free(c);
        return NULL;
    }
    if (p->lazy) { /* the lifecycle thread loads it */
        c->state = LLM_CORE_LOADING;
        c->cmd = LLM_CMD_LOAD;
    }
    c->last_used = kern_now_mono();
    if (pthread_create(&c->thread, NULL, lifecycle, c)) {
        snprintf(err, errlen, "model '%s': cannot start its lifecycle thread", c->model.name);
        llm_core_free(c);
        return NULL;
    }
    c->thread_started = true;
    return c;
}

void llm_core_free(llm_core *c) {
    if (!c) return;
    if (c->thread_started) {
        pthread_mutex_lock(&c->st_mu);
        c->stop = true;
        pthread_cond_broadcast(&c->st_cv);
        pthread_mutex_unlock(&c->st_mu);
        if (c->sched) sched_close(c->sched); /* an unload draining stops waiting */
        pthread_join(c->thread, NULL);
    }
    if (c->sched) sched_close(c->sched);
    if (c->impl) c->ops->close(c->impl); /* joins the engine; running work completes as shut down */
    sched_free(c->sched);                /* waiting work completes as shut down */
    pthread_mutex_lock(&c->st_mu);
    set_state(c, LLM_CORE_UNLOADED, "shutting down"); /* waiters look again, and find it gone */
    pthread_mutex_unlock(&c->st_mu);
    pthread_rwlock_destroy(&c->lk);
    pthread_mutex_destroy(&c->st_mu);
    pthread_cond_destroy(&c->st_cv);
    free(c);
}

llm_core_state llm_core_get_state(llm_core *c, char *why, size_t cap, double *idle_s) {
    pthread_mutex_lock(&c->st_mu);
    llm_core_state s = c->state;
    if (why && cap) snprintf(why, cap, "%s", c->why);
    if (idle_s) *idle_s = kern_now_mono() - c->last_used;
    pthread_mutex_unlock(&c->st_mu);
    return s;
}

/* Asks the lifecycle thread for cmd. */
static void command(llm_core *c, llm_core_cmd cmd) {
    c->cmd = cmd;
    pthread_cond_broadcast(&c->st_cv);
}

/* A load from now (st_mu held): the state says loading at once; after an unload under way,
 * once it is done. */
static void request_load(llm_core *c) {
    if (c->state == LLM_CORE_UNLOADED || c->state == LLM_CORE_FAILED) set_state(c, LLM_CORE_LOADING, NULL);
    if (c->state == LLM_CORE_LOADING || c->state == LLM_CORE_UNLOADING) command(c, LLM_CMD_LOAD);
}

llm_core_state llm_core_load(llm_core *c) {
    pthread_mutex_lock(&c->st_mu);
    request_load(c);
    llm_core_state s = c->state == LLM_CORE_READY ? LLM_CORE_READY : LLM_CORE_LOADING;
    pthread_mutex_unlock(&c->st_mu);
    return s;
}

llm_core_state llm_core_unload(llm_core *c) {
    pthread_mutex_lock(&c->st_mu);
    if (c->state == LLM_CORE_READY) /* unloading from now (the lifecycle thread sees it): new requests wait */
        set_state(c, LLM_CORE_UNLOADING, "unloaded by an admin");
    llm_core_state s = c->state;
    pthread_mutex_unlock(&c->st_mu);
    return s;
}

bool llm_core_when_ready(llm_core *c, bool load, void (*fn)(void *), void *ctx) {
    pthread_mutex_lock(&c->st_mu);
    /* (a failed load is not tried again for a request: it gets the reason; POST /models/load retries) */
    bool wait = c->state == LLM_CORE_LOADING || c->state == LLM_CORE_UNLOADING || (load && c->state == LLM_CORE_UNLOADED);
    llm_core_waiter *w = wait ? calloc(1, sizeof *w) : NULL;
    if (w) {
        w->fn = fn;
        w->ctx = ctx;
        w->next = c->waiters;
        c->waiters = w;
        if (c->state == LLM_CORE_UNLOADED) request_load(c);
    }
    pthread_mutex_unlock(&c->st_mu);
    return w != NULL;
}

void llm_core_forget(llm_core *c, void *ctx) {
    pthread_mutex_lock(&c->st_mu);
    for (llm_core_waiter **p = &c->waiters; *p;) {
        llm_core_waiter *w = *p;
        if (w->ctx == ctx) {
            *p = w->next;
            free(w);
        } else {
            p = &w->next;
        }
    }
    pthread_mutex_unlock(&c->st_mu);
}

/* ---------- what goes through the backend (none while unloaded) ---------- */

static int unloaded(llm_core *c, char *err, size_t errlen) {
    char why[400];
    llm_core_state st = llm_core_get_state(c, why, sizeof why, NULL);
    snprintf(err, errlen, "model '%s' is %s%s%s (POST /models/load loads it)", c->model.name, llm_core_state_name(st),
             why[0] ? ": " : "", why);
    return AIOS_ERR_MODEL_DOWN;
}

const char *llm_core_name(const llm_core *c) { return c->model.name; }

void llm_core_get_info(llm_core *c, llm_core_info *out) {
    pthread_rwlock_rdlock(&c->lk);
    if (c->impl) c->ops->info(c->impl, out);
    else *out = c->info;
    pthread_rwlock_unlock(&c->lk);
}

void llm_core_get_stats(llm_core *c, llm_core_stats *out, sched_stats *sched_out) {
    pthread_rwlock_rdlock(&c->lk);
    if (c->impl) c->ops->stats(c->impl, out);
    else memset(out, 0, sizeof *out);
    pthread_rwlock_unlock(&c->lk);
    if (sched_out) sched_get_stats(c->sched, sched_out);
}

#define THROUGH_BACKEND(call) \
    pthread_rwlock_rdlock(&c->lk); \
    int rc = c->impl ? c->ops->call : unloaded(c, err, errlen); \
    pthread_rwlock_unlock(&c->lk); \
    return rc

int llm_core_render(llm_core *c, const llm_chat *chat, strbuf *out, char *err, size_t errlen) {
    THROUGH_BACKEND(render(c->impl, chat, out, err, errlen));
}

int llm_core_tokenize(llm_core *c, const char *text, bool add_special, int32_t **out, int *n, char *err, size_t errlen) {
    *out = NULL;
    *n = 0;
    THROUGH_BACKEND(tokenize(c->impl, text, add_special, out, n, err, errlen));
}

int llm_core_detokenize(llm_core *c, const int32_t *tokens, int n, strbuf *out, char *err, size_t errlen) {
    THROUGH_BACKEND(detokenize(c->impl, tokens, n, out, err, errlen));
}

int llm_core_prepare(llm_core *c, const llm_chat *chat, llm_request **out, char *err, size_t errlen) {
    THROUGH_BACKEND(prepare(c->impl, chat, out, err, errlen));
}

int llm_core_submit(llm_core *c, syscall_t *sc) {
    pthread_rwlock_rdlock(&c->lk);
    int rc = c->impl ? sched_submit(c->sched, sc) : AIOS_ERR_MODEL_DOWN;
    if (!rc) c->ops->wake(c->impl); /* an engine that waits on its I/O rather than the run queue */
    pthread_rwlock_unlock(&c->lk);
    if (!rc) {
        pthread_mutex_lock(&c->st_mu);
        c->last_used = kern_now_mono();
        pthread_mutex_unlock(&c->st_mu);
    }
    return rc;
}

void llm_core_cancel(llm_core *c, syscall_t *sc) {
    syscall_cancel(sc);
    if (sched_cancel(c->sched, sc)) return;
    pthread_rwlock_rdlock(&c->lk);
    if (c->impl) c->ops->wake(c->impl);
    pthread_rwlock_unlock(&c->lk);
}

int llm_core_hold(llm_core *c, const char *agent, bool hold) {
    int rc = sched_hold(c->sched, agent, hold);
    pthread_rwlock_rdlock(&c->lk);
    if (c->impl) c->ops->wake(c->impl); /* the engine parks the held agent's generation now */
    pthread_rwlock_unlock(&c->lk);
    return rc;
}

int llm_core_agent_kv(llm_core *c, const char *agent) {
    pthread_rwlock_rdlock(&c->lk);
    int cells = c->impl && c->ops->agent_kv ? c->ops->agent_kv(c->impl, agent) : 0;
    pthread_rwlock_unlock(&c->lk);
    return cells;
}

void llm_core_foreach_agent(llm_core *c, sched_agent_fn fn, void *ud) { sched_foreach_agent(c->sched, fn, ud); }

bool llm_core_down(llm_core *c, char *why, size_t cap) {
    if (why && cap) why[0] = 0;
    pthread_rwlock_rdlock(&c->lk);
    bool down = c->impl && c->ops->down && c->ops->down(c->impl, why, cap);
    pthread_rwlock_unlock(&c->lk);
    return down;
}
