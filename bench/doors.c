/*
 * doors.c - per-door overhead benchmark: the same generation requested through different
 * API doors (OpenAI chat completions, OpenAI Responses, Anthropic Messages, Ollama chat),
 * of one server or of several, streamed by N concurrent agents, so that what a door adds
 * (parsing, translation, event shaping, storage) shows as lost tokens/s and added time to
 * first token against a baseline door.
 *
 *   doors N R G ROUNDS TARGET... [--prompt TEXT] [--system TEXT] [--model NAME]
 *                                [--ignore-eos] [--no-store] [--timeout S]
 *   TARGET: [LABEL=]DOOR@URL, DOOR one of chat (/v1/chat/completions), responses
 *           (/v1/responses), messages (/v1/messages), ollama (/api/chat); the first TARGET
 *           is the baseline of the ratios.
 *
 * Every target gets the same conversation (a system message and a user prompt, both fixed),
 * max tokens G, temperature 0, stream on. A measurement of one target is N agent threads
 * (agent i sends "Authorization: Bearer doors-i", one keep-alive connection per agent and
 * target) each sending R requests back to back; its tokens/s is the server-reported
 * generated tokens over the wall time from the start barrier to the last answer. The
 * targets are measured in turn, ROUNDS times, forwards in even rounds and backwards in odd
 * ones (A B C, C B A, ...), so slow drift of a shared machine hits every target alike.
 * Before the rounds each agent sends each target one 4-token request (connections, caches).
 *
 * Per request the client reads the stream incrementally (SSE `data:` lines, or NDJSON lines
 * for ollama; one event per line) and takes:
 *   TTFT     from sending to the first event carrying non-empty text: chat
 *            choices[0].delta.content, responses response.output_text.delta, messages
 *            content_block_delta/text_delta, ollama message.content;
 *   tokens   the server's count: chat usage.completion_tokens (stream_options.include_usage),
 *            responses response.usage.output_tokens, messages usage.output_tokens of
 *            message_delta, ollama eval_count; and the prompt tokens beside them;
 *   latency  from sending to the end of the answer.
 * A request fails on a transfer error, a status other than 200, an error event, or a stream
 * that ends without its closing event or token count. A request that reports fewer than G
 * tokens counts as short (EOS came first: the targets then did unequal work).
 *
 * --ignore-eos adds "ignore_eos": true to chat bodies (the doors that take it); --no-store
 * adds "store": false to responses bodies; --model names the model in every body.
 * Prints a markdown table on stdout and one JSON line per round and target, then one per
 * target ({"summary": ...}), on stderr.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cJSON.h>
#include "http.h"

#define DOORS_MAX_TARGETS 16
#define DOORS_MAX_AGENTS 512
#define DOORS_LINE (256 * 1024) /* one event; longer ones are cut (and cannot be parsed) */
#define DOORS_ERR 200

typedef enum doors_door { DOOR_CHAT, DOOR_RESPONSES, DOOR_MESSAGES, DOOR_OLLAMA } doors_door;
static const char *const DOOR_NAME[] = {"chat", "responses", "messages", "ollama"};
static const char *const DOOR_PATH[] = {"/v1/chat/completions", "/v1/responses", "/v1/messages", "/api/chat"};

/* What the command line asks for. */
typedef struct doors_opts {
    int n, reqs, g, rounds;
    const char *prompt, *system, *model;
    bool ignore_eos, no_store;
    long timeout_s;
} doors_opts;

/* One target and what its requests measured. */
typedef struct doors_target {
    char label[64];
    doors_door door;
    const char *url;
    char *body, *warm_body; /* the request, and the 4-token warm-up */
    bench_conn *conns;      /* one per agent */
    double *ttft, *lat;     /* per successful request, seconds */
    long n_ok, n_fail, n_short, tokens, prompt_tokens;
    double wall;       /* summed over rounds */
    double *round_tps; /* per round */
    char first_err[DOORS_ERR];
    pthread_mutex_t mu;
} doors_target;

