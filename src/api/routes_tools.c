/*
 * routes_tools.c - the tool and admin surface: the tool kind of POST /query, the calls of
 * an LLM answer under action_type call_tool, GET /v1/tools, the admin API for identities
 * and approvals (/admin/...), and the tool series of /metrics.
 *
 * Every call of a request is checked before any runs: the tool exists (404), its
 * parameters match its schema (400), the agent may call it (403). Then all calls start at
 * once (each limited only by its own tool's max_parallel) and the answer carries every
 * result. One call that fails answers with its status (408 timeout, 413 output cut,
 * 502 tool failed, 403 denied approval); with several, each result carries its own.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "chat.h"

/* ---------- building and answering batches ---------- */

/* calls[i] = {"name", "parameters", optional "id"}, names as the tools are named. */
static int build_batch(api_req *r, const cJSON *calls, tool_batch **out, char *err, size_t errlen) {
    int n = cJSON_GetArraySize(calls), max = api_cfg(r)->tools.max_calls;
    if (!cJSON_IsArray(calls) || n == 0) {
        snprintf(err, errlen, "'tool_calls' must be a non-empty list of {\"name\", \"parameters\"}");
        return AIOS_ERR_INVALID;
    }
    if (n > max) {
        snprintf(err, errlen, "%d tool calls exceed tools.max_calls (%d)", n, max);
        return AIOS_ERR_INVALID;
    }
    tool_batch *b = tool_batch_new(r->agent, n);
    if (!b) return AIOS_ERR_NOMEM;
    int i = 0, rc = AIOS_OK;
    for (const cJSON *c = calls->child; c && !rc; c = c->next, i++) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(c, "name");
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(c, "parameters");
        if (!params) params = cJSON_GetObjectItemCaseSensitive(c, "arguments");
        if (!cJSON_IsObject(c) || !cJSON_IsString(name) || strlen(name->valuestring) >= TOOL_NAME_MAX) {
            snprintf(err, errlen, "tool_calls[%d]: needs a 'name' (string of under %d bytes)", i, TOOL_NAME_MAX);
            rc = AIOS_ERR_INVALID;
            break;
        }
        tool_call *tc = &b->calls[i];
        snprintf(tc->name, sizeof tc->name, "%s", name->valuestring);
        snprintf(tc->id, sizeof tc->id, "call_%d", i);
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "id");
        if (cJSON_IsString(id)) snprintf(tc->id, sizeof tc->id, "%s", id->valuestring);
        tc->params = params && !cJSON_IsNull(params) ? cJSON_Duplicate(params, 1) : cJSON_CreateObject();
        rc = tools_validate(api_tools(r), tc->name, tc->params, err, errlen);
    }
    if (rc) tool_batch_free(b);
    else *out = b;
    return rc;
}

static cJSON *call_json(const tool_call *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", c->name);
    cJSON_AddStringToObject(o, "id", c->id);
    cJSON_AddNumberToObject(o, "status_code", aios_http_status(c->rc));
    if (c->output_json && !c->rc) {
        cJSON *j = cJSON_Parse(c->output);
        kern_json_add(o, "result", j ? j : cJSON_CreateString(c->output));
    } else cJSON_AddStringToObject(o, "result", c->output ? c->output : "");
    if (c->rc) {
        cJSON *e = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(e, "code", aios_errcode(c->rc));
        cJSON_AddStringToObject(e, "message", c->err);
    } else cJSON_AddNullToObject(o, "error");
    cJSON_AddBoolToObject(o, "truncated", c->truncated);
    cJSON_AddNumberToObject(o, "seconds", c->seconds);
    return o;
}

