/*
 * boot.c - the kernel's life (kernel_main; aiosd's main() is src/kernel/main.c, and the
 * whole-kernel fuzz harness runs it in a thread of its own): parse configuration (defaults < YAML < AIOS_* env < flags), load the LLM
 * cores, the embedder and the memory and storage managers, start the HTTP server, and run
 * until SIGINT/SIGTERM. Shutdown order matters: stop admitting work, stop the cores (every
 * syscall completes, resuming its connection), stop the embedder (queued texts are refused;
 * their callbacks still reach the managers), drain the run queues, then stop the HTTP
 * daemon and the managers.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "aios/version.h"
#include "../api/api.h"
#include "../llm/llm.h"
#include "../memory/memory.h"
#include "../storage/storage.h"
#include "kernel.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: aiosd [--config FILE] [--host H] [--port P] [--model PATH] [--data-dir DIR]\n"
            "             [--set section.key=value]... [--print-config-doc] [--check-config] [--self-test] [--version]\n"
            "Configuration layers: built-in defaults < YAML file < AIOS_* environment < flags.\n"
            "Keys and defaults: docs/config.md (or --print-config-doc).\n"
            "--self-test: one real decode of the first model on this host's CPU, then exit (0 = ok).\n");
}

static int parse_flags(int argc, char **argv, aios_config *cfg, bool *check_only, bool *self_test);

/* SIGHUP: reads the configuration again (file, environment and flags, as at start) and
 * applies what can change while serving: the log level, access rules and groups, budgets,
 * tool manifests. The rest takes effect at the next start; the log says which. A
 * configuration that no longer validates changes nothing. */
static void reload(int argc, char **argv, aios_config *cfg, access_manager *access, tool_manager *tools) {
    aios_config *next = malloc(sizeof *next);
    if (!next) return;
    config_defaults(next);
    bool check = false, self = false;
    if (parse_flags(argc, argv, next, &check, &self)) {
        log_error("SIGHUP: the configuration does not load now (above); nothing changed");
        free(next);
        return;
    }
    log_level lvl;
    if (strcmp(next->log_level, cfg->log_level) && log_parse_level(next->log_level, &lvl) == 0) {
        log_set_level(lvl);
        log_warn("SIGHUP: kernel.log_level %s -> %s", cfg->log_level, next->log_level);
        snprintf(cfg->log_level, sizeof cfg->log_level, "%s", next->log_level);
    } else {
        log_warn("SIGHUP: kernel.log_level unchanged (%s)", cfg->log_level);
    }
    char err[512];
    if (access_reload(access, next, err, sizeof err)) { /* rules, groups, agents' groups, budgets */
        log_error("SIGHUP: access rules and budgets not reloaded: %s", err);
        free(next);
    } else {
        log_warn("SIGHUP: access rules (%d groups), agents' groups and budgets (%d) reloaded", next->access.n_groups,
                 next->n_budgets);
    } /* (next is the access manager's now) */
    int bad = 0, n = tools ? tools_reload(tools, &bad) : 0;
    if (tools) log_warn("SIGHUP: tool manifests reloaded: %d tools, %d refused (GET /v1/tools lists why)", n, bad);
    log_warn("SIGHUP: everything else (models, the server, the scheduler, stores) changes at the next start "
             "(models: POST /models/load and /models/unload)");
}

/* aiosd --version: the kernel's release and revision, the llama.cpp build and the CPU
 * variant ggml runs here. */
static void print_version(void) {
    char eng[1600];
    log_set_level(LOG_LEVEL_WARN); /* the engine's start line is what is printed */
    llm_engine_version(eng, sizeof eng);
    printf("aiosd %s (git %s)\n%s\n", AIOS_VERSION, AIOS_GIT_REV, eng);
}

static int die(const char *what) {
    fprintf(stderr, "aiosd: error: %s\n", what);
    return 1;
}

static const char *env_get(const char *name) { return getenv(name); }

static long memory_limit_for(void *ud, const char *agent) { return config_agent_memory_limit(ud, agent); }

/* The embedder, the memory and storage managers and their run queues (all or nothing). */
typedef struct managers {
    llm_embedder *emb;
    mem_manager *mem;
    storage_manager *storage;
    runq_t *runq[SYSCALL_KIND__COUNT]; /* run queues of memory and storage; NULL for the other kinds */
    access_manager *access;
    tool_manager *tools;
} managers;

