/*
 * routes_mem.c - the memory and storage syscalls of POST /query (AIOS / Cerebrum shapes)
 * and OpenAI-compatible POST /v1/embeddings (whose job also serves the Ollama door's /api/embed).
 *
 * Each request is checked on the HTTP thread (operation, parameter types), then becomes a
 * syscall queued on its resource's run queue (memory, which also runs /v1/embeddings, or
 * storage: sched/runq.c), ordered by scheduler.policy with the request's priority and agent
 * like LLM work, and run by that resource's workers (a database commit or an embedding must
 * not stall the event loop); its answer is built when the syscall completes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "api_internal.h"

/* ---------- shared job shape ---------- */

/* A door's answer made of an embedding job's OpenAI list (takes the list). */
typedef cJSON *(*embed_shape_fn)(api_req *r, cJSON *list);

typedef struct mem_job {
    mem_manager *mem;
    storage_manager *storage;
    llm_embedder *emb;
    char agent[AIOS_NAME_MAX];
    char op[40];
    cJSON *params;        /* owned copy of query_data.params (or the embeddings body) */
    cJSON *response;      /* built by the work function */
    bool bare;            /* answer with response itself (OpenAI), not the AIOS envelope */
    embed_shape_fn shape; /* bare: what the door makes of response; NULL = response itself */
} mem_job;

static void mem_job_free(void *p) {
    mem_job *j = p;
    if (!j) return;
    cJSON_Delete(j->params);
    cJSON_Delete(j->response);
    free(j);
}

/* Answers a finished job: the AIOS envelope around its response, or the bare response. */
static enum MHD_Result job_done(api_req *r) {
    syscall_t *sc = r->sc;
    if (sc->result) return api_reply_error(r, sc->result, "%s", sc->errmsg);
    mem_job *j = sc->args;
    cJSON *resp = j->response;
    j->response = NULL;
    if (!j->bare) return api_reply_json(r, 200, api_envelope(sc, resp));
    return api_reply_json(r, 200, j->shape ? j->shape(r, resp) : resp);
}

/* {"owner": AGENT} acts in another agent's namespace. The plan claims it (api_plan_mem): a
 * rule of the caller's group (memory:AGENT / storage:AGENT with the action) lets it act
 * there as that agent. Without one the gate refuses memory (403), and storage falls back
 * to the owner's shares (read-only). */
static void cross_namespace(api_req *r, mem_job *j) {
    const api_claim *c = r->adm.n ? &r->adm.claims[0] : NULL;
    if (!c || !c->resource || !strcmp(c->resource, r->agent) || !c->granted) return;
    snprintf(j->agent, sizeof j->agent, "%s", c->resource);
    cJSON_DeleteItemFromObjectCaseSensitive(j->params, "owner");
}

static enum MHD_Result start_job(api_req *r, syscall_kind kind, const char *op, const cJSON *params, api_work_fn fn, bool bare,
                                 embed_shape_fn shape) {
    mem_job *j = calloc(1, sizeof *j);
    if (!j) return api_reply_error(r, AIOS_ERR_NOMEM, NULL);
    j->mem = api_mem(r);
    j->storage = api_storage(r);
    j->emb = api_embedder(r);
    snprintf(j->agent, sizeof j->agent, "%s", r->agent);
    snprintf(j->op, sizeof j->op, "%s", op);
    j->bare = bare;
    j->shape = shape;
    j->params = params ? cJSON_Duplicate(params, true) : cJSON_CreateObject();
    if (j->params && !bare) cross_namespace(r, j);
    if (!j->params) {
        mem_job_free(j);
        return api_reply_error(r, AIOS_ERR_NOMEM, NULL);
    }
    syscall_t *sc = syscall_new(kind, r->agent, j, mem_job_free, 0); /* (on failure it has freed j) */
    if (!sc) return api_reply_error(r, AIOS_ERR_NOMEM, NULL);
    sc->priority = r->priority >= 0 ? r->priority : config_agent_priority(api_cfg(r), r->agent);
    return api_run_job(r, sc, fn, job_done);
}

/* ---------- memory ---------- */

static const char *const MEM_OPS[] = {"add_memory",    "add_agentic_memory", "get_memory",          "update_memory",
                                      "remove_memory", "retrieve_memory",    "retrieve_memory_raw", NULL};

static cJSON *mem_response(void) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "response_class", "memory");
    return o;
}

