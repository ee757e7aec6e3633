/*
 * routes_models.c - models loaded and unloaded at run time (issue 13, part 6), admin only:
 *   GET  /models          every model: backend, state (ready, loading, unloading,
 *                         unloaded, failed, down) and why, load, idle time, settings
 *   POST /models/load     {"name": N}: load an unloaded (or failed) model; 202 while it
 *                         loads (GET /models says when it is ready), 200 if it is.
 *                         {a whole llms.models[] entry}: add a new model (validated with
 *                         the rest of the config, as at start) and load it; 202. It lasts
 *                         until the kernel stops (the config file is not written).
 *   POST /models/unload   {"name": N}: unload it once its work in flight has finished; 202
 * A model's core and run queue stay while it is unloaded: requests to it wait while it is
 * loaded again (load_on_request: 1) or get 503 (load_on_request: 0), and idle_unload_s
 * unloads it by itself (llm.c does the loading and unloading).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api_internal.h"

static enum MHD_Result h_models(api_req *r, cJSON *body) {
    (void)body;
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "models");
    for (int i = 0; i < api_n_cores(r); i++) {
        const aios_model_cfg *m = &api_cfg(r)->llms.models[i];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "name", m->name);
        api_model_fields(r, i, j);
        double idle = 0;
        llm_core_get_state(api_core_at(r, i), NULL, 0, &idle);
        cJSON_AddNumberToObject(j, "idle_s", idle);
        cJSON_AddNumberToObject(j, "idle_unload_s", m->idle_unload_s);
        cJSON_AddBoolToObject(j, "load_on_request", m->load_on_request);
        if (!strcmp(m->backend, "llamacpp")) cJSON_AddStringToObject(j, "path", m->path);
        kern_json_push(arr, j);
    }
    return api_reply_json(r, 200, o);
}

/* The model body's "name" names (a name or an alias), or an error answer. */
static llm_core *named(api_req *r, cJSON *body, int *status, char *err, size_t errlen) {
    const char *name = NULL;
    int rc = jp_string(body, "name", true, &name, err, errlen);
    if (rc) {
        *status = rc;
        return NULL;
    }
    int i = config_model_index(api_cfg(r), name);
    if (i >= 0 && i < api_n_cores(r)) return api_core_at(r, i);
    char known[512];
    api_models_known(r, known, sizeof known);
    snprintf(err, errlen,
             "model '%.128s' does not exist; this kernel serves: %s (a new model is added with its whole "
             "entry: backend, path or hostname, ...)",
             name, known);
    *status = AIOS_ERR_NOT_FOUND;
    return NULL;
}

/* {"name", "state"}: 200 when already there, else 202 (under way). */
static enum MHD_Result state_answer(api_req *r, llm_core *core, llm_core_state goal, llm_core_state now) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", llm_core_name(core));
    cJSON_AddStringToObject(o, "state", llm_core_state_name(now));
    return api_reply_json(r, now == goal ? 200 : 202, o);
}

#define ENTRY_MAX_FIELDS 48

/* One field of a model entry as its config text: a string, a number, a boolean (1/0), or a
 * list of strings or of {hostname} (aliases, endpoints) joined with commas. */
static int field_text(const cJSON *v, char *out, size_t cap) {
    if (cJSON_IsString(v)) return snprintf(out, cap, "%s", v->valuestring) < (int)cap ? 0 : -1;
    if (cJSON_IsBool(v)) return snprintf(out, cap, "%d", cJSON_IsTrue(v)), 0;
    if (cJSON_IsNumber(v)) return snprintf(out, cap, "%.17g", v->valuedouble), 0;
    if (!cJSON_IsArray(v)) return -1;
    size_t len = 0;
    out[0] = 0;
    for (const cJSON *e = v->child; e; e = e->next) {
        const cJSON *h = cJSON_IsObject(e) ? cJSON_GetObjectItemCaseSensitive(e, "hostname") : e;
        if (!cJSON_IsString(h) || strchr(h->valuestring, ',')) return -1;
        len += (size_t)snprintf(out + len, len < cap ? cap - len : 0, "%s%s", len ? "," : "", h->valuestring);
        if (len >= cap) return -1;
    }
    return 0;
}

/* {a whole llms.models[] entry}: a new model, added and loading; 202. */
static enum MHD_Result add_entry(api_req *r, cJSON *body) {
    const char *keys[ENTRY_MAX_FIELDS], *values[ENTRY_MAX_FIELDS];
    char err[768];
    if (cJSON_GetArraySize(body) > ENTRY_MAX_FIELDS)
        return api_reply_error(r, AIOS_ERR_INVALID, "a model entry has at most %d fields", ENTRY_MAX_FIELDS);
    char(*texts)[2048] = calloc(ENTRY_MAX_FIELDS, sizeof *texts);
    if (!texts) return api_reply_error(r, AIOS_ERR_NOMEM, NULL);
    int n = 0;
    for (const cJSON *f = body->child; f; f = f->next, n++) {
        if (field_text(f, texts[n], sizeof texts[n])) {
            free(texts);
            return api_reply_error(r, AIOS_ERR_INVALID,
                                   "field '%.64s': a string, number, boolean or list of strings of "
                                   "at most 2047 bytes",
                                   f->string);
        }
        keys[n] = f->string;
        values[n] = texts[n];
    }
    int i = api_add_model(r, keys, values, n, err, sizeof err);
    free(texts);
    if (i < 0) return api_reply_error(r, i == AIOS_ERR_INVALID && strstr(err, "already names") ? AIOS_ERR_EXISTS : i, "%s", err);
    llm_core *core = api_core_at(r, i);
    return state_answer(r, core, LLM_CORE_READY, llm_core_get_state(core, NULL, 0, NULL));
}

static enum MHD_Result h_load(api_req *r, cJSON *body) {
    if (cJSON_GetArraySize(body) > 1) return add_entry(r, body); /* more than a name: a new model */
    char err[768];
    int rc = 0;
    llm_core *core = named(r, body, &rc, err, sizeof err);
    if (!core) return api_reply_error(r, rc, "%s", err);
    return state_answer(r, core, LLM_CORE_READY, llm_core_load(core));
}

static enum MHD_Result h_unload(api_req *r, cJSON *body) {
    char err[768];
    int rc = 0;
    llm_core *core = named(r, body, &rc, err, sizeof err);
    if (!core) return api_reply_error(r, rc, "%s", err);
    llm_core_state now = llm_core_unload(core);
    if (now == LLM_CORE_LOADING) {
        r->retry_after_s = 1;
        return api_reply_error(r, AIOS_ERR_EXISTS, "model is loading; unload it once it is ready");
    }
    return state_answer(r, core, LLM_CORE_UNLOADED, now);
}

const api_route api_routes_models[] = {
    {"GET", "/models", h_models, false, API_GATE_ADMIN, NULL, API_DOOR_ADMIN},
    {"POST", "/models/load", h_load, true, API_GATE_ADMIN, NULL, API_DOOR_ADMIN},
    {"POST", "/models/unload", h_unload, true, API_GATE_ADMIN, NULL, API_DOOR_ADMIN},
    {NULL, NULL, NULL, false, API_GATE_ADMIN, NULL, API_DOOR_ADMIN},
};
