/*
 * routes_openai.c - the OpenAI-compatible surface: /v1/chat/completions and
 * /v1/completions (JSON or server-sent events), /v1/models. The bearer token names the
 * agent, so any OpenAI client is scheduled per agent.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "chat.h"

/* ---- request parsing ---- */

static int parse_stop(const cJSON *body, chat_spec *spec, int max_stop, char *err, size_t errlen) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(body, "stop");
    if (!s || cJSON_IsNull(s)) return AIOS_OK;
    if (cJSON_IsString(s)) {
        if (*s->valuestring) spec->stop[spec->n_stop++] = s->valuestring;
        return AIOS_OK;
    }
    if (!cJSON_IsArray(s)) {
        snprintf(err, errlen, "'stop' must be a string or an array of strings");
        return AIOS_ERR_INVALID;
    }
    for (const cJSON *it = s->child; it; it = it->next) {
        if (!cJSON_IsString(it)) {
            snprintf(err, errlen, "'stop' must be a string or an array of strings");
            return AIOS_ERR_INVALID;
        }
        if (spec->n_stop >= max_stop || spec->n_stop >= 64) {
            snprintf(err, errlen, "'stop' has more than %d strings (llms.max_stop)", max_stop);
            return AIOS_ERR_INVALID;
        }
        if (*it->valuestring) spec->stop[spec->n_stop++] = it->valuestring;
    }
    return AIOS_OK;
}

static int parse_response_format(const cJSON *body, chat_spec *spec, char *err, size_t errlen) {
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(body, "response_format");
    if (!rf || cJSON_IsNull(rf)) return AIOS_OK;
    const char *type = NULL;
    int rc = cJSON_IsObject(rf) ? jp_string(rf, "type", true, &type, err, errlen) : AIOS_ERR_INVALID;
    if (rc || !type) {
        if (!rc || !*err)
            snprintf(err, errlen, "'response_format' must be {\"type\": \"text\" | \"json_object\" | \"json_schema\"}");
        return AIOS_ERR_INVALID;
    }
    if (!strcmp(type, "text")) return AIOS_OK;
    spec->mode = CHAT_MODE_JSON;
    if (!strcmp(type, "json_object")) return AIOS_OK;
    if (strcmp(type, "json_schema")) {
        snprintf(err, errlen, "response_format.type '%.32s' is not one of text, json_object, json_schema", type);
        return AIOS_ERR_INVALID;
    }
    return chat_json_schema(rf, spec, err, errlen);
}

/* The tool_choice value itself: "none" | "auto" | "required" | {"type":"function",
 * "function":{"name"}}; *named is the function's name. */
