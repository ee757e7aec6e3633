/*
 * agents.c - multi-agent benchmark: N simulated tool-using agents, each a multi-turn
 * conversation, against any OpenAI-compatible /v1/chat/completions URL (aiosd or llama-server).
 *
 * Why: single requests (bench/loadgen) measure raw throughput, but an agent kernel is judged by
 * how it serves many *conversations* at once: every agent shares one long system prompt (tool
 * descriptions), its context grows turn by turn, and between turns it is away on a tool call.
 * That is where scheduling policy, fairness and prefix/KV reuse show up. This program measures
 * per-agent completion time (makespan, mean, p99, Jain's fairness over slowdowns), aggregate
 * generated tokens/s, and how much prompt the server actually had to compute.
 *
 * What one agent does (one pthread and one libcurl easy handle each):
 *   messages = [system: shared ~S-token tool list, user: "Agent i: plan step 1 of your task ..."]
 *   T times: POST {model, messages, max_tokens G, temperature 0, ignore_eos true} with
 *            "Authorization: Bearer agent-<i>" (aiosd names the agent by it); append the reply;
 *            unless it was the last turn, sleep P_MS (the simulated tool call) and append a
 *            user message "Tool result for step k: ..." (~27 tokens, deterministic).
 * All agents start together on a barrier; an agent's completion time runs from that barrier to
 * the end of its last turn. A failed request (transport error, HTTP status other than 200, an
 * unparsable or oversized response) is counted, reported, and ends that agent: it did not
 * complete. Nothing is retried. A turn whose usage.completion_tokens differs from G is counted
 * as a length mismatch (reported, not fatal).
 *
 * The system prompt is deterministic text (made-up tool descriptions) cut to ~S tokens: first
 * 4 chars/token, then calibrated against the server's own tokenizer (usage.prompt_tokens of a
 * max_tokens=1 request, minus the same request with an empty system message) until it is within
 * +-5% of S. --sys-chars C skips calibration (no extra requests; s_measured is then null), so a
 * harness can calibrate once and keep the server's counters clean for the measured run.
 *
 *   agents URL N T G S P_MS [--alone] [--alone-s SEC] [--label NAME] [--model NAME]
 *          [--sys-chars C] [--agent-base K] [--timeout SEC]
 *
 * --alone runs one agent (id K, default 0) through all T turns: its completion time alone, the
 * denominator of the slowdowns. --alone-s SEC adds jain = (sum x)^2 / (n sum x^2) with
 * x_i = completion_i / SEC over the agents that completed. Prints one JSON line on stdout;
 * diagnostics go to stderr. Exit status 0 when the JSON line was printed (failures are data),
 * 2 on bad usage or when setup (calibration) fails.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cJSON.h>
#include <curl/curl.h>

#define AG_RESP_CAP (16u << 20) /* largest response body accepted */
#define AG_ERR_LEN 256
#define AG_MAX_AGENTS 4096
#define AG_MAX_TURNS 10000
#define AG_ERR_PRINT 8 /* failures echoed to stderr; the rest are only counted */

typedef struct ag_opts {
    const char *url, *label, *model;
    int n, turns, g, s, p_ms;
    int alone, agent_base, sys_chars;
    double alone_s; /* <= 0: not given */
    long timeout_s;
} ag_opts;

/* One request's outcome. */
typedef struct ag_sample {
    double latency;
    int ok;
    long status; /* HTTP status, 0 on transport error */
    int prompt_tokens, completion_tokens;
    int prompt_n;         /* llama-server timings.prompt_n; -1 if the response had none */
    char err[AG_ERR_LEN]; /* why it failed ("" when ok) */
    char kind[32];        /* failure class for the summary: http_400, transport, ... */
} ag_sample;

typedef struct ag_agent {
    int id;
    const ag_opts *o;
    const char *sys;
    pthread_barrier_t *start;
    ag_sample *samples; /* turns entries; the first `done` are filled */
    int done;           /* requests made (ok or not) */
    int completed;      /* all turns succeeded */
    double end;         /* absolute time its last request ended */
} ag_agent;

/* ---------- small utilities ---------- */

static double ag_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void ag_sleep_ms(int ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {}
}

static int ag_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v[0..n); 0 when empty. */
static double ag_pct(const double *v, int n, double p) {
    if (n <= 0) return 0;
    int i = (int)ceil(p * n) - 1;
    if (i < 0) i = 0;
    if (i >= n) i = n - 1;
    return v[i];
}

