/*
 * routes_ollama.c - the Ollama-compatible door: POST /api/chat and /api/generate (a stream
 * of newline-delimited JSON by default, one JSON answer with "stream": false), GET
 * /api/tags, POST /api/show, GET /api/ps, GET /api/version, POST /api/embed and the legacy
 * /api/embeddings. Model management (/api/pull, push, create, copy, delete, blobs) answers
 * 501: aiosd serves the models its config file lists.
 *
 * The door holds no generation logic of its own. Its plan translates an Ollama body into
 * the OpenAI chat completions shape (r->door_body: messages, tools, options as sampling
 * fields, format as response_format), and the shared chat pipeline (chat.h) checks, claims,
 * constrains, schedules and cancels it exactly as for /v1/chat/completions; only answers
 * are shaped here. So an Ollama client is scheduled, access-checked and accounted per agent
 * like any other, and the same prompt gives the same text on both doors.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include "chat.h"

/* The Ollama API release whose shapes this door follows (clients gate features on
 * /api/version); aiosd itself has no version string. */
#define OLLAMA_API_VERSION "0.9.0"
/* num_predict <= 0 (Ollama: "until the context is full") or larger: the most the chat
 * pipeline accepts; the engine clamps it to what the request's context holds. */
#define OLLAMA_PREDICT_MAX (1L << 24)
/* The kernel's models stay loaded while it runs: /api/ps's expires_at. */
#define OLLAMA_NEVER "9999-12-31T23:59:59Z"
#define OLLAMA_NAME_MAX (AIOS_NAME_MAX + 8) /* a configured name with ":latest" */

static const cJSON *member(const cJSON *obj, const char *key) { return cJSON_GetObjectItemCaseSensitive(obj, key); }

static bool absent(const cJSON *v) { return !v || cJSON_IsNull(v); }

/* ---- model names ---- */

/* Whether an Ollama model name means the configured `name`: itself, or "NAME:latest". */
static bool name_means(const char *asked, const char *name) {
    size_t n = strlen(name);
    return !strcmp(asked, name) || (!strncmp(asked, name, n) && !strcmp(asked + n, ":latest"));
}

/* The core an Ollama model name means; absent or empty: the default model. NULL with err
 * set (a 404) when no configured model has that name. */
static llm_core *ollama_core(api_req *r, const char *model, char *err, size_t errlen) {
    llm_core *core = api_core(r, model);
    for (int i = 0; !core && model && *model && i < api_n_cores(r); i++) {
        llm_core_info info;
        llm_core_get_info(api_core_at(r, i), &info);
        if (name_means(model, info.name)) core = api_core_at(r, i);
    }
    if (!core) {
        char known[512];
        api_models_known(r, known, sizeof known);
        snprintf(err, errlen, "model '%.128s' not found; this kernel serves: %s", model ? model : "", known);
    }
    return core;
}

/* A configured name as Ollama clients list it: "NAME:latest" unless it carries a tag. */
static void tagged_name(const char *name, char *out, size_t n) {
    snprintf(out, n, "%s%s", name, strchr(name, ':') ? "" : ":latest");
}

/* The model name an answer shows: the request's own, else the model that served it. */
static void echo_name(api_req *r, const cJSON *body, char *out, size_t n) {
    const cJSON *m = member(body, "model");
    llm_core_info info;
    if (cJSON_IsString(m) && *m->valuestring) {
        snprintf(out, n, "%s", m->valuestring);
        return;
    }
    llm_core_get_info(r->adm.core, &info);
    snprintf(out, n, "%s", info.name);
}

/* ---- answers ---- */

/* RFC 3339 in UTC with nanoseconds, as Ollama writes times. */
static void iso_time(time_t sec, long nsec, char *out, size_t n) {
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t k = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + k, n - k, ".%09ldZ", nsec);
}

/* seconds as Ollama's integer nanoseconds */
static cJSON *ns_json(double seconds) { return cJSON_CreateNumber(seconds > 0 ? floor(seconds * 1e9 + 0.5) : 0); }

/* {"model","created_at"}: what every answer and stream line starts with. */
static cJSON *answer_base(const char *model) {
    struct timespec now;
    char ts[64];
    clock_gettime(CLOCK_REALTIME, &now);
    iso_time(now.tv_sec, now.tv_nsec, ts, sizeof ts);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", model);
    cJSON_AddStringToObject(o, "created_at", ts);
    return o;
}

/* /api/generate's "response", or /api/chat's assistant "message" with its tool calls (taken). */
static void add_output(cJSON *o, bool generate, const char *text, cJSON *calls) {
    if (generate) {
        cJSON_AddStringToObject(o, "response", text);
        return;
    }
    cJSON *m = cJSON_AddObjectToObject(o, "message");
    cJSON_AddStringToObject(m, "role", "assistant");
    cJSON_AddStringToObject(m, "content", text);
    if (calls) kern_json_add(m, "tool_calls", calls);
}

/* Ollama's tool_calls [{"id","function":{"index","name","arguments":{...}}}] from the AIOS-shaped
 * list [{"name","parameters","id"}] of chat_tool_calls (taken). */