static int tool_choice_value(const cJSON *tc, const char **word, const char **named) {
    *word = *named = NULL;
    if (cJSON_IsString(tc)) {
        *word = tc->valuestring;
        return strcmp(*word, "none") && strcmp(*word, "auto") && strcmp(*word, "required") ? AIOS_ERR_INVALID : AIOS_OK;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(tc, "type");
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(tc, "function");
    const cJSON *n = cJSON_IsObject(f) ? cJSON_GetObjectItemCaseSensitive(f, "name") : NULL;
    if (!cJSON_IsObject(tc) || (type && (!cJSON_IsString(type) || strcmp(type->valuestring, "function"))) || !cJSON_IsString(n) ||
        !*n->valuestring)
        return AIOS_ERR_INVALID;
    *named = n->valuestring;
    return AIOS_OK;
}

/* tool_choice: "none" drops the tools, "auto"/"required"/a named function constrain the
 * answer to tool calls (a named one to that tool only). Checked with or without tools;
 * "required" or a named function without tools cannot be honoured: 400. */
static int parse_tool_choice(const cJSON *body, chat_spec *spec, const char **only, char *err, size_t errlen) {
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(body, "tool_choice");
    const char *word = NULL;
    *only = NULL;
    bool parallel = true; /* checked with or without tools */
    int rc = jp_bool(body, "parallel_tool_calls", &parallel, err, errlen);
    if (rc) return rc;
    if (tc && !cJSON_IsNull(tc) && tool_choice_value(tc, &word, only)) {
        snprintf(err, errlen,
                 "'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\":\"function\",\"function\":{\"name\":...}}");
        return AIOS_ERR_INVALID;
    }
    bool have_tools = spec->tools && spec->tools->child;
    if (!have_tools) {
        if (*only || (word && !strcmp(word, "required"))) {
            snprintf(err, errlen, "'tool_choice' %s needs a non-empty 'tools' list",
                     *only ? "names a function and" : "\"required\"");
            return AIOS_ERR_INVALID;
        }
        spec->tools = NULL;
        return AIOS_OK;
    }
    spec->mode = CHAT_MODE_TOOLS;
    spec->tools_auto = !*only && (!word || !strcmp(word, "auto")); /* the default with tools: the model decides */
    spec->single_call = !parallel;
    if (word && !strcmp(word, "none")) {
        spec->mode = CHAT_MODE_TEXT;
        spec->tools = NULL;
    }
    return AIOS_OK;
}

/* stream_options: null or {"include_usage": bool}. */
static int parse_stream_options(const cJSON *body, bool *include_usage, char *err, size_t errlen) {
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(body, "stream_options");
    if (!so || cJSON_IsNull(so)) return AIOS_OK;
    if (!cJSON_IsObject(so)) {
        snprintf(err, errlen, "'stream_options' must be an object or null");
        return AIOS_ERR_INVALID;
    }
    int rc = jp_bool(so, "include_usage", include_usage, err, errlen);
    if (rc) snprintf(err, errlen, "'stream_options.include_usage' must be true or false");
    return rc;
}

/* logit_bias: {"<token id>": bias in [-100, 100]} (-100 bans the token), at most
 * LOGIT_BIAS_MAX entries, into the request's arrays (ids checked against the vocabulary
 * at prepare). */
#define LOGIT_BIAS_MAX 1024
static int parse_logit_bias(const cJSON *body, chat_ctx *b, llm_sampling *s, char *err, size_t errlen) {
    const cJSON *lb = cJSON_GetObjectItemCaseSensitive(body, "logit_bias");
    if (!lb || cJSON_IsNull(lb)) return AIOS_OK;
    int n = cJSON_GetArraySize(lb);
    if (!cJSON_IsObject(lb) || n > LOGIT_BIAS_MAX) {
        snprintf(err, errlen, "'logit_bias' must be an object of at most %d {\"<token id>\": bias} entries", LOGIT_BIAS_MAX);
        return AIOS_ERR_INVALID;
    }
    b->bias_tokens = calloc((size_t)n + 1, sizeof *b->bias_tokens);
    b->bias_values = calloc((size_t)n + 1, sizeof *b->bias_values);
    if (!b->bias_tokens || !b->bias_values) return AIOS_ERR_NOMEM;
    int i = 0;
    for (const cJSON *e = lb->child; e; e = e->next, i++) {
        char *end;
        long id = strtol(e->string, &end, 10);
        if (!*e->string || *end || id < 0 || id > INT32_MAX || !cJSON_IsNumber(e) || e->valuedouble < -100 ||
            e->valuedouble > 100) {
            snprintf(err, errlen, "logit_bias: '%.32s': keys are token ids, values numbers from -100 to 100", e->string);
            return AIOS_ERR_INVALID;
        }
        b->bias_tokens[i] = (int32_t)id;
        b->bias_values[i] = e->valuedouble <= -100 ? -INFINITY : (float)e->valuedouble;
    }
    s->bias_tokens = b->bias_tokens;
    s->bias_values = b->bias_values;
    s->n_bias = n;
    return AIOS_OK;
}

/* frequency_penalty, presence_penalty (OpenAI, -2 to 2), repeat_penalty and
 * repeat_last_n (llama-server's). */
static int parse_penalties(const cJSON *body, llm_sampling *s, char *err, size_t errlen) {
    double freq = 0, pres = 0, rep = 1;
    long last_n = s->penalty_last_n;
    int rc = jp_number(body, "frequency_penalty", -2, 2, &freq, err, errlen);
    if (!rc) rc = jp_number(body, "presence_penalty", -2, 2, &pres, err, errlen);
    if (!rc) rc = jp_number(body, "repeat_penalty", 0.01, 10, &rep, err, errlen);
    if (!rc) rc = jp_int(body, "repeat_last_n", 0, 1 << 20, &last_n, err, errlen);
    s->frequency_penalty = (float)freq;
    s->presence_penalty = (float)pres;
    s->repeat_penalty = (float)rep;
    s->penalty_last_n = (int)last_n;
    return rc;
}

/* Chat completions' logprobs (bool) and top_logprobs (0 to 20, only with logprobs). */
static int parse_logprobs(const cJSON *body, llm_sampling *s, char *err, size_t errlen) {
    bool on = false;
    long top = 0;
    int rc = jp_bool(body, "logprobs", &on, err, errlen);
    if (!rc) rc = jp_int(body, "top_logprobs", 0, LLM_TOP_LOGPROBS_MAX, &top, err, errlen);
    if (!rc && top > 0 && !on) {
        snprintf(err, errlen, "'top_logprobs' needs \"logprobs\": true");
        rc = AIOS_ERR_INVALID;
    }
    s->logprobs = on;
    s->top_logprobs = (int)top;
    return rc;
}

static int parse_sampling(const cJSON *body, const aios_config *cfg, llm_sampling *s, int *n_choices, char *err, size_t errlen) {
    double temp = 1.0, top_p = 1.0, min_p = 0.0;
    long top_k = 0, max_tokens = cfg->llms.default_max_tokens, seed = -1, n = 1;
    int rc = jp_number(body, "temperature", 0, 2, &temp, err, errlen);
    if (!rc) rc = jp_number(body, "top_p", 0, 1, &top_p, err, errlen);
    if (!rc) rc = jp_number(body, "min_p", 0, 1, &min_p, err, errlen);
    if (!rc) rc = jp_int(body, "top_k", 0, 1000000, &top_k, err, errlen);
    if (!rc) rc = jp_int(body, "max_tokens", 1, 1 << 24, &max_tokens, err, errlen);
    if (!rc) rc = jp_int(body, "max_completion_tokens", 1, 1 << 24, &max_tokens, err, errlen);
    if (!rc) rc = jp_int(body, "seed", -1, 0xFFFFFFFEL, &seed, err, errlen);
    if (!rc) rc = jp_int(body, "n", 1, cfg->llms.max_n, &n, err, errlen);
    bool ignore_eos = false;
    if (!rc) rc = jp_bool(body, "ignore_eos", &ignore_eos, err, errlen); /* llama-server's extension */
    *s = llm_default_sampling();
    s->ignore_eos = ignore_eos;
    s->temperature = (float)temp;
    s->top_p = (float)top_p;
    s->min_p = (float)min_p;
    s->top_k = (int)top_k;
    s->max_tokens = (int)max_tokens;
    s->seed = seed < 0 ? LLM_SEED_RANDOM : (uint32_t)seed;
    *n_choices = (int)n;
    return rc ? rc : parse_penalties(body, s, err, errlen);
}

/* ---- responses ---- */

/* usage of the request: its prompt once, the completions of every choice (n). */
static cJSON *usage_json(api_req *r) {
    llm_request *req = r->sc->args;
    cJSON *u = cJSON_CreateObject();
    int p = llm_request_prompt_tokens(req), c = llm_request_completion_tokens(req) + r->done_completion_tokens;
    cJSON_AddNumberToObject(u, "prompt_tokens", p);
    cJSON_AddNumberToObject(u, "completion_tokens", c);
    cJSON_AddNumberToObject(u, "total_tokens", p + c);
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(u, "prompt_tokens_details"), "cached_tokens", llm_request_cached_tokens(req));
    return u;
}

