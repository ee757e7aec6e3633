/*
 * aios.c - the C SDK (aios/aios.h): JSON over HTTP with libcurl and cJSON; streaming reads
 * server-sent events line by line as they arrive and hands each content delta to the
 * caller's callback.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include <cjson/cJSON.h>
#include "aios/aios.h"

struct aios_client {
    CURL *curl;
    char url[512];
    char auth[300];
    long timeout_ms;
};

typedef struct buf {
    char *d;
    size_t n, cap;
} buf;

static int buf_add(buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->d, cap);
        if (!p) return -1;
        b->d = p;
        b->cap = cap;
    }
    memcpy(b->d + b->n, s, n);
    b->n += n;
    b->d[b->n] = 0;
    return 0;
}

aios_client_params aios_client_default_params(void) {
    const char *env = getenv("AIOS_URL");
    return (aios_client_params){.url = env && *env ? env : "http://127.0.0.1:8000", .token = NULL, .timeout_ms = 0};
}

aios_chat_opts aios_chat_default_opts(void) {
    return (aios_chat_opts){.model = NULL, .temperature = -1, .max_tokens = 0, .seed = -1};
}

aios_client *aios_client_new(const aios_client_params *p) {
    static int inited;
    if (!inited) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        inited = 1;
    }
    aios_client *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->curl = curl_easy_init();
    if (!c->curl) {
        free(c);
        return NULL;
    }
    snprintf(c->url, sizeof c->url, "%s", p->url ? p->url : "http://127.0.0.1:8000");
    size_t ul = strlen(c->url);
    if (ul && c->url[ul - 1] == '/') c->url[ul - 1] = 0;
    if (p->token) snprintf(c->auth, sizeof c->auth, "Authorization: Bearer %s", p->token);
    c->timeout_ms = p->timeout_ms;
    return c;
}

void aios_client_free(aios_client *c) {
    if (!c) return;
    curl_easy_cleanup(c->curl);
    free(c);
}

void aios_chat_result_free(aios_chat_result *r) {
    if (!r) return;
    free(r->text);
    r->text = NULL;
}

/* ---- transport ---- */

typedef struct sse_state {
    buf line; /* partial line */
    buf text; /* accumulated content */
    aios_token_cb cb;
    void *ud;
    int stopped;
    cJSON *last_usage;
    char finish[16];
    char error[256];
} sse_state;

static void sse_line(sse_state *s, const char *line) {
    if (strncmp(line, "data: ", 6) != 0 || !strcmp(line + 6, "[DONE]")) return;
    cJSON *j = cJSON_Parse(line + 6);
    if (!j) return;
    cJSON *err = cJSON_GetObjectItem(j, "error");
    if (err) {
        cJSON *m = cJSON_GetObjectItem(err, "message");
        snprintf(s->error, sizeof s->error, "%s", cJSON_IsString(m) ? m->valuestring : "stream error");
    }
    cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    cJSON *delta = cJSON_GetObjectItem(ch, "delta");
    cJSON *content = cJSON_GetObjectItem(delta, "content");
    cJSON *fr = cJSON_GetObjectItem(ch, "finish_reason");
    if (cJSON_IsString(fr)) snprintf(s->finish, sizeof s->finish, "%s", fr->valuestring);
    if (cJSON_IsString(content) && *content->valuestring) {
        size_t n = strlen(content->valuestring);
        buf_add(&s->text, content->valuestring, n);
        if (s->cb && s->cb(content->valuestring, n, s->ud)) s->stopped = 1;
    }
    if (cJSON_GetObjectItem(j, "usage")) {
        cJSON_Delete(s->last_usage);
        s->last_usage = j;
        return;
    }
    cJSON_Delete(j);
}

static size_t on_sse(char *p, size_t sz, size_t nm, void *ud) {
    sse_state *s = ud;
    size_t n = sz * nm;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            if (s->line.n) sse_line(s, s->line.d);
            s->line.n = 0;
            if (s->line.d) s->line.d[0] = 0;
        } else if (p[i] != '\r') {
            buf_add(&s->line, p + i, 1);
        }
    }
    return s->stopped ? 0 : n; /* 0 aborts the transfer: the kernel cancels the request */
}

static size_t on_body(char *p, size_t sz, size_t nm, void *ud) { return buf_add(ud, p, sz * nm) ? 0 : sz * nm; }

static int perform(aios_client *c, const char *path, const char *post, curl_write_callback wr, void *ud, int *status) {
    char url[1024];
    snprintf(url, sizeof url, "%s%s", c->url, path);
    CURL *h = c->curl;
    curl_easy_reset(h);
    struct curl_slist *hdr = NULL;
    hdr = curl_slist_append(hdr, "Content-Type: application/json");
    if (c->auth[0]) hdr = curl_slist_append(hdr, c->auth);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, wr);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, ud);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (post) curl_easy_setopt(h, CURLOPT_POSTFIELDS, post);
    CURLcode cc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(hdr);
    *status = (int)code;
    if (cc == CURLE_WRITE_ERROR) return AIOS_ERR_CANCELLED;
    return cc == CURLE_OK ? AIOS_OK : AIOS_ERR_TRANSPORT;
}