static enum MHD_Result tools_done(api_req *r) {
    syscall_t *sc = r->sc;
    if (sc->result) return api_reply_error(r, sc->result, "%s", sc->errmsg);
    tool_batch *b = sc->args;
    cJSON *resp = cJSON_CreateObject(), *results = cJSON_CreateArray();
    int failed = 0, first_bad = -1;
    for (int i = 0; i < b->n; i++) {
        kern_json_push(results, call_json(&b->calls[i]));
        if (b->calls[i].rc) failed++, first_bad = first_bad < 0 ? i : first_bad;
    }
    cJSON_AddStringToObject(resp, "response_class", "tool");
    if (b->n == 1) cJSON_AddStringToObject(resp, "response_message", b->calls[0].output ? b->calls[0].output : "");
    else {
        char *txt = cJSON_PrintUnformatted(results);
        cJSON_AddStringToObject(resp, "response_message", txt ? txt : "[]");
        free(txt);
    }
    kern_json_add(resp, "tool_results", results);
    cJSON_AddBoolToObject(resp, "finished", true);
    if (b->n == 1 && failed) { /* one call: its status is the answer's */
        const tool_call *c = &b->calls[0];
        cJSON *e = api_error_json(c->rc, c->err);
        kern_json_add(e, "response", resp);
        log_debug("tool %s for %s -> %d: %s", c->name, b->agent, aios_http_status(c->rc), c->err);
        return api_reply_json(r, aios_http_status(c->rc), e);
    }
    if (failed) {
        char msg[700];
        snprintf(msg, sizeof msg, "%d of %d tool calls failed; first: %s", failed, b->n, b->calls[first_bad].err);
        cJSON_AddStringToObject(resp, "error", msg);
    } else cJSON_AddNullToObject(resp, "error");
    cJSON_AddNumberToObject(resp, "status_code", 200);
    return api_reply_json(r, 200, api_envelope(sc, resp));
}

static enum MHD_Result start_batch(api_req *r, tool_batch *b, syscall_t *prev) {
    syscall_t *sc = syscall_new(SYSCALL_KIND_TOOL, r->agent, b, tool_batch_free, 0); /* (on failure it has freed b) */
    if (!sc) return api_reply_error(r, AIOS_ERR_NOMEM, NULL);
    /* queued by this priority in the tool run queue; call_tool keeps its LLM call's */
    sc->priority = prev ? prev->priority : r->priority >= 0 ? r->priority : config_agent_priority(api_cfg(r), r->agent);
    if (prev) { /* call_tool: the answer's timings cover the LLM's rounds and the tools' */
        pthread_mutex_lock(&prev->mu);
        sc->n_rounds = prev->n_rounds;
        memcpy(sc->round_start, prev->round_start, sizeof sc->round_start);
        memcpy(sc->round_end, prev->round_end, sizeof sc->round_end);
        sc->t_created = prev->t_created;
        sc->wall_created = prev->wall_created;
        pthread_mutex_unlock(&prev->mu);
    }
    return api_run_tools(r, sc, tools_done);
}

/* One claim per call, with its parameters for the audit line. A malformed entry is left for
 * build_batch to report. */
int api_plan_tool_calls(api_req *r, const cJSON *qd, api_admission *a, char *err, size_t errlen) {
    const cJSON *calls = cJSON_GetObjectItemCaseSensitive(qd, "tool_calls");
    int rc = AIOS_OK, max = api_cfg(r)->tools.max_calls;
    if (cJSON_GetArraySize(calls) > max) { /* bounded before anything is claimed */
        snprintf(err, errlen, "%d tool calls exceed tools.max_calls (%d)", cJSON_GetArraySize(calls), max);
        return AIOS_ERR_INVALID;
    }
    for (const cJSON *c = cJSON_IsArray(calls) ? calls->child : NULL; c && !rc; c = c->next) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(c, "name");
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(c, "parameters");
        if (!params) params = cJSON_GetObjectItemCaseSensitive(c, "arguments");
        if (cJSON_IsString(name)) rc = api_claim_tool(r, a, name->valuestring, params);
    }
    return rc;
}