/* One request's stream state (the agent's; reused request after request). */
typedef struct doors_stream {
    doors_door door;
    double t0, ttft;     /* ttft < 0 until the first text */
    long tokens, prompt; /* server-reported, -1 until seen */
    bool done, failed;
    char err[DOORS_ERR];
    char head[DOORS_ERR]; /* the answer's first bytes, for a non-200 status */
    size_t head_len, len;
    bool cut; /* the line being read did not fit */
    char line[DOORS_LINE];
} doors_stream;

static doors_opts g_opts;

/* ---------------- request bodies ---------------- */

static cJSON *doors_msg(const char *role, const char *content) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", role);
    cJSON_AddStringToObject(m, "content", content);
    return m;
}

/* The body of door asking for g tokens (malloc'd). */
static char *doors_body(doors_door door, int g) {
    const doors_opts *o = &g_opts;
    cJSON *b = cJSON_CreateObject(), *msgs;
    if (o->model) cJSON_AddStringToObject(b, "model", o->model);
    switch (door) {
        case DOOR_CHAT:
            msgs = cJSON_AddArrayToObject(b, "messages");
            cJSON_AddItemToArray(msgs, doors_msg("system", o->system));
            cJSON_AddItemToArray(msgs, doors_msg("user", o->prompt));
            cJSON_AddNumberToObject(b, "max_tokens", g);
            cJSON_AddTrueToObject(cJSON_AddObjectToObject(b, "stream_options"), "include_usage");
            if (o->ignore_eos) cJSON_AddTrueToObject(b, "ignore_eos");
            break;
        case DOOR_RESPONSES:
            cJSON_AddStringToObject(b, "instructions", o->system);
            cJSON_AddStringToObject(b, "input", o->prompt);
            cJSON_AddNumberToObject(b, "max_output_tokens", g);
            if (o->no_store) cJSON_AddFalseToObject(b, "store");
            break;
        case DOOR_MESSAGES:
            cJSON_AddStringToObject(b, "system", o->system);
            msgs = cJSON_AddArrayToObject(b, "messages");
            cJSON_AddItemToArray(msgs, doors_msg("user", o->prompt));
            cJSON_AddNumberToObject(b, "max_tokens", g);
            break;
        case DOOR_OLLAMA: {
            msgs = cJSON_AddArrayToObject(b, "messages");
            cJSON_AddItemToArray(msgs, doors_msg("system", o->system));
            cJSON_AddItemToArray(msgs, doors_msg("user", o->prompt));
            cJSON *opt = cJSON_AddObjectToObject(b, "options");
            cJSON_AddNumberToObject(opt, "num_predict", g);
            cJSON_AddNumberToObject(opt, "temperature", 0);
            break;
        }
    }
    if (door != DOOR_OLLAMA) cJSON_AddNumberToObject(b, "temperature", 0);
    cJSON_AddTrueToObject(b, "stream");
    char *s = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    return s;
}

/* ---------------- reading a stream ---------------- */

static long doors_num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? (long)v->valuedouble : -1;
}

static bool doors_nonempty(const cJSON *v) { return cJSON_IsString(v) && v->valuestring[0]; }

static const char *doors_type(const cJSON *ev) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(ev, "type");
    return cJSON_IsString(t) ? t->valuestring : "";
}

static void doors_fail(doors_stream *s, const char *what, const cJSON *ev) {
    char *j = ev ? cJSON_PrintUnformatted(ev) : NULL;
    if (!s->failed) snprintf(s->err, sizeof s->err, "%s%s%.150s", what, j ? ": " : "", j ? j : "");
    s->failed = true;
    free(j);
}

/* Anthropic's prompt count: input_tokens plus the cache reads and writes beside it. */
static long doors_anth_prompt(const cJSON *u) {
    long in = doors_num(u, "input_tokens"), r = doors_num(u, "cache_read_input_tokens"),
         c = doors_num(u, "cache_creation_input_tokens");
    return in < 0 ? -1 : in + (r > 0 ? r : 0) + (c > 0 ? c : 0);
}