int aios_get(aios_client *c, const char *path, char **body, int *http_status) {
    buf b = {0};
    int rc = perform(c, path, NULL, on_body, &b, http_status);
    *body = b.d ? b.d : strdup("");
    return rc;
}

int aios_post(aios_client *c, const char *path, const char *json, char **body, int *http_status) {
    buf b = {0};
    int rc = perform(c, path, json, on_body, &b, http_status);
    *body = b.d ? b.d : strdup("");
    return rc;
}

/* ---- server-sent events ---- */

typedef struct ev_state {
    CURL *h;
    buf line, event, data, other;
    aios_event_cb cb;
    void *ud;
    int stopped;
} ev_state;

static void ev_line(ev_state *s) {
    const char *l = s->line.n ? s->line.d : "";
    if (!*l) { /* the end of an event */
        if (s->data.n && s->cb(s->event.n ? s->event.d : "message", s->data.d, s->ud)) s->stopped = 1;
        s->event.n = s->data.n = 0;
        return;
    }
    if (!strncmp(l, "event: ", 7)) {
        s->event.n = 0;
        buf_add(&s->event, l + 7, strlen(l + 7));
    } else if (!strncmp(l, "data: ", 6)) {
        if (s->data.n) buf_add(&s->data, "\n", 1);
        buf_add(&s->data, l + 6, strlen(l + 6));
    }
}

static size_t on_events(char *p, size_t sz, size_t nm, void *ud) {
    ev_state *s = ud;
    size_t n = sz * nm;
    long code = 0;
    curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200) return buf_add(&s->other, p, n) ? 0 : n;
    for (size_t i = 0; i < n && !s->stopped; i++) {
        if (p[i] == '\n') {
            ev_line(s);
            s->line.n = 0;
            if (s->line.d) s->line.d[0] = 0;
        } else if (p[i] != '\r') {
            buf_add(&s->line, p + i, 1);
        }
    }
    return s->stopped ? 0 : n;
}

int aios_get_events(aios_client *c, const char *path, aios_event_cb cb, void *ud, char **body, int *http_status) {
    ev_state s = {.h = c->curl, .cb = cb, .ud = ud};
    int rc = perform(c, path, NULL, on_events, &s, http_status);
    free(s.line.d);
    free(s.event.d);
    free(s.data.d);
    *body = s.other.d ? s.other.d : strdup("");
    return rc == AIOS_ERR_CANCELLED && s.stopped ? AIOS_OK : rc;
}

/* ---- chat ---- */

static cJSON *messages_json(const aios_message *msgs, int n) {
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", msgs[i].role);
        cJSON_AddStringToObject(m, "content", msgs[i].content);
        cJSON_AddItemToArray(arr, m);
    }
    return arr;
}

static void read_error(const char *body, aios_chat_result *out) {
    cJSON *j = cJSON_Parse(body);
    cJSON *m = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "message");
    snprintf(out->error, sizeof out->error, "%s", cJSON_IsString(m) ? m->valuestring : (body && *body ? body : "no answer"));
    cJSON_Delete(j);
}

static void read_timing(cJSON *aios, aios_chat_result *out) {
    cJSON *v;
    if ((v = cJSON_GetObjectItem(aios, "waiting_time"))) out->waiting_s = v->valuedouble;
    if ((v = cJSON_GetObjectItem(aios, "turnaround_time"))) out->turnaround_s = v->valuedouble;
    if ((v = cJSON_GetObjectItem(aios, "time_to_first_token"))) out->ttft_s = v->valuedouble;
}

static void read_usage(cJSON *u, aios_chat_result *out) {
    cJSON *v;
    if ((v = cJSON_GetObjectItem(u, "prompt_tokens"))) out->prompt_tokens = v->valueint;
    if ((v = cJSON_GetObjectItem(u, "completion_tokens"))) out->completion_tokens = v->valueint;
}

/* Text and finish reason of an answer, and the usage and "aios" timings of `holder`. */
static void read_answer(aios_chat_result *out, const cJSON *text, const cJSON *fr, cJSON *holder) {
    out->text = strdup(cJSON_IsString(text) ? text->valuestring : "");
    if (cJSON_IsString(fr)) snprintf(out->finish_reason, sizeof out->finish_reason, "%s", fr->valuestring);
    read_usage(cJSON_GetObjectItem(holder, "usage"), out);
    read_timing(cJSON_GetObjectItem(holder, "aios"), out);
}

