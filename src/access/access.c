/*
 * access.c - identities (SQLite + an in-memory map from token hash to agent), rule
 * matching over privilege groups, and waiting calls of irreversible tools (approvals).
 * The audit log is audit.c.
 *
 * Tokens are 24 random bytes (getrandom) in hex behind "aios_"; only their SHA-256 is
 * stored, and lookups go through the hash. Token comparison is a hash-map lookup of the
 * hash, so the time it takes says nothing about how much of a token was right.
 */
#include <fnmatch.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include "access_internal.h"
#include "../storage/storage.h"

typedef struct ident {
    char name[AIOS_NAME_MAX], group[AIOS_NAME_MAX], hash[65];
    double created;
    bool revoked;
} ident;

typedef struct approval {
    uint64_t id;
    char agent[AIOS_NAME_MAX], tool[AIOS_NAME_MAX * 2];
    char *params;
    double created, deadline;
    int state; /* 0 waiting, 1 approved, 2 denied */
    char by[AIOS_NAME_MAX];
    struct approval *next;
} approval;

struct access_manager {
    const aios_config *cfg; /* rules, groups, budgets: replaced whole by access_reload (atomic) */
    aios_config **retired;  /* configs of earlier reloads, owned: readers may still hold one */
    int n_retired;
    bool cfg_owned; /* cfg came from a reload (the first is the caller's)*/
    void (*reset_agent)(void *ctx, const char *name);
    void *reset_ctx;
    sqlite3 *db;
    sdb_ckpt *ckpt;
    pthread_rwlock_t id_lock;
    strmap by_name, by_hash; /* ident*, owned through by_name */
    pthread_mutex_t ap_mu;
    pthread_cond_t ap_cv;
    approval *approvals;
    int n_approvals;
    uint64_t next_approval;
    bool closing;
    audit_log audit;
    budget_set budgets;
    bool budgets_open;
    pthread_t flusher; /* saves budget usage every BUDGET_FLUSH_S while it changes */
    bool flusher_started, flusher_stop;
    pthread_mutex_t fl_mu;
    pthread_cond_t fl_cv;
};

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS identities(name TEXT PRIMARY KEY, grp TEXT NOT NULL, token_sha256 TEXT NOT NULL,"
    " created REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS budget_usage(who TEXT NOT NULL, is_group INTEGER NOT NULL, model TEXT NOT NULL,"
    " minute_start INTEGER NOT NULL, minute_tokens INTEGER NOT NULL, minute_requests INTEGER NOT NULL,"
    " day_start INTEGER NOT NULL, day_tokens INTEGER NOT NULL, PRIMARY KEY(who, is_group, model));";

access_params access_default_params(void) { return (access_params){0}; }

/* The configuration now (a reload may replace it under a reader; both are whole). */
static const aios_config *cfg_of(const access_manager *am) { return __atomic_load_n(&am->cfg, __ATOMIC_ACQUIRE); }

/* ---------- rules ---------- */

static const struct {
    const char *name;
    access_kind kind;
    unsigned all;
} KINDS[] = {
    {"llm", ACCESS_KIND_LLM, ACCESS_USE},
    {"tool", ACCESS_KIND_TOOL, ACCESS_CALL},
    {"memory", ACCESS_KIND_MEMORY, ACCESS_READ | ACCESS_WRITE},
    {"storage", ACCESS_KIND_STORAGE, ACCESS_READ | ACCESS_WRITE | ACCESS_SHARE},
    {"admin", ACCESS_KIND_ADMIN, ACCESS_ADMIN},
};
#define N_KINDS (sizeof KINDS / sizeof KINDS[0])

static const struct {
    const char *name;
    unsigned bit;
} ACTIONS[] = {
    {"use", ACCESS_USE},     {"call", ACCESS_CALL},   {"read", ACCESS_READ},
    {"write", ACCESS_WRITE}, {"share", ACCESS_SHARE}, {"admin", ACCESS_ADMIN},
};

/* "read,write" -> bits; 0 if any word is unknown. */
static unsigned parse_actions(const char *s) {
    unsigned bits = 0;
    while (*s) {
        size_t n = strcspn(s, ",");
        unsigned bit = 0;
        for (size_t i = 0; i < sizeof ACTIONS / sizeof ACTIONS[0]; i++)
            if (strlen(ACTIONS[i].name) == n && !strncmp(ACTIONS[i].name, s, n)) bit = ACTIONS[i].bit;
        if (!bit) return 0;
        bits |= bit;
        s += n + (s[n] == ',');
    }
    return bits;
}

typedef struct rule {
    int kind;                    /* index in KINDS; -1 = "*" */
    char pattern[AIOS_RULE_MAX]; /* "self" = the asking agent's own name */
    unsigned actions;
    bool deny; /* "!kind:pattern[:actions]": refuses, before any rule allows */
} rule;

static int parse_rule(const char *text, rule *r, char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
    if (text[0] == '!') {
        r->deny = true;
        text++;
    }
    if (!strcmp(text, "*")) {
        r->kind = -1;
        return AIOS_OK;
    }
    size_t kn = strcspn(text, ":");
    r->kind = -2;
    for (size_t i = 0; i < N_KINDS; i++)
        if (strlen(KINDS[i].name) == kn && !strncmp(KINDS[i].name, text, kn)) r->kind = (int)i;
    if (r->kind < 0) {
        snprintf(err, errlen, "rule '%s': unknown kind '%.*s' (allowed: llm, tool, memory, storage, admin, or '*')", text,
                 (int)kn, text);
        return AIOS_ERR_CONFIG;
    }
    const char *rest = text[kn] ? text + kn + 1 : "*";
    snprintf(r->pattern, sizeof r->pattern, "%s", *rest ? rest : "*");
    r->actions = KINDS[r->kind].all;
    char *colon = strrchr(r->pattern, ':');
    if (colon) {
        unsigned a = parse_actions(colon + 1);
        if (!a || (a & ~KINDS[r->kind].all)) {
            snprintf(err, errlen, "rule '%s': actions '%s' do not apply to %s", text, colon + 1, KINDS[r->kind].name);
            return AIOS_ERR_CONFIG;
        }
        r->actions = a;
        *colon = 0;
    }
    return AIOS_OK;
}

int access_rule_check(const char *text, char *err, size_t errlen) {
    rule r;
    return parse_rule(text, &r, err, errlen);
}

/* An allow rule must grant every bit of action; a deny rule refuses any of them. */
static bool rule_matches(const rule *r, const char *agent, access_kind kind, const char *resource, unsigned action) {
    if (r->kind == -1) return true;
    if (KINDS[r->kind].kind != kind) return false;
    if (r->deny ? !(r->actions & action) : (r->actions & action) != action) return false;
    if (!strcmp(r->pattern, "self")) return !strcmp(resource, agent);
    return fnmatch(r->pattern, resource, 0) == 0;
}

static const char *const BUILTIN_DEFAULT[] = {"llm:*", "tool:*", NULL};
static const char *const BUILTIN_ADMIN[] = {"*", NULL};

typedef enum verdict { VERDICT_NONE, VERDICT_ALLOW, VERDICT_DENY } verdict;

/* What the rules of group say about the request: a matching deny rule wins over any allow
 * rule; no matching rule says nothing. A group access.groups does not define has the
 * built-in rules (never a deny). */
static verdict group_verdict(const access_manager *am, const char *group, const char *agent, access_kind kind,
                             const char *resource, unsigned action) {
    const aios_group_cfg *g = config_group(cfg_of(am), group);
    const char *const *builtin = g                         ? NULL
        : !strcmp(group, cfg_of(am)->access.admin_group)   ? BUILTIN_ADMIN
        : !strcmp(group, cfg_of(am)->access.default_group) ? BUILTIN_DEFAULT
                                                           : NULL;
    int n = g ? g->n_rules : 0;
    while (builtin && builtin[n]) n++;
    verdict v = VERDICT_NONE;
    for (int i = 0; i < n && v != VERDICT_DENY; i++) {
        rule r;
        char err[160];
        if (parse_rule(g ? g->rules[i] : builtin[i], &r, err, sizeof err) || !rule_matches(&r, agent, kind, resource, action))
            continue;
        v = r.deny ? VERDICT_DENY : VERDICT_ALLOW;
    }
    return v;
}

/* Whether any deny rule of group names kind: only then is an agent's own namespace
 * checked (and audited) at all. */
static bool group_denies_kind(const access_manager *am, const char *group, access_kind kind) {
    const aios_group_cfg *g = config_group(cfg_of(am), group);
    for (int i = 0; g && i < g->n_rules; i++) {
        rule r;
        char err[160];
        if (!parse_rule(g->rules[i], &r, err, sizeof err) && r.deny && (r.kind == -1 || KINDS[r.kind].kind == kind)) return true;
    }
    return false;
}

static const char *action_name(unsigned a) {
    for (size_t i = 0; i < sizeof ACTIONS / sizeof ACTIONS[0]; i++)
        if (ACTIONS[i].bit == a) return ACTIONS[i].name;
    return "access";
}

/* The MCP server whose tools.mcp_servers[].group restricts tool (named "<server>/..."), or
 * NULL. The tool manager keeps every tool of such a server under that prefix. */
static const aios_mcp_cfg *restricting_server(const access_manager *am, const char *tool) {
    for (int i = 0; i < cfg_of(am)->tools.n_mcp; i++) {
        const aios_mcp_cfg *m = &cfg_of(am)->tools.mcp[i];
        size_t n = strlen(m->name);
        if (m->group[0] && !strncmp(tool, m->name, n) && tool[n] == '/') return m;
    }
    return NULL;
}

int access_check(access_manager *am, const char *agent, access_kind kind, const char *resource, unsigned action,
                 const char *params, bool *by_deny, char *err, size_t errlen) {
    if (by_deny) *by_deny = false;
    char group[AIOS_NAME_MAX], res[AIOS_NAME_MAX * 3];
    access_agent_group(am, agent, group, sizeof group);
    bool own = (kind == ACCESS_KIND_MEMORY || kind == ACCESS_KIND_STORAGE) && !strcmp(resource, agent);
    if (own && !group_denies_kind(am, group, kind)) return AIOS_OK; /* no rule consulted */
    const aios_mcp_cfg *srv = kind == ACCESS_KIND_TOOL ? restricting_server(am, resource) : NULL;
    bool member = !srv || !strcmp(group, srv->group) || !strcmp(group, cfg_of(am)->access.admin_group);
    verdict v = member ? group_verdict(am, group, agent, kind, resource, action) : VERDICT_DENY;
    bool ok = v == VERDICT_ALLOW || (own && v == VERDICT_NONE);
    snprintf(res, sizeof res, "%s:%s", KINDS[kind].name, resource);
    access_audit(am, agent, res, action_name(action), ok ? "allow" : "deny", params, NULL, -1);
    if (ok) return AIOS_OK;
    if (by_deny) *by_deny = v == VERDICT_DENY;
    if (!member)
        snprintf(err, errlen, "agent '%s' (group '%s') may not %s %s '%s': MCP server '%s' serves only group '%s'", agent, group,
                 action_name(action), KINDS[kind].name, resource, srv->name, srv->group);
    else if (v == VERDICT_DENY)
        snprintf(err, errlen, "agent '%s' (group '%s') may not %s %s '%s': a deny rule of its group refuses it", agent, group,
                 action_name(action), KINDS[kind].name, resource);
    else
        snprintf(err, errlen, "agent '%s' (group '%s') may not %s %s '%s': no rule of its group allows it", agent, group,
                 action_name(action), KINDS[kind].name, resource);
    return AIOS_ERR_FORBIDDEN;
}

/* ---------- identities ---------- */

static void ident_free_cb(const char *key, void *val, void *ctx) {
    (void)key;
    (void)ctx;
    free(val);
}

/* Puts id in the maps in place of the identity of its name (freed), or leaves them as they
 * were and returns AIOS_ERR_NOMEM (id stays the caller's). */
static int ident_add(access_manager *am, ident *id) {
    if (!id->revoked && strmap_put(&am->by_hash, id->hash, id)) return AIOS_ERR_NOMEM;
    ident *old = strmap_get(&am->by_name, id->name);
    if (strmap_put(&am->by_name, id->name, id)) {
        if (!id->revoked) strmap_del(&am->by_hash, id->hash);
        return AIOS_ERR_NOMEM;
    }
    if (old && !old->revoked) strmap_del(&am->by_hash, old->hash);
    free(old);
    return AIOS_OK;
}

static int load_row(void *ud, int ncol, char **vals, char **cols) {
    (void)ncol;
    (void)cols;
    access_manager *am = ud;
    ident *id = calloc(1, sizeof *id);
    if (!id) return 1;
    snprintf(id->name, sizeof id->name, "%s", vals[0]);
    snprintf(id->group, sizeof id->group, "%s", vals[1]);
    snprintf(id->hash, sizeof id->hash, "%s", vals[2]);
    id->created = atof(vals[3]);
    id->revoked = atoi(vals[4]) != 0;
    if (ident_add(am, id)) {
        free(id);
        return 1;
    }
    return 0;
}

/* The budget flusher: saves usage every BUDGET_FLUSH_S seconds when it changed, so a
 * killed kernel loses at most that much. */
static void *budget_flusher(void *arg) {
    access_manager *am = arg;
    pthread_mutex_lock(&am->fl_mu);
    while (!am->flusher_stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += (time_t)BUDGET_FLUSH_S;
        pthread_cond_timedwait(&am->fl_cv, &am->fl_mu, &until);
        if (am->flusher_stop) break;
        pthread_mutex_unlock(&am->fl_mu);
        pthread_rwlock_wrlock(&am->id_lock); /* the database's writers hold it */
        budgets_flush(&am->budgets, am->db);
        pthread_rwlock_unlock(&am->id_lock);
        pthread_mutex_lock(&am->fl_mu);
    }
    pthread_mutex_unlock(&am->fl_mu);
    return NULL;
}

access_manager *access_open(const access_params *p, char *err, size_t errlen) {
    access_manager *am = calloc(1, sizeof *am);
    if (!am) return NULL;
    am->cfg = p->cfg;
    am->reset_agent = p->reset_agent;
    am->reset_ctx = p->reset_ctx;
    am->next_approval = 1;
    pthread_rwlock_init(&am->id_lock, NULL);
    pthread_mutex_init(&am->fl_mu, NULL);
    pthread_cond_init(&am->fl_cv, NULL);
    pthread_mutex_init(&am->ap_mu, NULL);
    pthread_cond_init(&am->ap_cv, NULL);
    char sub[256];
    for (int g = 0; g < p->cfg->access.n_groups; g++)
        for (int i = 0; i < p->cfg->access.groups[g].n_rules; i++)
            if (access_rule_check(p->cfg->access.groups[g].rules[i], sub, sizeof sub)) {
                snprintf(err, errlen, "access.groups.%s: %s", p->cfg->access.groups[g].name, sub);
                access_close(am);
                return NULL;
            }
    if (sdb_open(p->db_path, false, SCHEMA, &am->db, &am->ckpt, err, errlen) ||
        sqlite3_exec(am->db, "SELECT name, grp, token_sha256, created, revoked FROM identities", load_row, am, NULL) !=
            SQLITE_OK ||
        audit_open(&am->audit, p->audit_path, p->cfg->access.audit_max_bytes, p->cfg->access.audit_keep, err, errlen)) {
        if (!*err) snprintf(err, errlen, "%s: cannot load identities", p->db_path);
        access_close(am);
        return NULL;
    }
    if (budgets_open(&am->budgets, p->cfg, am->db, err, errlen)) {
        access_close(am);
        return NULL;
    }
    am->budgets_open = true;
    if (pthread_create(&am->flusher, NULL, budget_flusher, am) == 0)
        am->flusher_started = true; /* (budgets may come with a reload) */
    return am;
}

void access_stop_approvals(access_manager *am) {
    if (!am) return;
    pthread_mutex_lock(&am->ap_mu);
    am->closing = true;
    pthread_cond_broadcast(&am->ap_cv);
    pthread_mutex_unlock(&am->ap_mu);
}

void access_close(access_manager *am) {
    if (!am) return;
    access_stop_approvals(am);
    pthread_mutex_lock(&am->ap_mu);
    while (am->n_approvals) pthread_cond_wait(&am->ap_cv, &am->ap_mu); /* waiters leave */
    pthread_mutex_unlock(&am->ap_mu);
    if (am->flusher_started) {
        pthread_mutex_lock(&am->fl_mu);
        am->flusher_stop = true;
        pthread_cond_signal(&am->fl_cv);
        pthread_mutex_unlock(&am->fl_mu);
        pthread_join(am->flusher, NULL);
    }
    if (am->budgets_open) {
        if (am->db) budgets_flush(&am->budgets, am->db);
        budgets_close(&am->budgets);
    }
    sdb_ckpt_stop(am->ckpt);
    if (am->db) sqlite3_close(am->db);
    strmap_foreach(&am->by_name, ident_free_cb, NULL);
    strmap_free(&am->by_name);
    strmap_free(&am->by_hash);
    audit_close(&am->audit);
    for (int i = 0; i < am->n_retired; i++) free(am->retired[i]);
    free(am->retired);
    if (am->cfg_owned) free((void *)am->cfg);
    pthread_rwlock_destroy(&am->id_lock);
    pthread_mutex_destroy(&am->fl_mu);
    pthread_cond_destroy(&am->fl_cv);
    pthread_mutex_destroy(&am->ap_mu);
    pthread_cond_destroy(&am->ap_cv);
    free(am);
}

int access_authenticate(access_manager *am, const char *token, char *agent, size_t agent_len) {
    char hash[65];
    access_sha256_hex(token, strlen(token), hash);
    pthread_rwlock_rdlock(&am->id_lock);
    ident *id = strmap_get(&am->by_hash, hash);
    if (id) snprintf(agent, agent_len, "%s", id->name);
    pthread_rwlock_unlock(&am->id_lock);
    if (!id) access_audit(am, "?", "token", "authenticate", "deny", NULL, "unauthorized", -1);
    return id ? AIOS_OK : AIOS_ERR_UNAUTHORIZED;
}

static bool name_ok(const char *s) {
    size_t n = strlen(s);
    if (!n || n >= AIOS_NAME_MAX) return false;
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c < 0x21 || *c == 0x7f) return false;
    return true;
}