static int hook_approve(void *ctx, const char *agent, const char *tool, const char *params, const atomic_bool *cancel, char *err,
                        size_t errlen) {
    return access_await_approval(ctx, agent, tool, params, cancel, err, errlen);
}

static void hook_ran(void *ctx, const char *agent, const char *tool, const char *params, int rc, double ms) {
    char res[TOOL_NAME_MAX + 8];
    snprintf(res, sizeof res, "tool:%s", tool);
    access_audit(ctx, agent, res, "run", "allow", params, aios_errcode(rc), ms);
}

/* enforce mode with no admin identity yet: one is made and its token written (0600) to
 * <data_dir>/admin.token, for the CLI (AIOS_TOKEN) and the operator. */
static int bootstrap_admin(const aios_config *cfg, access_manager *am, char *err, size_t errlen) {
    if (strcmp(cfg->access.mode, "enforce") || access_group_has_member(am, cfg->access.admin_group)) return AIOS_OK;
    char token[80], path[AIOS_PATH_MAX + 16];
    int rc = access_identity_create(am, "admin", cfg->access.admin_group, false, token, sizeof token, err, errlen);
    if (rc) return rc;
    snprintf(path, sizeof path, "%s/admin.token", cfg->data_dir);
    FILE *f = fopen(path, "w");
    if (!f || fprintf(f, "%s\n", token) < 0) {
        if (f) fclose(f);
        snprintf(err, errlen, "cannot write %.400s", path);
        return AIOS_ERR_IO;
    }
    fclose(f);
    chmod(path, 0600);
    log_info("access: created identity 'admin' (group %s); its token is in %s", cfg->access.admin_group, path);
    return AIOS_OK;
}

/* A revoked name got a new identity: it starts with no memory, files, shares or tool workdirs. */
static void reset_agent(void *ctx, const char *name) {
    managers *m = ctx;
    int rc = mem_purge(m->mem, name), src = storage_purge(m->storage, name),
        trc = m->tools ? tools_purge_agent(m->tools, name) : 0;
    if (rc || src || trc)
        log_warn("access: the data of revoked agent '%s' was not all deleted (memory: %s, storage: %s, tools: %s)", name,
                 aios_strerror(rc), aios_strerror(src), aios_strerror(trc));
    else
        log_info(
            "access: new identity '%s' starts empty: the revoked identity's memory, files, shares and tool workdirs are deleted",
            name);
}

static int access_tools_open(const aios_config *cfg, managers *m, char *err, size_t errlen) {
    char db[AIOS_PATH_MAX + 32], audit[AIOS_PATH_MAX + 32];
    snprintf(db, sizeof db, "%s/access.db", cfg->data_dir);
    if (cfg->access.audit_file[0]) snprintf(audit, sizeof audit, "%s", cfg->access.audit_file);
    else snprintf(audit, sizeof audit, "%s/audit.log", cfg->data_dir);
    access_params ap = access_default_params();
    ap.cfg = cfg;
    ap.db_path = db;
    ap.audit_path = audit;
    ap.reset_agent = reset_agent;
    ap.reset_ctx = m;
    if (!(m->access = access_open(&ap, err, errlen))) return AIOS_ERR_CONFIG;
    int rc = bootstrap_admin(cfg, m->access, err, errlen);
    if (rc) return rc;
    tool_manager_params tp = tool_manager_default_params();
    tp.cfg = cfg;
    tp.storage = m->storage;
    tp.hooks = (tool_hooks){.ctx = m->access, .approve = hook_approve, .ran = hook_ran};
    if (!(m->tools = tool_manager_new(&tp, err, errlen))) return AIOS_ERR_CONFIG;
    return AIOS_OK;
}

/* One run queue, with its own kernel.workers threads, per worker resource: memory (which
 * also runs /v1/embeddings) and storage; ordered by scheduler.policy like the LLM queues. */
