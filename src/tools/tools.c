/*
 * tools.c - the tool table (manifests + MCP + built-ins, swapped whole under a lock and
 * reference counted, so a reload never pulls a definition from under a running call),
 * the manifest watcher (inotify on tools.dir), and dispatch with per-tool limits.
 *
 * Every call waits in the tool resource's run queue (sched/runq.c, pull mode), ordered by
 * scheduler.policy with its syscall's priority and agent like every other syscall; each
 * tool name has a limiter counting its running calls. A call starts on its own thread as
 * soon as it is the policy's first waiting call whose tool runs fewer than max_parallel
 * calls; a finishing thread goes on with the next such call (of any tool), and the tool
 * time it used is charged to its agent (the `fair` service). Threads only block in
 * poll/waitpid/condvars, so 100 slow tools cost no CPU.
 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>
#include "tools_internal.h"
#include "schema.h"

typedef struct tool_table {
    tool_def **defs;
    int n, cap;
} tool_table;

typedef struct call_job {
    syscall_t *sc; /* a reference */
    tool_batch *batch;
    tool_call *call;
    tool_def *def; /* a reference */
    void *handle;  /* its run-queue entry, once taken */
} call_job;

typedef struct limiter {
    int running, queued;
} limiter;

struct tool_manager {
    const aios_config *cfg;
    storage_manager *storage;
    tool_hooks hooks;
    sandbox *sandbox;
    mcp_server *mcp[AIOS_MAX_MCP];
    int n_mcp;

    pthread_mutex_t table_mu; /* guards table and errors */
    tool_table table;
    cJSON *errors; /* [{"file","error"}] of the last manifest load */

    pthread_mutex_t mu; /* limiters, counters; taken before the run queue's own lock */
    pthread_cond_t idle_cv;
    strmap limiters;
    runq_t *rq; /* waiting calls, in the policy's order */
    int pending, threads;
    tool_stats stats;
    atomic_bool stop;

    pthread_t watcher;
    bool watcher_running;
    int inotify_fd;
};

tool_manager_params tool_manager_default_params(void) { return (tool_manager_params){0}; }
storage_manager *tools_storage(tool_manager *tm) { return tm->storage; }
int tools_purge_agent(tool_manager *tm, const char *agent) { return sandbox_purge_agent(tm->sandbox, agent); }
runq_t *tools_runq(tool_manager *tm) { return tm->rq; }

/* ---------- definitions (tool_def_new / ref / unref live in manifest.c) ---------- */

int tool_defs_push(tool_def ***defs, int *n, int *cap, tool_def *d) {
    if (*n == *cap) {
        int nc = *cap ? *cap * 2 : 16;
        tool_def **nd = realloc(*defs, (size_t)nc * sizeof *nd);
        if (!nd) return AIOS_ERR_NOMEM;
        *defs = nd;
        *cap = nc;
    }
    (*defs)[(*n)++] = d;
    return AIOS_OK;
}

static void table_clear(tool_table *t) {
    for (int i = 0; i < t->n; i++) tool_def_unref(t->defs[i]);
    free(t->defs);
    *t = (tool_table){0};
}

/* By name; among equal names built-ins first, then MCP tools, then manifests (by file). */
static int def_cmp(const void *a, const void *b) {
    const tool_def *x = *(tool_def *const *)a, *y = *(tool_def *const *)b;
    static const int RANK[] = {[TOOL_KIND_BUILTIN] = 0, [TOOL_KIND_MCP] = 1, [TOOL_KIND_PROCESS] = 2};
    int c = strcmp(x->name, y->name);
    if (c) return c;
    bool xm = x->source[0] == '/', ym = y->source[0] == '/'; /* manifests after native definitions */
    if (xm != ym) return xm - ym;
    if (RANK[x->kind] != RANK[y->kind]) return RANK[x->kind] - RANK[y->kind];
    return strcmp(x->source, y->source);
}

static int name_cmp(const char *name, tool_def *const *d) { return strcmp(name, (*d)->name); }