static void mem_finish(cJSON *o, const char *id, const char *content, cJSON *metadata) {
    if (id) cJSON_AddStringToObject(o, "memory_id", id);
    else cJSON_AddNullToObject(o, "memory_id");
    if (content) cJSON_AddStringToObject(o, "content", content);
    else cJSON_AddNullToObject(o, "content");
    kern_json_add(o, "metadata", metadata ? metadata : cJSON_CreateNull());
    if (!cJSON_GetObjectItemCaseSensitive(o, "search_results")) cJSON_AddArrayToObject(o, "search_results");
    cJSON_AddBoolToObject(o, "success", true);
    cJSON_AddNullToObject(o, "error");
    cJSON_AddNumberToObject(o, "status_code", 200);
}

static void iso_time(double t, char *out, size_t n) {
    time_t s = (time_t)t;
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* memory_id as the SDK may send it: a string or a number. */
static const char *param_id(const cJSON *params, char *buf, size_t n) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(params, "memory_id");
    if (cJSON_IsString(v)) return v->valuestring;
    if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 1e18) {
        snprintf(buf, n, "%.0f", v->valuedouble);
        return buf;
    }
    return NULL;
}

static cJSON *item_json(const mem_item *it) {
    cJSON *e = cJSON_CreateObject();
    cJSON *md = cJSON_Parse(it->metadata ? it->metadata : "{}");
    if (!md) md = cJSON_CreateObject();
    char ts[32];
    iso_time(it->created, ts, sizeof ts);
    cJSON_AddStringToObject(e, "memory_id", it->id);
    cJSON_AddStringToObject(e, "content", it->content ? it->content : "");
    const char *keys[] = {"keywords", "tags"};
    for (int i = 0; i < 2; i++) { /* A-MEM fields the Cerebrum SDK reads, taken from the metadata */
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(md, keys[i]);
        kern_json_add(e, keys[i], cJSON_IsArray(v) ? cJSON_Duplicate(v, true) : cJSON_CreateArray());
    }
    const cJSON *cat = cJSON_GetObjectItemCaseSensitive(md, "category");
    kern_json_add(e, "category", cJSON_IsString(cat) ? cJSON_CreateString(cat->valuestring) : cJSON_CreateNull());
    cJSON_AddStringToObject(e, "timestamp", ts);
    cJSON_AddNumberToObject(e, "score", (double)it->score);
    kern_json_add(e, "metadata", md);
    return e;
}

/* retrieve_memory_raw: the vector store's own shape (ids, documents, metadatas, distances). */
static cJSON *raw_json(const mem_item *items, int n) {
    cJSON *raw = cJSON_CreateObject();
    cJSON *ids = cJSON_CreateArray(), *docs = cJSON_CreateArray(), *mds = cJSON_CreateArray(), *dist = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        kern_json_push(ids, cJSON_CreateString(items[i].id));
        kern_json_push(docs, cJSON_CreateString(items[i].content ? items[i].content : ""));
        cJSON *md = cJSON_Parse(items[i].metadata ? items[i].metadata : "{}");
        kern_json_push(mds, md ? md : cJSON_CreateObject());
        kern_json_push(dist, cJSON_CreateNumber(1.0 - (double)items[i].score));
    }
    const char *names[] = {"ids", "documents", "metadatas", "distances"};
    cJSON *lists[] = {ids, docs, mds, dist};
    for (int i = 0; i < 4; i++) {
        cJSON *outer = cJSON_CreateArray();
        kern_json_push(outer, lists[i]);
        kern_json_add(raw, names[i], outer);
    }
    return raw;
}

static int mem_work_retrieve(mem_job *j, cJSON *o, char *err, size_t errlen) {
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(j->params, "content");
    if (!cJSON_IsString(q)) q = cJSON_GetObjectItemCaseSensitive(j->params, "query");
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(j->params, "k");
    bool exact = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j->params, "exact"));
    mem_item *items;
    int n;
    int rc = mem_retrieve(j->mem, j->agent, q->valuestring, cJSON_IsNumber(k) ? (int)k->valuedouble : 5, exact, &items, &n, err,
                          errlen);
    if (rc) return rc;
    cJSON *arr = cJSON_AddArrayToObject(o, "search_results");
    for (int i = 0; i < n; i++) kern_json_push(arr, item_json(&items[i]));
    if (!strcmp(j->op, "retrieve_memory_raw")) kern_json_add(o, "raw", raw_json(items, n));
    mem_items_free(items, n);
    mem_finish(o, NULL, NULL, NULL);
    return AIOS_OK;
}

