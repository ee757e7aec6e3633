/*
 * routes_responses.c - the OpenAI Responses door: POST /v1/responses (JSON or typed
 * server-sent events), GET / DELETE /v1/responses/{id}, POST /v1/responses/{id}/cancel and
 * POST /v1/responses/input_tokens.
 *
 * A request's items (messages, function_call, function_call_output), its instructions,
 * function tools, tool_choice and text.format are translated into the chat completions
 * shape and run through the same pipeline as /v1/chat/completions (chat_openai_prepare),
 * so sampling, constrained tool calls, scheduling and access are the same on both doors.
 * With `store` (the default) the answer and the conversation it ends are kept per agent in
 * the storage manager's database (storage_response_*): `previous_response_id` continues
 * that conversation (the kernel's conversation retention finds its KV still resident), and
 * another agent's ids are never found (404). While a response runs, its id reaches it
 * through the server's in-flight list (GET says in_progress; cancel stops it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "chat.h"

#define RESP_MAX_METADATA 16

/* The request's own state (chat_ctx.door). */
typedef struct resp_state {
    cJSON *echo;    /* owned: the request fields an answer repeats (instructions, tools, ...) */
    cJSON *history; /* owned: the conversation so far in the chat shape, input included */
    bool store;
    int seq;        /* the next event's sequence_number */
    int out_index;  /* output_index of the next item */
    bool text_open; /* the message item's opening events were sent */
    char msg_id[64];
} resp_state;

static void resp_state_free(void *p) {
    resp_state *st = p;
    if (!st) return;
    cJSON_Delete(st->echo);
    cJSON_Delete(st->history);
    free(st);
}

/* ---- translating a Responses body into the chat completions shape ---- */

/* tools: function tools only, into chat completions' {"type":"function","function":{...}}. */
static int translate_tools(const cJSON *tools, cJSON *out, char *err, size_t errlen) {
    if (!tools || cJSON_IsNull(tools)) return AIOS_OK;
    if (!cJSON_IsArray(tools)) return jp_invalid(err, errlen, "'tools' must be an array of function tools");
    cJSON *list = cJSON_AddArrayToObject(out, "tools");
    int i = 0;
    for (const cJSON *t = tools->child; t; t = t->next, i++) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
        if (!cJSON_IsObject(t) || !cJSON_IsString(type)) {
            snprintf(err, errlen, "tools[%d] must be {\"type\":\"function\",\"name\":...,\"parameters\":{...}}", i);
            return AIOS_ERR_INVALID;
        }
        if (strcmp(type->valuestring, "function")) {
            snprintf(
                err, errlen,
                "tools[%d].type '%.40s' is not supported (this kernel runs function tools; its own tools are listed by GET /v1/tools)",
                i, type->valuestring);
            return AIOS_ERR_INVALID;
        }
        cJSON *fn = cJSON_CreateObject(), *entry = cJSON_CreateObject();
        static const char *const KEYS[] = {"name", "description", "parameters", NULL};
        for (int k = 0; KEYS[k]; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(t, KEYS[k]);
            if (v) kern_json_add(fn, KEYS[k], cJSON_Duplicate(v, 1));
        }
        cJSON_AddStringToObject(entry, "type", "function");
        kern_json_add(entry, "function", fn);
        kern_json_push(list, entry);
    }
    return AIOS_OK; /* names and schemas are checked by the chat pipeline (chat_check_tools) */
}

/* tool_choice: "auto" | "required" | "none" | {"type":"function","name"}. */
static int translate_tool_choice(const cJSON *tc, cJSON *out, char *err, size_t errlen) {
    if (!tc || cJSON_IsNull(tc)) return AIOS_OK;
    if (cJSON_IsString(tc)) {
        kern_json_add(out, "tool_choice", cJSON_Duplicate(tc, 1)); /* the words are checked there */
        return AIOS_OK;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(tc, "type"), *name = cJSON_GetObjectItemCaseSensitive(tc, "name");
    if (!cJSON_IsObject(tc) || !cJSON_IsString(type) || strcmp(type->valuestring, "function") || !cJSON_IsString(name))
        return jp_invalid(err, errlen,
                          "'tool_choice' must be \"auto\", \"required\", \"none\" or {\"type\":\"function\",\"name\":...}");
    cJSON *c = cJSON_AddObjectToObject(out, "tool_choice");
    cJSON_AddStringToObject(c, "type", "function");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(c, "function"), "name", name->valuestring);
    return AIOS_OK;
}