static int finish_status(int rc, aios_chat_result *out) {
    if (rc) {
        if (!out->error[0]) snprintf(out->error, sizeof out->error, "%s", aios_strerror(rc));
        return rc;
    }
    if (out->http_status / 100 != 2)
        return out->http_status == 404 ? AIOS_ERR_NOT_FOUND
            : out->http_status == 413  ? AIOS_ERR_TOO_LARGE
            : out->http_status >= 500  ? AIOS_ERR_INTERNAL
                                       : AIOS_ERR_INVALID;
    return AIOS_OK;
}

int aios_chat(aios_client *c, const aios_message *msgs, int n, const aios_chat_opts *o, aios_token_cb cb, void *ud,
              aios_chat_result *out) {
    memset(out, 0, sizeof *out);
    aios_chat_opts d = aios_chat_default_opts();
    if (!o) o = &d;
    cJSON *req = cJSON_CreateObject();
    if (o->model) cJSON_AddStringToObject(req, "model", o->model);
    cJSON_AddItemToObject(req, "messages", messages_json(msgs, n));
    if (o->temperature >= 0) cJSON_AddNumberToObject(req, "temperature", o->temperature);
    if (o->max_tokens > 0) cJSON_AddNumberToObject(req, "max_tokens", o->max_tokens);
    if (o->seed >= 0) cJSON_AddNumberToObject(req, "seed", (double)o->seed);
    if (cb) {
        cJSON_AddBoolToObject(req, "stream", 1);
        cJSON *so = cJSON_AddObjectToObject(req, "stream_options");
        cJSON_AddBoolToObject(so, "include_usage", 1);
    }
    char *body = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    int rc;
    if (cb) {
        sse_state s = {.cb = cb, .ud = ud};
        rc = perform(c, "/v1/chat/completions", body, on_sse, &s, &out->http_status);
        if (out->http_status / 100 != 2) read_error(s.line.d, out);
        else if (s.error[0]) {
            snprintf(out->error, sizeof out->error, "%s", s.error);
            rc = rc ? rc : AIOS_ERR_INTERNAL;
        }
        out->text = s.text.d ? s.text.d : strdup("");
        snprintf(out->finish_reason, sizeof out->finish_reason, "%s", s.finish);
        read_usage(cJSON_GetObjectItem(s.last_usage, "usage"), out);
        read_timing(cJSON_GetObjectItem(s.last_usage, "aios"), out);
        cJSON_Delete(s.last_usage);
        free(s.line.d);
    } else {
        buf b = {0};
        rc = perform(c, "/v1/chat/completions", body, on_body, &b, &out->http_status);
        cJSON *j = cJSON_Parse(b.d ? b.d : "");
        if (out->http_status / 100 != 2) read_error(b.d, out);
        cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
        read_answer(out, cJSON_GetObjectItem(cJSON_GetObjectItem(ch, "message"), "content"),
                    cJSON_GetObjectItem(ch, "finish_reason"), j);
        cJSON_Delete(j);
        free(b.d);
    }
    free(body);
    return finish_status(rc, out);
}

int aios_query_chat(aios_client *c, const char *agent, const aios_message *msgs, int n, const aios_chat_opts *o,
                    aios_chat_result *out) {
    memset(out, 0, sizeof *out);
    aios_chat_opts d = aios_chat_default_opts();
    if (!o) o = &d;
    cJSON *req = cJSON_CreateObject(), *qd;
    cJSON_AddStringToObject(req, "agent_name", agent);
    cJSON_AddStringToObject(req, "query_type", "llm");
    qd = cJSON_AddObjectToObject(req, "query_data");
    cJSON_AddStringToObject(qd, "query_class", "llm");
    if (o->model) {
        cJSON *l = cJSON_AddArrayToObject(qd, "llms"), *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "name", o->model);
        cJSON_AddItemToArray(l, m);
    } else {
        cJSON_AddNullToObject(qd, "llms");
    }
    cJSON_AddItemToObject(qd, "messages", messages_json(msgs, n));
    cJSON_AddNullToObject(qd, "tools");
    cJSON_AddStringToObject(qd, "action_type", "chat");
    if (o->temperature >= 0) cJSON_AddNumberToObject(qd, "temperature", o->temperature);
    if (o->max_tokens > 0) cJSON_AddNumberToObject(qd, "max_new_tokens", o->max_tokens);
    char *body = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    buf b = {0};
    int rc = perform(c, "/query", body, on_body, &b, &out->http_status);
    free(body);
    cJSON *j = cJSON_Parse(b.d ? b.d : "");
    if (out->http_status / 100 != 2) read_error(b.d, out);
    cJSON *resp = cJSON_GetObjectItem(j, "response");
    read_answer(out, cJSON_GetObjectItem(resp, "response_message"), cJSON_GetObjectItem(resp, "finish_reason"), resp);
    cJSON_Delete(j);
    free(b.d);
    return finish_status(rc, out);
}
