/*
 * chat.c - the chat pipeline shared by /query and /v1/chat/completions: message
 * validation, tool descriptions, JSON / tool-call grammars, prepare and syscall creation,
 * and decoding of tool calls from the constrained output.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "chat.h"

static const char *const ROLES[] = {"system", "user", "assistant", "tool", "developer", NULL};

void chat_ctx_free(void *p) {
    chat_ctx *c = p;
    if (!c) return;
    for (int i = 0; i < c->n_tools; i++) {
        free(c->tool_names[i]);
        free(c->tool_model_names[i]);
    }
    free(c->tool_names);
    free(c->tool_model_names);
    cJSON_Delete(c->tool_schemas);
    sb_free(&c->held);
    free(c->bias_tokens);
    free(c->bias_values);
    if (c->door_free) c->door_free(c->door);
    syscall_unref(c->native);
    for (int i = 0; i < c->n_more; i++) syscall_unref(c->more[i]);
    cJSON_Delete(c->choices);
    free(c);
}

/* "author/tool" -> "author__tool": '/' is not legal in most models' function names. */
static char *model_name(const char *name) {
    strbuf b;
    sb_init(&b, 0);
    for (const char *p = name; *p; p++) {
        if (*p == '/') sb_puts(&b, "__");
        else sb_append(&b, p, 1);
    }
    return sb_steal(&b);
}

static const cJSON *tool_function(const cJSON *t) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(t, "function");
    return cJSON_IsObject(f) ? f : t; /* accept bare {name, description, parameters} too */
}

/* One entry of `tools`: {"type":"function","function":{"name","description","parameters"}}
 * (or the bare function object). */
static int check_tool(const cJSON *t, int i, char *err, size_t errlen) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
    const cJSON *f = cJSON_IsObject(t) ? tool_function(t) : NULL;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(f, "name");
    const cJSON *desc = cJSON_GetObjectItemCaseSensitive(f, "description");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(f, "parameters");
    if (!cJSON_IsObject(t) || !cJSON_IsString(name) || !*name->valuestring) {
        snprintf(err, errlen, "tools[%d]: needs {\"type\":\"function\",\"function\":{\"name\":...}}", i);
        return AIOS_ERR_INVALID;
    }
    if (type && !cJSON_IsNull(type) && (!cJSON_IsString(type) || strcmp(type->valuestring, "function"))) {
        snprintf(err, errlen, "tools[%d].type must be \"function\"", i);
        return AIOS_ERR_INVALID;
    }
    if (desc && !cJSON_IsNull(desc) && !cJSON_IsString(desc)) {
        snprintf(err, errlen, "tools[%d].function.description must be a string", i);
        return AIOS_ERR_INVALID;
    }
    if (params && !cJSON_IsNull(params) && !cJSON_IsObject(params)) {
        snprintf(err, errlen, "tools[%d].function.parameters must be a JSON Schema object", i);
        return AIOS_ERR_INVALID;
    }
    return AIOS_OK;
}

int chat_json_schema(const cJSON *rf, chat_spec *spec, char *err, size_t errlen) {
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(rf, "json_schema");
    const cJSON *schema = cJSON_IsObject(js) ? cJSON_GetObjectItemCaseSensitive(js, "schema") : NULL;
    if (!cJSON_IsObject(schema)) {
        snprintf(err, errlen, "response_format.json_schema.schema must be a JSON Schema object");
        return AIOS_ERR_INVALID;
    }
    spec->schema = schema;
    return AIOS_OK;
}

int chat_check_tools(const cJSON *tools, char *err, size_t errlen) {
    if (!tools || cJSON_IsNull(tools)) return AIOS_OK;
    if (!cJSON_IsArray(tools)) {
        snprintf(err, errlen, "'tools' must be an array of {\"type\":\"function\",\"function\":{...}} or null");
        return AIOS_ERR_INVALID;
    }
    int n = cJSON_GetArraySize(tools), i = 0, rc = AIOS_OK;
    if (n > 128) {
        snprintf(err, errlen, "'tools' has %d entries; at most 128 are accepted", n);
        return AIOS_ERR_INVALID;
    }
    for (const cJSON *t = tools->child; t && !rc; t = t->next, i++) rc = check_tool(t, i, err, errlen);
    return rc;
}