/* One event (a JSON object) of the stream. */
static void doors_event(doors_stream *s, const cJSON *ev) {
    bool text = false;
    const char *type = doors_type(ev);
    const cJSON *u;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(ev, "error");
    if (e && !cJSON_IsNull(e)) { /* chat, messages and ollama errors; a Responses event names it in its type */
        doors_fail(s, "error event", ev);
        return;
    }
    switch (s->door) {
        case DOOR_CHAT: {
            const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ev, "choices"), 0);
            text = doors_nonempty(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ch, "delta"), "content"));
            if ((u = cJSON_GetObjectItemCaseSensitive(ev, "usage")) && cJSON_IsObject(u)) {
                s->tokens = doors_num(u, "completion_tokens");
                s->prompt = doors_num(u, "prompt_tokens");
            }
            break;
        }
        case DOOR_RESPONSES:
            if (!strcmp(type, "response.output_text.delta")) {
                text = doors_nonempty(cJSON_GetObjectItemCaseSensitive(ev, "delta"));
            } else if (!strcmp(type, "response.completed") || !strcmp(type, "response.incomplete")) {
                u = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ev, "response"), "usage");
                s->tokens = doors_num(u, "output_tokens");
                s->prompt = doors_num(u, "input_tokens");
                s->done = true;
            } else if (!strcmp(type, "response.failed") || !strcmp(type, "error")) {
                doors_fail(s, type, ev);
            }
            break;
        case DOOR_MESSAGES:
            if (!strcmp(type, "content_block_delta")) {
                const cJSON *d = cJSON_GetObjectItemCaseSensitive(ev, "delta");
                text = !strcmp(doors_type(d), "text_delta") && doors_nonempty(cJSON_GetObjectItemCaseSensitive(d, "text"));
            } else if (!strcmp(type, "message_start")) {
                u = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ev, "message"), "usage");
                s->prompt = doors_anth_prompt(u);
            } else if (!strcmp(type, "message_delta")) {
                u = cJSON_GetObjectItemCaseSensitive(ev, "usage");
                s->tokens = doors_num(u, "output_tokens");
                if (doors_num(u, "input_tokens") >= 0) s->prompt = doors_anth_prompt(u);
            } else if (!strcmp(type, "message_stop")) {
                s->done = true;
            }
            break;
        case DOOR_OLLAMA:
            text = doors_nonempty(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ev, "message"), "content"));
            if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ev, "done"))) {
                s->tokens = doors_num(ev, "eval_count");
                s->prompt = doors_num(ev, "prompt_eval_count");
                s->done = true;
            }
            break;
    }
    if (text && s->ttft < 0) s->ttft = bench_now() - s->t0;
}

/* One complete line of the answer. */
static void doors_line(doors_stream *s, char *p, size_t n) {
    if (n && p[n - 1] == '\r') p[--n] = 0;
    if (s->door != DOOR_OLLAMA) { /* SSE: only data lines matter; each holds one event */
        if (strncmp(p, "data:", 5)) return;
        p += 5, n -= 5;
        if (n && *p == ' ') p++, n--;
        if (s->door == DOOR_CHAT && !strcmp(p, "[DONE]")) {
            s->done = true;
            return;
        }
    }
    if (!n) return;
    cJSON *ev = cJSON_ParseWithLength(p, n);
    if (ev) doors_event(s, ev);
    else if (!s->failed) {
        snprintf(s->err, sizeof s->err, "unparsable event: %.120s", p);
        s->failed = true;
    }
    cJSON_Delete(ev);
}

