/*
 * routes_anthropic.c - the Anthropic Messages door: POST /v1/messages (JSON or server-sent
 * events) and POST /v1/messages/count_tokens, so the official Anthropic clients (and tools
 * built on them) run on the kernel's models, scheduled per agent like every other door.
 *
 * The door owns only the two wire formats. Its plan translates a Messages body into the
 * chat completions shape (r->door_body: system and content blocks into messages, tool_use
 * into assistant tool_calls, tool_result into tool messages, tools and tool_choice into
 * their OpenAI forms) and the shared pipeline (chat.h) does the rest, so the same
 * conversation samples, constrains and schedules exactly as it would through
 * /v1/chat/completions. Every field is checked here first, so a bad body gets a 400 that
 * names the field in Anthropic's words.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "chat.h"

#define ANTH_MAX_TOOLS 128      /* as chat_check_tools */
#define ANTH_MAX_TOOL_USES 1024 /* tool_use blocks in one conversation (ids are looked up linearly) */
#define ANTH_PATH 96            /* "messages[1023].content[4095]" and the like */

/* Route state of one /v1/messages request (api_req.data). */
typedef struct anth_ctx {
    chat_ctx *chat;   /* owned: what chat_openai_prepare made */
    char id[48];      /* "msg_<syscall id>" */
    int input_tokens; /* the prompt, counted at prepare */
    long max_tokens;  /* asked: a length stop short of it means the context was full */
    int n_blocks;     /* stream: content blocks closed so far (the next block's index) */
    bool started;     /* stream: message_start sent */
    bool text_open;   /* stream: a text block is open at index n_blocks */
} anth_ctx;

static void anth_ctx_free(void *p) {
    anth_ctx *a = p;
    if (!a) return;
    chat_ctx_free(a->chat);
    free(a);
}

/* ---- errors: AIOS_ERR_INVALID with err naming the field ---- */

/* A jp_* error about one key of the object at path: "path: 'key' must be ...". */
static int anth_at(int rc, const char *path, char *err, size_t errlen) {
    if (!rc) return rc;
    char sub[256];
    snprintf(sub, sizeof sub, "%s", err);
    snprintf(err, errlen, "%s: %s", path, sub);
    return rc;
}

/* A content block at path that this door does not take. */
static int anth_unsupported(const char *path, const char *type, char *err, size_t errlen) {
    if (!strcmp(type, "image") || !strcmp(type, "document"))
        return jp_invalid(err, errlen, "%s: %s blocks are not supported (the models here read text only)", path, type);
    return jp_invalid(err, errlen, "%s.type '%.40s' is not a supported content block type", path, type);
}

/* The type of the content block b at path. */
static int anth_block_type(const cJSON *b, const char *path, const char **type, char *err, size_t errlen) {
    const cJSON *t = cJSON_IsObject(b) ? cJSON_GetObjectItemCaseSensitive(b, "type") : NULL;
    if (!cJSON_IsString(t)) return jp_invalid(err, errlen, "%s must be a content block: an object with a string 'type'", path);
    *type = t->valuestring;
    return AIOS_OK;
}

/* ---- translation: a Messages body into the chat completions shape ---- */

static cJSON *anth_add_message(cJSON *out, const char *role, const char *content) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", role);
    if (content) cJSON_AddStringToObject(m, "content", content);
    else cJSON_AddNullToObject(m, "content");
    kern_json_push(out, m);
    return m;
}

/* A text block {"type":"text","text"} at path appended to out (after a newline when sep). */
static int anth_text_block(const cJSON *b, const char *path, bool sep, strbuf *out, char *err, size_t errlen) {
    const char *type = NULL;
    int rc = anth_block_type(b, path, &type, err, errlen);
    if (rc) return rc;
    if (strcmp(type, "text")) return anth_unsupported(path, type, err, errlen);
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(b, "text");
    if (!cJSON_IsString(text)) return jp_invalid(err, errlen, "%s.text must be a string", path);
    if (sep && (rc = sb_puts(out, "\n"))) return rc;
    return sb_puts(out, text->valuestring);
}

/* The text of `system` or of a tool_result's content: a string, or text blocks joined by
 * newlines. */
static int anth_plain_text(const cJSON *c, const char *path, strbuf *out, char *err, size_t errlen) {
    if (cJSON_IsString(c)) return sb_puts(out, c->valuestring);
    if (!cJSON_IsArray(c)) return jp_invalid(err, errlen, "%s must be a string or an array of text blocks", path);
    int j = 0, rc = AIOS_OK;
    for (const cJSON *b = c->child; b && !rc; b = b->next, j++) {
        char at[ANTH_PATH];
        snprintf(at, sizeof at, "%s[%d]", path, j);
        rc = anth_text_block(b, at, j > 0, out, err, errlen);
    }
    return rc;
}