int chat_parse_tools(chat_ctx *ctx, const cJSON *tools, char *err, size_t errlen) {
    if (!tools || cJSON_IsNull(tools)) return AIOS_OK;
    int rc = chat_check_tools(tools, err, errlen);
    if (rc) return rc;
    int n = cJSON_GetArraySize(tools);
    ctx->tool_names = calloc((size_t)n + 1, sizeof(char *));
    ctx->tool_model_names = calloc((size_t)n + 1, sizeof(char *));
    ctx->tool_schemas = cJSON_CreateArray();
    if (!ctx->tool_names || !ctx->tool_model_names || !ctx->tool_schemas) return AIOS_ERR_NOMEM;
    int i = 0;
    for (const cJSON *t = tools->child; t; t = t->next, i++) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(tool_function(t), "name");
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(tool_function(t), "parameters");
        kern_json_push(ctx->tool_schemas, cJSON_IsObject(params) ? cJSON_Duplicate(params, 1) : cJSON_CreateNull());
        ctx->tool_names[i] = strdup(name->valuestring);
        ctx->tool_model_names[i] = model_name(name->valuestring);
        ctx->n_tools = i + 1;
        if (!ctx->tool_names[i]) return AIOS_ERR_NOMEM;
    }
    return AIOS_OK;
}

/* Text of a message's content: a string, or an array of {type:"text",text} parts; absent or
 * null only for an assistant message that carries tool_calls (as OpenAI allows). */
static int content_text(const cJSON *m, const char *role, int idx, strbuf *out, char *err, size_t errlen) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
    if (tc && !cJSON_IsNull(tc) && !cJSON_IsArray(tc)) {
        snprintf(err, errlen, "messages[%d].tool_calls must be an array", idx);
        return AIOS_ERR_INVALID;
    }
    if (!c || cJSON_IsNull(c)) {
        if (!strcmp(role, "assistant") && cJSON_IsArray(tc) && tc->child) return AIOS_OK;
        snprintf(err, errlen, "messages[%d].content is required (null only in an assistant message with tool_calls)", idx);
        return AIOS_ERR_INVALID;
    }
    if (cJSON_IsString(c)) return sb_puts(out, c->valuestring);
    if (cJSON_IsArray(c)) {
        for (const cJSON *part = c->child; part; part = part->next) {
            const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
            const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
            if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") || !cJSON_IsString(text)) {
                snprintf(err, errlen, "messages[%d].content: only text parts ({\"type\":\"text\",\"text\":...}) are supported",
                         idx);
                return AIOS_ERR_INVALID;
            }
            int rc = sb_puts(out, text->valuestring);
            if (rc) return rc;
        }
        return AIOS_OK;
    }
    snprintf(err, errlen, "messages[%d].content must be a string, an array of text parts, or null", idx);
    return AIOS_ERR_INVALID;
}

/* The optional string members of a message. */
static int message_strings(const cJSON *m, int idx, char *err, size_t errlen) {
    static const char *const KEYS[] = {"name", "tool_call_id", NULL};
    for (int k = 0; KEYS[k]; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, KEYS[k]);
        if (v && !cJSON_IsNull(v) && !cJSON_IsString(v)) {
            snprintf(err, errlen, "messages[%d].%s must be a string", idx, KEYS[k]);
            return AIOS_ERR_INVALID;
        }
    }
    return AIOS_OK;
}

/* An assistant message that carried tool calls is shown to the model as their JSON. */
static int tool_calls_text(const cJSON *m, strbuf *out) {
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
    if (!cJSON_IsArray(tc) || !tc->child) return AIOS_OK;
    char *txt = cJSON_PrintUnformatted(tc);
    if (!txt) return AIOS_ERR_NOMEM;
    int rc = sb_puts(out, txt);
    free(txt);
    return rc;
}

