/*
 * mcp.c - MCP servers as tool providers: each configured server is a child process spoken
 * to over stdio with newline-delimited JSON-RPC 2.0 (the MCP stdio transport).
 *
 * One thread per server owns its pipes: it starts the server, does the handshake
 * (initialize -> notifications/initialized -> tools/list), then reads responses and hands
 * each to the caller waiting on its id. Callers write their request (under a write lock)
 * and wait on a condition variable, so calls to one server run concurrently. When the
 * server dies (EOF on its stdout) every waiting call fails at once with 502, and the
 * thread starts it again (backoff 0.1 s doubling to 5 s, reset once it stayed up 10 s);
 * a call arriving meanwhile waits for it to be ready. A tool listed by a server with
 * annotations {destructiveHint: true} (and not readOnlyHint) is irreversible.
 *
 * A server runs sandboxed like a process tool (sandbox.c, sandbox_mcp_*): bubblewrap, its
 * own workdir, no network unless configured, seccomp, rlimits, a minimal environment. Its
 * stderr is logged line by line under its name (at most MCP_LOG_BURST lines per
 * MCP_LOG_WINDOW seconds; the rest are counted). A server with a `group` serves that group
 * only: the access manager checks "<server>/..." names, and mcp_call refuses its tools
 * re-exported by a manifest under any other name.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "tools_internal.h"

#define MCP_PROTOCOL "2025-03-26"
#define MCP_MAX_LINE (16L << 20)
#define MCP_ERR_LINE 2048 /* longer stderr lines are logged in pieces */
#define MCP_LOG_BURST 200 /* stderr lines logged per window; the rest are counted */
#define MCP_LOG_WINDOW 10.0

typedef struct mcp_wait {
    long id;
    cJSON *resp; /* the whole response object; NULL if the server died */
    bool done;
    struct mcp_wait *next;
} mcp_wait;

struct mcp_server {
    aios_mcp_cfg cfg;
    const aios_config *kcfg;
    sandbox_mcp *sandbox;
    int timeout_ms;
    void (*changed)(void *);
    void *ctx;
    pthread_t thread;
    bool thread_running;
    atomic_bool stop;
    pthread_mutex_t mu; /* state, waiters, tools */
    pthread_cond_t cv;
    pthread_mutex_t write_mu;
    bool ready;
    pid_t pid;
    int in_fd, out_fd, err_fd;
    long next_id;
    mcp_wait *waiters;
    cJSON *tools; /* tools/list result's "tools" */
    bool relist;
    unsigned long long restarts;
    strbuf line;
    strbuf errline;    /* the server's stderr line being assembled */
    double log_window; /* start of the current stderr log window */
    int log_lines;
    unsigned long log_dropped;
};

unsigned long long mcp_restarts(mcp_server *s) {
    pthread_mutex_lock(&s->mu);
    unsigned long long r = s->restarts;
    pthread_mutex_unlock(&s->mu);
    return r;
}

/* ---------- process ---------- */

static int spawn_server(mcp_server *s) {
    int fds[3];
    char err[512];
    if (sandbox_mcp_spawn(s->sandbox, &s->pid, fds, err, sizeof err)) {
        log_warn("mcp %s: cannot start %s: %s", s->cfg.name, s->cfg.command, err);
        s->pid = 0;
        return -1;
    }
    s->in_fd = fds[0];
    s->out_fd = fds[1];
    s->err_fd = fds[2];
    return 0;
}

/* ---------- the server's stderr ---------- */

/* One line of the server's stderr into the kernel's log, control bytes made spaces;
 * bubblewrap's own complaints (the sandbox could not be set up) as warnings. */
static void log_err_line(mcp_server *s, char *line, size_t n) {
    double now = kern_now_mono();
    if (now - s->log_window >= MCP_LOG_WINDOW) {
        if (s->log_dropped)
            log_warn("mcp %s: %lu stderr lines not logged (more than %d in %.0f s)", s->cfg.name, s->log_dropped, MCP_LOG_BURST,
                     MCP_LOG_WINDOW);
        s->log_window = now;
        s->log_lines = 0;
        s->log_dropped = 0;
    }
    if (++s->log_lines > MCP_LOG_BURST) {
        s->log_dropped++;
        return;
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f) line[i] = ' ';
    if (!strncmp(line, "bwrap:", 6)) log_warn("mcp %s: stderr: %.*s", s->cfg.name, (int)n, line);
    else log_info("mcp %s: stderr: %.*s", s->cfg.name, (int)n, line);
}

