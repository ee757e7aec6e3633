/*
 * chat_template.h - the model's own chat template, through llama.cpp's common chat library
 * (common/chat.h, libllama-common): Jinja rendering with tools, the template family's
 * tool-call grammar (lazy: free text until the model opens a call) and the parser of its
 * output. A C interface over a C++ library, so the engine (llamacpp.c) stays C; the shim
 * is chat_template.cpp. Internal to the llm module.
 *
 * Ownership: every char * / array in the out structs is malloc'd and freed by the matching
 * *_free; inputs are borrowed for the call.
 */
#ifndef AIOS_CHAT_TEMPLATE_H
#define AIOS_CHAT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct llama_model;
typedef struct lc_tmpl lc_tmpl;               /* a core's parsed template(s); read-only once made */
typedef struct lc_tmpl_parser lc_tmpl_parser; /* one request's output parser */

typedef enum { LC_TOOLS_AUTO, LC_TOOLS_REQUIRED, LC_TOOLS_NONE } lc_tool_choice;
#define LC_MAX_CALLS 8 /* tool calls in one answer (the kernel's own format has the same bound) */

/* The model's template (source = NULL) or the given Jinja source. NULL with err on failure
 * (a template the Jinja engine cannot parse). */
lc_tmpl *lc_tmpl_new(const struct llama_model *model, const char *source, char *err, size_t errlen);
void lc_tmpl_free(lc_tmpl *t); /* NULL ok */
/* Whether the template renders tools and has a tool-call format of its own. */
bool lc_tmpl_tool_calls(const lc_tmpl *t);

typedef struct lc_tmpl_out {
    char *prompt;    /* the rendered prompt (a BOS the vocabulary adds itself is not in it) */
    char *grammar;   /* GBNF of the tool calls, or NULL */
    bool lazy;       /* the grammar applies once a trigger matches */
    char **patterns; /* lazy triggers as regexes; each matches only at the start of the output */
    int n_patterns;
    int32_t *tokens; /* lazy triggers as tokens */
    int n_tokens;
    char *prefill; /* text the (non-lazy) grammar starts with that the prompt already ends with */
    char **stops;  /* the format's extra stop strings */
    int n_stops;
    lc_tmpl_parser *parser; /* for lc_tmpl_parse; owned (freed by lc_tmpl_out_free unless taken) */
} lc_tmpl_out;

/* Renders messages (a JSON array in OpenAI chat-completions shape: role, content,
 * tool_calls, tool_call_id) with tools (a JSON array of {"type":"function","function":{..}},
 * or NULL). AIOS_ERR_INVALID with err for input the library refuses. */
int lc_tmpl_apply(const lc_tmpl *t, const char *messages_json, const char *tools_json, lc_tool_choice choice, bool parallel,
                  lc_tmpl_out *out, char *err, size_t errlen);
void lc_tmpl_out_free(lc_tmpl_out *o);

struct llama_sampler;
struct llama_vocab;
/* Feeds out.prefill to the grammar sampler made from out.grammar, as the library's own
 * sampler does. AIOS_ERR_INVALID when the grammar refuses it (a template the library
 * mis-describes; llama.cpp throws there, caught here). */
int lc_tmpl_prefill(struct llama_sampler *grammar, const struct llama_vocab *vocab, const char *prefill);

typedef struct lc_tmpl_call {
    char *name;
    char *arguments; /* JSON text as the model wrote it */
} lc_tmpl_call;

typedef struct lc_tmpl_msg {
    char *content; /* the text outside tool calls */
    lc_tmpl_call *calls;
    int n_calls;
} lc_tmpl_msg;

/* Parses generated text (partial: it may still grow). AIOS_OK, or an error when the text
 * does not parse (then out holds the whole text as content). */
int lc_tmpl_parse(const lc_tmpl_parser *p, const char *text, bool partial, lc_tmpl_msg *out);
void lc_tmpl_msg_free(lc_tmpl_msg *m);
void lc_tmpl_parser_free(lc_tmpl_parser *p); /* NULL ok */

#ifdef __cplusplus
}
#endif
#endif
