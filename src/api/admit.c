/*
 * admit.c - the one admission gate (after redis's processCommand): every request passes
 * here between its route lookup and its handler, and nothing else in the API decides who
 * asks or what they may do.
 *
 * Two steps, both here so identity is decided in one place:
 *   api_gate_identify  before the body is read as JSON: the credentials of the headers
 *                      (a bearer token of an identity; in local mode a bearer name), 401
 *                      in enforce mode without a valid token.
 *   api_gate_admit     after the route's plan has named what the request asks for (its
 *                      syscall kind, the agent named in the body, and each (kind,
 *                      resource, action) claim): settles the agent (token and named agent
 *                      must agree), keeps the reserved connection slots for identities,
 *                      reads the kinds table (implemented, RATED: the agent's token
 *                      bucket, 429; OWNED: resources are namespaces, own needs no rule),
 *                      and decides every claim with the access manager (403), soft claims
 *                      recording a refusal instead of answering it; last, an LLM request
 *                      is counted against the agent's and its group's budgets (429 with
 *                      Retry-After when one is spent).
 * Route handlers never call the access manager's checks; they read r->adm.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "api_internal.h"

/* ---------- per-agent token buckets (access.rate_limit) ---------- */

#define GATE_MAX_BUCKETS 4096 /* beyond it, buckets that have refilled are forgotten */

typedef struct bucket {
    double tokens, t;
} bucket;

struct api_gatekeeper {
    pthread_mutex_t mu;
    strmap buckets; /* agent -> bucket */
    double rate, burst;
    unsigned long long limited; /* requests answered 429 */
};

api_gatekeeper *api_gatekeeper_new(const aios_config *cfg) {
    api_gatekeeper *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    pthread_mutex_init(&g->mu, NULL);
    strmap_init(&g->buckets);
    g->rate = cfg->access.rate_limit;
    g->burst = cfg->access.rate_burst;
    return g;
}

static void bucket_free_cb(const char *key, void *val, void *ctx) {
    (void)key, (void)ctx;
    free(val);
}