static void err_flush(mcp_server *s) {
    if (s->errline.len) log_err_line(s, s->errline.data, s->errline.len);
    sb_reset(&s->errline);
}

/* Bytes of the server's stderr: whole lines are logged, a partial one is kept. */
static void err_feed(mcp_server *s, const char *buf, size_t n) {
    while (n) {
        const char *nl = memchr(buf, '\n', n);
        size_t take = nl ? (size_t)(nl - buf) : n, room = MCP_ERR_LINE - s->errline.len;
        if (take > room) take = room;
        sb_append(&s->errline, buf, take);
        buf += take;
        n -= take;
        if (n && *buf == '\n') buf++, n--;
        else if (s->errline.len < MCP_ERR_LINE) break; /* a partial line: wait for the rest */
        err_flush(s);
    }
}

/* After the server exited: what is left in its stderr pipe, then a last partial line. */
static void err_drain(mcp_server *s) {
    char buf[4096];
    fcntl(s->err_fd, F_SETFL, O_NONBLOCK);
    for (int i = 0; i < 64; i++) { /* at most 256 KiB */
        ssize_t r = read(s->err_fd, buf, sizeof buf);
        if (r <= 0) break;
        err_feed(s, buf, (size_t)r);
    }
    err_flush(s);
}

/* Ends the server: stdin closed (MCP's polite stop), then the group killed; reaped. */
static void end_server(mcp_server *s, bool polite) {
    if (s->pid <= 0) return;
    pthread_mutex_lock(&s->write_mu);
    if (s->in_fd >= 0) close(s->in_fd);
    s->in_fd = -1;
    pthread_mutex_unlock(&s->write_mu);
    int status;
    for (int i = 0; polite && i < 20 && waitpid(s->pid, &status, WNOHANG) == 0; i++) usleep(25 * 1000);
    kill(-s->pid, SIGKILL);
    while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR) {}
    s->pid = 0;
    if (s->err_fd >= 0) err_drain(s);
    if (s->out_fd >= 0) close(s->out_fd);
    if (s->err_fd >= 0) close(s->err_fd);
    s->out_fd = s->err_fd = -1;
}

/* ---------- JSON-RPC ---------- */

static int send_json(mcp_server *s, cJSON *msg) {
    char *txt = cJSON_PrintUnformatted(msg);
    if (!txt) return AIOS_ERR_NOMEM;
    size_t n = strlen(txt);
    txt[n] = '\n';
    int rc = AIOS_OK;
    pthread_mutex_lock(&s->write_mu);
    for (size_t off = 0; off < n + 1 && !rc;) {
        ssize_t w = s->in_fd >= 0 ? write(s->in_fd, txt + off, n + 1 - off) : -1;
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) rc = AIOS_ERR_TOOL_FAILED;
        else off += (size_t)w;
    }
    pthread_mutex_unlock(&s->write_mu);
    free(txt);
    return rc;
}

static cJSON *request(long id, const char *method, cJSON *params) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "jsonrpc", "2.0");
    if (id >= 0) cJSON_AddNumberToObject(m, "id", (double)id);
    cJSON_AddStringToObject(m, "method", method);
    if (params) kern_json_add(m, "params", params);
    return m;
}

/* With s->mu held. */
static mcp_wait *add_waiter(mcp_server *s) {
    mcp_wait *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->id = s->next_id++;
    w->next = s->waiters;
    s->waiters = w;
    return w;
}