static size_t doors_on_data(char *p, size_t sz, size_t nm, void *ud) {
    doors_stream *s = ud;
    size_t n = sz * nm;
    size_t h = sizeof s->head - 1 - s->head_len < n ? sizeof s->head - 1 - s->head_len : n;
    memcpy(s->head + s->head_len, p, h);
    s->head[s->head_len += h] = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\n') {
            if (s->len < sizeof s->line - 1) s->line[s->len++] = p[i];
            else s->cut = true;
            continue;
        }
        s->line[s->len] = 0;
        if (!s->cut) doors_line(s, s->line, s->len);
        else if (!s->failed) {
            snprintf(s->err, sizeof s->err, "an event over %d bytes was cut", DOORS_LINE);
            s->failed = true;
        }
        s->len = 0;
        s->cut = false;
    }
    return n;
}

/* Sends body on k and reads the stream into s; true when it succeeded. */
static bool doors_request(bench_conn *k, doors_stream *s, doors_door door, const char *body) {
    s->door = door;
    s->ttft = -1;
    s->tokens = s->prompt = -1;
    s->done = s->failed = s->cut = false;
    s->err[0] = s->head[0] = 0;
    s->head_len = s->len = 0;
    curl_easy_setopt(k->c, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(k->c, CURLOPT_POSTFIELDS, body);
    s->t0 = bench_now();
    CURLcode rc = curl_easy_perform(k->c);
    long st = 0;
    curl_easy_getinfo(k->c, CURLINFO_RESPONSE_CODE, &st);
    if (s->len && !s->cut) { /* a last line without its newline */
        s->line[s->len] = 0;
        doors_line(s, s->line, s->len);
    }
    if (rc != CURLE_OK) snprintf(s->err, sizeof s->err, "transfer: %s", curl_easy_strerror(rc));
    else if (st != 200) snprintf(s->err, sizeof s->err, "HTTP %ld: %.150s", st, s->head);
    else if (!s->failed && !s->done) snprintf(s->err, sizeof s->err, "the stream ended without its closing event");
    else if (!s->failed && s->tokens < 0) snprintf(s->err, sizeof s->err, "no token count in the stream");
    else if (!s->failed && s->ttft < 0 && s->tokens > 0) snprintf(s->err, sizeof s->err, "no text event before the end");
    return !s->err[0];
}

/* ---------------- agents and rounds ---------------- */

typedef struct doors_agent {
    doors_target *t;
    int idx;
    bool warm;
    pthread_barrier_t *bar;
    doors_stream *s;
} doors_agent;

static void doors_record_error(doors_target *t, const char *err) {
    pthread_mutex_lock(&t->mu);
    if (!t->first_err[0]) snprintf(t->first_err, sizeof t->first_err, "%s", err);
    pthread_mutex_unlock(&t->mu);
}

static void *doors_agent_main(void *arg) {
    doors_agent *a = arg;
    doors_target *t = a->t;
    bench_conn *k = &t->conns[a->idx];
    pthread_barrier_wait(a->bar);
    for (int r = 0; r < (a->warm ? 1 : g_opts.reqs); r++) {
        bool ok = doors_request(k, a->s, t->door, a->warm ? t->warm_body : t->body);
        double lat = bench_now() - a->s->t0;
        if (!ok) doors_record_error(t, a->s->err);
        if (a->warm) continue;
        pthread_mutex_lock(&t->mu);
        if (ok) {
            t->ttft[t->n_ok] = a->s->ttft < 0 ? lat : a->s->ttft;
            t->lat[t->n_ok++] = lat;
            t->tokens += a->s->tokens;
            t->n_short += a->s->tokens < g_opts.g;
            if (a->s->prompt >= 0) t->prompt_tokens = a->s->prompt;
        } else {
            t->n_fail++;
        }
        pthread_mutex_unlock(&t->mu);
    }
    return NULL;
}

/* N agents on target t at once; the wall seconds from the start barrier to the last answer. */
static double doors_measure(doors_target *t, doors_stream *streams, bool warm) {
    int n = g_opts.n;
    pthread_t th[DOORS_MAX_AGENTS];
    doors_agent ag[DOORS_MAX_AGENTS];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)n + 1);
    for (int i = 0; i < n; i++) {
        ag[i] = (doors_agent){.t = t, .idx = i, .warm = warm, .bar = &bar, .s = &streams[i]};
        pthread_create(&th[i], NULL, doors_agent_main, &ag[i]);
    }
    pthread_barrier_wait(&bar);
    double t0 = bench_now();
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    double wall = bench_now() - t0;
    pthread_barrier_destroy(&bar);
    return wall;
}