/* A tool_result block: a tool message answering the earlier tool_use of its id (ids). */
static int anth_tool_result(const cJSON *b, const char *path, const cJSON *ids, cJSON *out, char *err, size_t errlen) {
    const char *id = NULL;
    bool is_error = false;
    int rc = anth_at(jp_string(b, "tool_use_id", true, &id, err, errlen), path, err, errlen);
    if (!rc) rc = anth_at(jp_bool(b, "is_error", &is_error, err, errlen), path, err, errlen);
    if (rc) return rc;
    if (!cJSON_GetObjectItemCaseSensitive(ids, id))
        return jp_invalid(err, errlen, "%s.tool_use_id '%.64s' matches no tool_use block of an earlier assistant message", path,
                          id);
    strbuf t;
    sb_init(&t, 0);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(b, "content");
    char at[ANTH_PATH + 16];
    snprintf(at, sizeof at, "%s.content", path);
    if (is_error) rc = sb_puts(&t, "Error: ");
    if (!rc && c && !cJSON_IsNull(c)) rc = anth_plain_text(c, at, &t, err, errlen);
    if (!rc) {
        cJSON *m = anth_add_message(out, "tool", t.data ? t.data : "");
        cJSON_AddStringToObject(m, "tool_call_id", id);
    }
    sb_free(&t);
    return rc;
}

/* A tool_use block: one OpenAI tool call (into calls), its id remembered in ids. */
static int anth_tool_use(const cJSON *b, const char *path, cJSON *ids, cJSON *calls, char *err, size_t errlen) {
    const char *id = NULL, *name = NULL;
    int rc = anth_at(jp_string(b, "id", true, &id, err, errlen), path, err, errlen);
    if (!rc) rc = anth_at(jp_string(b, "name", true, &name, err, errlen), path, err, errlen);
    if (rc) return rc;
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(b, "input");
    if (!*id || !*name) return jp_invalid(err, errlen, "%s: 'id' and 'name' must be non-empty", path);
    if (!cJSON_IsObject(input)) return jp_invalid(err, errlen, "%s.input must be an object", path);
    if (cJSON_GetObjectItemCaseSensitive(ids, id)) return jp_invalid(err, errlen, "%s.id '%.64s' is used twice", path, id);
    if (cJSON_GetArraySize(ids) >= ANTH_MAX_TOOL_USES)
        return jp_invalid(err, errlen, "%s: more than %d tool_use blocks in one request", path, ANTH_MAX_TOOL_USES);
    char *args = cJSON_PrintUnformatted(input);
    if (!args) return AIOS_ERR_NOMEM;
    cJSON_AddTrueToObject(ids, id);
    cJSON *call = cJSON_CreateObject(), *fn;
    cJSON_AddStringToObject(call, "id", id);
    cJSON_AddStringToObject(call, "type", "function");
    fn = cJSON_AddObjectToObject(call, "function");
    cJSON_AddStringToObject(fn, "name", name);
    cJSON_AddStringToObject(fn, "arguments", args);
    free(args);
    kern_json_push(calls, call);
    return AIOS_OK;
}

/* A message's content blocks, in order. Text blocks join into its text. In a user message
 * each tool_result becomes a tool message (the text before it a user message of its own);
 * in an assistant message tool_use blocks become its tool_calls and thinking blocks (a
 * transcript from another server) are dropped. An empty final assistant message adds
 * nothing. */