static cJSON *base_object(const chat_ctx *ctx, const char *object) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", ctx->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)ctx->created);
    cJSON_AddStringToObject(o, "model", ctx->model);
    return o;
}

static const char *finish_reason(const chat_ctx *ctx, syscall_t *sc) {
    llm_finish f = llm_request_finish(sc->args);
    if (f == LLM_FINISH_STOP && chat_made_calls(ctx, sc->out.data ? sc->out.data : "")) return "tool_calls";
    return llm_finish_name(f);
}

/* One token for OpenAI's logprobs: its text (cut characters as '?') and exact bytes. */
static cJSON *lp_token(llm_core *core, int32_t tok, float logprob) {
    strbuf p;
    sb_init(&p, 0);
    char err[128];
    cJSON *o = cJSON_CreateObject(), *bytes = NULL;
    if (!llm_core_detokenize(core, &tok, 1, &p, err, sizeof err)) {
        char *text = sb_steal(&p);
        bytes = cJSON_CreateArray();
        for (const unsigned char *c = (const unsigned char *)text; *c; c++) kern_json_push(bytes, cJSON_CreateNumber(*c));
        kern_utf8_sanitize(text);
        cJSON_AddStringToObject(o, "token", text);
        free(text);
    } else {
        sb_free(&p);
        cJSON_AddStringToObject(o, "token", "");
    }
    cJSON_AddNumberToObject(o, "logprob", logprob);
    kern_json_add(o, "bytes", bytes ? bytes : cJSON_CreateArray());
    return o;
}