enum MHD_Result api_query_tool(api_req *r, const cJSON *qd) {
    if (!api_tools(r)) return api_reply_error(r, AIOS_ERR_NOT_IMPLEMENTED, "the tool manager is not running");
    char err[512] = "";
    tool_batch *b = NULL;
    int rc = build_batch(r, cJSON_GetObjectItemCaseSensitive(qd, "tool_calls"), &b, err, sizeof err);
    if (rc) return api_reply_error(r, rc, "%s", err);
    return start_batch(r, b, NULL);
}

enum MHD_Result api_run_model_tool_calls(api_req *r, cJSON *calls) {
    char err[512] = "";
    tool_batch *b = NULL;
    if (!cJSON_IsArray(calls) || !calls->child) { /* nothing to run: the answer says so */
        cJSON_Delete(calls);
        /* the grammar makes every complete output a call: an incomplete one was cut short */
        bool cut = llm_request_finish(r->sc->args) == LLM_FINISH_LENGTH;
        cJSON *resp = cJSON_CreateObject();
        cJSON_AddStringToObject(resp, "response_class", "tool");
        cJSON_AddStringToObject(resp, "response_message",
                                cut ? "the model's tool call was cut at max_new_tokens before it was complete; nothing ran"
                                    : "the model made no tool call");
        cJSON_AddArrayToObject(resp, "tool_results");
        cJSON_AddBoolToObject(resp, "finished", true);
        if (cut) cJSON_AddStringToObject(resp, "error", "tool call cut at max_new_tokens: raise max_new_tokens");
        else cJSON_AddNullToObject(resp, "error");
        cJSON_AddNumberToObject(resp, "status_code", 200);
        return api_reply_json(r, 200, api_envelope(r->sc, resp));
    }
    int rc = build_batch(r, calls, &b, err, sizeof err);
    cJSON_Delete(calls);
    if (rc) return api_reply_error(r, rc, "%s", err);
    return start_batch(r, b, r->sc);
}

/* ---------- GET /v1/tools ---------- */

static enum MHD_Result h_tools(api_req *r, cJSON *body) {
    (void)body;
    if (!api_tools(r)) return api_reply_error(r, AIOS_ERR_NOT_IMPLEMENTED, "the tool manager is not running");
    return api_reply_json(r, 200, tools_list_json(api_tools(r)));
}

/* ---------- admin ---------- */

static enum MHD_Result h_agents_list(api_req *r, cJSON *body) {
    (void)body;
    cJSON *o = cJSON_CreateObject();
    kern_json_add(o, "agents", access_identities_json(api_access(r)));
    return api_reply_json(r, 200, o);
}

static enum MHD_Result h_agents_create(api_req *r, cJSON *body) {
    char err[256] = "", token[80];
    const char *name = NULL, *group = NULL;
    bool keep = false;
    int rc = jp_string(body, "name", true, &name, err, sizeof err);
    if (!rc) rc = jp_string(body, "group", false, &group, err, sizeof err);
    if (!rc) rc = jp_bool(body, "keep_data", &keep, err, sizeof err);
    if (!rc) rc = access_identity_create(api_access(r), name, group, keep, token, sizeof token, err, sizeof err);
    if (rc) return api_reply_error(r, rc, "%s", err);
    char g[AIOS_NAME_MAX];
    access_agent_group(api_access(r), name, g, sizeof g);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddStringToObject(o, "group", g);
    cJSON_AddStringToObject(o, "token", token);
    cJSON_AddStringToObject(o, "note", "the token is shown only now; the kernel keeps only its SHA-256");
    return api_reply_json(r, 201, o);
}

static enum MHD_Result h_agents_revoke(api_req *r, cJSON *body) {
    char err[256] = "";
    const char *name = NULL;
    int rc = jp_string(body, "name", true, &name, err, sizeof err);
    if (!rc) rc = access_identity_revoke(api_access(r), name, err, sizeof err);
    if (rc) return api_reply_error(r, rc, "%s", err);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddBoolToObject(o, "revoked", true);
    return api_reply_json(r, 200, o);
}