static cJSON *ollama_tool_calls(cJSON *calls) {
    cJSON *out = cJSON_CreateArray();
    int i = 0;
    for (cJSON *c = calls->child; c; c = c->next, i++) {
        cJSON *tc = cJSON_CreateObject();
        kern_json_add(tc, "id", cJSON_DetachItemFromObject(c, "id"));
        cJSON *fn = cJSON_AddObjectToObject(tc, "function");
        cJSON_AddNumberToObject(fn, "index", i);
        kern_json_add(fn, "name", cJSON_DetachItemFromObject(c, "name"));
        kern_json_add(fn, "arguments", cJSON_DetachItemFromObject(c, "parameters"));
        kern_json_push(out, tc);
    }
    cJSON_Delete(calls);
    return out;
}

/* The calls a finished tools-mode answer made, in Ollama's shape. */
static cJSON *answer_calls(const chat_ctx *ctx, syscall_t *sc) {
    return ollama_tool_calls(chat_tool_calls(ctx, sc->out.data ? sc->out.data : "", sc->id));
}

/* The closing members: done, done_reason, durations (ns) and token counts. The models are
 * loaded at start (load_duration 0); time queued counts in total_duration. */
static void add_final(api_req *r, cJSON *o) {
    syscall_t *sc = r->sc;
    pthread_mutex_lock(&sc->mu);
    double started = sc->t_started, first = sc->t_first_token, end = sc->t_finished;
    pthread_mutex_unlock(&sc->mu);
    if (!end) end = kern_now_mono();
    if (!first) first = end;
    if (!started) started = first;
    cJSON_AddBoolToObject(o, "done", true);
    cJSON_AddStringToObject(o, "done_reason", llm_finish_name(llm_request_finish(sc->args)));
    kern_json_add(o, "total_duration", ns_json(end - r->t_begin));
    kern_json_add(o, "load_duration", ns_json(0));
    cJSON_AddNumberToObject(o, "prompt_eval_count", llm_request_prompt_tokens(sc->args));
    kern_json_add(o, "prompt_eval_duration", ns_json(first - started));
    cJSON_AddNumberToObject(o, "eval_count", llm_request_completion_tokens(sc->args));
    kern_json_add(o, "eval_duration", ns_json(end - first));
}

static enum MHD_Result ollama_done(api_req *r, bool generate) {
    chat_ctx *ctx = r->data;
    syscall_t *sc = r->sc;
    if (sc->result) return api_reply_error(r, sc->result, "%s", sc->errmsg);
    const char *text = sc->out.data ? sc->out.data : "";
    bool calls = chat_made_calls(ctx, text);
    cJSON *o = answer_base(ctx->model);
    add_output(o, generate, calls ? "" : text, calls ? answer_calls(ctx, sc) : NULL);
    add_final(r, o);
    return api_reply_json(r, 200, o);
}

static enum MHD_Result chat_done(api_req *r) { return ollama_done(r, false); }
static enum MHD_Result generate_done(api_req *r) { return ollama_done(r, true); }

/* One line of a stream before its end ("done": false). */
static void stream_line(const chat_ctx *ctx, bool generate, const char *text, cJSON *calls, strbuf *out) {
    cJSON *o = answer_base(ctx->model);
    add_output(o, generate, text, calls);
    cJSON_AddBoolToObject(o, "done", false);
    api_ndjson_line(out, o);
}

/* The stream: a line per piece of text, the tool calls (if the answer was calls) in a line of
 * their own, then the closing line with the counts; an error after the stream began is a
 * {"error": "..."} line, as Ollama sends it. */
static void ollama_stream(api_req *r, const char *delta, size_t n, bool final, strbuf *out, bool generate) {
    chat_ctx *ctx = r->data;
    syscall_t *sc = r->sc;
    const char *text;
    if (chat_stream_text(ctx, delta, n, final, &text)) stream_line(ctx, generate, text, NULL, out);
    if (!final) return;
    if (sc->result) {
        api_ndjson_line(out, api_door_error_json(API_DOOR_OLLAMA, sc->result, sc->errmsg));
        return;
    }
    if (chat_stream_calls(ctx)) stream_line(ctx, generate, "", answer_calls(ctx, sc), out);
    cJSON *last = answer_base(ctx->model);
    add_output(last, generate, "", NULL);
    add_final(r, last);
    api_ndjson_line(out, last);
}

static void chat_stream(api_req *r, const char *delta, size_t n, bool final, strbuf *out) {
    ollama_stream(r, delta, n, final, out, false);
}

static void generate_stream(api_req *r, const char *delta, size_t n, bool final, strbuf *out) {
    ollama_stream(r, delta, n, final, out, true);
}

/* An empty prompt or message list only loads the model in Ollama ("done_reason": "load");
 * the kernel's models are always loaded, so this answers at once. */
static enum MHD_Result reply_loaded(api_req *r, const cJSON *body, bool generate) {
    char model[OLLAMA_NAME_MAX];
    echo_name(r, body, model, sizeof model);
    cJSON *o = answer_base(model);
    add_output(o, generate, "", NULL);
    cJSON_AddBoolToObject(o, "done", true);
    cJSON_AddStringToObject(o, "done_reason", "load");
    return api_reply_json(r, 200, o);
}

