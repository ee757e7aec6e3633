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
    llm_sampling samp;     /* max_tokens already clamped to the context */
    char **stop;
    int n_stop;
    void *sampler;         /* backend sampler (chain), owned */
    void (*sampler_free)(void *);
    /* output, written by the engine before the syscall completes */
    int n_completion;
    llm_finish finish;
};

/* Allocates an empty request; copies the stop strings of chat. NULL on OOM. */
llm_request *llm_request_new(const llm_chat *chat);

#endif