static int anth_blocks(const cJSON *content, int i, bool user, bool last, cJSON *ids, cJSON *out, char *err, size_t errlen) {
    strbuf text;
    sb_init(&text, 0);
    cJSON *calls = cJSON_CreateArray();
    bool any_text = false;
    int j = 0, rc = calls ? AIOS_OK : AIOS_ERR_NOMEM;
    for (const cJSON *b = rc ? NULL : content->child; b && !rc; b = b->next, j++) {
        char at[ANTH_PATH];
        const char *type = NULL;
        snprintf(at, sizeof at, "messages[%d].content[%d]", i, j);
        if ((rc = anth_block_type(b, at, &type, err, errlen))) break;
        bool result = !strcmp(type, "tool_result"), use = !strcmp(type, "tool_use");
        if (!strcmp(type, "text")) {
            rc = anth_text_block(b, at, any_text, &text, err, errlen);
            any_text = true;
        } else if ((result || use) && result != user) {
            rc = jp_invalid(err, errlen, "%s: %s blocks belong in %s messages", at, type, user ? "assistant" : "user");
        } else if (result) {
            if (any_text) anth_add_message(out, "user", text.data ? text.data : "");
            sb_reset(&text);
            any_text = false;
            rc = anth_tool_result(b, at, ids, out, err, errlen);
        } else if (use) {
            rc = anth_tool_use(b, at, ids, calls, err, errlen);
        } else if (user || (strcmp(type, "thinking") && strcmp(type, "redacted_thinking"))) {
            rc = anth_unsupported(at, type, err, errlen);
        }
    }
    bool empty = !user && !text.len && !(calls && calls->child);
    if (!rc && user && any_text) anth_add_message(out, "user", text.data ? text.data : "");
    if (!rc && empty && !last) rc = jp_invalid(err, errlen, "messages[%d].content must not be empty", i);
    if (!rc && !user && !empty) {
        cJSON *m = anth_add_message(out, "assistant", text.len ? text.data : NULL);
        if (calls && calls->child) {
            kern_json_add(m, "tool_calls", calls);
            calls = NULL;
        }
    }
    cJSON_Delete(calls);
    sb_free(&text);
    return rc;
}

/* messages[i]: {"role": "user" | "assistant", "content": string | [blocks]}. */
static int anth_message_in(const cJSON *m, int i, bool last, cJSON *ids, cJSON *out, char *err, size_t errlen) {
    char path[ANTH_PATH];
    const char *role = NULL;
    snprintf(path, sizeof path, "messages[%d]", i);
    if (!cJSON_IsObject(m)) return jp_invalid(err, errlen, "%s must be an object with role and content", path);
    int rc = anth_at(jp_string(m, "role", true, &role, err, errlen), path, err, errlen);
    if (rc) return rc;
    bool user = !strcmp(role, "user");
    if (!user && strcmp(role, "assistant"))
        return jp_invalid(err, errlen,
                          "%s.role '%.32s' must be \"user\" or \"assistant\" (the system prompt is the top-level 'system')", path,
                          role);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
    if (!cJSON_IsString(c) && !cJSON_IsArray(c))
        return jp_invalid(err, errlen, "%s.content must be a string or an array of content blocks", path);
    bool empty = cJSON_IsString(c) ? !*c->valuestring : !c->child;
    if (empty && !(last && !user)) return jp_invalid(err, errlen, "%s.content must not be empty", path);
    if (empty) return AIOS_OK;
    if (cJSON_IsString(c)) {
        anth_add_message(out, role, c->valuestring);
        return AIOS_OK;
    }
    return anth_blocks(c, i, user, last, ids, out, err, errlen);
}

/* `system` (a string or text blocks) and `messages` into dst.messages. */
static int anth_messages(const cJSON *body, int max_messages, cJSON *dst, char *err, size_t errlen) {
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(body, "messages");
    if (!cJSON_IsArray(msgs) || !msgs->child)
        return jp_invalid(err, errlen, "'messages' must be a non-empty array of {role, content}");
    int n = cJSON_GetArraySize(msgs);
    if (n > max_messages)
        return jp_invalid(err, errlen, "'messages' has %d entries, over llms.max_messages (%d)", n, max_messages);
    cJSON *out = cJSON_AddArrayToObject(dst, "messages");
    const cJSON *sys = cJSON_GetObjectItemCaseSensitive(body, "system");
    int rc = AIOS_OK;
    if (sys && !cJSON_IsNull(sys)) {
        strbuf t;
        sb_init(&t, 0);
        rc = anth_plain_text(sys, "system", &t, err, errlen);
        if (!rc && t.len) anth_add_message(out, "system", t.data);
        sb_free(&t);
    }
    cJSON *ids = cJSON_CreateObject(); /* the tool_use ids seen so far, as keys */
    int i = 0;
    for (const cJSON *m = msgs->child; m && !rc; m = m->next, i++) rc = anth_message_in(m, i, !m->next, ids, out, err, errlen);
    cJSON_Delete(ids);
    return rc;
}

/* tools[i]: {"name", "description", "input_schema"} (type absent or "custom"; server tools
 * are refused). Without input_schema a name of a kernel tool takes its manifest's. */
