/*
 * routes_aios.c - the AIOS / Cerebrum surface: POST /query (the syscall envelope),
 * GET /status, GET /core/llms/list, and GET /metrics (Prometheus text).
 *
 * /query is the admission gate of DESIGN.md §6: parse the envelope, look the kind up in
 * the syscall kinds table, validate its query_data, then dispatch to the manager. Answers
 * carry the AIOS timing arrays, one entry per scheduling round of the syscall.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "chat.h"

static const char *const ACTIONS[] = {"chat",      "chat_with_json_output", "chat_with_tool_call_output",
                                      "call_tool", "operate_file",          NULL};

cJSON *api_envelope(syscall_t *sc, cJSON *response) {
    double st[SYSCALL_MAX_ROUNDS], en[SYSCALL_MAX_ROUNDS], wt[SYSCALL_MAX_ROUNDS], ta[SYSCALL_MAX_ROUNDS];
    int n = syscall_timings(sc, st, en, wt, ta, SYSCALL_MAX_ROUNDS);
    cJSON *o = cJSON_CreateObject();
    kern_json_add(o, "response", response);
    jp_add_doubles(o, "start_times", st, n);
    jp_add_doubles(o, "end_times", en, n);
    jp_add_doubles(o, "waiting_times", wt, n);
    jp_add_doubles(o, "turnaround_times", ta, n);
    return o;
}

static enum MHD_Result query_llm_done(api_req *r) {
    chat_ctx *ctx = r->data;
    syscall_t *sc = r->sc;
    if (sc->result) return api_reply_error(r, sc->result, "%s", sc->errmsg);
    cJSON *resp = cJSON_CreateObject();
    const char *text = sc->out.data ? sc->out.data : "";
    if (ctx->run_tools) {
        cJSON_Delete(resp); /* the calls, decoded in the core's format (kernel JSON or the template's) */
        return api_run_model_tool_calls(r, chat_tool_calls(ctx, text, sc->id));
    }
    cJSON_AddStringToObject(resp, "response_class", "llm");
    if (chat_made_calls(ctx, text)) {
        cJSON_AddNullToObject(resp, "response_message");
        kern_json_add(resp, "tool_calls", chat_tool_calls(ctx, text, sc->id));
    } else {
        cJSON_AddStringToObject(resp, "response_message", text);
        cJSON_AddNullToObject(resp, "tool_calls");
    }
    cJSON_AddBoolToObject(resp, "finished", true);
    cJSON_AddNullToObject(resp, "error");
    cJSON_AddNumberToObject(resp, "status_code", 200);
    llm_request *req = sc->args;
    cJSON_AddStringToObject(resp, "finish_reason", llm_finish_name(llm_request_finish(req)));
    cJSON *usage = cJSON_AddObjectToObject(resp, "usage");
    cJSON_AddNumberToObject(usage, "prompt_tokens", llm_request_prompt_tokens(req));
    cJSON_AddNumberToObject(usage, "completion_tokens", llm_request_completion_tokens(req));
    kern_json_add(resp, "aios", chat_timing_json(sc));
    return api_reply_json(r, 200, api_envelope(sc, resp));
}

/* Whether name is in the AIOS selection (or there is none). */
static bool selected(api_req *r, const char *name) {
    char sel[AIOS_MAX_MODELS][AIOS_NAME_MAX];
    int n = api_selected_llms(r, sel, AIOS_MAX_MODELS);
    llm_core *core = api_core(r, name);
    for (int i = 0; i < n; i++)
        if (!strcmp(sel[i], name) || (core && api_core(r, sel[i]) == core)) return true;
    return n == 0;
}

/* The model a query asks for: the first entry of `llms` this kernel serves (and, when LLMs
 * were selected with POST /user/select/llms, one of those); null or an empty list means the
 * first selected model served, else the default model. */
static int pick_core(api_req *r, const cJSON *llms, llm_core **out, char *err, size_t errlen) {
    if (!llms || cJSON_IsNull(llms) || (cJSON_IsArray(llms) && !llms->child)) {
        char sel[AIOS_MAX_MODELS][AIOS_NAME_MAX];
        int n = api_selected_llms(r, sel, AIOS_MAX_MODELS);
        *out = NULL;
        for (int i = 0; i < n && !*out; i++) *out = api_core(r, sel[i]);
        if (!*out) *out = api_core(r, NULL);
        return AIOS_OK;
    }
    if (!cJSON_IsArray(llms)) {
        snprintf(err, errlen, "'llms' must be null or an array of {\"name\",\"backend\"}");
        return AIOS_ERR_INVALID;
    }
    for (const cJSON *l = llms->child; l; l = l->next) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(l, "name");
        if (!cJSON_IsObject(l) || !cJSON_IsString(n)) {
            snprintf(err, errlen, "'llms' entries must be objects with a string 'name'");
            return AIOS_ERR_INVALID;
        }
        if (!selected(r, n->valuestring)) {
            snprintf(err, errlen, "llm '%.128s' is not among the selected LLMs (POST /user/select/llms)", n->valuestring);
            return AIOS_ERR_INVALID;
        }
        if ((*out = api_core(r, n->valuestring))) return AIOS_OK;
    }
    char known[512];
    api_models_known(r, known, sizeof known);
    snprintf(err, errlen, "none of the requested llms is served here; this kernel serves: %s", known);
    return AIOS_ERR_NOT_FOUND;
}

