/*
 * llamacpp.c - the embedded llama.cpp LLM core: one model, one context, one engine thread.
 *
 * Continuous batching: every step the engine admits waiting syscalls into free sequence
 * slots (as the scheduler allows and the KV budget fits), then builds ONE llama_batch with
 * the next token of every decoding sequence plus prefill chunks of newly admitted ones
 * (decodes first, prefill fills the rest of batch_size), calls llama_decode once, samples
 * each sequence that produced logits with its own sampler chain (grammar, top-k, top-p,
 * temperature, seed) and releases text as it becomes final. A sequence's KV cells are
 * freed (llama_memory_seq_rm) the moment it finishes or is cancelled.
 *
 * KV admission: the context holds kv_size cells shared by all sequences (unified KV); a
 * request reserves prompt + max_tokens cells when it starts, so a running sequence never
 * runs out of room and the waiting queue stays in policy order.
 *
 * Scheduling: each step the engine first asks the scheduler whether a running generation
 * must yield to a waiting one (rr time slice, higher priority, less attained service) and
 * preempts it, then admits. Starting, preempting and finishing a sequence, snapshots and
 * the prefix / conversation cache are the context manager's (llamacpp_ctx.c).
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "chat_template.h"
#include "llamacpp_internal.h"

/* ---------- llama.cpp logging, loading progress and checks (shared with embed.c) ---------- */

void lc_log(enum ggml_log_level level, const char *text, void *ud) {
    (void)ud;
    if (level == GGML_LOG_LEVEL_ERROR) {
        size_t n = strlen(text);
        log_error("llama.cpp: %.*s", (int)(n && text[n - 1] == '\n' ? n - 1 : n), text);
    }
}

/* Progress on stderr: a live percentage on a terminal, a line per quarter otherwise. */
bool lc_progress(float p, void *ud) {
    int *last = ud;
    int pct = (int)(p * 100.0f), tty = isatty(2), step = tty ? 5 : 25;
    if ((pct >= *last + step || pct == 100) && *last < 100) {
        if (tty) fprintf(stderr, "\rloading model: %3d%%%s", pct, pct == 100 ? "\n" : "");
        else fprintf(stderr, "loading model: %d%%\n", pct);
        *last = pct;
    }
    return true;
}

int lc_check_gguf(const char *path, char *err, size_t errlen) {
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, errlen, "model file not found: %s (run `make model` to fetch the default model, or pass --model PATH)",
                 path);
        return AIOS_ERR_NOT_FOUND;
    }
    FILE *f = fopen(path, "rb");
    char magic[4] = {0};
    size_t n = f ? fread(magic, 1, 4, f) : 0;
    if (f) fclose(f);
    if (n != 4 || memcmp(magic, "GGUF", 4) != 0) {
        snprintf(err, errlen, "not a GGUF model file: %s (run `make model` to fetch the default model again)", path);
        return AIOS_ERR_MODEL;
    }
    return AIOS_OK;
}

/* ---------- open / close ---------- */

/* A logit-bias sampler that bans every end-of-generation token (for ignore_eos). */
static struct llama_sampler *make_no_eog(lc_engine *e) {
    int n_vocab = llama_vocab_n_tokens(e->vocab), n = 0;
    llama_logit_bias *b = malloc((size_t)n_vocab * sizeof *b);
    if (!b) return NULL;
    for (llama_token t = 0; t < n_vocab; t++)
        if (llama_vocab_is_eog(e->vocab, t)) b[n++] = (llama_logit_bias){.token = t, .bias = -INFINITY};
    struct llama_sampler *smp = llama_sampler_init_logit_bias(n_vocab, n, b);
    free(b);
    return smp;
}

static void lc_close(void *impl);
static void *lc_run(void *arg);

#define LC_TEMPLATE_MAX (1 << 20)

/* The text of the configured chat_template_file (malloc'd) into *out; NULL when none is set. */
static int read_template(const char *path, char **out, char *err, size_t errlen) {
    *out = NULL;
    if (!path[0]) return AIOS_OK;
    FILE *f = fopen(path, "rb");
    char *buf = f ? malloc(LC_TEMPLATE_MAX + 1) : NULL;
    size_t n = buf ? fread(buf, 1, LC_TEMPLATE_MAX + 1, f) : 0;
    if (f) fclose(f);
    if (!buf || n == 0 || n > LC_TEMPLATE_MAX || !kern_utf8_valid(buf, n)) {
        snprintf(err, errlen, "chat_template_file '%s': %s", path,
                 !f                        ? "cannot be read"
                     : !buf                ? "out of memory"
                     : n > LC_TEMPLATE_MAX ? "over 1 MiB"
                                           : "empty or not UTF-8 text");
        free(buf);
        return AIOS_ERR_MODEL;
    }
    buf[n] = 0;
    *out = buf;
    return AIOS_OK;
}

/* Which template renders chats and how tool calls are written (tool_format, docs/config.md):
 * the Jinja template through llama.cpp's common chat library when a file replaces the model's
 * or the template has a tool-call format of its own; else llama_chat_apply_template, and the
 * kernel's JSON tool calls. */