static void remove_waiter(mcp_server *s, mcp_wait *w) {
    for (mcp_wait **pp = &s->waiters; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    cJSON_Delete(w->resp);
    free(w);
}

/* One line from the server: a response for a waiter, a request we answer, or a notification. */
static void handle_line(mcp_server *s, const char *line, size_t n) {
    cJSON *m = cJSON_ParseWithLength(line, n);
    if (!cJSON_IsObject(m)) { /* servers may log to stdout; MCP says ignore */
        cJSON_Delete(m);
        return;
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "id"), *method = cJSON_GetObjectItemCaseSensitive(m, "method");
    if (cJSON_IsString(method)) {
        if (id) { /* a request to us (ping, ...): answer so the server is not left waiting */
            cJSON *r = cJSON_CreateObject();
            cJSON_AddStringToObject(r, "jsonrpc", "2.0");
            kern_json_add(r, "id", cJSON_Duplicate(id, 1));
            if (!strcmp(method->valuestring, "ping")) cJSON_AddObjectToObject(r, "result");
            else {
                cJSON *e = cJSON_AddObjectToObject(r, "error");
                cJSON_AddNumberToObject(e, "code", -32601);
                cJSON_AddStringToObject(e, "message", "Method not found");
            }
            send_json(s, r);
            cJSON_Delete(r);
        } else if (!strcmp(method->valuestring, "notifications/tools/list_changed")) {
            pthread_mutex_lock(&s->mu);
            s->relist = true;
            pthread_mutex_unlock(&s->mu);
        }
        cJSON_Delete(m);
        return;
    }
    pthread_mutex_lock(&s->mu);
    mcp_wait *w = s->waiters;
    while (w && !(cJSON_IsNumber(id) && id->valuedouble == (double)w->id)) w = w->next; /* (any number: no cast) */
    if (w && !w->done) {
        w->resp = m;
        w->done = true;
        m = NULL;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    cJSON_Delete(m);
}

/* n bytes of the server's stdout: each whole line is one message. */
static void feed(mcp_server *s, const char *buf, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (buf[i] != '\n') {
            if (sb_append(&s->line, buf + i, 1)) sb_reset(&s->line); /* over MCP_MAX_LINE: dropped */
            continue;
        }
        if (s->line.len) handle_line(s, s->line.data, s->line.len);
        sb_reset(&s->line);
    }
}

/* Reads what is there for up to ms; false once the server's stdout closed. */
static bool pump(mcp_server *s, int ms) {
    struct pollfd p[2] = {{.fd = s->out_fd, .events = POLLIN}, {.fd = s->err_fd, .events = POLLIN}};
    if (poll(p, s->err_fd >= 0 ? 2 : 1, ms) <= 0) return true;
    char buf[65536];
    if (s->err_fd >= 0 && p[1].revents) { /* the server's own log */
        ssize_t r = read(s->err_fd, buf, sizeof buf);
        if (r > 0) err_feed(s, buf, (size_t)r);
        else {
            err_flush(s);
            close(s->err_fd);
            s->err_fd = -1;
        }
    }
    if (!p[0].revents) return true;
    ssize_t r = read(s->out_fd, buf, sizeof buf);
    if (r <= 0) return r < 0 && errno == EINTR;
    feed(s, buf, (size_t)r);
    return true;
}

/* From the server thread: a request answered synchronously (handshake, tools/list). */
static cJSON *rpc_sync(mcp_server *s, const char *method, cJSON *params, int timeout_ms) {
    pthread_mutex_lock(&s->mu);
    mcp_wait *w = add_waiter(s);
    pthread_mutex_unlock(&s->mu);
    if (!w) {
        cJSON_Delete(params);
        return NULL;
    }
    cJSON *req = request(w->id, method, params);
    int rc = send_json(s, req);
    cJSON_Delete(req);
    double deadline = kern_now_mono() + timeout_ms / 1000.0;
    bool alive = true;
    while (!rc && alive && !w->done && kern_now_mono() < deadline && !atomic_load(&s->stop)) alive = pump(s, 50);
    pthread_mutex_lock(&s->mu);
    cJSON *resp = w->done ? w->resp : NULL;
    w->resp = NULL;
    remove_waiter(s, w);
    pthread_mutex_unlock(&s->mu);
    cJSON *result = cJSON_DetachItemFromObject(resp, "result");
    cJSON_Delete(resp);
    return result;
}

/* A tools/list result (taken; NULL: none came): the server's tools from now on. */
static bool take_tools(mcp_server *s, cJSON *res) {
    cJSON *tools = cJSON_DetachItemFromObject(res, "tools");
    cJSON_Delete(res);
    if (!cJSON_IsArray(tools)) {
        cJSON_Delete(tools);
        log_warn("mcp %s: tools/list failed", s->cfg.name);
        return false;
    }
    pthread_mutex_lock(&s->mu);
    cJSON_Delete(s->tools);
    s->tools = tools;
    s->ready = true;
    s->relist = false;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    log_info("mcp %s: ready, %d tools", s->cfg.name, cJSON_GetArraySize(tools));
    s->changed(s->ctx);
    return true;
}

static bool list_tools(mcp_server *s) { return take_tools(s, rpc_sync(s, "tools/list", cJSON_CreateObject(), s->timeout_ms)); }

static bool handshake(mcp_server *s) {
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "protocolVersion", MCP_PROTOCOL);
    cJSON_AddObjectToObject(p, "capabilities");
    cJSON *ci = cJSON_AddObjectToObject(p, "clientInfo");
    cJSON_AddStringToObject(ci, "name", "aiosd");
    cJSON_AddStringToObject(ci, "version", "1.0");
    cJSON *res = rpc_sync(s, "initialize", p, s->timeout_ms);
    bool ok = cJSON_IsObject(res);
    cJSON_Delete(res);
    if (!ok) {
        log_warn("mcp %s: no answer to initialize within tools.mcp_timeout_ms", s->cfg.name);
        return false;
    }
    cJSON *n = request(-1, "notifications/initialized", NULL);
    send_json(s, n);
    cJSON_Delete(n);
    return list_tools(s);
}

