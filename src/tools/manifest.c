/*
 * manifest.c - one tool manifest (a JSON file in tools.dir) into a tool_def, every field
 * checked, so a bad manifest is reported as "FILE: FIELD: reason" and skipped. Names are
 * checked by tool_name_ok, which the other sources of tools share (MCP: "<server>/<tool>"),
 * as they share tool_def_new / tool_def_ref / tool_def_unref here.
 *
 *   {"name": "author/tool", "description": "...", "parameters": {JSON Schema},
 *    "kind": "process" | "mcp" | "builtin", "version": "1.0",
 *    "command": "run.sh", "args": ["--x"],            (process; relative = the manifest's dir)
 *    "builtin": "aios/calculator",                     (builtin: expose one under this name)
 *    "server": "time", "tool": "get_current_time",     (mcp: expose one server tool)
 *    "timeout_ms": 30000, "max_parallel": 8, "irreversible": false,
 *    "sandbox": {"fs": "none" | "ro" | "workdir", "network": false},
 *    "limits": {"cpu_seconds": 10, "memory_mb": 512, "file_size_mb": 64, "max_procs": 32}}
 */
#include <math.h>
#include <libgen.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tools_internal.h"
#include "schema.h"

typedef struct mf_ctx {
    const char *path;
    char *err;
    size_t errlen;
} mf_ctx;

static int bad(mf_ctx *c, const char *field, const char *fmt, const char *arg) {
    char why[448];
    snprintf(why, sizeof why, fmt, arg);
    snprintf(c->err, c->errlen, "%s: %s: %s", c->path, field, why);
    return AIOS_ERR_INVALID;
}

static int get_str(mf_ctx *c, const cJSON *o, const char *field, bool required, char *out, size_t outlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
    if (!v) return required ? bad(c, field, "%s", "required") : AIOS_OK;
    if (!cJSON_IsString(v)) return bad(c, field, "%s", "must be a string");
    if (strlen(v->valuestring) >= outlen) return bad(c, field, "%s", "too long");
    snprintf(out, outlen, "%s", v->valuestring);
    return AIOS_OK;
}

static int get_int(mf_ctx *c, const cJSON *o, const char *field, long lo, long hi, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
    if (!v) return AIOS_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble < (double)lo || v->valuedouble > (double)hi || /* (range first: no cast overflow) */
        v->valuedouble != floor(v->valuedouble)) {
        char range[64];
        snprintf(range, sizeof range, "an integer in [%ld, %ld]", lo, hi);
        return bad(c, field, "must be %s", range);
    }
    *out = (int)v->valuedouble;
    return AIOS_OK;
}

static int get_bool(mf_ctx *c, const cJSON *o, const char *field, bool *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
    if (!v) return AIOS_OK;
    if (!cJSON_IsBool(v)) return bad(c, field, "%s", "must be true or false");
    *out = cJSON_IsTrue(v);
    return AIOS_OK;
}

/* A tool name is '/'-separated segments of letters, digits, '_', '-' and '.': no empty
 * segment (so no leading, trailing or doubled '/'), no segment of dots only ("." or ".."
 * would name a directory above the tool's own wherever a name becomes a path), no ".."
 * anywhere and no "__" (models see '/' as "__", see api/chat.c). */
/* ---------- definitions (every source makes its tool_defs with these) ---------- */

tool_def *tool_def_new(void) {
    tool_def *d = calloc(1, sizeof *d);
    if (d) atomic_init(&d->refs, 1);
    return d;
}

tool_def *tool_def_ref(tool_def *d) {
    atomic_fetch_add(&d->refs, 1);
    return d;
}

void tool_def_unref(tool_def *d) {
    if (!d || atomic_fetch_sub(&d->refs, 1) != 1) return;
    free(d->description);
    cJSON_Delete(d->schema);
    for (int i = 0; i < d->n_args; i++) free(d->args[i]);
    free(d->args);
    free(d);
}

