/*
 * remote_anthropic.c - the Anthropic Messages dialect of the remote backend (`anthropic`):
 * a chat as a Messages request, and the Messages stream read back into the request. The
 * kernel's chats are in OpenAI's shape (messages with tool_calls and tool results), so this
 * file is the translation: system messages become `system`; an assistant's tool_calls
 * become tool_use blocks; tool results become tool_result blocks in a user turn; turns of
 * one role in a row are merged (the API alternates roles). Streamed text_delta blocks go to
 * the agent as they come; tool_use blocks and their input_json_delta become tool calls.
 */
#include <stdio.h>
#include <string.h>
#include "remote_internal.h"

/* The text of an OpenAI message's content: a string, or the text of its parts. */
static void content_text(const cJSON *m, strbuf *out) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
    if (cJSON_IsString(c)) sb_puts(out, c->valuestring);
    for (const cJSON *p = cJSON_IsArray(c) ? c->child : NULL; p; p = p->next) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "text");
        if (cJSON_IsString(t)) sb_puts(out, t->valuestring);
    }
}

/* The blocks of one OpenAI message (text, tool_use, tool_result). */
static cJSON *blocks_of(const cJSON *m, const char *role) {
    cJSON *blocks = cJSON_CreateArray();
    strbuf text;
    sb_init(&text, 0);
    content_text(m, &text);
    if (!strcmp(role, "tool")) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "tool_call_id");
        cJSON *b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "type", "tool_result");
        cJSON_AddStringToObject(b, "tool_use_id", cJSON_IsString(id) ? id->valuestring : "");
        cJSON_AddStringToObject(b, "content", text.data ? text.data : "");
        kern_json_push(blocks, b);
    } else if (text.len) {
        cJSON *b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "type", "text");
        cJSON_AddStringToObject(b, "text", text.data);
        kern_json_push(blocks, b);
    }
    const cJSON *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
    for (const cJSON *c = cJSON_IsArray(calls) ? calls->child : NULL; c; c = c->next) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(c, "function");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "id");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(f, "name");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(f, "arguments");
        cJSON *input = cJSON_IsString(args) ? cJSON_Parse(args->valuestring) : cJSON_Duplicate(args, 1);
        cJSON *b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "type", "tool_use");
        cJSON_AddStringToObject(b, "id", cJSON_IsString(id) ? id->valuestring : "");
        cJSON_AddStringToObject(b, "name", cJSON_IsString(name) ? name->valuestring : "");
        kern_json_add(b, "input", cJSON_IsObject(input) ? input : cJSON_CreateObject());
        if (!cJSON_IsObject(input)) cJSON_Delete(input);
        kern_json_push(blocks, b);
    }
    sb_free(&text);
    return blocks;
}

/* OpenAI messages -> `system` and alternating Messages turns, into body. */
static void add_messages(cJSON *body, const cJSON *msgs) {
    strbuf system;
    sb_init(&system, 0);
    cJSON *turns = cJSON_AddArrayToObject(body, "messages");
    cJSON *last = NULL;
    const char *last_role = "";
    for (const cJSON *m = cJSON_IsArray(msgs) ? msgs->child : NULL; m; m = m->next) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(m, "role");
        const char *role = cJSON_IsString(r) ? r->valuestring : "user";
        if (!strcmp(role, "system") || !strcmp(role, "developer")) {
            if (system.len) sb_puts(&system, "\n\n");
            content_text(m, &system);
            continue;
        }
        const char *as = !strcmp(role, "assistant") ? "assistant" : "user"; /* tool results are the user's turn */
        cJSON *blocks = blocks_of(m, role);
        if (!cJSON_GetArraySize(blocks)) {
            cJSON_Delete(blocks);
            continue;
        }
        if (!last || strcmp(last_role, as)) {
            last = cJSON_CreateObject();
            cJSON_AddStringToObject(last, "role", as);
            cJSON_AddArrayToObject(last, "content");
            kern_json_push(turns, last);
            last_role = as;
        }
        cJSON *content = cJSON_GetObjectItemCaseSensitive(last, "content");
        while (blocks->child) kern_json_push(content, cJSON_DetachItemViaPointer(blocks, blocks->child));
        cJSON_Delete(blocks);
    }
    if (system.len) cJSON_AddStringToObject(body, "system", system.data);
    sb_free(&system);
}

/* OpenAI tools -> Messages tools {name, description, input_schema}, and the choice. */
static void add_tools(cJSON *body, const llm_chat *chat) {
    cJSON *tools = cJSON_Parse(chat->tools_json), *out = cJSON_AddArrayToObject(body, "tools");
    for (const cJSON *t = cJSON_IsArray(tools) ? tools->child : NULL; t; t = t->next) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(t, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(f, "name");
        const cJSON *desc = cJSON_GetObjectItemCaseSensitive(f, "description");
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(f, "parameters");
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", cJSON_IsString(name) ? name->valuestring : "");
        if (cJSON_IsString(desc)) cJSON_AddStringToObject(o, "description", desc->valuestring);
        kern_json_add(o, "input_schema",
                      cJSON_IsObject(params) ? cJSON_Duplicate(params, 1) : cJSON_Parse("{\"type\":\"object\"}"));
        kern_json_push(out, o);
    }
    cJSON_Delete(tools);
    static const char *const CHOICE[] = {"auto", "any", "none"};
    cJSON *tc = cJSON_AddObjectToObject(body, "tool_choice");
    cJSON_AddStringToObject(tc, "type", CHOICE[chat->tool_choice]);
    if (!chat->parallel_calls && chat->tool_choice != LLM_TOOLS_NONE) cJSON_AddTrueToObject(tc, "disable_parallel_tool_use");
}