/* text.format: text | json_object | json_schema {name, schema, strict} -> response_format. */
static int translate_text_format(const cJSON *text, cJSON *out, char *err, size_t errlen) {
    if (!text || cJSON_IsNull(text)) return AIOS_OK;
    const cJSON *f = cJSON_IsObject(text) ? cJSON_GetObjectItemCaseSensitive(text, "format") : NULL;
    if (!cJSON_IsObject(text) || (f && !cJSON_IsNull(f) && !cJSON_IsObject(f)))
        return jp_invalid(err, errlen,
                          "'text' must be {\"format\": {\"type\": \"text\" | \"json_object\" | \"json_schema\", ...}}");
    if (!f || cJSON_IsNull(f)) return AIOS_OK;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(f, "type");
    if (!cJSON_IsString(type))
        return jp_invalid(err, errlen, "text.format.type must be \"text\", \"json_object\" or \"json_schema\"");
    cJSON *rf = cJSON_AddObjectToObject(out, "response_format");
    cJSON_AddStringToObject(rf, "type", type->valuestring); /* an unknown type is refused there */
    if (!strcmp(type->valuestring, "json_schema")) {
        const cJSON *schema = cJSON_GetObjectItemCaseSensitive(f, "schema");
        if (!cJSON_IsObject(schema)) return jp_invalid(err, errlen, "text.format.schema must be a JSON Schema object");
        kern_json_add(cJSON_AddObjectToObject(rf, "json_schema"), "schema", cJSON_Duplicate(schema, 1));
    }
    return AIOS_OK;
}

/* The text of an item's content: a string, or parts of type input_text / output_text. */
static int item_text(const cJSON *content, int idx, strbuf *out, char *err, size_t errlen) {
    if (cJSON_IsString(content)) return sb_puts(out, content->valuestring);
    if (!cJSON_IsArray(content)) {
        snprintf(err, errlen, "input[%d].content must be a string or an array of input_text parts", idx);
        return AIOS_ERR_INVALID;
    }
    int j = 0;
    for (const cJSON *p = content->child; p; p = p->next, j++) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type"), *text = cJSON_GetObjectItemCaseSensitive(p, "text");
        const char *t = cJSON_IsString(type) ? type->valuestring : "";
        if (strcmp(t, "input_text") && strcmp(t, "output_text") && strcmp(t, "text")) {
            snprintf(err, errlen,
                     "input[%d].content[%d]: type '%.32s' is not supported (text parts only: input_text, output_text)", idx, j,
                     t);
            return AIOS_ERR_INVALID;
        }
        if (!cJSON_IsString(text)) {
            snprintf(err, errlen, "input[%d].content[%d].text must be a string", idx, j);
            return AIOS_ERR_INVALID;
        }
        int rc = sb_puts(out, text->valuestring);
        if (rc) return rc;
    }
    return AIOS_OK;
}

static int add_message(cJSON *msgs, const char *role, const cJSON *content, int idx, char *err, size_t errlen) {
    strbuf t;
    sb_init(&t, 0);
    int rc = item_text(content, idx, &t, err, errlen);
    if (!rc) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", role);
        cJSON_AddStringToObject(m, "content", t.data ? t.data : "");
        kern_json_push(msgs, m);
    }
    sb_free(&t);
    return rc;
}

/* A function_call item joins the assistant message of the calls just before it. */
static int add_function_call(cJSON *msgs, const cJSON *it, int idx, char *err, size_t errlen) {
    const cJSON *call_id = cJSON_GetObjectItemCaseSensitive(it, "call_id");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(it, "arguments");
    if (!cJSON_IsString(call_id) || !*call_id->valuestring || !cJSON_IsString(name) || !*name->valuestring ||
        !cJSON_IsString(args)) {
        snprintf(err, errlen, "input[%d]: a function_call item needs call_id, name and arguments (a JSON string)", idx);
        return AIOS_ERR_INVALID;
    }
    cJSON *last = cJSON_GetArrayItem(msgs, cJSON_GetArraySize(msgs) - 1);
    cJSON *calls = last ? cJSON_GetObjectItemCaseSensitive(last, "tool_calls") : NULL;
    if (!calls) {
        last = cJSON_CreateObject();
        cJSON_AddStringToObject(last, "role", "assistant");
        cJSON_AddNullToObject(last, "content");
        calls = cJSON_AddArrayToObject(last, "tool_calls");
        kern_json_push(msgs, last);
    }
    cJSON *c = cJSON_CreateObject(), *fn;
    cJSON_AddStringToObject(c, "id", call_id->valuestring);
    cJSON_AddStringToObject(c, "type", "function");
    fn = cJSON_AddObjectToObject(c, "function");
    cJSON_AddStringToObject(fn, "name", name->valuestring);
    cJSON_AddStringToObject(fn, "arguments", args->valuestring);
    kern_json_push(calls, c);
    return AIOS_OK;
}

/* Whether an earlier assistant message of msgs made the call call_id. */
static bool call_made(const cJSON *msgs, const char *call_id) {
    for (const cJSON *m = msgs->child; m; m = m->next) {
        const cJSON *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
        for (const cJSON *c = cJSON_IsArray(calls) ? calls->child : NULL; c; c = c->next) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "id");
            if (cJSON_IsString(id) && !strcmp(id->valuestring, call_id)) return true;
        }
    }
    return false;
}