bool tool_name_ok(const char *name) {
    size_t len = strlen(name);
    if (!len || len >= TOOL_NAME_MAX || strstr(name, "..") || strstr(name, "__")) return false;
    bool empty = true, dots = true; /* of the segment so far */
    for (const char *p = name;; p++) {
        if (!*p || *p == '/') {
            if (empty || dots) return false;
            if (!*p) return true;
            empty = dots = true;
            continue;
        }
        bool alnum = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9');
        if (!alnum && *p != '_' && *p != '-' && *p != '.') return false;
        empty = false;
        dots = dots && *p == '.';
    }
}

static int parse_args(mf_ctx *c, const cJSON *m, tool_def *d) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(m, "args");
    if (!a) return AIOS_OK;
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) > 64) return bad(c, "args", "%s", "must be a list of at most 64 strings");
    d->args = calloc((size_t)cJSON_GetArraySize(a) + 1, sizeof *d->args);
    if (!d->args) return AIOS_ERR_NOMEM;
    for (const cJSON *it = a->child; it; it = it->next) {
        if (!cJSON_IsString(it)) return bad(c, "args", "%s", "must be a list of strings");
        if (!(d->args[d->n_args++] = strdup(it->valuestring))) return AIOS_ERR_NOMEM;
    }
    return AIOS_OK;
}

static int parse_sandbox(mf_ctx *c, const cJSON *m, tool_def *d) {
    const cJSON *sb = cJSON_GetObjectItemCaseSensitive(m, "sandbox");
    if (!sb) return AIOS_OK;
    if (!cJSON_IsObject(sb)) return bad(c, "sandbox", "%s", "must be an object {fs, network}");
    char fs[16] = "none";
    int rc = get_str(c, sb, "fs", false, fs, sizeof fs);
    if (!rc) rc = get_bool(c, sb, "network", &d->network);
    if (rc) return rc;
    if (!strcmp(fs, "none")) d->fs = TOOL_FS_NONE;
    else if (!strcmp(fs, "ro")) d->fs = TOOL_FS_RO;
    else if (!strcmp(fs, "workdir")) d->fs = TOOL_FS_WORKDIR;
    else return bad(c, "sandbox.fs", "'%s' is not one of none, ro, workdir", fs);
    return AIOS_OK;
}

static int parse_limits(mf_ctx *c, const cJSON *m, tool_def *d) {
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(m, "limits");
    if (!l) return AIOS_OK;
    if (!cJSON_IsObject(l)) return bad(c, "limits", "%s", "must be an object");
    int rc = get_int(c, l, "cpu_seconds", 1, 86400, &d->cpu_seconds);
    if (!rc) rc = get_int(c, l, "memory_mb", 16, 1 << 20, &d->memory_mb);
    if (!rc) rc = get_int(c, l, "file_size_mb", 0, 1 << 20, &d->file_size_mb);
    if (!rc) rc = get_int(c, l, "max_procs", 1, 65536, &d->max_procs);
    return rc;
}

static int parse_kind(mf_ctx *c, const cJSON *m, tool_def *d) {
    char kind[16] = "process";
    int rc = get_str(c, m, "kind", false, kind, sizeof kind);
    if (rc) return rc;
    if (!strcmp(kind, "process")) {
        d->kind = TOOL_KIND_PROCESS;
        if ((rc = get_str(c, m, "command", true, d->command, sizeof d->command))) return rc;
        if (!d->command[0]) return bad(c, "command", "%s", "must not be empty");
        return parse_args(c, m, d);
    }
    if (!strcmp(kind, "builtin")) {
        d->kind = TOOL_KIND_BUILTIN;
        return get_str(c, m, "builtin", true, d->remote, sizeof d->remote);
    }
    if (!strcmp(kind, "mcp")) {
        char server[AIOS_NAME_MAX], tool[TOOL_NAME_MAX - AIOS_NAME_MAX];
        d->kind = TOOL_KIND_MCP;
        if ((rc = get_str(c, m, "server", true, server, sizeof server)) || (rc = get_str(c, m, "tool", true, tool, sizeof tool)))
            return rc;
        if (strlen(server) + strlen(tool) + 2 > sizeof d->remote) return bad(c, "tool", "%s", "too long");
        snprintf(d->remote, sizeof d->remote, "%s/%s", server, tool);
        return AIOS_OK;
    }
    return bad(c, "kind", "'%s' is not one of process, mcp, builtin", kind);
}