/* tool_choice auto: the grammar applies once the output opens a JSON array. */
#define CHAT_CALLS_TRIGGER "^\\s*(\\[[\\s\\S]*)"

static bool blank(const char *s) { return !s[strspn(s, " \t\r\n")]; }

/* The template's parse of text ({"content","tool_calls"}, caller frees). */
static cJSON *native_parse(const chat_ctx *ctx, const char *text, bool partial) {
    return llm_request_parse_output(ctx->native->args, text, partial);
}

/* Template format: the answer is calls when it opens with one (the grammar's trigger only
 * fires there); *calls (optional) gets the parsed list, caller frees. */
static bool native_calls(const chat_ctx *ctx, const char *text, cJSON **calls) {
    cJSON *p = native_parse(ctx, text, false);
    cJSON *list = cJSON_DetachItemFromObjectCaseSensitive(p, "tool_calls");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(p, "content");
    bool made = cJSON_GetArraySize(list) > 0 && (!ctx->tools_auto || !cJSON_IsString(content) || blank(content->valuestring));
    cJSON_Delete(p);
    if (calls && made) *calls = list;
    else cJSON_Delete(list);
    return made;
}

bool chat_made_calls(const chat_ctx *ctx, const char *text) {
    if (ctx->mode != CHAT_MODE_TOOLS) return false;
    if (ctx->native) return native_calls(ctx, text, NULL);
    if (!ctx->tools_auto) return true;
    while (*text == ' ' || *text == '\n' || *text == '\t' || *text == '\r') text++;
    return *text == '[';
}

/* tool_choice auto, template format, streaming: decided once the parse of what came so far
 * shows a call opening the answer (calls) or text outside calls (text); until then the
 * output may still be the start of a call's markup and is held. */
static bool native_decided(const chat_ctx *ctx, const char *held, bool final, bool *text) {
    cJSON *p = native_parse(ctx, held, !final);
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(p, "content");
    bool has_text = cJSON_IsString(content) && !blank(content->valuestring);
    bool has_call = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(p, "tool_calls")) > 0;
    cJSON_Delete(p);
    *text = has_text || !has_call;
    return final || has_text || has_call;
}

size_t chat_stream_text(chat_ctx *ctx, const char *delta, size_t n, bool final, const char **text) {
    *text = delta;
    if (ctx->mode != CHAT_MODE_TOOLS) return n;
    if (!ctx->tools_auto || ctx->stream_decided) return ctx->stream_text ? n : 0;
    sb_append(&ctx->held, delta, n); /* auto: text or calls, the first non-blank byte tells */
    const char *o = ctx->held.data ? ctx->held.data : "";
    if (blank(o) && !final) return 0;
    if (ctx->native && !native_decided(ctx, o, final, &ctx->stream_text)) return 0;
    ctx->stream_decided = true;
    if (!ctx->native) ctx->stream_text = !chat_made_calls(ctx, o);
    *text = o;
    return ctx->stream_text ? ctx->held.len : 0;
}

bool chat_stream_calls(const chat_ctx *ctx) { return ctx->mode == CHAT_MODE_TOOLS && !ctx->stream_text; }

static int tools_prompt(const chat_ctx *ctx, const cJSON *tools, strbuf *out) {
    int rc = sb_puts(out, "You can call these tools:\n");
    int i = 0;
    for (const cJSON *t = tools->child; t && !rc; t = t->next, i++) {
        const cJSON *f = tool_function(t);
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(f, "description");
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(f, "parameters");
        char *ps = p ? cJSON_PrintUnformatted(p) : NULL;
        rc = sb_printf(out, "- %s: %s Parameters: %s\n", ctx->tool_model_names[i], cJSON_IsString(d) ? d->valuestring : "",
                       ps ? ps : "{}");
        free(ps);
    }
    if (!rc && ctx->tools_auto)
        return sb_puts(
            out,
            "To call tools, answer with only a JSON array of tool calls: [{\"name\": \"<tool>\", \"parameters\": {...}}]. "
            "If no tool is needed, answer in plain text.");
    return rc ? rc : sb_puts(out, "Answer with a JSON array of tool calls: [{\"name\": \"<tool>\", \"parameters\": {...}}].");
}