static int mem_work(void *args, char *err, size_t errlen) {
    mem_job *j = args;
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(j->params, "content");
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(j->params, "metadata");
    char *mdtxt = cJSON_IsObject(md) ? cJSON_PrintUnformatted(md) : NULL;
    char idbuf[32], id[MEM_ID_MAX];
    const char *mid = param_id(j->params, idbuf, sizeof idbuf);
    cJSON *o = mem_response();
    int rc;
    if (!strncmp(j->op, "add_", 4)) {
        rc = mem_add(j->mem, j->agent, content->valuestring, mdtxt, id, err, errlen);
        if (!rc) mem_finish(o, id, content->valuestring, md ? cJSON_Duplicate(md, true) : cJSON_CreateObject());
    } else if (!strcmp(j->op, "get_memory")) {
        mem_item it = {0};
        rc = mem_get(j->mem, j->agent, mid, &it, err, errlen);
        if (!rc) {
            cJSON *e = item_json(&it);
            cJSON_AddNumberToObject(o, "created", it.created);
            cJSON_AddNumberToObject(o, "updated", it.updated);
            mem_finish(o, it.id, it.content, cJSON_DetachItemFromObject(e, "metadata"));
            cJSON_Delete(e);
            mem_item_clear(&it);
        }
    } else if (!strcmp(j->op, "update_memory")) {
        rc = mem_update(j->mem, j->agent, mid, cJSON_IsString(content) ? content->valuestring : NULL, mdtxt, err, errlen);
        if (!rc) mem_finish(o, mid, cJSON_IsString(content) ? content->valuestring : NULL, md ? cJSON_Duplicate(md, true) : NULL);
    } else if (!strcmp(j->op, "remove_memory")) {
        rc = mem_remove(j->mem, j->agent, mid, err, errlen);
        if (!rc) mem_finish(o, mid, NULL, NULL);
    } else {
        rc = mem_work_retrieve(j, o, err, errlen);
    }
    free(mdtxt);
    if (rc) cJSON_Delete(o);
    else j->response = o;
    return rc;
}

/* Synchronous checks of a memory query's params (400s before anything is queued). */
static int mem_check(const char *op, const cJSON *params, char *err, size_t errlen) {
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(params, "content");
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(params, "metadata");
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(params, "k");
    char buf[32];
    if (md && !cJSON_IsNull(md) && !cJSON_IsObject(md))
        return snprintf(err, errlen, "'metadata' must be an object"), AIOS_ERR_INVALID;
    if (!strncmp(op, "add_", 4) && !cJSON_IsString(content))
        return snprintf(err, errlen, "%s needs 'content' (a string)", op), AIOS_ERR_INVALID;
    if (!strncmp(op, "retrieve", 8)) {
        const cJSON *q = cJSON_IsString(content) ? content : cJSON_GetObjectItemCaseSensitive(params, "query");
        if (!cJSON_IsString(q)) return snprintf(err, errlen, "%s needs 'content' (the query, a string)", op), AIOS_ERR_INVALID;
        if (k && !cJSON_IsNull(k) &&
            (!cJSON_IsNumber(k) || fabs(k->valuedouble) > 1e9 || k->valuedouble != floor(k->valuedouble)))
            return snprintf(err, errlen, "'k' must be an integer"), AIOS_ERR_INVALID;
        return AIOS_OK;
    }
    if (!strncmp(op, "add_", 4)) return AIOS_OK;
    if (!param_id(params, buf, sizeof buf)) return snprintf(err, errlen, "%s needs 'memory_id' (a string)", op), AIOS_ERR_INVALID;
    if (!strcmp(op, "update_memory")) {
        if (content && !cJSON_IsNull(content) && !cJSON_IsString(content))
            return snprintf(err, errlen, "'content' must be a string or null"), AIOS_ERR_INVALID;
        if (!cJSON_IsString(content) && !cJSON_IsObject(md))
            return snprintf(err, errlen, "update_memory needs 'content' or 'metadata'"), AIOS_ERR_INVALID;
    }
    return AIOS_OK;
}

/* query_data: {"operation_type": OP, "params": {...}} -- shared by memory and storage. */
static int op_and_params(const cJSON *qd, const char **op, const cJSON **params, char *err, size_t errlen) {
    int rc = jp_string(qd, "operation_type", true, op, err, errlen);
    if (rc) return rc;
    *params = cJSON_GetObjectItemCaseSensitive(qd, "params");
    if (*params && cJSON_IsNull(*params)) *params = NULL;
    if (*params && !cJSON_IsObject(*params)) {
        snprintf(err, errlen, "'params' must be an object");
        return AIOS_ERR_INVALID;
    }
    return AIOS_OK;
}

