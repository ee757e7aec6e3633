/*
 * agents.c - the agent table (agents.h): specs, start (identity, workdir, environment,
 * sandbox), stop / cont / kill, records as JSON, persistence in <data_dir>/agents.db, and
 * the bounds (agents.max_running alive, agents.max_records kept, agents.log_quota_bytes of
 * logs). The supervisor thread (supervisor.c) reaps, logs and watches.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "agents_internal.h"
#include "../storage/storage.h"

static const char *const STATES[] = {"starting", "running", "stopped", "exited", "killed", "lost"};

const char *agent_state_name(agent_state s) { return STATES[s]; }
bool agent_alive(const agent *g) { return g->state == AGENT_RUNNING || g->state == AGENT_STOPPED || g->pid > 0; }

agents_params agents_default_params(void) { return (agents_params){0}; }

agent *agents_find(agents_t *a, const char *id) {
    for (int i = 0; i < a->n; i++)
        if (!strcmp(a->recs[i]->id, id)) return a->recs[i];
    return NULL;
}

void agents_path(const agents_t *a, const agent *g, const char *leaf, char *out, size_t cap) {
    snprintf(out, cap, "%s/%s%s%s", a->dir, g->id, leaf ? "/" : "", leaf ? leaf : "");
}

/* ---------- specs ---------- */

static bool env_key_ok(const char *k) {
    if (!((*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z') || *k == '_')) return false;
    for (const char *c = k; *c; c++)
        if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_')) return false;
    return strlen(k) < 128;
}

/* The kernel sets these: an agent's env cannot replace them. */
static bool env_reserved(const char *k) {
    static const char *const R[] = {"AIOS_", "OPENAI_", "ANTHROPIC_", "CEREBRUM_", "HOME", "LD_PRELOAD", "LD_LIBRARY_PATH"};
    for (size_t i = 0; i < sizeof R / sizeof R[0]; i++)
        if (!strncmp(k, R[i], strlen(R[i]))) return true;
    return false;
}

static bool name_ok(const char *s) {
    size_t n = strlen(s);
    if (!n || n >= AIOS_NAME_MAX) return false;
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c < 0x21 || *c == 0x7f || *c == '/') return false;
    return true;
}

static int bad(char *err, size_t errlen, const char *fmt, const char *what) {
    snprintf(err, errlen, fmt, what);
    return AIOS_ERR_INVALID;
}

/* A list of 1..max strings (each < cap bytes) copied into out. */
static int string_list(const cJSON *v, const char *what, int min, int max, size_t cap, cJSON *out, char *err, size_t errlen) {
    if (!cJSON_IsArray(v)) return bad(err, errlen, "'%s' must be an array of strings", what);
    int n = cJSON_GetArraySize(v);
    if (n < min || n > max) {
        snprintf(err, errlen, "'%s' must hold %d to %d strings", what, min, max);
        return AIOS_ERR_INVALID;
    }
    const cJSON *s;
    cJSON_ArrayForEach(s, v) {
        if (!cJSON_IsString(s) || !*s->valuestring || strlen(s->valuestring) >= cap ||
            !kern_utf8_valid(s->valuestring, strlen(s->valuestring)))
            return bad(err, errlen, "'%s' must hold non-empty UTF-8 strings of bounded length", what);
        kern_json_push(out, cJSON_CreateString(s->valuestring));
    }
    return AIOS_OK;
}

static int spec_env(const cJSON *env, cJSON *out, char *err, size_t errlen) {
    cJSON *o = cJSON_AddObjectToObject(out, "env");
    if (!env || cJSON_IsNull(env)) return AIOS_OK;
    if (!cJSON_IsObject(env) || cJSON_GetArraySize(env) > AGENT_MAX_ENV)
        return bad(err, errlen, "'env' must be an object of at most %s string values", "64");
    const cJSON *e;
    cJSON_ArrayForEach(e, env) {
        if (!env_key_ok(e->string))
            return bad(err, errlen, "env: '%.64s' is not a variable name ([A-Za-z_][A-Za-z0-9_]*)", e->string);
        if (env_reserved(e->string)) return bad(err, errlen, "env: '%.64s' is set by the kernel", e->string);
        if (!cJSON_IsString(e) || strlen(e->valuestring) >= 4096 || strchr(e->valuestring, '\n'))
            return bad(err, errlen, "env: '%.64s' must be a string of at most 4095 bytes without newlines", e->string);
        cJSON_AddStringToObject(o, e->string, e->valuestring);
    }
    return AIOS_OK;
}

static int spec_limits(const cJSON *lim, cJSON *out, char *err, size_t errlen) {
    static const struct {
        const char *key;
        double lo, hi, def;
    } L[] = {{"memory_mb", 0, 1 << 20, 0}, {"cpu_weight", 1, 10000, 100}, {"pids", 0, 65536, 0}, {"wall_s", 0, 1e7, 0}};
    if (lim && !cJSON_IsNull(lim) && !cJSON_IsObject(lim)) return bad(err, errlen, "'%s' must be an object", "limits");
    cJSON *o = cJSON_AddObjectToObject(out, "limits");
    const cJSON *e;
    cJSON_ArrayForEach(e, lim) {
        size_t i = 0;
        while (i < 4 && strcmp(L[i].key, e->string)) i++;
        if (i == 4) return bad(err, errlen, "limits: unknown key '%.64s' (memory_mb, cpu_weight, pids, wall_s)", e->string);
    }
    for (size_t i = 0; i < 4; i++) {
        const cJSON *v = lim ? cJSON_GetObjectItemCaseSensitive(lim, L[i].key) : NULL;
        double x = v ? v->valuedouble : L[i].def;
        if (v && (!cJSON_IsNumber(v) || x != floor(x) || x < L[i].lo || x > L[i].hi)) {
            snprintf(err, errlen, "limits.%s must be an integer in [%.0f, %.0f]", L[i].key, L[i].lo, L[i].hi);
            return AIOS_ERR_INVALID;
        }
        cJSON_AddNumberToObject(o, L[i].key, x);
    }
    return AIOS_OK;
}

static int spec_choice(const cJSON *spec, const char *key, const char *const *allowed, const char *def, cJSON *out, char *err,
                       size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(spec, key);
    const char *s = v && !cJSON_IsNull(v) ? cJSON_GetStringValue(v) : def;
    for (int i = 0; s && allowed[i]; i++)
        if (!strcmp(s, allowed[i])) {
            cJSON_AddStringToObject(out, key, s);
            return AIOS_OK;
        }
    snprintf(err, errlen, "'%s' must be one of %s|%s|%s", key, allowed[0], allowed[1], allowed[2] ? allowed[2] : "");
    return AIOS_ERR_INVALID;
}

static int spec_strings(agents_t *a, const cJSON *spec, cJSON *out, char *err, size_t errlen) {
    enum { NAME, PATH, TEXT };
    static const struct {
        const char *key;
        int kind;
    } KEYS[] = {{"name", NAME}, {"group", NAME}, {"workdir", PATH}, {"package_dir", PATH}, {"runner_dir", PATH}, {"task", TEXT}};
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(spec, KEYS[i].key);
        if (!v || cJSON_IsNull(v)) continue;
        size_t cap = KEYS[i].kind == TEXT ? 65536 : KEYS[i].kind == PATH ? AIOS_PATH_MAX : AIOS_NAME_MAX;
        if (!cJSON_IsString(v) || !*v->valuestring || strlen(v->valuestring) >= cap ||
            !kern_utf8_valid(v->valuestring, strlen(v->valuestring)))
            return bad(err, errlen, "'%s' must be a non-empty string of bounded length", KEYS[i].key);
        if (KEYS[i].kind == NAME && !name_ok(v->valuestring))
            return bad(err, errlen, "'%s' must be printable, without spaces or '/'", KEYS[i].key);
        if (KEYS[i].kind == PATH && sandbox_procs_check_path(a->sandbox, a->cfg, v->valuestring, false, KEYS[i].key, err, errlen))
            return AIOS_ERR_INVALID;
        cJSON_AddStringToObject(out, KEYS[i].key, v->valuestring);
    }
    return AIOS_OK;
}

static int spec_ro_paths(agents_t *a, const cJSON *spec, cJSON *out, char *err, size_t errlen) {
    const cJSON *ro = cJSON_GetObjectItemCaseSensitive(spec, "ro_paths");
    cJSON *list = cJSON_AddArrayToObject(out, "ro_paths");
    if (!ro || cJSON_IsNull(ro)) return AIOS_OK;
    int rc = string_list(ro, "ro_paths", 0, 8, AIOS_PATH_MAX, list, err, errlen);
    const cJSON *p;
    cJSON_ArrayForEach(p, list) if (!rc) rc =
        sandbox_procs_check_path(a->sandbox, a->cfg, p->valuestring, true, "ro_paths", err, errlen);
    return rc ? AIOS_ERR_INVALID : AIOS_OK;
}

/* The spec checked and normalised (every field present) into *out. */
static int spec_parse(agents_t *a, const cJSON *spec, cJSON **out, char *err, size_t errlen) {
    static const char *const KNOWN[] = {"name",    "command", "env",      "workdir", "group",       "priority",   "limits",
                                        "restart", "network", "ro_paths", "task",    "package_dir", "runner_dir", NULL};
    static const char *const RESTART[] = {"never", "on-failure", NULL}, *const NET[] = {"kernel-only", "none", "full", NULL};
    if (!cJSON_IsObject(spec)) return bad(err, errlen, "%s", "the body must be a JSON object");
    const cJSON *e;
    cJSON_ArrayForEach(e, spec) {
        int i = 0;
        while (KNOWN[i] && strcmp(KNOWN[i], e->string)) i++;
        if (!KNOWN[i]) return bad(err, errlen, "unknown field '%.64s' (docs/agents.md)", e->string);
    }
    cJSON *o = cJSON_CreateObject();
    int rc = string_list(cJSON_GetObjectItemCaseSensitive(spec, "command"), "command", 1, AGENT_MAX_ARGS, 4096,
                         cJSON_AddArrayToObject(o, "command"), err, errlen);
    const char *cmd0 = rc ? NULL : cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "command"), 0)->valuestring;
    if (cmd0 && strchr(cmd0, '/') && cmd0[0] != '/')
        rc = bad(err, errlen, "command '%.200s': must be an absolute path or a name on the sandbox's PATH (/usr/bin:/bin)", cmd0);
    if (!rc) rc = spec_strings(a, spec, o, err, errlen);
    if (!rc) rc = spec_env(cJSON_GetObjectItemCaseSensitive(spec, "env"), o, err, errlen);
    if (!rc) rc = spec_limits(cJSON_GetObjectItemCaseSensitive(spec, "limits"), o, err, errlen);
    if (!rc) rc = spec_choice(spec, "restart", RESTART, "never", o, err, errlen);
    if (!rc) rc = spec_choice(spec, "network", NET, a->cfg->procs.default_network, o, err, errlen);
    if (!rc) rc = spec_ro_paths(a, spec, o, err, errlen);
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(spec, "priority");
    if (!rc && pr && !cJSON_IsNull(pr) &&
        (!cJSON_IsNumber(pr) || pr->valuedouble != floor(pr->valuedouble) || pr->valuedouble < AIOS_PRIORITY_MIN ||
         pr->valuedouble > AIOS_PRIORITY_MAX)) {
        snprintf(err, errlen, "'priority' must be an integer in [%d, %d]", AIOS_PRIORITY_MIN, AIOS_PRIORITY_MAX);
        rc = AIOS_ERR_INVALID;
    }
    if (!rc) cJSON_AddNumberToObject(o, "priority", pr && cJSON_IsNumber(pr) ? pr->valuedouble : -1);
    if (rc) cJSON_Delete(o);
    else *out = o;
    return rc;
}