static int anth_tool(const cJSON *t, int i, cJSON *out, char *err, size_t errlen) {
    char path[ANTH_PATH];
    const char *type = NULL, *name = NULL, *desc = NULL;
    snprintf(path, sizeof path, "tools[%d]", i);
    if (!cJSON_IsObject(t)) return jp_invalid(err, errlen, "%s must be an object {name, description, input_schema}", path);
    int rc = anth_at(jp_string(t, "type", false, &type, err, errlen), path, err, errlen);
    if (!rc) rc = anth_at(jp_string(t, "name", true, &name, err, errlen), path, err, errlen);
    if (!rc) rc = anth_at(jp_string(t, "description", false, &desc, err, errlen), path, err, errlen);
    if (rc) return rc;
    if (type && strcmp(type, "custom"))
        return jp_invalid(err, errlen, "%s.type '%.40s' is not supported: only client tools {name, description, input_schema}",
                          path, type);
    if (!*name) return jp_invalid(err, errlen, "%s.name must be a non-empty string", path);
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(t, "input_schema");
    if (schema && !cJSON_IsNull(schema) && !cJSON_IsObject(schema))
        return jp_invalid(err, errlen, "%s.input_schema must be a JSON Schema object", path);
    cJSON *e = cJSON_CreateObject(), *fn;
    cJSON_AddStringToObject(e, "type", "function");
    fn = cJSON_AddObjectToObject(e, "function");
    cJSON_AddStringToObject(fn, "name", name);
    if (desc) cJSON_AddStringToObject(fn, "description", desc);
    if (cJSON_IsObject(schema)) kern_json_add(fn, "parameters", cJSON_Duplicate(schema, 1));
    kern_json_push(out, e);
    return AIOS_OK;
}

static int anth_tools(const cJSON *body, cJSON *dst, char *err, size_t errlen) {
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(body, "tools");
    if (!tools || cJSON_IsNull(tools)) return AIOS_OK;
    if (!cJSON_IsArray(tools)) return jp_invalid(err, errlen, "'tools' must be an array of {name, description, input_schema}");
    int n = cJSON_GetArraySize(tools), i = 0, rc = AIOS_OK;
    if (n > ANTH_MAX_TOOLS) return jp_invalid(err, errlen, "'tools' has %d entries; at most %d are accepted", n, ANTH_MAX_TOOLS);
    cJSON *out = cJSON_AddArrayToObject(dst, "tools");
    for (const cJSON *t = tools->child; t && !rc; t = t->next, i++) rc = anth_tool(t, i, out, err, errlen);
    return rc;
}

/* Whether the translated tools name `name`. */
static bool anth_has_tool(const cJSON *dst, const char *name) {
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(dst, "tools");
    for (const cJSON *t = tools ? tools->child : NULL; t; t = t->next) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t, "function"), "name");
        if (cJSON_IsString(n) && !strcmp(n->valuestring, name)) return true;
    }
    return false;
}

/* tool_choice {"type": "auto" | "any" | "tool" (+ "name") | "none", "disable_parallel_tool_use"}
 * into OpenAI's "auto" | "required" | {"type":"function",...} | "none" (after anth_tools). */
static int anth_tool_choice(const cJSON *body, cJSON *dst, char *err, size_t errlen) {
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(body, "tool_choice");
    if (!tc || cJSON_IsNull(tc)) return AIOS_OK;
    if (!cJSON_IsObject(tc))
        return jp_invalid(err, errlen, "'tool_choice' must be an object {\"type\": \"auto\" | \"any\" | \"tool\" | \"none\"}");
    const char *type = NULL, *name = NULL;
    bool no_parallel = false;
    int rc = anth_at(jp_string(tc, "type", true, &type, err, errlen), "tool_choice", err, errlen);
    if (!rc) rc = anth_at(jp_bool(tc, "disable_parallel_tool_use", &no_parallel, err, errlen), "tool_choice", err, errlen);
    if (rc) return rc;
    bool any = !strcmp(type, "any"), tool = !strcmp(type, "tool");
    if (!any && !tool && strcmp(type, "auto") && strcmp(type, "none"))
        return jp_invalid(err, errlen, "tool_choice.type '%.32s' is not one of auto, any, tool, none", type);
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(dst, "tools");
    if ((any || tool) && !(tools && tools->child))
        return jp_invalid(err, errlen, "tool_choice.type '%s' needs a non-empty 'tools' list", type);
    if (tool) {
        rc = anth_at(jp_string(tc, "name", true, &name, err, errlen), "tool_choice", err, errlen);
        if (rc) return rc;
        if (!anth_has_tool(dst, name)) return jp_invalid(err, errlen, "tool_choice.name '%.64s' is not in 'tools'", name);
        cJSON *o = cJSON_AddObjectToObject(dst, "tool_choice");
        cJSON_AddStringToObject(o, "type", "function");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "function"), "name", name);
    } else {
        cJSON_AddStringToObject(dst, "tool_choice", any ? "required" : type);
    }
    if (no_parallel) cJSON_AddFalseToObject(dst, "parallel_tool_calls");
    return AIOS_OK;
}