/* choice.logprobs: {"content": [{token, logprob, bytes, top_logprobs}]}, or null when not asked. */
static cJSON *logprobs_json(api_req *r, syscall_t *sc) {
    const llm_logprob *lp;
    int n = llm_request_logprobs(sc->args, &lp);
    chat_ctx *ctx = r->data;
    if (!ctx->logprobs) return cJSON_CreateNull();
    cJSON *o = cJSON_CreateObject(), *content = cJSON_AddArrayToObject(o, "content");
    for (int i = 0; i < n; i++) {
        cJSON *t = lp_token(r->adm.core, lp[i].token, lp[i].logprob), *top = cJSON_AddArrayToObject(t, "top_logprobs");
        for (int j = 0; j < lp[i].n_top; j++)
            kern_json_push(top, lp_token(r->adm.core, lp[i].top_token[j], lp[i].top_logprob[j]));
        kern_json_push(content, t);
    }
    return o;
}

/* The answer's choice r->choice (r->sc, done). */
static cJSON *choice_json(api_req *r) {
    chat_ctx *ctx = r->data;
    syscall_t *sc = r->sc;
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", r->choice);
    const char *text = sc->out.data ? sc->out.data : "";
    if (ctx->completions_api) {
        cJSON_AddStringToObject(ch, "text", text);
    } else {
        cJSON *msg = cJSON_AddObjectToObject(ch, "message");
        cJSON_AddStringToObject(msg, "role", "assistant");
        if (chat_made_calls(ctx, text)) {
            cJSON *calls = chat_tool_calls(ctx, text, sc->id);
            cJSON_AddNullToObject(msg, "content");
            kern_json_add(msg, "tool_calls", chat_openai_tool_calls(calls));
            cJSON_Delete(calls);
        } else {
            cJSON_AddStringToObject(msg, "content", text);
        }
    }
    cJSON_AddStringToObject(ch, "finish_reason", finish_reason(ctx, sc));
    if (!ctx->completions_api) kern_json_add(ch, "logprobs", logprobs_json(r, sc));
    return ch;
}

static enum MHD_Result openai_done(api_req *r) {
    chat_ctx *ctx = r->data;
    syscall_t *sc = r->sc;
    if (sc->result) return api_reply_error(r, sc->result, "%s", sc->errmsg);
    if (!ctx->choices) ctx->choices = cJSON_CreateArray();
    kern_json_push(ctx->choices, choice_json(r));
    if (r->choice + 1 < r->n_choices) return api_next_choice(r);
    cJSON *o = base_object(ctx, ctx->completions_api ? "text_completion" : "chat.completion");
    kern_json_add(o, "choices", ctx->choices);
    ctx->choices = NULL;
    kern_json_add(o, "usage", usage_json(r));
    kern_json_add(o, "aios", chat_timing_json(sc));
    return api_reply_json(r, 200, o);
}