static const char *spec_str(const agent *g, const char *key) {
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(g->spec, key));
}

static double spec_num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* ---------- persistence ---------- */

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS agents(id TEXT PRIMARY KEY, name TEXT, grp TEXT, package TEXT, spec TEXT, state TEXT,"
    " pid INTEGER, started REAL, ended REAL, exit_code INTEGER, term_signal INTEGER, reason TEXT, cpu_s REAL,"
    " peak_rss_kb INTEGER, syscalls INTEGER, tokens INTEGER, tools INTEGER, restarts INTEGER, result TEXT,"
    " net_how TEXT, limits_how TEXT);";

void agents_save(agents_t *a, agent *g) {
    sqlite3_stmt *st;
    g->dirty = false;
    if (!a->db) return; /* closed: the kernel is going */
    if (sqlite3_prepare_v2(
            a->db,
            "INSERT OR REPLACE INTO agents VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21)",
            -1, &st, NULL) != SQLITE_OK) {
        log_warn("agents: cannot save %s: %s", g->id, sqlite3_errmsg(a->db));
        return;
    }
    char *spec = cJSON_PrintUnformatted(g->spec);
    sqlite3_bind_text(st, 1, g->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, g->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, g->group, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, g->package, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, spec ? spec : "{}", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, agent_state_name(g->state), -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 7, g->pid);
    sqlite3_bind_double(st, 8, g->started);
    sqlite3_bind_double(st, 9, g->ended);
    sqlite3_bind_int(st, 10, g->exit_code);
    sqlite3_bind_int(st, 11, g->term_signal);
    sqlite3_bind_text(st, 12, g->reason, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 13, g->cpu_s);
    sqlite3_bind_int64(st, 14, g->peak_rss_kb);
    sqlite3_bind_int64(st, 15, (sqlite3_int64)g->syscalls);
    sqlite3_bind_int64(st, 16, (sqlite3_int64)g->tokens);
    sqlite3_bind_int64(st, 17, (sqlite3_int64)g->tools);
    sqlite3_bind_int(st, 18, g->restarts);
    sqlite3_bind_text(st, 19, g->last_line, (int)g->last_len, SQLITE_STATIC);
    sqlite3_bind_text(st, 20, g->net_how, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 21, g->limits_how, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) log_warn("agents: cannot save %s: %s", g->id, sqlite3_errmsg(a->db));
    sqlite3_finalize(st);
    free(spec);
}

static agent *rec_alloc(void) {
    agent *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->pidfd = g->out_fd = g->err_fd = g->log_fd = -1;
    g->exit_code = g->term_signal = -1;
    return g;
}

static void rec_free(agent *g) {
    if (!g) return;
    cJSON_Delete(g->spec);
    free(g);
}

static int rec_push(agents_t *a, agent *g) {
    if (a->n == a->cap) {
        int cap = a->cap ? a->cap * 2 : 64;
        agent **r = realloc(a->recs, (size_t)cap * sizeof *r);
        if (!r) return AIOS_ERR_NOMEM;
        a->recs = r;
        a->cap = cap;
    }
    a->recs[a->n++] = g;
    return AIOS_OK;
}

static void col_text(sqlite3_stmt *st, int i, char *out, size_t cap) {
    const unsigned char *t = sqlite3_column_text(st, i);
    snprintf(out, cap, "%s", t ? (const char *)t : "");
}

static void limits_from_spec(agent *g) {
    const cJSON *lim = cJSON_GetObjectItemCaseSensitive(g->spec, "limits");
    g->memory_mb = (long)spec_num(lim, "memory_mb");
    g->wall_s = (long)spec_num(lim, "wall_s");
    g->pids = (int)spec_num(lim, "pids");
    g->cpu_weight = (int)spec_num(lim, "cpu_weight");
    const char *r = spec_str(g, "restart");
    g->restart_on_failure = r && !strcmp(r, "on-failure");
}

/* One row back into a record: alive ones were lost with the kernel that ran them. */
static agent *rec_from_row(agents_t *a, sqlite3_stmt *st) {
    agent *g = rec_alloc();
    if (!g) return NULL;
    char state[16];
    col_text(st, 0, g->id, sizeof g->id);
    col_text(st, 1, g->name, sizeof g->name);
    col_text(st, 2, g->group, sizeof g->group);
    col_text(st, 3, g->package, sizeof g->package);
    g->spec = cJSON_Parse((const char *)sqlite3_column_text(st, 4));
    if (!g->spec) g->spec = cJSON_CreateObject();
    col_text(st, 5, state, sizeof state);
    for (int i = 0; i < 6; i++)
        if (!strcmp(state, STATES[i])) g->state = (agent_state)i;
    g->started = sqlite3_column_double(st, 7);
    g->ended = sqlite3_column_double(st, 8);
    g->exit_code = sqlite3_column_int(st, 9);
    g->term_signal = sqlite3_column_int(st, 10);
    col_text(st, 11, g->reason, sizeof g->reason);
    g->cpu_s = sqlite3_column_double(st, 12);
    g->peak_rss_kb = sqlite3_column_int64(st, 13);
    g->syscalls = (unsigned long long)sqlite3_column_int64(st, 14);
    g->tokens = (unsigned long long)sqlite3_column_int64(st, 15);
    g->tools = (unsigned long long)sqlite3_column_int64(st, 16);
    g->restarts = sqlite3_column_int(st, 17);
    col_text(st, 18, g->last_line, sizeof g->last_line);
    g->last_len = strlen(g->last_line);
    col_text(st, 19, g->net_how, sizeof g->net_how);
    col_text(st, 20, g->limits_how, sizeof g->limits_how);
    limits_from_spec(g);
    bool resume = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(g->spec, "_resume")); /* lost at a shutdown */
    if (g->state <= AGENT_STOPPED || resume) {
        if (g->state <= AGENT_STOPPED) {
            g->state = AGENT_LOST;
            g->ended = kern_now_wall();
            snprintf(g->reason, sizeof g->reason, "the kernel stopped; its processes ended with the one that ran them");
            access_identity_revoke(a->p.access, g->name, NULL, 0); /* its token died with it */
        }
        cJSON_DeleteItemFromObjectCaseSensitive(g->spec, "_resume");
        if (g->restart_on_failure && g->restarts < a->cfg->procs.max_restarts) g->restart_at = kern_now_mono();
        g->dirty = true;
    }
    return g;
}