static int runqs_open(const aios_config *cfg, managers *m, char *err, size_t errlen) {
    static const syscall_kind KINDS[] = {SYSCALL_KIND_MEMORY, SYSCALL_KIND_STORAGE};
    for (size_t i = 0; i < sizeof KINDS / sizeof KINDS[0]; i++) {
        runq_params p = runq_default_params();
        p.resource = syscall_kind_get(KINDS[i])->name;
        p.policy = cfg->scheduler.policy;
        p.workers = cfg->workers;
        p.max_queue = cfg->max_jobs;
        p.max_per_agent = cfg->max_jobs_per_agent;
        p.fair_window_s = cfg->scheduler.fair_window_s;
        p.max_agents = cfg->scheduler.max_agents;
        if (!(m->runq[KINDS[i]] = runq_new(&p, err, errlen))) return AIOS_ERR_NOMEM;
    }
    return AIOS_OK;
}

static int managers_open(const aios_config *cfg, managers *m, char *err, size_t errlen) {
    char path[AIOS_PATH_MAX], name[AIOS_NAME_MAX], db[AIOS_PATH_MAX + 32];
    config_embedding_model(cfg, path, sizeof path);
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    snprintf(name, sizeof name, "%.*s", (int)(strstr(base, ".gguf") ? strstr(base, ".gguf") - base : (long)strlen(base)), base);
    llm_embed_params ep = llm_embed_default_params();
    ep.model_path = path;
    ep.name = name;
    ep.threads = cfg->storage.embed_threads;
    ep.batch_tokens = cfg->storage.embed_batch_tokens;
    ep.max_queue = cfg->storage.embed_queue;
    ep.max_queue_per_owner = cfg->storage.embed_agent_queue;
    ep.nice = cfg->storage.embed_nice;
    if (!(m->emb = llm_embedder_new(&ep, err, errlen))) return AIOS_ERR_MODEL;
    vec_index_params ip = vec_index_default_params(0);
    ip.m = cfg->storage.hnsw_m;
    ip.ef_search = cfg->storage.hnsw_ef_search;
    ip.exact_below = cfg->storage.exact_below;
    bool full = strcmp(cfg->storage.synchronous, "full") == 0;
    mem_params mp = mem_default_params();
    snprintf(db, sizeof db, "%s/memory.db", cfg->data_dir);
    mp.db_path = db;
    mp.sync_full = full;
    mp.limit_bytes = cfg->memory.limit_bytes;
    mp.limit_for = memory_limit_for;
    mp.limit_ud = (void *)cfg;
    mp.eviction_k = cfg->memory.eviction_k;
    mp.max_item_bytes = cfg->memory.max_item_bytes;
    mp.max_items = cfg->memory.max_items;
    mp.max_agents = cfg->memory.max_agents;
    mp.max_k = cfg->storage.max_k;
    mp.embedder = m->emb;
    mp.index = ip;
    mp.retrieve_timeout_ms = cfg->storage.retrieve_timeout_ms;
    if (!(m->mem = mem_open(&mp, err, errlen))) return AIOS_ERR_IO;
    storage_params sp = storage_default_params();
    snprintf(db, sizeof db, "%s/storage.db", cfg->data_dir);
    sp.db_path = db;
    sp.sync_full = full;
    sp.max_versions = cfg->storage.max_versions;
    sp.max_file_bytes = cfg->storage.max_file_bytes;
    sp.quota_bytes = cfg->storage.quota_bytes;
    sp.max_files = cfg->storage.max_files;
    sp.max_path = cfg->storage.max_path_bytes;
    sp.max_k = cfg->storage.max_k;
    sp.embedder = m->emb;
    sp.index = ip;
    sp.retrieve_timeout_ms = cfg->storage.retrieve_timeout_ms;
    if (!(m->storage = storage_open(&sp, err, errlen))) return AIOS_ERR_IO;
    int rc = runqs_open(cfg, m, err, errlen);
    if (rc) return rc;
    return access_tools_open(cfg, m, err, errlen);
}

