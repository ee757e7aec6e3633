/*
 * remote_internal.h - what the remote backend (remote.c: the I/O thread, transfers,
 * scheduling, errors) shares with its wire dialects: OpenAI chat completions (remote.c) and
 * Anthropic Messages (remote_anthropic.c). A dialect builds the upstream body of a chat and
 * reads the upstream's stream events into the request; everything else is common.
 */
#ifndef AIOS_REMOTE_INTERNAL_H
#define AIOS_REMOTE_INTERNAL_H

#include <curl/curl.h>
#include <pthread.h>
#include <cjson/cJSON.h>
#include "llm_internal.h"

/* One request upstream, as a dialect sees it while reading the stream. */
typedef struct rm_stream {
    llm_request *req;
    syscall_t *sc;
    sched_t *sched; /* charged a token of service per delta passed on */
    bool error;     /* an error event: errmsg says what */
    bool capped;    /* the output reached the syscall's cap or max_tokens (ends as length) */
    int cur_call;   /* Anthropic: the tool_use block being received, -1 = none */
    char errmsg[200];
} rm_stream;

/* Passes generated text on to the syscall (counted and charged to its agent as a token of
 * service; a full buffer caps the stream). */
void rm_emit(rm_stream *s, const char *text);
/* Appends name / arguments text to tool call `index` of the request (created when new). */
void rm_call_append(llm_request *r, int index, const char *name, const char *args);
/* An error event: the stream failed with msg (a string; anything else, or an empty one,
 * reads "an error event"). */
void rm_error_event(rm_stream *s, const cJSON *msg);

/* The body of a 200 answer, n more bytes of it (on the I/O thread; the fuzz harness
 * tests/fuzz/fuzz_remote.c): each whole line of an event stream goes to the dialect's event
 * reader, which passes text to s; a line that is not part of a stream is kept in body
 * (bounded), for the error it may be. line holds a line not yet ended; false once it is
 * longer than 1 MiB (the transfer fails). rm_feed_end: the answer ended (a last, unended
 * line is kept too). */
bool rm_feed(rm_stream *s, bool anthropic, strbuf *line, strbuf *body, const char *p, size_t n);
void rm_feed_end(strbuf *line, strbuf *body);
/* The message of an upstream's JSON error body ({"error": {"message": ...}} or {"error":
 * "..."}) into out; false when body (NULL: none) has none. */
bool rm_body_error(const char *body, char *out, size_t cap);

/* Anthropic Messages (remote_anthropic.c): the body of a chat (NULL on OOM) and one stream event. */
char *rm_anthropic_body(const aios_model_cfg *cfg, const llm_chat *chat);
void rm_anthropic_event(rm_stream *s, const char *data);

/* ---------- the endpoints of a model (remote_fleet.c) ---------- */

typedef enum rm_ep_state { RM_EP_PROBING, RM_EP_UP, RM_EP_SUSPECT, RM_EP_DOWN } rm_ep_state;

typedef struct rm_endpoint {
    char base[AIOS_PATH_MAX];     /* as configured (named in errors) */
    char url[AIOS_PATH_MAX + 32]; /* the dialect's route on it */
    char probe_url[AIOS_PATH_MAX + 96];
    rm_ep_state state;
    int outstanding;
    int fails;                  /* consecutive failures */
    double reopen_at;           /* down: the next probe */
    double last_probe, last_ok; /* monotonic seconds; last_ok -1 = never */
    CURL *probe;                /* the health check in flight */
    struct curl_slist *probe_hdrs;
    unsigned long long requests, failures, retries, breaker_opens;
    char last_error[160];
} rm_endpoint;

#define RM_AFFINITY_SLOTS 1024

typedef struct rm_fleet {
    const aios_model_cfg *cfg; /* borrowed from the engine */
    const char *auth;          /* the key's header line, or NULL (borrowed) */
    bool anthropic;
    int max_inflight; /* per endpoint */
    rm_endpoint ep[AIOS_MAX_ENDPOINTS];
    int n;
    unsigned turn;                       /* ties go round */
    bool disabled;                       /* down for good (no API key): never probed */
    uint64_t aff_key[RM_AFFINITY_SLOTS]; /* agent name hash -> pinned endpoint */
    uint8_t aff_ep[RM_AFFINITY_SLOTS];
    pthread_mutex_t mu;
} rm_fleet;

/* What a request's or a probe's outcome says of its endpoint. */
typedef enum rm_health { RM_HEALTH_OK, RM_HEALTH_NEUTRAL, RM_HEALTH_FAILED, RM_HEALTH_REFUSED } rm_health;
/* Whether a request may start now: an endpoint has room; all usable ones are full; only
 * endpoints not yet checked (wait for their probe); none usable (the model is down). */
typedef enum rm_room { RM_ROOM, RM_FULL, RM_WAIT, RM_DOWN } rm_room;

/* hostname as AIOS writes it ("http://h:8000", ".../v1", with or without '/'): the URL of route. */
void rm_route_url(const char *host, const char *route, char *out, size_t cap);
/* The endpoints of m (its endpoints, or hostname), each with the URL of route. */
int rm_fleet_init(rm_fleet *f, const aios_model_cfg *m, const char *route, const char *auth, bool anthropic);
void rm_fleet_free(rm_fleet *f, CURLM *multi);
rm_room rm_fleet_room(rm_fleet *f);
/* Every endpoint down for good, with why (a cloud model without its key). */
void rm_fleet_disable(rm_fleet *f, const char *why);
/* The endpoint for one of agent's requests (affinity, then the least loaded; not avoid when
 * another can take it), counted as outstanding; -1 when none can take it now. */
int rm_fleet_pick(rm_fleet *f, const char *agent, int avoid);
/* Whether an endpoint other than i is usable and has room now. */
bool rm_fleet_other(rm_fleet *f, int i);
/* A request on endpoint i ended (no longer outstanding) with health h (why: the error). */
void rm_fleet_result(rm_fleet *f, int i, rm_health h, const char *why, bool retried, double now);
/* Starts the health checks that are due on multi; returns when the next one is. */
double rm_fleet_tick(rm_fleet *f, CURLM *multi, double now);
/* easy finished: when it is one of f's health checks, takes its verdict, frees it, true. */
bool rm_fleet_probe_done(rm_fleet *f, CURLM *multi, CURL *easy, CURLcode cc, double now);
bool rm_fleet_down(rm_fleet *f, char *why, size_t cap);
void rm_fleet_stats(rm_fleet *f, llm_core_stats *o, double now);
/* A curl write callback that drops the body. */
size_t rm_discard(char *ptr, size_t size, size_t nmemb, void *ud);

#endif