static int open_template(lc_engine *e, char *err, size_t errlen) {
    const char *fmt = e->cfg.tool_format[0] ? e->cfg.tool_format : "auto";
    char *src = NULL, terr[256] = "";
    int rc = read_template(e->cfg.chat_template_file, &src, err, errlen);
    bool file = src != NULL;
    if (rc || (!strcmp(fmt, "json") && !file)) return rc;
    e->jinja = lc_tmpl_new(e->model, src, terr, sizeof terr);
    free(src);
    if (!e->jinja && (file || !strcmp(fmt, "native"))) {
        snprintf(err, errlen, "model '%s': %s", e->cfg.name, terr);
        return AIOS_ERR_MODEL;
    }
    e->tools_native = e->jinja && strcmp(fmt, "json") && lc_tmpl_tool_calls(e->jinja);
    if (!strcmp(fmt, "native") && !e->tools_native) {
        snprintf(err, errlen, "model '%s': tool_format native, but its chat template has no tool-call format (use auto or json)",
                 e->cfg.name);
        return AIOS_ERR_MODEL;
    }
    if (e->jinja && !file && !e->tools_native) { /* the model's own template without tools: the built-in renderer */
        lc_tmpl_free(e->jinja);
        e->jinja = NULL;
    }
    if (!e->jinja && terr[0]) log_warn("model '%s': %s; its chats use llama_chat_apply_template", e->cfg.name, terr);
    log_info("model '%s': chats rendered by %s, tool calls in %s format", e->cfg.name,
             e->jinja ? (file ? e->cfg.chat_template_file : "its Jinja template") : "llama_chat_apply_template",
             e->tools_native ? "the template's own" : "the kernel's JSON");
    return AIOS_OK;
}

/* The bounds of the step histograms (llm_step_hist). */
static void step_hists_init(llm_core_stats *st) {
    static const double SECONDS[] = {0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5};
    static const double COUNT[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096};
    static const double CELLS[] = {256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144};
    for (int k = 0; k < LLM_STEP__COUNT; k++) {
        bool secs = k <= LLM_STEP_SWITCH_S, cells = k >= LLM_STEP_KV_CELLS;
        const double *le = secs ? SECONDS : cells ? CELLS : COUNT;
        int n = secs ? (int)(sizeof SECONDS / sizeof *SECONDS)
            : cells  ? (int)(sizeof CELLS / sizeof *CELLS)
                     : (int)(sizeof COUNT / sizeof *COUNT);
        kern_hist_init(&st->step[k], le, n);
    }
}

static int lc_open(const aios_model_cfg *m, sched_t *sched, int max_active, const llm_context_params *ctxp, void **out, char *err,
                   size_t errlen) {
    int rc = lc_check_gguf(m->path, err, errlen);
    if (rc || (rc = lc_backend_init(err, errlen))) return rc;

    lc_engine *e = calloc(1, sizeof *e);
    if (!e) return AIOS_ERR_NOMEM;
    e->cfg = *m;
    e->cp = *ctxp;
    e->sched = sched;
    e->max_active = max_active;
    pthread_mutex_init(&e->st_mu, NULL);
    atomic_init(&e->stop, false);
    step_hists_init(&e->st);

    int last = -100;
    struct llama_model_params mp = llama_model_default_params();
    if ((rc = lc_gpu_placement(m, &mp.n_gpu_layers, &mp.main_gpu, e->device, sizeof e->device, err, errlen))) {
        lc_close(e);
        return rc;
    }
    mp.progress_callback = lc_progress;
    mp.progress_callback_user_data = &last;
    e->model = llama_model_load_from_file(m->path, mp);
    if (!e->model) {
        snprintf(err, errlen,
                 "cannot load model %s: corrupt or unsupported GGUF (run `make model` to fetch the default model again)",
                 m->path);
        lc_close(e);
        return AIOS_ERR_MODEL;
    }
    e->vocab = llama_model_get_vocab(e->model);
    int train = llama_model_n_ctx_train(e->model);
    e->kv_size = m->kv_size;
    e->n_ctx = m->ctx_size > 0 ? m->ctx_size : train;
    if (e->n_ctx > e->kv_size) e->n_ctx = e->kv_size;
    e->batch_size = m->batch_size;
    e->prefill_chunk = m->prefill_chunk;

    struct llama_context_params cp = llama_context_default_params();
    bool det = ctxp->deterministic;
    e->pad_seq = det ? max_active + ctxp->cache_entries : -1;
    cp.n_ctx = (uint32_t)e->kv_size;
    cp.n_batch = (uint32_t)(e->batch_size + (det ? LC_DET_ROWS : 0)); /* room for the padding */
    cp.n_ubatch = (uint32_t)(det ? LC_DET_ROWS : e->batch_size);
    cp.n_seq_max = (uint32_t)(max_active + ctxp->cache_entries + det); /* slots, cache entries, padding */
    cp.kv_unified = true;
    /* Flash attention on: its CPU kernel walks each sequence's own cells in order and skips
     * masked ones, so a sequence's results do not depend on its neighbours in the cache. */
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_ENABLED;
    cp.no_perf = true;
    int threads = m->threads > 0 ? m->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    cp.n_threads = cp.n_threads_batch = threads > 0 ? threads : 1;
    e->ctx = llama_init_from_model(e->model, cp);
    if (!e->ctx) {
        snprintf(err, errlen, "cannot create a llama.cpp context (kv_size %d, batch_size %d, %d sequences)", e->kv_size,
                 e->batch_size, max_active);
        lc_close(e);
        return AIOS_ERR_MODEL;
    }
    if (det) { /* the padding's cells, outside every sequence's budget */
        e->kv_size -= LC_DET_ROWS;
        if (e->n_ctx > e->kv_size) e->n_ctx = e->kv_size;
    }
    /* Our own thread pool, so the poll level is ours: workers that spin after a decode
     * (ggml's default) take the CPU from the engine thread between steps (snapshots, cache
     * work) and from the HTTP thread. Measured on 2 cores: no slower at 1 or 16 sequences. */
    struct ggml_threadpool_params tpp = ggml_threadpool_params_default(cp.n_threads);
    tpp.poll = 0;
    e->tp = lc_threadpool_new(&tpp);
    if (e->tp) llama_attach_threadpool(e->ctx, e->tp, e->tp);
    if (ctxp->verify_prefix) {
        cp.n_ctx = (uint32_t)(e->n_ctx + (det ? LC_DET_ROWS : 0));
        cp.n_seq_max = 1 + det; /* deterministic mode pads with sequence 1 */
        e->vctx = llama_init_from_model(e->model, cp);
    }
    const char *t = llama_model_chat_template(e->model, NULL);
    e->tmpl = strdup(t ? t : "chatml");
    int trc = open_template(e, err, errlen);
    if (trc) {
        lc_close(e);
        return trc;
    }
    e->seqs = calloc((size_t)max_active, sizeof *e->seqs);
    e->batch = llama_batch_init(e->batch_size + (det ? LC_DET_ROWS : 0), 0, 1);
    e->cur = malloc((size_t)llama_vocab_n_tokens(e->vocab) * sizeof *e->cur);
    if (!e->tmpl || !e->seqs || !e->cur || lc_ctx_init(e) || !(e->no_eog = make_no_eog(e))) {
        lc_close(e);
        return AIOS_ERR_NOMEM;
    }
    for (int i = 0; i < max_active; i++) e->seqs[i].id = i;
    if (pthread_create(&e->thread, NULL, lc_run, e) != 0) {
        snprintf(err, errlen, "cannot start the engine thread");
        lc_close(e);
        return AIOS_ERR_INTERNAL;
    }
    e->thread_started = true;
    *out = e;
    return AIOS_OK;
}

