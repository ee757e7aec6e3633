/*
 * embed.c - the embedding engine (llm.h): one llama.cpp context with pooling, on its own
 * thread, turning texts into L2-normalised vectors for the memory and storage managers
 * and for POST /v1/embeddings.
 *
 * Callers queue texts (bounded); the thread packs as many as fit into one llama_decode
 * (one sequence id per text, up to batch_tokens tokens and max_seqs texts), reads each
 * sequence's pooled embedding and calls back. So many small texts from many agents cost a
 * few large batches, not one decode each. A text longer than batch_tokens is truncated
 * (counted). The model is a dedicated embedding GGUF (storage.embedding_model) or, as a
 * fallback, the chat model with mean pooling.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "llamacpp_internal.h"
#include "../vector/vector.h"

typedef struct emb_owner emb_owner;

typedef struct emb_job {
    char *text;
    llm_embed_cb cb;
    void *ctx;
    emb_owner *owner; /* while queued */
    struct emb_job *next;
} emb_job;

/* One agent's (or one client's) queue. Owners with texts waiting form a ring that the
 * engine thread serves one text at a time, so one agent's backlog delays another's texts by
 * at most one text per waiting agent, not by the whole backlog; an owner is freed as soon
 * as its queue is empty. */
struct emb_owner {
    char name[AIOS_NAME_MAX];
    emb_job *head, *tail;
    int queued;
    emb_owner *prev, *next; /* the ring of owners with texts waiting */
};

struct llm_embedder {
    llm_embed_params p;
    char name[AIOS_NAME_MAX];
    struct llama_model *model;
    const struct llama_vocab *vocab;
    struct llama_context *ctx;
    struct ggml_threadpool *tp;
    struct llama_batch batch;
    int dim;
    llama_token *tok; /* tokenizer scratch, batch_tokens long */
    int max_text;     /* tokens of one text: batch_tokens, or less if the model was trained shorter */
    float *vec;       /* output scratch, dim long */

    pthread_t thread;
    bool running;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    strmap owners;   /* name -> emb_owner, only owners with texts waiting */
    emb_owner *ring; /* the owner served next (NULL = nothing queued) */
    int queued;
    bool stop;
    llm_embed_stats st; /* guarded by mu */
    double text_s;      /* wall seconds per text of a batch, tokenising included (moving average; 0 = none yet), guarded by mu */
};

llm_embed_params llm_embed_default_params(void) {
    return (llm_embed_params){.model_path = NULL,
                              .threads = 0,
                              .batch_tokens = 512,
                              .max_seqs = 64,
                              .max_queue = 65536,
                              .max_queue_per_owner = 4096,
                              .name = "embed",
                              .nice = 10};
}

static void *emb_main(void *arg);
static emb_job *emb_pop(llm_embedder *e);

static int emb_context(llm_embedder *e, enum llama_pooling_type pooling) {
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = cp.n_batch = cp.n_ubatch = (uint32_t)e->p.batch_tokens;
    cp.n_seq_max = (uint32_t)e->p.max_seqs;
    cp.kv_unified = true;
    cp.embeddings = true;
    cp.pooling_type = pooling;
    /* Flash attention on (AUTO leaves it off for BERT on CPU): the batch packs many texts
     * into one unified cache, and without it attention scores every token against every
     * cell in view. Measured: 2000 short texts in 7.5 s instead of 18.7 s. */
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_ENABLED;
    cp.no_perf = true;
    /* default: half the CPUs. ggml's workers spin at each barrier of a graph, so an embedder on
     * every core takes it from request handling even at a high nice value (measured on 2 cores:
     * memory ops at 5000/s offered, p99 2.1-3.3 ms with one thread, 6-18 ms with two) */
    int threads = e->p.threads > 0 ? e->p.threads : (int)sysconf(_SC_NPROCESSORS_ONLN) / 2;
    cp.n_threads = cp.n_threads_batch = threads > 0 ? threads : 1;
    e->ctx = llama_init_from_model(e->model, cp);
    return e->ctx ? AIOS_OK : AIOS_ERR_MODEL;
}