static int load_table(agents_t *a, char *err, size_t errlen) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(a->db, "SELECT * FROM agents ORDER BY started, id", -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "agents.db: %s", sqlite3_errmsg(a->db));
        return AIOS_ERR_IO;
    }
    int rc = AIOS_OK, lost = 0;
    while (!rc && sqlite3_step(st) == SQLITE_ROW) {
        agent *g = rec_from_row(a, st);
        if (!g || rec_push(a, g)) {
            rec_free(g);
            rc = AIOS_ERR_NOMEM;
        } else if (g->dirty) {
            agents_save(a, g);
            lost++;
        }
    }
    sqlite3_finalize(st);
    if (lost)
        log_warn("agents: %d agents that were alive when the kernel stopped are lost (restarted where their policy says)", lost);
    return rc;
}

/* ---------- bounds ---------- */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static void remove_tree(const char *path) { nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

static long log_bytes(agents_t *a, agent *g) {
    char p[AIOS_PATH_MAX * 2];
    agents_path(a, g, "output.log", p, sizeof p);
    long n = file_size(p);
    agents_path(a, g, "output.log.1", p, sizeof p);
    return n + file_size(p);
}

static bool finished(const agent *g) { return !agent_alive(g) && g->restart_at == 0 && g->n_followers == 0; }

/* Drops the oldest finished agents beyond agents.max_records (with their files), and the
 * logs of the oldest finished ones while every log together is over agents.log_quota_bytes. */
static void prune(agents_t *a) {
    for (int i = 0; a->n > a->cfg->procs.max_records && i < a->n;) {
        agent *g = a->recs[i];
        if (!finished(g)) {
            i++;
            continue;
        }
        char p[AIOS_PATH_MAX * 2];
        agents_path(a, g, NULL, p, sizeof p);
        remove_tree(p);
        sdb_exec_text(a->db, "DELETE FROM agents WHERE id = ?1", g->id);
        memmove(&a->recs[i], &a->recs[i + 1], (size_t)(a->n - i - 1) * sizeof *a->recs);
        a->n--;
        rec_free(g);
    }
    long total = 0;
    for (int i = 0; i < a->n; i++) total += log_bytes(a, a->recs[i]);
    for (int i = 0; total > a->cfg->procs.log_quota_bytes && i < a->n; i++) {
        agent *g = a->recs[i];
        if (!finished(g)) continue;
        char p[AIOS_PATH_MAX * 2];
        total -= log_bytes(a, g);
        agents_path(a, g, "output.log", p, sizeof p);
        unlink(p);
        agents_path(a, g, "output.log.1", p, sizeof p);
        unlink(p);
    }
}

/* ---------- start ---------- */

static void new_id(char id[AGENT_ID_LEN]) {
    unsigned char r[8];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        unsigned long long t = (unsigned long long)(kern_now_wall() * 1e6);
        memcpy(r, &t, sizeof r);
    }
    for (int i = 0; i < 8; i++) snprintf(id + 2 * i, 3, "%02x", r[i]);
}

