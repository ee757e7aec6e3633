/*
 * remote_internal.h - what the remote backend (remote.c: the I/O thread, transfers,
 * scheduling, errors) shares with its wire dialects: OpenAI chat completions (remote.c) and
 * Anthropic Messages (remote_anthropic.c). A dialect builds the upstream body of a chat and
 * reads the upstream's stream events into the request; everything else is common.
 */
#ifndef AIOS_REMOTE_INTERNAL_H
#define AIOS_REMOTE_INTERNAL_H

#include <cjson/cJSON.h>
#include "llm_internal.h"

/* One request upstream, as a dialect sees it while reading the stream. */
typedef struct rm_stream {
    llm_request *req;
    syscall_t *sc;
    bool error;            /* an error event: errmsg says what */
    bool capped;           /* the output reached the syscall's cap (ends as length) */
    int cur_call;          /* Anthropic: the tool_use block being received, -1 = none */
    char errmsg[200];
} rm_stream;

/* Passes generated text on to the syscall (counted; a full buffer caps the stream). */
void rm_emit(rm_stream *s, const char *text);
/* Appends name / arguments text to tool call `index` of the request (created when new). */
void rm_call_append(llm_request *r, int index, const char *name, const char *args);

/* Anthropic Messages (remote_anthropic.c): the body of a chat (NULL on OOM) and one stream event. */
char *rm_anthropic_body(const aios_model_cfg *cfg, const llm_chat *chat);
void rm_anthropic_event(rm_stream *s, const char *data);

#endif