static int db_put(access_manager *am, const ident *id) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(am->db,
                           "INSERT OR REPLACE INTO identities(name, grp, token_sha256, created, revoked) VALUES(?,?,?,?,?)", -1,
                           &st, NULL) != SQLITE_OK)
        return AIOS_ERR_IO;
    sqlite3_bind_text(st, 1, id->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id->group, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, id->hash, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 4, id->created);
    sqlite3_bind_int(st, 5, id->revoked);
    int rc = sqlite3_step(st) == SQLITE_DONE ? AIOS_OK : AIOS_ERR_IO;
    sqlite3_finalize(st);
    return rc;
}

/* Puts back the row of name as it was before a db_put the kernel could not follow in memory:
 * old's, or none. */
static void db_restore(access_manager *am, const char *name, const ident *old) {
    sqlite3_stmt *st = NULL;
    int rc = old                                                                                        ? db_put(am, old)
        : sqlite3_prepare_v2(am->db, "DELETE FROM identities WHERE name=?", -1, &st, NULL) != SQLITE_OK ? AIOS_ERR_IO
                                                                                                        : AIOS_OK;
    if (st) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        rc = sqlite3_step(st) == SQLITE_DONE ? AIOS_OK : AIOS_ERR_IO;
        sqlite3_finalize(st);
    }
    if (rc) log_error("access: identity '%s' is stored but could not be taken up or undone (%s)", name, aios_strerror(rc));
}

