/*
 * llm.c - the backend-neutral part of an LLM core: it owns the core's run queue (sched_t),
 * picks the backend by name, and routes submit/cancel. The engine of a backend is the only
 * consumer of that run queue.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "chat_template.h"
#include "llm_internal.h"

struct llm_core {
    const llm_backend_ops *ops;
    void *impl;
    sched_t *sched;
};

static const llm_backend_ops *const BACKENDS[] = {&llm_backend_llamacpp, &llm_backend_openai, &llm_backend_anthropic, NULL};
/* AIOS's backend names for OpenAI-compatible servers */
static const char *const OPENAI_ALIASES[] = {"vllm", "sglang", "ollama", "deepseek", "groq", "lmstudio", NULL};

const llm_backend_ops *llm_backend_named(const char *name) {
    for (int i = 0; OPENAI_ALIASES[i]; i++)
        if (!strcmp(OPENAI_ALIASES[i], name)) return &llm_backend_openai;
    for (int i = 0; BACKENDS[i]; i++)
        if (!strcmp(BACKENDS[i]->name, name)) return BACKENDS[i];
    return NULL;
}

llm_sampling llm_default_sampling(void) {
    return (llm_sampling){.temperature = 1.0f, .top_p = 1.0f, .top_k = 0, .min_p = 0.0f,
                          .seed = LLM_SEED_RANDOM, .max_tokens = 1000, .repeat_penalty = 1.0f, .penalty_last_n = 64};
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
    return (llm_context_params){.text_mode = false, .cache_entries = 32, .snapshot_entries = 256,
                                .prefix_min_tokens = 32, .verify_prefix = false, .park = true,
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
        if (!r->stop) { free(r); return NULL; }
        for (int i = 0; i < chat->n_stop; i++) {
            r->stop[i] = strdup(chat->stop[i]);
            if (!r->stop[i]) { r->n_stop = i; llm_request_free(r); return NULL; }
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
        cJSON_AddItemToArray(a, m);
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
    cJSON_AddItemToObject(o, "tool_calls", calls);
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
        cJSON_AddItemToArray(calls, c);
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

llm_core *llm_core_open(const llm_core_params *p, char *err, size_t errlen) {
    const llm_backend_ops *ops = llm_backend_named(p->model->backend);
    if (!ops) {
        snprintf(err, errlen, "unknown LLM backend '%s' (allowed: llamacpp, openai and its aliases vllm, sglang, ollama, "
                 "deepseek, groq, lmstudio, and anthropic)", p->model->backend);
        return NULL;
    }
    llm_core *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->ops = ops;
    c->sched = sched_new(&p->sched, err, errlen);
    if (!c->sched || ops->open(p->model, c->sched, p->sched.max_active, &p->context, &c->impl, err, errlen)) {
        sched_free(c->sched);
        free(c);
        return NULL;
    }
    return c;
}

void llm_core_free(llm_core *c) {
    if (!c) return;
    sched_close(c->sched);
    c->ops->close(c->impl); /* joins the engine; running work completes as shut down */
    sched_free(c->sched);   /* waiting work completes as shut down */
    free(c);
}

void llm_core_get_info(llm_core *c, llm_core_info *out) { c->ops->info(c->impl, out); }

void llm_core_get_stats(llm_core *c, llm_core_stats *out, sched_stats *sched_out) {
    c->ops->stats(c->impl, out);
    if (sched_out) sched_get_stats(c->sched, sched_out);
}

int llm_core_render(llm_core *c, const llm_chat *chat, strbuf *out, char *err, size_t errlen) {
    return c->ops->render(c->impl, chat, out, err, errlen);
}

int llm_core_tokenize(llm_core *c, const char *text, bool add_special, int32_t **out, int *n, char *err, size_t errlen) {
    return c->ops->tokenize(c->impl, text, add_special, out, n, err, errlen);
}

int llm_core_detokenize(llm_core *c, const int32_t *tokens, int n, strbuf *out, char *err, size_t errlen) {
    return c->ops->detokenize(c->impl, tokens, n, out, err, errlen);
}

int llm_core_prepare(llm_core *c, const llm_chat *chat, llm_request **out, char *err, size_t errlen) {
    return c->ops->prepare(c->impl, chat, out, err, errlen);
}

int llm_core_submit(llm_core *c, syscall_t *sc) {
    int rc = sched_submit(c->sched, sc);
    if (!rc) c->ops->wake(c->impl); /* an engine that waits on its I/O rather than the run queue */
    return rc;
}

void llm_core_cancel(llm_core *c, syscall_t *sc) {
    syscall_cancel(sc);
    if (!sched_cancel(c->sched, sc)) c->ops->wake(c->impl);
}

void llm_core_foreach_agent(llm_core *c, sched_agent_fn fn, void *ud) { sched_foreach_agent(c->sched, fn, ud); }

bool llm_core_down(llm_core *c, char *why, size_t cap) {
    if (why && cap) why[0] = 0;
    return c->ops->down && c->ops->down(c->impl, why, cap);
}