static void lc_close(void *impl) {
    lc_engine *e = impl;
    if (!e) return;
    atomic_store(&e->stop, true);
    if (e->thread_started) {
        sched_wake(e->sched);
        pthread_join(e->thread, NULL);
    }
    if (e->seqs) llama_batch_free(e->batch);
    lc_ctx_free(e);
    if (e->no_eog) llama_sampler_free(e->no_eog);
    free(e->cur);
    free(e->seqs);
    free(e->tmpl);
    lc_tmpl_free(e->jinja);
    if (e->vctx) llama_free(e->vctx);
    if (e->ctx) llama_free(e->ctx);
    lc_threadpool_free(e->tp);
    if (e->model) llama_model_free(e->model);
    pthread_mutex_destroy(&e->st_mu);
    free(e);
}

static void lc_wake(void *impl) { sched_wake(((lc_engine *)impl)->sched); }

static void lc_info(void *impl, llm_core_info *o) {
    lc_engine *e = impl;
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", e->cfg.name);
    o->backend = "llamacpp";
    llama_model_desc(e->model, o->desc, sizeof o->desc);
    o->ctx = e->n_ctx;
    o->ctx_train = llama_model_n_ctx_train(e->model);
    o->kv_size = e->kv_size;
    o->max_active = e->max_active;
    o->n_params = (int64_t)llama_model_n_params(e->model);
    o->size_bytes = llama_model_size(e->model);
    o->tools_native = e->tools_native;
    o->jinja = e->jinja != NULL;
    int n_layer = llama_model_n_layer(e->model) + 1; /* the output layer counts */
    o->gpu_layers = strcmp(e->device, "CPU") ? (e->cfg.gpu_layers < n_layer ? e->cfg.gpu_layers : n_layer) : 0;
    snprintf(o->device, sizeof o->device, "%s", e->device);
}

static void lc_stats(void *impl, llm_core_stats *o) {
    lc_engine *e = impl;
    pthread_mutex_lock(&e->st_mu);
    *o = e->st;
    pthread_mutex_unlock(&e->st_mu);
    lc_store_stats(e, o); /* live: a request freed on an API thread frees its snapshot there */
}

/* ---------- prepare (API threads; touches only read-only model state) ---------- */

static void lc_sampler_free(void *s) { llama_sampler_free(s); }

/* logit_bias: every token must be in the vocabulary (AIOS_ERR_INVALID naming it). */
static int add_bias(lc_engine *e, struct llama_sampler *ch, const llm_sampling *s, char *err, size_t errlen) {
    if (s->n_bias <= 0) return AIOS_OK;
    int n_vocab = llama_vocab_n_tokens(e->vocab);
    llama_logit_bias *b = calloc((size_t)s->n_bias, sizeof *b);
    if (!b) return AIOS_ERR_NOMEM;
    for (int i = 0; i < s->n_bias; i++) {
        if (s->bias_tokens[i] < 0 || s->bias_tokens[i] >= n_vocab) {
            snprintf(err, errlen, "logit_bias: token %d is not in the vocabulary (0 to %d)", s->bias_tokens[i], n_vocab - 1);
            free(b);
            return AIOS_ERR_INVALID;
        }
        b[i] = (llama_logit_bias){s->bias_tokens[i], s->bias_values[i]};
    }
    llama_sampler_chain_add(ch, llama_sampler_init_logit_bias(n_vocab, s->n_bias, b));
    free(b);
    return AIOS_OK;
}

_Static_assert((int)LLM_TOOLS_AUTO == (int)LC_TOOLS_AUTO && (int)LLM_TOOLS_REQUIRED == (int)LC_TOOLS_REQUIRED &&
                   (int)LLM_TOOLS_NONE == (int)LC_TOOLS_NONE,
               "llm_tool_choice and lc_tool_choice agree");

/* The output grammar (*out, NULL if none): the request's own (chat->grammar, lazy after
 * chat->grammar_trigger), or the template's tool-call grammar (t). */
static int make_grammar(lc_engine *e, const llm_chat *chat, const lc_tmpl_out *t, struct llama_sampler **out, char *err,
                        size_t errlen) {
    *out = NULL;
    struct llama_sampler *g = NULL;
    if (chat->grammar) {
        const char *trig[1] = {chat->grammar_trigger};
        g = chat->grammar_trigger ? llama_sampler_init_grammar_lazy_patterns(e->vocab, chat->grammar, "root", trig, 1, NULL, 0)
                                  : llama_sampler_init_grammar(e->vocab, chat->grammar, "root");
    } else if (t && t->grammar) {
        g = t->lazy ? llama_sampler_init_grammar_lazy_patterns(e->vocab, t->grammar, "root", (const char **)t->patterns,
                                                               (size_t)t->n_patterns, t->tokens, (size_t)t->n_tokens)
                    : llama_sampler_init_grammar(e->vocab, t->grammar, "root");
        if (g && t->prefill && lc_tmpl_prefill(g, e->vocab, t->prefill)) {
            llama_sampler_free(g);
            g = NULL;
        }
    } else {
        return AIOS_OK;
    }
    if (!g) {
        snprintf(err, errlen, "the output grammar could not be parsed");
        return AIOS_ERR_INVALID;
    }
    *out = g;
    return AIOS_OK;
}