/* Whether a live agent already carries identity name. */
static bool name_alive(agents_t *a, const char *name) {
    for (int i = 0; i < a->n; i++)
        if ((agent_alive(a->recs[i]) || a->recs[i]->restart_at) && !strcmp(a->recs[i]->name, name)) return true;
    return false;
}

typedef struct env_b {
    char *v[AGENT_MAX_ENV + 24];
    int n;
} env_b;

static void env_add(env_b *e, const char *k, const char *v) {
    if (e->n >= (int)(sizeof e->v / sizeof e->v[0]) - 1) return;
    if (asprintf(&e->v[e->n], "%s=%s", k, v) >= 0) e->n++;
}

static void env_free(env_b *e) { /* (the token is in there: wiped, not only freed) */
    for (int i = 0; i < e->n; i++) {
        explicit_bzero(e->v[i], strlen(e->v[i]));
        free(e->v[i]);
    }
}

static void agent_env(agents_t *a, agent *g, const char *token, env_b *e) {
    char url[160];
    env_add(e, "PATH", "/usr/bin:/bin");
    env_add(e, "HOME", "/work");
    env_add(e, "LANG", "C.UTF-8");
    env_add(e, "AIOS_URL", a->kernel_url);
    env_add(e, "AIOS_TOKEN", token);
    env_add(e, "AIOS_AGENT_ID", g->id);
    env_add(e, "AIOS_AGENT_NAME", g->name);
    env_add(e, "CEREBRUM_KERNEL_URL", a->kernel_url);
    snprintf(url, sizeof url, "%s/v1", a->kernel_url);
    env_add(e, "OPENAI_BASE_URL", url);
    env_add(e, "OPENAI_API_KEY", token);
    env_add(e, "ANTHROPIC_BASE_URL", a->kernel_url);
    env_add(e, "ANTHROPIC_API_KEY", token);
    const char *task = spec_str(g, "task");
    if (task) env_add(e, "AIOS_TASK", task);
    const cJSON *kv;
    cJSON_ArrayForEach(kv, cJSON_GetObjectItemCaseSensitive(g->spec, "env")) {
        int i = 0;
        while (i < e->n && (strncmp(e->v[i], kv->string, strlen(kv->string)) || e->v[i][strlen(kv->string)] != '=')) i++;
        if (i < e->n) { /* PATH, LANG: the agent's own value */
            free(e->v[i]);
            e->v[i] = e->v[--e->n];
        }
        env_add(e, kv->string, kv->valuestring);
    }
    e->v[e->n] = NULL;
}

/* cpu.weight (1..10000, 100 = normal) as a niceness: each step is ~1.25x; never below 0. */
static int nice_of(int weight) {
    if (weight >= 100) return 0;
    int n = (int)lround(log(100.0 / weight) / log(1.25));
    return n > 19 ? 19 : n;
}

/* Its workdir, opened: the spec's host directory, or <dir>/<id>/work made here. */
static int open_workdir(agents_t *a, agent *g, char *err, size_t errlen) {
    char p[AIOS_PATH_MAX * 2];
    const char *wd = spec_str(g, "workdir");
    if (!wd) {
        agents_path(a, g, "work", p, sizeof p);
        mkdir(p, 0700);
        wd = p;
    }
    int fd = open(wd, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) snprintf(err, errlen, "workdir %s: %s", wd, strerror(errno));
    return fd;
}

/* How g's limits are enforced, into limits_how (text) and the spec's "mechanism" (kept). */
static void describe_limits(agents_t *a, agent *g, long uid) {
    char *h = g->limits_how;
    size_t cap = sizeof g->limits_how;
    int len = g->cg[0] ? snprintf(h, cap, "cgroup %s", g->cg)
                       : snprintf(h, cap, "rlimits and the kernel's watchdog (no cgroup: %s)", a->cg.why);
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "cgroup", g->cg);
    const char *mem = g->cg_memory ? "memory.max" : "watchdog", *cpu = g->cg_cpu ? "cpu.weight" : "nice",
               *pids = g->cg_pids ? "pids.max"
        : uid >= 0                ? "RLIMIT_NPROC"
                                  : "none";
    if (g->memory_mb)
        len += snprintf(h + len, cap - (size_t)len,
                        g->cg_memory ? "; memory_mb: memory.max (killed by the host's OOM killer)"
                                     : "; memory_mb: resident set sampled every 250 ms, killed above it");
    if (g->pids)
        len += g->cg_pids ? snprintf(h + len, cap - (size_t)len, "; pids: pids.max")
            : uid >= 0    ? snprintf(h + len, cap - (size_t)len, "; pids: RLIMIT_NPROC under uid %ld", uid)
                       : snprintf(h + len, cap - (size_t)len, "; pids: not enforced (the kernel's own uid, no pids controller)");
    if (g->cpu_weight != 100)
        len += g->cg_cpu
            ? snprintf(h + len, cap - (size_t)len, "; cpu_weight %d: cpu.weight", g->cpu_weight)
            : snprintf(h + len, cap - (size_t)len, "; cpu_weight %d: nice %d", g->cpu_weight, nice_of(g->cpu_weight));
    if (g->wall_s) len += snprintf(h + len, cap - (size_t)len, "; wall_s: killed after it");
    bool frz = g->cg[0] && a->cg.freeze, kil = g->cg[0] && a->cg.kill;
    snprintf(h + len, cap - (size_t)len, "; stop: %s; kill: %s", frz ? "cgroup.freeze" : "SIGSTOP to each of its processes",
             kil ? "cgroup.kill" : "SIGKILL to each of its processes");
    cJSON_AddStringToObject(m, "memory_mb", mem);
    cJSON_AddStringToObject(m, "cpu_weight", cpu);
    cJSON_AddStringToObject(m, "pids", pids);
    cJSON_AddStringToObject(m, "stop", frz ? "cgroup.freeze" : "SIGSTOP");
    cJSON_AddStringToObject(m, "kill", kil ? "cgroup.kill" : "SIGKILL");
    cJSON_DeleteItemFromObjectCaseSensitive(g->spec, "mechanism");
    kern_json_add(g->spec, "mechanism", m);
}

/* The uid of an agent's process: its own (a root kernel with tools.sandbox_uid_base) above
 * every uid the tools use, one per agents.max_running slot; -1 = the kernel's. */