/* response_format of /query: null; OpenAI's {"type":"text"|"json_object"|"json_schema",
 * "json_schema":{"schema"}}; or a bare JSON Schema. Anything else is refused. Sets JSON mode
 * (and the schema) unless it asks for text. */
static int parse_query_format(const cJSON *rf, chat_spec *spec, char *err, size_t errlen) {
    if (!rf || cJSON_IsNull(rf)) return AIOS_OK;
    if (!cJSON_IsObject(rf)) {
        snprintf(
            err, errlen,
            "'response_format' must be null, {\"type\":\"json_object\"}, {\"type\":\"json_schema\",\"json_schema\":{\"schema\":{...}}} or a JSON Schema object");
        return AIOS_ERR_INVALID;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(rf, "type");
    const char *t = cJSON_IsString(type) ? type->valuestring : "";
    if (!strcmp(t, "text")) return AIOS_OK;
    spec->mode = CHAT_MODE_JSON;
    if (!strcmp(t, "json_object")) return AIOS_OK;
    if (!strcmp(t, "json_schema")) return chat_json_schema(rf, spec, err, errlen);
    /* a bare schema (the grammar builder checks it); a plain {"type":"object"} keeps the
     * bounded object of json_object mode */
    if (strcmp(t, "object") || cJSON_GetArraySize(rf) > 1) spec->schema = rf;
    return AIOS_OK;
}

static int parse_llm_query(api_req *r, const cJSON *qd, chat_spec *spec, const char **action, char *err, size_t errlen) {
    const aios_config *cfg = api_cfg(r);
    double temp = 1.0;
    long max_tokens = cfg->llms.default_max_tokens;
    const char *ret_type = "text";
    *action = "chat";
    int rc = jp_string(qd, "action_type", false, action, err, errlen);
    if (!rc) rc = jp_number(qd, "temperature", 0, 2, &temp, err, errlen);
    if (!rc) rc = jp_int(qd, "max_new_tokens", 1, 1 << 24, &max_tokens, err, errlen);
    if (!rc) rc = jp_string(qd, "message_return_type", false, &ret_type, err, errlen);
    if (rc) return rc;
    int k = 0;
    while (ACTIONS[k] && strcmp(ACTIONS[k], *action)) k++;
    if (!ACTIONS[k]) {
        snprintf(
            err, errlen,
            "unknown action_type '%.40s' (allowed: chat, chat_with_json_output, chat_with_tool_call_output, call_tool, operate_file)",
            *action);
        return AIOS_ERR_INVALID;
    }
    if (!strcmp(*action, "operate_file")) {
        snprintf(
            err, errlen,
            "action_type 'operate_file' is not supported; use storage queries or the aios/read_file and aios/write_file tools");
        return AIOS_ERR_NOT_IMPLEMENTED;
    }
    if (strcmp(ret_type, "text") && strcmp(ret_type, "json")) {
        snprintf(err, errlen, "'message_return_type' must be \"text\" or \"json\"");
        return AIOS_ERR_INVALID;
    }
    spec->sampling = llm_default_sampling();
    spec->sampling.temperature = (float)temp;
    spec->sampling.max_tokens = (int)max_tokens;
    spec->messages = cJSON_GetObjectItemCaseSensitive(qd, "messages");
    spec->tools = cJSON_GetObjectItemCaseSensitive(qd, "tools");
    if (cJSON_IsNull(spec->tools)) spec->tools = NULL;
    int rc2 = chat_check_tools(spec->tools, err, errlen);
    if (!rc2) rc2 = parse_query_format(cJSON_GetObjectItemCaseSensitive(qd, "response_format"), spec, err, errlen);
    if (rc2) return rc2;
    if (!strcmp(*action, "chat_with_json_output") || !strcmp(ret_type, "json")) spec->mode = CHAT_MODE_JSON;
    if (!strcmp(*action, "chat_with_tool_call_output") || !strcmp(*action, "call_tool")) {
        if (!cJSON_IsArray(spec->tools) || !spec->tools->child) {
            snprintf(err, errlen, "action_type '%s' needs a non-empty 'tools' list", *action);
            return AIOS_ERR_INVALID;
        }
        spec->mode = CHAT_MODE_TOOLS;
    }
    return AIOS_OK;
}

static enum MHD_Result query_llm(api_req *r, const cJSON *qd) {
    char err[512] = "";
    chat_spec spec = {.mode = CHAT_MODE_TEXT};
    const char *action;
    llm_core *core = r->adm.core;
    int rc = parse_llm_query(r, qd, &spec, &action, err, sizeof err);
    if (rc) return api_reply_error(r, rc, "%s", err);
    chat_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return api_reply_error(r, AIOS_ERR_NOMEM, NULL);
    r->data = ctx;
    r->data_free = chat_ctx_free;
    ctx->mode = spec.mode;
    ctx->run_tools = !strcmp(action, "call_tool");
    cJSON *filled = NULL;
    if (spec.mode == CHAT_MODE_TOOLS) rc = chat_kernel_tools(r, spec.tools, ctx->run_tools, &filled, err, sizeof err);
    if (filled) spec.tools = filled;
    if (!rc) rc = chat_parse_tools(ctx, spec.mode == CHAT_MODE_TOOLS ? spec.tools : NULL, err, sizeof err);
    syscall_t *sc = NULL;
    if (!rc) rc = chat_build_syscall(r, core, ctx, &spec, &sc, err, sizeof err);
    cJSON_Delete(filled);
    if (rc) return api_reply_error(r, rc, "%s", err);
    return api_run_syscall(r, core, sc, query_llm_done, NULL);
}

int api_plan_llm_query(api_req *r, const cJSON *qd, api_admission *a, char *err, size_t errlen) {
    int rc = pick_core(r, cJSON_GetObjectItemCaseSensitive(qd, "llms"), &a->core, err, errlen);
    if (!rc) rc = chat_plan_model(a);
    return rc ? rc : chat_plan_tools(r, cJSON_GetObjectItemCaseSensitive(qd, "tools"), a, err, errlen);
}

/* POST /query: the agent (agent_name, or the token's agent when absent), the kind
 * (query_type) and that kind's resources. */
static int plan_query(api_req *r, const cJSON *body, api_admission *a, char *err, size_t errlen) {
    const char *qtype = NULL;
    int rc = jp_string(body, "agent_name", false, &a->agent_name, err, errlen);
    if (!rc) rc = jp_string(body, "query_type", true, &qtype, err, errlen);
    if (rc) return rc;
    a->name_required = true;
    const syscall_kind_info *kind = syscall_kind_lookup(qtype);
    if (!kind) {
        snprintf(err, errlen, "unknown query_type '%.40s' (allowed: llm, memory, storage, tool)", qtype);
        return AIOS_ERR_INVALID;
    }
    const cJSON *qd = cJSON_GetObjectItemCaseSensitive(body, "query_data");
    if (!cJSON_IsObject(qd)) {
        snprintf(err, errlen, "'query_data' must be an object");
        return AIOS_ERR_INVALID;
    }
    a->kind = kind->kind;
    switch (kind->kind) {
        case SYSCALL_KIND_LLM: return api_plan_llm_query(r, qd, a, err, errlen);
        case SYSCALL_KIND_MEMORY:
        case SYSCALL_KIND_STORAGE: return api_plan_mem(r, kind->kind, qd, a, err, errlen);
        case SYSCALL_KIND_TOOL: return api_plan_tool_calls(r, qd, a, err, errlen);
        default: return AIOS_ERR_INTERNAL;
    }
}

static enum MHD_Result h_query(api_req *r, cJSON *body) {
    char err[256] = "";
    int rc = jp_priority(r, body, err, sizeof err);
    const cJSON *qd = cJSON_GetObjectItemCaseSensitive(body, "query_data");
    if (!rc) rc = jp_priority(r, qd, err, sizeof err);
    if (rc) return api_reply_error(r, rc, "%s", err);
    switch (r->adm.kind) {
        case SYSCALL_KIND_MEMORY: return api_query_memory(r, qd);
        case SYSCALL_KIND_STORAGE: return api_query_storage(r, qd);
        case SYSCALL_KIND_TOOL: return api_query_tool(r, qd);
        default: return query_llm(r, qd);
    }
}

static void core_snapshot(api_req *r, int i, llm_core_info *info, llm_core_stats *st, sched_stats *ss) {
    llm_core_get_info(api_core_at(r, i), info);
    llm_core_get_stats(api_core_at(r, i), st, ss);
}

/* state (the kernel "loading" at start; a core's "ready", "loading", "unloading",
 * "unloaded", "failed"; a remote model with every endpoint out "down") and why. */
static void model_state(api_req *r, llm_core *core, const llm_core_stats *st, cJSON *o) {
    char why[400] = "";
    llm_core_state cs = llm_core_get_state(core, why, sizeof why, NULL);
    const char *state = !api_ready(r) ? "loading" : cs != LLM_CORE_READY ? llm_core_state_name(cs) : st->down ? "down" : "ready";
    cJSON_AddStringToObject(o, "state", state);
    if (st->down && cs == LLM_CORE_READY) snprintf(why, sizeof why, "%s", st->down_reason);
    if (why[0]) cJSON_AddStringToObject(o, "reason", why);
}

/* A remote model's endpoints: state, load and health of each. */
static void add_endpoints(const llm_core_stats *st, cJSON *o) {
    if (!st->n_endpoints) return;
    cJSON *arr = cJSON_AddArrayToObject(o, "endpoints");
    for (int k = 0; k < st->n_endpoints; k++) {
        const llm_endpoint_stats *e = &st->endpoints[k];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "url", e->url);
        cJSON_AddStringToObject(j, "state", e->state);
        cJSON_AddNumberToObject(j, "outstanding", e->outstanding);
        cJSON_AddNumberToObject(j, "requests", (double)e->requests);
        cJSON_AddNumberToObject(j, "failures", (double)e->failures);
        cJSON_AddNumberToObject(j, "retries", (double)e->retries);
        cJSON_AddNumberToObject(j, "breaker_opens", (double)e->breaker_opens);
        if (e->last_ok_ago_s >= 0) cJSON_AddNumberToObject(j, "last_ok_ago_s", e->last_ok_ago_s);
        if (e->last_error[0]) cJSON_AddStringToObject(j, "last_error", e->last_error);
        kern_json_push(arr, j);
    }
}