/* With the server gone: every waiting call fails now. */
static void fail_waiters(mcp_server *s) {
    pthread_mutex_lock(&s->mu);
    s->ready = false;
    for (mcp_wait *w = s->waiters; w; w = w->next) w->done = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void sleep_unless_stopped(mcp_server *s, double seconds) {
    for (double t = 0; t < seconds && !atomic_load(&s->stop); t += 0.05) usleep(50 * 1000);
}

static void *server_main(void *arg) {
    mcp_server *s = arg;
    double backoff = 0.1;
    while (!atomic_load(&s->stop)) {
        double started = kern_now_mono();
        if (spawn_server(s) == 0) {
            sb_reset(&s->line);
            if (handshake(s))
                while (!atomic_load(&s->stop) && pump(s, 100)) {
                    pthread_mutex_lock(&s->mu);
                    bool relist = s->relist;
                    pthread_mutex_unlock(&s->mu);
                    if (relist) list_tools(s);
                }
            fail_waiters(s);
            end_server(s, atomic_load(&s->stop));
        }
        if (atomic_load(&s->stop)) break;
        if (kern_now_mono() - started > 10) backoff = 0.1;
        pthread_mutex_lock(&s->mu);
        s->restarts++;
        pthread_mutex_unlock(&s->mu);
        log_warn("mcp %s: server exited; restarting in %.1f s", s->cfg.name, backoff);
        sleep_unless_stopped(s, backoff);
        backoff = backoff * 2 > 5 ? 5 : backoff * 2;
    }
    fail_waiters(s);
    return NULL;
}

/* A server record, not started: no process, no thread. */
static mcp_server *server_new(const aios_mcp_cfg *cfg, const aios_config *kcfg, void (*changed)(void *), void *ctx) {
    mcp_server *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->cfg = *cfg;
    s->kcfg = kcfg;
    s->timeout_ms = kcfg->tools.mcp_timeout_ms;
    s->changed = changed;
    s->ctx = ctx;
    s->in_fd = s->out_fd = s->err_fd = -1;
    s->next_id = 1;
    sb_init(&s->line, (size_t)MCP_MAX_LINE);
    sb_init(&s->errline, MCP_ERR_LINE + 1);
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->write_mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    return s;
}

mcp_server *mcp_start(const aios_mcp_cfg *cfg, const aios_config *kcfg, void (*changed)(void *), void *ctx) {
    mcp_server *s = server_new(cfg, kcfg, changed, ctx);
    if (!s) return NULL;
    char err[512] = "";
    if (!(s->sandbox = sandbox_mcp_new(kcfg, &s->cfg, err, sizeof err))) {
        log_error("mcp %s: not started: %s", cfg->name, err);
        mcp_stop(s);
        return NULL;
    }
    if (pthread_create(&s->thread, NULL, server_main, s)) {
        log_error("mcp %s: cannot start its thread", cfg->name);
        mcp_stop(s);
        return NULL;
    }
    s->thread_running = true;
    return s;
}

void mcp_stop(mcp_server *s) {
    if (!s) return;
    atomic_store(&s->stop, true);
    if (s->thread_running) pthread_join(s->thread, NULL);
    while (s->waiters) remove_waiter(s, s->waiters);
    cJSON_Delete(s->tools);
    sb_free(&s->line);
    sb_free(&s->errline);
    sandbox_mcp_free(s->sandbox);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->write_mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

/* ---------- tools ---------- */

static bool destructive(const cJSON *t) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(t, "annotations");
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "destructiveHint")) &&
        !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "readOnlyHint"));
}