static long agent_uid(agents_t *a, agent *g) {
    const aios_config *c = a->cfg;
    if (geteuid() != 0 || c->tools.sandbox_uid_base <= 0 || !a->own_uids) return -1;
    bool used[4096] = {0};
    long base = c->tools.sandbox_uid_base + c->tools.max_pending + AIOS_MAX_MCP;
    for (int i = 0; i < a->n; i++) {
        agent *o = a->recs[i];
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(o->spec, "uid");
        if (o != g && agent_alive(o) && cJSON_IsNumber(u) && u->valuedouble >= base && u->valuedouble < base + 4096)
            used[(long)u->valuedouble - base] = true;
    }
    for (int s = 0; s < c->procs.max_running && s < 4096; s++)
        if (!used[s]) return base + s;
    return -1;
}

static void argv_of(agents_t *a, agent *g, const char **argv, const char **ro, int *n_ro) {
    int n = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(g->spec, "command")) if (n < AGENT_MAX_ARGS) argv[n++] =
        s->valuestring;
    argv[n] = NULL;
    *n_ro = 0;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(g->spec, "ro_paths")) if (*n_ro < 8) ro[(*n_ro)++] = s->valuestring;
    (void)a;
}

/* Mints the token, prepares the sandbox and starts the process (mu held). */
int agents_spawn(agents_t *a, agent *g, char *err, size_t errlen) {
    char token[128];
    int rc = access_identity_create(a->p.access, g->name, g->group[0] ? g->group : NULL, true, token, sizeof token, err, errlen);
    if (rc == AIOS_ERR_EXISTS)
        snprintf(err, errlen, "agent name '%s' has a live identity already (aios agent revoke it, or choose another name)",
                 g->name);
    if (rc) return rc;
    int out[2] = {-1, -1}, errp[2] = {-1, -1}, cg_fd = -1, wfd = open_workdir(a, g, err, errlen);
    long uid = agent_uid(a, g);
    /* its own workdir, as the tools' ones: the kernel's, writable by the agent's uid (bubblewrap,
     * under that uid and no longer dumpable, could not bind a directory of its own by
     * descriptor); a workdir the spec names keeps the modes its owner gave it */
    if (wfd >= 0 && uid >= 0 && !spec_str(g, "workdir") && fchmod(wfd, 0777))
        log_warn("agents: workdir of %s: %s", g->id, strerror(errno));
    if (wfd < 0) rc = AIOS_ERR_IO;
    else if ((rc = cg_prepare(a, g, &cg_fd, err, errlen))) {
    } else if (pipe2(out, O_CLOEXEC) || pipe2(errp, O_CLOEXEC)) {
        snprintf(err, errlen, "no descriptors left: %s", strerror(errno));
        rc = AIOS_ERR_BUSY;
    }
    env_b env = {0};
    const char *argv[AGENT_MAX_ARGS + 1], *ro[8];
    int n_ro = 0;
    pid_t pid = -1;
    if (!rc) {
        agent_env(a, g, token, &env);
        argv_of(a, g, argv, ro, &n_ro);
        const char *net = spec_str(g, "network");
        sandbox_proc_spec s = {.argv = argv,
                               .envp = (const char *const *)env.v,
                               .ro_paths = ro,
                               .n_ro = n_ro,
                               .pkg_dir = spec_str(g, "package_dir"),
                               .runner_dir = spec_str(g, "runner_dir"),
                               .workdir_fd = wfd,
                               .fd_out = out[1],
                               .fd_err = errp[1],
                               .cgroup_fd = cg_fd,
                               .uid = uid,
                               .max_procs = g->cg_pids ? 0 : g->pids,
                               .nice = g->cg_cpu ? 0 : nice_of(g->cpu_weight),
                               .net = !strcmp(net, "none") ? SANDBOX_NET_NONE
                                   : !strcmp(net, "full")  ? SANDBOX_NET_FULL
                                                           : SANDBOX_NET_KERNEL};
        sandbox_procs_network(a->sandbox, s.net, g->net_how, sizeof g->net_how);
        rc = sandbox_procs_spawn(a->sandbox, a->cfg, &s, &pid, err, errlen);
    }
    env_free(&env);
    explicit_bzero(token, sizeof token);
    if (wfd >= 0) close(wfd);
    if (cg_fd >= 0) close(cg_fd);
    if (out[1] >= 0) close(out[1]);
    if (errp[1] >= 0) close(errp[1]);
    if (rc) {
        if (out[0] >= 0) close(out[0]);
        if (errp[0] >= 0) close(errp[0]);
        cg_release(g);
        access_identity_revoke(a->p.access, g->name, NULL, 0);
        return rc;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(g->spec, "uid");
    if (uid >= 0) cJSON_AddNumberToObject(g->spec, "uid", (double)uid);
    describe_limits(a, g, uid);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    fcntl(errp[0], F_SETFL, O_NONBLOCK);
    g->pid = pid;
    g->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    g->out_fd = out[0];
    g->err_fd = errp[0];
    g->pidns = 0;
    g->state = AGENT_RUNNING;
    g->started = kern_now_wall();
    g->mono_start = kern_now_mono();
    g->ended = 0;
    g->exit_code = g->term_signal = -1;
    g->kill_requested = false;
    g->reason[0] = 0;
    g->restart_at = 0;
    a->n_alive++;
    strmap_put(&a->live, g->name, g); /* (a failure leaves only its counters and priority unapplied) */
    agents_save(a, g);
    agents_wake(a);
    log_info("agent %s (%s) started: pid %d, network %s", g->id, g->name, (int)pid, spec_str(g, "network"));
    return AIOS_OK;
}

static int start_record(agents_t *a, cJSON *norm, const char *package, agent **out, char *err, size_t errlen) {
    agent *g = rec_alloc();
    if (!g) {
        cJSON_Delete(norm);
        return AIOS_ERR_NOMEM;
    }
    g->spec = norm;
    new_id(g->id);
    const char *name = spec_str(g, "name"), *group = spec_str(g, "group");
    if (name) snprintf(g->name, sizeof g->name, "%s", name);
    else snprintf(g->name, sizeof g->name, "%s-%.8s", package && *package ? package : "agent", g->id);
    snprintf(g->group, sizeof g->group, "%s", group ? group : "");
    snprintf(g->package, sizeof g->package, "%s", package ? package : "");
    limits_from_spec(g);
    pthread_mutex_lock(&a->mu);
    int rc = AIOS_OK;
    if (a->stop) rc = AIOS_ERR_SHUTDOWN;
    else if (a->n_alive >= a->cfg->procs.max_running) {
        snprintf(err, errlen, "agents.max_running (%d) agents are alive; retry when one ends", a->cfg->procs.max_running);
        rc = AIOS_ERR_BUSY;
    } else if (name_alive(a, g->name)) {
        snprintf(err, errlen, "an agent named '%s' is alive already", g->name);
        rc = AIOS_ERR_EXISTS;
    } else {
        char dir[AIOS_PATH_MAX * 2];
        agents_path(a, g, NULL, dir, sizeof dir);
        if ((mkdir(dir, 0711) && errno != EEXIST) || chmod(dir, 0711)) { /* (the kernel's umask is 077) */
            snprintf(err, errlen, "%s: %s", dir, strerror(errno));
            rc = AIOS_ERR_IO;
        }
    }
    if (!rc) rc = agents_spawn(a, g, err, errlen);
    if (!rc) rc = rec_push(a, g);
    if (!rc) prune(a);
    pthread_mutex_unlock(&a->mu);
    if (rc) rec_free(g);
    else *out = g;
    return rc;
}

static cJSON *package_spec(agents_t *a, const char *dir, char *err, size_t errlen);

/* spec over the package it names (package_dir): the package's own spec, with the
 * request's fields on top; NULL with err. */
static cJSON *with_package(agents_t *a, const cJSON *spec, const char **pkg, char *err, size_t errlen) {
    const char *dir = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(spec, "package_dir"));
    if (!dir) return cJSON_Duplicate(spec, true);
    struct stat st;
    if (dir[0] != '/' || stat(dir, &st) || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "package_dir '%.200s': not an absolute path to a directory", dir);
        return NULL;
    }
    cJSON *base = package_spec(a, dir, err, errlen);
    if (!base) return NULL;
    const cJSON *f;
    cJSON_ArrayForEach(f, spec) {
        cJSON_DeleteItemFromObjectCaseSensitive(base, f->string);
        kern_json_add(base, f->string, cJSON_Duplicate(f, true));
    }
    *pkg = strrchr(dir, '/') + 1;
    return base;
}