/* The compute devices ggml can use, with their memory (GPUs: what the models placed on them hold). */
static void add_devices(cJSON *o) {
    llm_device dev[16];
    int n = llm_devices(dev, 16);
    cJSON *arr = cJSON_AddArrayToObject(o, "devices");
    for (int i = 0; i < n && i < 16; i++) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "name", dev[i].name);
        cJSON_AddStringToObject(d, "type", dev[i].type);
        cJSON_AddStringToObject(d, "description", dev[i].description);
        cJSON_AddNumberToObject(d, "memory_total_bytes", (double)dev[i].memory_total);
        cJSON_AddNumberToObject(d, "memory_free_bytes", (double)dev[i].memory_free);
        kern_json_push(arr, d);
    }
}

cJSON *api_status_json(api_req *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "ok");
    cJSON_AddStringToObject(o, "message", "aiosd is serving");
    cJSON *inactive = cJSON_AddArrayToObject(o, "inactive_components");
    for (int k = 0; k < SYSCALL_KIND__COUNT; k++)
        if (!syscall_kind_get((syscall_kind)k)->implemented)
            kern_json_push(inactive, cJSON_CreateString(syscall_kind_get((syscall_kind)k)->name));
    cJSON_AddNumberToObject(o, "uptime_s", api_uptime(r));
    cJSON *models = cJSON_AddArrayToObject(o, "llms");
    for (int i = 0; i < api_n_cores(r); i++) {
        llm_core_info info;
        llm_core_stats st;
        sched_stats ss;
        core_snapshot(r, i, &info, &st, &ss);
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "name", info.name);
        cJSON_AddStringToObject(m, "backend", info.backend);
        cJSON_AddStringToObject(m, "policy", ss.policy);
        cJSON_AddNumberToObject(m, "active", (double)ss.active);
        cJSON_AddNumberToObject(m, "queued", (double)ss.queued);
        cJSON_AddNumberToObject(m, "max_active", info.max_active);
        cJSON_AddNumberToObject(m, "kv_size", info.kv_size);
        cJSON_AddNumberToObject(m, "kv_reserved", st.kv_reserved);
        cJSON_AddNumberToObject(m, "kv_used", st.kv_used);
        cJSON_AddNumberToObject(m, "kv_cached", st.kv_cached);
        cJSON_AddNumberToObject(m, "preempted_waiting", (double)ss.preempted_waiting);
        cJSON_AddNumberToObject(m, "context_switches", (double)ss.context_switches);
        cJSON_AddNumberToObject(m, "starved", (double)ss.starved);
        cJSON_AddNumberToObject(m, "parked", st.parked);
        cJSON_AddNumberToObject(m, "cache_resident_entries", st.cache_resident);
        cJSON_AddNumberToObject(m, "prefill_tokens_computed", (double)st.prefill_computed);
        cJSON_AddNumberToObject(m, "prefill_tokens_reused", (double)st.prefill_reused);
        cJSON_AddNumberToObject(m, "requests_done", (double)st.requests_done);
        cJSON_AddNumberToObject(m, "completion_tokens", (double)st.completion_tokens);
        model_state(r, api_core_at(r, i), &st, m);
        if (info.device[0]) {
            cJSON_AddStringToObject(m, "device", info.device);
            cJSON_AddNumberToObject(m, "gpu_layers", info.gpu_layers);
        }
        add_endpoints(&st, m);
        kern_json_push(models, m);
    }
    add_devices(o);
    kern_json_add(o, "budgets", access_budgets_json(api_access(r)));
    api_status_runq(r, o);
    return o;
}