/* Copies body.key into dst (a checked number) when present. */
static void anth_copy(const cJSON *body, const char *key, cJSON *dst) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, key);
    if (v && !cJSON_IsNull(v)) kern_json_add(dst, key, cJSON_Duplicate(v, 0));
}

/* stop_sequences: an array of at most llms.max_stop strings, into dst.stop. */
static int anth_stop(const cJSON *body, int max_stop, cJSON *dst, char *err, size_t errlen) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(body, "stop_sequences");
    if (!s || cJSON_IsNull(s)) return AIOS_OK;
    if (!cJSON_IsArray(s)) return jp_invalid(err, errlen, "'stop_sequences' must be an array of strings");
    int n = cJSON_GetArraySize(s), i = 0;
    if (n > max_stop) return jp_invalid(err, errlen, "'stop_sequences' has %d strings, over llms.max_stop (%d)", n, max_stop);
    for (const cJSON *it = s->child; it; it = it->next, i++)
        if (!cJSON_IsString(it)) return jp_invalid(err, errlen, "stop_sequences[%d] must be a string", i);
    kern_json_add(dst, "stop", cJSON_Duplicate(s, 1));
    return AIOS_OK;
}

/* max_tokens (required to generate), temperature and top_p (0 to 1, Anthropic's ranges),
 * top_k, stop_sequences, stream, metadata.user_id. */
static int anth_sampling(const cJSON *body, const aios_config *cfg, bool generate, cJSON *dst, char *err, size_t errlen) {
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(body, "max_tokens");
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(body, "metadata");
    double d = 0;
    long l = 0;
    bool b = false;
    const char *user = NULL;
    if (generate && (!mt || cJSON_IsNull(mt))) return jp_invalid(err, errlen, "'max_tokens' is required");
    int rc = jp_int(body, "max_tokens", 1, 1 << 24, &l, err, errlen);
    if (!rc) rc = jp_number(body, "temperature", 0, 1, &d, err, errlen);
    if (!rc) rc = jp_number(body, "top_p", 0, 1, &d, err, errlen);
    if (!rc) rc = jp_int(body, "top_k", 0, 1000000, &l, err, errlen);
    if (!rc) rc = jp_bool(body, "stream", &b, err, errlen);
    if (!rc && md && !cJSON_IsNull(md) && !cJSON_IsObject(md)) rc = jp_invalid(err, errlen, "'metadata' must be an object");
    if (!rc && cJSON_IsObject(md)) rc = anth_at(jp_string(md, "user_id", false, &user, err, errlen), "metadata", err, errlen);
    if (!rc) rc = anth_stop(body, cfg->llms.max_stop, dst, err, errlen);
    if (rc) return rc;
    static const char *const COPIED[] = {"model", "max_tokens", "temperature", "top_p", "top_k", NULL};
    for (int k = 0; COPIED[k]; k++) anth_copy(body, COPIED[k], dst);
    if (generate) anth_copy(body, "stream", dst);
    return AIOS_OK;
}

/* output_config {"format": {"type": "json_schema", "schema": {...}}, "effort"} (structured
 * outputs): the format becomes response_format json_schema; effort means nothing here. */
static int anth_output_config(const cJSON *body, cJSON *dst, char *err, size_t errlen) {
    const cJSON *oc = cJSON_GetObjectItemCaseSensitive(body, "output_config");
    if (!oc || cJSON_IsNull(oc)) return AIOS_OK;
    if (!cJSON_IsObject(oc)) return jp_invalid(err, errlen, "'output_config' must be an object");
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(oc, "format");
    if (!f || cJSON_IsNull(f)) return AIOS_OK;
    const char *type = NULL;
    int rc = cJSON_IsObject(f)
        ? anth_at(jp_string(f, "type", true, &type, err, errlen), "output_config.format", err, errlen)
        : jp_invalid(err, errlen, "output_config.format must be an object {\"type\": \"json_schema\", \"schema\"}");
    if (rc) return rc;
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(f, "schema");
    if (strcmp(type, "json_schema")) return jp_invalid(err, errlen, "output_config.format.type '%.32s' is not json_schema", type);
    if (!cJSON_IsObject(schema)) return jp_invalid(err, errlen, "output_config.format.schema must be a JSON Schema object");
    cJSON *rf = cJSON_AddObjectToObject(dst, "response_format");
    cJSON_AddStringToObject(rf, "type", "json_schema");
    kern_json_add(cJSON_AddObjectToObject(rf, "json_schema"), "schema", cJSON_Duplicate(schema, 1));
    return AIOS_OK;
}