int agents_start(agents_t *a, const cJSON *spec, cJSON **out, char *err, size_t errlen) {
    cJSON *norm = NULL;
    const char *pkg = NULL;
    cJSON *full = cJSON_IsObject(spec) ? with_package(a, spec, &pkg, err, errlen) : cJSON_Duplicate(spec, true);
    if (cJSON_IsObject(spec) && !full) return AIOS_ERR_INVALID;
    int rc = spec_parse(a, full, &norm, err, errlen);
    agent *g = NULL;
    char pkg_name[AIOS_NAME_MAX];
    snprintf(pkg_name, sizeof pkg_name, "%s", pkg ? pkg : "");
    cJSON_Delete(full);
    if (!rc) rc = start_record(a, norm, pkg_name, &g, err, errlen);
    if (rc) return rc;
    *out = cJSON_CreateObject();
    pthread_mutex_lock(&a->mu);
    cJSON_AddStringToObject(*out, "id", g->id);
    cJSON_AddStringToObject(*out, "name", g->name);
    cJSON_AddStringToObject(*out, "token_agent", g->name);
    cJSON_AddStringToObject(*out, "state", agent_state_name(g->state));
    pthread_mutex_unlock(&a->mu);
    return AIOS_OK;
}

/* ---------- AIOS packages ---------- */

static cJSON *read_json(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return cJSON_Parse(buf);
}

static bool package_name_ok(const char *s) {
    if (!*s || strlen(s) >= AIOS_NAME_MAX || s[0] == '.') return false;
    for (const char *c = s; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '-' ||
              *c == '.'))
            return false;
    return true;
}

/* The spec of package dir: its agent.json (a native manifest: the spec's fields, command
 * relative to /agent allowed), or the Cerebrum runner for config.json + agent.py. */
static cJSON *package_spec(agents_t *a, const char *dir, char *err, size_t errlen) {
    const char *id = strrchr(dir, '/') + 1;
    char p[AIOS_PATH_MAX * 2 + 16];
    snprintf(p, sizeof p, "%s/agent.json", dir);
    cJSON *spec = read_json(p);
    if (spec) return spec;
    snprintf(p, sizeof p, "%s/agent.py", dir);
    if (access(p, R_OK)) {
        snprintf(err, errlen, "agent '%s': %s holds neither agent.json nor agent.py (Cerebrum's layout)", id, dir);
        return NULL;
    }
    if (!a->cfg->procs.cerebrum_runner[0]) {
        snprintf(err, errlen, "agent '%s' is in Cerebrum's layout, and agents.cerebrum_runner is not set (docs/agents.md)", id);
        return NULL;
    }
    spec = cJSON_CreateObject();
    cJSON *cmd = cJSON_AddArrayToObject(spec, "command");
    char runner[AIOS_PATH_MAX], *save = NULL;
    snprintf(runner, sizeof runner, "%s", a->cfg->procs.cerebrum_runner);
    struct stat st;
    for (char *t = strtok_r(runner, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
        /* the runner's script (an absolute file after the interpreter): its folder at /runner */
        bool script = cJSON_GetArraySize(cmd) > 0 && t[0] == '/' && !cJSON_GetObjectItemCaseSensitive(spec, "runner_dir") &&
            stat(t, &st) == 0 && S_ISREG(st.st_mode);
        if (script) {
            char *slash = strrchr(t, '/'), where[AIOS_PATH_MAX + 16];
            snprintf(where, sizeof where, "/runner/%s", slash + 1);
            *slash = 0;
            cJSON_AddStringToObject(spec, "runner_dir", *t ? t : "/");
            kern_json_push(cmd, cJSON_CreateString(where));
        } else kern_json_push(cmd, cJSON_CreateString(t));
    }
    char inst[2][AIOS_PATH_MAX];
    const char *first = cJSON_GetArrayItem(cmd, 0) ? cJSON_GetArrayItem(cmd, 0)->valuestring : "";
    int n = sandbox_install_dirs(first, inst);
    cJSON *ro = n ? cJSON_AddArrayToObject(spec, "ro_paths") : NULL;
    for (int i = 0; i < n; i++) kern_json_push(ro, cJSON_CreateString(inst[i]));
    return spec;
}

int agents_submit_package(agents_t *a, const char *agent_id, const cJSON *config, char *id, size_t idlen, char *err,
                          size_t errlen) {
    if (!a->cfg->procs.dir[0]) {
        snprintf(err, errlen, "agents.dir is not set: no agent packages are installed (docs/agents.md)");
        return AIOS_ERR_NOT_FOUND;
    }
    /* AIOS names packages "author/name": the last part is the folder */
    const char *base = strrchr(agent_id, '/') ? strrchr(agent_id, '/') + 1 : agent_id;
    if (!package_name_ok(base)) {
        snprintf(err, errlen, "agent_id '%.64s': a package name of [A-Za-z0-9_.-]", agent_id);
        return AIOS_ERR_INVALID;
    }
    char dir[AIOS_PATH_MAX * 2];
    snprintf(dir, sizeof dir, "%s/%s", a->cfg->procs.dir, base);
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "agent '%.64s' is not installed in agents.dir (%s)", agent_id, a->cfg->procs.dir);
        return AIOS_ERR_NOT_FOUND;
    }
    cJSON *req = cJSON_CreateObject(), *out = NULL;
    cJSON_AddStringToObject(req, "package_dir", dir);
    const cJSON *task = config ? cJSON_GetObjectItemCaseSensitive(config, "task") : NULL;
    if (cJSON_IsString(task)) cJSON_AddStringToObject(req, "task", task->valuestring);
    int rc = agents_start(a, req, &out, err, errlen);
    if (!rc) snprintf(id, idlen, "%s", cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(out, "id")));
    cJSON_Delete(req);
    cJSON_Delete(out);
    return rc;
}

