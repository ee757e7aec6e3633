/*
 * chat.h - internal to the api module: turning a chat request (AIOS envelope or OpenAI
 * body) into a prepared LLM syscall, and turning its result back into messages and tool
 * calls. Both wire formats share this, so they behave the same on the same input.
 */
#ifndef AIOS_API_CHAT_H
#define AIOS_API_CHAT_H

#include "api_internal.h"

typedef enum chat_mode { CHAT_MODE_TEXT, CHAT_MODE_JSON, CHAT_MODE_TOOLS } chat_mode;
#define CHAT_MAX_CALLS 8 /* tool calls in one answer */

/* Route state of one chat request (api_req.data). */
typedef struct chat_ctx {
    char model[AIOS_NAME_MAX];
    char id[48];
    long created;
    chat_mode mode;
    int n_tools;
    char **tool_names;       /* as the client named them ("author/tool") */
    char **tool_model_names; /* as the model sees them ("author__tool") */
    cJSON *tool_schemas;     /* their parameters schemas (null where none), in order */
    bool single_call;        /* parallel_tool_calls false */
    bool include_usage;
    bool role_sent;
    bool completions_api; /* /v1/completions (text) instead of chat */
    bool run_tools;       /* call_tool: the kernel runs the calls the model makes */
    bool tools_auto;      /* tool_choice auto: text or calls, the model decides */
    bool stream_decided;  /* auto, streaming: the first non-blank output byte was seen */
    bool stream_text;     /* ... and it did not open a tool call: stream as text */
    strbuf held;          /* auto, streaming: output held until then */
    bool logprobs;        /* answer with the tokens' log-probabilities */
    int32_t *bias_tokens; /* logit_bias, until prepare has built it into the sampler */
    float *bias_values;
    syscall_t *more[API_MAX_CHOICES - 1]; /* n > 1: the other choices' prepared syscalls (owned until run) */
    int n_more;
    cJSON *choices;    /* n > 1, not streaming: the choices answered so far */
    syscall_t *native; /* tool calls in the template's own format: the (first) syscall, whose
                               * request parses the output (llm_request_parse_output); our reference */
    void *door;        /* a door's own state of the request, freed with door_free */
    void (*door_free)(void *);
} chat_ctx;

/* Everything a request asks, parsed; pointers borrow from the request JSON. */
typedef struct chat_spec {
    const cJSON *messages; /* array (chat) */
    const char *prompt;    /* /v1/completions */
    const cJSON *tools;    /* array or NULL */
    const cJSON *schema;   /* json mode: schema or NULL (any object) */
    chat_mode mode;
    bool tools_auto;  /* tools mode: calls optional (tool_choice auto), else at least one */
    bool single_call; /* parallel_tool_calls false: at most one call */
    llm_sampling sampling;
    const char *stop[64];
    int n_stop;
} chat_spec;

/* response_format {"type":"json_schema","json_schema":{"schema":{...}}}: spec->schema is that
 * schema (borrowed from rf), or a 400 saying what is missing. Both doors use it. */
int chat_json_schema(const cJSON *rf, chat_spec *spec, char *err, size_t errlen);

void chat_ctx_free(void *p);
/* Parses tools into ctx (names both ways) and checks each. */
int chat_parse_tools(chat_ctx *ctx, const cJSON *tools, char *err, size_t errlen);
/* Builds the syscall for spec on core: messages, tool prompt, grammar, prepare. */
int chat_build_syscall(api_req *r, llm_core *core, chat_ctx *ctx, const chat_spec *spec, syscall_t **out, char *err,
                       size_t errlen);
/* The prompt the model's chat template makes of messages (validated as for a chat). */
int chat_render(api_req *r, llm_core *core, const cJSON *messages, strbuf *out, char *err, size_t errlen);
/* Parses the constrained tool-call output into [{"name","parameters","id"}] (AIOS shape). */
cJSON *chat_tool_calls(const chat_ctx *ctx, const char *text, uint64_t sc_id);
/* Chat completions' tool_calls [{index, id, type: "function", function: {name, arguments}}]
 * of an AIOS-shaped list (chat_tool_calls). */
cJSON *chat_openai_tool_calls(const cJSON *calls);
/* Whether a tools-mode output is tool calls: always when they were required; under auto
 * when the model opened a call ('[' first), else the output is a text answer. */
bool chat_made_calls(const chat_ctx *ctx, const char *text);
/* Streaming: of the new output delta (n bytes; empty once final), the part to show the
 * client as text now: *text and its length. Tools required: none (the calls come at the end).
 * tool_choice auto: the output is held until its first non-blank byte tells text from a
 * call, then the held text comes at once. Text mode: all of it. */
size_t chat_stream_text(chat_ctx *ctx, const char *delta, size_t n, bool final, const char **text);
/* Once the stream is final: whether the output was tool calls (chat_tool_calls decodes them). */
bool chat_stream_calls(const chat_ctx *ctx);
/* The plan's claim to use a->core's model. */
int chat_plan_model(api_admission *a);
/* The tools list of a request, with each entry that names a kernel tool and gives no
 * parameters completed from its manifest; with must_be_kernel a name that is not a kernel
 * tool is 404 (call_tool). The gate has admitted the kernel tools named (chat_plan_tools). *out is a new list (caller frees) or NULL if unchanged. */
int chat_kernel_tools(api_req *r, const cJSON *tools, bool must_be_kernel, cJSON **out, char *err, size_t errlen);
/* An OpenAI chat completions body (chat_api) or completions body, parsed and checked into
 * a prepared LLM syscall on r->adm.core (*out, the caller's reference); the request's chat_ctx
 * becomes r->data. The other doors translate their bodies into this shape
 * (r->door_body) and come here, so every door samples, constrains and schedules alike. */
int chat_openai_prepare(api_req *r, const cJSON *body, bool chat_api, bool *stream, syscall_t **out, char *err, size_t errlen);
/* The plan of a chat completions body: its model (`model`, the default when absent) and the
 * kernel tools its `tools` name. */
int chat_plan_openai(api_req *r, const cJSON *body, api_admission *a, char *err, size_t errlen);
/* Timing extension {"syscall_id","agent","waiting_time","turnaround_time","time_to_first_token"}. */
cJSON *chat_timing_json(syscall_t *sc);

#endif
