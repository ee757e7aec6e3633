/*
 * routes_agents.c - agents as processes (src/agents; docs/agents.md), admin routes:
 *   POST /agents                 start one from a native spec -> 201 {"id","name","token_agent"}
 *   GET  /agents                 every record, newest first: {"agents": [...]}
 *   GET  /agents/{id}            one record
 *                                (a live agent's also say what it holds now: "kv_cells" on
 *                                every model, "tools_running" / "tools_waiting", "memory"
 *                                {"blocks","resident_bytes"}, "storage" {"files","bytes"})
 *   POST /agents/{id}/stop|cont|kill
 *   GET  /agents/{id}/logs       its output (?tail=BYTES, default 64 KiB); ?follow=1 streams
 *                                it as server-sent events ("log" {"text"}, then "end" with
 *                                how it ended)
 * and the Python AIOS's shapes, unchanged:
 *   POST /agents/submit          {"agent_id", "agent_config": {"task", ...}} ->
 *                                {"status":"success","execution_id","message"}
 *   GET  /agents/{id}/status     {"status":"running"|"completed"|"failed","result"?,"execution_id"}
 *   GET  /agents/ps              {"status":"success","processes":[...]}
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api_internal.h"

#define LOG_TAIL_DEFAULT 65536
#define FOLLOW_BUFFER (4u << 20)

/* The {id} segment of /agents/{id}[/...] into id; false if it is not one. */
static bool url_id(api_req *r, char *id, size_t cap) {
    const char *s = r->url + strlen("/agents/");
    size_t n = strcspn(s, "/");
    if (!n || n >= cap) return false;
    memcpy(id, s, n);
    id[n] = 0;
    return true;
}

static agents_t *agents_or_error(api_req *r) {
    agents_t *a = api_agents(r);
    if (!a) api_reply_error(r, AIOS_ERR_SHUTDOWN, "the kernel is not running agents (starting or shutting down)");
    return a;
}

static enum MHD_Result not_found(api_req *r, const char *id) {
    return api_reply_error(r, AIOS_ERR_NOT_FOUND, "no agent '%.64s' (GET /agents lists them)", id);
}

static enum MHD_Result h_start(api_req *r, cJSON *body) {
    agents_t *a = agents_or_error(r);
    if (!a) return MHD_YES;
    char err[600] = "";
    cJSON *out = NULL;
    int rc = agents_start(a, body, &out, err, sizeof err);
    return rc ? api_reply_error(r, rc, "%s", err) : api_reply_json(r, 201, out);
}

/* What live agent rec holds now, from the other managers: KV cells on every core, tool calls,
 * memory and storage (a finished one holds no KV and runs no tool; its memory and storage
 * stay its identity's, shown while it lives). */
static void add_usage(api_req *r, cJSON *rec) {
    const char *state = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "state"));
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "name"));
    if (!state || !name || (strcmp(state, "running") && strcmp(state, "stopped") && strcmp(state, "starting"))) return;
    int kv = 0;
    for (int i = 0; i < api_n_cores(r); i++) kv += llm_core_agent_kv(api_core_at(r, i), name);
    cJSON_AddNumberToObject(rec, "kv_cells", kv);
    size_t waiting = 0;
    int running = 0;
    if (api_tools(r)) runq_agent_load(tools_runq(api_tools(r)), name, &waiting, &running);
    cJSON_AddNumberToObject(rec, "tools_running", running);
    cJSON_AddNumberToObject(rec, "tools_waiting", (double)waiting);
    long x = 0, y = 0;
    if (api_mem(r)) mem_agent_usage(api_mem(r), name, &x, &y);
    cJSON *m = cJSON_AddObjectToObject(rec, "memory");
    cJSON_AddNumberToObject(m, "blocks", (double)x);
    cJSON_AddNumberToObject(m, "resident_bytes", (double)y);
    x = y = 0;
    if (api_storage(r)) storage_agent_usage(api_storage(r), name, &x, &y);
    cJSON *s = cJSON_AddObjectToObject(rec, "storage");
    cJSON_AddNumberToObject(s, "files", (double)x);
    cJSON_AddNumberToObject(s, "bytes", (double)y);
}

cJSON *api_agents_json(api_req *r) {
    agents_t *a = api_agents(r);
    cJSON *arr = a ? agents_list(a) : cJSON_CreateArray(), *rec;
    cJSON_ArrayForEach(rec, arr) add_usage(r, rec);
    return arr;
}