/* ---------- records ---------- */

static cJSON *result_json(const agent *g) {
    cJSON *r = g->last_len ? cJSON_ParseWithLength(g->last_line, g->last_len) : NULL;
    return r ? r : cJSON_CreateString(g->last_line);
}

static cJSON *rec_json(const agent *g) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", g->id);
    cJSON_AddStringToObject(o, "name", g->name);
    cJSON_AddStringToObject(o, "state", agent_state_name(g->state));
    cJSON_AddStringToObject(o, "group", g->group);
    if (g->package[0]) cJSON_AddStringToObject(o, "package", g->package);
    kern_json_add(o, "command", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(g->spec, "command"), true));
    cJSON *env = cJSON_AddArrayToObject(o, "env"); /* names only: values may be secrets */
    const cJSON *kv;
    cJSON_ArrayForEach(kv, cJSON_GetObjectItemCaseSensitive(g->spec, "env")) kern_json_push(env, cJSON_CreateString(kv->string));
    cJSON_AddNumberToObject(o, "priority", spec_num(g->spec, "priority"));
    cJSON_AddStringToObject(o, "restart", spec_str(g, "restart") ? spec_str(g, "restart") : "never");
    cJSON_AddNumberToObject(o, "restarts", g->restarts);
    if (g->pid > 0) cJSON_AddNumberToObject(o, "pid", g->pid);
    cJSON_AddNumberToObject(o, "started", g->started);
    if (g->ended > 0) cJSON_AddNumberToObject(o, "ended", g->ended);
    if (g->exit_code >= 0) cJSON_AddNumberToObject(o, "exit_code", g->exit_code);
    if (g->term_signal > 0) {
        cJSON_AddNumberToObject(o, "signal", g->term_signal);
        cJSON_AddStringToObject(o, "signal_name", sigabbrev_np(g->term_signal) ? sigabbrev_np(g->term_signal) : "?");
    }
    if (g->reason[0]) cJSON_AddStringToObject(o, "reason", g->reason);
    cJSON_AddNumberToObject(o, "cpu_s", round(g->cpu_s * 1000) / 1000);
    cJSON_AddNumberToObject(o, "rss_kb", agent_alive(g) ? (double)g->rss_kb : 0);
    cJSON_AddNumberToObject(o, "peak_rss_kb", (double)g->peak_rss_kb);
    cJSON_AddNumberToObject(o, "processes", agent_alive(g) ? g->n_procs : 0);
    cJSON_AddNumberToObject(o, "syscalls", (double)g->syscalls);
    cJSON_AddNumberToObject(o, "tokens", (double)g->tokens);
    cJSON_AddNumberToObject(o, "tools_run", (double)g->tools);
    cJSON_AddNumberToObject(o, "wait_s", round(g->wait_s * 1000) / 1000); /* in run queues, every syscall together */
    cJSON *lim = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(g->spec, "limits"), true);
    cJSON_AddStringToObject(lim, "applied", g->limits_how);
    const cJSON *mech = cJSON_GetObjectItemCaseSensitive(g->spec, "mechanism");
    if (mech) kern_json_add(lim, "mechanism", cJSON_Duplicate(mech, true));
    if (g->state == AGENT_STOPPED && g->cg[0]) cJSON_AddBoolToObject(o, "frozen", cg_frozen(g));
    kern_json_add(o, "limits", lim);
    cJSON *net = cJSON_AddObjectToObject(o, "network");
    cJSON_AddStringToObject(net, "mode", spec_str(g, "network") ? spec_str(g, "network") : "");
    cJSON_AddStringToObject(net, "applied", g->net_how);
    if (!agent_alive(g) && g->last_len) kern_json_add(o, "result", result_json(g));
    return o;
}

cJSON *agents_list(agents_t *a) {
    cJSON *arr = cJSON_CreateArray();
    pthread_mutex_lock(&a->mu);
    for (int i = a->n - 1; i >= 0; i--) kern_json_push(arr, rec_json(a->recs[i]));
    pthread_mutex_unlock(&a->mu);
    return arr;
}

cJSON *agents_get(agents_t *a, const char *id) {
    pthread_mutex_lock(&a->mu);
    agent *g = agents_find(a, id);
    cJSON *o = g ? rec_json(g) : NULL;
    pthread_mutex_unlock(&a->mu);
    return o;
}

cJSON *agents_aios_status(agents_t *a, const char *id) {
    pthread_mutex_lock(&a->mu);
    agent *g = agents_find(a, id);
    cJSON *o = g ? cJSON_CreateObject() : NULL;
    if (g) {
        bool alive = agent_alive(g) || g->restart_at;
        bool ok = g->state == AGENT_EXITED && g->exit_code == 0;
        cJSON_AddStringToObject(o, "status", alive ? "running" : ok ? "completed" : "failed");
        if (!alive && ok) kern_json_add(o, "result", result_json(g));
        if (!alive && !ok) {
            char msg[400];
            snprintf(msg, sizeof msg, "%s%s%s", agent_state_name(g->state), g->reason[0] ? ": " : "", g->reason);
            if (!g->reason[0] && g->exit_code > 0) snprintf(msg, sizeof msg, "exited with code %d", g->exit_code);
            cJSON_AddStringToObject(o, "error", msg);
        }
        cJSON_AddStringToObject(o, "execution_id", g->id);
    }
    pthread_mutex_unlock(&a->mu);
    return o;
}

cJSON *agents_end_event(agents_t *a, const char *id) {
    cJSON *o = agents_get(a, id);
    if (!o) return cJSON_CreateObject();
    cJSON *e = cJSON_CreateObject();
    static const char *const KEEP[] = {"id", "state", "exit_code", "signal_name", "reason"};
    for (size_t i = 0; i < sizeof KEEP / sizeof KEEP[0]; i++) {
        cJSON *v = cJSON_DetachItemFromObjectCaseSensitive(o, KEEP[i]);
        if (v) kern_json_add(e, KEEP[i], v);
    }
    cJSON_Delete(o);
    return e;
}

void agents_note(agents_t *a, const char *agent_name, const agents_usage *u) {
    if (!a) return;
    pthread_mutex_lock(&a->mu);
    agent *g = strmap_get(&a->live, agent_name);
    if (g) {
        g->syscalls += u->syscall;
        g->tools += u->syscall && u->tool;
        if (u->tokens > 0) g->tokens += (unsigned long long)u->tokens;
        g->wait_s += u->wait_s;
        g->dirty = true;
    }
    pthread_mutex_unlock(&a->mu);
}