/* The whole body into dst; generate: /v1/messages (max_tokens required, stream kept), else
 * count_tokens. */
static int anth_translate(const cJSON *body, const aios_config *cfg, bool generate, cJSON *dst, char *err, size_t errlen) {
    int rc = anth_sampling(body, cfg, generate, dst, err, errlen);
    if (!rc) rc = anth_messages(body, cfg->llms.max_messages, dst, err, errlen);
    if (!rc) rc = anth_tools(body, dst, err, errlen);
    if (!rc) rc = anth_tool_choice(body, dst, err, errlen);
    if (!rc) rc = anth_output_config(body, dst, err, errlen);
    return rc;
}

/* The plan: the body translated into r->door_body (the request owns it), then planned as
 * a chat completions body (its model and the kernel tools it names). */
static int anth_plan(api_req *r, const cJSON *body, api_admission *a, bool generate, char *err, size_t errlen) {
    if (!(r->door_body = cJSON_CreateObject())) return AIOS_ERR_NOMEM;
    int rc = anth_translate(body, api_cfg(r), generate, r->door_body, err, errlen);
    return rc ? rc : chat_plan_openai(r, r->door_body, a, err, errlen);
}

static int plan_messages(api_req *r, const cJSON *body, api_admission *a, char *err, size_t errlen) {
    return anth_plan(r, body, a, true, err, errlen);
}

static int plan_count_tokens(api_req *r, const cJSON *body, api_admission *a, char *err, size_t errlen) {
    return anth_plan(r, body, a, false, err, errlen);
}

/* ---- answers ---- */

/* The stop reason: "max_tokens" (or "model_context_window_exceeded" when the context
 * ended it first), "tool_use" when the output is calls, "stop_sequence" when one of
 * stop_sequences ended it, else "end_turn". */
static const char *anth_stop_reason(const anth_ctx *a, syscall_t *sc, bool calls) {
    if (llm_request_finish(sc->args) == LLM_FINISH_LENGTH)
        return llm_request_completion_tokens(sc->args) < a->max_tokens ? "model_context_window_exceeded" : "max_tokens";
    if (calls) return "tool_use";
    return llm_request_stop_string(sc->args) ? "stop_sequence" : "end_turn";
}

/* "stop_sequence": the string that ended the answer, or null. */
static void anth_add_stop_sequence(cJSON *o, syscall_t *sc) {
    const char *seq = llm_request_stop_string(sc->args);
    if (seq) cJSON_AddStringToObject(o, "stop_sequence", seq);
    else cJSON_AddNullToObject(o, "stop_sequence");
}

/* {"id","type":"message","role","model","content" (taken),"stop_reason","stop_sequence","usage"}. */
static cJSON *anth_message_json(const anth_ctx *a, cJSON *content, const char *stop_reason, syscall_t *done, int output_tokens) {
    cJSON *o = cJSON_CreateObject(), *u;
    cJSON_AddStringToObject(o, "id", a->id);
    cJSON_AddStringToObject(o, "type", "message");
    cJSON_AddStringToObject(o, "role", "assistant");
    cJSON_AddStringToObject(o, "model", a->chat->model);
    kern_json_add(o, "content", content);
    if (stop_reason) cJSON_AddStringToObject(o, "stop_reason", stop_reason);
    else cJSON_AddNullToObject(o, "stop_reason");
    if (done) anth_add_stop_sequence(o, done);
    else cJSON_AddNullToObject(o, "stop_sequence");
    u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "input_tokens", a->input_tokens);
    cJSON_AddNumberToObject(u, "output_tokens", output_tokens);
    return o;
}

static cJSON *anth_text_json(const char *text) {
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "type", "text");
    cJSON_AddStringToObject(b, "text", text);
    return b;
}