void api_gatekeeper_free(api_gatekeeper *g) {
    if (!g) return;
    strmap_foreach(&g->buckets, bucket_free_cb, NULL);
    strmap_free(&g->buckets);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

unsigned long long api_gatekeeper_limited(api_gatekeeper *g) {
    pthread_mutex_lock(&g->mu);
    unsigned long long n = g->limited;
    pthread_mutex_unlock(&g->mu);
    return n;
}

typedef struct sweep {
    api_gatekeeper *g;
    double now;
    char **full;
    size_t n;
} sweep;

static void sweep_cb(const char *key, void *val, void *ctx) {
    sweep *s = ctx;
    const bucket *b = val;
    if (b->tokens + (s->now - b->t) * s->g->rate >= s->g->burst && (s->full[s->n] = strdup(key))) s->n++;
}

/* Forgets the buckets that are full again (an agent that came back gets a fresh one,
 * which is the same thing), so agents named once do not pile up. */
static void sweep_full(api_gatekeeper *g, double now) {
    sweep s = {g, now, calloc(g->buckets.len + 1, sizeof(char *)), 0};
    if (!s.full) return;
    strmap_foreach(&g->buckets, sweep_cb, &s);
    for (size_t i = 0; i < s.n; i++) {
        free(strmap_del(&g->buckets, s.full[i]));
        free(s.full[i]);
    }
    free(s.full);
}

/* Takes one token of agent's bucket: AIOS_OK, or AIOS_ERR_RATE_LIMITED with *retry_s the
 * whole seconds until one is there. */
static int bucket_take(api_gatekeeper *g, const char *agent, int *retry_s) {
    if (g->rate <= 0) return AIOS_OK;
    double now = kern_now_mono();
    int rc = AIOS_OK;
    pthread_mutex_lock(&g->mu);
    bucket *b = strmap_get(&g->buckets, agent);
    if (!b) {
        if (g->buckets.len >= GATE_MAX_BUCKETS) sweep_full(g, now);
        b = malloc(sizeof *b);
        if (b && strmap_put(&g->buckets, agent, b) != AIOS_OK) {
            free(b);
            b = NULL;
        }
        if (b) *b = (bucket){g->burst, now};
    }
    if (!b) rc = AIOS_ERR_NOMEM;
    else {
        b->tokens = fmin(g->burst, b->tokens + (now - b->t) * g->rate);
        b->t = now;
        if (b->tokens >= 1) b->tokens -= 1;
        else {
            rc = AIOS_ERR_RATE_LIMITED;
            *retry_s = (int)ceil((1 - b->tokens) / g->rate);
            g->limited++;
        }
    }
    pthread_mutex_unlock(&g->mu);
    return rc;
}

/* ---------- claims ---------- */

int api_claim_add(api_admission *a, access_kind kind, const char *resource, unsigned action, const cJSON *params, bool soft) {
    if (a->n == a->cap) {
        int cap = a->cap ? a->cap * 2 : 4;
        api_claim *c = realloc(a->claims, (size_t)cap * sizeof *c);
        if (!c) return AIOS_ERR_NOMEM;
        a->claims = c;
        a->cap = cap;
    }
    char *res = resource ? strdup(resource) : NULL;
    if (resource && !res) return AIOS_ERR_NOMEM;
    a->claims[a->n++] = (api_claim){kind, res, action, params, soft, false};
    return AIOS_OK;
}

void api_admission_free(api_admission *a) {
    for (int i = 0; i < a->n; i++) free(a->claims[i].resource);
    free(a->claims);
    memset(a, 0, sizeof *a);
}

/* ---------- identity ---------- */

/* Copies a name, cut (if it must be) at a character boundary so it stays valid UTF-8. */
static void copy_name(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    if (n >= cap) {
        n = cap - 1;
        while (n && ((unsigned char)src[n] & 0xC0) == 0x80) n--; /* src[n] starts a character */
    }
    memcpy(dst, src, n);
    dst[n] = 0;
}

static bool enforce_mode(api_req *r) { return !strcmp(api_cfg(r)->access.mode, "enforce"); }

/* Who asks, from the headers. A bearer token of an identity names its agent (in both
 * modes). In enforce mode nothing else is accepted (401). In local mode a bearer value
 * that is not a token is taken as the agent's name (any OpenAI client can pick one). */
int api_gate_identify(api_req *r, char *err, size_t errlen) {
    const char *auth = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    const char *tok = auth && strncasecmp(auth, "Bearer ", 7) == 0 && auth[7] ? auth + 7 : NULL;
    if (!tok) { /* Anthropic's clients send the key as x-api-key */
        const char *key = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "x-api-key");
        tok = key && *key ? key : NULL;
    }
    snprintf(r->agent, sizeof r->agent, "anonymous");
    r->token_agent = false;
    if (tok && access_authenticate(api_access(r), tok, r->agent, sizeof r->agent) == AIOS_OK) {
        r->token_agent = true;
        return AIOS_OK;
    }
    if (enforce_mode(r)) {
        snprintf(err, errlen,
                 tok ? "the bearer token is unknown or revoked"
                     : "access.mode is enforce: send Authorization: Bearer TOKEN (aios agent create NAME prints one)");
        return AIOS_ERR_UNAUTHORIZED;
    }
    if (tok && strncmp(tok, "aios_", 5) == 0) {
        snprintf(err, errlen, "the bearer token is unknown or revoked");
        return AIOS_ERR_UNAUTHORIZED;
    }
    if (tok && !jp_printable_name(tok)) { /* it becomes the agent's name, echoed in answers */
        snprintf(err, errlen, "Authorization: the bearer value must be valid UTF-8 without control characters");
        return AIOS_ERR_INVALID;
    }
    if (tok) copy_name(r->agent, sizeof r->agent, tok);
    r->bearer_name = tok != NULL;
    return AIOS_OK;
}

/* The agent named in the body (/query's agent_name): it must agree with a token; without
 * one (local mode) it names the agent. Absent, a token names the agent. */
static int settle_agent(api_req *r, const api_admission *a, char *err, size_t errlen) {
    const char *name = a->agent_name;
    if (!name) {
        if (!a->name_required || r->token_agent || r->bearer_name) return AIOS_OK;
        snprintf(err, errlen, "'agent_name' is required (or send Authorization: Bearer with a token or the agent's name)");
        return AIOS_ERR_INVALID;
    }
    if (!*name || strlen(name) >= AIOS_NAME_MAX) {
        snprintf(err, errlen, "'agent_name' must be 1 to %d bytes", AIOS_NAME_MAX - 1);
        return AIOS_ERR_INVALID;
    }
    if (!jp_printable_name(name)) {
        snprintf(err, errlen, "'agent_name' must not hold control characters");
        return AIOS_ERR_INVALID;
    }
    if (r->token_agent && strcmp(name, r->agent)) {
        snprintf(err, errlen, "the token names agent '%s', not '%.64s'", r->agent, name);
        return AIOS_ERR_FORBIDDEN;
    }
    snprintf(r->agent, sizeof r->agent, "%s", name);
    return AIOS_OK;
}

/* ---------- the gate ---------- */

/* Whether the syscall kind behind an access kind is OWNED in the kinds table: its
 * resources are agents' namespaces. */