/* Rounded to 3 decimals so cJSON prints short numbers. */
static double ag_r3(double x) { return round(x * 1000.0) / 1000.0; }

/* ---------- bounded response buffer ---------- */

typedef struct ag_buf {
    char *p;
    size_t n, cap;
    int overflow;
} ag_buf;

static size_t ag_buf_write(char *data, size_t size, size_t nmemb, void *ud) {
    ag_buf *b = ud;
    size_t len = size * nmemb;
    if (b->n + len + 1 > AG_RESP_CAP) {
        b->overflow = 1;
        return 0; /* makes curl fail with CURLE_WRITE_ERROR */
    }
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 16384;
        while (cap < b->n + len + 1) cap *= 2;
        if (cap > AG_RESP_CAP) cap = AG_RESP_CAP;
        char *p = realloc(b->p, cap);
        if (!p) return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, len);
    b->n += len;
    b->p[b->n] = 0;
    return len;
}

static void ag_buf_reset(ag_buf *b) {
    b->n = 0;
    b->overflow = 0;
    if (b->p) b->p[0] = 0;
}

/* ---------- deterministic text ---------- */

static const char *const AG_VERBS[] = {"frobnicate", "reticulate", "defragment",  "transmogrify", "quantize",
                                       "summarize",  "reconcile",  "index",       "annotate",     "compact",
                                       "validate",   "geocode",    "deduplicate", "rebalance",    "snapshot"};
static const char *const AG_NOUNS[] = {"splines",  "ledger",   "invoice", "calendar", "inventory", "playlist",
                                       "sensor",   "manifest", "archive", "forecast", "shipment",  "roster",
                                       "glossary", "timeline", "budget",  "catalog",  "itinerary"};
static const char *const AG_TYPES[] = {"a JSON object", "a list of strings", "an integer count",
                                       "a status code", "a table of rows",   "a short report"};

#define AG_LEN(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Appends "Tool k: verb_noun(x, limit) -- ..." lines to a growing string until it holds at
 * least `chars` characters, then cuts it at the last space at or before `chars`. */
static char *ag_sys_text(int chars) {
    size_t cap = (size_t)chars + 512, n = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    n = (size_t)snprintf(s, cap, "You are an agent that solves tasks step by step with these tools.\n");
    for (int k = 1; n < (size_t)chars; k++) {
        const char *v = AG_VERBS[k % AG_LEN(AG_VERBS)], *no = AG_NOUNS[(k * 7) % AG_LEN(AG_NOUNS)];
        const char *ty = AG_TYPES[(k * 5) % AG_LEN(AG_TYPES)];
        char line[320];
        int m = snprintf(line, sizeof line,
                         "Tool %d: %s_%s(x, limit) -- will %s the %s named x, at most limit items, "
                         "and returns %s; it fails with error %d if x is unknown.\n",
                         k, v, no, v, no, ty, 400 + k % 100);
        if (n + (size_t)m + 1 > cap) {
            cap = (n + (size_t)m + 1) * 2;
            char *p = realloc(s, cap);
            if (!p) {
                free(s);
                return NULL;
            }
            s = p;
        }
        memcpy(s + n, line, (size_t)m + 1);
        n += (size_t)m;
    }
    size_t cut = (size_t)chars;
    while (cut > 0 && !isspace((unsigned char)s[cut])) cut--;
    s[cut > 0 ? cut : (size_t)chars] = 0;
    return s;
}

static void ag_first_user_msg(char *out, size_t len, int id) {
    snprintf(out, len,
             "Agent %d: plan step 1 of your task. Your task is to audit account %d: list what to check, "
             "then call one tool per step and report what you found.",
             id, 1000 + id * 37);
}

static void ag_tool_result(char *out, size_t len, int id, int step) {
    snprintf(out, len, "Tool result for step %d: status ok, %d records matched, elapsed %d ms. Continue with step %d.", step,
             3 + (id + step) % 9, 40 + (id * 7 + step * 3) % 60, step + 1);
}

/* ---------- one chat request ---------- */

static cJSON *ag_msg(const char *role, const char *content) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", role);
    cJSON_AddStringToObject(m, "content", content);
    return m;
}

static void ag_fail(ag_sample *s, const char *kind, const char *msg) {
    s->ok = 0;
    snprintf(s->kind, sizeof s->kind, "%s", kind);
    snprintf(s->err, sizeof s->err, "%s", msg);
}