int mcp_tools(mcp_server *s, tool_def ***defs, int *n, int *cap) {
    pthread_mutex_lock(&s->mu);
    for (const cJSON *t = s->tools ? s->tools->child : NULL; t; t = t->next) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "name"),
                    *desc = cJSON_GetObjectItemCaseSensitive(t, "description");
        const cJSON *schema = cJSON_GetObjectItemCaseSensitive(t, "inputSchema");
        tool_def *d = cJSON_IsString(name) ? tool_def_new() : NULL;
        if (!d) continue;
        snprintf(d->name, sizeof d->name, "%s/%s", s->cfg.name, name->valuestring);
        if (!tool_name_ok(d->name)) { /* the names manifests may use, nothing else */
            log_warn("mcp %s: tool '%.128s' skipped: not a valid tool name", s->cfg.name, name->valuestring);
            tool_def_unref(d);
            continue;
        }
        snprintf(d->remote, sizeof d->remote, "%s", name->valuestring);
        snprintf(d->source, sizeof d->source, "mcp:%s", s->cfg.name);
        d->description = strdup(cJSON_IsString(desc) ? desc->valuestring : "");
        d->schema = cJSON_IsObject(schema) ? cJSON_Duplicate(schema, 1) : NULL;
        d->kind = TOOL_KIND_MCP;
        d->mcp = s;
        d->timeout_ms = s->kcfg->tools.default_timeout_ms;
        d->max_parallel = s->kcfg->tools.default_max_parallel;
        d->irreversible = destructive(t);
        if (tool_defs_push(defs, n, cap, d)) tool_def_unref(d);
    }
    pthread_mutex_unlock(&s->mu);
    return AIOS_OK;
}

/* With s->mu held: waits until ready, stopped, cancelled or the deadline. */
static bool wait_ready(mcp_server *s, const tool_run *run, double deadline) {
    while (!s->ready && !atomic_load(&s->stop) && !atomic_load(run->cancel) && kern_now_mono() < deadline) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    return s->ready;
}

/* The text of a tools/call result: its text content joined; JSON when it parses. */
static int result_output(const tool_def *d, const tool_run *run, cJSON *result) {
    for (const cJSON *c = cJSON_GetObjectItemCaseSensitive(result, "content")
             ? cJSON_GetObjectItemCaseSensitive(result, "content")->child
             : NULL;
         c; c = c->next) {
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(c, "text");
        if (!cJSON_IsString(text)) continue;
        if (run->out->len) sb_puts(run->out, "\n");
        size_t room = (size_t)run->max_output - run->out->len, len = strlen(text->valuestring);
        sb_append(run->out, text->valuestring, len < room ? len : room);
        if (len > room) {
            *run->truncated = true;
            sb_printf(run->out, "\n[aios: output truncated at %ld bytes (tools.max_output_bytes)]", run->max_output);
            snprintf(run->err, run->errlen, "tool '%s' answered more than tools.max_output_bytes (%ld); the output was cut",
                     d->name, run->max_output);
            return AIOS_ERR_TOO_LARGE;
        }
    }
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(result, "isError"))) {
        snprintf(run->err, run->errlen, "tool '%s' failed: %.400s", d->name, run->out->data ? run->out->data : "");
        return AIOS_ERR_TOOL_FAILED;
    }
    cJSON *j = run->out->len ? cJSON_ParseWithLength(run->out->data, run->out->len) : NULL;
    *run->out_json = j != NULL;
    cJSON_Delete(j);
    return AIOS_OK;
}

static int call_once(mcp_server *s, const tool_def *d, const tool_run *run, int timeout_ms, double deadline, bool *died);
static int call_answer(const tool_def *d, const tool_run *run, cJSON *resp);

/* A call that met a dying server (killed just before or during it) is sent once more to
 * the restarted one, unless the tool is irreversible (it may have run). */
int mcp_call(mcp_server *s, const tool_def *d, const tool_run *run, int timeout_ms) {
    size_t n = strlen(s->cfg.name);
    if (s->cfg.group[0] && (strncmp(d->name, s->cfg.name, n) || d->name[n] != '/')) {
        snprintf(run->err, run->errlen,
                 "tool '%s': MCP server '%s' serves only group '%s', and only under its own names ('%s/...')", d->name,
                 s->cfg.name, s->cfg.group, s->cfg.name);
        return AIOS_ERR_FORBIDDEN;
    }
    double deadline = kern_now_mono() + timeout_ms / 1000.0;
    bool died = false;
    int rc = call_once(s, d, run, timeout_ms, deadline, &died);
    if (died && !d->irreversible && kern_now_mono() < deadline) {
        log_info("mcp %s: retrying %s on the restarted server", s->cfg.name, d->name);
        run->err[0] = 0;
        rc = call_once(s, d, run, timeout_ms, deadline, &died);
    }
    return rc;
}