/* With table_mu held: the definition named name, or NULL. */
static tool_def *table_find(tool_manager *tm, const char *name) {
    int lo = 0, hi = tm->table.n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = name_cmp(name, &tm->table.defs[mid]);
        if (!c) return tm->table.defs[mid];
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

static tool_def *lookup(tool_manager *tm, const char *name) {
    pthread_mutex_lock(&tm->table_mu);
    tool_def *d = table_find(tm, name);
    if (d) tool_def_ref(d);
    pthread_mutex_unlock(&tm->table_mu);
    return d;
}

static void add_error(cJSON *errors, const char *file, const char *msg) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "file", file);
    cJSON_AddStringToObject(e, "error", msg);
    kern_json_push(errors, e);
}

static int name_sort(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }

/* Manifests of tools.dir into t; errors (file and field) into errors. */
static void load_manifests(tool_manager *tm, tool_table *t, cJSON *errors) {
    const char *dir = tm->cfg->tools.dir;
    if (!dir[0]) return;
    struct dirent **ents = NULL;
    int n = scandir(dir, &ents, NULL, name_sort);
    if (n < 0) {
        char msg[AIOS_PATH_MAX + 64];
        snprintf(msg, sizeof msg, "tools.dir: cannot read %s: %s", dir, strerror(errno));
        add_error(errors, dir, msg);
        log_warn("tools: %s", msg);
        return;
    }
    for (int i = 0; i < n; i++) {
        const char *nm = ents[i]->d_name;
        size_t len = strlen(nm);
        if (len > 5 && !strcmp(nm + len - 5, ".json") && nm[0] != '.') {
            char path[AIOS_PATH_MAX * 2], err[512];
            snprintf(path, sizeof path, "%s/%s", dir, nm);
            tool_def *d = manifest_load(path, tm->cfg, err, sizeof err);
            if (!d || tool_defs_push(&t->defs, &t->n, &t->cap, d)) {
                log_warn("tools: %s; skipped", d ? "out of memory" : err);
                add_error(errors, path, d ? "out of memory" : err);
                tool_def_unref(d);
            }
        }
        free(ents[i]);
    }
    free(ents);
}

/* A manifest of kind builtin or mcp names the tool it exposes: take its runner (and its
 * schema when the manifest has none) from the built-in or MCP definitions in defs[0..n). */
static int link_manifest(tool_def *d, tool_def **defs, int n, cJSON *errors) {
    if (d->kind == TOOL_KIND_PROCESS) return AIOS_OK;
    const tool_def *src = NULL;
    for (int i = 0; i < n && !src; i++)
        if (defs[i]->kind == d->kind && !strcmp(defs[i]->name, d->remote)) src = defs[i];
    if (!src) {
        char msg[TOOL_NAME_MAX + 96];
        snprintf(msg, sizeof msg, "%s: no %s tool '%s' (yet); skipped", d->kind == TOOL_KIND_MCP ? "tool" : "builtin",
                 d->kind == TOOL_KIND_MCP ? "MCP" : "built-in", d->remote);
        log_warn("tools: %s: %s", d->source, msg);
        add_error(errors, d->source, msg);
        return AIOS_ERR_NOT_FOUND;
    }
    d->fn = src->fn;
    d->storage_op = src->storage_op;
    d->mcp = src->mcp;
    if (d->kind == TOOL_KIND_MCP) snprintf(d->remote, sizeof d->remote, "%s", src->remote);
    if (!d->schema && src->schema) d->schema = cJSON_Duplicate(src->schema, 1);
    return AIOS_OK;
}

/* Rebuilds the table from every source and swaps it in. Duplicate names: the first source
 * wins (built-ins, then MCP servers, then manifests in file-name order), the rest are
 * reported. */