static cJSON *chunk(const api_req *r, cJSON *delta_or_text, const char *finish) {
    const chat_ctx *ctx = r->data;
    cJSON *o = base_object(ctx, ctx->completions_api ? "text_completion" : "chat.completion.chunk");
    cJSON *choices = cJSON_AddArrayToObject(o, "choices"), *ch = cJSON_CreateObject();
    kern_json_push(choices, ch);
    cJSON_AddNumberToObject(ch, "index", r->choice);
    kern_json_add(ch, ctx->completions_api ? "text" : "delta", delta_or_text);
    if (finish) cJSON_AddStringToObject(ch, "finish_reason", finish);
    else cJSON_AddNullToObject(ch, "finish_reason");
    return o;
}

static cJSON *content_delta(chat_ctx *ctx, const char *text, size_t n) {
    if (ctx->completions_api) return cJSON_CreateString(text);
    cJSON *d = cJSON_CreateObject();
    if (!ctx->role_sent) cJSON_AddStringToObject(d, "role", "assistant");
    ctx->role_sent = true;
    if (n || !text[0]) cJSON_AddStringToObject(d, "content", text);
    return d;
}

static void openai_stream(api_req *r, const char *delta, size_t n, bool final, strbuf *sse) {
    chat_ctx *ctx = r->data;
    syscall_t *sc = r->sc;
    const char *text;
    size_t len = chat_stream_text(ctx, delta, n, final, &text);
    if (len) api_sse_event(sse, NULL, chunk(r, content_delta(ctx, text, len), NULL));
    if (!final) return;
    if (sc->result) {
        cJSON *e = cJSON_CreateObject(), *eo = cJSON_AddObjectToObject(e, "error");
        cJSON_AddStringToObject(eo, "code", aios_errcode(sc->result));
        cJSON_AddStringToObject(eo, "message", sc->errmsg);
        api_sse_event(sse, NULL, e);
    } else {
        cJSON *last;
        if (chat_stream_calls(ctx)) {
            cJSON *calls = chat_tool_calls(ctx, sc->out.data ? sc->out.data : "", sc->id);
            last = cJSON_CreateObject();
            cJSON_AddStringToObject(last, "role", "assistant");
            kern_json_add(last, "tool_calls", chat_openai_tool_calls(calls));
            cJSON_Delete(calls);
        } else {
            last = ctx->completions_api ? cJSON_CreateString("") : cJSON_CreateObject();
        }
        cJSON *fin = chunk(r, last, finish_reason(ctx, sc));
        if (ctx->logprobs) /* streamed: every token's logprobs arrive with the final chunk */
            kern_json_add(cJSON_GetArrayItem(cJSON_GetObjectItem(fin, "choices"), 0), "logprobs", logprobs_json(r, sc));
        api_sse_event(sse, NULL, fin);
        if (r->choice + 1 < r->n_choices) { /* n: the next choice streams from its start */
            ctx->role_sent = ctx->stream_decided = ctx->stream_text = false;
            sb_reset(&ctx->held);
            return;
        }
        if (ctx->include_usage) {
            cJSON *u = base_object(ctx, "chat.completion.chunk");
            cJSON_AddArrayToObject(u, "choices");
            kern_json_add(u, "usage", usage_json(r));
            kern_json_add(u, "aios", chat_timing_json(sc));
            api_sse_event(sse, NULL, u);
        }
    }
    sb_puts(sse, "data: [DONE]\n\n");
}

/* ---- handlers ---- */

