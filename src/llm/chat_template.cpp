/*
 * chat_template.cpp - the C shim over llama.cpp's common chat library (chat_template.h):
 * the model's Jinja template rendered with tools, the family's tool-call grammar and
 * output parser, as llama-server's --jinja path uses them. Nothing here interprets a
 * format itself; it converts between C and the library and catches every exception (a
 * template or an input the library refuses is an error for the request, never an abort).
 *
 * Two choices differ from llama-server, for the kernel's tool_choice semantics (an answer is
 * text or calls, as in the kernel's own JSON format):
 *   - lazy triggers match only at the start of the output (after blanks): a call opens the
 *     answer or there is none;
 *   - `required` drops the free text the library allows before the first call, so the
 *     answer starts with a call;
 *   - the calls are bounded: LC_MAX_CALLS, one without parallel_tool_calls (the library
 *     repeats them without end).
 */
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "chat.h"
#include "common.h"
#include "chat_template.h"
#include "aios/result.h"

struct lc_tmpl {
    common_chat_templates_ptr t;
    bool tool_calls;
};

struct lc_tmpl_parser {
    common_chat_parser_params params;
};

static char *dup_str(const std::string &s) {
    char *p = (char *)malloc(s.size() + 1);
    if (p) memcpy(p, s.c_str(), s.size() + 1);
    return p;
}

static void set_err(char *err, size_t errlen, const char *what, const std::exception *e) {
    if (err && errlen) snprintf(err, errlen, "%s%s%s", what, e ? ": " : "", e ? e->what() : "");
}

lc_tmpl *lc_tmpl_new(const struct llama_model *model, const char *source, char *err, size_t errlen) {
    try {
        lc_tmpl *t = new lc_tmpl;
        t->t = common_chat_templates_init(model, source ? source : "");
        auto caps = common_chat_templates_get_caps(t->t.get());
        t->tool_calls = caps["supports_tool_calls"] && caps["supports_tools"];
        return t;
    } catch (const std::exception &e) {
        set_err(err, errlen, "the chat template could not be loaded", &e);
    } catch (...) {
        set_err(err, errlen, "the chat template could not be loaded", nullptr);
    }
    return nullptr;
}

void lc_tmpl_free(lc_tmpl *t) { delete t; }

bool lc_tmpl_tool_calls(const lc_tmpl *t) { return t && t->tool_calls; }

/* A lazy trigger, anchored at the start of the output (see the header comment). */
static std::string start_pattern(const common_grammar_trigger &g) {
    switch (g.type) {
        case COMMON_GRAMMAR_TRIGGER_TYPE_WORD: return "^\\s*(" + regex_escape(g.value) + "[\\s\\S]*)";
        case COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN: return "^\\s*(" + g.value + "[\\s\\S]*)";
        default: { /* PATTERN_FULL: the whole output, as the library anchors it */
            const std::string &p = g.value;
            if (p.empty()) return "^$";
            return (p.front() != '^' ? "^" : "") + p + (p.back() != '$' ? "$" : "");
        }
    }
}

/* `required`: the root rule's optional free text before the calls ("until-N?") goes. */
static std::string calls_first(const std::string &grammar) {
    size_t root = grammar.rfind("\nroot ::= ", std::string::npos);
    if (root == std::string::npos && grammar.rfind("root ::= ", 0) == 0) root = 0;
    if (root == std::string::npos) return grammar;
    size_t end = grammar.find('\n', root + 1);
    if (end == std::string::npos) end = grammar.size();
    std::string line = grammar.substr(root, end - root);
    for (size_t at; (at = line.find(" until-")) != std::string::npos;) {
        size_t q = line.find('?', at);
        size_t sp = line.find(' ', at + 1);
        if (q == std::string::npos || (sp != std::string::npos && sp < q)) break; /* not optional: keep */
        line.erase(at, q + 1 - at);
    }
    return grammar.substr(0, root) + line + grammar.substr(end);
}