int api_plan_mem(api_req *r, syscall_kind kind, const cJSON *qd, api_admission *a, char *err, size_t errlen) {
    (void)r;
    const char *op;
    const cJSON *params;
    int rc = op_and_params(qd, &op, &params, err, errlen);
    if (rc) return rc;
    const cJSON *owner = cJSON_GetObjectItemCaseSensitive(params, "owner");
    const char *ns = cJSON_IsString(owner) && strlen(owner->valuestring) < AIOS_NAME_MAX ? owner->valuestring : NULL;
    access_kind ak = kind == SYSCALL_KIND_MEMORY ? ACCESS_KIND_MEMORY : ACCESS_KIND_STORAGE;
    return api_claim_add(a, ak, ns, api_storage_action(op), NULL, kind == SYSCALL_KIND_STORAGE && ns);
}

enum MHD_Result api_query_memory(api_req *r, const cJSON *qd) {
    char err[512] = "";
    const char *op;
    const cJSON *params;
    int rc = op_and_params(qd, &op, &params, err, sizeof err);
    if (rc) return api_reply_error(r, rc, "%s", err);
    int i = 0;
    while (MEM_OPS[i] && strcmp(MEM_OPS[i], op)) i++;
    if (!MEM_OPS[i])
        return api_reply_error(
            r, AIOS_ERR_INVALID,
            "unknown memory operation_type '%.40s' (allowed: add_memory, add_agentic_memory, get_memory, update_memory, remove_memory, retrieve_memory, retrieve_memory_raw)",
            op);
    if (!api_mem(r)) return api_reply_error(r, AIOS_ERR_NOT_IMPLEMENTED, "the memory manager is not running");
    if ((rc = mem_check(op, params, err, sizeof err))) return api_reply_error(r, rc, "%s", err);
    return start_job(r, SYSCALL_KIND_MEMORY, op, params, mem_work, false, NULL);
}

/* ---------- storage ---------- */

static int storage_work(void *args, char *err, size_t errlen) {
    mem_job *j = args;
    char *msg = NULL;
    int rc = storage_call(j->storage, j->agent, j->op, j->params, &msg, err, errlen);
    if (rc) return rc;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "response_class", "storage");
    cJSON_AddStringToObject(o, "response_message", msg);
    cJSON_AddBoolToObject(o, "finished", true);
    cJSON_AddNullToObject(o, "error");
    cJSON_AddNumberToObject(o, "status_code", 200);
    free(msg);
    j->response = o;
    return AIOS_OK;
}

enum MHD_Result api_query_storage(api_req *r, const cJSON *qd) {
    char err[512] = "";
    const char *op;
    const cJSON *params;
    int rc = op_and_params(qd, &op, &params, err, sizeof err);
    if (rc) return api_reply_error(r, rc, "%s", err);
    if (!api_storage(r)) return api_reply_error(r, AIOS_ERR_NOT_IMPLEMENTED, "the storage manager is not running");
    return start_job(r, SYSCALL_KIND_STORAGE, op, params, storage_work, false, NULL);
}

/* ---------- POST /v1/embeddings ---------- */

typedef struct emb_wait_all {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int left, rc, tokens, dim;
    float *out; /* n * dim */
} emb_wait_all;

typedef struct emb_slot_ref {
    emb_wait_all *w;
    int index;
} emb_slot_ref;

static void emb_one_cb(void *ctx, int rc, const float *vec, int n_tokens) {
    emb_slot_ref *s = ctx;
    emb_wait_all *w = s->w;
    pthread_mutex_lock(&w->mu);
    if (rc && !w->rc) w->rc = rc;
    if (!rc) memcpy(w->out + (size_t)s->index * (size_t)w->dim, vec, (size_t)w->dim * sizeof *vec);
    w->tokens += n_tokens;
    if (--w->left == 0) pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *base64(const unsigned char *p, size_t n) {
    char *o = malloc((n + 2) / 3 * 4 + 1), *q = o;
    if (!o) return NULL;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        *q++ = B64[v >> 18 & 63];
        *q++ = B64[v >> 12 & 63];
        *q++ = i + 1 < n ? B64[v >> 6 & 63] : '=';
        *q++ = i + 2 < n ? B64[v & 63] : '=';
    }
    *q = 0;
    return o;
}