static enum MHD_Result h_approvals(api_req *r, cJSON *body) {
    (void)body;
    cJSON *o = cJSON_CreateObject();
    kern_json_add(o, "approvals", access_approvals_json(api_access(r)));
    return api_reply_json(r, 200, o);
}

static enum MHD_Result h_decide(api_req *r, cJSON *body) {
    char err[256] = "";
    long id = 0;
    const char *decision = NULL;
    int rc = jp_int(body, "id", 1, 1L << 62, &id, err, sizeof err);
    if (!rc && !cJSON_GetObjectItemCaseSensitive(body, "id")) {
        snprintf(err, sizeof err, "'id' is required");
        rc = AIOS_ERR_INVALID;
    }
    if (!rc) rc = jp_string(body, "decision", true, &decision, err, sizeof err);
    if (!rc && strcmp(decision, "approve") && strcmp(decision, "deny")) {
        snprintf(err, sizeof err, "'decision' must be \"approve\" or \"deny\"");
        rc = AIOS_ERR_INVALID;
    }
    if (!rc) rc = access_decide(api_access(r), (uint64_t)id, !strcmp(decision, "approve"), r->agent, err, sizeof err);
    if (rc) return api_reply_error(r, rc, "%s", err);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", (double)id);
    cJSON_AddStringToObject(o, "decision", decision);
    return api_reply_json(r, 200, o);
}

/* ---------- /metrics ---------- */

void api_metrics_tools(api_req *r, strbuf *b) {
    if (!api_tools(r)) return;
    tool_stats st;
    tools_get_stats(api_tools(r), &st);
    const struct {
        const char *name, *type, *help;
        double v;
    } M[] = {
        {"aios_tool_calls_total", "counter", "Tool calls run (any outcome).", (double)st.calls},
        {"aios_tool_calls_failed_total", "counter", "Tool calls that ended in an error.", (double)st.failed},
        {"aios_tool_timeouts_total", "counter", "Tool calls killed at their timeout.", (double)st.timeouts},
        {"aios_tool_truncated_total", "counter", "Tool calls whose output was cut at tools.max_output_bytes.",
         (double)st.truncated},
        {"aios_tool_rejected_total", "counter", "Tool requests refused because tools.max_pending calls were pending.",
         (double)st.rejected},
        {"aios_tool_running", "gauge", "Tool calls running now.", (double)st.running},
        {"aios_tool_queued", "gauge", "Tool calls waiting for a slot of their tool.", (double)st.queued},
        {"aios_tools", "gauge", "Tools in the table.", (double)st.tools},
        {"aios_tool_reloads_total", "counter", "Tool table rebuilds (manifest changes, MCP listings).", (double)st.reloads},
        {"aios_mcp_restarts_total", "counter", "MCP server restarts.", (double)st.mcp_restarts},
    };
    for (size_t i = 0; i < sizeof M / sizeof M[0]; i++) api_metric_unlabelled(b, M[i].name, M[i].type, M[i].help, M[i].v);
}

const api_route api_routes_tools[] = {
    {"GET", "/v1/tools", h_tools, false, API_GATE_AGENT, NULL, API_DOOR_OPENAI},
    {"GET", "/admin/agents", h_agents_list, false, API_GATE_ADMIN, NULL, API_DOOR_ADMIN},
    {"POST", "/admin/agents", h_agents_create, true, API_GATE_ADMIN, NULL, API_DOOR_ADMIN},
    {"POST", "/admin/agents/revoke", h_agents_revoke, true, API_GATE_ADMIN, NULL, API_DOOR_ADMIN},
    {"GET", "/admin/approvals", h_approvals, false, API_GATE_ADMIN, NULL, API_DOOR_ADMIN},
    {"POST", "/admin/approvals/decide", h_decide, true, API_GATE_ADMIN, NULL, API_DOOR_ADMIN},
    {NULL, NULL, NULL, false, API_GATE_ADMIN, NULL, API_DOOR_AIOS},
};