static enum MHD_Result h_status(api_req *r, cJSON *body) {
    (void)body;
    return api_reply_json(r, 200, api_status_json(r));
}

/* GET /health: 503 {"status":"loading"} until every model is loaded, then 200
 * {"status":"ok"}; no identity needed (load balancers, orchestrators). */
static enum MHD_Result h_health(api_req *r, cJSON *body) {
    (void)body;
    bool ok = api_ready(r);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", ok ? "ok" : "loading");
    if (!ok) r->retry_after_s = 1;
    return api_reply_json(r, ok ? 200 : 503, o);
}

void api_model_fields(api_req *r, int i, cJSON *o) {
    llm_core_info info;
    llm_core_stats st;
    sched_stats ss;
    core_snapshot(r, i, &info, &st, &ss);
    cJSON_AddStringToObject(o, "backend", info.backend);
    model_state(r, api_core_at(r, i), &st, o);
    cJSON_AddNumberToObject(o, "active", (double)ss.active);
    cJSON_AddNumberToObject(o, "queued", (double)ss.queued);
    cJSON_AddNumberToObject(o, "max_active", info.max_active);
    cJSON *aliases = cJSON_AddArrayToObject(o, "aliases");
    char a[AIOS_NAME_MAX];
    for (int k = 0; i < api_n_cores(r) && config_model_alias_at(&api_cfg(r)->llms.models[i], k, a, sizeof a); k++)
        kern_json_push(aliases, cJSON_CreateString(a));
}

