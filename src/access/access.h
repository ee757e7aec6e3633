/*
 * access.h - the access manager (DESIGN.md §1): agent identities and their tokens,
 * privilege groups with rules over resources, user approval of irreversible actions, and
 * the audit log.
 *
 * Identities live in <data_dir>/access.db (SQLite): a name, a group and the SHA-256 of a
 * token that is shown once at creation and never stored. Budgets (budget.c) keep their
 * usage there too. A request's bearer token names
 * its agent; a revoked identity's token stops working at once.
 *
 * Rules are strings "kind:pattern[:actions]" listed per group in access.groups:
 *   llm:PATTERN            models (action use)
 *   tool:PATTERN           tools by name or glob pattern (demo/...) (action call)
 *   memory:AGENT[:read,write]   another agent's memory
 *   storage:AGENT[:read,write,share]   another agent's files
 *   admin                  the admin API
 *   *                      everything
 * A rule starting with '!' denies what it matches, whatever else allows it; the pattern
 * `self` matches the asking agent's own name. An agent's own memory and storage namespace
 * needs no rule: it is refused only by a deny rule of its group (!memory:self:write makes
 * an agent's memory read-only, !storage refuses it all storage). A
 * group that access.groups does not define gets built-in rules: access.default_group may
 * use every model and tool, access.admin_group everything, any other group nothing.
 * An MCP server with tools.mcp_servers[].group serves only that group and the admin group:
 * a call of its tools ("<server>/...") by anyone else is refused whatever their rules say.
 *
 * Every decision that consults rules, every authentication failure, every approval and
 * every tool run is one JSON line in the audit log (time, agent, resource, action,
 * decision, SHA-256 of the parameters, outcome), written with one write(2) so a killed
 * kernel loses no acknowledged line; the file is rotated by size.
 *
 * Thread-safe.
 */
#ifndef AIOS_ACCESS_H
#define AIOS_ACCESS_H

#include <stdatomic.h>
#include <cjson/cJSON.h>
#include "../kernel/kernel.h"

typedef struct access_manager access_manager;

typedef enum access_kind {
    ACCESS_KIND_LLM,
    ACCESS_KIND_TOOL,
    ACCESS_KIND_MEMORY,
    ACCESS_KIND_STORAGE,
    ACCESS_KIND_ADMIN,
} access_kind;

enum {
    ACCESS_USE = 1 << 0,  /* llm */
    ACCESS_CALL = 1 << 1, /* tool */
    ACCESS_READ = 1 << 2, /* memory, storage */
    ACCESS_WRITE = 1 << 3,
    ACCESS_SHARE = 1 << 4,
    ACCESS_ADMIN = 1 << 5,
};

typedef struct access_params {
    const aios_config *cfg; /* borrowed; groups, mode, approval and audit settings */
    const char *db_path;    /* identities */
    const char *audit_path;
    /* Called (from the creating thread, no lock held) when a name whose identity was revoked
     * gets a new identity: its data (memory, files, shares granted to it, tool workdirs) must
     * go, so the new identity starts empty. May be NULL. */
    void (*reset_agent)(void *ctx, const char *name);
    void *reset_ctx;
} access_params;

access_params access_default_params(void);
access_manager *access_open(const access_params *p, char *err, size_t errlen);
void access_close(access_manager *am); /* accepts NULL; wakes and denies pending approvals */
/* Denies every waiting and future approval (shutdown); the manager stays usable. */
void access_stop_approvals(access_manager *am);

/* Checks a rule string; AIOS_ERR_CONFIG with err saying why. */
int access_rule_check(const char *rule, char *err, size_t errlen);

/* ---- identities ---- */
/* The agent a bearer token names: AIOS_OK, or AIOS_ERR_UNAUTHORIZED (unknown or revoked;
 * audited). */
int access_authenticate(access_manager *am, const char *token, char *agent, size_t agent_len);
/* Creates NAME in GROUP (NULL: access.default_group); writes the new token (shown once)
 * into token (at least 64 bytes). AIOS_ERR_EXISTS if NAME has a live identity. When NAME
 * had a revoked identity, the new one starts empty (params.reset_agent) unless keep_data
 * (an admin's explicit choice) hands it the old identity's data. */