static int embeddings_work(void *args, char *err, size_t errlen) {
    mem_job *j = args;
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(j->params, "input");
    int n = cJSON_IsString(input) ? 1 : cJSON_GetArraySize(input), dim = llm_embedder_dim(j->emb);
    bool b64 = !strcmp(j->op, "base64");
    emb_wait_all w = {.left = n, .dim = dim, .out = malloc((size_t)n * (size_t)dim * sizeof(float))};
    emb_slot_ref *slots = calloc((size_t)n, sizeof *slots);
    if (!w.out || !slots) {
        free(w.out);
        free(slots);
        return AIOS_ERR_NOMEM;
    }
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    const cJSON *e = cJSON_IsString(input) ? input : input->child;
    for (int i = 0; i < n; i++, e = e->next) {
        slots[i] = (emb_slot_ref){&w, i};
        int rc = llm_embed_async(j->emb, j->agent, e->valuestring, emb_one_cb, &slots[i]);
        if (rc) { /* never queued: count it done here */
            pthread_mutex_lock(&w.mu);
            if (!w.rc) w.rc = rc;
            w.left--;
            pthread_mutex_unlock(&w.mu);
        }
    }
    pthread_mutex_lock(&w.mu);
    while (w.left) pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    int rc = w.rc;
    if (!rc) {
        cJSON *o = cJSON_CreateObject(), *data = cJSON_CreateArray();
        cJSON_AddStringToObject(o, "object", "list");
        kern_json_add(o, "data", data);
        for (int i = 0; i < n; i++) {
            cJSON *d = cJSON_CreateObject();
            cJSON_AddStringToObject(d, "object", "embedding");
            cJSON_AddNumberToObject(d, "index", i);
            const float *v = w.out + (size_t)i * (size_t)dim;
            if (b64) {
                char *s = base64((const unsigned char *)v, (size_t)dim * sizeof *v);
                kern_json_add(d, "embedding", s ? cJSON_CreateString(s) : cJSON_CreateNull());
                free(s);
            } else {
                cJSON *arr = cJSON_AddArrayToObject(d, "embedding");
                for (int k = 0; k < dim; k++) kern_json_push(arr, cJSON_CreateNumber((double)v[k]));
            }
            kern_json_push(data, d);
        }
        cJSON_AddStringToObject(o, "model", llm_embedder_name(j->emb));
        cJSON *u = cJSON_AddObjectToObject(o, "usage");
        cJSON_AddNumberToObject(u, "prompt_tokens", w.tokens);
        cJSON_AddNumberToObject(u, "total_tokens", w.tokens);
        j->response = o;
    } else {
        snprintf(err, errlen, rc == AIOS_ERR_BUSY ? "the embedding queue is full; retry later" : "embedding failed: %s",
                 aios_strerror(rc));
    }
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    free(w.out);
    free(slots);
    return rc;
}

#define EMB_MAX_INPUTS 2048

/* The embedding model: an LLM claim, run on the memory resource's queue. */
static int plan_embeddings(api_req *r, const cJSON *body, api_admission *a, char *err, size_t errlen) {
    (void)body, (void)err, (void)errlen;
    llm_embedder *e = api_embedder(r);
    a->kind = SYSCALL_KIND_MEMORY;
    return e ? api_claim_add(a, ACCESS_KIND_LLM, llm_embedder_name(e), ACCESS_USE, NULL, false) : AIOS_OK;
}

static enum MHD_Result h_embeddings(api_req *r, cJSON *body) {
    llm_embedder *e = api_embedder(r);
    if (!e) return api_reply_error(r, AIOS_ERR_NOT_IMPLEMENTED, "no embedding model is loaded");
    const char *model = NULL, *fmt = "float";
    char err[256] = "";
    int rc = jp_string(body, "model", false, &model, err, sizeof err);
    if (!rc) rc = jp_string(body, "encoding_format", false, &fmt, err, sizeof err);
    if (rc) return api_reply_error(r, rc, "%s", err);
    if (model && strcmp(model, llm_embedder_name(e)) && strcmp(model, "default"))
        return api_reply_error(r, AIOS_ERR_NOT_FOUND, "embedding model '%.80s' does not exist (this kernel embeds with '%s')",
                               model, llm_embedder_name(e));
    if (strcmp(fmt, "float") && strcmp(fmt, "base64"))
        return api_reply_error(r, AIOS_ERR_INVALID, "'encoding_format' must be \"float\" or \"base64\"");
    const cJSON *dims = cJSON_GetObjectItemCaseSensitive(body, "dimensions");
    if (dims && !cJSON_IsNull(dims) && (!cJSON_IsNumber(dims) || dims->valuedouble != llm_embedder_dim(e)))
        return api_reply_error(r, AIOS_ERR_INVALID, "'dimensions' must be %d for '%s'", llm_embedder_dim(e),
                               llm_embedder_name(e));
    return api_embed(r, cJSON_GetObjectItemCaseSensitive(body, "input"), fmt, NULL);
}