/* The sampler chain of a request; its grammar stays outside (*grammar): sample_token checks
 * the chain's draft against it and applies it to the whole vocabulary only when the draft is
 * refused, as llama.cpp's common sampler does (a grammar over every token at every step
 * costs more than the decode of a small model). */
static struct llama_sampler *make_sampler(lc_engine *e, const llm_chat *chat, const lc_tmpl_out *t,
                                          struct llama_sampler **grammar, char *err, size_t errlen) {
    struct llama_sampler_chain_params scp = llama_sampler_chain_default_params();
    scp.no_perf = true;
    struct llama_sampler *ch = llama_sampler_chain_init(scp);
    if (!ch) return NULL;
    if (chat->sampling.ignore_eos) llama_sampler_chain_add(ch, llama_sampler_clone(e->no_eog));
    if (add_bias(e, ch, &chat->sampling, err, errlen) || make_grammar(e, chat, t, grammar, err, errlen)) {
        llama_sampler_free(ch);
        return NULL;
    }
    const llm_sampling *s = &chat->sampling;
    if (s->repeat_penalty != 1.0f || s->frequency_penalty != 0.0f || s->presence_penalty != 0.0f)
        llama_sampler_chain_add(ch,
                                llama_sampler_init_penalties(llama_vocab_n_tokens(e->vocab), s->penalty_last_n, s->repeat_penalty,
                                                             s->frequency_penalty, s->presence_penalty));
    if (s->temperature <= 0.0f) {
        llama_sampler_chain_add(ch, llama_sampler_init_greedy());
        return ch;
    }
    if (s->top_k > 0) llama_sampler_chain_add(ch, llama_sampler_init_top_k(s->top_k));
    if (s->top_p < 1.0f) llama_sampler_chain_add(ch, llama_sampler_init_top_p(s->top_p, 1));
    if (s->min_p > 0.0f) llama_sampler_chain_add(ch, llama_sampler_init_min_p(s->min_p, 1));
    llama_sampler_chain_add(ch, llama_sampler_init_temp(s->temperature));
    llama_sampler_chain_add(ch, llama_sampler_init_dist(s->seed == LLM_SEED_RANDOM ? LLAMA_DEFAULT_SEED : s->seed));
    return ch;
}

static int render_builtin(lc_engine *e, const llm_chat *chat, strbuf *out, char *err, size_t errlen) {
    struct llama_chat_message *msgs = calloc((size_t)chat->n_messages, sizeof *msgs);
    if (!msgs) return AIOS_ERR_NOMEM;
    size_t total = 64;
    for (int i = 0; i < chat->n_messages; i++) {
        msgs[i].role = chat->messages[i].role;
        msgs[i].content = chat->messages[i].content ? chat->messages[i].content : "";
        total += strlen(msgs[i].content) + strlen(msgs[i].role) + 32;
    }
    int rc = AIOS_OK;
    for (int attempt = 0; attempt < 2; attempt++) {
        char *buf = malloc(total);
        if (!buf) {
            rc = AIOS_ERR_NOMEM;
            break;
        }
        int32_t n = llama_chat_apply_template(e->tmpl, msgs, (size_t)chat->n_messages, true, buf, (int32_t)total);
        if (n < 0) {
            snprintf(err, errlen, "the model's chat template is not supported by llama_chat_apply_template");
            rc = AIOS_ERR_MODEL;
        } else if ((size_t)n < total) {
            rc = sb_append(out, buf, (size_t)n);
        } else {
            total = (size_t)n + 1;
            free(buf);
            continue;
        }
        free(buf);
        break;
    }
    free(msgs);
    return rc;
}

/* chat's messages as OpenAI messages JSON (for the Jinja template); NULL on OOM. */
static char *messages_json(const llm_chat *chat) {
    cJSON *a = llm_chat_messages(chat);
    char *s = a ? cJSON_PrintUnformatted(a) : NULL;
    cJSON_Delete(a);
    return s;
}

/* The template's tool-call grammar with the kernel's argument grammar for each tool
 * (llm_grammar_swap_tool_args): template-format calls validate like the kernel's own. */
static int kernel_args(lc_tmpl_out *o, const char *tools_json, char *err, size_t errlen) {
    if (!o->grammar) return AIOS_OK;
    cJSON *tools = cJSON_Parse(tools_json);
    int n = cJSON_GetArraySize(tools), i = 0;
    const char **names = calloc((size_t)n + 1, sizeof *names);
    const cJSON **schemas = calloc((size_t)n + 1, sizeof *schemas);
    strbuf g;
    sb_init(&g, 0);
    int rc = tools && names && schemas ? AIOS_OK : AIOS_ERR_NOMEM;
    for (const cJSON *t = rc ? NULL : tools->child; t; t = t->next) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(t, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(f, "name");
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(f, "parameters");
        if (!cJSON_IsString(name)) continue;
        names[i] = name->valuestring;
        schemas[i++] = cJSON_IsObject(params) ? params : NULL;
    }
    if (!rc) rc = llm_grammar_swap_tool_args(o->grammar, names, schemas, i, &g, err, errlen);
    if (!rc) {
        free(o->grammar);
        o->grammar = sb_steal(&g);
    }
    sb_free(&g);
    free(names);
    free(schemas);
    cJSON_Delete(tools);
    return rc;
}