int agents_priority(agents_t *a, const char *agent_name) {
    if (!a) return AGENTS_NOT_RUNNING;
    pthread_mutex_lock(&a->mu);
    agent *g = strmap_get(&a->live, agent_name);
    int p = g ? (int)spec_num(g->spec, "priority") : AGENTS_NOT_RUNNING;
    pthread_mutex_unlock(&a->mu);
    return p;
}

/* ---------- signals ---------- */

int agents_signal(agents_t *a, const char *id, agents_op op, char *err, size_t errlen) {
    pthread_mutex_lock(&a->mu);
    agent *g = agents_find(a, id);
    int rc = AIOS_OK;
    agent_state need = op == AGENTS_CONT ? AGENT_STOPPED : AGENT_RUNNING;
    char name[AIOS_NAME_MAX] = "";
    if (!g) rc = AIOS_ERR_NOT_FOUND;
    else if (!(g->state == need || (op == AGENTS_KILL && (g->state == AGENT_STOPPED || g->restart_at)))) {
        snprintf(err, errlen, "agent %s is %s", id, agent_state_name(g->state));
        rc = AIOS_ERR_INVALID;
    }
    if (!rc) {
        snprintf(name, sizeof name, "%s", g->name);
        if (op == AGENTS_STOP) {
            agent_signal(a, g, SIGSTOP);
            g->state = AGENT_STOPPED;
        } else if (op == AGENTS_CONT) {
            g->state = AGENT_RUNNING;
        } else if (g->pid > 0) {
            g->kill_requested = true;
            snprintf(g->reason, sizeof g->reason, "killed by an operator");
            agent_signal(a, g, SIGKILL);
        } else { /* waiting to restart: it stays ended */
            g->restart_at = 0;
            snprintf(g->reason, sizeof g->reason, "killed by an operator while waiting to restart");
            g->state = AGENT_KILLED;
        }
        g->dirty = true;
        agents_save(a, g);
    }
    pthread_mutex_unlock(&a->mu);
    /* its LLM work: held while stopped (parked exactly), released and cancelled on kill */
    if (!rc && op == AGENTS_STOP && a->p.hooks.hold) a->p.hooks.hold(a->p.hooks.ctx, name, true);
    if (!rc && op == AGENTS_CONT) {
        if (a->p.hooks.hold) a->p.hooks.hold(a->p.hooks.ctx, name, false);
        pthread_mutex_lock(&a->mu);
        if ((g = agents_find(a, id)) && g->state == AGENT_RUNNING) agent_signal(a, g, SIGCONT);
        pthread_mutex_unlock(&a->mu);
    }
    if (!rc && op == AGENTS_KILL && a->p.hooks.cancel) a->p.hooks.cancel(a->p.hooks.ctx, name);
    return rc;
}

/* ---------- open / close ---------- */

/* Whether other uids can reach dir (every directory above it searchable: o+x). A sandbox
 * binds an agent's workdir by path, as the agent's uid; if they cannot, agents run under the
 * kernel's uid (logged once). */
static bool reachable(const char *dir) {
    char p[AIOS_PATH_MAX];
    snprintf(p, sizeof p, "%s", dir);
    for (char *s = p + 1;; s++) {
        char c = *s;
        if (c != '/' && c) continue;
        *s = 0;
        struct stat st;
        if (stat(p, &st) || !(st.st_mode & S_IXOTH)) {
            if (geteuid() == 0)
                log_warn("agents: %s is not searchable by other uids, so agents run under the kernel's uid (limits.pids "
                         "is not enforced); make it o+x or set agents.workdir elsewhere",
                         p);
            return false;
        }
        *s = c;
        if (!c) return true;
    }
}

agents_t *agents_open(const agents_params *p, char *err, size_t errlen) {
    agents_t *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->p = *p;
    a->cfg = p->cfg;
    a->wake_fd = -1;
    pthread_mutex_init(&a->mu, NULL);
    if (a->cfg->procs.workdir[0]) snprintf(a->dir, sizeof a->dir, "%s", a->cfg->procs.workdir);
    else snprintf(a->dir, sizeof a->dir, "%.1000s/agents", a->cfg->data_dir);
    const char *host = a->cfg->server.host;
    bool any = !strcmp(host, "0.0.0.0") || !strcmp(host, "::") || !*host;
    snprintf(a->kernel_url, sizeof a->kernel_url, strchr(host, ':') && !any ? "http://[%s]:%d" : "http://%s:%d",
             any ? "127.0.0.1" : host, a->cfg->server.port);
    char db[AIOS_PATH_MAX + 32];
    snprintf(db, sizeof db, "%.1000s/agents.db", a->cfg->data_dir);
    sdb_ckpt *ck = NULL;
    int rc = (mkdir(a->dir, 0711) && errno != EEXIST) || chmod(a->dir, 0711) ? AIOS_ERR_IO : AIOS_OK; /* sandbox uids pass */
    if (rc) snprintf(err, errlen, "%s: %s", a->dir, strerror(errno));
    if (!rc && !(a->sandbox = sandbox_procs_new(a->cfg, err, errlen))) rc = AIOS_ERR_CONFIG;
    if (!rc) a->own_uids = reachable(a->dir);
    if (!rc) cg_open(a);
    if (!rc) rc = sdb_open(db, false, SCHEMA, &a->db, &ck, err, errlen);
    sdb_ckpt_stop(ck); /* a small table: commits checkpoint themselves */
    if (!rc) rc = load_table(a, err, errlen);
    if (!rc) rc = agents_supervisor_start(a, err, errlen);
    if (rc) {
        agents_free(a);
        return NULL;
    }
    return a;
}

void agents_close(agents_t *a) {
    if (!a || !a->db) return;
    pthread_mutex_lock(&a->mu);
    a->stop = true;
    for (int i = 0; i < a->n; i++)
        if (a->recs[i]->pid > 0) {
            a->recs[i]->kill_requested = true;
            snprintf(a->recs[i]->reason, sizeof a->recs[i]->reason, "the kernel shut down under it");
            agent_signal(a, a->recs[i], SIGKILL);
        }
    pthread_mutex_unlock(&a->mu);
    agents_supervisor_stop(a); /* reaps them and saves their rows */
    cg_close(a);
    pthread_mutex_lock(&a->mu);
    if (a->db) sqlite3_close(a->db);
    a->db = NULL;
    pthread_mutex_unlock(&a->mu);
}

void agents_free(agents_t *a) {
    if (!a) return;
    agents_close(a);
    for (int i = 0; i < a->n; i++) rec_free(a->recs[i]);
    free(a->recs);
    strmap_free(&a->live);
    sandbox_procs_free(a->sandbox);
    pthread_mutex_destroy(&a->mu);
    free(a);
}