typedef struct msg_store {
    llm_message *msgs;
    strbuf *texts;
    int n;
} msg_store;

static void msg_store_free(msg_store *s) {
    for (int i = 0; s->texts && i < s->n; i++) sb_free(&s->texts[i]);
    free(s->texts);
    free(s->msgs);
}

/* Validates messages and adds the mode's system instructions. */
static int build_messages(api_req *r, const chat_ctx *ctx, const chat_spec *spec, msg_store *st, char *err, size_t errlen) {
    const aios_config *cfg = api_cfg(r);
    if (!cJSON_IsArray(spec->messages) || !spec->messages->child) {
        snprintf(err, errlen, "'messages' must be a non-empty array");
        return AIOS_ERR_INVALID;
    }
    int n = cJSON_GetArraySize(spec->messages);
    if (n > cfg->llms.max_messages) {
        snprintf(err, errlen, "%d messages exceed llms.max_messages (%d)", n, cfg->llms.max_messages);
        return AIOS_ERR_INVALID;
    }
    st->msgs = calloc((size_t)n + 1, sizeof *st->msgs);
    st->texts = calloc((size_t)n + 1, sizeof *st->texts);
    if (!st->msgs || !st->texts) return AIOS_ERR_NOMEM;
    int i = 0, rc = AIOS_OK;
    size_t total = 0;
    bool need_sys = spec->mode != CHAT_MODE_TEXT;
    if (need_sys) { /* slot 0: system instructions for json / tools, merged with a leading system message */
        sb_init(&st->texts[0], 0);
        rc = spec->mode == CHAT_MODE_TOOLS ? tools_prompt(ctx, spec->tools, &st->texts[0])
                                           : sb_puts(&st->texts[0], "Answer only with JSON.");
        st->msgs[0].role = "system";
        st->n = 1;
    }
    for (const cJSON *m = spec->messages->child; m && !rc; m = m->next, i++) {
        const char *role = NULL;
        if (!cJSON_IsObject(m)) {
            snprintf(err, errlen, "messages[%d] must be an object with role and content", i);
            return AIOS_ERR_INVALID;
        }
        if ((rc = jp_string(m, "role", true, &role, err, errlen))) {
            char sub[200];
            snprintf(sub, sizeof sub, "messages[%d]: %s", i, err);
            snprintf(err, errlen, "%s", sub);
            return rc;
        }
        int k = 0;
        while (ROLES[k] && strcmp(ROLES[k], role)) k++;
        if (!ROLES[k]) {
            snprintf(err, errlen, "messages[%d].role '%.32s' is not one of system, user, assistant, tool, developer", i, role);
            return AIOS_ERR_INVALID;
        }
        bool merge = need_sys && i == 0 && (!strcmp(role, "system") || !strcmp(role, "developer"));
        strbuf *t = merge ? &st->texts[0] : &st->texts[st->n];
        if (merge) rc = sb_puts(t, "\n\n");
        else sb_init(t, 0);
        if (!rc) rc = content_text(m, role, i, t, err, errlen);
        if (!rc) rc = message_strings(m, i, err, errlen);
        if (!rc && !strcmp(role, "assistant")) rc = tool_calls_text(m, t);
        if (!merge) st->msgs[st->n++].role = !strcmp(role, "developer") ? "system" : role;
        total += t->len;
    }
    if (!rc && total > (size_t)cfg->llms.max_prompt_bytes) {
        snprintf(err, errlen, "the messages total %zu bytes, over llms.max_prompt_bytes (%ld)", total,
                 cfg->llms.max_prompt_bytes);
        return AIOS_ERR_TOO_LARGE;
    }
    for (int j = 0; j < st->n; j++) st->msgs[j].content = st->texts[j].data ? st->texts[j].data : "";
    return rc;
}