/* ---------------- setup and report ---------------- */

static int doors_parse_target(const char *spec, doors_target *t) {
    const char *eq = strchr(spec, '='), *at = strchr(spec, '@');
    const char *door = eq && eq < at ? eq + 1 : spec;
    if (!at) return -1;
    size_t dn = (size_t)(at - door);
    int d = 0;
    while (d < 4 && (strlen(DOOR_NAME[d]) != dn || strncmp(door, DOOR_NAME[d], dn))) d++;
    if (d == 4) return -1;
    t->door = (doors_door)d;
    t->url = at + 1;
    if (eq && eq < at) snprintf(t->label, sizeof t->label, "%.*s", (int)(eq - spec), spec);
    else snprintf(t->label, sizeof t->label, "%.*s", (int)(at - spec), spec);
    return 0;
}

static void doors_target_init(doors_target *t) {
    long total = (long)g_opts.rounds * g_opts.n * g_opts.reqs;
    t->body = doors_body(t->door, g_opts.g);
    t->warm_body = doors_body(t->door, 4);
    t->ttft = calloc((size_t)total, sizeof(double));
    t->lat = calloc((size_t)total, sizeof(double));
    t->round_tps = calloc((size_t)g_opts.rounds, sizeof(double));
    t->conns = calloc((size_t)g_opts.n, sizeof *t->conns);
    t->prompt_tokens = -1;
    pthread_mutex_init(&t->mu, NULL);
    for (int i = 0; i < g_opts.n; i++) {
        char agent[32];
        snprintf(agent, sizeof agent, "doors-%d", i);
        bench_conn *k = &t->conns[i];
        bench_conn_init(k, t->url, DOOR_PATH[t->door], agent);
        if (t->door == DOOR_MESSAGES) {
            k->hdr = curl_slist_append(k->hdr, "anthropic-version: 2023-06-01");
            curl_easy_setopt(k->c, CURLOPT_HTTPHEADER, k->hdr);
        }
        curl_easy_setopt(k->c, CURLOPT_WRITEFUNCTION, doors_on_data);
        curl_easy_setopt(k->c, CURLOPT_TIMEOUT, g_opts.timeout_s);
    }
}

static void doors_target_free(doors_target *t) {
    for (int i = 0; i < g_opts.n; i++) bench_conn_free(&t->conns[i]);
    free(t->conns);
    free(t->body);
    free(t->warm_body);
    free(t->ttft);
    free(t->lat);
    free(t->round_tps);
    pthread_mutex_destroy(&t->mu);
}

static double doors_tps(const doors_target *t) { return t->wall > 0 ? (double)t->tokens / t->wall : 0; }