/* The tool_use blocks [{"type":"tool_use","id","name","input"}] of a calls output. */
static cJSON *anth_tool_uses(const chat_ctx *ctx, const char *text, uint64_t sc_id) {
    cJSON *calls = chat_tool_calls(ctx, text, sc_id), *out = cJSON_CreateArray();
    for (cJSON *c = calls ? calls->child : NULL; c; c = c->next) { /* (NULL: no memory to make them) */
        cJSON *b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "type", "tool_use");
        cJSON_AddStringToObject(b, "id", kern_json_str(c, "id"));
        cJSON_AddStringToObject(b, "name", kern_json_str(c, "name"));
        kern_json_add(b, "input", cJSON_DetachItemFromObject(c, "parameters"));
        kern_json_push(out, b);
    }
    cJSON_Delete(calls);
    return out;
}

static enum MHD_Result anth_done(api_req *r) {
    anth_ctx *a = r->data;
    syscall_t *sc = r->sc;
    if (sc->result) return api_reply_error(r, sc->result, "%s", sc->errmsg);
    const char *text = sc->out.data ? sc->out.data : "";
    bool calls = chat_made_calls(a->chat, text);
    cJSON *content = calls ? anth_tool_uses(a->chat, text, sc->id) : cJSON_CreateArray();
    if (!calls) kern_json_push(content, anth_text_json(text));
    cJSON *o = anth_message_json(a, content, anth_stop_reason(a, sc, calls), sc, llm_request_completion_tokens(sc->args));
    kern_json_add(o, "aios", chat_timing_json(sc));
    return api_reply_json(r, 200, o);
}

/* ---- the stream: message_start, ping, per block content_block_start / _delta... / _stop,
 * message_delta, message_stop ---- */

/* An event object {"type": type}; anth_emit sends it under the same event name. */
static cJSON *anth_event(const char *type) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    return o;
}

static void anth_emit(strbuf *sse, cJSON *ev) {
    char name[32]; /* api_sse_event frees ev before it writes the name */
    snprintf(name, sizeof name, "%s", kern_json_str(ev, "type"));
    api_sse_event(sse, name, ev);
}

/* content_block_start of block (taken) at the next index. */
static void anth_block_start(anth_ctx *a, cJSON *block, strbuf *sse) {
    cJSON *ev = anth_event("content_block_start");
    cJSON_AddNumberToObject(ev, "index", a->n_blocks);
    kern_json_add(ev, "content_block", block);
    anth_emit(sse, ev);
}

/* content_block_delta {type: kind, key: text} of the open block. */
static void anth_block_delta(const anth_ctx *a, const char *kind, const char *key, const char *text, strbuf *sse) {
    cJSON *ev = anth_event("content_block_delta"), *d;
    cJSON_AddNumberToObject(ev, "index", a->n_blocks);
    d = cJSON_AddObjectToObject(ev, "delta");
    cJSON_AddStringToObject(d, "type", kind);
    cJSON_AddStringToObject(d, key, text);
    anth_emit(sse, ev);
}

static void anth_block_stop(anth_ctx *a, strbuf *sse) {
    cJSON *ev = anth_event("content_block_stop");
    cJSON_AddNumberToObject(ev, "index", a->n_blocks++);
    anth_emit(sse, ev);
}

static void anth_stream_begin(anth_ctx *a, strbuf *sse) {
    cJSON *ev = anth_event("message_start");
    kern_json_add(ev, "message", anth_message_json(a, cJSON_CreateArray(), NULL, NULL, 0));
    anth_emit(sse, ev);
    anth_emit(sse, anth_event("ping"));
    a->started = true;
}

/* Text to show (n bytes): a text block opens with the first. */
static void anth_stream_text(anth_ctx *a, const char *text, size_t n, strbuf *sse) {
    char *t = strndup(text, n);
    if (!t) return;
    if (!a->text_open) anth_block_start(a, anth_text_json(""), sse);
    a->text_open = true;
    anth_block_delta(a, "text_delta", "text", t, sse);
    free(t);
}

/* Each call as a tool_use block whose input comes as one input_json_delta. */
static void anth_stream_calls(anth_ctx *a, syscall_t *sc, strbuf *sse) {
    cJSON *blocks = anth_tool_uses(a->chat, sc->out.data ? sc->out.data : "", sc->id);
    for (cJSON *b = blocks ? blocks->child : NULL; b; b = b->next) {
        char *json = cJSON_PrintUnformatted(cJSON_GetObjectItem(b, "input"));
        cJSON *start = cJSON_Duplicate(b, 1);
        cJSON_ReplaceItemInObject(start, "input", cJSON_CreateObject());
        anth_block_start(a, start, sse);
        anth_block_delta(a, "input_json_delta", "partial_json", json ? json : "{}", sse);
        anth_block_stop(a, sse);
        free(json);
    }
    cJSON_Delete(blocks);
}