/* The prompt of chat. With the Jinja template, *t (when given) gets the rest of what it
 * made (the tool-call grammar, triggers, stops, parser; the caller frees it). */
static int render(lc_engine *e, const llm_chat *chat, strbuf *out, lc_tmpl_out *t, char *err, size_t errlen) {
    if (chat->raw_prompt) return sb_puts(out, chat->n_messages ? chat->messages[0].content : "");
    if (chat->tools_json && !e->tools_native) {
        snprintf(err, errlen, "model '%s' has no tool-call format of its own", e->cfg.name);
        return AIOS_ERR_INVALID;
    }
    if (!e->jinja) return render_builtin(e, chat, out, err, errlen);
    char *built = chat->messages_json ? NULL : messages_json(chat);
    if (!chat->messages_json && !built) return AIOS_ERR_NOMEM;
    lc_tmpl_out local;
    lc_tmpl_out *o = t ? t : &local;
    int rc = lc_tmpl_apply(e->jinja, chat->messages_json ? chat->messages_json : built, chat->tools_json,
                           (lc_tool_choice)chat->tool_choice, chat->parallel_calls, o, err, errlen);
    free(built);
    if (!rc) rc = sb_puts(out, o->prompt);
    if (!rc && t && chat->tools_json) rc = kernel_args(o, chat->tools_json, err, errlen);
    if (o == &local) lc_tmpl_out_free(&local);
    return rc;
}

static int lc_render(void *impl, const llm_chat *chat, strbuf *out, char *err, size_t errlen) {
    return render(impl, chat, out, NULL, err, errlen);
}

/* text's tokens into *out (malloc'd), special tokens parsed; rejects invalid UTF-8, on
 * which llama.cpp's tokenizer throws (and would take the kernel down). */
static int tokenize(lc_engine *e, const char *text, size_t len, bool add_special, int32_t **out, int *n, char *err,
                    size_t errlen) {
    *out = NULL;
    *n = 0;
    if (!kern_utf8_valid(text, len)) {
        snprintf(err, errlen, "the text is not valid UTF-8");
        return AIOS_ERR_INVALID;
    }
    if (len > INT32_MAX / 2) return AIOS_ERR_TOO_LARGE;
    int cap = -llama_tokenize(e->vocab, text, (int32_t)len, NULL, 0, add_special, true);
    if (cap <= 0) cap = 1; /* INT32_MIN (overflow) also lands here and fails below */
    if (!(*out = malloc((size_t)cap * sizeof **out))) return AIOS_ERR_NOMEM;
    *n = llama_tokenize(e->vocab, text, (int32_t)len, *out, cap, add_special, true);
    if (*n < 0) {
        snprintf(err, errlen, "the text could not be tokenized");
        free(*out);
        *out = NULL;
        *n = 0;
        return AIOS_ERR_TOO_LARGE;
    }
    return AIOS_OK;
}

static int lc_tokenize(void *impl, const char *text, bool add_special, int32_t **out, int *n, char *err, size_t errlen) {
    return tokenize(impl, text, strlen(text), add_special, out, n, err, errlen);
}

static int lc_detokenize(void *impl, const int32_t *tokens, int n, strbuf *out, char *err, size_t errlen) {
    lc_engine *e = impl;
    int n_vocab = llama_vocab_n_tokens(e->vocab);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= n_vocab) {
            snprintf(err, errlen, "tokens[%d]: %d is not in the vocabulary (0 to %d)", i, tokens[i], n_vocab - 1);
            return AIOS_ERR_INVALID;
        }
    int rc = AIOS_OK;
    for (int i = 0; i < n && !rc; i++) {
        char piece[256], *big = NULL;
        int k = llama_token_to_piece(e->vocab, tokens[i], piece, sizeof piece, 0, true);
        if (k < 0 && (big = malloc((size_t)-k))) k = llama_token_to_piece(e->vocab, tokens[i], big, -k, 0, true);
        rc = k < 0 ? AIOS_ERR_NOMEM : sb_append(out, big ? big : piece, (size_t)k);
        free(big);
    }
    return rc;
}

static int lc_prepare(void *impl, const llm_chat *chat, llm_request **out, char *err, size_t errlen) {
    lc_engine *e = impl;
    strbuf prompt;
    sb_init(&prompt, 0);
    lc_tmpl_out t = {0};
    int rc = render(e, chat, &prompt, &t, err, errlen);
    llm_request *r = rc ? NULL : llm_request_new(chat);
    if (!rc && !r) rc = AIOS_ERR_NOMEM;
    if (!rc) rc = tokenize(e, prompt.data ? prompt.data : "", prompt.len, true, &r->tokens, &r->n_tokens, err, errlen);
    sb_free(&prompt);
    if (rc == AIOS_ERR_INVALID && r) snprintf(err, errlen, "the prompt is not valid UTF-8");
    if (!rc && r->n_tokens <= 0) {
        snprintf(err, errlen, "the prompt is empty after tokenization");
        rc = AIOS_ERR_INVALID;
    }
    if (!rc && r->n_tokens >= e->n_ctx) {
        snprintf(err, errlen, "the prompt is %d tokens but model '%s' takes at most %d tokens per request (prompt + output)",
                 r->n_tokens, e->cfg.name, e->n_ctx);
        rc = AIOS_ERR_CONTEXT;
    }
    if (!rc) rc = llm_request_add_stops(r, t.stops, t.n_stops);
    if (!rc) {
        if (r->samp.max_tokens > e->n_ctx - r->n_tokens) r->samp.max_tokens = e->n_ctx - r->n_tokens;
        r->n_feed = r->n_tokens;
        struct llama_sampler *g = NULL;
        r->sampler = make_sampler(e, chat, &t, &g, err, errlen);
        r->grammar = g;
        r->sampler_free = lc_sampler_free;
        if (!r->sampler) rc = chat->grammar || t.grammar || chat->sampling.n_bias ? AIOS_ERR_INVALID : AIOS_ERR_NOMEM;
    }
    if (!rc && chat->tools_json) { /* the parser of its output, for llm_request_parse_output */
        r->parser = t.parser;
        t.parser = NULL;
    }
    lc_tmpl_out_free(&t);
    if (rc) {
        llm_request_free(r);
        return rc;
    }
    *out = r;
    return AIOS_OK;
}