static void doors_report(doors_target *ts, int nt) {
    const doors_opts *o = &g_opts;
    doors_target *b = &ts[0];
    printf("| server | door | requests ok / failed | short | tok/req | prompt tok | agg tok/s | TTFT p50 ms | TTFT p90 ms | "
           "latency p50 ms | tok/s / %s %s | per-round ratio min..max | TTFT p50 - %s %s ms |\n",
           b->label, DOOR_NAME[b->door], b->label, DOOR_NAME[b->door]);
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < nt; i++) { /* sort first: the baseline's p50 is used by every row */
        qsort(ts[i].ttft, (size_t)ts[i].n_ok, sizeof(double), bench_cmp_double);
        qsort(ts[i].lat, (size_t)ts[i].n_ok, sizeof(double), bench_cmp_double);
    }
    double b_ttft = 1e3 * bench_pct(b->ttft, b->n_ok, 0.5);
    for (int i = 0; i < nt; i++) {
        doors_target *t = &ts[i];
        double rmin = 1e9, rmax = 0;
        for (int r = 0; r < o->rounds; r++) {
            double x = b->round_tps[r] > 0 ? t->round_tps[r] / b->round_tps[r] : 0;
            rmin = x < rmin ? x : rmin;
            rmax = x > rmax ? x : rmax;
        }
        double tps = doors_tps(t), ratio = doors_tps(b) > 0 ? tps / doors_tps(b) : 0;
        double p50 = 1e3 * bench_pct(t->ttft, t->n_ok, 0.5), p90 = 1e3 * bench_pct(t->ttft, t->n_ok, 0.9);
        double l50 = 1e3 * bench_pct(t->lat, t->n_ok, 0.5), per_req = t->n_ok ? (double)t->tokens / (double)t->n_ok : 0;
        char prompt[24] = "n/a";
        if (t->prompt_tokens >= 0) snprintf(prompt, sizeof prompt, "%ld", t->prompt_tokens);
        printf("| %s | %s | %ld / %ld | %ld | %.1f | %s | %.1f | %.1f | %.1f | %.1f | %.3f | %.3f..%.3f | %+.1f |\n", t->label,
               DOOR_NAME[t->door], t->n_ok, t->n_fail, t->n_short, per_req, prompt, tps, p50, p90, l50, ratio, rmin, rmax,
               p50 - b_ttft);
        cJSON *j = cJSON_CreateObject(), *s = cJSON_AddObjectToObject(j, "summary");
        cJSON_AddStringToObject(s, "label", t->label);
        cJSON_AddStringToObject(s, "door", DOOR_NAME[t->door]);
        cJSON_AddStringToObject(s, "url", t->url);
        cJSON_AddNumberToObject(s, "n", o->n);
        cJSON_AddNumberToObject(s, "reqs", o->reqs);
        cJSON_AddNumberToObject(s, "g", o->g);
        cJSON_AddNumberToObject(s, "rounds", o->rounds);
        cJSON_AddNumberToObject(s, "ok", (double)t->n_ok);
        cJSON_AddNumberToObject(s, "failures", (double)t->n_fail);
        cJSON_AddNumberToObject(s, "short", (double)t->n_short);
        cJSON_AddNumberToObject(s, "tokens", (double)t->tokens);
        cJSON_AddNumberToObject(s, "prompt_tokens", (double)t->prompt_tokens);
        cJSON_AddNumberToObject(s, "wall_s", t->wall);
        cJSON_AddNumberToObject(s, "tok_per_s", tps);
        cJSON_AddNumberToObject(s, "ttft_p50_ms", p50);
        cJSON_AddNumberToObject(s, "ttft_p90_ms", p90);
        cJSON_AddNumberToObject(s, "lat_p50_ms", l50);
        cJSON_AddNumberToObject(s, "tok_per_s_ratio", ratio);
        cJSON_AddNumberToObject(s, "round_ratio_min", rmin);
        cJSON_AddNumberToObject(s, "round_ratio_max", rmax);
        cJSON_AddNumberToObject(s, "ttft_p50_diff_ms", p50 - b_ttft);
        if (t->first_err[0]) cJSON_AddStringToObject(s, "first_error", t->first_err);
        char *line = cJSON_PrintUnformatted(j);
        fprintf(stderr, "%s\n", line);
        free(line);
        cJSON_Delete(j);
    }
    for (int i = 0; i < nt; i++)
        if (ts[i].first_err[0]) printf("\n%s %s: first error: %s", ts[i].label, DOOR_NAME[ts[i].door], ts[i].first_err);
    printf("\n");
}