static enum MHD_Result h_llms_list(api_req *r, cJSON *body) {
    (void)body;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "success");
    cJSON *arr = cJSON_AddArrayToObject(o, "llms");
    for (int i = 0; i < api_n_cores(r); i++) {
        llm_core_info info;
        llm_core_get_info(api_core_at(r, i), &info);
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "name", info.name);
        api_model_fields(r, i, m);
        kern_json_push(arr, m);
    }
    return api_reply_json(r, 200, o);
}

/* One Prometheus series per core; the value comes from one consistent snapshot. */
typedef struct metric_def {
    const char *name, *type, *help;
    double (*get)(const llm_core_stats *st, const sched_stats *ss);
} metric_def;

#define M_ST(field) \
    static double m_##field(const llm_core_stats *st, const sched_stats *ss) { \
        (void)ss; \
        return (double)st->field; \
    }
#define M_SS(field) \
    static double m_ss_##field(const llm_core_stats *st, const sched_stats *ss) { \
        (void)st; \
        return (double)ss->field; \
    }
M_ST(requests_done)
M_ST(requests_failed)
M_ST(prompt_tokens)
M_ST(completion_tokens)
M_ST(decode_steps)
M_ST(batch_tokens)
M_ST(busy_seconds)
M_ST(kv_reserved)
M_ST(kv_used)
M_ST(kv_cached)
M_ST(snapshots)
M_ST(snapshot_bytes)
M_ST(snapshot_seconds)
M_ST(restores)
M_ST(restore_seconds)
M_ST(text_resumes)
M_ST(snapshot_failures)
M_ST(prefill_computed)
M_ST(prefill_reused)
M_ST(cache_hits)
M_ST(cache_evictions)
M_ST(cache_dropped)
M_ST(cache_resident)
M_ST(cache_snapshots)
M_ST(verify_ok)
M_ST(verify_mismatch)
M_ST(parks)
M_ST(compactions)
M_ST(cache_cooled)
M_ST(compacted_cells)
M_ST(compact_seconds)
M_ST(parked)
M_ST(store_ram_bytes)
M_ST(store_disk_bytes)
M_ST(store_spills)
M_ST(store_disk_reads)
M_SS(queued)
M_SS(active)
M_SS(preempted_waiting)
M_SS(context_switches)
M_SS(starved)
M_SS(rejected)
static double m_cancelled(const llm_core_stats *st, const sched_stats *ss) {
    return (double)(st->requests_cancelled + ss->cancelled_waiting);
}