static int call_once(mcp_server *s, const tool_def *d, const tool_run *run, int timeout_ms, double deadline, bool *died) {
    *died = false;
    pthread_mutex_lock(&s->mu);
    mcp_wait *w = wait_ready(s, run, deadline) ? add_waiter(s) : NULL;
    pthread_mutex_unlock(&s->mu);
    if (!w) {
        snprintf(run->err, run->errlen, "MCP server '%s' is not ready (starting or restarting)", s->cfg.name);
        return atomic_load(run->cancel) ? AIOS_ERR_CANCELLED : AIOS_ERR_TOOL_FAILED;
    }
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "name", d->remote);
    kern_json_add(p, "arguments", run->params_json ? cJSON_Duplicate(run->params_json, 1) : cJSON_CreateObject());
    cJSON *req = request(w->id, "tools/call", p);
    int rc = send_json(s, req);
    cJSON_Delete(req);
    pthread_mutex_lock(&s->mu);
    while (!rc && !w->done && !atomic_load(run->cancel) && !atomic_load(run->stop) && kern_now_mono() < deadline) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    bool done = w->done;
    cJSON *resp = w->resp;
    long id = w->id;
    w->resp = NULL;
    remove_waiter(s, w);
    pthread_mutex_unlock(&s->mu);
    if (!done) {
        cJSON *cp = cJSON_CreateObject();
        cJSON_AddNumberToObject(cp, "requestId", (double)id);
        cJSON *n = request(-1, "notifications/cancelled", cp);
        send_json(s, n);
        cJSON_Delete(n);
        if (rc) snprintf(run->err, run->errlen, "MCP server '%s' is gone (cannot write)", s->cfg.name);
        else if (atomic_load(run->cancel) || atomic_load(run->stop)) rc = AIOS_ERR_CANCELLED;
        else {
            snprintf(run->err, run->errlen, "tool '%s' timed out after %d ms", d->name, timeout_ms);
            rc = AIOS_ERR_TIMEOUT;
        }
        return rc ? rc : AIOS_ERR_TOOL_FAILED;
    }
    *died = !resp;
    return call_answer(d, run, resp);
}

/* A tools/call response (taken; NULL: the server died first): the tool's output or error. */
static int call_answer(const tool_def *d, const tool_run *run, cJSON *resp) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(resp, "error");
    if (!resp || e) {
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
        snprintf(run->err, run->errlen, "tool '%s': %s", d->name,
                 !resp                     ? "the MCP server exited during the call (it is being restarted)"
                     : cJSON_IsString(msg) ? msg->valuestring
                                           : "the MCP server answered an error");
        cJSON_Delete(resp);
        return AIOS_ERR_TOOL_FAILED;
    }
    int rc = result_output(d, run, cJSON_GetObjectItemCaseSensitive(resp, "result"));
    cJSON_Delete(resp);
    return rc;
}

static void no_change(void *ctx) { (void)ctx; }

int mcp_replay(const aios_mcp_cfg *cfg, const aios_config *kcfg, const char *out, size_t n, int answer_fd, tool_def ***defs,
               int *nd, int *cap, const tool_def *d, const tool_run *run) {
    mcp_server *s = server_new(cfg, kcfg, no_change, NULL);
    if (!s) return AIOS_ERR_NOMEM;
    s->in_fd = answer_fd;
    mcp_wait *w[3] = {NULL, NULL, NULL}; /* ids 1, 2, 3: initialize, tools/list, tools/call */
    int rc = AIOS_ERR_NOMEM;
    for (int i = 0; i < 3; i++)
        if (!(w[i] = add_waiter(s))) goto out;
    feed(s, out, n);
    cJSON *init = cJSON_DetachItemFromObject(w[0]->resp, "result");
    bool ok = cJSON_IsObject(init); /* (as handshake: the server is used only after it answered) */
    cJSON_Delete(init);
    int n0 = *nd;
    if (ok && take_tools(s, cJSON_DetachItemFromObject(w[1]->resp, "result"))) mcp_tools(s, defs, nd, cap);
    for (int i = n0; i < *nd; i++) (*defs)[i]->mcp = NULL; /* (no server to call: they are only read) */
    rc = call_answer(d, run, w[2]->resp);
    w[2]->resp = NULL;
out:
    s->in_fd = -1;
    mcp_stop(s);
    return rc;
}