static int build_grammar(const chat_ctx *ctx, const chat_spec *spec, strbuf *g, char *err, size_t errlen) {
    if (spec->mode == CHAT_MODE_JSON)
        return spec->schema ? llm_grammar_from_schema(spec->schema, g, err, errlen) : llm_grammar_json_object(g);
    if (spec->mode != CHAT_MODE_TOOLS) return AIOS_OK;
    const cJSON **schemas = calloc((size_t)ctx->n_tools + 1, sizeof *schemas);
    if (!schemas) return AIOS_ERR_NOMEM;
    int i = 0;
    for (const cJSON *t = spec->tools->child; t; t = t->next, i++) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(tool_function(t), "parameters");
        schemas[i] = cJSON_IsObject(p) ? p : NULL;
    }
    int rc = llm_grammar_tool_calls((const char *const *)ctx->tool_model_names, schemas, ctx->n_tools,
                                    spec->single_call ? 1 : CHAT_MAX_CALLS, g, err, errlen);
    free(schemas);
    return rc;
}

int chat_render(api_req *r, llm_core *core, const cJSON *messages, strbuf *out, char *err, size_t errlen) {
    chat_ctx ctx = {0};
    chat_spec spec = {.messages = messages, .mode = CHAT_MODE_TEXT};
    msg_store st = {0};
    int rc = build_messages(r, &ctx, &spec, &st, err, errlen);
    llm_chat chat = {.messages = st.msgs, .n_messages = st.n};
    if (!rc) rc = llm_core_render(core, &chat, out, err, errlen);
    msg_store_free(&st);
    return rc;
}

/* Template format: the conversation as the template sees it, the client's messages with
 * the tool calls' names as the model knows them (each call typed "function"). */
static char *native_messages(const cJSON *messages) {
    cJSON *copy = cJSON_Duplicate(messages, 1);
    for (cJSON *m = copy ? copy->child : NULL; m; m = m->next) {
        cJSON *tc = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
        for (cJSON *c = cJSON_IsArray(tc) ? tc->child : NULL; c; c = c->next) {
            cJSON *f = cJSON_GetObjectItemCaseSensitive(c, "function");
            cJSON *name = cJSON_GetObjectItemCaseSensitive(f, "name");
            char *mn = cJSON_IsString(name) ? model_name(name->valuestring) : NULL;
            if (mn) cJSON_ReplaceItemInObjectCaseSensitive(f, "name", cJSON_CreateString(mn));
            free(mn);
            if (!cJSON_GetObjectItemCaseSensitive(c, "type")) cJSON_AddStringToObject(c, "type", "function");
        }
    }
    char *s = copy ? cJSON_PrintUnformatted(copy) : NULL;
    cJSON_Delete(copy);
    return s;
}

/* Template format: the tools, named as the model sees them. */
static char *native_tools(const chat_ctx *ctx, const cJSON *tools) {
    cJSON *list = cJSON_CreateArray();
    int i = 0;
    for (const cJSON *t = tools->child; t && i < ctx->n_tools; t = t->next, i++) {
        const cJSON *f = tool_function(t);
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(f, "description");
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(f, "parameters");
        cJSON *e = cJSON_CreateObject(), *fn;
        cJSON_AddStringToObject(e, "type", "function");
        fn = cJSON_AddObjectToObject(e, "function");
        cJSON_AddStringToObject(fn, "name", ctx->tool_model_names[i]);
        if (cJSON_IsString(d)) cJSON_AddStringToObject(fn, "description", d->valuestring);
        kern_json_add(fn, "parameters",
                      cJSON_IsObject(p) ? cJSON_Duplicate(p, 1) : cJSON_Parse("{\"type\":\"object\",\"properties\":{}}"));
        kern_json_push(list, e);
    }
    char *s = cJSON_PrintUnformatted(list);
    cJSON_Delete(list);
    return s;
}