static void rebuild(tool_manager *tm) {
    tool_table t = {0};
    cJSON *errors = cJSON_CreateArray();
    builtin_tools(tm->storage, &t.defs, &t.n, &t.cap);
    for (int i = 0; i < tm->n_mcp; i++) mcp_tools(tm->mcp[i], &t.defs, &t.n, &t.cap);
    tool_table mf = {0};
    load_manifests(tm, &mf, errors);
    int base = t.n;
    for (int i = 0; i < mf.n; i++) {
        if (link_manifest(mf.defs[i], t.defs, base, errors) || tool_defs_push(&t.defs, &t.n, &t.cap, mf.defs[i]))
            tool_def_unref(mf.defs[i]);
    }
    free(mf.defs);
    if (t.n) qsort(t.defs, (size_t)t.n, sizeof *t.defs, def_cmp);
    int w = 0;
    for (int i = 0; i < t.n; i++) {
        if (w && !strcmp(t.defs[w - 1]->name, t.defs[i]->name)) {
            char msg[TOOL_NAME_MAX + AIOS_PATH_MAX + 64];
            snprintf(msg, sizeof msg, "name: '%s' is already defined by %.1000s; skipped", t.defs[i]->name,
                     t.defs[w - 1]->source);
            log_warn("tools: %s: %s", t.defs[i]->source, msg);
            add_error(errors, t.defs[i]->source, msg);
            tool_def_unref(t.defs[i]);
            continue;
        }
        t.defs[w++] = t.defs[i];
    }
    t.n = w;
    pthread_mutex_lock(&tm->table_mu);
    tool_table old = tm->table;
    cJSON *old_err = tm->errors;
    tm->table = t;
    tm->errors = errors;
    pthread_mutex_unlock(&tm->table_mu);
    table_clear(&old);
    cJSON_Delete(old_err);
    pthread_mutex_lock(&tm->mu);
    tm->stats.reloads++;
    tm->stats.tools = t.n;
    pthread_mutex_unlock(&tm->mu);
    log_debug("tools: %d tools loaded", t.n);
}

static void mcp_changed(void *ctx) { rebuild(ctx); }

int tools_reload(tool_manager *tm, int *n_errors) {
    rebuild(tm);
    pthread_mutex_lock(&tm->table_mu);
    int n = tm->table.n;
    *n_errors = cJSON_GetArraySize(tm->errors);
    pthread_mutex_unlock(&tm->table_mu);
    return n;
}

/* Watches tools.dir; a burst of events reloads once, 100 ms after the last one. */
static void *watcher_main(void *arg) {
    tool_manager *tm = arg;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool dirty = false;
    while (!atomic_load(&tm->stop)) {
        struct pollfd pfd = {.fd = tm->inotify_fd, .events = POLLIN};
        int r = poll(&pfd, 1, dirty ? 100 : 250);
        if (r > 0) {
            while (read(tm->inotify_fd, buf, sizeof buf) > 0) {}
            dirty = true;
            continue;
        }
        if (r == 0 && dirty) {
            dirty = false;
            log_info("tools: %s changed; reloading manifests", tm->cfg->tools.dir);
            rebuild(tm);
        }
    }
    return NULL;
}

static void start_watcher(tool_manager *tm) {
    tm->inotify_fd = -1;
    if (!tm->cfg->tools.dir[0]) return;
    tm->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (tm->inotify_fd < 0 ||
        inotify_add_watch(tm->inotify_fd, tm->cfg->tools.dir,
                          IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE | IN_ATTRIB) < 0) {
        log_warn("tools: cannot watch %s (%s); manifests load at start only", tm->cfg->tools.dir, strerror(errno));
        return;
    }
    tm->watcher_running = pthread_create(&tm->watcher, NULL, watcher_main, tm) == 0;
}

tool_manager *tool_manager_new(const tool_manager_params *p, char *err, size_t errlen) {
    tool_manager *tm = calloc(1, sizeof *tm);
    if (!tm) return NULL;
    tm->cfg = p->cfg;
    tm->storage = p->storage;
    tm->hooks = p->hooks;
    pthread_mutex_init(&tm->table_mu, NULL);
    pthread_mutex_init(&tm->mu, NULL);
    pthread_cond_init(&tm->idle_cv, NULL);
    tm->inotify_fd = -1;
    runq_params rp = runq_default_params();
    rp.resource = "tool";
    rp.policy = p->cfg->scheduler.policy;
    rp.pull = true;
    rp.max_queue = p->cfg->tools.max_pending;
    rp.max_per_agent = p->cfg->max_jobs_per_agent;
    rp.fair_window_s = p->cfg->scheduler.fair_window_s;
    rp.max_agents = p->cfg->scheduler.max_agents;
    if (!(tm->rq = runq_new(&rp, err, errlen)) || !(tm->sandbox = sandbox_new(p->cfg, err, errlen))) {
        tool_manager_free(tm);
        return NULL;
    }
    rebuild(tm);
    for (int i = 0; i < p->cfg->tools.n_mcp; i++)
        if ((tm->mcp[tm->n_mcp] = mcp_start(&p->cfg->tools.mcp[i], p->cfg, mcp_changed, tm))) tm->n_mcp++;
    start_watcher(tm);
    return tm;
}