/* Error text of an HTTP error body: OpenAI's error.message if present, else the raw start. */
static void ag_http_error(ag_sample *s, const ag_buf *b) {
    char kind[32], msg[AG_ERR_LEN];
    snprintf(kind, sizeof kind, "http_%ld", s->status);
    cJSON *r = cJSON_Parse(b->p ? b->p : "");
    cJSON *e = r ? cJSON_GetObjectItemCaseSensitive(r, "error") : NULL;
    cJSON *m = cJSON_IsObject(e) ? cJSON_GetObjectItemCaseSensitive(e, "message") : NULL;
    if (cJSON_IsString(m)) snprintf(msg, sizeof msg, "HTTP %ld: %s", s->status, m->valuestring);
    else snprintf(msg, sizeof msg, "HTTP %ld: %.200s", s->status, b->p ? b->p : "");
    cJSON_Delete(r);
    ag_fail(s, kind, msg);
}

/* Reads usage and timings from a 200 response; returns the reply text (owned) or NULL. */
static char *ag_parse_reply(ag_sample *s, const ag_buf *b) {
    cJSON *r = cJSON_Parse(b->p ? b->p : "");
    if (!r) {
        ag_fail(s, "parse", "response is not JSON");
        return NULL;
    }
    cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r, "choices"), 0);
    cJSON *msg = ch ? cJSON_GetObjectItemCaseSensitive(ch, "message") : NULL;
    cJSON *content = msg ? cJSON_GetObjectItemCaseSensitive(msg, "content") : NULL;
    cJSON *usage = cJSON_GetObjectItemCaseSensitive(r, "usage");
    cJSON *pt = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens");
    cJSON *ct = cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens");
    cJSON *pn = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r, "timings"), "prompt_n");
    char *reply = NULL;
    if (!cJSON_IsString(content) || !cJSON_IsNumber(pt) || !cJSON_IsNumber(ct)) {
        ag_fail(s, "parse", "response lacks choices[0].message.content or usage");
    } else {
        s->prompt_tokens = pt->valueint;
        s->completion_tokens = ct->valueint;
        s->prompt_n = cJSON_IsNumber(pn) ? pn->valueint : -1;
        reply = strdup(content->valuestring);
        s->ok = reply != NULL;
        if (!reply) ag_fail(s, "oom", "out of memory");
    }
    cJSON_Delete(r);
    return reply;
}

/* POSTs messages and fills s; returns the assistant's reply (owned by the caller) or NULL. */
static char *ag_chat(CURL *c, const ag_opts *o, const char *bearer, cJSON *msgs, int max_tokens, ag_buf *b, ag_sample *s) {
    memset(s, 0, sizeof *s);
    s->prompt_n = -1;
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "model", o->model);
    cJSON_AddItemReferenceToObject(req, "messages", msgs); /* not freed with req */
    cJSON_AddNumberToObject(req, "max_tokens", max_tokens);
    cJSON_AddNumberToObject(req, "temperature", 0);
    cJSON_AddBoolToObject(req, "ignore_eos", 1);
    char *body = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    if (!body) {
        ag_fail(s, "oom", "out of memory");
        return NULL;
    }

    char url[1024], auth[128];
    snprintf(url, sizeof url, "%s/v1/chat/completions", o->url);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", bearer);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, auth);
    h = curl_slist_append(h, "Expect:"); /* no 100-continue round trip on large bodies */
    ag_buf_reset(b);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ag_buf_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, o->timeout_s);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);

    double t0 = ag_now();
    CURLcode rc = curl_easy_perform(c);
    s->latency = ag_now() - t0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &s->status);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(h);
    free(body);

    if (b->overflow) {
        ag_fail(s, "too_large", "response exceeds 16 MiB");
        return NULL;
    }
    if (rc != CURLE_OK) {
        char msg[AG_ERR_LEN];
        snprintf(msg, sizeof msg, "transport: %s", curl_easy_strerror(rc));
        ag_fail(s, rc == CURLE_OPERATION_TIMEDOUT ? "timeout" : "transport", msg);
        return NULL;
    }
    if (s->status != 200) {
        ag_http_error(s, b);
        return NULL;
    }
    return ag_parse_reply(s, b);
}

/* ---------- system prompt calibration ---------- */