/* ---- requests: an Ollama body into the chat completions shape (r->door_body) ---- */

/* options.NAME -> the chat completions field of the same meaning. */
typedef enum option_kind { OPTION_NUMBER, OPTION_INTEGER, OPTION_STOP } option_kind;
static const struct {
    const char *name, *field;
    option_kind kind;
} OLLAMA_OPTIONS[] = {
    {"temperature", "temperature", OPTION_NUMBER},
    {"top_p", "top_p", OPTION_NUMBER},
    {"min_p", "min_p", OPTION_NUMBER},
    {"top_k", "top_k", OPTION_INTEGER},
    {"seed", "seed", OPTION_INTEGER},
    {"num_predict", "max_tokens", OPTION_INTEGER},
    {"repeat_penalty", "repeat_penalty", OPTION_NUMBER},
    {"repeat_last_n", "repeat_last_n", OPTION_INTEGER},
    {"presence_penalty", "presence_penalty", OPTION_NUMBER},
    {"frequency_penalty", "frequency_penalty", OPTION_NUMBER},
    {"stop", "stop", OPTION_STOP},
};
#define N_OLLAMA_OPTIONS (sizeof OLLAMA_OPTIONS / sizeof OLLAMA_OPTIONS[0])

/* An error of the chat pipeline names a field of the door body ("'temperature' must be ...");
 * one that came from `options` is named as the client sent it ("'options.temperature' ..."). */
static void name_option(char *err, size_t errlen) {
    for (size_t k = 0; k < N_OLLAMA_OPTIONS; k++) {
        size_t n = strlen(OLLAMA_OPTIONS[k].field);
        if (err[0] != '\'' || strncmp(err + 1, OLLAMA_OPTIONS[k].field, n) || err[n + 1] != '\'') continue;
        char *rest = strdup(err + n + 2);
        if (rest) snprintf(err, errlen, "'options.%s'%s", OLLAMA_OPTIONS[k].name, rest);
        free(rest);
        return;
    }
}

/* options.stop: a string or a list of strings (how many: checked as `stop`). */
static int put_stop(const cJSON *stop, cJSON *ob, char *err, size_t errlen) {
    bool ok = cJSON_IsString(stop) || cJSON_IsArray(stop);
    for (const cJSON *s = cJSON_IsArray(stop) ? stop->child : NULL; s && ok; s = s->next) ok = cJSON_IsString(s);
    if (!ok) return jp_invalid(err, errlen, "'options.stop' must be a string or a list of strings");
    kern_json_add(ob, "stop", cJSON_Duplicate(stop, true));
    return AIOS_OK;
}

/* `options`: those of OLLAMA_OPTIONS, type-checked here and range-checked by the chat
 * pipeline; num_predict <= 0 or past OLLAMA_PREDICT_MAX is OLLAMA_PREDICT_MAX, and
 * repeat_last_n -1 the context (n_ctx), as in Ollama. Every other option (num_ctx, num_gpu,
 * mirostat, ...) is accepted and has no effect. */
static int put_options(const cJSON *body, int n_ctx, cJSON *ob, char *err, size_t errlen) {
    const cJSON *opts = member(body, "options");
    if (absent(opts)) return AIOS_OK;
    if (!cJSON_IsObject(opts)) return jp_invalid(err, errlen, "'options' must be an object");
    int rc = AIOS_OK;
    for (size_t k = 0; k < N_OLLAMA_OPTIONS && !rc; k++) {
        const char *name = OLLAMA_OPTIONS[k].name;
        bool integer = OLLAMA_OPTIONS[k].kind == OPTION_INTEGER;
        const cJSON *v = member(opts, name);
        if (absent(v)) continue;
        if (OLLAMA_OPTIONS[k].kind == OPTION_STOP) {
            rc = put_stop(v, ob, err, errlen);
            continue;
        }
        double x = cJSON_IsNumber(v) ? v->valuedouble : NAN;
        if (!isfinite(x) || (integer && x != floor(x)))
            return jp_invalid(err, errlen, "'options.%s' must be %s", name, integer ? "an integer" : "a number");
        if (!strcmp(name, "num_predict") && (x <= 0 || x > (double)OLLAMA_PREDICT_MAX)) x = (double)OLLAMA_PREDICT_MAX;
        if (!strcmp(name, "repeat_last_n") && x == -1) x = n_ctx;
        cJSON_AddNumberToObject(ob, OLLAMA_OPTIONS[k].field, x);
    }
    return rc;
}

/* format: "json" (any JSON object) or a JSON schema; "" or null: free text. */
static int put_format(const cJSON *body, cJSON *ob, char *err, size_t errlen) {
    const cJSON *f = member(body, "format");
    if (absent(f) || (cJSON_IsString(f) && !*f->valuestring)) return AIOS_OK;
    bool json = cJSON_IsString(f) && !strcmp(f->valuestring, "json");
    if (!json && !cJSON_IsObject(f)) return jp_invalid(err, errlen, "'format' must be \"json\" or a JSON schema object");
    cJSON *rf = cJSON_AddObjectToObject(ob, "response_format");
    cJSON_AddStringToObject(rf, "type", json ? "json_object" : "json_schema");
    if (!json) kern_json_add(cJSON_AddObjectToObject(rf, "json_schema"), "schema", cJSON_Duplicate(f, true));
    return AIOS_OK;
}