int chat_openai_prepare(api_req *r, const cJSON *body, bool chat_api, bool *stream, syscall_t **out, char *err, size_t errlen) {
    const aios_config *cfg = api_cfg(r);
    const char *only_tool = NULL;
    chat_spec spec = {.mode = CHAT_MODE_TEXT};
    bool include_usage = false;
    *stream = false;
    int rc = jp_bool(body, "stream", stream, err, errlen);
    if (!rc) rc = parse_stream_options(body, &include_usage, err, errlen);
    int n = 1;
    if (!rc) rc = parse_sampling(body, cfg, &spec.sampling, &n, err, errlen);
    if (!rc) rc = jp_priority(r, body, err, errlen);
    if (!rc) rc = parse_stop(body, &spec, cfg->llms.max_stop, err, errlen);
    if (!rc && chat_api) {
        spec.messages = cJSON_GetObjectItemCaseSensitive(body, "messages");
        spec.tools = cJSON_GetObjectItemCaseSensitive(body, "tools");
        if (cJSON_IsNull(spec.tools)) spec.tools = NULL;
        rc = chat_check_tools(spec.tools, err, errlen);
        if (!rc) rc = parse_response_format(body, &spec, err, errlen);
        if (!rc) rc = parse_tool_choice(body, &spec, &only_tool, err, errlen);
    } else if (!rc) {
        rc = jp_string(body, "prompt", true, &spec.prompt, err, errlen);
    }
    if (!rc && chat_api) rc = parse_logprobs(body, &spec.sampling, err, errlen);
    if (rc) return rc;
    llm_core *core = r->adm.core;
    chat_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return AIOS_ERR_NOMEM;
    r->data = ctx;
    r->data_free = chat_ctx_free;
    llm_core_info info;
    llm_core_get_info(core, &info);
    snprintf(ctx->model, sizeof ctx->model, "%s", info.name);
    ctx->created = (long)time(NULL);
    ctx->mode = spec.mode;
    ctx->tools_auto = spec.tools_auto;
    ctx->logprobs = spec.sampling.logprobs;
    ctx->completions_api = !chat_api;
    ctx->include_usage = include_usage;
    cJSON *only_list = NULL;
    if (only_tool) { /* keep just the named tool */
        if (!(only_list = cJSON_CreateArray())) return AIOS_ERR_NOMEM;
        for (const cJSON *t = spec.tools->child; t; t = t->next) {
            const cJSON *f = cJSON_GetObjectItemCaseSensitive(t, "function");
            const cJSON *n = cJSON_GetObjectItemCaseSensitive(f, "name");
            if (cJSON_IsString(n) && !strcmp(n->valuestring, only_tool)) cJSON_AddItemReferenceToArray(only_list, (cJSON *)t);
        }
        if (!only_list->child) {
            cJSON_Delete(only_list);
            snprintf(err, errlen, "tool_choice names '%.128s', which is not in 'tools'", only_tool);
            return AIOS_ERR_INVALID;
        }
        spec.tools = only_list;
    }
    cJSON *filled = NULL;
    rc = parse_logit_bias(body, ctx, &spec.sampling, err, errlen);
    if (!rc && spec.mode == CHAT_MODE_TOOLS) rc = chat_kernel_tools(r, spec.tools, false, &filled, err, errlen);
    if (filled) spec.tools = filled;
    if (!rc) rc = chat_parse_tools(ctx, spec.mode == CHAT_MODE_TOOLS ? spec.tools : NULL, err, errlen);
    if (!rc) rc = chat_build_syscall(r, core, ctx, &spec, out, err, errlen);
    for (int i = 1; i < n && !rc; i++) { /* n: more choices of the same request, seeds seed + i */
        chat_spec more = spec;
        if (more.sampling.seed != LLM_SEED_RANDOM) more.sampling.seed += (uint32_t)i;
        char id[sizeof ctx->id];
        memcpy(id, ctx->id, sizeof id); /* the request keeps its first choice's id */
        rc = chat_build_syscall(r, core, ctx, &more, &ctx->more[ctx->n_more], err, errlen);
        memcpy(ctx->id, id, sizeof id);
        if (!rc) ctx->n_more++;
    }
    cJSON_Delete(only_list);
    cJSON_Delete(filled);
    if (rc && *out) { /* (a later choice failed: the first goes too; ctx frees the others) */
        syscall_unref(*out);
        *out = NULL;
    }
    return rc;
}