/* The llm_chat of a chat in tools mode on a core that writes tool calls in its template's
 * format (llm_chat.tools_json): the template renders the tools, and its grammar and parser
 * replace the kernel's JSON calls. */
static int native_chat(const chat_ctx *ctx, const chat_spec *spec, llm_chat *chat, char **msgs, char **tools) {
    *msgs = native_messages(spec->messages);
    *tools = native_tools(ctx, spec->tools);
    if (!*msgs || !*tools) return AIOS_ERR_NOMEM;
    chat->messages_json = *msgs;
    chat->tools_json = *tools;
    chat->tool_choice = spec->tools_auto ? LLM_TOOLS_AUTO : LLM_TOOLS_REQUIRED;
    chat->parallel_calls = !spec->single_call;
    return AIOS_OK;
}

int chat_build_syscall(api_req *r, llm_core *core, chat_ctx *ctx, const chat_spec *spec, syscall_t **out, char *err,
                       size_t errlen) {
    msg_store st = {0};
    strbuf grammar;
    sb_init(&grammar, 0);
    llm_chat chat = {.sampling = spec->sampling, .stop = spec->stop, .n_stop = spec->n_stop};
    llm_message raw;
    llm_core_info info;
    llm_core_get_info(core, &info);
    bool native = spec->mode == CHAT_MODE_TOOLS && !spec->prompt && info.tools_native;
    bool remote = strcmp(info.backend, "llamacpp") != 0; /* it takes the conversation as it came (tool calls and results) */
    chat_spec plain = *spec;                             /* native: the messages are checked as they are, no tools prompt */
    plain.mode = CHAT_MODE_TEXT;
    char *msgs = NULL, *tools = NULL;
    int rc;
    if (spec->prompt) {
        if (strlen(spec->prompt) > (size_t)api_cfg(r)->llms.max_prompt_bytes) {
            snprintf(err, errlen, "the prompt is over llms.max_prompt_bytes (%ld)", api_cfg(r)->llms.max_prompt_bytes);
            return AIOS_ERR_TOO_LARGE;
        }
        raw = (llm_message){.role = "user", .content = spec->prompt};
        chat.messages = &raw;
        chat.n_messages = 1;
        chat.raw_prompt = true;
        rc = AIOS_OK;
    } else {
        rc = build_messages(r, ctx, native ? &plain : spec, &st, err, errlen);
        chat.messages = st.msgs;
        chat.n_messages = st.n;
    }
    if (!rc && native) rc = native_chat(ctx, spec, &chat, &msgs, &tools);
    else if (!rc) rc = build_grammar(ctx, spec, &grammar, err, errlen);
    if (!rc && remote && !native && !spec->prompt) {
        chat.messages_json = msgs = native_messages(spec->messages);
        if (!msgs) rc = AIOS_ERR_NOMEM;
    }
    chat.grammar = grammar.len ? grammar.data : NULL;
    chat.grammar_trigger = !native && spec->mode == CHAT_MODE_TOOLS && spec->tools_auto ? CHAT_CALLS_TRIGGER : NULL;
    char *schema = spec->mode == CHAT_MODE_JSON ? (spec->schema ? cJSON_PrintUnformatted(spec->schema) : strdup("{}")) : NULL;
    chat.json_schema = schema;
    llm_request *req = NULL;
    if (!rc) rc = llm_core_prepare(core, &chat, &req, err, errlen);
    msg_store_free(&st);
    sb_free(&grammar);
    free(msgs);
    free(tools);
    free(schema);
    if (rc) return rc;
    syscall_t *sc =
        syscall_new(SYSCALL_KIND_LLM, r->agent, req, llm_request_free, (size_t)api_cfg(r)->server.max_stream_buffer_kb * 1024);
    if (!sc) return AIOS_ERR_NOMEM; /* (syscall_new has freed req) */
    sc->priority = r->priority >= 0 ? r->priority : config_agent_priority(api_cfg(r), r->agent);
    snprintf(ctx->id, sizeof ctx->id, "%s-%llu", ctx->completions_api ? "cmpl" : "chatcmpl", (unsigned long long)sc->id);
    if (native && !ctx->native) ctx->native = syscall_ref(sc);
    ctx->single_call = spec->single_call;
    *out = sc;
    return AIOS_OK;
}