int access_identity_create(access_manager *am, const char *name, const char *group, bool keep_data, char *token, size_t token_len,
                           char *err, size_t errlen) {
    if (!group || !*group) group = cfg_of(am)->access.default_group;
    if (!name_ok(name) || !name_ok(group)) {
        snprintf(err, errlen, "agent and group names must be 1 to %d printable bytes without spaces", AIOS_NAME_MAX - 1);
        return AIOS_ERR_INVALID;
    }
    unsigned char rnd[24];
    if (token_len < 64 || getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        snprintf(err, errlen, "cannot draw a random token");
        return AIOS_ERR_INTERNAL;
    }
    ident *id = calloc(1, sizeof *id);
    if (!id) return AIOS_ERR_NOMEM;
    int n = snprintf(token, token_len, "aios_");
    for (size_t i = 0; i < sizeof rnd; i++) n += snprintf(token + n, token_len - (size_t)n, "%02x", rnd[i]);
    snprintf(id->name, sizeof id->name, "%s", name);
    snprintf(id->group, sizeof id->group, "%s", group);
    access_sha256_hex(token, strlen(token), id->hash);
    id->created = kern_now_wall();
    pthread_rwlock_wrlock(&am->id_lock);
    ident *old = strmap_get(&am->by_name, name);
    bool reset = old && old->revoked && !keep_data;
    int rc = old && !old->revoked ? AIOS_ERR_EXISTS : db_put(am, id);
    if (!rc && (rc = ident_add(am, id))) db_restore(am, name, old); /* (memory and the database agree) */
    if (rc) free(id);
    pthread_rwlock_unlock(&am->id_lock);
    if (rc == AIOS_ERR_EXISTS) snprintf(err, errlen, "agent '%s' already has an identity (revoke it first)", name);
    else if (rc) snprintf(err, errlen, "cannot store the identity");
    if (!rc && reset && am->reset_agent) am->reset_agent(am->reset_ctx, name);
    access_audit(am, name, "identity", "create", rc ? "deny" : "allow", group,
                 rc          ? aios_errcode(rc)
                     : reset ? "ok, the revoked identity's data was deleted"
                             : "ok",
                 -1);
    return rc;
}

