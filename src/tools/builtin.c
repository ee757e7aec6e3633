/*
 * builtin.c - the built-in tools the demo agents use, run in the kernel (no process):
 *   aios/calculator {expression}        arithmetic (calc.c; no code is evaluated)
 *   aios/time {}                        the current time (UTC, local, unix seconds)
 *   aios/read_file {file_path}          read / write / list in the calling agent's own
 *   aios/write_file {file_path, content}   storage namespace, through the storage manager
 *   aios/list_files {dir_path}          (so its path rules, versions and quotas apply)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "tools_internal.h"
#include "calc.h"

static int b_calculator(const tool_run *run) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(run->params_json, "expression");
    double v;
    int rc = tool_calc_eval(cJSON_IsString(e) ? e->valuestring : "", &v, run->err, run->errlen);
    if (rc) return rc;
    *run->out_json = true;
    return sb_printf(run->out, "{\"result\":%.17g}", v) ? AIOS_ERR_NOMEM : AIOS_OK;
}

static int b_time(const tool_run *run) {
    double now = kern_now_wall();
    time_t t = (time_t)now;
    struct tm u, l;
    gmtime_r(&t, &u);
    localtime_r(&t, &l);
    char us[40], ls[48];
    strftime(us, sizeof us, "%Y-%m-%dT%H:%M:%SZ", &u);
    strftime(ls, sizeof ls, "%Y-%m-%dT%H:%M:%S%z", &l);
    *run->out_json = true;
    return sb_printf(run->out, "{\"utc\":\"%s\",\"local\":\"%s\",\"unix\":%.3f,\"weekday\":%d}", us, ls, now, u.tm_wday)
        ? AIOS_ERR_NOMEM
        : AIOS_OK;
}

static int storage_op(const tool_run *run, const char *op) {
    char *msg = NULL;
    int rc = storage_call(tools_storage(run->tm), run->agent, op, run->params_json, &msg, run->err, run->errlen);
    if (!rc) {
        size_t len = strlen(msg), room = (size_t)run->max_output;
        sb_append(run->out, msg, len < room ? len : room);
        if (len > room) {
            *run->truncated = true;
            sb_printf(run->out, "\n[aios: output truncated at %ld bytes (tools.max_output_bytes)]", run->max_output);
            rc = AIOS_ERR_TOO_LARGE;
        }
    }
    free(msg);
    return rc;
}

static int b_read(const tool_run *run) { return storage_op(run, "read"); }
static int b_write(const tool_run *run) { return storage_op(run, "write"); }
static int b_list(const tool_run *run) { return storage_op(run, "list"); }

typedef struct builtin_spec {
    const char *name, *description, *schema;
    builtin_fn fn;
    const char *storage_op; /* the storage operation it makes on the caller's namespace, or NULL */
} builtin_spec;

static const builtin_spec BUILTINS[] = {
    {"aios/calculator",
     "Evaluates an arithmetic expression: + - * / % ^, parentheses, sqrt, sin, cos, log, exp, pi, e, min, max.",
     "{\"type\":\"object\",\"properties\":{\"expression\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":4096,"
     "\"description\":\"for example (2 + 3) * 4\"}},\"required\":[\"expression\"],\"additionalProperties\":false}",
     b_calculator, NULL},
    {"aios/time", "The current date and time (UTC and the kernel's local time).",
     "{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false}", b_time, NULL},
    {"aios/read_file", "Reads a file of the calling agent's storage.",
     "{\"type\":\"object\",\"properties\":{\"file_path\":{\"type\":\"string\",\"minLength\":1}},\"required\":[\"file_path\"]}",
     b_read, "read"},
    {"aios/write_file", "Writes (a new version of) a file of the calling agent's storage.",
     "{\"type\":\"object\",\"properties\":{\"file_path\":{\"type\":\"string\",\"minLength\":1},\"content\":{\"type\":\"string\"}},"
     "\"required\":[\"file_path\",\"content\"]}",
     b_write, "write"},
    {"aios/list_files", "Lists a directory of the calling agent's storage.",
     "{\"type\":\"object\",\"properties\":{\"dir_path\":{\"type\":\"string\"}}}", b_list, "list"},
};

cJSON *builtin_schemas(void) {
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; o && i < sizeof BUILTINS / sizeof BUILTINS[0]; i++)
        kern_json_add(o, BUILTINS[i].name, cJSON_Parse(BUILTINS[i].schema));
    return o;
}

int builtin_tools(storage_manager *st, tool_def ***defs, int *n, int *cap) {
    for (size_t i = 0; i < sizeof BUILTINS / sizeof BUILTINS[0]; i++) {
        const builtin_spec *b = &BUILTINS[i];
        if (b->storage_op && !st) continue;
        tool_def *d = tool_def_new();
        if (!d) return AIOS_ERR_NOMEM;
        snprintf(d->name, sizeof d->name, "%s", b->name);
        snprintf(d->remote, sizeof d->remote, "%s", b->name);
        snprintf(d->source, sizeof d->source, "builtin");
        snprintf(d->version, sizeof d->version, "1");
        d->description = strdup(b->description);
        d->schema = cJSON_Parse(b->schema);
        d->kind = TOOL_KIND_BUILTIN;
        d->fn = b->fn;
        d->storage_op = b->storage_op;
        d->timeout_ms = 30000;
        d->max_parallel = 64;
        if (tool_defs_push(defs, n, cap, d)) {
            tool_def_unref(d);
            return AIOS_ERR_NOMEM;
        }
    }
    return AIOS_OK;
}