static int add_call_output(cJSON *msgs, const cJSON *it, int idx, char *err, size_t errlen) {
    const cJSON *call_id = cJSON_GetObjectItemCaseSensitive(it, "call_id");
    const cJSON *output = cJSON_GetObjectItemCaseSensitive(it, "output");
    if (!cJSON_IsString(call_id) || !*call_id->valuestring) {
        snprintf(err, errlen, "input[%d]: a function_call_output item needs call_id", idx);
        return AIOS_ERR_INVALID;
    }
    if (!call_made(msgs, call_id->valuestring)) {
        snprintf(err, errlen, "input[%d]: no function_call with call_id '%.64s' comes before this function_call_output", idx,
                 call_id->valuestring);
        return AIOS_ERR_INVALID;
    }
    strbuf t;
    sb_init(&t, 0);
    int rc = output ? item_text(output, idx, &t, err, errlen)
                    : jp_invalid(err, errlen, "input[%d]: function_call_output needs output", idx);
    if (!rc) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "tool");
        cJSON_AddStringToObject(m, "tool_call_id", call_id->valuestring);
        cJSON_AddStringToObject(m, "content", t.data ? t.data : "");
        kern_json_push(msgs, m);
    }
    sb_free(&t);
    return rc;
}

/* One input item into msgs (which holds the conversation before it). */
static int add_item(cJSON *msgs, const cJSON *it, int idx, char *err, size_t errlen) {
    if (!cJSON_IsObject(it)) {
        snprintf(err, errlen, "input[%d] must be an item object (message, function_call or function_call_output)", idx);
        return AIOS_ERR_INVALID;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(it, "type"), *role = cJSON_GetObjectItemCaseSensitive(it, "role");
    const char *t = cJSON_IsString(type) ? type->valuestring : type ? "" : "message";
    if (!strcmp(t, "message")) {
        static const char *const ROLES[] = {"user", "assistant", "system", "developer", NULL};
        int k = 0;
        while (cJSON_IsString(role) && ROLES[k] && strcmp(ROLES[k], role->valuestring)) k++;
        if (!cJSON_IsString(role) || !ROLES[k]) {
            snprintf(err, errlen, "input[%d].role must be one of user, assistant, system, developer", idx);
            return AIOS_ERR_INVALID;
        }
        return add_message(msgs, role->valuestring, cJSON_GetObjectItemCaseSensitive(it, "content"), idx, err, errlen);
    }
    if (!strcmp(t, "function_call")) return add_function_call(msgs, it, idx, err, errlen);
    if (!strcmp(t, "function_call_output")) return add_call_output(msgs, it, idx, err, errlen);
    if (!strcmp(t, "reasoning")) return AIOS_OK; /* a model's reasoning summary: nothing to show the model again */
    snprintf(err, errlen, "input[%d].type '%.40s' is not supported (message, function_call, function_call_output)", idx, t);
    return AIOS_ERR_INVALID;
}

/* input (a string or a list of items) appended to msgs. */
static int translate_input(const cJSON *input, cJSON *msgs, char *err, size_t errlen) {
    if (cJSON_IsString(input)) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "user");
        cJSON_AddStringToObject(m, "content", input->valuestring);
        kern_json_push(msgs, m);
        return AIOS_OK;
    }
    if (!cJSON_IsArray(input)) return jp_invalid(err, errlen, "'input' must be a string or an array of items");
    int i = 0, rc = AIOS_OK;
    for (const cJSON *it = input->child; it && !rc; it = it->next, i++) rc = add_item(msgs, it, i, err, errlen);
    return rc;
}

/* Parameters this door takes and what it does with them; anything else is refused by name. */
static const char *const KNOWN[] = {"model",
                                    "input",
                                    "instructions",
                                    "tools",
                                    "tool_choice",
                                    "text",
                                    "max_output_tokens",
                                    "temperature",
                                    "top_p",
                                    "stream",
                                    "store",
                                    "previous_response_id",
                                    "metadata",
                                    "user",
                                    "parallel_tool_calls",
                                    "truncation",
                                    "include",
                                    "reasoning",
                                    "service_tier",
                                    "background",
                                    "top_logprobs",
                                    "max_tool_calls",
                                    "prompt_cache_key",
                                    "safety_identifier",
                                    "stream_options",
                                    "priority",
                                    "seed",
                                    NULL};

static int check_params(const cJSON *body, char *err, size_t errlen) {
    for (const cJSON *f = body->child; f; f = f->next) {
        int k = 0;
        while (KNOWN[k] && strcmp(KNOWN[k], f->string)) k++;
        if (!KNOWN[k]) return jp_invalid(err, errlen, "unknown parameter '%.64s'", f->string);
    }
    bool background = false;
    long top = 0;
    int rc = jp_bool(body, "background", &background, err, errlen);
    if (!rc && background)
        return jp_invalid(err, errlen, "'background' responses are not supported: stream, or wait for the answer");
    if (!rc) rc = jp_int(body, "top_logprobs", 0, 0, &top, err, errlen);
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(body, "metadata");
    if (!rc && md && !cJSON_IsNull(md)) {
        bool ok = cJSON_IsObject(md) && cJSON_GetArraySize(md) <= RESP_MAX_METADATA;
        for (const cJSON *v = ok ? md->child : NULL; v && ok; v = v->next)
            ok = cJSON_IsString(v) && strlen(v->valuestring) <= 512;
        if (!ok) return jp_invalid(err, errlen, "'metadata' must be an object of at most 16 string values (512 bytes each)");
    }
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(body, "truncation");
    if (!rc && tr && !cJSON_IsNull(tr) &&
        (!cJSON_IsString(tr) || (strcmp(tr->valuestring, "disabled") && strcmp(tr->valuestring, "auto"))))
        return jp_invalid(err, errlen, "'truncation' must be \"disabled\" or \"auto\"");
    return rc;
}

