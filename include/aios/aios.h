/*
 * aios/aios.h - the C SDK for agents talking to aiosd over HTTP (libcurl).
 *
 * A client is an opaque handle made from aios_client_default_params(); it is not shared
 * between threads (make one per agent thread). Strings handed back in results are owned
 * by the result and freed by aios_chat_result_free(). Functions return 0 or a negative
 * aios_result code; on errors the result's `error` holds the kernel's message.
 */
#ifndef AIOS_SDK_H
#define AIOS_SDK_H

#include <stddef.h>
#include "aios/result.h"

typedef struct aios_client aios_client;

typedef struct aios_client_params {
    const char *url;   /* default "http://127.0.0.1:8000" (or $AIOS_URL) */
    const char *token; /* bearer token; names the agent on OpenAI routes */
    long timeout_ms;   /* 0 = none */
} aios_client_params;

typedef struct aios_message {
    const char *role;
    const char *content;
} aios_message;

typedef struct aios_chat_opts {
    const char *model;  /* NULL = the kernel's default */
    double temperature; /* < 0 = kernel default */
    int max_tokens;     /* <= 0 = kernel default */
    long seed;          /* < 0 = random */
} aios_chat_opts;

typedef struct aios_chat_result {
    char *text;
    int prompt_tokens, completion_tokens;
    double waiting_s, turnaround_s, ttft_s; /* kernel-side timings */
    char finish_reason[16];
    int http_status;
    char error[256];
} aios_chat_result;

/* Called for each streamed piece of text; return non-zero to stop (cancels the request). */
typedef int (*aios_token_cb)(const char *piece, size_t n, void *ud);

aios_client_params aios_client_default_params(void);
aios_client *aios_client_new(const aios_client_params *p);
void aios_client_free(aios_client *c); /* accepts NULL */

aios_chat_opts aios_chat_default_opts(void);
/* OpenAI-style chat (/v1/chat/completions). With cb, streams (SSE) and calls cb per piece. */
int aios_chat(aios_client *c, const aios_message *msgs, int n, const aios_chat_opts *o, aios_token_cb cb, void *ud,
              aios_chat_result *out);
/* AIOS-style LLM syscall (POST /query, the Cerebrum envelope) as agent `agent`. */
int aios_query_chat(aios_client *c, const char *agent, const aios_message *msgs, int n, const aios_chat_opts *o,
                    aios_chat_result *out);
void aios_chat_result_free(aios_chat_result *r); /* accepts NULL */
/* GET path; *body (owned by the caller, free()) gets the answer text. */
int aios_get(aios_client *c, const char *path, char **body, int *http_status);
/* POSTs a JSON text to path; *body (caller frees) gets the answer. AIOS_OK once an answer came. */
int aios_post(aios_client *c, const char *path, const char *json, char **body, int *http_status);
/* Called per server-sent event (event: its name, "message" when unnamed; data: its data
 * lines); return non-zero to stop. */
typedef int (*aios_event_cb)(const char *event, const char *data, void *ud);
/* GETs path as a stream of server-sent events (`aios logs -f`); an answer that is not 200
 * gives no events, its body (caller frees) goes to *body. */
int aios_get_events(aios_client *c, const char *path, aios_event_cb cb, void *ud, char **body, int *http_status);

#endif