llm_embedder *llm_embedder_new(const llm_embed_params *p, char *err, size_t errlen) {
    if (lc_check_gguf(p->model_path, err, errlen) || lc_backend_init(err, errlen)) return NULL;
    llm_embedder *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->p = *p;
    snprintf(e->name, sizeof e->name, "%s", p->name ? p->name : "embed");
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    strmap_init(&e->owners);
    struct llama_model_params mp = llama_model_default_params();
    e->model = llama_model_load_from_file(p->model_path, mp);
    if (!e->model) {
        snprintf(err, errlen, "cannot load embedding model %s: corrupt or unsupported GGUF", p->model_path);
        llm_embedder_free(e);
        return NULL;
    }
    e->vocab = llama_model_get_vocab(e->model);
    int rc = emb_context(e, LLAMA_POOLING_TYPE_UNSPECIFIED);
    if (!rc && llama_pooling_type(e->ctx) == LLAMA_POOLING_TYPE_NONE) {
        /* a generative model (the chat-model fallback): average its token states */
        llama_free(e->ctx);
        rc = emb_context(e, LLAMA_POOLING_TYPE_MEAN);
    }
    if (rc) {
        snprintf(err, errlen, "cannot create an embedding context for %s (batch %d, %d sequences)", p->model_path,
                 p->batch_tokens, p->max_seqs);
        llm_embedder_free(e);
        return NULL;
    }
    e->dim = llama_model_n_embd(e->model);
    int train = llama_model_n_ctx_train(e->model);
    e->max_text = train > 0 && train < p->batch_tokens ? train : p->batch_tokens; /* no positions past training */
    e->batch = llama_batch_init(p->batch_tokens, 0, 1);
    e->tok = malloc((size_t)p->batch_tokens * sizeof *e->tok);
    e->vec = malloc((size_t)e->dim * sizeof *e->vec);
    if (!e->tok || !e->vec || pthread_create(&e->thread, NULL, emb_main, e)) {
        snprintf(err, errlen, "out of memory starting the embedder");
        llm_embedder_free(e);
        return NULL;
    }
    e->running = true;
    log_info("embedder: %s, %d dimensions, pooling %d, batch %d tokens, texts up to %d tokens", p->model_path, e->dim,
             (int)llama_pooling_type(e->ctx), p->batch_tokens, e->max_text);
    return e;
}

void llm_embedder_stop(llm_embedder *e) {
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    e->stop = true; /* from here llm_embed_async refuses */
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    if (e->running) pthread_join(e->thread, NULL);
    e->running = false;
    pthread_mutex_lock(&e->mu);
    emb_job *j = NULL, **end = &j; /* the thread refused the text it had taken itself */
    for (emb_job *q; (q = emb_pop(e));) *end = q, end = &q->next;
    *end = NULL;
    pthread_mutex_unlock(&e->mu);
    for (emb_job *n; j; j = n) { /* queued work is refused, not embedded: a fast stop
                                  * (the stores re-embed what lacks a vector at start) */
        n = j->next;
        j->cb(j->ctx, AIOS_ERR_SHUTDOWN, NULL, 0);
        free(j->text);
        free(j);
    }
}

void llm_embedder_free(llm_embedder *e) {
    if (!e) return;
    llm_embedder_stop(e);
    if (e->batch.token) llama_batch_free(e->batch);
    if (e->ctx) llama_detach_threadpool(e->ctx);
    if (e->ctx) llama_free(e->ctx);
    lc_threadpool_free(e->tp);
    if (e->model) llama_model_free(e->model);
    free(e->tok);
    free(e->vec);
    strmap_free(&e->owners);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}

int llm_embedder_dim(const llm_embedder *e) { return e->dim; }
const char *llm_embedder_name(const llm_embedder *e) { return e->name; }

void llm_embedder_get_stats(llm_embedder *e, llm_embed_stats *out) {
    pthread_mutex_lock(&e->mu);
    *out = e->st;
    out->queued = e->queued;
    pthread_mutex_unlock(&e->mu);
}

/* ---- the owners' queues (e->mu held) ---- */

static void ring_unlink(llm_embedder *e, emb_owner *o) {
    if (o->next == o) e->ring = NULL;
    else {
        o->prev->next = o->next;
        o->next->prev = o->prev;
        if (e->ring == o) e->ring = o->next;
    }
    strmap_del(&e->owners, o->name);
    free(o);
}

/* The queue name of owner: NULL and "" share the anonymous queue "-". */
static const char *owner_key(const char *owner) { return owner && *owner ? owner : "-"; }

/* Appends j to its owner's queue (or puts it first: a query someone waits on goes ahead of
 * the owner's bulk texts), the owner joining the ring (just before the one served next,
 * i.e. last in this round) if it had nothing waiting. */