/* The copies of scalar fields that mean the same on both doors. */
static void copy_same(const cJSON *body, cJSON *out) {
    static const char *const SAME[] = {"model", "temperature", "top_p",    "stream", "parallel_tool_calls",
                                       "user",  "seed",        "priority", NULL};
    for (int k = 0; SAME[k]; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, SAME[k]);
        if (v) kern_json_add(out, SAME[k], cJSON_Duplicate(v, 1));
    }
    const cJSON *mot = cJSON_GetObjectItemCaseSensitive(body, "max_output_tokens");
    if (mot) kern_json_add(out, "max_tokens", cJSON_Duplicate(mot, 1));
    const cJSON *mtc = cJSON_GetObjectItemCaseSensitive(body, "max_tool_calls");
    if (cJSON_IsNumber(mtc) && mtc->valuedouble == 1) cJSON_AddFalseToObject(out, "parallel_tool_calls");
}

/* The plan: the body in the chat shape without its conversation (r->door_body), then the
 * model and kernel-tool claims of a chat completions request. */
static int plan_responses(api_req *r, const cJSON *body, api_admission *a, char *err, size_t errlen) {
    cJSON *out = cJSON_CreateObject();
    r->door_body = out;
    int rc = check_params(body, err, errlen);
    if (!rc) copy_same(body, out);
    if (!rc) rc = translate_tools(cJSON_GetObjectItemCaseSensitive(body, "tools"), out, err, errlen);
    if (!rc) rc = translate_tool_choice(cJSON_GetObjectItemCaseSensitive(body, "tool_choice"), out, err, errlen);
    if (!rc) rc = translate_text_format(cJSON_GetObjectItemCaseSensitive(body, "text"), out, err, errlen);
    return rc ? rc : chat_plan_openai(r, out, a, err, errlen);
}

/* ---- the answer ---- */

static cJSON *usage_json(syscall_t *sc) {
    int p = llm_request_prompt_tokens(sc->args), c = llm_request_completion_tokens(sc->args);
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "input_tokens", p);
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(u, "input_tokens_details"), "cached_tokens",
                            llm_request_cached_tokens(sc->args));
    cJSON_AddNumberToObject(u, "output_tokens", c);
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(u, "output_tokens_details"), "reasoning_tokens", 0);
    cJSON_AddNumberToObject(u, "total_tokens", p + c);
    return u;
}

/* The status a finished syscall gives its response. */
static const char *status_of(syscall_t *sc) {
    if (sc->result == AIOS_ERR_CANCELLED) return "cancelled";
    if (sc->result) return "failed";
    return llm_request_finish(sc->args) == LLM_FINISH_LENGTH ? "incomplete" : "completed";
}

/* The response object: status, output (NULL = none yet), the fields it echoes. */
static cJSON *response_object(const chat_ctx *ctx, const resp_state *st, const char *status, cJSON *output, syscall_t *usage_of) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", ctx->id);
    cJSON_AddStringToObject(o, "object", "response");
    cJSON_AddNumberToObject(o, "created_at", (double)ctx->created);
    cJSON_AddStringToObject(o, "status", status);
    cJSON_AddStringToObject(o, "model", ctx->model);
    kern_json_add(o, "output", output ? output : cJSON_CreateArray());
    if (usage_of && !strcmp(status, "incomplete")) {
        cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "incomplete_details"), "reason", "max_output_tokens");
    } else {
        cJSON_AddNullToObject(o, "incomplete_details");
    }
    if (usage_of && usage_of->result && usage_of->result != AIOS_ERR_CANCELLED) {
        cJSON *e = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(e, "code", aios_errcode(usage_of->result));
        cJSON_AddStringToObject(e, "message", usage_of->errmsg[0] ? usage_of->errmsg : aios_strerror(usage_of->result));
    } else {
        cJSON_AddNullToObject(o, "error");
    }
    for (const cJSON *e = st->echo->child; e; e = e->next) kern_json_add(o, e->string, cJSON_Duplicate(e, 1));
    if (usage_of) kern_json_add(o, "usage", usage_json(usage_of));
    else cJSON_AddNullToObject(o, "usage");
    return o;
}

static cJSON *text_part(const char *text) {
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "type", "output_text");
    cJSON_AddStringToObject(p, "text", text);
    cJSON_AddArrayToObject(p, "annotations");
    cJSON_AddArrayToObject(p, "logprobs");
    return p;
}