/* usage.prompt_tokens of [system: sys, user: "x"] with max_tokens 1; -1 on failure. */
static int ag_prompt_tokens(CURL *c, const ag_opts *o, ag_buf *b, const char *sys) {
    cJSON *msgs = cJSON_CreateArray();
    cJSON_AddItemToArray(msgs, ag_msg("system", sys));
    cJSON_AddItemToArray(msgs, ag_msg("user", "x"));
    ag_sample s;
    char *reply = ag_chat(c, o, "agent-calibrate", msgs, 1, b, &s);
    cJSON_Delete(msgs);
    free(reply);
    if (!s.ok) fprintf(stderr, "agents: calibration request failed: %s\n", s.err);
    return s.ok ? s.prompt_tokens : -1;
}

/* Finds a text length whose system message is within +-5% of o->s tokens (at most 5 tries).
 * Returns the text (owned), its length in *chars and its measured tokens in *measured. */
static char *ag_calibrate(const ag_opts *o, int *chars, int *measured) {
    CURL *c = curl_easy_init();
    ag_buf b = {0};
    char *sys = NULL;
    int base = c ? ag_prompt_tokens(c, o, &b, "") : -1;
    int len = o->s * 4;
    for (int tries = 0; base >= 0 && tries < 5; tries++) {
        free(sys);
        if (!(sys = ag_sys_text(len))) break;
        int t = ag_prompt_tokens(c, o, &b, sys);
        if (t < 0) break;
        *measured = t - base;
        *chars = len;
        if (*measured <= 0 || abs(*measured - o->s) * 20 <= o->s) break;
        if (tries == 4) fprintf(stderr, "agents: warning: system prompt is %d tokens, not within 5%% of %d\n", *measured, o->s);
        len = (int)((double)len * o->s / *measured);
    }
    if (base < 0 || *measured <= 0) {
        free(sys);
        sys = NULL;
    }
    free(b.p);
    if (c) curl_easy_cleanup(c);
    return sys;
}

/* ---------- one agent ---------- */

static void *ag_agent_run(void *arg) {
    ag_agent *a = arg;
    const ag_opts *o = a->o;
    CURL *c = curl_easy_init();
    ag_buf b = {0};
    char bearer[32], text[512];
    snprintf(bearer, sizeof bearer, "agent-%d", a->id);
    cJSON *msgs = cJSON_CreateArray();
    cJSON_AddItemToArray(msgs, ag_msg("system", a->sys));
    ag_first_user_msg(text, sizeof text, a->id);
    cJSON_AddItemToArray(msgs, ag_msg("user", text));

    pthread_barrier_wait(a->start);
    for (int k = 1; k <= o->turns; k++) {
        ag_sample *s = &a->samples[k - 1];
        char *reply = NULL;
        if (c) reply = ag_chat(c, o, bearer, msgs, o->g, &b, s);
        else ag_fail(s, "transport", "curl_easy_init failed");
        a->done = k;
        if (!reply) break;
        cJSON_AddItemToArray(msgs, ag_msg("assistant", reply));
        free(reply);
        if (k == o->turns) {
            a->completed = 1;
            break;
        }
        ag_sleep_ms(o->p_ms);
        ag_tool_result(text, sizeof text, a->id, k);
        cJSON_AddItemToArray(msgs, ag_msg("user", text));
    }
    a->end = ag_now();
    cJSON_Delete(msgs);
    free(b.p);
    if (c) curl_easy_cleanup(c);
    return NULL;
}

/* ---------- summary ---------- */

typedef struct ag_totals {
    long tokens, prompt_tokens, prompt_n;
    int have_prompt_n, requests, ok, failures, mismatches, completed;
    double end_max;
} ag_totals;

/* Adds failure kind to the {"kind": count} object. */
static void ag_count_kind(cJSON *errors, const char *kind) {
    cJSON *k = cJSON_GetObjectItemCaseSensitive(errors, kind);
    if (k) cJSON_SetNumberValue(k, k->valuedouble + 1);
    else cJSON_AddNumberToObject(errors, kind, 1);
}

static ag_totals ag_sum(const ag_opts *o, ag_agent *ags, int n, double t0, cJSON *errors, cJSON **first_err, double *lat) {
    ag_totals t = {0};
    int printed = 0;
    for (int i = 0; i < n; i++) {
        ag_agent *a = &ags[i];
        t.completed += a->completed;
        if (a->end - t0 > t.end_max) t.end_max = a->end - t0;
        for (int k = 0; k < a->done; k++) {
            ag_sample *s = &a->samples[k];
            t.requests++;
            if (!s->ok) {
                t.failures++;
                ag_count_kind(errors, s->kind);
                if (!*first_err) *first_err = cJSON_CreateString(s->err);
                if (printed++ < AG_ERR_PRINT) fprintf(stderr, "agents: agent-%d turn %d failed: %s\n", a->id, k + 1, s->err);
                continue;
            }
            lat[t.ok++] = s->latency;
            t.tokens += s->completion_tokens;
            t.prompt_tokens += s->prompt_tokens;
            t.mismatches += s->completion_tokens != o->g;
            if (s->prompt_n >= 0) {
                t.prompt_n += s->prompt_n;
                t.have_prompt_n = 1;
            }
        }
    }
    return t;
}