static const metric_def METRICS[] = {
    {"aios_requests_total", "counter", "Requests completed successfully.", m_requests_done},
    {"aios_requests_failed_total", "counter", "Requests that ended in an error.", m_requests_failed},
    {"aios_requests_cancelled_total", "counter", "Requests cancelled (client gone), running or waiting.", m_cancelled},
    {"aios_requests_rejected_total", "counter", "Requests refused because the run queue was full.", m_ss_rejected},
    {"aios_prompt_tokens_total", "counter", "Prompt tokens of started requests.", m_prompt_tokens},
    {"aios_tokens_generated_total", "counter", "Tokens generated (each exactly once, also across preemption).",
     m_completion_tokens},
    {"aios_decode_steps_total", "counter", "llama_decode calls.", m_decode_steps},
    {"aios_batch_tokens_total", "counter", "Tokens over all decode steps.", m_batch_tokens},
    {"aios_engine_busy_seconds_total", "counter", "Seconds spent in llama_decode.", m_busy_seconds},
    {"aios_queue_length", "gauge", "Requests waiting (new and preempted).", m_ss_queued},
    {"aios_preempted_waiting", "gauge", "Preempted requests waiting to resume.", m_ss_preempted_waiting},
    {"aios_active_sequences", "gauge", "Requests in the engine.", m_ss_active},
    {"aios_kv_reserved_cells", "gauge", "KV cells reserved by running requests (prompt + max_tokens).", m_kv_reserved},
    {"aios_kv_used_cells", "gauge", "KV cells accounted in all, shared cells once.", m_kv_used},
    {"aios_kv_cached_cells", "gauge", "KV cells held by cached prefixes and conversations.", m_kv_cached},
    {"aios_context_switches_total", "counter", "Preemptions: a running generation saved and sent back to the queue.",
     m_ss_context_switches},
    {"aios_starved_total", "counter",
     "Turns that waited past the starvation bound of the agent policy (scheduler.starve_factor).", m_ss_starved},
    {"aios_snapshots_total", "counter", "KV snapshots taken (preemption, cache eviction).", m_snapshots},
    {"aios_snapshot_bytes_total", "counter", "Bytes of KV snapshots taken.", m_snapshot_bytes},
    {"aios_snapshot_seconds_total", "counter", "Time spent taking snapshots.", m_snapshot_seconds},
    {"aios_restores_total", "counter", "KV snapshots restored.", m_restores},
    {"aios_restore_seconds_total", "counter", "Time spent restoring snapshots.", m_restore_seconds},
    {"aios_snapshot_failures_total", "counter", "Snapshots refused (store budgets full).", m_snapshot_failures},
    {"aios_parks_total", "counter", "Preemptions that left the KV in place (moved to a spare sequence id, no copy).", m_parks},
    {"aios_parked_sequences", "gauge", "Preempted generations whose KV is parked in place.", m_parked},
    {"aios_kv_compactions_total", "counter",
     "Repacks of the KV cache that closed holes in the attention view (context.compact_min_cells).", m_compactions},
    {"aios_kv_compacted_cells_total", "counter", "Cells moved by KV compactions.", m_compacted_cells},
    {"aios_kv_compact_seconds_total", "counter", "Time spent compacting the KV cache.", m_compact_seconds},
    {"aios_text_resumes_total", "counter", "Preemptions saved as text (tokens) rather than KV.", m_text_resumes},
    {"aios_snapshot_ram_bytes", "gauge", "Snapshot bytes held in memory.", m_store_ram_bytes},
    {"aios_snapshot_disk_bytes", "gauge", "Snapshot bytes spilled to disk.", m_store_disk_bytes},
    {"aios_snapshot_spills_total", "counter", "Snapshots moved from memory to disk.", m_store_spills},
    {"aios_snapshot_disk_reads_total", "counter", "Snapshots read back from disk.", m_store_disk_reads},
    {"aios_prefill_tokens_computed_total", "counter", "Prompt (and resume) tokens computed by llama_decode.", m_prefill_computed},
    {"aios_prefill_tokens_reused_total", "counter", "Prompt tokens taken from the prefix / conversation cache instead.",
     m_prefill_reused},
    {"aios_cache_hits_total", "counter", "Requests that reused a cached prefix.", m_cache_hits},
    {"aios_cache_evictions_total", "counter", "Resident cache entries evicted (to a snapshot or dropped).", m_cache_evictions},
    {"aios_cache_dropped_total", "counter", "Cache entries evicted without a snapshot.", m_cache_dropped},
    {"aios_cache_cooled_total", "counter", "Idle cached conversations moved out of the KV cache to snapshots (context.cold_ms).",
     m_cache_cooled},
    {"aios_cache_resident_entries", "gauge", "Cache entries resident in the KV cache.", m_cache_resident},
    {"aios_cache_snapshot_entries", "gauge", "Cache entries kept as snapshots.", m_cache_snapshots},
    {"aios_prefix_verify_ok_total", "counter", "Reused prefixes found byte-identical to a solo prefill (context.verify_prefix).",
     m_verify_ok},
    {"aios_prefix_verify_mismatch_total", "counter", "Reused prefixes that differed from a solo prefill.", m_verify_mismatch},
};
#define N_METRICS (sizeof METRICS / sizeof METRICS[0])

/* A Prometheus label value, escaped. */
static void label_value(strbuf *b, const char *v) {
    for (const char *c = v; *c; c++)
        sb_printf(b, "%s", *c == '"' ? "\\\"" : *c == '\\' ? "\\\\" : *c == '\n' ? "\\n" : (char[2]){*c, 0});
}