static int parse_manifest(mf_ctx *c, const cJSON *m, const aios_config *cfg, tool_def *d) {
    if (!cJSON_IsObject(m)) return bad(c, "(top level)", "%s", "must be a JSON object");
    int rc = get_str(c, m, "name", true, d->name, sizeof d->name);
    if (rc) return rc;
    if (!tool_name_ok(d->name))
        return bad(c, "name",
                   "'%s' must be '/'-separated segments (\"author/name\") of letters, digits, '_', '-', '.': no empty "
                   "segment, no leading or trailing '/', no segment of dots only, no '..' or '__'",
                   d->name);
    char desc[4096] = "";
    if ((rc = get_str(c, m, "description", false, desc, sizeof desc))) return rc;
    if (!(d->description = strdup(desc))) return AIOS_ERR_NOMEM;
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(m, "parameters");
    if (p) {
        char sub[384];
        if (!cJSON_IsObject(p)) return bad(c, "parameters", "%s", "must be a JSON Schema object");
        if (tool_schema_lint(p, sub, sizeof sub)) return bad(c, "parameters", "%s", sub);
        if (!(d->schema = cJSON_Duplicate(p, 1))) return AIOS_ERR_NOMEM;
    }
    d->timeout_ms = cfg->tools.default_timeout_ms;
    d->max_parallel = cfg->tools.default_max_parallel;
    d->cpu_seconds = cfg->tools.cpu_seconds;
    d->memory_mb = cfg->tools.memory_mb;
    d->file_size_mb = cfg->tools.file_size_mb;
    d->max_procs = cfg->tools.max_procs;
    if ((rc = parse_kind(c, m, d)) || (rc = get_str(c, m, "version", false, d->version, sizeof d->version)) ||
        (rc = get_int(c, m, "timeout_ms", 1, 86400000, &d->timeout_ms)) ||
        (rc = get_int(c, m, "max_parallel", 1, 100000, &d->max_parallel)) ||
        (rc = get_bool(c, m, "irreversible", &d->irreversible)) || (rc = parse_sandbox(c, m, d)) || (rc = parse_limits(c, m, d)))
        return rc;
    return AIOS_OK;
}

tool_def *manifest_load(const char *path, const aios_config *cfg, char *err, size_t errlen) {
    mf_ctx c = {path, err, errlen};
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open", path);
        return NULL;
    }
    char *buf = malloc(1 << 20);
    size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    bool big = buf && n == (1 << 20) - 1;
    fclose(f);
    if (!buf || big) {
        free(buf);
        snprintf(err, errlen, "%s: larger than 1 MiB", path);
        return NULL;
    }
    buf[n] = 0;
    cJSON *m = cJSON_ParseWithLength(buf, n);
    free(buf);
    tool_def *d = m ? tool_def_new() : NULL;
    if (!m) snprintf(err, errlen, "%s: not valid JSON", path);
    else if (!d || parse_manifest(&c, m, cfg, d)) {
        if (!d) snprintf(err, errlen, "%s: out of memory", path);
        tool_def_unref(d);
        d = NULL;
    }
    cJSON_Delete(m);
    if (!d) return NULL;
    snprintf(d->source, sizeof d->source, "%s", path);
    char dir[AIOS_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    snprintf(d->dir, sizeof d->dir, "%s", dirname(dir));
    return d;
}