int access_identity_revoke(access_manager *am, const char *name, char *err, size_t errlen) {
    pthread_rwlock_wrlock(&am->id_lock);
    ident *id = strmap_get(&am->by_name, name);
    int rc = !id || id->revoked ? AIOS_ERR_NOT_FOUND : AIOS_OK;
    if (!rc) {
        id->revoked = true;
        strmap_del(&am->by_hash, id->hash);
        rc = db_put(am, id);
    }
    pthread_rwlock_unlock(&am->id_lock);
    if (rc == AIOS_ERR_NOT_FOUND) snprintf(err, errlen, "no live identity '%s'", name);
    access_audit(am, name, "identity", "revoke", rc ? "deny" : "allow", NULL, rc ? aios_errcode(rc) : "ok", -1);
    return rc;
}

static void ident_json_cb(const char *key, void *val, void *ctx) {
    (void)key;
    const ident *id = val;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", id->name);
    cJSON_AddStringToObject(o, "group", id->group);
    cJSON_AddNumberToObject(o, "created", id->created);
    cJSON_AddBoolToObject(o, "revoked", id->revoked);
    kern_json_push(ctx, o);
}

cJSON *access_identities_json(access_manager *am) {
    cJSON *arr = cJSON_CreateArray();
    pthread_rwlock_rdlock(&am->id_lock);
    strmap_foreach(&am->by_name, ident_json_cb, arr);
    pthread_rwlock_unlock(&am->id_lock);
    return arr;
}