int access_identity_create(access_manager *am, const char *name, const char *group, bool keep_data, char *token, size_t token_len,
                           char *err, size_t errlen);
int access_identity_revoke(access_manager *am, const char *name, char *err, size_t errlen); /* NOT_FOUND */
/* [{name, group, created, revoked}] (never a token or its hash); caller owns it. */
cJSON *access_identities_json(access_manager *am);
/* Whether any live identity is in group. */
bool access_group_has_member(access_manager *am, const char *group);
/* The group of agent: its identity's, else agents.<name>.group, else access.default_group. */
void access_agent_group(access_manager *am, const char *agent, char *out, size_t outlen);

/* ---- rules ---- */
/* Whether agent may do action on resource of kind (a model name, a tool name, an owner
 * agent: resource == agent is its own namespace); AIOS_OK or AIOS_ERR_FORBIDDEN with err
 * naming the agent, resource, group and why. Audited whenever a rule decided; params (may
 * be NULL) is hashed into the audit line; *by_deny (may be NULL) says whether a deny rule
 * (rather than the lack of an allow rule) refused it. Called only by the API's admission
 * gate. */
int access_check(access_manager *am, const char *agent, access_kind kind, const char *resource, unsigned action,
                 const char *params, bool *by_deny, char *err, size_t errlen);

/* ---- budgets (agents.<name>.budget, groups.<name>.budget) ---- */
/* Counts a request of agent to model (a served model's name) against the budgets covering
 * it: AIOS_OK, or AIOS_ERR_RATE_LIMITED with err naming the budget and the limit, and
 * *retry_after_s the seconds until it frees up. Called only by the admission gate. */
int access_budget_admit(access_manager *am, const char *agent, const char *model, int *retry_after_s, char *err, size_t errlen);
/* Charges the tokens (prompt + completion) of a finished request; usage is saved to the
 * database at least every few seconds while it changes, and at close. */
void access_budget_charge(access_manager *am, const char *agent, const char *model, long tokens);
/* Every budget with its limits, use and when each window resets; caller owns it. */
cJSON *access_budgets_json(access_manager *am);

/* ---- reload (SIGHUP) ---- */
/* Takes the rules, groups, agents' groups and budgets of next (which it owns from then on:
 * earlier ones are kept until close, since a request may still read one); budget usage
 * carries over by agent or group and model. AIOS_ERR_CONFIG with err naming a bad rule, and
 * then nothing changed (next is still the caller's). */
int access_reload(access_manager *am, aios_config *next, char *err, size_t errlen);

/* ---- approvals ---- */
/* Blocks the calling thread until a user approves (AIOS_OK) or denies the call, or
 * access.approval_timeout passes (AIOS_ERR_FORBIDDEN, err says which), or *cancel is set
 * (AIOS_ERR_CANCELLED). The call is listed by access_approvals_json meanwhile. */
int access_await_approval(access_manager *am, const char *agent, const char *tool, const char *params, const atomic_bool *cancel,
                          char *err, size_t errlen);
/* Decides a waiting call: AIOS_OK, AIOS_ERR_NOT_FOUND (no such waiting call). */
int access_decide(access_manager *am, uint64_t id, bool approve, const char *by, char *err, size_t errlen);
/* [{id, agent, tool, parameters, waiting_s, expires_in_s, state}]; caller owns it. */
cJSON *access_approvals_json(access_manager *am);

/* ---- audit ---- */
/* One line: {time, agent, resource, action, decision, params_sha256, outcome[, ms]}.
 * outcome NULL is omitted; ms < 0 is omitted. */
void access_audit(access_manager *am, const char *agent, const char *resource, const char *action, const char *decision,
                  const char *params, const char *outcome, double ms);

/* Hex SHA-256 of data into out (65 bytes). */
void access_sha256_hex(const void *data, size_t len, char out[65]);

#endif