static void anth_stream_end(anth_ctx *a, syscall_t *sc, strbuf *sse) {
    if (sc->result) { /* Anthropic's mid-stream error event; the stream ends with it */
        api_sse_event(sse, "error", api_door_error_json(API_DOOR_ANTHROPIC, sc->result, sc->errmsg));
        return;
    }
    bool calls = chat_stream_calls(a->chat);
    if (a->text_open) anth_block_stop(a, sse);
    a->text_open = false;
    if (calls) anth_stream_calls(a, sc, sse);
    if (!a->n_blocks) { /* an empty answer is still one (empty) text block */
        anth_block_start(a, anth_text_json(""), sse);
        anth_block_stop(a, sse);
    }
    cJSON *ev = anth_event("message_delta"), *d, *u;
    d = cJSON_AddObjectToObject(ev, "delta");
    cJSON_AddStringToObject(d, "stop_reason", anth_stop_reason(a, sc, calls));
    anth_add_stop_sequence(d, sc);
    u = cJSON_AddObjectToObject(ev, "usage");
    cJSON_AddNumberToObject(u, "input_tokens", a->input_tokens);
    cJSON_AddNumberToObject(u, "output_tokens", llm_request_completion_tokens(sc->args));
    kern_json_add(ev, "aios", chat_timing_json(sc));
    anth_emit(sse, ev);
    anth_emit(sse, anth_event("message_stop"));
}

static void anth_stream(api_req *r, const char *delta, size_t n, bool final, strbuf *sse) {
    anth_ctx *a = r->data;
    const char *text;
    if (!a->started) anth_stream_begin(a, sse);
    size_t len = chat_stream_text(a->chat, delta, n, final, &text);
    if (len) anth_stream_text(a, text, len, sse);
    if (final) anth_stream_end(a, r->sc, sse);
}

/* ---- handlers ---- */

/* After chat_openai_prepare: r->data becomes the door's state, which takes the chat_ctx. */
static int anth_ctx_attach(api_req *r, syscall_t *sc) {
    anth_ctx *a = calloc(1, sizeof *a);
    if (!a) return AIOS_ERR_NOMEM;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(r->door_body, "max_tokens");
    a->chat = r->data;
    a->max_tokens = cJSON_IsNumber(mt) ? (long)mt->valuedouble : api_cfg(r)->llms.default_max_tokens;
    a->input_tokens = llm_request_prompt_tokens(sc->args);
    snprintf(a->id, sizeof a->id, "msg_%llu", (unsigned long long)sc->id);
    r->data = a;
    r->data_free = anth_ctx_free;
    return AIOS_OK;
}

static enum MHD_Result h_messages(api_req *r, cJSON *body) {
    (void)body; /* translated by the plan into r->door_body */
    char err[512] = "";
    bool stream;
    syscall_t *sc = NULL;
    int rc = chat_openai_prepare(r, r->door_body, true, &stream, &sc, err, sizeof err);
    if (!rc) rc = anth_ctx_attach(r, sc);
    if (rc) {
        syscall_unref(sc);
        return api_reply_error(r, rc, "%s", err);
    }
    return api_run_syscall(r, r->adm.core, sc, anth_done, stream ? anth_stream : NULL);
}

/* {"input_tokens": N}: the prompt exactly as /v1/messages would feed the model (its chat
 * template, and the tool instructions when tools are given), counted by preparing the
 * generation without running it. */
static enum MHD_Result h_count_tokens(api_req *r, cJSON *body) {
    (void)body;
    char err[512] = "";
    bool stream;
    syscall_t *sc = NULL;
    int rc = chat_openai_prepare(r, r->door_body, true, &stream, &sc, err, sizeof err);
    if (rc) return api_reply_error(r, rc, "%s", err);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "input_tokens", llm_request_prompt_tokens(sc->args));
    syscall_unref(sc);
    return api_reply_json(r, 200, o);
}

const api_route api_routes_anthropic[] = {
    {"POST", "/v1/messages", h_messages, true, API_GATE_SYSCALL, plan_messages, API_DOOR_ANTHROPIC},
    {"POST", "/v1/messages/count_tokens", h_count_tokens, true, API_GATE_SYSCALL, plan_count_tokens, API_DOOR_ANTHROPIC},
    {NULL, NULL, NULL, false, API_GATE_ADMIN, NULL, API_DOOR_AIOS},
};
