/*
 * budget.c - per-agent and per-group budgets (issue 13, part 5): tokens per minute and per
 * day and requests per minute, of one model or of all models together, enforced by the
 * admission gate before a request is queued, on every door.
 *
 * Windows are fixed and wall-clock aligned: the current minute and the current UTC day, so
 * a refusal can say exactly when the budget frees up (Retry-After). A request is counted
 * when admitted; its tokens (prompt + completion, as the model reported them) when it ends.
 * A token budget is refused once it is spent, so the last request admitted may overshoot it
 * by its own size (the kernel cannot know a request's size before it runs).
 *
 * Usage lives in memory and is written to the access database (table budget_usage) every
 * BUDGET_FLUSH_S seconds while it changes (access.c's flusher thread) and at close; the
 * next start loads it, so a restart does not hand out a fresh budget.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "access_internal.h"

static const char SAVE_SQL[] =
    "INSERT OR REPLACE INTO budget_usage(who, is_group, model, minute_start, minute_tokens, minute_requests, day_start,"
    " day_tokens) VALUES(?,?,?,?,?,?,?,?)";

/* The wall clock in whole seconds, and the windows it falls in. */
static long long now_s(void) { return (long long)time(NULL); }
static long long minute_of(long long t) { return t - t % 60; }
static long long day_of(long long t) { return t - t % 86400; }

/* Starts new windows when the clock has left the old ones (locked). */
static void roll(budget_use *u, long long t) {
    if (u->minute_start != minute_of(t)) {
        u->minute_start = minute_of(t);
        u->minute_tokens = u->minute_requests = 0;
    }
    if (u->day_start != day_of(t)) {
        u->day_start = day_of(t);
        u->day_tokens = 0;
    }
}

/* The saved usage of budget c into u (zero when none is saved). */
static int load_row(const aios_budget_cfg *c, budget_use *u, sqlite3 *db) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           "SELECT minute_start, minute_tokens, minute_requests, day_start, day_tokens FROM budget_usage"
                           " WHERE who = ? AND is_group = ? AND model = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return AIOS_ERR_IO;
    sqlite3_bind_text(st, 1, c->who, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, c->group);
    sqlite3_bind_text(st, 3, c->model, -1, SQLITE_STATIC);
    memset(u, 0, sizeof *u);
    if (sqlite3_step(st) == SQLITE_ROW) {
        u->minute_start = sqlite3_column_int64(st, 0);
        u->minute_tokens = sqlite3_column_int64(st, 1);
        u->minute_requests = sqlite3_column_int64(st, 2);
        u->day_start = sqlite3_column_int64(st, 3);
        u->day_tokens = sqlite3_column_int64(st, 4);
    }
    sqlite3_finalize(st);
    roll(u, now_s());
    return AIOS_OK;
}

int budgets_open(budget_set *b, const aios_config *cfg, sqlite3 *db, char *err, size_t errlen) {
    memset(b, 0, sizeof *b);
    b->cfg = cfg;
    pthread_mutex_init(&b->mu, NULL);
    b->use = calloc((size_t)(cfg->n_budgets ? cfg->n_budgets : 1), sizeof *b->use);
    if (!b->use) {
        budgets_close(b);
        return AIOS_ERR_NOMEM;
    }
    for (int i = 0; i < cfg->n_budgets; i++)
        if (load_row(&cfg->budgets[i], &b->use[i], db)) {
            snprintf(err, errlen, "budgets: cannot read the saved usage: %s", sqlite3_errmsg(db));
            budgets_close(b);
            return AIOS_ERR_IO;
        }
    return AIOS_OK;
}

void budgets_close(budget_set *b) {
    free(b->use);
    b->use = NULL;
    pthread_mutex_destroy(&b->mu);
}

/* Whether budget i covers a request of agent (in group) to model (a served model's name). */
static bool covers(const budget_set *b, int i, const char *agent, const char *group, const char *model) {
    const aios_budget_cfg *c = &b->cfg->budgets[i];
    if (strcmp(c->who, c->group ? group : agent)) return false;
    if (!c->model[0]) return true;
    const aios_model_cfg *m = config_model(b->cfg, c->model); /* the budget may name an alias */
    return m && !strcmp(m->name, model);
}

/* The first limit of budget i that is spent (locked): its name, the seconds until its window
 * ends, the limit; NULL when none is. */
static const char *spent(const budget_use *u, const aios_budget_cfg *c, long long t, long long *retry, long *limit) {
    if (c->requests_per_minute && u->minute_requests >= c->requests_per_minute) {
        *retry = u->minute_start + 60 - t, *limit = c->requests_per_minute;
        return "requests_per_minute";
    }
    if (c->tokens_per_minute && u->minute_tokens >= c->tokens_per_minute) {
        *retry = u->minute_start + 60 - t, *limit = c->tokens_per_minute;
        return "tokens_per_minute";
    }
    if (c->tokens_per_day && u->day_tokens >= c->tokens_per_day) {
        *retry = u->day_start + 86400 - t, *limit = c->tokens_per_day;
        return "tokens_per_day";
    }
    return NULL;
}