/* Applies flags; returns -1 to exit 0 (help / doc), 1 on error, 0 to run. */
static int parse_flags(int argc, char **argv, aios_config *cfg, bool *check_only, bool *self_test) {
    char err[512];
    const char *file = NULL;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--config") && i + 1 < argc) file = argv[++i];
    if (!file) file = getenv("AIOS_CONFIG");
    if (file && config_load_file(cfg, file, err, sizeof err)) return die(err);
    if (config_load_env(cfg, env_get, err, sizeof err)) return die(err);
    static const char *const FLAGS[][2] = {{"--host", "server.host"},
                                           {"--port", "server.port"},
                                           {"--model", "llms.model"},
                                           {"--data-dir", "kernel.data_dir"},
                                           {"--log-level", "kernel.log_level"}};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--config")) {
            i++;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return -1;
        }
        if (!strcmp(a, "--print-config-doc")) {
            config_write_reference("-");
            return -1;
        }
        if (!strcmp(a, "--check-config")) {
            *check_only = true;
            continue;
        }
        if (!strcmp(a, "--version")) {
            print_version();
            return -1;
        }
        if (!strcmp(a, "--self-test")) {
            *self_test = true;
            continue;
        }
        bool known = false;
        for (size_t k = 0; k < sizeof FLAGS / sizeof FLAGS[0]; k++) {
            if (strcmp(a, FLAGS[k][0])) continue;
            known = true;
            if (i + 1 >= argc) {
                snprintf(err, sizeof err, "%s needs a value", a);
                return die(err);
            }
            if (config_set(cfg, FLAGS[k][1], argv[++i], err, sizeof err)) return die(err);
        }
        if (known) continue;
        if (!strcmp(a, "--set") && i + 1 < argc) {
            char kv[1200];
            snprintf(kv, sizeof kv, "%s", argv[++i]);
            char *eq = strchr(kv, '=');
            if (!eq) return die("--set needs section.key=value");
            *eq = 0;
            if (config_set(cfg, kv, eq + 1, err, sizeof err)) return die(err);
            continue;
        }
        usage(stderr);
        snprintf(err, sizeof err, "unknown argument '%s'", a);
        return die(err);
    }
    if (config_validate(cfg, err, sizeof err)) return die(err);
    return 0;
}

static int run_self_test(const aios_config *cfg) {
    char out[1200], err[700];
    if (llm_self_test(cfg->llms.models[0].path, 8, out, sizeof out, err, sizeof err)) {
        fprintf(stderr, "aiosd: self-test failed: %s\n", err);
        return 1;
    }
    printf("self-test: ok: %s\n", out);
    return 0;
}

static void data_dir_default(aios_config *cfg) {
    if (cfg->data_dir[0]) return;
    const char *cache = getenv("AIOS_CACHE"), *home = getenv("HOME");
    if (cache && *cache) snprintf(cfg->data_dir, sizeof cfg->data_dir, "%s/data", cache);
    else snprintf(cfg->data_dir, sizeof cfg->data_dir, "%s/.cache/aios/data", home ? home : ".");
}

/* The core of cfg's model i, with the kernel's scheduler and context settings; lazy: it
 * loads on its own thread (a model added at run time). */
static llm_core *open_core(const aios_config *cfg, int i, ctx_store *store, bool lazy, char *err, size_t errlen) {
    llm_core_params p = {
        .model = &cfg->llms.models[i], .sched = sched_default_params(), .context = llm_default_context_params(), .lazy = lazy};
    p.sched.policy = cfg->scheduler.policy;
    p.sched.max_active = cfg->scheduler.max_active;
    p.sched.max_queue = cfg->scheduler.max_queue;
    p.sched.time_slice = cfg->scheduler.time_slice;
    p.sched.fair_window_s = cfg->scheduler.fair_window_s;
    p.sched.max_agents = cfg->scheduler.max_agents;
    p.sched.agent_hot_s = cfg->scheduler.agent_hot_ms / 1000.0;
    p.sched.starve_factor = cfg->scheduler.starve_factor;
    p.context.text_mode = strcmp(cfg->context.mode, "text") == 0;
    p.context.cache_entries = cfg->context.cache_entries;
    p.context.snapshot_entries = cfg->context.snapshot_entries;
    p.context.prefix_min_tokens = cfg->context.prefix_min_tokens;
    p.context.verify_prefix = cfg->context.verify_prefix != 0;
    p.context.park = cfg->context.park != 0;
    p.context.compact_min_cells = cfg->context.compact_min_cells;
    p.context.deterministic = cfg->scheduler.deterministic != 0;
    p.context.cold_ms = cfg->context.cold_ms;
    p.context.store = store;
    return llm_core_open(&p, err, errlen);
}