/* ---------- the engine thread ---------- */

/* Releases what is left at the end, less a trailing incomplete UTF-8 character (a
 * generation cut by max_tokens can end inside one; clients must get valid UTF-8). */
static void seq_flush_text(llm_request *r, syscall_t *sc) {
    long stop_at;
    size_t n = r->pending.len ? llm_text_releasable(r->pending.data, r->pending.len, NULL, 0, &stop_at) : 0;
    if (n) syscall_emit(sc, r->pending.data, n);
    sb_reset(&r->pending);
}

static void seq_finish(lc_engine *e, lc_seq *s, llm_finish fin, int rc, const char *msg) {
    bool ok = fin == LLM_FINISH_STOP || fin == LLM_FINISH_LENGTH;
    llm_request *r = s->req;
    syscall_t *sc = s->sc;
    if (ok) seq_flush_text(r, sc);
    sb_reset(&r->pending);
    r->n_completion = r->n_gen;
    r->finish = fin;
    lc_release(e, s, ok);
    pthread_mutex_lock(&e->st_mu);
    if (rc == AIOS_OK) e->st.requests_done++;
    else if (rc == AIOS_ERR_CANCELLED) e->st.requests_cancelled++;
    else e->st.requests_failed++;
    e->st.completion_tokens += (unsigned long long)r->n_gen;
    lc_publish_gauges_locked(e);
    pthread_mutex_unlock(&e->st_mu);
    sched_done(e->sched, sc); /* before completing: a client that got its answer sees the slot free */
    syscall_complete(sc, rc, msg ? "%s" : NULL, msg);
    syscall_unref(sc);
}

static void admit(lc_engine *e) {
    for (int i = 0; i < e->max_active && !atomic_load(&e->stop); i++) {
        lc_seq *s = &e->seqs[i];
        if (s->used) continue;
        syscall_t *sc = sched_next(e->sched, lc_fits, e);
        if (!sc) return;
        lc_start(e, s, sc);
    }
}

/* Asks the policy, as long as it names one, which running generation yields to a waiting
 * one, and preempts it (only generations past their prefill are candidates). */
static void preempt_for_waiting(lc_engine *e) {
    syscall_t *running[256];
    for (int round = 0; round < e->max_active; round++) {
        int n = 0;
        for (int i = 0; i < e->max_active; i++)
            if (e->seqs[i].used && e->seqs[i].req->decoding) running[n++] = e->seqs[i].sc;
        syscall_t *v = n ? sched_victim(e->sched, running, n, lc_fits, e) : NULL;
        if (!v) return;
        for (int i = 0; i < e->max_active; i++)
            if (e->seqs[i].used && e->seqs[i].sc == v) lc_preempt(e, &e->seqs[i]);
        admit(e);
    }
}

static void batch_add(struct llama_batch *b, llama_token t, int pos, int seq, bool logits) {
    int i = b->n_tokens++;
    b->token[i] = t;
    b->pos[i] = pos;
    b->n_seq_id[i] = 1;
    b->seq_id[i][0] = seq;
    b->logits[i] = logits;
}

void lc_batch_pad(struct llama_batch *b, int pad_seq, bool all_logits) {
    for (int i = 0; all_logits && i < b->n_tokens; i++) b->logits[i] = true;
    for (int pos = 0; b->n_tokens % LC_DET_ROWS; pos++) batch_add(b, 0, pos, pad_seq, all_logits);
}

/* Decodes first (one token each), then prefill chunks in slot order: up to batch_size
 * tokens in all, of which at most prefill_chunk prompt tokens while some sequence decodes
 * (chunked prefill: a long prompt does not stall the running streams). */
static int build_batch(lc_engine *e) {
    struct llama_batch *b = &e->batch;
    b->n_tokens = 0;
    for (int i = 0; i < e->max_active; i++) {
        lc_seq *s = &e->seqs[i];
        s->bidx = -1;
        s->n_in_batch = 0;
        if (!s->used || !s->req->decoding) continue;
        llm_request *r = s->req;
        s->bidx = b->n_tokens;
        s->n_in_batch = 1;
        batch_add(b, r->gen[r->n_gen - 1], r->n_past++, s->id, true);
    }
    int cap = e->batch_size;
    if (b->n_tokens > 0 && e->prefill_chunk > 0 && b->n_tokens + e->prefill_chunk < cap) cap = b->n_tokens + e->prefill_chunk;
    for (int i = 0; i < e->max_active && b->n_tokens < cap; i++) {
        lc_seq *s = &e->seqs[i];
        if (!s->used || s->req->decoding) continue;
        llm_request *r = s->req;
        int left = r->n_feed - r->n_fed, room = cap - b->n_tokens;
        int chunk = left < room ? left : room;
        s->n_in_batch = chunk;
        for (int k = 0; k < chunk; k++) {
            bool last = r->n_fed + 1 == r->n_feed;
            if (last) s->bidx = b->n_tokens;
            batch_add(b, llm_feed_token(r, r->n_fed++), r->n_past++, s->id, last);
        }
    }
    return b->n_tokens;
}