static cJSON *message_item(const resp_state *st, const char *status, const char *text) {
    cJSON *m = cJSON_CreateObject(), *content;
    cJSON_AddStringToObject(m, "type", "message");
    cJSON_AddStringToObject(m, "id", st->msg_id);
    cJSON_AddStringToObject(m, "status", status);
    cJSON_AddStringToObject(m, "role", "assistant");
    content = cJSON_AddArrayToObject(m, "content");
    if (text) kern_json_push(content, text_part(text));
    return m;
}

/* A function_call item of the AIOS-shaped call c; arguments "" while it is being streamed. */
static cJSON *call_item(const cJSON *c, const char *status, bool with_args) {
    cJSON *it = cJSON_CreateObject();
    const char *call_id = kern_json_str(c, "id");
    char id[64];
    snprintf(id, sizeof id, "fc_%s", call_id + (strncmp(call_id, "call_", 5) ? 0 : 5));
    cJSON_AddStringToObject(it, "type", "function_call");
    cJSON_AddStringToObject(it, "id", id);
    cJSON_AddStringToObject(it, "call_id", call_id);
    cJSON_AddStringToObject(it, "name", kern_json_str(c, "name"));
    char *args = with_args ? cJSON_PrintUnformatted(cJSON_GetObjectItem(c, "parameters")) : NULL;
    cJSON_AddStringToObject(it, "arguments", args ? args : "");
    free(args);
    cJSON_AddStringToObject(it, "status", status);
    return it;
}

/* The assistant turn appended to the stored conversation: its text, or its calls. */
static void history_add_answer(resp_state *st, const char *text, const cJSON *calls) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "assistant");
    if (!calls) {
        cJSON_AddStringToObject(m, "content", text);
    } else {
        cJSON_AddNullToObject(m, "content");
        kern_json_add(m, "tool_calls", chat_openai_tool_calls(calls));
    }
    kern_json_push(st->history, m);
}

/* The output items of the finished syscall; the answer joins the conversation. */
static cJSON *output_items(api_req *r, chat_ctx *ctx, resp_state *st, cJSON **calls_out) {
    syscall_t *sc = r->sc;
    const char *text = sc->out.data ? sc->out.data : "";
    cJSON *out = cJSON_CreateArray();
    *calls_out = NULL;
    if (sc->result) return out;
    if (chat_made_calls(ctx, text)) {
        cJSON *calls = chat_tool_calls(ctx, text, sc->id);
        for (const cJSON *c = calls->child; c; c = c->next) kern_json_push(out, call_item(c, "completed", true));
        history_add_answer(st, text, calls);
        *calls_out = calls;
    } else {
        bool cut = llm_request_finish(sc->args) == LLM_FINISH_LENGTH;
        kern_json_push(out, message_item(st, cut ? "incomplete" : "completed", text));
        history_add_answer(st, text, NULL);
    }
    return out;
}

/* Keeps a finished response (store: true) with its conversation. */
static void store_response(api_req *r, const resp_state *st, const cJSON *resp) {
    storage_manager *sm = api_storage(r);
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(resp, "id"));
    if (!st->store || !sm || kern_json_oom()) return; /* (an answer that lost a part is not kept: it fails, 500) */
    char *rt = cJSON_PrintUnformatted(resp), *ht = cJSON_PrintUnformatted(st->history);
    const aios_config *cfg = api_cfg(r);
    int rc = rt && ht && id ? storage_response_put(sm, r->agent, id, rt, ht, cfg->responses.max_stored, cfg->responses.ttl_s)
                            : AIOS_ERR_NOMEM;
    if (rc) log_warn("responses: cannot store %s of %s: %s", id ? id : "a response", r->agent, aios_strerror(rc));
    free(rt);
    free(ht);
}

/* The final response object (and the stored copy); calls (AIOS shape) returned too when made. */
static cJSON *finish_response(api_req *r, cJSON **calls) {
    chat_ctx *ctx = r->data;
    resp_state *st = ctx->door;
    cJSON *out = output_items(r, ctx, st, calls);
    cJSON *resp = response_object(ctx, st, status_of(r->sc), out, r->sc);
    store_response(r, st, resp);
    return resp;
}

static enum MHD_Result responses_done(api_req *r) {
    cJSON *calls;
    cJSON *resp = finish_response(r, &calls);
    cJSON_Delete(calls);
    kern_json_add(resp, "aios", chat_timing_json(r->sc));
    return api_reply_json(r, 200, resp);
}

/* ---- streaming: typed events ---- */

static void event(resp_state *st, strbuf *sse, const char *type, cJSON *o) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddNumberToObject(e, "sequence_number", st->seq++);
    for (cJSON *c = o->child; c;) { /* move o's members into e, after type and sequence_number */
        cJSON *next = c->next;
        kern_json_add(e, c->string, cJSON_DetachItemViaPointer(o, c));
        c = next;
    }
    cJSON_Delete(o);
    api_sse_event(sse, type, e);
}

static cJSON *with_item(int out_index, const char *item_id, int content_index) {
    cJSON *o = cJSON_CreateObject();
    if (item_id) cJSON_AddStringToObject(o, "item_id", item_id);
    cJSON_AddNumberToObject(o, "output_index", out_index);
    if (content_index >= 0) cJSON_AddNumberToObject(o, "content_index", content_index);
    return o;
}