static enum MHD_Result h_list(api_req *r, cJSON *body) {
    (void)body;
    if (!agents_or_error(r)) return MHD_YES;
    cJSON *o = cJSON_CreateObject();
    kern_json_add(o, "agents", api_agents_json(r));
    return api_reply_json(r, 200, o);
}

static cJSON *get_with_usage(api_req *r, agents_t *a, const char *id) {
    cJSON *o = agents_get(a, id);
    if (o) add_usage(r, o);
    return o;
}

/* GET /agents/{id}[/status]: what get says of it. */
static enum MHD_Result one_agent(api_req *r, bool aios) {
    agents_t *a = agents_or_error(r);
    char id[64];
    if (!a) return MHD_YES;
    if (!url_id(r, id, sizeof id)) return not_found(r, r->url + 8);
    cJSON *o = aios ? agents_aios_status(a, id) : get_with_usage(r, a, id);
    return o ? api_reply_json(r, 200, o) : not_found(r, id);
}

static enum MHD_Result h_get(api_req *r, cJSON *body) {
    (void)body;
    return one_agent(r, false);
}

static enum MHD_Result signal_route(api_req *r, agents_op op) {
    agents_t *a = agents_or_error(r);
    char id[64], err[300] = "";
    if (!a) return MHD_YES;
    if (!url_id(r, id, sizeof id)) return not_found(r, r->url + 8);
    int rc = agents_signal(a, id, op, err, sizeof err);
    if (rc == AIOS_ERR_NOT_FOUND) return not_found(r, id);
    if (rc) return api_reply_error(r, rc, "%s", err);
    cJSON *o = agents_get(a, id);
    return o ? api_reply_json(r, 200, o) : not_found(r, id);
}

static enum MHD_Result h_stop(api_req *r, cJSON *body) {
    (void)body;
    return signal_route(r, AGENTS_STOP);
}
static enum MHD_Result h_cont(api_req *r, cJSON *body) {
    (void)body;
    return signal_route(r, AGENTS_CONT);
}
static enum MHD_Result h_kill(api_req *r, cJSON *body) {
    (void)body;
    return signal_route(r, AGENTS_KILL);
}

/* SSE of a follow: each chunk as {"text"} (invalid UTF-8 bytes as '?'), then how it ended. */
static void follow_stream(api_req *r, const char *delta, size_t n, bool final, strbuf *sse) {
    if (n) {
        char *t = strndup(delta, n);
        if (t) {
            kern_utf8_sanitize(t);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "text", t);
            api_sse_event(sse, "log", o);
            free(t);
        }
    }
    if (final) api_sse_event(sse, "end", agents_end_event(api_agents(r), r->data ? (const char *)r->data : ""));
}

static enum MHD_Result h_logs(api_req *r, cJSON *body) {
    (void)body;
    agents_t *a = agents_or_error(r);
    char id[64];
    if (!a) return MHD_YES;
    if (!url_id(r, id, sizeof id)) return not_found(r, r->url + 8);
    const char *tail_s = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "tail");
    const char *follow = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "follow");
    char *end = NULL;
    long tail = tail_s ? strtol(tail_s, &end, 10) : LOG_TAIL_DEFAULT;
    long max = 2 * api_cfg(r)->procs.log_max_bytes;
    if (tail_s && (end == tail_s || *end || tail < 0 || tail > max))
        return api_reply_error(r, AIOS_ERR_INVALID, "tail must be a byte count in [0, %ld]", max);
    if (follow && strcmp(follow, "0")) {
        syscall_t *sc = syscall_new(SYSCALL_KIND_TOOL, r->agent, NULL, NULL, FOLLOW_BUFFER);
        if (!sc) return api_reply_error(r, AIOS_ERR_NOMEM, NULL);
        int rc = agents_follow(a, id, (size_t)tail, sc);
        if (rc) {
            syscall_unref(sc);
            if (rc == AIOS_ERR_NOT_FOUND) return not_found(r, id);
            return api_reply_error(r, rc, "agent %s has too many followers already", id);
        }
        r->data = strdup(id);
        r->data_free = free;
        return api_follow(r, sc, follow_stream);
    }
    strbuf out;
    sb_init(&out, 0);
    int rc = agents_log_tail(a, id, (size_t)tail, &out);
    enum MHD_Result ret = rc ? not_found(r, id) : api_reply_text(r, 200, "text/plain; charset=utf-8", out.data ? out.data : "");
    sb_free(&out);
    return ret;
}