/* keep_alive ("5m", seconds, -1) is accepted: the kernel's models stay loaded anyway. */
static int check_keep_alive(const cJSON *body, char *err, size_t errlen) {
    const cJSON *k = member(body, "keep_alive");
    if (absent(k) || cJSON_IsString(k) || cJSON_IsNumber(k)) return AIOS_OK;
    return jp_invalid(err, errlen, "'keep_alive' must be a duration string (\"5m\") or a number of seconds");
}

/* A member this kernel cannot honour: accepted when empty (null, "", []), else a 400 saying why. */
static int refuse_set(const cJSON *obj, const char *key, const char *field, const char *why, char *err, size_t errlen) {
    const cJSON *v = member(obj, key);
    if (absent(v) || (cJSON_IsString(v) && !*v->valuestring) || (cJSON_IsArray(v) && !v->child)) return AIOS_OK;
    return jp_invalid(err, errlen, "'%s' is not supported: %s", field, why);
}

/* stream (true when absent), format, keep_alive, think (accepted: these models do not
 * think), logprobs (refused: only /v1/chat/completions returns them), priority. */
static int put_common(const cJSON *body, cJSON *ob, char *err, size_t errlen) {
    bool stream = true;
    const cJSON *think = member(body, "think"), *prio = member(body, "priority");
    int rc = jp_bool(body, "stream", &stream, err, errlen);
    if (!rc) rc = put_format(body, ob, err, errlen);
    if (!rc) rc = check_keep_alive(body, err, errlen);
    if (!rc && !absent(think) && !cJSON_IsBool(think) && !cJSON_IsString(think))
        rc = jp_invalid(err, errlen, "'think' must be true, false, \"low\", \"medium\" or \"high\"");
    if (!rc && cJSON_IsTrue(member(body, "logprobs")))
        rc = jp_invalid(err, errlen, "'logprobs' is not supported on /api/*; POST /v1/chat/completions returns them");
    if (rc) return rc;
    cJSON_AddBoolToObject(ob, "stream", stream);
    if (prio) kern_json_add(ob, "priority", cJSON_Duplicate(prio, true));
    return AIOS_OK;
}

/* A new door body for r (r owns it) with the resolved model and the members every
 * generation shares: stream, format, options. */
static int door_begin(api_req *r, const cJSON *body, cJSON **out, char *err, size_t errlen) {
    const char *model = NULL;
    cJSON *ob = r->door_body = *out = cJSON_CreateObject();
    int rc = ob ? jp_string(body, "model", false, &model, err, errlen) : AIOS_ERR_NOMEM;
    llm_core *core = rc ? NULL : ollama_core(r, model, err, errlen);
    if (!rc && !core) rc = AIOS_ERR_NOT_FOUND;
    if (rc) return rc;
    llm_core_info info;
    llm_core_get_info(core, &info);
    cJSON_AddStringToObject(ob, "model", info.name);
    rc = put_common(body, ob, err, errlen);
    return rc ? rc : put_options(body, info.ctx, ob, err, errlen);
}

/* messages[i].tool_calls (arguments an object) as chat completions' (arguments a JSON string). */
static int put_tool_calls(const cJSON *tc, int i, cJSON *m, char *err, size_t errlen) {
    if (absent(tc)) return AIOS_OK;
    if (!cJSON_IsArray(tc)) return jp_invalid(err, errlen, "'messages[%d].tool_calls' must be an array", i);
    cJSON *out = cJSON_AddArrayToObject(m, "tool_calls");
    int j = 0;
    for (const cJSON *c = tc->child; c; c = c->next, j++) {
        const cJSON *f = member(c, "function"), *name = member(f, "name"), *args = member(f, "arguments");
        const cJSON *id = member(c, "id");
        if (!cJSON_IsString(name) || (!absent(args) && !cJSON_IsObject(args)))
            return jp_invalid(
                err, errlen, "'messages[%d].tool_calls[%d]' must be {\"function\": {\"name\": ..., \"arguments\": {...}}}", i, j);
        char idbuf[40], *txt = cJSON_IsObject(args) ? cJSON_PrintUnformatted(args) : NULL;
        snprintf(idbuf, sizeof idbuf, "call_%d_%d", i, j);
        cJSON *call = cJSON_CreateObject(), *fn;
        cJSON_AddStringToObject(call, "id", cJSON_IsString(id) ? id->valuestring : idbuf);
        cJSON_AddStringToObject(call, "type", "function");
        fn = cJSON_AddObjectToObject(call, "function");
        cJSON_AddStringToObject(fn, "name", name->valuestring);
        cJSON_AddStringToObject(fn, "arguments", txt ? txt : "{}");
        free(txt);
        kern_json_push(out, call);
    }
    return AIOS_OK;
}

/* One Ollama message: role (checked by the chat pipeline), content (a string; absent = ""),
 * tool_calls, tool_name (a tool result's tool), no images. */