static void fail_queued(tool_manager *tm);
static void free_limiter_cb(const char *key, void *val, void *ctx);

void tool_manager_free(tool_manager *tm) {
    if (!tm) return;
    atomic_store(&tm->stop, true); /* running processes are killed at their next poll */
    if (tm->watcher_running) pthread_join(tm->watcher, NULL);
    if (tm->inotify_fd >= 0) close(tm->inotify_fd);
    pthread_mutex_lock(&tm->mu);
    if (tm->rq) fail_queued(tm);
    while (tm->threads) pthread_cond_wait(&tm->idle_cv, &tm->mu);
    pthread_mutex_unlock(&tm->mu);
    for (int i = 0; i < tm->n_mcp; i++) mcp_stop(tm->mcp[i]);
    tm->n_mcp = 0;
    sandbox_free(tm->sandbox);
    table_clear(&tm->table);
    cJSON_Delete(tm->errors);
    strmap_foreach(&tm->limiters, free_limiter_cb, NULL);
    strmap_free(&tm->limiters);
    runq_free(tm->rq);
    pthread_mutex_destroy(&tm->table_mu);
    pthread_mutex_destroy(&tm->mu);
    pthread_cond_destroy(&tm->idle_cv);
    free(tm);
}

/* ---------- queries ---------- */

bool tools_exists(tool_manager *tm, const char *name, bool *irreversible) {
    tool_def *d = lookup(tm, name);
    if (d && irreversible) *irreversible = d->irreversible;
    tool_def_unref(d);
    return d != NULL;
}

const char *tools_storage_op(tool_manager *tm, const char *name) {
    tool_def *d = lookup(tm, name);
    const char *op = d ? d->storage_op : NULL; /* a string constant of builtin.c */
    tool_def_unref(d);
    return op;
}

int tools_validate(tool_manager *tm, const char *name, const cJSON *params, char *err, size_t errlen) {
    tool_def *d = lookup(tm, name);
    if (!d) {
        snprintf(err, errlen, "unknown tool '%.*s' (GET /v1/tools lists them)", TOOL_NAME_MAX, name);
        return AIOS_ERR_NOT_FOUND;
    }
    int rc = AIOS_OK;
    if (params && !cJSON_IsObject(params)) {
        snprintf(err, errlen, "tool '%s': 'parameters' must be an object", name);
        rc = AIOS_ERR_INVALID;
    } else {
        char sub[448];
        cJSON *empty = params ? NULL : cJSON_CreateObject();
        rc = tool_schema_check(d->schema, params ? params : empty, sub, sizeof sub);
        cJSON_Delete(empty);
        if (rc) snprintf(err, errlen, "tool '%s': %s", name, sub);
    }
    tool_def_unref(d);
    return rc;
}

static cJSON *function_json(const tool_def *d) {
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "type", "function");
    cJSON *f = cJSON_AddObjectToObject(t, "function");
    cJSON_AddStringToObject(f, "name", d->name);
    cJSON_AddStringToObject(f, "description", d->description ? d->description : "");
    kern_json_add(f, "parameters", d->schema ? cJSON_Duplicate(d->schema, 1) : cJSON_CreateObject());
    return t;
}

cJSON *tools_function_json(tool_manager *tm, const char *name) {
    tool_def *d = lookup(tm, name);
    cJSON *t = d ? function_json(d) : NULL;
    tool_def_unref(d);
    return t;
}

static const char *const KIND_NAMES[] = {"process", "mcp", "builtin"};
static const char *const FS_NAMES[] = {"none", "ro", "workdir"};

