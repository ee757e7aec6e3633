/*
 * llm_internal.h - what the llm module's files share and nobody else sees: the layout of
 * an llm_request. Backends fill the input part in prepare() and the output part when the
 * generation ends.
 */
#ifndef AIOS_LLM_INTERNAL_H
#define AIOS_LLM_INTERNAL_H

#include "llm.h"

struct llm_request {
    /* input, owned */
    int32_t *tokens;
    int n_tokens;
    llm_sampling samp; /* max_tokens already clamped to the context */
    char **stop;
    int n_stop;
    void *sampler; /* backend sampler (chain), owned */
    void *grammar; /* its output grammar, outside the chain (checked after a draft), owned */
    void (*sampler_free)(void *);
    /* output, written by the engine before the syscall completes */
    int n_completion;
    int n_cached;     /* prompt tokens its first start took from the prefix / conversation cache */
    int stop_matched; /* 1 + the index of the stop string that ended it; 0 = none */
    llm_finish finish;
    llm_logprob *lp; /* one per generated token when samp.logprobs */
    int n_lp, lp_cap;

    /* progress: the context of the generation, engine-owned, kept across preemption */
    int32_t *gen; /* tokens sampled so far, in order (gen[n_gen-1] is fed next) */
    int n_gen, gen_cap;
    int n_feed;     /* tokens to prefill: the prompt, or prompt + gen on a text resume */
    int n_fed;      /* of those, already in the KV */
    int n_past;     /* positions in the KV (while running or in the snapshot) */
    bool decoding;  /* the feed is done; decoding gen[n_gen-1] next */
    strbuf pending; /* text not yet released (partial UTF-8 / possible stop string) */
    void *snap;     /* KV snapshot while preempted (kv mode), freed with snap_free */
    void (*snap_free)(void *);
    int park_seq; /* while preempted with its KV left in place: the cache sequence id holding it, else -1 */
    int park_parent, park_shared, park_charge; /* the slot's sharing and accounting, kept while parked */
    struct lc_tmpl_parser *parser;             /* the template's output parser (tools_json requests), owned */
    /* remote backends (remote.c) */
    bool remote;
    char *remote_body;   /* the upstream request, owned */
    cJSON *remote_calls; /* tool calls received [{"name","arguments"}] (tools requests), owned */
};

/* The i-th token of the feed: the prompt, then the generated tokens. */
static inline int32_t llm_feed_token(const llm_request *r, int i) {
    return i < r->n_tokens ? r->tokens[i] : r->gen[i - r->n_tokens];
}

/* Allocates an empty request; copies the stop strings of chat. NULL on OOM. */
llm_request *llm_request_new(const llm_chat *chat);
/* chat's conversation as an OpenAI messages array: messages_json when set, else
 * [{role, content}] of its messages. A new array the caller owns; NULL on OOM. */
cJSON *llm_chat_messages(const llm_chat *chat);
/* Appends copies of more stop strings (a template's own). */
int llm_request_add_stops(llm_request *r, char *const *stops, int n);

#endif