static int put_message(const cJSON *m, int i, cJSON *out, char *err, size_t errlen) {
    char field[48];
    if (!cJSON_IsObject(m)) return jp_invalid(err, errlen, "'messages[%d]' must be an object with role and content", i);
    const cJSON *role = member(m, "role"), *content = member(m, "content"), *tool = member(m, "tool_name");
    if (!absent(content) && !cJSON_IsString(content))
        return jp_invalid(err, errlen, "'messages[%d].content' must be a string", i);
    if (!absent(tool) && !cJSON_IsString(tool)) return jp_invalid(err, errlen, "'messages[%d].tool_name' must be a string", i);
    snprintf(field, sizeof field, "messages[%d].images", i);
    int rc = refuse_set(m, "images", field, "the kernel's models read text only", err, errlen);
    if (rc) return rc;
    cJSON *o = cJSON_CreateObject();
    kern_json_push(out, o);
    if (role) kern_json_add(o, "role", cJSON_Duplicate(role, true));
    cJSON_AddStringToObject(o, "content", cJSON_IsString(content) ? content->valuestring : "");
    if (cJSON_IsString(tool)) cJSON_AddStringToObject(o, "name", tool->valuestring);
    return put_tool_calls(member(m, "tool_calls"), i, o, err, errlen);
}

/* messages (absent or empty: the "load" request, answered by the handler). */
static int put_messages(const cJSON *body, cJSON *ob, char *err, size_t errlen) {
    const cJSON *ms = member(body, "messages");
    if (!absent(ms) && !cJSON_IsArray(ms))
        return jp_invalid(err, errlen, "'messages' must be an array of {\"role\", \"content\"} objects");
    cJSON *out = cJSON_AddArrayToObject(ob, "messages");
    int i = 0, rc = AIOS_OK;
    for (const cJSON *m = cJSON_IsArray(ms) ? ms->child : NULL; m && !rc; m = m->next, i++)
        rc = put_message(m, i, out, err, errlen);
    return rc;
}

/* /api/chat: the door body, then the chat plan (model claim, kernel tools named in `tools`). */
static int plan_chat(api_req *r, const cJSON *body, api_admission *a, char *err, size_t errlen) {
    cJSON *ob;
    const cJSON *tools = member(body, "tools");
    int rc = door_begin(r, body, &ob, err, errlen);
    if (!rc) rc = put_messages(body, ob, err, errlen);
    if (!rc && !absent(tools)) kern_json_add(ob, "tools", cJSON_Duplicate(tools, true));
    return rc ? rc : chat_plan_openai(r, ob, a, err, errlen);
}

/* /api/generate's members this kernel cannot honour. */
static int generate_unsupported(const cJSON *body, char *err, size_t errlen) {
    int rc = refuse_set(body, "images", "images", "the kernel's models read text only", err, errlen);
    if (!rc) rc = refuse_set(body, "suffix", "suffix", "fill-in-the-middle needs a model trained for it", err, errlen);
    if (!rc)
        rc = refuse_set(body, "template", "template", "the model's own chat template applies (POST /apply-template shows it)",
                        err, errlen);
    if (!rc) rc = refuse_set(body, "context", "context", "send the conversation to /api/chat as messages", err, errlen);
    return rc;
}

/* /api/generate: prompt (and system) as chat messages so the model's template applies, or
 * with "raw": true the prompt as it is (a /v1/completions body). */
static int plan_generate(api_req *r, const cJSON *body, api_admission *a, char *err, size_t errlen) {
    cJSON *ob;
    const char *prompt = "", *system = NULL;
    bool raw = false;
    int rc = door_begin(r, body, &ob, err, errlen);
    if (!rc) rc = jp_string(body, "prompt", false, &prompt, err, errlen);
    if (!rc) rc = jp_string(body, "system", false, &system, err, errlen);
    if (!rc) rc = jp_bool(body, "raw", &raw, err, errlen);
    if (!rc) rc = generate_unsupported(body, err, errlen);
    if (!rc && raw && member(ob, "response_format"))
        rc = jp_invalid(err, errlen, "'format' needs \"raw\": false (a raw prompt is completed as it is)");
    if (rc) return rc;
    if (raw) {
        cJSON_AddStringToObject(ob, "prompt", prompt);
    } else {
        cJSON *ms = cJSON_AddArrayToObject(ob, "messages"), *m;
        if (system && *system) {
            kern_json_push(ms, m = cJSON_CreateObject());
            cJSON_AddStringToObject(m, "role", "system");
            cJSON_AddStringToObject(m, "content", system);
        }
        kern_json_push(ms, m = cJSON_CreateObject());
        cJSON_AddStringToObject(m, "role", "user");
        cJSON_AddStringToObject(m, "content", prompt);
    }
    return chat_plan_openai(r, ob, a, err, errlen);
}

/* ---- handlers ---- */

/* Runs the door body through the chat pipeline; the answer is shaped by this door. */
static enum MHD_Result ollama_run(api_req *r, const cJSON *body, bool chat_api, bool generate) {
    char err[512] = "";
    bool stream;
    syscall_t *sc = NULL;
    int rc = chat_openai_prepare(r, r->door_body, chat_api, &stream, &sc, err, sizeof err);
    if (rc) name_option(err, sizeof err);
    if (rc) return api_reply_error(r, rc, "%s", err);
    chat_ctx *ctx = r->data;
    echo_name(r, body, ctx->model, sizeof ctx->model);
    if (stream) r->stream_ctype = "application/x-ndjson";
    api_stream_fn on_stream = !stream ? NULL : generate ? generate_stream : chat_stream;
    return api_run_syscall(r, r->adm.core, sc, generate ? generate_done : chat_done, on_stream);
}