/* A template-format call's arguments (JSON text) as the kernel's "parameters" object, if
 * they are one its tool's schema accepts; else false (a call cut by max_tokens: the
 * grammar allows no other). */
static bool native_parameters(const chat_ctx *ctx, cJSON *call) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(call, "arguments");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(call, "name");
    cJSON *p = cJSON_IsString(a) ? cJSON_Parse(a->valuestring) : NULL;
    const cJSON *schema = NULL;
    for (int k = 0; k < ctx->n_tools && cJSON_IsString(name); k++)
        if (!strcmp(ctx->tool_model_names[k], name->valuestring)) schema = cJSON_GetArrayItem(ctx->tool_schemas, k);
    char err[8];
    if (!cJSON_IsObject(p) || (cJSON_IsObject(schema) && tools_check_params(schema, p, err, sizeof err))) {
        cJSON_Delete(p);
        return false;
    }
    kern_json_add(call, "parameters", p);
    return true;
}

/* Template format: the calls made, each with parameters its schema accepts; one at most
 * without parallel_tool_calls, CHAT_MAX_CALLS with. */
static cJSON *native_call_list(const chat_ctx *ctx, const char *text) {
    cJSON *arr = NULL;
    if (!native_calls(ctx, text, &arr)) return NULL;
    for (cJSON *c = arr->child, *next; c; c = next) {
        next = c->next;
        if (!native_parameters(ctx, c)) cJSON_Delete(cJSON_DetachItemViaPointer(arr, c));
    }
    int keep = ctx->single_call ? 1 : CHAT_MAX_CALLS;
    while (cJSON_GetArraySize(arr) > keep) cJSON_DeleteItemFromArray(arr, keep);
    return arr;
}

cJSON *chat_tool_calls(const chat_ctx *ctx, const char *text, uint64_t sc_id) {
    cJSON *arr = ctx->native ? native_call_list(ctx, text) : cJSON_Parse(text);
    cJSON *out = cJSON_CreateArray();
    int i = 0;
    for (cJSON *c = cJSON_IsArray(arr) ? arr->child : NULL; c; c = c->next, i++) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(c, "name");
        cJSON *params = cJSON_GetObjectItemCaseSensitive(c, "parameters");
        if (!cJSON_IsString(name)) continue;
        const char *orig = name->valuestring;
        for (int k = 0; k < ctx->n_tools; k++)
            if (!strcmp(ctx->tool_model_names[k], name->valuestring)) orig = ctx->tool_names[k];
        cJSON *call = cJSON_CreateObject();
        cJSON_AddStringToObject(call, "name", orig);
        kern_json_add(call, "parameters", params ? cJSON_Duplicate(params, 1) : cJSON_CreateObject());
        char id[48];
        snprintf(id, sizeof id, "call_%llu_%d", (unsigned long long)sc_id, i);
        cJSON_AddStringToObject(call, "id", id);
        kern_json_push(out, call);
    }
    cJSON_Delete(arr);
    return out;
}

cJSON *chat_openai_tool_calls(const cJSON *calls) {
    cJSON *out = cJSON_CreateArray();
    int i = 0;
    for (const cJSON *c = calls ? calls->child : NULL; c; c = c->next, i++) { /* (NULL: no memory to make them) */
        cJSON *tc = cJSON_CreateObject(), *fn;
        cJSON_AddNumberToObject(tc, "index", i);
        cJSON_AddStringToObject(tc, "id", kern_json_str(c, "id"));
        cJSON_AddStringToObject(tc, "type", "function");
        fn = cJSON_AddObjectToObject(tc, "function");
        cJSON_AddStringToObject(fn, "name", kern_json_str(c, "name"));
        char *args = cJSON_PrintUnformatted(cJSON_GetObjectItem(c, "parameters"));
        cJSON_AddStringToObject(fn, "arguments", args ? args : "{}");
        free(args);
        kern_json_push(out, tc);
    }
    return out;
}