/* The line of rule `name` in grammar: [*begin, *end) past "name ::= ", false if absent. */
static bool rule_body(const std::string &g, const std::string &name, size_t *begin, size_t *end) {
    std::string head = name + " ::= ";
    size_t at = g.rfind("\n" + head);
    if (at != std::string::npos) at++;
    else if (g.rfind(head, 0) == 0) at = 0;
    else return false;
    *begin = at + head.size();
    *end = g.find('\n', *begin);
    if (*end == std::string::npos) *end = g.size();
    return true;
}

/* The library's repetition of calls is unbounded (a small model can call until max_tokens):
 * at most `max` calls, one without parallel_tool_calls. In the families whose grammar has
 * the rules `tool-calls ::= (tool-call space)+` and `tool-call ::= ... (sep call)* ...`;
 * other grammars are kept. */
static std::string bounded_calls(std::string g, int max) {
    size_t b, e;
    if (rule_body(g, "tool-calls", &b, &e) && e >= 2 && g.compare(e - 2, 2, ")+") == 0) {
        std::string body = g.substr(b, e - b - 1) + "{1," + std::to_string(max) + "}";
        for (size_t q; (q = body.find("tool-call?")) != std::string::npos;) body.erase(q + 9, 1);
        g.replace(b, e - b, body);
    }
    if (rule_body(g, "tool-call", &b, &e)) {
        std::string body = g.substr(b, e - b);
        size_t star = body.find(")*");
        if (star != std::string::npos) body.replace(star, 2, "){0," + std::to_string(max - 1) + "}");
        g.replace(b, e - b, body);
    }
    return g;
}

static char **dup_list(const std::vector<std::string> &v, int *n) {
    *n = 0;
    if (v.empty()) return nullptr;
    char **a = (char **)calloc(v.size(), sizeof *a);
    if (!a) return nullptr;
    for (const auto &s : v)
        if (!(a[(*n)++] = dup_str(s))) break;
    return a;
}

static int fill_out(const common_chat_params &cp, lc_tool_choice choice, bool parallel, lc_tmpl_out *o) {
    o->prompt = dup_str(cp.prompt);
    if (!o->prompt) return AIOS_ERR_NOMEM;
    if (!cp.grammar.empty() && choice != LC_TOOLS_NONE) {
        o->lazy = cp.grammar_lazy;
        std::string g = bounded_calls(cp.grammar, parallel ? LC_MAX_CALLS : 1);
        o->grammar = dup_str(choice == LC_TOOLS_REQUIRED ? calls_first(g) : g);
        std::vector<std::string> pats;
        std::vector<int32_t> toks;
        for (const auto &g : cp.grammar_triggers) {
            if (g.type == COMMON_GRAMMAR_TRIGGER_TYPE_TOKEN) toks.push_back(g.token);
            else pats.push_back(start_pattern(g));
        }
        o->patterns = dup_list(pats, &o->n_patterns);
        if (!toks.empty() && (o->tokens = (int32_t *)calloc(toks.size(), sizeof(int32_t)))) {
            memcpy(o->tokens, toks.data(), toks.size() * sizeof(int32_t));
            o->n_tokens = (int)toks.size();
        }
        /* a tool-call grammar spells out the generation prompt it follows (the library's prefill) */
        if (!o->lazy && !cp.generation_prompt.empty()) o->prefill = dup_str(cp.generation_prompt);
    }
    o->stops = dup_list(cp.additional_stops, &o->n_stops);
    o->parser = new lc_tmpl_parser;
    o->parser->params = common_chat_parser_params(cp);
    if (!cp.parser.empty()) o->parser->params.parser.load(cp.parser);
    o->parser->params.parse_tool_calls = choice != LC_TOOLS_NONE;
    return AIOS_OK;
}