static void ag_report(const ag_opts *o, ag_agent *ags, int n, double t0, int s_measured) {
    cJSON *errors = cJSON_CreateObject(), *first_err = NULL;
    double *lat = calloc((size_t)n * (size_t)o->turns, sizeof *lat), *comp = calloc((size_t)n, sizeof *comp);
    ag_totals t = ag_sum(o, ags, n, t0, errors, &first_err, lat);
    cJSON *comps = cJSON_CreateArray();
    int nc = 0;
    double csum = 0, xsum = 0, x2sum = 0;
    for (int i = 0; i < n; i++) {
        if (!ags[i].completed) continue;
        double ci = ags[i].end - t0, x = o->alone_s > 0 ? ci / o->alone_s : 0;
        comp[nc++] = ci;
        csum += ci;
        xsum += x;
        x2sum += x * x;
        cJSON_AddItemToArray(comps, cJSON_CreateNumber(ag_r3(ci)));
    }
    qsort(comp, (size_t)nc, sizeof *comp, ag_cmp_double);
    qsort(lat, (size_t)t.ok, sizeof *lat, ag_cmp_double);

    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "label", o->label);
    cJSON_AddNumberToObject(r, "n", n);
    cJSON_AddNumberToObject(r, "turns", o->turns);
    cJSON_AddNumberToObject(r, "g", o->g);
    cJSON_AddNumberToObject(r, "s", o->s);
    if (s_measured > 0) cJSON_AddNumberToObject(r, "s_measured", s_measured);
    else cJSON_AddNullToObject(r, "s_measured");
    cJSON_AddNumberToObject(r, "sys_chars", o->sys_chars);
    cJSON_AddNumberToObject(r, "p_ms", o->p_ms);
    cJSON_AddBoolToObject(r, "alone", o->alone);
    cJSON_AddNumberToObject(r, "makespan_s", ag_r3(t.end_max));
    if (nc > 0) { /* no agent completed: completion times are null, not 0 */
        cJSON_AddNumberToObject(r, "mean_completion_s", ag_r3(csum / nc));
        cJSON_AddNumberToObject(r, "p99_completion_s", ag_r3(ag_pct(comp, nc, 0.99)));
    } else {
        cJSON_AddNullToObject(r, "mean_completion_s");
        cJSON_AddNullToObject(r, "p99_completion_s");
    }
    if (o->alone && nc > 0) cJSON_AddNumberToObject(r, "alone_s", ag_r3(comp[0]));
    else if (o->alone) cJSON_AddNullToObject(r, "alone_s");
    cJSON_AddNumberToObject(r, "tokens_generated", (double)t.tokens);
    cJSON_AddNumberToObject(r, "agg_tok_s", ag_r3(t.end_max > 0 ? t.tokens / t.end_max : 0));
    cJSON_AddNumberToObject(r, "prompt_tokens_total", (double)t.prompt_tokens);
    if (t.have_prompt_n) cJSON_AddNumberToObject(r, "prompt_n_total", (double)t.prompt_n);
    else cJSON_AddNullToObject(r, "prompt_n_total");
    cJSON_AddNumberToObject(r, "requests", t.requests);
    cJSON_AddNumberToObject(r, "requests_ok", t.ok);
    cJSON_AddNumberToObject(r, "failures", t.failures);
    cJSON_AddNumberToObject(r, "length_mismatches", t.mismatches);
    cJSON_AddNumberToObject(r, "agents_completed", t.completed);
    cJSON_AddNumberToObject(r, "lat_p50_s", ag_r3(ag_pct(lat, t.ok, 0.5)));
    cJSON_AddNumberToObject(r, "lat_p99_s", ag_r3(ag_pct(lat, t.ok, 0.99)));
    if (o->alone_s > 0 && nc > 0) {
        cJSON_AddNumberToObject(r, "alone_ref_s", o->alone_s);
        cJSON_AddNumberToObject(r, "mean_slowdown", ag_r3(xsum / nc));
        cJSON_AddNumberToObject(r, "jain", round(xsum * xsum / (nc * x2sum) * 10000.0) / 10000.0);
    } else {
        cJSON_AddNullToObject(r, "jain");
    }
    cJSON_AddItemToObject(r, "errors", errors);
    if (first_err) cJSON_AddItemToObject(r, "first_error", first_err);
    else cJSON_AddNullToObject(r, "first_error");
    cJSON_AddItemToObject(r, "completions", comps);
    char *line = cJSON_PrintUnformatted(r);
    if (line) printf("%s\n", line);
    fflush(stdout);
    free(line);
    cJSON_Delete(r);
    free(lat);
    free(comp);
}