static int gen_push(llm_request *r, llama_token tok) {
    if (r->n_gen == r->gen_cap) {
        int cap = r->gen_cap ? r->gen_cap * 2 : 64;
        int32_t *g = realloc(r->gen, (size_t)cap * sizeof *g);
        if (!g) return AIOS_ERR_NOMEM;
        r->gen = g;
        r->gen_cap = cap;
    }
    r->gen[r->n_gen++] = tok;
    return AIOS_OK;
}

/* Handles the token just sampled for s; may finish the sequence. */
static void on_token(lc_engine *e, lc_seq *s, llama_token tok) {
    llm_request *r = s->req;
    if (llama_vocab_is_eog(e->vocab, tok)) {
        seq_finish(e, s, LLM_FINISH_STOP, AIOS_OK, NULL);
        return;
    }
    if (gen_push(r, tok)) {
        seq_finish(e, s, LLM_FINISH_ERROR, AIOS_ERR_NOMEM, NULL);
        return;
    }
    char piece[256];
    int n = llama_token_to_piece(e->vocab, tok, piece, sizeof piece, 0, false);
    if (n > 0) sb_append(&r->pending, piece, (size_t)n);
    long stop_at;
    size_t rel = llm_text_releasable(r->pending.data ? r->pending.data : "", r->pending.len, (const char *const *)r->stop,
                                     r->n_stop, &stop_at);
    if (stop_at >= 0) {
        for (int i = 0; i < r->n_stop && !r->stop_matched; i++) { /* which one, for the doors that say */
            size_t sl = strlen(r->stop[i]);
            if (sl && sl <= r->pending.len - (size_t)stop_at && !memcmp(r->pending.data + stop_at, r->stop[i], sl))
                r->stop_matched = i + 1;
        }
        r->pending.len = (size_t)stop_at;
        seq_finish(e, s, LLM_FINISH_STOP, AIOS_OK, NULL);
        return;
    }
    if (rel && syscall_emit(s->sc, r->pending.data, rel) != AIOS_OK) {
        sb_reset(&r->pending);
        seq_finish(e, s, LLM_FINISH_LENGTH, AIOS_OK, NULL); /* the output buffer cap */
        return;
    }
    if (rel) {
        memmove(r->pending.data, r->pending.data + rel, r->pending.len - rel + 1);
        r->pending.len -= rel;
    }
    if (r->n_gen >= r->samp.max_tokens) {
        seq_finish(e, s, LLM_FINISH_LENGTH, AIOS_OK, NULL);
        return;
    }
    r->decoding = true;
}

static void fail_all(lc_engine *e, int rc, const char *msg) {
    for (int i = 0; i < e->max_active; i++)
        if (e->seqs[i].used) seq_finish(e, &e->seqs[i], LLM_FINISH_ERROR, rc, msg);
}

/* Samples every sequence that has logits in the batch just decoded and charges the
 * scheduler for the service each received. */
/* tok's log-probability under the logits at idx, and the top alternatives (engine thread;
 * only for requests that asked: a pass over the vocabulary per token). */
static void record_logprob(lc_engine *e, llm_request *r, int idx, llama_token tok) {
    if (r->n_lp == r->lp_cap) {
        int cap = r->lp_cap ? r->lp_cap * 2 : 64;
        llm_logprob *lp = realloc(r->lp, (size_t)cap * sizeof *lp);
        if (!lp) return; /* out of memory: the rest go unrecorded */
        r->lp = lp;
        r->lp_cap = cap;
    }
    const float *logits = llama_get_logits_ith(e->ctx, idx);
    int n_vocab = llama_vocab_n_tokens(e->vocab), k = r->samp.top_logprobs;
    float max = logits[0];
    for (int i = 1; i < n_vocab; i++) max = logits[i] > max ? logits[i] : max;
    double sum = 0;
    for (int i = 0; i < n_vocab; i++) sum += exp((double)logits[i] - max);
    float log_z = max + (float)log(sum);
    llm_logprob *o = &r->lp[r->n_lp++];
    *o = (llm_logprob){.token = tok, .logprob = logits[tok] - log_z};
    for (int i = 0; i < n_vocab && k > 0; i++) { /* insertion into the k best, kept sorted */
        if (o->n_top == k && logits[i] <= o->top_logprob[k - 1]) continue;
        int j = o->n_top < k ? o->n_top++ : k - 1;
        while (j > 0 && o->top_logprob[j - 1] < logits[i]) {
            o->top_logprob[j] = o->top_logprob[j - 1];
            o->top_token[j] = o->top_token[j - 1];
            j--;
        }
        o->top_logprob[j] = logits[i];
        o->top_token[j] = i;
    }
    for (int j = 0; j < o->n_top; j++) o->top_logprob[j] -= log_z;
}

/* The next token of r from the logits at idx: the chain's draft, kept if the grammar allows
 * it, else the chain again over what the grammar allows (make_sampler). */
static llama_token sample_token(lc_engine *e, llm_request *r, int idx) {
    if (!r->grammar) return llama_sampler_sample(r->sampler, e->ctx, idx);
    const float *logits = llama_get_logits_ith(e->ctx, idx);
    int n_vocab = llama_vocab_n_tokens(e->vocab);
    for (int i = 0; i < n_vocab; i++) e->cur[i] = (llama_token_data){i, logits[i], 0.0f};
    llama_token_data_array all = {e->cur, (size_t)n_vocab, -1, false};
    llama_sampler_apply(r->sampler, &all);
    llama_token tok = all.selected >= 0 ? all.data[all.selected].id : 0;
    llama_token_data one = {tok, 1.0f, 0.0f};
    llama_token_data_array draft = {&one, 1, -1, false};
    llama_sampler_apply(r->grammar, &draft);
    if (all.selected < 0 || isinf(one.logit)) { /* refused: the grammar first, then the chain */
        for (int i = 0; i < n_vocab; i++) e->cur[i] = (llama_token_data){i, logits[i], 0.0f};
        all = (llama_token_data_array){e->cur, (size_t)n_vocab, -1, false};
        llama_sampler_apply(r->grammar, &all);
        llama_sampler_apply(r->sampler, &all);
        tok = all.selected >= 0 ? all.data[all.selected].id : llama_vocab_eos(e->vocab);
    }
    llama_sampler_accept(r->grammar, tok);
    llama_sampler_accept(r->sampler, tok);
    return tok;
}