typedef struct member_q {
    const char *group;
    bool found;
} member_q;
static void member_cb(const char *key, void *val, void *ctx) {
    (void)key;
    const ident *id = val;
    member_q *q = ctx;
    if (!id->revoked && !strcmp(id->group, q->group)) q->found = true;
}

bool access_group_has_member(access_manager *am, const char *group) {
    member_q q = {group, false};
    pthread_rwlock_rdlock(&am->id_lock);
    strmap_foreach(&am->by_name, member_cb, &q);
    pthread_rwlock_unlock(&am->id_lock);
    return q.found;
}

void access_agent_group(access_manager *am, const char *agent, char *out, size_t outlen) {
    pthread_rwlock_rdlock(&am->id_lock);
    const ident *id = strmap_get(&am->by_name, agent);
    snprintf(out, outlen, "%s", id && !id->revoked ? id->group : config_agent_group(cfg_of(am), agent));
    pthread_rwlock_unlock(&am->id_lock);
}

/* ---------- approvals ---------- */

static void approval_unlink(access_manager *am, approval *a) {
    for (approval **pp = &am->approvals; *pp; pp = &(*pp)->next)
        if (*pp == a) {
            *pp = a->next;
            break;
        }
    am->n_approvals--;
}

/* Waits on a with ap_mu held until decided, expired, cancelled or closing. */
static int approval_wait(access_manager *am, approval *a, const atomic_bool *cancel) {
    while (a->state == 0 && !am->closing) {
        if (cancel && atomic_load(cancel)) return AIOS_ERR_CANCELLED;
        double now = kern_now_wall();
        if (now >= a->deadline) return AIOS_ERR_TIMEOUT;
        double until = now + 0.1 < a->deadline ? now + 0.1 : a->deadline; /* wake to notice a cancel */
        struct timespec ts = {(time_t)until, (long)((until - (double)(time_t)until) * 1e9)};
        pthread_cond_timedwait(&am->ap_cv, &am->ap_mu, &ts);
    }
    return a->state == 1 ? AIOS_OK : AIOS_ERR_FORBIDDEN;
}