/* POST /models/load with a new model entry: validated into the config, its core opened
 * (loading on its own thread) into cores[index]; the index, or an error. Serialized. */
typedef struct model_adder {
    aios_config *cfg;
    llm_core **cores;
    ctx_store *store;
    pthread_mutex_t mu;
} model_adder;

static int add_model(void *ctx, const char *const *keys, const char *const *values, int n, char *err, size_t errlen) {
    model_adder *a = ctx;
    pthread_mutex_lock(&a->mu);
    int i = config_model_add(a->cfg, keys, values, n, err, errlen);
    if (i >= 0 && !(a->cores[i] = open_core(a->cfg, i, a->store, true, err, errlen))) i = AIOS_ERR_INVALID;
    /* (a model whose core cannot be made stays listed in the config, without a core: the
     * server counts only cores, so it is never served) */
    pthread_mutex_unlock(&a->mu);
    if (i >= 0) log_info("model '%s' added at run time; loading", a->cfg->llms.models[i].name);
    return i;
}

/* What the agents module does to an agent's work elsewhere: its LLM work held on every
 * core (stop / cont), its in-flight requests cancelled (kill, end). */
typedef struct agent_hooks_ctx {
    const aios_config *cfg;
    llm_core **cores;
    api_server *srv;
} agent_hooks_ctx;

static void hook_hold(void *ctx, const char *agent, bool hold) {
    agent_hooks_ctx *h = ctx;
    for (int i = 0; i < config_n_models(h->cfg); i++)
        if (h->cores[i] && llm_core_hold(h->cores[i], agent, hold))
            log_warn("agent %s: cannot hold its work on model '%s' (too many agents held)", agent, llm_core_name(h->cores[i]));
}

static void hook_cancel(void *ctx, const char *agent) { api_server_cancel_agent(((agent_hooks_ctx *)ctx)->srv, agent); }

static agents_t *agents_start_all(const aios_config *cfg, access_manager *am, agent_hooks_ctx *h) {
    agents_params p = agents_default_params();
    p.cfg = cfg;
    p.access = am;
    p.hooks = (agents_hooks){.ctx = h, .hold = hook_hold, .cancel = hook_cancel};
    char err[600];
    agents_t *a = agents_open(&p, err, sizeof err);
    if (!a) log_error("agents: %s; the kernel serves without running agents", err);
    else api_server_set_agents(h->srv, a);
    return a;
}