int budgets_admit(budget_set *b, const char *agent, const char *group, const char *model, int *retry_after_s, char *err,
                  size_t errlen) {
    long long t = now_s();
    pthread_mutex_lock(&b->mu);
    for (int i = 0; i < b->cfg->n_budgets; i++) {
        if (!covers(b, i, agent, group, model)) continue;
        const aios_budget_cfg *c = &b->cfg->budgets[i];
        roll(&b->use[i], t);
        long long retry = 0;
        long limit = 0;
        const char *what = spent(&b->use[i], c, t, &retry, &limit);
        if (!what) continue;
        pthread_mutex_unlock(&b->mu);
        *retry_after_s = retry > 0 ? (int)retry : 1;
        snprintf(err, errlen, "%s '%s' is over its budget %s.%s.budget%s%s: %s %ld; retry in %d s", c->group ? "group" : "agent",
                 c->who, c->group ? "groups" : "agents", c->who, c->model[0] ? " of model " : "", c->model, what, limit,
                 *retry_after_s);
        return AIOS_ERR_RATE_LIMITED;
    }
    for (int i = 0; i < b->cfg->n_budgets; i++)
        if (covers(b, i, agent, group, model)) {
            b->use[i].minute_requests++;
            b->dirty = true;
        }
    pthread_mutex_unlock(&b->mu);
    return AIOS_OK;
}

void budgets_charge(budget_set *b, const char *agent, const char *group, const char *model, long tokens) {
    long long t = now_s();
    pthread_mutex_lock(&b->mu);
    for (int i = 0; i < b->cfg->n_budgets && tokens > 0; i++)
        if (covers(b, i, agent, group, model)) {
            roll(&b->use[i], t);
            b->use[i].minute_tokens += tokens;
            b->use[i].day_tokens += tokens;
            b->dirty = true;
        }
    pthread_mutex_unlock(&b->mu);
}

int budgets_flush(budget_set *b, sqlite3 *db) {
    pthread_mutex_lock(&b->mu);
    int n = b->cfg->n_budgets;
    budget_use snap[AIOS_MAX_BUDGETS];
    bool dirty = b->dirty;
    memcpy(snap, b->use, (size_t)n * sizeof *snap);
    b->dirty = false;
    pthread_mutex_unlock(&b->mu);
    if (!dirty) return AIOS_OK;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, SAVE_SQL, -1, &st, NULL) != SQLITE_OK) return AIOS_ERR_IO;
    int rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK ? AIOS_OK : AIOS_ERR_IO;
    for (int i = 0; i < n && !rc; i++) {
        const aios_budget_cfg *c = &b->cfg->budgets[i];
        sqlite3_bind_text(st, 1, c->who, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, c->group);
        sqlite3_bind_text(st, 3, c->model, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, snap[i].minute_start);
        sqlite3_bind_int64(st, 5, snap[i].minute_tokens);
        sqlite3_bind_int64(st, 6, snap[i].minute_requests);
        sqlite3_bind_int64(st, 7, snap[i].day_start);
        sqlite3_bind_int64(st, 8, snap[i].day_tokens);
        if (sqlite3_step(st) != SQLITE_DONE) rc = AIOS_ERR_IO;
        sqlite3_reset(st);
    }
    sqlite3_exec(db, rc ? "ROLLBACK" : "COMMIT", NULL, NULL, NULL);
    sqlite3_finalize(st);
    if (rc) {
        log_warn("budgets: cannot save usage: %s", sqlite3_errmsg(db));
        pthread_mutex_lock(&b->mu);
        b->dirty = true; /* again at the next chance */
        pthread_mutex_unlock(&b->mu);
    }
    return rc;
}

cJSON *budgets_json(budget_set *b) {
    cJSON *arr = cJSON_CreateArray();
    long long t = now_s();
    pthread_mutex_lock(&b->mu);
    for (int i = 0; i < b->cfg->n_budgets; i++) {
        const aios_budget_cfg *c = &b->cfg->budgets[i];
        budget_use *u = &b->use[i];
        roll(u, t);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, c->group ? "group" : "agent", c->who);
        cJSON_AddStringToObject(o, "model", c->model[0] ? c->model : "*");
        static const char *const NAME[] = {"tokens_per_minute", "tokens_per_day", "requests_per_minute"};
        const long lim[] = {c->tokens_per_minute, c->tokens_per_day, c->requests_per_minute};
        const long long used[] = {u->minute_tokens, u->day_tokens, u->minute_requests};
        for (int k = 0; k < 3; k++) {
            if (!lim[k]) continue;
            cJSON *l = cJSON_AddObjectToObject(o, NAME[k]);
            cJSON_AddNumberToObject(l, "limit", (double)lim[k]);
            cJSON_AddNumberToObject(l, "used", (double)used[k]);
            cJSON_AddNumberToObject(l, "resets_in_s", (double)(k == 1 ? u->day_start + 86400 - t : u->minute_start + 60 - t));
        }
        kern_json_push(arr, o);
    }
    pthread_mutex_unlock(&b->mu);
    return arr;
}

int budgets_swap(budget_set *b, const aios_config *cfg, sqlite3 *db, char *err, size_t errlen) {
    budget_use *use = calloc((size_t)(cfg->n_budgets ? cfg->n_budgets : 1), sizeof *use);
    if (!use) return AIOS_ERR_NOMEM;
    for (int i = 0; i < cfg->n_budgets; i++)
        if (load_row(&cfg->budgets[i], &use[i], db)) {
            snprintf(err, errlen, "budgets: cannot read the saved usage: %s", sqlite3_errmsg(db));
            free(use);
            return AIOS_ERR_IO;
        }
    pthread_mutex_lock(&b->mu);
    budget_use *old = b->use;
    b->use = use;
    b->cfg = cfg;
    pthread_mutex_unlock(&b->mu);
    free(old);
    return AIOS_OK;
}
