/*
 * json.c - typed access to request fields with errors that name the field, so every bad
 * input gets a precise 400 instead of a crash or a silent default.
 */
#include <math.h>
#include <stdio.h>
#include "api_internal.h"

static int type_err(const char *key, const char *want, char *err, size_t errlen) {
    snprintf(err, errlen, "'%s' must be %s", key, want);
    return AIOS_ERR_INVALID;
}

int jp_string(const cJSON *obj, const char *key, bool required, const char **out, char *err, size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        if (!required) return AIOS_OK;
        snprintf(err, errlen, "'%s' is required", key);
        return AIOS_ERR_INVALID;
    }
    if (!cJSON_IsString(v)) return type_err(key, "a string", err, errlen);
    *out = v->valuestring;
    return AIOS_OK;
}

int jp_number(const cJSON *obj, const char *key, double lo, double hi, double *out, char *err, size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) return AIOS_OK;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return type_err(key, "a number", err, errlen);
    if (v->valuedouble < lo || v->valuedouble > hi) {
        snprintf(err, errlen, "'%s' must be between %g and %g, got %g", key, lo, hi, v->valuedouble);
        return AIOS_ERR_INVALID;
    }
    *out = v->valuedouble;
    return AIOS_OK;
}

int jp_int(const cJSON *obj, const char *key, long lo, long hi, long *out, char *err, size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) return AIOS_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble)) return type_err(key, "an integer", err, errlen);
    if (v->valuedouble < (double)lo || v->valuedouble > (double)hi) {
        snprintf(err, errlen, "'%s' must be between %ld and %ld, got %.0f", key, lo, hi, v->valuedouble);
        return AIOS_ERR_INVALID;
    }
    *out = (long)v->valuedouble;
    return AIOS_OK;
}

int jp_bool(const cJSON *obj, const char *key, bool *out, char *err, size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) return AIOS_OK;
    if (!cJSON_IsBool(v)) return type_err(key, "true or false", err, errlen);
    *out = cJSON_IsTrue(v);
    return AIOS_OK;
}

int jp_depth_ok(const cJSON *j, int max_depth) {
    if (max_depth < 0) return 0;
    for (const cJSON *c = j ? j->child : NULL; c; c = c->next)
        if (!jp_depth_ok(c, max_depth - 1)) return 0;
    return 1;
}

void jp_add_doubles(cJSON *obj, const char *key, const double *v, int n) {
    cJSON *a = cJSON_AddArrayToObject(obj, key);
    for (int i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(round(v[i] * 1e6) / 1e6));
}

int jp_priority(api_req *r, const cJSON *obj, char *err, size_t errlen) {
    long v = -1;
    int rc = jp_int(obj, "priority", AIOS_PRIORITY_MIN, AIOS_PRIORITY_MAX, &v, err, errlen);
    if (!rc && v >= 0) r->priority = (int)v;
    return rc;
}