static void doors_round_line(int round, const doors_target *t, double wall, long tokens) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "round", round);
    cJSON_AddStringToObject(j, "label", t->label);
    cJSON_AddStringToObject(j, "door", DOOR_NAME[t->door]);
    cJSON_AddNumberToObject(j, "wall_s", wall);
    cJSON_AddNumberToObject(j, "tokens", (double)tokens);
    cJSON_AddNumberToObject(j, "tok_per_s", (double)tokens / wall);
    char *line = cJSON_PrintUnformatted(j);
    fprintf(stderr, "%s\n", line);
    free(line);
    cJSON_Delete(j);
}

static int doors_usage(void) {
    fprintf(stderr,
            "usage: doors N R G ROUNDS [LABEL=]DOOR@URL... [--prompt TEXT] [--system TEXT] [--model NAME]\n"
            "             [--ignore-eos] [--no-store] [--timeout S]   (DOOR: chat responses messages ollama)\n");
    return 2;
}

int main(int argc, char **argv) {
    static doors_target ts[DOORS_MAX_TARGETS];
    const char *pos[4 + DOORS_MAX_TARGETS];
    int np = 0, nt;
    g_opts = (doors_opts){.prompt = "Write a long story about a robot who learns to paint. Use many details.",
                          .system = "You are a helpful assistant.",
                          .timeout_s = 600};
    for (int i = 1; i < argc; i++) {
        bool more = i + 1 < argc;
        if (!strcmp(argv[i], "--prompt") && more) g_opts.prompt = argv[++i];
        else if (!strcmp(argv[i], "--system") && more) g_opts.system = argv[++i];
        else if (!strcmp(argv[i], "--model") && more) g_opts.model = argv[++i];
        else if (!strcmp(argv[i], "--timeout") && more) g_opts.timeout_s = atol(argv[++i]);
        else if (!strcmp(argv[i], "--ignore-eos")) g_opts.ignore_eos = true;
        else if (!strcmp(argv[i], "--no-store")) g_opts.no_store = true;
        else if (!strncmp(argv[i], "--", 2) || np == (int)(sizeof pos / sizeof *pos)) return doors_usage();
        else pos[np++] = argv[i];
    }
    if (np < 5) return doors_usage();
    g_opts.n = atoi(pos[0]), g_opts.reqs = atoi(pos[1]), g_opts.g = atoi(pos[2]), g_opts.rounds = atoi(pos[3]);
    if (g_opts.n < 1 || g_opts.n > DOORS_MAX_AGENTS || g_opts.reqs < 1 || g_opts.g < 1 || g_opts.rounds < 1) return doors_usage();
    nt = np - 4;
    for (int i = 0; i < nt; i++)
        if (doors_parse_target(pos[4 + i], &ts[i])) {
            fprintf(stderr, "doors: bad target '%s'\n", pos[4 + i]);
            return doors_usage();
        }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    doors_stream *streams = calloc((size_t)g_opts.n, sizeof *streams);
    for (int i = 0; i < nt; i++) {
        doors_target_init(&ts[i]);
        doors_measure(&ts[i], streams, true); /* warm-up: connect, fill caches */
        if (ts[i].first_err[0])
            fprintf(stderr, "doors: %s %s: warm-up failed: %s\n", ts[i].label, DOOR_NAME[ts[i].door], ts[i].first_err);
        ts[i].first_err[0] = 0;
    }
    for (int r = 0; r < g_opts.rounds; r++)
        for (int j = 0; j < nt; j++) {
            doors_target *t = &ts[r % 2 ? nt - 1 - j : j];
            long tok0 = t->tokens;
            double wall = doors_measure(t, streams, false);
            t->wall += wall;
            t->round_tps[r] = (double)(t->tokens - tok0) / wall;
            doors_round_line(r + 1, t, wall, t->tokens - tok0);
        }
    doors_report(ts, nt);
    long fails = 0;
    for (int i = 0; i < nt; i++) {
        fails += ts[i].n_fail;
        doors_target_free(&ts[i]);
    }
    free(streams);
    curl_global_cleanup();
    return fails ? 1 : 0;
}