static void text_opens(resp_state *st, strbuf *sse) {
    cJSON *o = with_item(st->out_index, NULL, -1);
    kern_json_add(o, "item", message_item(st, "in_progress", NULL));
    event(st, sse, "response.output_item.added", o);
    o = with_item(st->out_index, st->msg_id, 0);
    kern_json_add(o, "part", text_part(""));
    event(st, sse, "response.content_part.added", o);
    st->text_open = true;
}

static void text_closes(resp_state *st, strbuf *sse, const char *text, const char *status) {
    cJSON *o = with_item(st->out_index, st->msg_id, 0);
    cJSON_AddStringToObject(o, "text", text);
    cJSON_AddArrayToObject(o, "logprobs");
    event(st, sse, "response.output_text.done", o);
    o = with_item(st->out_index, st->msg_id, 0);
    kern_json_add(o, "part", text_part(text));
    event(st, sse, "response.content_part.done", o);
    o = with_item(st->out_index++, NULL, -1);
    kern_json_add(o, "item", message_item(st, status, text));
    event(st, sse, "response.output_item.done", o);
}

/* A call's events: added (no arguments yet), the arguments as one delta, done. */
static void call_events(resp_state *st, strbuf *sse, const cJSON *c) {
    cJSON *done = call_item(c, "completed", true);
    const char *id = kern_json_str(done, "id"), *args = kern_json_str(done, "arguments");
    cJSON *o = with_item(st->out_index, NULL, -1);
    kern_json_add(o, "item", call_item(c, "in_progress", false));
    event(st, sse, "response.output_item.added", o);
    o = with_item(st->out_index, id, -1);
    cJSON_AddStringToObject(o, "delta", args);
    event(st, sse, "response.function_call_arguments.delta", o);
    o = with_item(st->out_index, id, -1);
    cJSON_AddStringToObject(o, "name", kern_json_str(done, "name"));
    cJSON_AddStringToObject(o, "arguments", args);
    event(st, sse, "response.function_call_arguments.done", o);
    o = with_item(st->out_index++, NULL, -1);
    kern_json_add(o, "item", done);
    event(st, sse, "response.output_item.done", o);
}

static void stream_final(api_req *r, resp_state *st, strbuf *sse) {
    syscall_t *sc = r->sc;
    cJSON *calls;
    cJSON *resp = finish_response(r, &calls);
    if (st->text_open)
        text_closes(st, sse, sc->out.data ? sc->out.data : "",
                    llm_request_finish(sc->args) == LLM_FINISH_LENGTH ? "incomplete" : "completed");
    for (const cJSON *c = calls ? calls->child : NULL; c; c = c->next) call_events(st, sse, c);
    cJSON_Delete(calls);
    const char *status = kern_json_str(resp, "status");
    const char *type = !strcmp(status, "completed") ? "response.completed"
        : !strcmp(status, "incomplete")             ? "response.incomplete"
                                                    : "response.failed";
    cJSON *o = cJSON_CreateObject();
    kern_json_add(o, "response", resp);
    event(st, sse, type, o);
}

static void responses_stream(api_req *r, const char *delta, size_t n, bool final, strbuf *sse) {
    chat_ctx *ctx = r->data;
    resp_state *st = ctx->door;
    const char *text;
    size_t len = chat_stream_text(ctx, delta, n, final, &text);
    if (len && !st->text_open) text_opens(st, sse);
    if (len) {
        cJSON *o = with_item(st->out_index, st->msg_id, 0);
        char *piece = strndup(text, len);
        cJSON_AddStringToObject(o, "delta", piece ? piece : "");
        cJSON_AddArrayToObject(o, "logprobs");
        free(piece);
        event(st, sse, "response.output_text.delta", o);
    }
    if (!final) return;
    if (!st->text_open && !chat_stream_calls(ctx) && !r->sc->result) text_opens(st, sse); /* an empty text answer */
    stream_final(r, st, sse);
}

/* response.created and response.in_progress, sent before the first token. */
static void stream_opens(api_req *r) {
    chat_ctx *ctx = r->data;
    resp_state *st = ctx->door;
    sb_init(&r->sse, 0);
    cJSON *o = cJSON_CreateObject();
    kern_json_add(o, "response", response_object(ctx, st, "in_progress", NULL, NULL));
    event(st, &r->sse, "response.created", o);
    o = cJSON_CreateObject();
    kern_json_add(o, "response", response_object(ctx, st, "in_progress", NULL, NULL));
    event(st, &r->sse, "response.in_progress", o);
}

/* ---- handlers ---- */