int lc_tmpl_apply(const lc_tmpl *t, const char *messages_json, const char *tools_json, lc_tool_choice choice, bool parallel,
                  lc_tmpl_out *out, char *err, size_t errlen) {
    *out = lc_tmpl_out{};
    try {
        common_chat_templates_inputs in;
        in.messages = common_chat_msgs_parse_oaicompat(common_json::parse(messages_json));
        if (tools_json) in.tools = common_chat_tools_parse_oaicompat(common_json::parse(tools_json));
        in.tool_choice = choice == LC_TOOLS_REQUIRED ? COMMON_CHAT_TOOL_CHOICE_REQUIRED
            : choice == LC_TOOLS_NONE                ? COMMON_CHAT_TOOL_CHOICE_NONE
                                                     : COMMON_CHAT_TOOL_CHOICE_AUTO;
        in.parallel_tool_calls = parallel;
        in.use_jinja = true;
        in.add_generation_prompt = true;
        in.enable_thinking = false;
        in.reasoning_format = COMMON_REASONING_FORMAT_NONE;
        common_chat_params cp = common_chat_templates_apply(t->t.get(), in);
        int rc = fill_out(cp, tools_json ? choice : LC_TOOLS_NONE, parallel, out);
        if (rc) lc_tmpl_out_free(out);
        return rc;
    } catch (const std::exception &e) {
        set_err(err, errlen, "the chat template refused the request", &e);
    } catch (...) {
        set_err(err, errlen, "the chat template refused the request", nullptr);
    }
    lc_tmpl_out_free(out);
    return AIOS_ERR_INVALID;
}

int lc_tmpl_prefill(struct llama_sampler *grammar, const struct llama_vocab *vocab, const char *prefill) {
    try {
        std::vector<llama_token> toks = common_tokenize(vocab, prefill, false, true);
        for (size_t i = 0; i < toks.size(); i++) {
            std::string piece = common_token_to_piece(vocab, toks[i], true);
            /* some tokenizers put a space before a leading special token */
            if (i == 0 && !piece.empty() && std::isspace((unsigned char)piece[0]) && !std::isspace((unsigned char)prefill[0]))
                continue;
            llama_sampler_accept(grammar, toks[i]);
        }
        return AIOS_OK;
    } catch (...) {
        return AIOS_ERR_INVALID;
    }
}

static void free_list(char **a, int n) {
    for (int i = 0; i < n; i++) free(a[i]);
    free(a);
}

void lc_tmpl_out_free(lc_tmpl_out *o) {
    if (!o) return;
    free(o->prompt);
    free(o->grammar);
    free_list(o->patterns, o->n_patterns);
    free(o->tokens);
    free(o->prefill);
    free_list(o->stops, o->n_stops);
    lc_tmpl_parser_free(o->parser);
    *o = lc_tmpl_out{};
}

int lc_tmpl_parse(const lc_tmpl_parser *p, const char *text, bool partial, lc_tmpl_msg *out) {
    *out = lc_tmpl_msg{};
    try {
        common_chat_msg m = common_chat_parse(text, partial, p->params);
        out->content = dup_str(m.content);
        if (!m.tool_calls.empty()) {
            out->calls = (lc_tmpl_call *)calloc(m.tool_calls.size(), sizeof *out->calls);
            if (!out->calls) return AIOS_ERR_NOMEM;
            for (const auto &c : m.tool_calls) {
                lc_tmpl_call *k = &out->calls[out->n_calls++];
                k->name = dup_str(c.name);
                k->arguments = dup_str(c.arguments);
            }
        }
        return out->content ? AIOS_OK : AIOS_ERR_NOMEM;
    } catch (...) {
        lc_tmpl_msg_free(out);
        out->content = dup_str(text);
        return AIOS_ERR_INVALID;
    }
}

void lc_tmpl_msg_free(lc_tmpl_msg *m) {
    if (!m) return;
    free(m->content);
    for (int i = 0; i < m->n_calls; i++) {
        free(m->calls[i].name);
        free(m->calls[i].arguments);
    }
    free(m->calls);
    *m = lc_tmpl_msg{};
}

void lc_tmpl_parser_free(lc_tmpl_parser *p) { delete p; }