/* The one way into an embedding job (/v1/embeddings, the Ollama door's /api/embed): input is
 * checked here, embedded on the memory resource's run queue in fmt ("float" | "base64"), and
 * answered with the OpenAI list, or what shape (NULL: none) makes of it. */
enum MHD_Result api_embed(api_req *r, const cJSON *input, const char *fmt, cJSON *(*shape)(api_req *r, cJSON *list)) {
    bool ok = cJSON_IsString(input) || (cJSON_IsArray(input) && input->child);
    for (const cJSON *x = cJSON_IsArray(input) ? input->child : NULL; x && ok; x = x->next) ok = cJSON_IsString(x);
    if (!ok)
        return api_reply_error(r, AIOS_ERR_INVALID,
                               "'input' must be a string or a non-empty list of strings (token arrays are not supported)");
    if (cJSON_GetArraySize(input) > EMB_MAX_INPUTS)
        return api_reply_error(r, AIOS_ERR_INVALID, "'input' has more than %d items", EMB_MAX_INPUTS);
    cJSON *params = cJSON_CreateObject(); /* {"input": a reference}; start_job copies it */
    cJSON *ref =
        cJSON_IsArray(input) ? cJSON_CreateArrayReference(input->child) : cJSON_CreateStringReference(input->valuestring);
    if (!params || !ref) {
        cJSON_Delete(params);
        cJSON_Delete(ref);
        return api_reply_error(r, AIOS_ERR_NOMEM, NULL);
    }
    cJSON_AddItemToObjectCS(params, "input", ref); /* (a constant key: cannot fail) */
    enum MHD_Result ret = start_job(r, SYSCALL_KIND_MEMORY, fmt, params, embeddings_work, true, shape);
    cJSON_Delete(params);
    return ret;
}

/* ---------- /metrics: memory, storage and embedding series (no model label) ---------- */

typedef struct mem_snapshot {
    mem_stats m;
    storage_stats s;
    llm_embed_stats e;
} mem_snapshot;

typedef struct mem_metric {
    const char *name, *type, *help;
    double (*get)(const mem_snapshot *x);
} mem_metric;

#define MM(part, field) \
    static double mm_##part##_##field(const mem_snapshot *x) { return (double)x->part.field; }
MM(m, adds)
MM(m, gets)
MM(m, updates)
MM(m, removes)
MM(m, retrievals)
MM(m, hits)
MM(m, page_ins)
MM(m, evictions)
MM(m, resident_bytes)
MM(m, items)
MM(m, resident_items)
MM(m, agents)
MM(m, pending)
MM(m, embed_failures)
MM(s, writes)
MM(s, reads)
MM(s, deletes)
MM(s, rollbacks)
MM(s, retrievals)
MM(s, shares)
MM(s, files)
MM(s, bytes)
MM(s, pending)
MM(e, texts)
MM(e, tokens)
MM(e, truncated)
MM(e, batches)
MM(e, failures)
MM(e, seconds)
MM(e, queued)