int kernel_main(int argc, char **argv) {
    kern_json_init();
    static aios_config cfg;
    config_defaults(&cfg);
    bool check_only = false, self_test = false;
    int prc = parse_flags(argc, argv, &cfg, &check_only, &self_test);
    if (prc) return prc < 0 ? 0 : prc;
    log_level lvl;
    log_parse_level(cfg.log_level, &lvl);
    log_set_level(lvl);
    data_dir_default(&cfg);
    if (check_only) {
        for (int i = 0; i < cfg.n_compat; i++) printf("%s\n", cfg.compat[i]); /* an AIOS config.yaml: what it became */
        printf("configuration ok\n");
        return 0;
    }
    for (int i = 0; i < cfg.n_compat; i++) log_info("%s", cfg.compat[i]);
    if (self_test) return run_self_test(&cfg);
    umask(077);                /* kernel state is private ... */
    mkdir(cfg.data_dir, 0711); /* ... but tool workdirs below it must be reachable by sandbox uids */
    chmod(cfg.data_dir, 0711);

    /* SIGINT / SIGTERM stay blocked in every thread (all start below and inherit the mask)
     * and only the main thread takes them, with sigwait: a process-directed signal that a
     * worker thread happened to receive could not wake a pause() here. Tool children
     * unblock them before execve (sandbox.c). */
    sigset_t stop_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGINT);
    sigaddset(&stop_set, SIGTERM);
    sigaddset(&stop_set, SIGHUP); /* reload (systemctl reload), taken by the main thread too */
    pthread_sigmask(SIG_BLOCK, &stop_set, NULL);
    signal(SIGPIPE, SIG_IGN);

    llm_core *cores[AIOS_MAX_MODELS] = {0};
    char err[512], ctx_dir[AIOS_PATH_MAX + 16];
    int rc = 0;
    snprintf(ctx_dir, sizeof ctx_dir, "%s/context", cfg.data_dir);
    ctx_store_params sp = ctx_store_default_params();
    sp.dir = ctx_dir;
    sp.ram_budget = (size_t)cfg.context.ram_budget_mb << 20;
    sp.disk_budget = (size_t)cfg.context.disk_budget_mb << 20;
    ctx_store *store = ctx_store_new(&sp, err, sizeof err);
    if (!store) rc = die(err);
    model_adder adder = {.cfg = &cfg, .cores = cores, .store = store, .mu = PTHREAD_MUTEX_INITIALIZER};
    managers mg = {0};
    if (!rc && managers_open(&cfg, &mg, err, sizeof err)) rc = die(err);
    api_server *srv = NULL;
    if (!rc) {
        api_params ap = {.cfg = &cfg,
                         .cores = cores,
                         .n_cores = cfg.llms.n_models,
                         .mem = mg.mem,
                         .storage = mg.storage,
                         .embedder = mg.emb,
                         .tools = mg.tools,
                         .access = mg.access,
                         .add_model = add_model,
                         .add_ctx = &adder};
        memcpy(ap.runq, mg.runq, sizeof ap.runq);
        if (mg.tools) ap.runq[SYSCALL_KIND_TOOL] = tools_runq(mg.tools); /* the tool manager's own, shown */
        if (!(srv = api_server_start(&ap, err, sizeof err))) rc = die(err);
        else
            log_info("listening on http://%s:%d; /health answers 503 until the models are loaded", cfg.server.host,
                     cfg.server.port);
    }
    for (int i = 0; i < cfg.llms.n_models && !rc; i++) {
        bool local = !strcmp(cfg.llms.models[i].backend, "llamacpp");
        log_info("%s model '%s' %s %s", local ? "loading" : "connecting", cfg.llms.models[i].name, local ? "from" : "to",
                 local ? cfg.llms.models[i].path : cfg.llms.models[i].hostname);
        if (!(cores[i] = open_core(&cfg, i, store, false, err, sizeof err))) {
            rc = die(err);
            break;
        }
        llm_core_info info;
        llm_core_get_info(cores[i], &info);
        log_info("model '%s' ready: %s, %lld params, context %d tokens/request, %d KV cells, %d sequences per batch", info.name,
                 info.desc, (long long)info.n_params, info.ctx, info.kv_size, info.max_active);
    }
    agent_hooks_ctx hooks = {.cfg = &cfg, .cores = cores, .srv = srv};
    agents_t *agents = rc ? NULL : agents_start_all(&cfg, mg.access, &hooks); /* the models are loaded */
    if (!rc) api_server_ready(srv);
    if (!rc) {
        log_info("aiosd serving on http://%s:%d (policy %s, max_active %d, context %s)", cfg.server.host, cfg.server.port,
                 cfg.scheduler.policy, cfg.scheduler.max_active, cfg.context.mode);
        for (int sig = 0; sigwait(&stop_set, &sig) == 0 && sig == SIGHUP;) reload(argc, argv, &cfg, mg.access, mg.tools);
        log_info("shutting down");
    }
    api_server_set_agents(srv, NULL);
    agents_close(agents); /* their processes end; their requests are cancelled below */
    api_server_close(srv);
    access_stop_approvals(mg.access);
    tool_manager_free(mg.tools); /* kills running tool processes; waiting approvals end below */
    for (int i = 0; i < config_n_models(&cfg); i++) llm_core_free(cores[i]); /* (added ones too) */
    llm_embedder_stop(mg.emb); /* refuses queued texts: callbacks reach the managers, waiters wake */
    for (int k = 0; k < SYSCALL_KIND__COUNT; k++)
        runq_free(mg.runq[k]); /* runs queued jobs (an embedding now fails fast with 503) */
    llm_embedder_free(mg.emb);
    api_server_free(srv);
    agents_free(agents);
    access_close(mg.access);
    mem_close(mg.mem);
    storage_close(mg.storage);
    ctx_store_release(store); /* last: requests freed above may have held snapshots */
    return rc;
}