cJSON *tools_list_json(tool_manager *tm) {
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "tools");
    pthread_mutex_lock(&tm->table_mu);
    for (int i = 0; i < tm->table.n; i++) {
        const tool_def *d = tm->table.defs[i];
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "name", d->name);
        cJSON_AddStringToObject(t, "description", d->description ? d->description : "");
        kern_json_add(t, "parameters", d->schema ? cJSON_Duplicate(d->schema, 1) : cJSON_CreateObject());
        cJSON_AddStringToObject(t, "kind", KIND_NAMES[d->kind]);
        cJSON_AddStringToObject(t, "version", d->version);
        cJSON_AddBoolToObject(t, "irreversible", d->irreversible);
        cJSON_AddNumberToObject(t, "timeout_ms", d->timeout_ms);
        cJSON_AddNumberToObject(t, "max_parallel", d->max_parallel);
        cJSON_AddStringToObject(t, "source", d->source);
        if (d->kind == TOOL_KIND_PROCESS) {
            cJSON *sb = cJSON_AddObjectToObject(t, "sandbox");
            cJSON_AddStringToObject(sb, "fs", FS_NAMES[d->fs]);
            cJSON_AddBoolToObject(sb, "network", d->network);
        }
        kern_json_push(arr, t);
    }
    kern_json_add(o, "errors", cJSON_Duplicate(tm->errors, 1));
    pthread_mutex_unlock(&tm->table_mu);
    pthread_mutex_lock(&tm->mu);
    for (cJSON *t = arr->child; t; t = t->next) {
        limiter *l = strmap_get(&tm->limiters, kern_json_str(t, "name"));
        cJSON_AddNumberToObject(t, "running", l ? l->running : 0);
        cJSON_AddNumberToObject(t, "queued", l ? l->queued : 0);
    }
    pthread_mutex_unlock(&tm->mu);
    return o;
}

void tools_get_stats(tool_manager *tm, tool_stats *out) {
    pthread_mutex_lock(&tm->mu);
    *out = tm->stats;
    out->mcp_restarts = 0;
    for (int i = 0; i < tm->n_mcp; i++) out->mcp_restarts += mcp_restarts(tm->mcp[i]);
    pthread_mutex_unlock(&tm->mu);
}

/* ---------- batches ---------- */

tool_batch *tool_batch_new(const char *agent, int n) {
    tool_batch *b = calloc(1, sizeof *b);
    if (!b || !(b->calls = calloc((size_t)(n ? n : 1), sizeof *b->calls))) {
        free(b);
        return NULL;
    }
    snprintf(b->agent, sizeof b->agent, "%s", agent);
    b->n = n;
    return b;
}

void tool_batch_free(void *p) {
    tool_batch *b = p;
    if (!b) return;
    for (int i = 0; i < b->n; i++) {
        cJSON_Delete(b->calls[i].params);
        free(b->calls[i].output);
    }
    free(b->calls);
    free(b);
}

/* ---------- running ---------- */

static void run_call(tool_manager *tm, call_job *j) {
#ifdef AIOS_TORTURE
    syscall_torture_take(j->sc); /* (the first call of a batch takes the request's countdown) */
#endif
    tool_call *c = j->call;
    tool_def *d = j->def;
    strbuf out;
    sb_init(&out, (size_t)tm->cfg->tools.max_output_bytes + 128);
    char *params = c->params ? cJSON_PrintUnformatted(c->params) : strdup("{}");
    tool_run run = {.tm = tm,
                    .agent = j->batch->agent,
                    .params = params ? params : "{}",
                    .params_json = c->params,
                    .cancel = &j->sc->cancel,
                    .stop = &tm->stop,
                    .max_output = tm->cfg->tools.max_output_bytes,
                    .out = &out,
                    .out_json = &c->output_json,
                    .truncated = &c->truncated,
                    .err = c->err,
                    .errlen = sizeof c->err};
    double t0 = kern_now_mono();
    int rc = AIOS_OK;
    if (atomic_load(&j->sc->cancel) || atomic_load(&tm->stop)) rc = AIOS_ERR_CANCELLED;
    else if (d->irreversible && tm->hooks.approve)
        rc = tm->hooks.approve(tm->hooks.ctx, j->batch->agent, d->name, run.params, &j->sc->cancel, c->err, sizeof c->err);
    if (!rc) {
        int timeout = d->timeout_ms;
        rc = d->kind == TOOL_KIND_BUILTIN ? d->fn(&run)
            : d->kind == TOOL_KIND_MCP    ? mcp_call(d->mcp, d, &run, timeout)
                                          : sandbox_run(tm->sandbox, d, &run, timeout);
    }
    c->seconds = kern_now_mono() - t0;
    c->rc = rc;
    if (rc && !c->err[0]) snprintf(c->err, sizeof c->err, "%s", aios_strerror(rc));
    c->output = sb_steal(&out);
    if (tm->hooks.ran) tm->hooks.ran(tm->hooks.ctx, j->batch->agent, d->name, run.params, rc, c->seconds * 1000);
    free(params);
    pthread_mutex_lock(&tm->mu);
    tm->stats.calls++;
    tm->stats.failed += rc != AIOS_OK;
    tm->stats.timeouts += rc == AIOS_ERR_TIMEOUT;
    tm->stats.truncated += c->truncated;
    pthread_mutex_unlock(&tm->mu);
#ifdef AIOS_TORTURE
    syscall_torture_return(j->sc);
#endif
}

