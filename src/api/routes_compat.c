/*
 * routes_compat.c - the AIOS kernel's own endpoints besides /query (issue 14, part 5), so
 * Cerebrum-era clients (its TUI and web UI, agent_repl) find what they call, with the
 * meaning they have in the Python AIOS where it is sensible here:
 *   GET  /core/status          {component: "active"|"inactive"} for llms, memory, storage,
 *                              tool, scheduler, access (AIOS's shape)
 *   GET  /core/llms/check      which LLM cores are up: {"status","llms":[{name, backend,
 *                              state, available}]}
 *   POST /user/select/llms     [{"name","backend"|"provider"}]: the LLMs /query uses when its
 *                              `llms` is null, and the only ones it may name (an empty list
 *                              clears it): {"status":"success"|"warning","message"}
 *   GET  /user/selected/llms   the selection: {"status","message","llms"}
 *   POST /core/cleanup         admin: AIOS stops every component; here the kernel shuts down
 *                              in order (as on SIGTERM) once the answer is sent
 * The selection is the kernel's, as in AIOS (one user's choice for every agent); changing it
 * is an admin action under access.mode: enforce.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "api_internal.h"

static enum MHD_Result h_core_status(api_req *r, cJSON *body) {
    (void)body;
    cJSON *o = cJSON_CreateObject();
    bool llms = api_n_cores(r) > 0 && api_ready(r);
    cJSON_AddStringToObject(o, "llms", llms ? "active" : "inactive");
    cJSON_AddStringToObject(o, "memory", api_mem(r) ? "active" : "inactive");
    cJSON_AddStringToObject(o, "storage", api_storage(r) ? "active" : "inactive");
    cJSON_AddStringToObject(o, "tool", api_tools(r) ? "active" : "inactive");
    cJSON_AddStringToObject(o, "scheduler", "active");
    cJSON_AddStringToObject(o, "access", api_access(r) ? "active" : "inactive");
    return api_reply_json(r, 200, o);
}

static enum MHD_Result h_llms_check(api_req *r, cJSON *body) {
    (void)body;
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    int up = 0;
    for (int i = 0; i < api_n_cores(r); i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "name", api_cfg(r)->llms.models[i].name);
        api_model_fields(r, i, m);
        const char *state = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "state"));
        bool ok = state && !strcmp(state, "ready");
        up += ok;
        cJSON_AddBoolToObject(m, "available", ok);
        kern_json_push(arr, m);
    }
    cJSON_AddStringToObject(o, "status", up ? "success" : "warning");
    cJSON_AddNumberToObject(o, "available", up);
    kern_json_add(o, "llms", arr);
    return api_reply_json(r, 200, o);
}

/* "LLMs [a, b] selected" or the warning AIOS gives for none. */
static enum MHD_Result selection_answer(api_req *r) {
    char sel[AIOS_MAX_MODELS][AIOS_NAME_MAX];
    int n = api_selected_llms(r, sel, AIOS_MAX_MODELS);
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    char msg[AIOS_MAX_MODELS * (AIOS_NAME_MAX + 2) + 32];
    size_t len = (size_t)snprintf(msg, sizeof msg, n ? "LLMs [" : "No LLM selected");
    for (int i = 0; i < n; i++) {
        kern_json_push(arr, cJSON_CreateString(sel[i]));
        len += (size_t)snprintf(msg + len, sizeof msg - len, "%s%s", i ? ", " : "", sel[i]);
    }
    if (n) snprintf(msg + len, sizeof msg - len, "] selected");
    cJSON_AddStringToObject(o, "status", n ? "success" : "warning");
    cJSON_AddStringToObject(o, "message", msg);
    kern_json_add(o, "llms", arr);
    return api_reply_json(r, 200, o);
}

static enum MHD_Result h_select(api_req *r, cJSON *body) {
    (void)body; /* the body is a JSON array, read here (json_body takes objects only) */
    cJSON *list = cJSON_ParseWithLength(r->body.data ? r->body.data : "", r->body.len);
    const char *names[AIOS_MAX_MODELS];
    int n = 0;
    const char *bad = !cJSON_IsArray(list)           ? "the body must be a JSON array of {\"name\", \"backend\"}"
        : cJSON_GetArraySize(list) > AIOS_MAX_MODELS ? "at most 16 LLMs"
                                                     : NULL;
    for (const cJSON *l = bad ? NULL : list->child; l && !bad; l = l->next) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(l, "name");
        if (!cJSON_IsString(name)) bad = "each entry needs a string 'name'";
        else if (!api_core(r, name->valuestring)) {
            char known[512];
            api_models_known(r, known, sizeof known);
            enum MHD_Result ret = api_reply_error(
                r, AIOS_ERR_NOT_FOUND, "llm '%.128s' is not served here; this kernel serves: %s", name->valuestring, known);
            cJSON_Delete(list);
            return ret;
        } else {
            names[n++] = name->valuestring;
        }
    }
    if (bad) {
        cJSON_Delete(list);
        return api_reply_error(r, AIOS_ERR_INVALID, "%s", bad);
    }
    api_select_llms(r, names, n);
    cJSON_Delete(list);
    return selection_answer(r);
}

static enum MHD_Result h_selected(api_req *r, cJSON *body) {
    (void)body;
    return selection_answer(r);
}

static enum MHD_Result h_cleanup(api_req *r, cJSON *body) {
    (void)body;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "success");
    cJSON_AddStringToObject(o, "message", "All components are stopping: the kernel shuts down in order (as on SIGTERM)");
    enum MHD_Result ret = api_reply_json(r, 200, o);
    log_warn("POST /core/cleanup by '%s': shutting down", r->agent[0] ? r->agent : "a local client");
    kill(getpid(), SIGTERM); /* the main thread takes it (sigwait) and stops everything in order */
    return ret;
}

const api_route api_routes_compat[] = {
    {"GET", "/core/status", h_core_status, false, API_GATE_AGENT, NULL, API_DOOR_AIOS},
    {"GET", "/core/llms/check", h_llms_check, false, API_GATE_AGENT, NULL, API_DOOR_AIOS},
    {"POST", "/user/select/llms", h_select, false, API_GATE_ADMIN, NULL, API_DOOR_AIOS},
    {"GET", "/user/selected/llms", h_selected, false, API_GATE_AGENT, NULL, API_DOOR_AIOS},
    {"POST", "/core/cleanup", h_cleanup, false, API_GATE_ADMIN, NULL, API_DOOR_AIOS},
    {NULL, NULL, NULL, false, API_GATE_ADMIN, NULL, API_DOOR_AIOS},
};