/* ---------- main ---------- */

static int ag_usage(void) {
    fprintf(stderr,
            "usage: agents URL N T G S P_MS [--alone] [--alone-s SEC] [--label NAME] [--model NAME]\n"
            "              [--sys-chars C] [--agent-base K] [--timeout SEC]\n"
            "  N agents x T turns of max_tokens G on a shared ~S-token system prompt, P_MS between turns\n");
    return 2;
}

/* Parses argv into o; returns 0 or 2 (usage). */
static int ag_parse(int argc, char **argv, ag_opts *o) {
    if (argc < 7) return ag_usage();
    char *url = argv[1];
    size_t ul = strlen(url);
    while (ul > 0 && url[ul - 1] == '/') url[--ul] = 0; /* tolerate a trailing slash */
    *o = (ag_opts){.url = url,
                   .n = atoi(argv[2]),
                   .turns = atoi(argv[3]),
                   .g = atoi(argv[4]),
                   .s = atoi(argv[5]),
                   .p_ms = atoi(argv[6]),
                   .label = "run",
                   .model = "smollm2",
                   .timeout_s = 600};
    for (int i = 7; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--alone")) {
            o->alone = 1;
            continue;
        }
        if (!v) return ag_usage();
        if (!strcmp(a, "--alone-s")) o->alone_s = atof(v);
        else if (!strcmp(a, "--label")) o->label = v;
        else if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--sys-chars")) o->sys_chars = atoi(v);
        else if (!strcmp(a, "--agent-base")) o->agent_base = atoi(v);
        else if (!strcmp(a, "--timeout")) o->timeout_s = atol(v);
        else return ag_usage();
        i++;
    }
    if (o->alone) o->n = 1;
    if (o->n < 1 || o->n > AG_MAX_AGENTS || o->turns < 1 || o->turns > AG_MAX_TURNS || o->g < 1 || o->s < 1 || o->p_ms < 0 ||
        o->timeout_s < 1 || o->agent_base < 0)
        return ag_usage();
    return 0;
}

int main(int argc, char **argv) {
    ag_opts o;
    if (ag_parse(argc, argv, &o)) return 2;
    if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK) {
        fprintf(stderr, "agents: curl_global_init failed\n");
        return 2;
    }

    int s_measured = 0;
    char *sys;
    if (o.sys_chars > 0) {
        sys = ag_sys_text(o.sys_chars);
    } else {
        sys = ag_calibrate(&o, &o.sys_chars, &s_measured);
        if (sys) fprintf(stderr, "agents: system prompt %d chars = %d tokens (target %d)\n", o.sys_chars, s_measured, o.s);
    }
    if (!sys) {
        fprintf(stderr, "agents: could not build the system prompt\n");
        curl_global_cleanup();
        return 2;
    }

    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)o.n + 1);
    ag_agent *ags = calloc((size_t)o.n, sizeof *ags);
    pthread_t *th = calloc((size_t)o.n, sizeof *th);
    int started = 0;
    for (int i = 0; i < o.n; i++) {
        ags[i] = (ag_agent){
            .id = o.agent_base + i, .o = &o, .sys = sys, .start = &start, .samples = calloc((size_t)o.turns, sizeof(ag_sample))};
        if (pthread_create(&th[i], NULL, ag_agent_run, &ags[i])) {
            fprintf(stderr, "agents: pthread_create failed after %d threads\n", i);
            exit(2); /* the barrier can never open */
        }
        started++;
    }
    pthread_barrier_wait(&start);
    double t0 = ag_now();
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);

    ag_report(&o, ags, o.n, t0, s_measured);
    if (o.alone && ags[0].completed) fprintf(stderr, "agents: alone completion %.3f s\n", ags[0].end - t0);

    for (int i = 0; i < o.n; i++) free(ags[i].samples);
    free(ags);
    free(th);
    free(sys);
    curl_global_cleanup();
    return 0;
}