static enum MHD_Result completions(api_req *r, cJSON *body, bool chat_api) {
    char err[512] = "";
    bool stream;
    syscall_t *sc = NULL;
    int rc = chat_openai_prepare(r, body, chat_api, &stream, &sc, err, sizeof err);
    if (rc) return api_reply_error(r, rc, "%s", err);
    chat_ctx *ctx = r->data;
    syscall_t *scs[API_MAX_CHOICES] = {sc};
    int n = 1 + ctx->n_more;
    memcpy(scs + 1, ctx->more, (size_t)ctx->n_more * sizeof *scs);
    ctx->n_more = 0; /* the request owns them now */
    return api_run_choices(r, r->adm.core, scs, n, openai_done, stream ? openai_stream : NULL);
}

/* The model (`model`, default when absent) and the kernel tools `tools` names. */
int chat_plan_openai(api_req *r, const cJSON *body, api_admission *a, char *err, size_t errlen) {
    const char *model = NULL;
    int rc = jp_string(body, "model", false, &model, err, errlen);
    if (rc) return rc;
    a->kind = SYSCALL_KIND_LLM;
    if (!(a->core = api_core(r, model))) {
        char known[512];
        api_models_known(r, known, sizeof known);
        snprintf(err, errlen, "model '%.128s' does not exist; this kernel serves: %s", model, known);
        return AIOS_ERR_NOT_FOUND;
    }
    rc = chat_plan_model(a);
    return rc ? rc : chat_plan_tools(r, cJSON_GetObjectItemCaseSensitive(body, "tools"), a, err, errlen);
}

static enum MHD_Result h_chat(api_req *r, cJSON *body) { return completions(r, body, true); }
static enum MHD_Result h_completions(api_req *r, cJSON *body) { return completions(r, body, false); }

/* ---- llama-server's helpers: /tokenize, /detokenize, /apply-template ---- */

/* One token's piece: a string, or its bytes when it is not valid UTF-8 on its own. */
static cJSON *piece_json(llm_core *core, int32_t tok) {
    strbuf p;
    sb_init(&p, 0);
    char err[128];
    cJSON *v = NULL;
    if (!llm_core_detokenize(core, &tok, 1, &p, err, sizeof err)) {
        if (kern_utf8_valid(p.data ? p.data : "", p.len)) v = cJSON_CreateString(p.data ? p.data : "");
        else {
            v = cJSON_CreateArray();
            for (size_t i = 0; i < p.len; i++) kern_json_push(v, cJSON_CreateNumber((unsigned char)p.data[i]));
        }
    }
    sb_free(&p);
    return v ? v : cJSON_CreateNull();
}

static enum MHD_Result h_tokenize(api_req *r, cJSON *body) {
    char err[256] = "";
    const char *content = NULL;
    bool add_special = false, with_pieces = false;
    int rc = jp_string(body, "content", true, &content, err, sizeof err);
    if (!rc) rc = jp_bool(body, "add_special", &add_special, err, sizeof err);
    if (!rc) rc = jp_bool(body, "with_pieces", &with_pieces, err, sizeof err);
    int32_t *toks = NULL;
    int n = 0;
    if (!rc) rc = llm_core_tokenize(r->adm.core, content, add_special, &toks, &n, err, sizeof err);
    if (rc) return api_reply_error(r, rc, "%s", err);
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "tokens");
    for (int i = 0; i < n; i++) {
        if (!with_pieces) {
            kern_json_push(arr, cJSON_CreateNumber(toks[i]));
            continue;
        }
        cJSON *t = cJSON_CreateObject();
        cJSON_AddNumberToObject(t, "id", toks[i]);
        kern_json_add(t, "piece", piece_json(r->adm.core, toks[i]));
        kern_json_push(arr, t);
    }
    free(toks);
    return api_reply_json(r, 200, o);
}