static int emb_push(llm_embedder *e, const char *owner, emb_job *j, bool first) {
    const char *name = owner_key(owner);
    emb_owner *o = strmap_get(&e->owners, name);
    if (o && o->queued >= e->p.max_queue_per_owner) return AIOS_ERR_BUSY;
    if (!o) {
        if (!(o = calloc(1, sizeof *o))) return AIOS_ERR_NOMEM;
        snprintf(o->name, sizeof o->name, "%s", name);
        if (strmap_put(&e->owners, o->name, o)) {
            free(o);
            return AIOS_ERR_NOMEM;
        }
        if (!e->ring) o->prev = o->next = e->ring = o;
        else {
            o->next = e->ring;
            o->prev = e->ring->prev;
            o->prev->next = o->next->prev = o;
        }
    }
    j->owner = o;
    j->next = first ? o->head : NULL;
    if (first) o->head = j;
    else if (o->tail) o->tail->next = j;
    else o->head = j;
    if (!o->tail || !first) o->tail = j;
    o->queued++;
    e->queued++;
    return AIOS_OK;
}

/* Takes the next text in round-robin order over the owners; NULL when nothing waits. */
static emb_job *emb_pop(llm_embedder *e) {
    emb_owner *o = e->ring;
    if (!o) return NULL;
    emb_job *j = o->head;
    o->head = j->next;
    if (!o->head) o->tail = NULL;
    o->queued--;
    e->queued--;
    j->owner = NULL;
    e->ring = o->next;
    if (!o->queued) ring_unlink(e, o);
    return j;
}

/* Takes j out of its owner's queue if it is still there (false: the engine has it). */
static bool emb_unqueue(llm_embedder *e, emb_job *j) {
    emb_owner *o = j->owner;
    if (!o) return false;
    emb_job **pp = &o->head, *prev = NULL;
    while (*pp && *pp != j) prev = *pp, pp = &(*pp)->next;
    if (!*pp) return false;
    *pp = j->next;
    if (o->tail == j) o->tail = prev;
    o->queued--;
    e->queued--;
    j->owner = NULL;
    if (!o->queued) ring_unlink(e, o);
    return true;
}

static int emb_submit(llm_embedder *e, const char *owner, const char *text, llm_embed_cb cb, void *ctx, emb_job **out,
                      bool first) {
    emb_job *j = calloc(1, sizeof *j);
    if (!j || !(j->text = strdup(text))) {
        free(j);
        return AIOS_ERR_NOMEM;
    }
    kern_utf8_sanitize(j->text); /* llama.cpp's tokenizer throws on invalid UTF-8 */
    j->cb = cb;
    j->ctx = ctx;
    pthread_mutex_lock(&e->mu);
    int rc = e->stop ? AIOS_ERR_SHUTDOWN : e->queued >= e->p.max_queue ? AIOS_ERR_BUSY : emb_push(e, owner, j, first);
    if (!rc) pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    if (rc) {
        free(j->text);
        free(j);
    } else if (out) {
        *out = j;
    }
    return rc;
}

int llm_embed_async(llm_embedder *e, const char *owner, const char *text, llm_embed_cb cb, void *ctx) {
    return emb_submit(e, owner, text, cb, ctx, NULL, false);
}

int llm_embed_backlog(llm_embedder *e, const char *owner) {
    pthread_mutex_lock(&e->mu);
    emb_owner *o = strmap_get(&e->owners, owner_key(owner));
    int n = o ? o->queued : 0;
    pthread_mutex_unlock(&e->mu);
    return n;
}

int llm_embed_admit(llm_embedder *e, const char *owner, char *err, size_t errlen) {
    int n = llm_embed_backlog(e, owner);
    if (n < e->p.max_queue_per_owner) return AIOS_OK;
    snprintf(err, errlen,
             "'%s' already has %d texts waiting to be embedded (storage.embed_agent_queue); retry "
             "once they are done",
             owner_key(owner), n);
    return AIOS_ERR_BUSY;
}

typedef struct ahead_ctx {
    const emb_owner *own;
    int k;
    long jobs;
} ahead_ctx;

static void count_ahead(const char *name, void *val, void *ctx) {
    (void)name;
    ahead_ctx *c = ctx;
    const emb_owner *o = val;
    if (o != c->own) c->jobs += o->queued < c->k ? o->queued : c->k; /* a turn each per round */
}