static enum MHD_Result h_chat(api_req *r, cJSON *body) {
    const cJSON *ms = member(r->door_body, "messages");
    if (!ms) return api_reply_error(r, AIOS_ERR_NOMEM, NULL); /* (the plan could not make it) */
    return ms->child ? ollama_run(r, body, true, false) : reply_loaded(r, body, false);
}

static enum MHD_Result h_generate(api_req *r, cJSON *body) {
    const cJSON *p = member(body, "prompt");
    if (!cJSON_IsString(p) || !*p->valuestring) return reply_loaded(r, body, true);
    return ollama_run(r, body, !member(r->door_body, "prompt"), true);
}

/* details {"parent_model","format","family","families","parameter_size","quantization_level"}
 * from the core's description ("llama 256M Q8_0": architecture, size class, file type). */
static cJSON *model_details(const llm_core_info *info) {
    char family[32] = "", size[32];
    const char *quant = strrchr(info->desc, ' ');
    sscanf(info->desc, "%31s", family);
    double p = (double)info->n_params;
    snprintf(size, sizeof size, p >= 1e9 ? "%.2fB" : "%.2fM", p >= 1e9 ? p / 1e9 : p / 1e6);
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "parent_model", "");
    cJSON_AddStringToObject(d, "format", strcmp(info->backend, "llamacpp") ? info->backend : "gguf");
    cJSON_AddStringToObject(d, "family", family);
    kern_json_push(cJSON_AddArrayToObject(d, "families"), cJSON_CreateString(family));
    cJSON_AddStringToObject(d, "parameter_size", size);
    cJSON_AddStringToObject(d, "quantization_level", quant ? quant + 1 : "");
    return d;
}

/* The time of a configured model's file ("modified_at"); the epoch when unknown. */
static void model_mtime(api_req *r, const char *name, char *out, size_t n) {
    const aios_model_cfg *m = config_model(api_cfg(r), name);
    struct stat st;
    iso_time(m && !stat(m->path, &st) ? st.st_mtime : 0, 0, out, n);
}

/* One model of /api/tags or, running, of /api/ps. */
/* Model i as Ollama lists it, with the kernel's view (backend, state, load, aliases) under
 * "aios" (a field Ollama clients ignore). */
static cJSON *model_entry(api_req *r, int i, bool running) {
    llm_core *core = api_core_at(r, i);
    llm_core_info info;
    char name[OLLAMA_NAME_MAX], ts[64];
    llm_core_get_info(core, &info);
    tagged_name(info.name, name, sizeof name);
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "name", name);
    cJSON_AddStringToObject(m, "model", name);
    cJSON_AddNumberToObject(m, "size", (double)info.size_bytes);
    kern_json_add(m, "details", model_details(&info));
    if (running) {
        cJSON_AddStringToObject(m, "expires_at", OLLAMA_NEVER);
        cJSON_AddNumberToObject(m, "size_vram", 0);
        cJSON_AddNumberToObject(m, "context_length", info.ctx);
    } else {
        model_mtime(r, info.name, ts, sizeof ts);
        cJSON_AddStringToObject(m, "modified_at", ts);
    }
    api_model_fields(r, i, cJSON_AddObjectToObject(m, "aios"));
    return m;
}

/* Every configured model: all are loaded at start and stay loaded. */
static enum MHD_Result list_models(api_req *r, bool running) {
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "models");
    for (int i = 0; i < api_n_cores(r); i++) kern_json_push(arr, model_entry(r, i, running));
    return api_reply_json(r, 200, o);
}

static enum MHD_Result h_tags(api_req *r, cJSON *body) {
    (void)body;
    return list_models(r, false);
}

static enum MHD_Result h_ps(api_req *r, cJSON *body) {
    (void)body;
    return list_models(r, true);
}

/* The prompt the model's chat template makes, with Ollama's template variables for the
 * system and user text: what a chat request renders, in the form clients expect. */
static char *template_text(api_req *r, llm_core *core) {
    cJSON *ms =
        cJSON_Parse("[{\"role\":\"system\",\"content\":\"{{ .System }}\"},{\"role\":\"user\",\"content\":\"{{ .Prompt }}\"}]");
    strbuf p;
    char err[256];
    sb_init(&p, 0);
    int rc = ms ? chat_render(r, core, ms, &p, err, sizeof err) : AIOS_ERR_NOMEM;
    cJSON_Delete(ms);
    if (!rc) return sb_steal(&p);
    sb_free(&p);
    return NULL;
}

/* model_info: the GGUF keys Ollama clients read (architecture, parameters, context). */
static cJSON *model_info(const llm_core_info *info, const char *family) {
    char key[64];
    cJSON *mi = cJSON_CreateObject();
    cJSON_AddStringToObject(mi, "general.architecture", family);
    cJSON_AddNumberToObject(mi, "general.parameter_count", (double)info->n_params);
    snprintf(key, sizeof key, "%s.context_length", family);
    cJSON_AddNumberToObject(mi, key, info->ctx_train);
    return mi;
}