/* What an answer repeats of its request. */
static cJSON *echo_fields(const cJSON *body, const char *prev) {
    cJSON *e = cJSON_CreateObject();
    static const char *const KEYS[] = {"instructions", "max_output_tokens", "temperature", "top_p", "tool_choice", "tools",
                                       "text",         "truncation",        "user",        NULL};
    for (int k = 0; KEYS[k]; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, KEYS[k]);
        kern_json_add(e, KEYS[k], v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull());
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, "metadata");
    kern_json_add(e, "metadata", cJSON_IsObject(v) ? cJSON_Duplicate(v, 1) : cJSON_CreateObject());
    if (cJSON_IsNull(cJSON_GetObjectItem(e, "tool_choice")))
        cJSON_ReplaceItemInObject(e, "tool_choice", cJSON_CreateString("auto"));
    if (cJSON_IsNull(cJSON_GetObjectItem(e, "tools"))) cJSON_ReplaceItemInObject(e, "tools", cJSON_CreateArray());
    if (cJSON_IsNull(cJSON_GetObjectItem(e, "truncation")))
        cJSON_ReplaceItemInObject(e, "truncation", cJSON_CreateString("disabled"));
    if (cJSON_IsNull(cJSON_GetObjectItem(e, "text"))) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(cJSON_AddObjectToObject(t, "format"), "type", "text");
        cJSON_ReplaceItemInObject(e, "text", t);
    }
    const cJSON *ptc = cJSON_GetObjectItemCaseSensitive(body, "parallel_tool_calls");
    cJSON_AddBoolToObject(e, "parallel_tool_calls", !cJSON_IsFalse(ptc));
    if (prev) cJSON_AddStringToObject(e, "previous_response_id", prev);
    else cJSON_AddNullToObject(e, "previous_response_id");
    const cJSON *store = cJSON_GetObjectItemCaseSensitive(body, "store");
    cJSON_AddBoolToObject(e, "store", !cJSON_IsFalse(store));
    return e;
}

/* The conversation a request continues: previous_response_id's (404 when this agent has
 * no such response), or a new one. */
static int load_history(api_req *r, const char *prev, cJSON **out, char *err, size_t errlen) {
    *out = NULL;
    if (!prev) {
        *out = cJSON_CreateArray();
        return *out ? AIOS_OK : AIOS_ERR_NOMEM;
    }
    storage_manager *sm = api_storage(r);
    char *h = NULL;
    int rc = sm ? storage_response_get(sm, r->agent, prev, api_cfg(r)->responses.ttl_s, NULL, &h) : AIOS_ERR_NOT_FOUND;
    if (!rc) *out = cJSON_Parse(h);
    free(h);
    if (!rc && !*out && kern_json_oom()) return AIOS_ERR_NOMEM; /* (the text was ours: no memory to parse it) */
    if (rc == AIOS_ERR_NOT_FOUND || (!rc && !cJSON_IsArray(*out))) {
        cJSON_Delete(*out);
        *out = NULL;
        snprintf(err, errlen, "previous_response_id: no stored response '%.64s'", prev);
        return AIOS_ERR_NOT_FOUND;
    }
    return rc;
}

/* The whole chat body: instructions, the stored conversation, then this input. The
 * conversation (without instructions, which do not carry over) goes to *history. */
static int build_request(api_req *r, const cJSON *body, cJSON **history, const char **prev, char *err, size_t errlen) {
    const char *instructions = NULL;
    *prev = NULL;
    int rc = jp_string(body, "instructions", false, &instructions, err, errlen);
    if (!rc) rc = jp_string(body, "previous_response_id", false, prev, err, errlen);
    if (!rc) rc = load_history(r, *prev, history, err, errlen);
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(body, "input");
    if (!rc && !input) rc = jp_invalid(err, errlen, "'input' is required (a string or an array of items)");
    if (!rc) rc = translate_input(input, *history, err, errlen);
    if (rc) return rc;
    cJSON *msgs = cJSON_AddArrayToObject(r->door_body, "messages");
    if (!msgs) return AIOS_ERR_NOMEM;
    if (instructions) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "system");
        cJSON_AddStringToObject(m, "content", instructions);
        kern_json_push(msgs, m);
    }
    for (const cJSON *m = (*history)->child; m; m = m->next) kern_json_push(msgs, cJSON_Duplicate(m, 1));
    return AIOS_OK;
}

/* Prepares the chat syscall of a Responses body; r->data's door state is set. */
static int prepare(api_req *r, const cJSON *body, bool *stream, syscall_t **sc, char *err, size_t errlen) {
    cJSON *history = NULL;
    const char *prev;
    bool store = true;
    int rc = jp_bool(body, "store", &store, err, errlen);
    if (!rc) rc = build_request(r, body, &history, &prev, err, errlen);
    if (!rc) rc = chat_openai_prepare(r, r->door_body, true, stream, sc, err, errlen);
    resp_state *st = rc ? NULL : calloc(1, sizeof *st);
    if (!st) {
        cJSON_Delete(history);
        if (!rc) {
            syscall_unref(*sc);
            *sc = NULL;
        }
        return rc ? rc : AIOS_ERR_NOMEM;
    }
    chat_ctx *ctx = r->data;
    ctx->door = st;
    ctx->door_free = resp_state_free;
    st->history = history;
    st->store = store;
    st->echo = echo_fields(body, prev);
    /* the start time keeps ids unique across restarts (syscall ids start again at 1) */
    snprintf(ctx->id, sizeof ctx->id, "resp_%08lx%08llx", (unsigned long)ctx->created, (unsigned long long)(*sc)->id);
    snprintf(st->msg_id, sizeof st->msg_id, "msg_%s", ctx->id + 5);
    snprintf(r->public_id, sizeof r->public_id, "%s", ctx->id);
    return AIOS_OK;
}