typedef struct agent_lines {
    strbuf *b;
    const char *model, *policy;
    bool window;
} agent_lines;

static void metric_agent(const char *agent, unsigned long long total, unsigned long long window, void *ud) {
    agent_lines *al = ud;
    sb_printf(al->b, "%s{model=\"%s\",policy=\"%s\",agent=\"",
              al->window ? "aios_agent_service_window_tokens" : "aios_agent_service_tokens_total", al->model, al->policy);
    label_value(al->b, agent);
    sb_printf(al->b, "\"} %llu\n", al->window ? window : total);
}

/* One series per endpoint of each remote model. */
static void metrics_endpoints(strbuf *b, int n, const llm_core_info *info, const llm_core_stats *st) {
    static const struct {
        const char *name, *type, *help;
    } EP[] = {
        {"aios_endpoint_up", "gauge",
         "1 when the endpoint takes requests (up or suspect), 0 when probing or down (breaker open)."},
        {"aios_endpoint_outstanding", "gauge", "Requests upstream on the endpoint."},
        {"aios_endpoint_requests_total", "counter", "Requests sent to the endpoint (retries included)."},
        {"aios_endpoint_failures_total", "counter", "Requests and health checks of the endpoint that failed."},
        {"aios_endpoint_breaker_opens_total", "counter", "Times the endpoint's circuit breaker opened."},
    };
    for (size_t k = 0; k < sizeof EP / sizeof EP[0]; k++) {
        sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", EP[k].name, EP[k].help, EP[k].name, EP[k].type);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < st[i].n_endpoints; j++) {
                const llm_endpoint_stats *e = &st[i].endpoints[j];
                double v = k == 0 ? (!strcmp(e->state, "up") || !strcmp(e->state, "suspect"))
                    : k == 1      ? e->outstanding
                    : k == 2      ? (double)e->requests
                    : k == 3      ? (double)e->failures
                                  : (double)e->breaker_opens;
                sb_printf(b, "%s{model=\"%s\",endpoint=\"%s\"} %.17g\n", EP[k].name, info[i].name, e->url, v);
            }
    }
}

/* The process's memory and descriptors (kern_mem_stats, SQLite's own count): first in the
 * answer, so a reader that keeps only its head (bench/soak.c) has them. */
static void metrics_process(strbuf *b) {
    kern_mem_stats m;
    kern_mem_stats_get(&m);
    const struct {
        const char *name, *help;
        double v;
    } g[] = {
        {"aios_process_resident_bytes", "Resident memory of the kernel process.", (double)m.resident},
        {"aios_process_open_fds", "Open file descriptors of the kernel process.", (double)m.fds},
        {"aios_heap_live_bytes", "Bytes in live allocations (glibc mallinfo2; 0 under a sanitizer).", (double)m.heap_live},
        {"aios_heap_free_bytes", "Free bytes the allocator holds in its arenas (fragmentation when it grows).",
         (double)m.heap_free},
        {"aios_sqlite_memory_bytes", "Bytes SQLite holds, every database together (page caches, statements).",
         (double)sdb_memory_used()},
    };
    for (size_t k = 0; k < sizeof g / sizeof g[0]; k++) api_metric_unlabelled(b, g[k].name, "gauge", g[k].help, g[k].v);
}

/* aios_budget_limit and aios_budget_used per budget and limit. */
static void metrics_budgets(api_req *r, strbuf *b) {
    cJSON *all = access_budgets_json(api_access(r));
    for (int k = 0; k < 2; k++) {
        sb_printf(b,
                  k ? "# HELP aios_budget_used Use of each budget in its current window.\n# TYPE aios_budget_used gauge\n"
                    : "# HELP aios_budget_limit Each budget's limits.\n# TYPE aios_budget_limit gauge\n");
        for (const cJSON *o = all ? all->child : NULL; o; o = o->next) {
            const cJSON *who = o->child; /* agent or group */
            const char *model = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "model"));
            for (const cJSON *l = who->next->next; l; l = l->next) {
                sb_printf(b, "%s{%s=\"", k ? "aios_budget_used" : "aios_budget_limit", who->string);
                label_value(b, who->valuestring);
                sb_printf(b, "\",model=\"");
                label_value(b, model);
                sb_printf(b, "\",limit=\"%s\"} %.17g\n", l->string,
                          cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(l, k ? "used" : "limit")));
            }
        }
    }
    cJSON_Delete(all);
}

/* aios_step_*: the engine steps of each local model (llm_step_hist), as histograms: one
 * series per llm_step_hist in [first, last] (the seconds: one per phase, labelled). */