/* POST /api/show {"model"} (older clients: "name"). */
static enum MHD_Result h_show(api_req *r, cJSON *body) {
    char err[256] = "", ts[64], text[160];
    const char *model = NULL;
    int rc = jp_string(body, "model", false, &model, err, sizeof err);
    if (!rc && !model) rc = jp_string(body, "name", false, &model, err, sizeof err);
    if (!rc && (!model || !*model)) rc = jp_invalid(err, sizeof err, "'model' is required");
    llm_core *core = rc ? NULL : ollama_core(r, model, err, sizeof err);
    if (!rc && !core) rc = AIOS_ERR_NOT_FOUND;
    if (rc) return api_reply_error(r, rc, "%s", err);
    llm_core_info info;
    llm_core_get_info(core, &info);
    cJSON *o = cJSON_CreateObject(), *details = model_details(&info);
    char *tmpl = template_text(r, core);
    cJSON_AddStringToObject(o, "license", "");
    snprintf(text, sizeof text, "# served by aiosd from its config file (llms.models)\nFROM %s\n", info.name);
    cJSON_AddStringToObject(o, "modelfile", text);
    snprintf(text, sizeof text, "num_ctx %d", info.ctx);
    cJSON_AddStringToObject(o, "parameters", text);
    cJSON_AddStringToObject(o, "template", tmpl ? tmpl : "");
    free(tmpl);
    kern_json_add(o, "model_info", model_info(&info, kern_json_str(details, "family")));
    kern_json_add(o, "details", details);
    cJSON *caps = cJSON_AddArrayToObject(o, "capabilities");
    kern_json_push(caps, cJSON_CreateString("completion"));
    kern_json_push(caps, cJSON_CreateString("tools"));
    model_mtime(r, info.name, ts, sizeof ts);
    cJSON_AddStringToObject(o, "modified_at", ts);
    return api_reply_json(r, 200, o);
}

static enum MHD_Result h_version(api_req *r, cJSON *body) {
    (void)body;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "version", OLLAMA_API_VERSION);
    return api_reply_json(r, 200, o);
}

/* /api/pull, push, create, copy, delete, blobs: the kernel manages its own models. */
static enum MHD_Result h_unmanaged(api_req *r, cJSON *body) {
    (void)body;
    return api_reply_error(r, AIOS_ERR_NOT_IMPLEMENTED,
                           "%s %.64s is not supported: aiosd serves the models its config file lists (llms.models, see "
                           "docs/config.md), loaded at start; change that list and restart aiosd instead",
                           r->method, r->url);
}

/* ---- embeddings: the /v1/embeddings job (api_embed), answered in Ollama's shape ---- */

/* The embedding model (`model`: its name, "NAME:latest" or "default"; absent: it), claimed as
 * /v1/embeddings claims it; the name the answer shows goes into r->door_body. */
static int plan_embed(api_req *r, const cJSON *body, api_admission *a, char *err, size_t errlen) {
    llm_embedder *e = api_embedder(r);
    const char *model = NULL;
    int rc = jp_string(body, "model", false, &model, err, errlen);
    a->kind = SYSCALL_KIND_MEMORY;
    if (rc || !e) return rc; /* no embedder: the handler answers 501 */
    const char *name = llm_embedder_name(e);
    if (model && *model && strcmp(model, "default") && !name_means(model, name)) {
        snprintf(err, errlen, "model '%.128s' not found (this kernel embeds with '%s')", model, name);
        return AIOS_ERR_NOT_FOUND;
    }
    if (!(r->door_body = cJSON_CreateObject())) return AIOS_ERR_NOMEM;
    cJSON_AddStringToObject(r->door_body, "model", model && *model ? model : name);
    return api_claim_add(a, ACCESS_KIND_LLM, name, ACCESS_USE, NULL, false);
}

/* /api/embed's answer from the OpenAI list (taken). */
static cJSON *embed_shape(api_req *r, cJSON *list) {
    cJSON *o = cJSON_CreateObject(), *embs = cJSON_CreateArray(), *d;
    cJSON_AddStringToObject(o, "model", kern_json_str(r->door_body, "model"));
    cJSON_ArrayForEach(d, cJSON_GetObjectItem(list, "data")) kern_json_push(embs, cJSON_DetachItemFromObject(d, "embedding"));
    kern_json_add(o, "embeddings", embs);
    kern_json_add(o, "total_duration", ns_json(kern_now_mono() - r->t_begin));
    kern_json_add(o, "load_duration", ns_json(0));
    const cJSON *usage = cJSON_GetObjectItem(list, "usage");
    cJSON_AddNumberToObject(o, "prompt_eval_count", cJSON_GetNumberValue(cJSON_GetObjectItem(usage, "prompt_tokens")));
    cJSON_Delete(list);
    return o;
}