/* One call of sc's batch is over: the batch completes with its last call. */
static void call_over(tool_manager *tm, syscall_t *sc, tool_batch *b) {
    if (atomic_fetch_sub(&b->remaining, 1) == 1) {
        syscall_round_end(sc);
        syscall_complete(sc, AIOS_OK, NULL);
    }
    pthread_mutex_lock(&tm->mu);
    tm->pending--;
    pthread_mutex_unlock(&tm->mu);
}

static void finish_job(tool_manager *tm, call_job *j) {
    call_over(tm, j->sc, j->batch);
    tool_def_unref(j->def);
    syscall_unref(j->sc);
    free(j);
}

static void fail_job(tool_manager *tm, call_job *j, int rc, const char *msg) {
    j->call->rc = rc;
    snprintf(j->call->err, sizeof j->call->err, "%s", msg);
    finish_job(tm, j);
}

/* With tm->mu held, at shutdown: queued calls fail at once. */
static void fail_queued(tool_manager *tm) {
    runq_job rj;
    void *h;
    while ((h = runq_take(tm->rq, NULL, NULL, &rj))) {
        call_job *j = rj.arg;
        limiter *l = strmap_get(&tm->limiters, j->def->name);
        if (l) l->queued--;
        tm->stats.queued--;
        runq_done(tm->rq, h, 0);
        pthread_mutex_unlock(&tm->mu);
        fail_job(tm, j, AIOS_ERR_SHUTDOWN, "the kernel is shutting down");
        pthread_mutex_lock(&tm->mu);
    }
}

/* tm->mu held (under the run queue's lock): whether the call's tool has a free slot. */
static bool job_fits(const runq_job *rj, void *ctx) {
    tool_manager *tm = ctx;
    const call_job *j = rj->arg;
    const limiter *l = strmap_get(&tm->limiters, j->def->name);
    return !l || l->running < j->def->max_parallel;
}

/* tm->mu held: the policy's first waiting call whose tool has a free slot, now counted as
 * running; NULL when none fits (or the kernel stops). */
static call_job *take_job(tool_manager *tm) {
    runq_job rj;
    void *h = atomic_load(&tm->stop) ? NULL : runq_take(tm->rq, job_fits, tm, &rj);
    if (!h) return NULL;
    call_job *j = rj.arg;
    j->handle = h;
    limiter *l = strmap_get(&tm->limiters, j->def->name);
    l->queued--;
    l->running++;
    tm->stats.queued--;
    tm->stats.running++;
    return j;
}

/* tm->mu held: j's run is over after dt seconds: its slot is free, its agent charged. */
static void slot_release(tool_manager *tm, call_job *j, double dt) {
    limiter *l = strmap_get(&tm->limiters, j->def->name);
    l->running--;
    tm->stats.running--;
    runq_done(tm->rq, j->handle, dt);
}

typedef struct thread_arg {
    tool_manager *tm;
    call_job *job;
} thread_arg;

/* Runs a job, then the policy's next call that fits, until none is left. */
static void *call_thread(void *arg) {
    thread_arg *ta = arg;
    tool_manager *tm = ta->tm;
    call_job *j = ta->job;
    free(ta);
    while (j) {
        double t0 = kern_now_mono();
        run_call(tm, j);
        double dt = kern_now_mono() - t0;
        pthread_mutex_lock(&tm->mu);
        slot_release(tm, j, dt);
        pthread_mutex_unlock(&tm->mu);
        finish_job(tm, j);
        pthread_mutex_lock(&tm->mu);
        if (!(j = take_job(tm))) {
            tm->threads--;
            pthread_cond_broadcast(&tm->idle_cv);
        }
        pthread_mutex_unlock(&tm->mu);
    }
    return NULL;
}