/* ---- the Python AIOS's shapes ---- */

static enum MHD_Result h_submit(api_req *r, cJSON *body) {
    agents_t *a = agents_or_error(r);
    if (!a) return MHD_YES;
    const char *agent_id = NULL;
    char err[600] = "", id[64];
    const cJSON *config = cJSON_GetObjectItemCaseSensitive(body, "agent_config");
    int rc = jp_string(body, "agent_id", true, &agent_id, err, sizeof err);
    if (!rc && config && !cJSON_IsNull(config) && !cJSON_IsObject(config))
        rc = jp_invalid(err, sizeof err, "'agent_config' must be an object ({\"task\": ...})");
    if (!rc) rc = agents_submit_package(a, agent_id, config, id, sizeof id, err, sizeof err);
    if (rc) return api_reply_error(r, rc, "%s", err);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "success");
    cJSON_AddStringToObject(o, "execution_id", id);
    char msg[200];
    snprintf(msg, sizeof msg, "Agent %.64s submitted", agent_id);
    cJSON_AddStringToObject(o, "message", msg);
    return api_reply_json(r, 200, o);
}

static enum MHD_Result h_status(api_req *r, cJSON *body) {
    (void)body;
    return one_agent(r, true);
}

static enum MHD_Result h_ps(api_req *r, cJSON *body) {
    (void)body;
    agents_t *a = agents_or_error(r);
    if (!a) return MHD_YES;
    cJSON *list = agents_list(a), *procs = cJSON_CreateArray(), *g;
    cJSON_ArrayForEach(g, list) {
        cJSON *p = cJSON_CreateObject();
        const char *pkg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(g, "package"));
        cJSON_AddStringToObject(p, "execution_id", cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(g, "id")));
        cJSON_AddStringToObject(p, "agent_id", pkg ? pkg : cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(g, "name")));
        cJSON_AddStringToObject(p, "agent_name", cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(g, "name")));
        cJSON_AddStringToObject(p, "status", cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(g, "state")));
        cJSON *pid = cJSON_GetObjectItemCaseSensitive(g, "pid");
        if (pid) cJSON_AddNumberToObject(p, "pid", pid->valuedouble);
        cJSON_AddNumberToObject(p, "started", cJSON_GetObjectItemCaseSensitive(g, "started")->valuedouble);
        kern_json_push(procs, p);
    }
    cJSON_Delete(list);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "success");
    kern_json_add(o, "processes", procs);
    return api_reply_json(r, 200, o);
}

/* The specific paths before /agents/{id}: the first route whose path and method match wins. */
const api_route api_routes_agents[] = {
    {"POST", "/agents", h_start, true, API_GATE_ADMIN, NULL, API_DOOR_ADMIN},
    {"GET", "/agents", h_list, false, API_GATE_ADMIN, NULL, API_DOOR_ADMIN},
    {"POST", "/agents/submit", h_submit, true, API_GATE_ADMIN, NULL, API_DOOR_ADMIN},
    {"GET", "/agents/ps", h_ps, false, API_GATE_ADMIN, NULL, API_DOOR_ADMIN},
    {"GET", "/agents/*/status", h_status, false, API_GATE_ADMIN, NULL, API_DOOR_ADMIN},
    {"GET", "/agents/*/logs", h_logs, false, API_GATE_ADMIN, NULL, API_DOOR_ADMIN},
    {"POST", "/agents/*/stop", h_stop, false, API_GATE_ADMIN, NULL, API_DOOR_ADMIN},
    {"POST", "/agents/*/cont", h_cont, false, API_GATE_ADMIN, NULL, API_DOOR_ADMIN},
    {"POST", "/agents/*/kill", h_kill, false, API_GATE_ADMIN, NULL, API_DOOR_ADMIN},
    {"GET", "/agents/*", h_get, false, API_GATE_ADMIN, NULL, API_DOOR_ADMIN},
    {NULL, NULL, NULL, false, API_GATE_ADMIN, NULL, API_DOOR_ADMIN},
};