static const mem_metric MEM_METRICS[] = {
    {"aios_memory_adds_total", "counter", "Memory blocks added.", mm_m_adds},
    {"aios_memory_gets_total", "counter", "Memory blocks read (get_memory).", mm_m_gets},
    {"aios_memory_updates_total", "counter", "Memory blocks updated.", mm_m_updates},
    {"aios_memory_removes_total", "counter", "Memory blocks removed.", mm_m_removes},
    {"aios_memory_retrievals_total", "counter", "Memory retrievals (retrieve_memory, retrieve_memory_raw).", mm_m_retrievals},
    {"aios_memory_hits_total", "counter", "Accesses to a block resident in RAM.", mm_m_hits},
    {"aios_memory_page_ins_total", "counter", "Evicted blocks read back from the store on access.", mm_m_page_ins},
    {"aios_memory_evictions_total", "counter", "Blocks evicted from RAM by LRU-K (memory.limit_bytes).", mm_m_evictions},
    {"aios_memory_resident_bytes", "gauge", "Content + metadata bytes resident in RAM, all agents.", mm_m_resident_bytes},
    {"aios_memory_items", "gauge", "Memory blocks, resident or evicted, of agents loaded since start.", mm_m_items},
    {"aios_memory_resident_items", "gauge", "Memory blocks resident in RAM.", mm_m_resident_items},
    {"aios_memory_agents", "gauge", "Agents with a memory space loaded.", mm_m_agents},
    {"aios_memory_pending_embeddings", "gauge", "Memory blocks waiting for their embedding.", mm_m_pending},
    {"aios_memory_embed_failures_total", "counter", "Memory blocks whose embedding failed.", mm_m_embed_failures},
    {"aios_storage_writes_total", "counter", "Storage writes (new versions), create_file included.", mm_s_writes},
    {"aios_storage_reads_total", "counter", "Storage reads.", mm_s_reads},
    {"aios_storage_deletes_total", "counter", "Storage deletes.", mm_s_deletes},
    {"aios_storage_rollbacks_total", "counter", "Storage rollbacks.", mm_s_rollbacks},
    {"aios_storage_retrievals_total", "counter", "Storage retrievals.", mm_s_retrievals},
    {"aios_storage_shares_total", "counter", "Storage shares granted.", mm_s_shares},
    {"aios_storage_files", "gauge", "Files and directories of agents loaded since start.", mm_s_files},
    {"aios_storage_bytes", "gauge", "Bytes of all kept versions of agents loaded since start.", mm_s_bytes},
    {"aios_storage_pending_embeddings", "gauge", "Files waiting for their embedding.", mm_s_pending},
    {"aios_embed_texts_total", "counter", "Texts embedded.", mm_e_texts},
    {"aios_embed_tokens_total", "counter", "Tokens embedded.", mm_e_tokens},
    {"aios_embed_truncated_total", "counter", "Texts cut to storage.embed_batch_tokens for their embedding.", mm_e_truncated},
    {"aios_embed_batches_total", "counter", "Embedding batches (llama_decode calls).", mm_e_batches},
    {"aios_embed_failures_total", "counter", "Texts whose embedding failed.", mm_e_failures},
    {"aios_embed_seconds_total", "counter", "Seconds spent embedding.", mm_e_seconds},
    {"aios_embed_queue_length", "gauge", "Texts waiting for the embedder.", mm_e_queued},
};

static void metrics_runq(api_req *r, strbuf *b);

void api_metrics_mem(api_req *r, strbuf *b) {
    mem_snapshot x = {0};
    if (api_mem(r)) mem_get_stats(api_mem(r), &x.m);
    if (api_storage(r)) storage_get_stats(api_storage(r), &x.s);
    if (api_embedder(r)) llm_embedder_get_stats(api_embedder(r), &x.e);
    for (size_t k = 0; k < sizeof MEM_METRICS / sizeof MEM_METRICS[0]; k++)
        api_metric_unlabelled(b, MEM_METRICS[k].name, MEM_METRICS[k].type, MEM_METRICS[k].help, MEM_METRICS[k].get(&x));
    metrics_runq(r, b);
}

/* ---------- run queues: /metrics series and the /status rows ---------- */

static const syscall_kind RUNQ_KINDS[] = {SYSCALL_KIND_MEMORY, SYSCALL_KIND_STORAGE, SYSCALL_KIND_TOOL};
#define N_RUNQ_KINDS (sizeof RUNQ_KINDS / sizeof RUNQ_KINDS[0])

typedef struct runq_metric {
    const char *name, *type, *help;
    double (*get)(const runq_stats *x);
} runq_metric;

#define RQ(field) \
    static double rq_##field(const runq_stats *x) { return (double)x->field; }
RQ(workers)
RQ(queued)
RQ(running)
RQ(agents_waiting)
RQ(submitted)
RQ(completed)
RQ(rejected_full)
RQ(rejected_agent)
RQ(busy_seconds)

static const runq_metric RUNQ_METRICS[] = {
    {"aios_runq_workers", "gauge", "Worker threads of the resource's run queue (kernel.workers).", rq_workers},
    {"aios_runq_queued", "gauge", "Operations waiting in the resource's run queue.", rq_queued},
    {"aios_runq_running", "gauge", "Operations being run by the resource's workers.", rq_running},
    {"aios_runq_agents_waiting", "gauge", "Agents with operations waiting in the run queue.", rq_agents_waiting},
    {"aios_runq_submitted_total", "counter", "Operations queued.", rq_submitted},
    {"aios_runq_completed_total", "counter", "Operations run to their end.", rq_completed},
    {"aios_runq_rejected_full_total", "counter", "Operations refused (503): the run queue was full (kernel.max_jobs).",
     rq_rejected_full},
    {"aios_runq_rejected_agent_total", "counter", "Operations refused (503): their agent had kernel.max_jobs_per_agent waiting.",
     rq_rejected_agent},
    {"aios_runq_busy_seconds_total", "counter", "Operation time of the completed operations.", rq_busy_seconds},
};