static void metrics_steps(strbuf *b, int n, const llm_core_info *info, const sched_stats *ss, const llm_core_stats *st) {
    static const struct {
        const char *name, *help;
        llm_step_hist first, last;
    } S[] = {
        {"aios_step_seconds", "Seconds of each phase of an engine step (one llama_decode): decode, sample, schedule, switch.",
         LLM_STEP_DECODE_S, LLM_STEP_SWITCH_S},
        {"aios_step_batch_tokens", "Tokens in an engine step's batch.", LLM_STEP_TOKENS, LLM_STEP_TOKENS},
        {"aios_step_batch_sequences", "Sequences in an engine step's batch.", LLM_STEP_SEQS, LLM_STEP_SEQS},
        {"aios_step_kv_cells", "KV cells resident at an engine step: the least its attention view spans.", LLM_STEP_KV_CELLS,
         LLM_STEP_KV_CELLS},
        {"aios_step_context_cells", "The own contexts of an engine step's sequences, summed: the cells it needs to attend to.",
         LLM_STEP_OWN_CELLS, LLM_STEP_OWN_CELLS},
    };
    for (size_t k = 0; k < sizeof S / sizeof S[0]; k++) {
        sb_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", S[k].name, S[k].help, S[k].name);
        for (int i = 0; i < n; i++) {
            if (!st[i].step[0].n) continue; /* a remote model has no engine steps */
            for (int h = S[k].first; h <= (int)S[k].last; h++) {
                char labels[300];
                int len = snprintf(labels, sizeof labels, "model=\"%.200s\",policy=\"%s\"", info[i].name, ss[i].policy);
                if (S[k].first != S[k].last)
                    snprintf(labels + len, sizeof labels - (size_t)len, ",phase=\"%s\"", LLM_STEP_NAMES[h]);
                api_metric_hist(b, S[k].name, labels, &st[i].step[h]);
            }
        }
    }
}

static enum MHD_Result h_metrics(api_req *r, cJSON *body) {
    (void)body;
    int n = api_n_cores(r);
    llm_core_info info[AIOS_MAX_MODELS];
    sched_stats ss[AIOS_MAX_MODELS];
    llm_core_stats *st = calloc(AIOS_MAX_MODELS, sizeof *st); /* with endpoints: too big for a stack */
    if (!st) return api_reply_error(r, AIOS_ERR_NOMEM, NULL);
    for (int i = 0; i < n; i++) core_snapshot(r, i, &info[i], &st[i], &ss[i]);
    strbuf b;
    sb_init(&b, 0);
    sb_printf(&b, "# TYPE aios_uptime_seconds gauge\naios_uptime_seconds %.3f\n", api_uptime(r));
    metrics_process(&b);
    for (size_t k = 0; k < N_METRICS; k++) {
        sb_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", METRICS[k].name, METRICS[k].help, METRICS[k].name, METRICS[k].type);
        for (int i = 0; i < n; i++)
            sb_printf(&b, "%s{model=\"%s\",policy=\"%s\"} %.17g\n", METRICS[k].name, info[i].name, ss[i].policy,
                      METRICS[k].get(&st[i], &ss[i]));
    }
    for (int w = 0; w < 2; w++) {
        sb_printf(
            &b,
            w ? "# HELP aios_agent_service_window_tokens Tokens of service per agent in the current fair-share window.\n# TYPE aios_agent_service_window_tokens gauge\n"
              : "# HELP aios_agent_service_tokens_total Tokens of service (prefill + generation) per agent.\n# TYPE aios_agent_service_tokens_total counter\n");
        for (int i = 0; i < n; i++) {
            agent_lines al = {&b, info[i].name, ss[i].policy, w == 1};
            llm_core_foreach_agent(api_core_at(r, i), metric_agent, &al);
        }
    }
    metrics_endpoints(&b, n, info, st);
    metrics_steps(&b, n, info, ss, st);
    metrics_budgets(r, &b);
    api_metrics_mem(r, &b);
    api_metrics_tools(r, &b);
    api_metrics_http(r, &b);
    enum MHD_Result ret = b.oom ? api_reply_error(r, AIOS_ERR_NOMEM, "no memory for the metrics")
                                : api_reply_text(r, 200, "text/plain; version=0.0.4", b.data ? b.data : "");
    sb_free(&b);
    free(st);
    return ret;
}

const api_route api_routes_aios[] = {
    {"POST", "/query", h_query, true, API_GATE_SYSCALL, plan_query, API_DOOR_AIOS},
    {"GET", "/status", h_status, false, API_GATE_AGENT, NULL, API_DOOR_AIOS},
    {"GET", "/health", h_health, false, API_GATE_PUBLIC, NULL, API_DOOR_AIOS},
    {"GET", "/core/llms/list", h_llms_list, false, API_GATE_AGENT, NULL, API_DOOR_AIOS},
    {"GET", "/metrics", h_metrics, false, API_GATE_AGENT, NULL, API_DOOR_AIOS},
    {NULL, NULL, NULL, false, API_GATE_ADMIN, NULL, API_DOOR_AIOS},
};