static void free_limiter_cb(const char *key, void *val, void *ctx) {
    (void)key;
    (void)ctx;
    free(val);
}

/* With tm->mu held: starts a thread for j (taken). */
static int start_thread(tool_manager *tm, call_job *j) {
    thread_arg *ta = malloc(sizeof *ta);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_t th;
    int rc = ta ? AIOS_OK : AIOS_ERR_NOMEM;
    if (ta) *ta = (thread_arg){tm, j};
    if (!rc && pthread_create(&th, &attr, call_thread, ta)) {
        free(ta);
        rc = AIOS_ERR_BUSY;
    }
    pthread_attr_destroy(&attr);
    if (!rc) tm->threads++;
    return rc;
}

/* Starts a thread for every waiting call that fits now. A call whose thread cannot start
 * fails (its slot given back). */
static void pump(tool_manager *tm) {
    pthread_mutex_lock(&tm->mu);
    for (call_job *j; (j = take_job(tm));) {
        int rc = start_thread(tm, j);
        if (!rc) continue;
        slot_release(tm, j, 0);
        pthread_mutex_unlock(&tm->mu);
        fail_job(tm, j, rc, "cannot start a thread for the tool call");
        pthread_mutex_lock(&tm->mu);
    }
    pthread_mutex_unlock(&tm->mu);
}

/* With tm->mu held: queues j in the run queue (its tool's limiter counts it). */
static int enqueue(tool_manager *tm, call_job *j, char *err, size_t errlen) {
    limiter *l = strmap_get(&tm->limiters, j->def->name);
    if (!l) {
        if (!(l = calloc(1, sizeof *l)) || strmap_put(&tm->limiters, j->def->name, l)) {
            free(l);
            snprintf(err, errlen, "out of memory");
            return AIOS_ERR_NOMEM;
        }
    }
    runq_job rj = {.arg = j, .agent = j->batch->agent, .priority = j->sc->priority};
    int rc = runq_submit(tm->rq, &rj, err, errlen);
    if (rc) return rc;
    l->queued++;
    tm->stats.queued++;
    return AIOS_OK;
}

int tools_submit(tool_manager *tm, syscall_t *sc) {
    tool_batch *b = sc->args;
    pthread_mutex_lock(&tm->mu);
    bool full = tm->pending + b->n > tm->cfg->tools.max_pending || atomic_load(&tm->stop);
    if (full) tm->stats.rejected++;
    else tm->pending += b->n;
    pthread_mutex_unlock(&tm->mu);
    if (full) return atomic_load(&tm->stop) ? AIOS_ERR_SHUTDOWN : AIOS_ERR_BUSY;
    atomic_store(&b->remaining, b->n);
    syscall_round_begin(sc);
    for (int i = 0; i < b->n; i++) {
        call_job *j = calloc(1, sizeof *j);
        tool_def *d = j ? lookup(tm, b->calls[i].name) : NULL;
        if (!d) { /* no memory, or the tool vanished since validation (a reload) */
            b->calls[i].rc = j ? AIOS_ERR_NOT_FOUND : AIOS_ERR_NOMEM;
            snprintf(b->calls[i].err, sizeof b->calls[i].err, "%s", j ? "the tool was removed" : "out of memory");
            free(j);
            call_over(tm, sc, b);
            continue;
        }
        *j = (call_job){.sc = syscall_ref(sc), .batch = b, .call = &b->calls[i], .def = d};
        char err[256] = "";
        pthread_mutex_lock(&tm->mu);
        int rc = enqueue(tm, j, err, sizeof err);
        pthread_mutex_unlock(&tm->mu);
        if (rc) fail_job(tm, j, rc, err);
    }
    pump(tm);
    return AIOS_OK;
}

int tools_check_params(const cJSON *schema, const cJSON *value, char *err, size_t errlen) {
    return tool_schema_check(schema, value, err, errlen);
}