static void label_escaped(strbuf *b, const char *v) {
    for (const char *c = v; *c; c++)
        sb_printf(b, "%s", *c == '"' ? "\\\"" : *c == '\\' ? "\\\\" : *c == '\n' ? "\\n" : (char[2]){*c, 0});
}

typedef struct runq_agent_lines {
    strbuf *b;
    const runq_stats *x;
    int which; /* 0 ops, 1 service total, 2 service window */
} runq_agent_lines;

static void runq_agent_line(const char *agent, size_t queued, unsigned long long ops, double total, double window, void *ud) {
    (void)queued;
    runq_agent_lines *al = ud;
    static const char *const NAMES[] = {"aios_runq_agent_ops_total", "aios_runq_agent_service_seconds_total",
                                        "aios_runq_agent_service_window_seconds"};
    sb_printf(al->b, "%s{resource=\"%s\",policy=\"%s\",agent=\"", NAMES[al->which], al->x->resource, al->x->policy);
    label_escaped(al->b, agent);
    sb_printf(al->b, "\"} %.17g\n", al->which == 0 ? (double)ops : al->which == 1 ? total : window);
}

static void metrics_runq(api_req *r, strbuf *b) {
    runq_stats x[N_RUNQ_KINDS];
    runq_t *q[N_RUNQ_KINDS];
    for (size_t i = 0; i < N_RUNQ_KINDS; i++)
        if ((q[i] = api_runq(r, RUNQ_KINDS[i]))) runq_get_stats(q[i], &x[i]);
    for (size_t k = 0; k < sizeof RUNQ_METRICS / sizeof RUNQ_METRICS[0]; k++) {
        const runq_metric *m = &RUNQ_METRICS[k];
        sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name, m->type);
        for (size_t i = 0; i < N_RUNQ_KINDS; i++)
            if (q[i])
                sb_printf(b, "%s{resource=\"%s\",policy=\"%s\"} %.17g\n", m->name, x[i].resource, x[i].policy, m->get(&x[i]));
    }
    static const char *const HEADS[] = {
        "# HELP aios_runq_agent_ops_total Operations run per agent and resource.\n# TYPE aios_runq_agent_ops_total counter\n",
        "# HELP aios_runq_agent_service_seconds_total Operation time per agent and resource.\n# TYPE aios_runq_agent_service_seconds_total counter\n",
        "# HELP aios_runq_agent_service_window_seconds Operation time per agent and resource in the current fair-share window.\n# TYPE aios_runq_agent_service_window_seconds gauge\n",
    };
    for (int w = 0; w < 3; w++) {
        sb_puts(b, HEADS[w]);
        for (size_t i = 0; i < N_RUNQ_KINDS; i++) {
            runq_agent_lines al = {b, &x[i], w};
            if (q[i]) runq_foreach_agent(q[i], runq_agent_line, &al);
        }
    }
}

void api_status_runq(api_req *r, cJSON *status) {
    cJSON *arr = cJSON_AddArrayToObject(status, "run_queues");
    for (size_t i = 0; i < N_RUNQ_KINDS; i++) {
        runq_t *q = api_runq(r, RUNQ_KINDS[i]);
        if (!q) continue;
        runq_stats x;
        runq_get_stats(q, &x);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "resource", x.resource);
        cJSON_AddStringToObject(o, "policy", x.policy);
        for (size_t k = 0; k < sizeof RUNQ_METRICS / sizeof RUNQ_METRICS[0]; k++) {
            const char *key = RUNQ_METRICS[k].name + strlen("aios_runq_");
            size_t n = strlen(key);
            char name[48];
            snprintf(name, sizeof name, "%.*s", (int)(n > 6 && !strcmp(key + n - 6, "_total") ? n - 6 : n), key);
            cJSON_AddNumberToObject(o, name, RUNQ_METRICS[k].get(&x));
        }
        kern_json_push(arr, o);
    }
}

const api_route api_routes_mem[] = {
    {"POST", "/v1/embeddings", h_embeddings, true, API_GATE_SYSCALL, plan_embeddings, API_DOOR_OPENAI},
    {NULL, NULL, NULL, false, API_GATE_ADMIN, NULL, API_DOOR_AIOS},
};