int access_await_approval(access_manager *am, const char *agent, const char *tool, const char *params, const atomic_bool *cancel,
                          char *err, size_t errlen) {
    approval *a = calloc(1, sizeof *a);
    if (!a || !(a->params = strdup(params ? params : "{}"))) {
        free(a);
        return AIOS_ERR_NOMEM;
    }
    snprintf(a->agent, sizeof a->agent, "%s", agent);
    snprintf(a->tool, sizeof a->tool, "%s", tool);
    a->created = kern_now_wall();
    a->deadline = a->created + cfg_of(am)->access.approval_timeout_s;
    char res[AIOS_NAME_MAX * 3];
    snprintf(res, sizeof res, "tool:%s", tool);
    pthread_mutex_lock(&am->ap_mu);
    if (am->closing || am->n_approvals >= cfg_of(am)->access.max_approvals) {
        pthread_mutex_unlock(&am->ap_mu);
        snprintf(err, errlen, "denied: %s",
                 am->closing ? "the kernel is shutting down" : "too many calls are waiting for approval (access.max_approvals)");
        access_audit(am, agent, res, "approve", "denied", params, "forbidden", -1);
        free(a->params);
        free(a);
        return AIOS_ERR_FORBIDDEN;
    }
    a->id = am->next_approval++;
    a->next = am->approvals;
    am->approvals = a;
    am->n_approvals++;
    pthread_mutex_unlock(&am->ap_mu);
    log_info("approval %llu: agent '%s' wants to run irreversible tool '%s' (aios approve %llu / aios deny %llu)",
             (unsigned long long)a->id, agent, tool, (unsigned long long)a->id, (unsigned long long)a->id);
    access_audit(am, agent, res, "approve", "awaiting_approval", params, NULL, -1);
    pthread_mutex_lock(&am->ap_mu);
    int rc = approval_wait(am, a, cancel);
    approval_unlink(am, a);
    char by[AIOS_NAME_MAX];
    snprintf(by, sizeof by, "%s", a->by);
    uint64_t id = a->id;
    pthread_cond_broadcast(&am->ap_cv); /* access_close waits for the list to empty */
    pthread_mutex_unlock(&am->ap_mu);
    free(a->params);
    free(a);
    const char *decision = rc == AIOS_OK ? "approved"
        : rc == AIOS_ERR_TIMEOUT         ? "timeout"
        : rc == AIOS_ERR_CANCELLED       ? "cancelled"
                                         : "denied";
    access_audit(am, agent, res, "approve", decision, params, by[0] ? by : NULL, -1);
    if (rc == AIOS_ERR_TIMEOUT) {
        snprintf(err, errlen, "denied: nobody approved call %llu of irreversible tool '%s' within access.approval_timeout (%d s)",
                 (unsigned long long)id, tool, cfg_of(am)->access.approval_timeout_s);
        return AIOS_ERR_FORBIDDEN;
    }
    if (rc == AIOS_ERR_FORBIDDEN)
        snprintf(err, errlen, "denied: call %llu of irreversible tool '%s' was denied%s%s", (unsigned long long)id, tool,
                 by[0] ? " by " : "", by);
    return rc;
}

