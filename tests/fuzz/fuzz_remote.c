/*
 * fuzz_remote.c - what a remote backend reads from its upstream (src/llm/remote.c,
 * remote_anthropic.c): the body of a chat completions or Messages answer, an event stream
 * of `data:` lines (or a JSON body, kept for its error), cut into pieces wherever the
 * network cut it. Input: byte 0 picks the dialect (bit 0: Anthropic) and byte 1 where the
 * body is cut in two; the rest is the body. The real line reader (rm_feed), event readers,
 * a real syscall and scheduler take it, then the answer is read as the doors read it.
 * Properties: no crash or leak; no more text passed on than max_tokens deltas; at most 64
 * tool calls, each with a string name and arguments; an error event says what it was.
 */
#include <cjson/cJSON.h>
#include "fuzz.h"
#include "aios/result.h"
#include "llm/llm_internal.h"
#include "llm/remote_internal.h"
#include "sched/sched.h"

#define MAX_TOKENS 32

static sched_t *sched;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    if (!sched) {
        sched_params sp = sched_default_params();
        char err[256];
        if (!(sched = sched_new(&sp, err, sizeof err))) abort();
    }
    bool anthropic = data[0] & 1;
    size_t n = size - 2, cut = n * data[1] / 255;
    const char *body = (const char *)data + 2;

    llm_chat chat = {0};
    chat.sampling.max_tokens = MAX_TOKENS;
    llm_request *r = llm_request_new(&chat);
    syscall_t *sc = r ? syscall_new(SYSCALL_KIND_LLM, "fuzz", r, llm_request_free, 1 << 16) : NULL;
    if (!sc) return 0;
    r->remote = true;
    r->remote_calls = cJSON_CreateArray();
    rm_stream st = {.req = r, .sc = sc, .sched = sched, .cur_call = -1};
    strbuf line, kept;
    sb_init(&line, 0);
    sb_init(&kept, 0);
    bool whole = rm_feed(&st, anthropic, &line, &kept, body, cut) && rm_feed(&st, anthropic, &line, &kept, body + cut, n - cut);
    if (whole) rm_feed_end(&line, &kept);

    FUZZ_CHECK(r->n_gen <= MAX_TOKENS);
    FUZZ_CHECK(!st.error || st.errmsg[0]);
    FUZZ_CHECK(cJSON_GetArraySize(r->remote_calls) <= 64);
    for (const cJSON *c = r->remote_calls->child; c; c = c->next)
        FUZZ_CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(c, "name")) &&
                   cJSON_IsString(cJSON_GetObjectItemCaseSensitive(c, "arguments")));
    char msg[160];
    if (rm_body_error(kept.data, msg, sizeof msg)) FUZZ_CHECK(strlen(msg) < sizeof msg);
    /* the answer as the doors take it: text and the calls */
    pthread_mutex_lock(&sc->mu);
    cJSON *out = llm_request_parse_output(r, sc->out.data ? sc->out.data : "", false);
    pthread_mutex_unlock(&sc->mu);
    FUZZ_CHECK(out && cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(out, "tool_calls")));
    cJSON_Delete(out);
    sb_free(&line);
    sb_free(&kept);
    syscall_unref(sc); /* frees r */
    return 0;
}