static enum MHD_Result h_detokenize(api_req *r, cJSON *body) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(body, "tokens");
    int n = cJSON_GetArraySize(arr), i = 0;
    if (!cJSON_IsArray(arr)) return api_reply_error(r, AIOS_ERR_INVALID, "'tokens' must be an array of token ids");
    int32_t *toks = malloc(((size_t)n + 1) * sizeof *toks);
    if (!toks) return api_reply_error(r, AIOS_ERR_NOMEM, NULL);
    for (const cJSON *t = arr->child; t; t = t->next, i++) {
        if (!cJSON_IsNumber(t) || t->valuedouble != (double)(int32_t)t->valuedouble) {
            free(toks);
            return api_reply_error(r, AIOS_ERR_INVALID, "tokens[%d] must be an integer token id", i);
        }
        toks[i] = (int32_t)t->valuedouble;
    }
    strbuf text;
    sb_init(&text, (size_t)api_cfg(r)->server.max_stream_buffer_kb * 1024);
    char err[256] = "";
    int rc = llm_core_detokenize(r->adm.core, toks, n, &text, err, sizeof err);
    free(toks);
    if (rc) {
        sb_free(&text);
        return api_reply_error(r, rc, "%s", rc == AIOS_ERR_TOO_LARGE ? "the text is over server.max_stream_buffer_kb" : err);
    }
    char *s = sb_steal(&text);
    kern_utf8_sanitize(s); /* tokens that cut a character: '?' for its bytes, so the answer stays JSON */
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "content", s);
    free(s);
    return api_reply_json(r, 200, o);
}

static enum MHD_Result h_apply_template(api_req *r, cJSON *body) {
    strbuf p;
    sb_init(&p, 0);
    char err[512] = "";
    int rc = chat_render(r, r->adm.core, cJSON_GetObjectItemCaseSensitive(body, "messages"), &p, err, sizeof err);
    if (rc) {
        sb_free(&p);
        return api_reply_error(r, rc, "%s", err);
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "prompt", p.data ? p.data : "");
    sb_free(&p);
    return api_reply_json(r, 200, o);
}

static enum MHD_Result h_models(api_req *r, cJSON *body) {
    (void)body;
    cJSON *o = cJSON_CreateObject(), *data;
    cJSON_AddStringToObject(o, "object", "list");
    data = cJSON_AddArrayToObject(o, "data");
    for (int i = 0; i < api_n_cores(r); i++) {
        llm_core_info info;
        llm_core_get_info(api_core_at(r, i), &info);
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "id", info.name);
        cJSON_AddStringToObject(m, "object", "model");
        cJSON_AddNumberToObject(m, "created", 0);
        cJSON_AddStringToObject(m, "owned_by", "aios");
        cJSON *meta = cJSON_AddObjectToObject(m, "meta");
        api_model_fields(r, i, meta);
        cJSON_AddStringToObject(meta, "description", info.desc);
        cJSON_AddNumberToObject(meta, "n_ctx", info.ctx);
        cJSON_AddNumberToObject(meta, "n_ctx_train", info.ctx_train);
        cJSON_AddNumberToObject(meta, "n_params", (double)info.n_params);
        kern_json_push(data, m);
    }
    return api_reply_json(r, 200, o);
}

const api_route api_routes_openai[] = {
    {"POST", "/v1/chat/completions", h_chat, true, API_GATE_SYSCALL, chat_plan_openai, API_DOOR_OPENAI},
    {"POST", "/v1/completions", h_completions, true, API_GATE_SYSCALL, chat_plan_openai, API_DOOR_OPENAI},
    {"GET", "/v1/models", h_models, false, API_GATE_AGENT, NULL, API_DOOR_OPENAI},
    {"POST", "/tokenize", h_tokenize, true, API_GATE_SYSCALL, chat_plan_openai, API_DOOR_LLAMA},
    {"POST", "/detokenize", h_detokenize, true, API_GATE_SYSCALL, chat_plan_openai, API_DOOR_LLAMA},
    {"POST", "/apply-template", h_apply_template, true, API_GATE_SYSCALL, chat_plan_openai, API_DOOR_LLAMA},
    {NULL, NULL, NULL, false, API_GATE_ADMIN, NULL, API_DOOR_AIOS},
};