int access_decide(access_manager *am, uint64_t id, bool approve, const char *by, char *err, size_t errlen) {
    pthread_mutex_lock(&am->ap_mu);
    approval *a = am->approvals;
    while (a && (a->id != id || a->state != 0)) a = a->next;
    if (a) {
        a->state = approve ? 1 : 2;
        snprintf(a->by, sizeof a->by, "%s", by ? by : "");
        pthread_cond_broadcast(&am->ap_cv);
    }
    pthread_mutex_unlock(&am->ap_mu);
    if (!a) snprintf(err, errlen, "no call %llu is waiting for approval", (unsigned long long)id);
    return a ? AIOS_OK : AIOS_ERR_NOT_FOUND;
}

cJSON *access_approvals_json(access_manager *am) {
    cJSON *arr = cJSON_CreateArray();
    double now = kern_now_wall();
    pthread_mutex_lock(&am->ap_mu);
    for (approval *a = am->approvals; a; a = a->next) {
        if (a->state) continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", (double)a->id);
        cJSON_AddStringToObject(o, "agent", a->agent);
        cJSON_AddStringToObject(o, "tool", a->tool);
        cJSON *p = cJSON_Parse(a->params);
        kern_json_add(o, "parameters", p ? p : cJSON_CreateString(a->params));
        cJSON_AddStringToObject(o, "state", "awaiting_approval");
        cJSON_AddNumberToObject(o, "waiting_s", now - a->created);
        cJSON_AddNumberToObject(o, "expires_in_s", a->deadline - now);
        kern_json_push(arr, o);
    }
    pthread_mutex_unlock(&am->ap_mu);
    return arr;
}