static bool owned_access(access_kind k) {
    syscall_kind sk = k == ACCESS_KIND_MEMORY ? SYSCALL_KIND_MEMORY
        : k == ACCESS_KIND_STORAGE            ? SYSCALL_KIND_STORAGE
                                              : SYSCALL_KIND__COUNT;
    const syscall_kind_info *info = syscall_kind_get(sk);
    return info && (info->flags & SYSCALL_F_OWNED);
}

unsigned api_storage_action(const char *op) {
    bool read = !strcmp(op, "get_memory") || !strncmp(op, "retrieve", 8) || !strcmp(op, "read") || !strcmp(op, "list");
    return read ? ACCESS_READ : !strcmp(op, "share") ? ACCESS_SHARE : ACCESS_WRITE;
}

int api_claim_tool(api_req *r, api_admission *a, const char *name, const cJSON *params) {
    int rc = api_claim_add(a, ACCESS_KIND_TOOL, name, ACCESS_CALL, params, false);
    const char *op = !rc && api_tools(r) ? tools_storage_op(api_tools(r), name) : NULL;
    return op ? api_claim_add(a, ACCESS_KIND_STORAGE, NULL, api_storage_action(op), NULL, false) : rc;
}

bool api_claimed(const api_admission *a, access_kind kind, const char *resource) {
    for (int i = 0; i < a->n; i++)
        if (a->claims[i].kind == kind && a->claims[i].resource && !strcmp(a->claims[i].resource, resource)) return true;
    return false;
}

void api_admission_unborrow(api_admission *a) {
    a->agent_name = NULL;
    for (int i = 0; i < a->n; i++) a->claims[i].params = NULL;
}

/* A soft claim's refusal is recorded, not answered, only when it is about another
 * agent's namespace and no deny rule made it (storage then falls back to shares). */
static int decide_claims(api_req *r, api_admission *a, char *err, size_t errlen) {
    for (int i = 0; i < a->n; i++) {
        api_claim *c = &a->claims[i];
        const char *res = c->resource ? c->resource : r->agent;
        char sub[512];
        char *p = c->params ? cJSON_PrintUnformatted(c->params) : NULL;
        bool by_deny = false;
        int rc = access_check(api_access(r), r->agent, c->kind, res, c->action, p, &by_deny, sub, sizeof sub);
        free(p);
        c->granted = rc == AIOS_OK;
        if (rc && (!c->soft || by_deny || !strcmp(res, r->agent))) {
            snprintf(err, errlen, "%s", sub);
            return rc;
        }
    }
    return AIOS_OK;
}

int api_gate_admit(api_req *r, api_gate_class gate, api_admission *a, char *err, size_t errlen) {
    int rc = settle_agent(r, a, err, errlen);
    if (rc) return rc;
    if (!api_conn_admits(r, err, errlen)) return AIOS_ERR_BUSY;
    if (gate == API_GATE_ADMIN) {
        /* local mode: loopback clients administer, but not the agents the kernel runs (their
         * sandbox lets them reach this port: their token is held to the rules, as in enforce) */
        if (!enforce_mode(r) && !(r->token_agent && agents_priority(api_agents(r), r->agent) != AGENTS_NOT_RUNNING))
            return AIOS_OK;
        return access_check(api_access(r), r->agent, ACCESS_KIND_ADMIN, r->url, ACCESS_ADMIN, NULL, NULL, err, errlen);
    }
    if (gate != API_GATE_SYSCALL) return AIOS_OK;
    const syscall_kind_info *k = syscall_kind_get(a->kind);
    if (!k->implemented) {
        snprintf(err, errlen, "query_type '%s' needs the %s manager, which this kernel version does not have yet", k->name,
                 k->name);
        return AIOS_ERR_NOT_IMPLEMENTED;
    }
    if ((k->flags & SYSCALL_F_RATED) && (rc = bucket_take(api_gatekeeper_of(r), r->agent, &r->retry_after_s))) {
        if (rc == AIOS_ERR_RATE_LIMITED)
            snprintf(err, errlen, "agent '%s' is over access.rate_limit (%d syscalls/s, bursts of %d): retry in %d s", r->agent,
                     api_cfg(r)->access.rate_limit, api_cfg(r)->access.rate_burst, r->retry_after_s);
        return rc;
    }
    for (int i = 0; i < a->n; i++) /* only an OWNED kind's claims may name the agent's own namespace */
        if (!a->claims[i].resource && !owned_access(a->claims[i].kind)) {
            snprintf(err, errlen, "internal: a claim without a resource on %s", k->name);
            return AIOS_ERR_INTERNAL;
        }
    if ((rc = decide_claims(r, a, err, errlen))) return rc;
    if (a->kind != SYSCALL_KIND_LLM || !a->core) return AIOS_OK;
    /* last: a request refused for any other reason does not spend budget */
    return access_budget_admit(api_access(r), r->agent, llm_core_name(a->core), &r->retry_after_s, err, errlen);
}