/* The legacy /api/embeddings answer {"embedding": [...]} from the OpenAI list (taken). */
static cJSON *embedding_shape(api_req *r, cJSON *list) {
    (void)r;
    cJSON *o = cJSON_CreateObject(), *d = cJSON_GetArrayItem(cJSON_GetObjectItem(list, "data"), 0);
    kern_json_add(o, "embedding", d ? cJSON_DetachItemFromObject(d, "embedding") : cJSON_CreateArray());
    cJSON_Delete(list);
    return o;
}

/* The members of both embedding routes besides the text: keep_alive, options (accepted, no
 * effect), truncate (texts past the embedder's context are always cut), dimensions (the
 * embedder's own only). */
static int check_embed(const cJSON *body, llm_embedder *e, char *err, size_t errlen) {
    bool truncate = true;
    const cJSON *opts = member(body, "options"), *dims = member(body, "dimensions");
    int rc = check_keep_alive(body, err, errlen);
    if (!rc) rc = jp_bool(body, "truncate", &truncate, err, errlen);
    if (!rc && !absent(opts) && !cJSON_IsObject(opts)) rc = jp_invalid(err, errlen, "'options' must be an object");
    if (!rc && !absent(dims) && (!cJSON_IsNumber(dims) || dims->valuedouble != llm_embedder_dim(e)))
        rc = jp_invalid(err, errlen, "'dimensions' must be %d for '%s'", llm_embedder_dim(e), llm_embedder_name(e));
    return rc;
}

/* POST /api/embed {"model", "input": "text" | ["text", ...]}; no text: no embeddings. */
static enum MHD_Result h_embed(api_req *r, cJSON *body) {
    llm_embedder *e = api_embedder(r);
    char err[256] = "";
    if (!e) return api_reply_error(r, AIOS_ERR_NOT_IMPLEMENTED, "no embedding model is loaded");
    int rc = check_embed(body, e, err, sizeof err);
    if (rc) return api_reply_error(r, rc, "%s", err);
    const cJSON *input = member(body, "input");
    if (absent(input) || (cJSON_IsString(input) && !*input->valuestring) || (cJSON_IsArray(input) && !input->child)) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", kern_json_str(r->door_body, "model"));
        cJSON_AddArrayToObject(o, "embeddings");
        return api_reply_json(r, 200, o);
    }
    return api_embed(r, input, "float", embed_shape);
}

/* POST /api/embeddings {"model", "prompt"} (Ollama's older route); an empty prompt: []. */
static enum MHD_Result h_embeddings(api_req *r, cJSON *body) {
    llm_embedder *e = api_embedder(r);
    const char *prompt = "";
    char err[256] = "";
    if (!e) return api_reply_error(r, AIOS_ERR_NOT_IMPLEMENTED, "no embedding model is loaded");
    int rc = check_embed(body, e, err, sizeof err);
    if (!rc) rc = jp_string(body, "prompt", false, &prompt, err, sizeof err);
    if (rc) return api_reply_error(r, rc, "%s", err);
    if (!*prompt) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddArrayToObject(o, "embedding");
        return api_reply_json(r, 200, o);
    }
    return api_embed(r, member(body, "prompt"), "float", embedding_shape);
}

const api_route api_routes_ollama[] = {
    {"POST", "/api/chat", h_chat, true, API_GATE_SYSCALL, plan_chat, API_DOOR_OLLAMA},
    {"POST", "/api/generate", h_generate, true, API_GATE_SYSCALL, plan_generate, API_DOOR_OLLAMA},
    {"POST", "/api/embed", h_embed, true, API_GATE_SYSCALL, plan_embed, API_DOOR_OLLAMA},
    {"POST", "/api/embeddings", h_embeddings, true, API_GATE_SYSCALL, plan_embed, API_DOOR_OLLAMA},
    {"GET", "/api/tags", h_tags, false, API_GATE_AGENT, NULL, API_DOOR_OLLAMA},
    {"POST", "/api/show", h_show, true, API_GATE_AGENT, NULL, API_DOOR_OLLAMA},
    {"GET", "/api/ps", h_ps, false, API_GATE_AGENT, NULL, API_DOOR_OLLAMA},
    {"GET", "/api/version", h_version, false, API_GATE_PUBLIC, NULL, API_DOOR_OLLAMA},
    {"POST", "/api/pull", h_unmanaged, false, API_GATE_AGENT, NULL, API_DOOR_OLLAMA},
    {"POST", "/api/push", h_unmanaged, false, API_GATE_AGENT, NULL, API_DOOR_OLLAMA},
    {"POST", "/api/create", h_unmanaged, false, API_GATE_AGENT, NULL, API_DOOR_OLLAMA},
    {"POST", "/api/copy", h_unmanaged, false, API_GATE_AGENT, NULL, API_DOOR_OLLAMA},
    {"DELETE", "/api/delete", h_unmanaged, false, API_GATE_AGENT, NULL, API_DOOR_OLLAMA},
    {"POST", "/api/blobs/*", h_unmanaged, false, API_GATE_AGENT, NULL, API_DOOR_OLLAMA},
    {"HEAD", "/api/blobs/*", h_unmanaged, false, API_GATE_AGENT, NULL, API_DOOR_OLLAMA},
    {NULL, NULL, NULL, false, API_GATE_ADMIN, NULL, API_DOOR_AIOS},
};