char *rm_anthropic_body(const aios_model_cfg *cfg, const llm_chat *chat) {
    cJSON *b = cJSON_CreateObject(), *msgs = llm_chat_messages(chat);
    const llm_sampling *s = &chat->sampling;
    cJSON_AddStringToObject(b, "model", cfg->model[0] ? cfg->model : cfg->name);
    cJSON_AddNumberToObject(b, "max_tokens", s->max_tokens);
    add_messages(b, msgs);
    cJSON_Delete(msgs);
    cJSON_AddTrueToObject(b, "stream");
    cJSON_AddNumberToObject(b, "temperature", s->temperature);
    if (s->top_p < 1.0f) cJSON_AddNumberToObject(b, "top_p", s->top_p);
    if (s->top_k > 0) cJSON_AddNumberToObject(b, "top_k", s->top_k);
    if (chat->n_stop > 0) {
        cJSON *stop = cJSON_AddArrayToObject(b, "stop_sequences");
        for (int i = 0; i < chat->n_stop; i++) kern_json_push(stop, cJSON_CreateString(chat->stop[i]));
    }
    if (chat->tools_json) add_tools(b, chat);
    if (chat->json_schema) { /* structured output: output_config.format */
        cJSON *schema = cJSON_Parse(chat->json_schema);
        if (cJSON_IsObject(schema) && !schema->child) cJSON_AddStringToObject(schema, "type", "object");
        cJSON *fmt = cJSON_AddObjectToObject(cJSON_AddObjectToObject(b, "output_config"), "format");
        cJSON_AddStringToObject(fmt, "type", "json_schema");
        kern_json_add(fmt, "schema", schema);
    }
    char *out = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    return out;
}

static const cJSON *get(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

/* usage {input_tokens, output_tokens, cache_read_input_tokens} of message_start / message_delta. */
static void read_usage(llm_request *r, const cJSON *u) {
    const cJSON *in = get(u, "input_tokens"), *out = get(u, "output_tokens"), *cached = get(u, "cache_read_input_tokens");
    if (cJSON_IsNumber(in) && in->valueint > 0) r->n_tokens = in->valueint;
    if (cJSON_IsNumber(out) && out->valueint > 0) r->n_completion = out->valueint;
    if (cJSON_IsNumber(cached)) r->n_cached = cached->valueint;
}

void rm_anthropic_event(rm_stream *s, const char *data) {
    cJSON *ev = cJSON_Parse(data);
    const cJSON *type = get(ev, "type");
    llm_request *r = s->req;
    const char *t = cJSON_IsString(type) ? type->valuestring : "";
    if (!strcmp(t, "message_start")) {
        read_usage(r, get(get(ev, "message"), "usage"));
    } else if (!strcmp(t, "content_block_start")) {
        const cJSON *b = get(ev, "content_block"), *name = get(b, "name");
        if (cJSON_IsString(get(b, "type")) && !strcmp(get(b, "type")->valuestring, "tool_use") && r->remote_calls) {
            s->cur_call = cJSON_GetArraySize(r->remote_calls);
            rm_call_append(r, s->cur_call, cJSON_IsString(name) ? name->valuestring : "", NULL);
        } else {
            s->cur_call = -1;
        }
    } else if (!strcmp(t, "content_block_delta")) {
        const cJSON *d = get(ev, "delta"), *text = get(d, "text"), *json = get(d, "partial_json");
        if (cJSON_IsString(text)) rm_emit(s, text->valuestring);
        if (cJSON_IsString(json) && s->cur_call >= 0) rm_call_append(r, s->cur_call, NULL, json->valuestring);
    } else if (!strcmp(t, "content_block_stop")) { /* a call without arguments takes none */
        const cJSON *c = s->cur_call >= 0 ? cJSON_GetArrayItem(r->remote_calls, s->cur_call) : NULL;
        const cJSON *args = get(c, "arguments");
        if (cJSON_IsString(args) && !*args->valuestring) rm_call_append(r, s->cur_call, NULL, "{}");
        s->cur_call = -1;
    } else if (!strcmp(t, "message_delta")) {
        const cJSON *stop = get(get(ev, "delta"), "stop_reason");
        if (cJSON_IsString(stop)) r->finish = !strcmp(stop->valuestring, "max_tokens") ? LLM_FINISH_LENGTH : LLM_FINISH_STOP;
        read_usage(r, get(ev, "usage"));
    } else if (!strcmp(t, "error")) {
        rm_error_event(s, get(get(ev, "error"), "message"));
    }
    cJSON_Delete(ev);
}
