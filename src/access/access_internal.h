/*
 * access_internal.h - internal to the access module: the audit log writer (audit.c) and
 * the budgets (budget.c).
 */
#ifndef AIOS_ACCESS_INTERNAL_H
#define AIOS_ACCESS_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>
#include "access.h"

typedef struct audit_log {
    pthread_mutex_t mu;
    int fd;
    char path[AIOS_PATH_MAX];
    long size, max_bytes;
    int keep;
    bool open;
} audit_log;

int audit_open(audit_log *a, const char *path, long max_bytes, int keep, char *err, size_t errlen);
void audit_close(audit_log *a);
void audit_write(audit_log *a, const char *agent, const char *resource, const char *action, const char *decision,
                 const char *params, const char *outcome, double ms);

/* ---- budgets (budget.c) ---- */

typedef struct budget_use {
    long long minute_start, minute_tokens, minute_requests; /* the current wall-clock minute */
    long long day_start, day_tokens;                        /* the current UTC day */
} budget_use;

typedef struct budget_set {
    const aios_config *cfg; /* its budgets (borrowed) */
    pthread_mutex_t mu;
    budget_use *use; /* one per cfg->budgets[i] */
    bool dirty;      /* changed since the last flush */
} budget_set;

#define BUDGET_FLUSH_S 2 /* seconds between saves of changed usage */

/* The budgets of cfg with the usage saved in db (its budget_usage table). */
int budgets_open(budget_set *b, const aios_config *cfg, sqlite3 *db, char *err, size_t errlen);
void budgets_close(budget_set *b);
/* AIOS_OK (the request counted against every budget covering it) or AIOS_ERR_RATE_LIMITED
 * with the budget and limit named in err and the seconds until it frees up. */
int budgets_admit(budget_set *b, const char *agent, const char *group, const char *model, int *retry_after_s, char *err,
                  size_t errlen);
/* Adds tokens to every budget covering the request. */
void budgets_charge(budget_set *b, const char *agent, const char *group, const char *model, long tokens);
/* Takes the budgets of cfg (a reload), their usage read back from db (saved first by the
 * caller, who serializes use of db); the old ones' usage goes. */
int budgets_swap(budget_set *b, const aios_config *cfg, sqlite3 *db, char *err, size_t errlen);
/* Saves the usage (the caller serializes use of db). */
int budgets_flush(budget_set *b, sqlite3 *db);
/* [{agent|group, model, tokens_per_minute: {limit, used, resets_in_s}, ...}], a new array. */
cJSON *budgets_json(budget_set *b);

#endif