static void after_decode(lc_engine *e) {
    unsigned long long computed = 0;
    for (int i = 0; i < e->max_active; i++) {
        lc_seq *s = &e->seqs[i];
        if (!s->used || !s->n_in_batch) continue;
        bool was_decoding = s->req->decoding;
        if (!was_decoding) computed += (unsigned long long)s->n_in_batch;
        sched_charge(e->sched, s->sc, s->n_in_batch, s->bidx >= 0 ? 1 : 0);
        if (s->bidx < 0) continue;
        llama_token tok = sample_token(e, s->req, s->bidx);
        if (s->req->samp.logprobs && !llama_vocab_is_eog(e->vocab, tok)) record_logprob(e, s->req, s->bidx, tok);
        on_token(e, s, tok);
    }
    pthread_mutex_lock(&e->st_mu);
    e->st.prefill_computed += computed;
    pthread_mutex_unlock(&e->st_mu);
}

/* Seconds spent in context switches so far (snapshots taken and restored, compactions). */
static double switch_seconds(lc_engine *e) {
    pthread_mutex_lock(&e->st_mu);
    double t = e->st.snapshot_seconds + e->st.restore_seconds + e->st.compact_seconds;
    pthread_mutex_unlock(&e->st_mu);
    return t;
}

/* The step just decoded: v[LLM_STEP_TOKENS..] its shape. */
static void step_shape(lc_engine *e, double *v, int n_tokens) {
    int seqs = 0, own = 0;
    for (int i = 0; i < e->max_active; i++)
        if (e->seqs[i].used && e->seqs[i].n_in_batch) seqs++, own += e->seqs[i].req->n_past;
    v[LLM_STEP_TOKENS] = n_tokens;
    v[LLM_STEP_SEQS] = seqs;
    v[LLM_STEP_OWN_CELLS] = own;
    v[LLM_STEP_KV_CELLS] = e->kv_used; /* the engine's own count (st has its published copy) */
}

/* One step into the step histograms (v indexed by llm_step_hist). */
static void step_record(lc_engine *e, const double *v) {
    pthread_mutex_lock(&e->st_mu);
    for (int k = 0; k < LLM_STEP__COUNT; k++) kern_hist_add(&e->st.step[k], v[k]);
    pthread_mutex_unlock(&e->st_mu);
}

static void *lc_run(void *arg) {
    lc_engine *e = arg;
    while (!atomic_load(&e->stop)) {
        double step[LLM_STEP__COUNT] = {0}, t0 = kern_now_mono(), sw0 = switch_seconds(e);
        lc_reap_parked(e);
        preempt_for_waiting(e);
        admit(e);
        for (int i = 0; i < e->max_active; i++) {
            lc_seq *s = &e->seqs[i];
            if (s->used && atomic_load(&s->sc->cancel)) seq_finish(e, s, LLM_FINISH_CANCELLED, AIOS_ERR_CANCELLED, NULL);
        }
        if (e->n_active == 0) {
            sched_wait(e->sched, 0.5);
            continue;
        }
        lc_cool(e);
        lc_compact(e);
        if (e->kv_lost) { /* a repack failed and took the cache with it */
            fail_all(e, AIOS_ERR_MODEL, "the KV cache was lost while being compacted");
            lc_kv_lost(e);
            continue;
        }
        int n = build_batch(e);
        if (n == 0) continue;
        if (e->pad_seq >= 0) lc_batch_pad(&e->batch, e->pad_seq, true);
        double t1 = kern_now_mono();
        step[LLM_STEP_SWITCH_S] = switch_seconds(e) - sw0;
        step[LLM_STEP_SCHEDULE_S] = t1 - t0 - step[LLM_STEP_SWITCH_S];
        int rc = llama_decode(e->ctx, e->batch);
        if (e->pad_seq >= 0) llama_memory_seq_rm(llama_get_memory(e->ctx), e->pad_seq, -1, -1);
        double t2 = kern_now_mono();
        step[LLM_STEP_DECODE_S] = t2 - t1;
        pthread_mutex_lock(&e->st_mu);
        e->st.decode_steps++;
        e->st.batch_tokens += (unsigned long long)n;
        e->st.busy_seconds += t2 - t1;
        pthread_mutex_unlock(&e->st_mu);
        step_shape(e, step, n); /* before sampling or failing, which may end its sequences */
        lc_cells_note(e, t2 - t1);
        if (rc != 0) {
            char msg[96];
            snprintf(msg, sizeof msg, "llama_decode failed (%d)", rc);
            log_error("%s; failing %d running sequences", msg, e->n_active);
            step_record(e, step);             /* every counted step is in the histograms */
            fail_all(e, AIOS_ERR_MODEL, msg); /* frees their cells; the cache entries stay valid */
            continue;
        }
        after_decode(e);
        step[LLM_STEP_SAMPLE_S] = kern_now_mono() - t2;
        step_record(e, step);
    }
    fail_all(e, AIOS_ERR_SHUTDOWN, NULL);
    return NULL;
}

const llm_backend_ops llm_backend_llamacpp = {
    .name = "llamacpp",
    .open = lc_open,
    .close = lc_close,
    .info = lc_info,
    .prepare = lc_prepare,
    .stats = lc_stats,
    .wake = lc_wake,
    .render = lc_render,
    .tokenize = lc_tokenize,
    .detokenize = lc_detokenize,
    .agent_kv = lc_agent_kv,
};