cJSON *chat_timing_json(syscall_t *sc) {
    cJSON *t = cJSON_CreateObject();
    pthread_mutex_lock(&sc->mu);
    cJSON_AddNumberToObject(t, "syscall_id", (double)sc->id);
    cJSON_AddStringToObject(t, "agent", sc->agent);
    cJSON_AddNumberToObject(t, "waiting_time", sc->t_started ? sc->t_started - sc->t_created : 0);
    cJSON_AddNumberToObject(t, "turnaround_time", sc->t_finished ? sc->t_finished - sc->t_created : 0);
    cJSON_AddNumberToObject(t, "time_to_first_token", sc->t_first_token ? sc->t_first_token - sc->t_created : 0);
    pthread_mutex_unlock(&sc->mu);
    return t;
}

int chat_plan_model(api_admission *a) {
    llm_core_info info;
    llm_core_get_info(a->core, &info);
    return api_claim_add(a, ACCESS_KIND_LLM, info.name, ACCESS_USE, NULL, false);
}

int chat_plan_tools(api_req *r, const cJSON *tools, api_admission *a, char *err, size_t errlen) {
    tool_manager *tm = api_tools(r);
    int rc = chat_check_tools(tools, err, errlen); /* bounded (128) before anything is claimed */
    for (const cJSON *t = !rc && cJSON_IsArray(tools) && tm ? tools->child : NULL; t && !rc; t = t->next) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(tool_function(t), "name");
        if (cJSON_IsString(name) && tools_exists(tm, name->valuestring, NULL)) rc = api_claim_tool(r, a, name->valuestring, NULL);
    }
    return rc;
}

/* One entry of a request's tools: checked against the kernel's tools (the gate has
 * admitted the calls, chat_plan_tools); a bare reference ({"function":{"name"}} without
 * parameters) becomes the manifest's description. */
static int kernel_tool_entry(api_req *r, const cJSON *t, bool must, cJSON **repl, char *err, size_t errlen) {
    const cJSON *f = tool_function(t);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(f, "name");
    *repl = NULL;
    if (!cJSON_IsString(name)) return AIOS_OK; /* chat_parse_tools reports it */
    tool_manager *tm = api_tools(r);
    if (!tm || !tools_exists(tm, name->valuestring, NULL)) {
        if (!must) return AIOS_OK; /* a client-side tool (OpenAI semantics) */
        snprintf(err, errlen, "call_tool: '%.128s' is not a kernel tool (GET /v1/tools lists them)", name->valuestring);
        return AIOS_ERR_NOT_FOUND;
    }
    if (!api_claimed(&r->adm, ACCESS_KIND_TOOL, name->valuestring)) { /* it appeared after admission (a reload) */
        snprintf(err, errlen, "tool '%.128s' appeared while the request was admitted; retry", name->valuestring);
        return AIOS_ERR_BUSY;
    }
    if (!cJSON_GetObjectItemCaseSensitive(f, "parameters")) *repl = tools_function_json(tm, name->valuestring);
    return AIOS_OK;
}

int chat_kernel_tools(api_req *r, const cJSON *tools, bool must_be_kernel, cJSON **out, char *err, size_t errlen) {
    *out = NULL;
    if (!cJSON_IsArray(tools)) return AIOS_OK;
    cJSON *list = cJSON_CreateArray();
    bool changed = false;
    int rc = AIOS_OK;
    for (const cJSON *t = tools->child; t && !rc; t = t->next) {
        cJSON *repl = NULL;
        rc = kernel_tool_entry(r, t, must_be_kernel, &repl, err, errlen);
        changed |= repl != NULL;
        kern_json_push(list, repl ? repl : cJSON_Duplicate(t, 1));
    }
    if (rc || !changed) cJSON_Delete(list);
    else *out = list;
    return rc;
}