static enum MHD_Result h_create(api_req *r, cJSON *body) {
    char err[512] = "";
    bool stream = false;
    syscall_t *sc = NULL;
    int rc = prepare(r, body, &stream, &sc, err, sizeof err);
    if (rc) return api_reply_error(r, rc, "%s", err);
    if (stream) stream_opens(r);
    return api_run_syscall(r, r->adm.core, sc, responses_done, stream ? responses_stream : NULL);
}

/* input_tokens: the prompt tokens the same body would cost, counted by preparing it. */
static enum MHD_Result h_input_tokens(api_req *r, cJSON *body) {
    char err[512] = "";
    bool stream = false;
    syscall_t *sc = NULL;
    int rc = prepare(r, body, &stream, &sc, err, sizeof err);
    if (rc) return api_reply_error(r, rc, "%s", err);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "response.input_tokens");
    cJSON_AddNumberToObject(o, "input_tokens", llm_request_prompt_tokens(sc->args));
    syscall_unref(sc);
    return api_reply_json(r, 200, o);
}

/* The {id} of /v1/responses/{id}[/cancel]. */
static void url_id(const api_req *r, char *id, size_t n) {
    const char *p = r->url + strlen("/v1/responses/");
    size_t len = strcspn(p, "/");
    snprintf(id, n, "%.*s", (int)(len < n ? len : n - 1), p);
}

static enum MHD_Result in_progress_answer(api_req *r, const char *id, const char *status) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", "response");
    cJSON_AddStringToObject(o, "status", status);
    cJSON_AddArrayToObject(o, "output");
    return api_reply_json(r, 200, o);
}

static enum MHD_Result h_get(api_req *r, cJSON *body) {
    (void)body;
    char id[64];
    url_id(r, id, sizeof id);
    if (!api_inflight_find(r, API_DOOR_RESPONSES, id, false)) return in_progress_answer(r, id, "in_progress");
    storage_manager *sm = api_storage(r);
    char *text = NULL;
    int rc = sm ? storage_response_get(sm, r->agent, id, api_cfg(r)->responses.ttl_s, &text, NULL) : AIOS_ERR_NOT_FOUND;
    cJSON *o = rc ? NULL : cJSON_Parse(text);
    free(text);
    if (!o) return api_reply_error(r, rc ? rc : AIOS_ERR_INTERNAL, "no stored response '%.64s'", id);
    return api_reply_json(r, 200, o);
}

static enum MHD_Result h_delete(api_req *r, cJSON *body) {
    (void)body;
    char id[64];
    url_id(r, id, sizeof id);
    storage_manager *sm = api_storage(r);
    int rc = sm ? storage_response_delete(sm, r->agent, id) : AIOS_ERR_NOT_FOUND;
    if (rc) return api_reply_error(r, rc, "no stored response '%.64s'", id);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", "response.deleted");
    cJSON_AddTrueToObject(o, "deleted");
    return api_reply_json(r, 200, o);
}

/* Cancels a response while it runs (it then ends with status "cancelled"). */
static enum MHD_Result h_cancel(api_req *r, cJSON *body) {
    (void)body;
    char id[64];
    url_id(r, id, sizeof id);
    if (!api_inflight_find(r, API_DOOR_RESPONSES, id, true)) return in_progress_answer(r, id, "cancelled");
    storage_manager *sm = api_storage(r);
    int rc = sm ? storage_response_get(sm, r->agent, id, api_cfg(r)->responses.ttl_s, NULL, NULL) : AIOS_ERR_NOT_FOUND;
    if (rc) return api_reply_error(r, rc, "no response '%.64s'", id);
    return api_reply_error(r, AIOS_ERR_INVALID, "response '%.64s' has finished; only a response in progress can be cancelled",
                           id);
}

const api_route api_routes_responses[] = {
    {"POST", "/v1/responses", h_create, true, API_GATE_SYSCALL, plan_responses, API_DOOR_RESPONSES},
    {"POST", "/v1/responses/input_tokens", h_input_tokens, true, API_GATE_SYSCALL, plan_responses, API_DOOR_RESPONSES},
    {"GET", "/v1/responses/*", h_get, false, API_GATE_AGENT, NULL, API_DOOR_RESPONSES},
    {"DELETE", "/v1/responses/*", h_delete, false, API_GATE_AGENT, NULL, API_DOOR_RESPONSES},
    {"POST", "/v1/responses/*/cancel", h_cancel, false, API_GATE_AGENT, NULL, API_DOOR_RESPONSES},
    {NULL, NULL, NULL, false, API_GATE_ADMIN, NULL, API_DOOR_AIOS},
};