void access_audit(access_manager *am, const char *agent, const char *resource, const char *action, const char *decision,
                  const char *params, const char *outcome, double ms) {
    audit_write(&am->audit, agent, resource, action, decision, params, outcome, ms);
}

/* ---------- budgets ---------- */

int access_budget_admit(access_manager *am, const char *agent, const char *model, int *retry_after_s, char *err, size_t errlen) {
    if (!cfg_of(am)->n_budgets) return AIOS_OK;
    char group[AIOS_NAME_MAX];
    access_agent_group(am, agent, group, sizeof group);
    return budgets_admit(&am->budgets, agent, group, model, retry_after_s, err, errlen);
}

void access_budget_charge(access_manager *am, const char *agent, const char *model, long tokens) {
    if (!cfg_of(am)->n_budgets) return;
    char group[AIOS_NAME_MAX];
    access_agent_group(am, agent, group, sizeof group);
    budgets_charge(&am->budgets, agent, group, model, tokens);
}

cJSON *access_budgets_json(access_manager *am) { return budgets_json(&am->budgets); }

/* ---------- reload ---------- */

int access_reload(access_manager *am, aios_config *next, char *err, size_t errlen) {
    char sub[256];
    for (int g = 0; g < next->access.n_groups; g++)
        for (int i = 0; i < next->access.groups[g].n_rules; i++)
            if (access_rule_check(next->access.groups[g].rules[i], sub, sizeof sub)) {
                snprintf(err, errlen, "access.groups.%s: %s", next->access.groups[g].name, sub);
                return AIOS_ERR_CONFIG;
            }
    aios_config **grown = realloc(am->retired, (size_t)(am->n_retired + 1) * sizeof *grown);
    if (!grown) return AIOS_ERR_NOMEM;
    am->retired = grown;
    pthread_rwlock_wrlock(&am->id_lock); /* the database's writers hold it */
    budgets_flush(&am->budgets, am->db);
    int rc = budgets_swap(&am->budgets, next, am->db, err, errlen);
    if (!rc) {
        const aios_config *old = am->cfg;
        __atomic_store_n(&am->cfg, next, __ATOMIC_RELEASE);
        if (am->cfg_owned) am->retired[am->n_retired++] = (aios_config *)old; /* a reader may hold it: kept */
        am->cfg_owned = true;
    }
    pthread_rwlock_unlock(&am->id_lock);
    return rc;
}