int llm_embed_admit_query(llm_embedder *e, const char *owner, int timeout_ms, char *err, size_t errlen) {
    if (timeout_ms <= 0) return AIOS_OK;
    pthread_mutex_lock(&e->mu);
    ahead_ctx c = {strmap_get(&e->owners, owner_key(owner)), 0, 0};
    c.k = c.own ? c.own->queued : 0;
    strmap_foreach(&e->owners, count_ahead, &c); /* before owner's last text: k turns of each other owner */
    c.jobs += c.k + 1;                           /* and its own texts, and the query */
    double wait_s = (double)c.jobs * e->text_s;  /* (0 until a batch was embedded: admitted) */
    pthread_mutex_unlock(&e->mu);
    if (wait_s * 1000.0 <= timeout_ms) return AIOS_OK;
    snprintf(err, errlen,
             "the embedder is about %.0f s behind (%ld texts ahead of this retrieval, %d of them '%s''s own) and "
             "storage.retrieve_timeout_ms is %d ms; retry later",
             wait_s, c.jobs, c.k, owner_key(owner), timeout_ms);
    return AIOS_ERR_BUSY;
}

/* ---- blocking form ---- */

typedef struct emb_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int rc, n_tokens, dim;
    float *out;
} emb_wait;

static void emb_wait_cb(void *ctx, int rc, const float *vec, int n_tokens) {
    emb_wait *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->rc = rc;
    w->n_tokens = n_tokens;
    if (!rc) memcpy(w->out, vec, (size_t)w->dim * sizeof *vec);
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Waits for w until deadline (CLOCK_REALTIME; 0 = none); false on timeout. */
static bool emb_wait_until(emb_wait *w, const struct timespec *deadline) {
    pthread_mutex_lock(&w->mu);
    int trc = 0;
    while (!w->done && trc != ETIMEDOUT)
        trc = deadline ? pthread_cond_timedwait(&w->cv, &w->mu, deadline) : pthread_cond_wait(&w->cv, &w->mu);
    bool done = w->done;
    pthread_mutex_unlock(&w->mu);
    return done;
}

int llm_embed(llm_embedder *e, const char *owner, const char *text, float *out, int *n_tokens, int timeout_ms) {
    emb_wait w = {.out = out, .dim = e->dim};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    emb_job *j = NULL;
    int rc = emb_submit(e, owner, text, emb_wait_cb, &w, &j, true);
    if (!rc) {
        struct timespec dl;
        kern_deadline(&dl, timeout_ms);
        if (!emb_wait_until(&w, timeout_ms > 0 ? &dl : NULL)) {
            pthread_mutex_lock(&e->mu);
            bool taken_back = emb_unqueue(e, j);
            pthread_mutex_unlock(&e->mu);
            if (taken_back) {
                free(j->text);
                free(j);
                w.done = true;
                w.rc = AIOS_ERR_DEADLINE;
            } else {
                emb_wait_until(&w, NULL); /* in the batch being embedded: done within one decode */
            }
        }
        rc = w.rc;
        if (n_tokens) *n_tokens = w.n_tokens;
    }
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return rc;
}

/* ---- the engine thread ---- */

typedef struct emb_slot {
    emb_job *job;
    int n_tokens;
    bool truncated;
} emb_slot;

/* Tokenizes j into e->tok (truncating to the batch); returns the token count (>= 1). */
static int emb_tokenize(llm_embedder *e, const char *text, bool *truncated) {
    int cap = e->max_text;
    int n = llama_tokenize(e->vocab, text, (int32_t)strlen(text), e->tok, cap, true, false);
    *truncated = n < 0;
    if (n < 0) { /* too long: tokenize in full once, keep the head */
        llama_token *all = malloc((size_t)-n * sizeof *all);
        if (all && llama_tokenize(e->vocab, text, (int32_t)strlen(text), all, -n, true, false) > 0)
            memcpy(e->tok, all, (size_t)cap * sizeof *all);
        free(all);
        n = cap;
    }
    if (n == 0) { /* nothing to embed (an empty text without special tokens): one BOS-like token */
        e->tok[0] = llama_vocab_bos(e->vocab) >= 0 ? llama_vocab_bos(e->vocab) : 0;
        n = 1;
    }
    return n;
}

/* Takes queued jobs into the batch until it is full; returns how many sequences. */
static int emb_fill(llm_embedder *e, emb_slot *slots, emb_job **carry) {
    int used = 0, ns = 0;
    e->batch.n_tokens = 0;
    while (ns < e->p.max_seqs) {
        emb_job *j = *carry;
        if (!j) {
            pthread_mutex_lock(&e->mu);
            j = emb_pop(e);
            pthread_mutex_unlock(&e->mu);
            if (!j) break;
        }
        bool trunc;
        int n = emb_tokenize(e, j->text, &trunc);
        if (used + n > e->p.batch_tokens) { /* does not fit: first of the next batch */
            *carry = j;
            break;
        }
        *carry = NULL;
        for (int i = 0; i < n; i++) {
            int k = e->batch.n_tokens++;
            e->batch.token[k] = e->tok[i];
            e->batch.pos[k] = i;
            e->batch.n_seq_id[k] = 1;
            e->batch.seq_id[k][0] = ns;
            e->batch.logits[k] = true;
        }
        slots[ns++] = (emb_slot){j, n, trunc};
        used += n;
    }
    return ns;
}

/* Embeds the batch filled since t_fill (monotonic). */
static void emb_run(llm_embedder *e, emb_slot *slots, int ns, double t_fill) {
    double t0 = kern_now_mono();
    llama_memory_clear(llama_get_memory(e->ctx), true);
    int drc = llama_decode(e->ctx, e->batch);
    double dt = kern_now_mono() - t0;
    int tokens = 0, truncated = 0;
    for (int s = 0; s < ns; s++) {
        const float *v = drc == 0 ? llama_get_embeddings_seq(e->ctx, s) : NULL;
        if (v) {
            memcpy(e->vec, v, (size_t)e->dim * sizeof *v);
            vec_normalize(e->vec, e->dim);
        }
        tokens += slots[s].n_tokens;
        truncated += slots[s].truncated;
        slots[s].job->cb(slots[s].job->ctx, v ? AIOS_OK : AIOS_ERR_MODEL, v ? e->vec : NULL, slots[s].n_tokens);
        free(slots[s].job->text);
        free(slots[s].job);
    }
    if (drc) log_error("embedder: llama_decode failed (%d) for %d texts", drc, ns);
    pthread_mutex_lock(&e->mu);
    e->st.texts += (unsigned long long)ns;
    e->st.tokens += (unsigned long long)tokens;
    e->st.truncated += (unsigned long long)truncated;
    e->st.batches++;
    e->st.failures += drc ? (unsigned long long)ns : 0;
    e->st.seconds += dt;
    double per = (kern_now_mono() - t_fill) / ns;
    e->text_s = e->text_s > 0 ? 0.8 * e->text_s + 0.2 * per : per;
    pthread_mutex_unlock(&e->mu);
}

/* Runs at storage.embed_nice: bulk embedding (memory adds, file writes) yields the CPU to
 * request handling and to the chat engine. The thread pool is made here so its workers
 * inherit the nice value (Linux keeps it per thread). */
static void emb_thread_setup(llm_embedder *e) {
    if (e->p.nice && setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), e->p.nice) != 0)
        log_warn("embedder: cannot set nice %d: %s", e->p.nice, strerror(errno));
    struct ggml_threadpool_params tpp = ggml_threadpool_params_default(llama_n_threads(e->ctx));
    tpp.poll = 0; /* as in the chat engine: idle workers must not spin on 2 cores */
    e->tp = lc_threadpool_new(&tpp);
    if (e->tp) llama_attach_threadpool(e->ctx, e->tp, e->tp);
}

static void *emb_main(void *arg) {
    llm_embedder *e = arg;
    emb_thread_setup(e);
    emb_slot *slots = calloc((size_t)e->p.max_seqs, sizeof *slots);
    emb_job *carry = NULL;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        while (!e->ring && !carry && !e->stop) pthread_cond_wait(&e->cv, &e->mu);
        bool stop = e->stop;
        pthread_mutex_unlock(&e->mu);
        if (stop || !slots) break; /* what is left is refused in llm_embedder_free */
        double t_fill = kern_now_mono();
        int ns = emb_fill(e, slots, &carry);
        if (ns) emb_run(e, slots, ns, t_fill);
    }
    if (carry) { /* refused with the rest (its own callback, now) */
        carry->cb(carry->ctx, AIOS_ERR_SHUTDOWN, NULL, 0);
        free(carry->text);
        free(carry);
    }
    free(slots);
    return NULL;
}
