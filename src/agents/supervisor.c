/*
 * supervisor.c - the agents module's one thread: it polls every live agent's pidfd and
 * output pipes (and an eventfd that says the table changed), and every 250 ms samples
 * /proc for the watchdog (memory_mb, wall_s) and starts due restarts.
 *
 * Output goes to <data_dir>/agents/<id>/output.log as it comes (stdout and stderr
 * interleaved in arrival order), rotated to output.log.1 at agents.log_max_bytes, and to
 * each follower (a syscall the API streams as server-sent events). The last line of stdout
 * is kept: an AIOS agent's result.
 *
 * When a process ends: the pipes are drained, the record says how it ended (exit code or
 * signal; killed if the operator or the watchdog did it), its token is revoked, its
 * followers complete, the hooks release its held and in-flight work, and restart:
 * on-failure schedules a new start (backoff 1 s doubling to 30 s, agents.max_restarts).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "agents_internal.h"

#define TICK_S 0.25
#define CHUNK 65536

void agents_wake(agents_t *a) {
    uint64_t one = 1;
    if (a->wake_fd >= 0 && write(a->wake_fd, &one, sizeof one) < 0) {} /* a full counter is a pending wake anyway */
}

/* ---------- output ---------- */

static void log_open(agents_t *a, agent *g, bool truncate) {
    char p[AIOS_PATH_MAX * 2];
    agents_path(a, g, "output.log", p, sizeof p);
    g->log_fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC | (truncate ? O_TRUNC : O_APPEND), 0600);
    struct stat st;
    g->log_size = g->log_fd >= 0 && fstat(g->log_fd, &st) == 0 ? (long)st.st_size : 0;
}

static void log_rotate(agents_t *a, agent *g) {
    char cur[AIOS_PATH_MAX * 2], old[AIOS_PATH_MAX * 2];
    agents_path(a, g, "output.log", cur, sizeof cur);
    agents_path(a, g, "output.log.1", old, sizeof old);
    close(g->log_fd);
    rename(cur, old);
    log_open(a, g, true);
}

/* The last non-empty line of stdout (bounded). */
static void track_line(agent *g, const char *buf, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (buf[i] == '\n' || buf[i] == '\r') {
            if (g->last_len) g->line_done = true;
            continue;
        }
        if (g->line_done) {
            g->last_len = 0;
            g->line_done = false;
        }
        if (g->last_len < sizeof g->last_line - 1) g->last_line[g->last_len++] = buf[i];
    }
    g->last_line[g->last_len] = 0;
}

static void output(agents_t *a, agent *g, const char *buf, size_t n, bool is_stdout) {
    if (g->log_fd < 0) log_open(a, g, false);
    if (g->log_fd >= 0 && g->log_size + (long)n > a->cfg->procs.log_max_bytes && g->log_size > 0) log_rotate(a, g);
    if (g->log_fd >= 0 && write(g->log_fd, buf, n) == (ssize_t)n) g->log_size += (long)n;
    if (is_stdout) track_line(g, buf, n);
    syscall_fanout(g->followers, &g->n_followers, buf, n, false); /* (a full one ends: its client reconnects) */
}

/* Reads what fd has (until it would block, or CHUNK bytes when !all); closes it at EOF. */
static void pump(agents_t *a, agent *g, int *fd, bool is_stdout, bool all) {
    char buf[CHUNK];
    for (int rounds = 0; *fd >= 0 && (all || rounds < 1); rounds++) {
        ssize_t r = read(*fd, buf, sizeof buf);
        if (r > 0) {
            output(a, g, buf, (size_t)r, is_stdout);
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
        close(*fd);
        *fd = -1;
    }
}

/* ---------- the end of a process ---------- */

void agents_finish(agents_t *a, agent *g, int status, double cpu_s, long maxrss_kb) {
    pump(a, g, &g->out_fd, true, true);
    pump(a, g, &g->err_fd, false, true);
    if (g->out_fd >= 0) close(g->out_fd);
    if (g->err_fd >= 0) close(g->err_fd);
    if (g->pidfd >= 0) close(g->pidfd);
    if (g->log_fd >= 0) close(g->log_fd);
    g->out_fd = g->err_fd = g->pidfd = g->log_fd = -1;
    g->pid = 0;
    a->n_alive--;
    strmap_del(&a->live, g->name);
    if (cpu_s > g->cpu_s) g->cpu_s = cpu_s;
    if (maxrss_kb > g->peak_rss_kb) g->peak_rss_kb = maxrss_kb;
    g->ended = kern_now_wall();
    g->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    g->term_signal = WIFSIGNALED(status) ? WTERMSIG(status) : -1;
    cg_release(g); /* (an OOM kill by memory.max: the reason) */
    g->state = a->stop ? AGENT_LOST : g->kill_requested || g->reason[0] ? AGENT_KILLED : AGENT_EXITED;
    if (a->stop && g->restart_on_failure) /* it comes back with the kernel, as after a crash */
        cJSON_AddBoolToObject(g->spec, "_resume", true);
    access_identity_revoke(a->p.access, g->name, NULL, 0);
    syscall_fanout(g->followers, &g->n_followers, NULL, 0, true);
    bool failed = g->exit_code != 0 && !g->kill_requested && !a->stop;
    if (g->restart_on_failure && failed && g->restarts < a->cfg->procs.max_restarts) {
        double backoff = g->restarts < 5 ? (double)(1 << g->restarts) : 30;
        g->restart_at = kern_now_mono() + (backoff > 30 ? 30 : backoff);
    }
    log_info("agent %s (%s) %s: %s %d%s", g->id, g->name, agent_state_name(g->state), g->term_signal > 0 ? "signal" : "exit code",
             g->term_signal > 0 ? g->term_signal : g->exit_code, g->restart_at ? "; restarting (restart: on-failure)" : "");
    agents_save(a, g);
}

/* Reaps g if its process ended (pidfd readable); true if it did. */
static bool reap(agents_t *a, agent *g) {
    int status;
    struct rusage ru;
    pid_t r = wait4(g->pid, &status, WNOHANG, &ru);
    if (r != g->pid) return false;
    double cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    agents_finish(a, g, status, cpu, 0); /* (ru_maxrss would be the kernel's: bubblewrap is cloned from it) */
    return true;
}

/* ---------- the loop ---------- */

typedef struct slot {
    char id[AGENT_ID_LEN];
    int which; /* 0 pidfd, 1 stdout, 2 stderr */
    int fd;
} slot;

typedef struct ended {
    char name[AIOS_NAME_MAX];
    bool was_held;
} ended;

/* The watchdog: memory_mb and wall_s, over the /proc sample (mu held). */
static void watchdog(agents_t *a) {
    agent **live = malloc((size_t)(a->n > 0 ? a->n : 1) * sizeof *live);
    int n = 0;
    for (int i = 0; live && i < a->n; i++)
        if (a->recs[i]->pid > 0) live[n++] = a->recs[i];
    proc_sample(live, n);
    double now = kern_now_mono();
    for (int i = 0; i < n; i++) {
        agent *g = live[i];
        if (g->kill_requested) continue;
        if (g->memory_mb && !g->cg_memory && g->rss_kb > g->memory_mb * 1024)
            snprintf(g->reason, sizeof g->reason,
                     "out of memory: resident %ld MiB over limits.memory_mb %ld (the kernel's watchdog)", g->rss_kb / 1024,
                     g->memory_mb);
        else if (g->wall_s && now - g->mono_start > (double)g->wall_s)
            snprintf(g->reason, sizeof g->reason, "limits.wall_s (%ld s) reached", g->wall_s);
        else continue;
        g->kill_requested = true;
        log_warn("agent %s (%s): %s; killing it", g->id, g->name, g->reason);
        agent_signal(a, g, SIGKILL);
    }
    free(live);
}

static void restarts(agents_t *a) {
    double now = kern_now_mono();
    for (int i = 0; i < a->n && !a->stop; i++) {
        agent *g = a->recs[i];
        if (!g->restart_at || g->restart_at > now || a->n_alive >= a->cfg->procs.max_running) continue;
        char err[512];
        g->restarts++;
        g->restart_at = 0;
        if (agents_spawn(a, g, err, sizeof err)) {
            snprintf(g->reason, sizeof g->reason, "restart %d failed: %.200s", g->restarts, err);
            log_warn("agent %s (%s): %s", g->id, g->name, g->reason);
            agents_save(a, g);
        }
    }
}

/* The poll set from the table (mu held); slots[i] names what fds[i] is. */
static int poll_set(agents_t *a, struct pollfd *fds, slot *slots, int max) {
    int n = 1;
    fds[0] = (struct pollfd){.fd = a->wake_fd, .events = POLLIN};
    for (int i = 0; i < a->n && n + 3 <= max; i++) {
        agent *g = a->recs[i];
        int f[3] = {g->pidfd, g->out_fd, g->err_fd};
        for (int k = 0; k < 3; k++)
            if (f[k] >= 0) {
                fds[n] = (struct pollfd){.fd = f[k], .events = POLLIN};
                slots[n] = (slot){.which = k, .fd = f[k]};
                snprintf(slots[n].id, sizeof slots[n].id, "%s", g->id);
                n++;
            }
    }
    return n;
}

/* Handles the ready descriptors (mu held); ended processes are added to out. */
static int handle(agents_t *a, struct pollfd *fds, slot *slots, int n, ended *out, int max) {
    int n_out = 0;
    for (int i = 1; i < n; i++) {
        if (!fds[i].revents) continue;
        agent *g = agents_find(a, slots[i].id);
        if (!g) continue;
        if (slots[i].which == 1 && g->out_fd == slots[i].fd) pump(a, g, &g->out_fd, true, false);
        else if (slots[i].which == 2 && g->err_fd == slots[i].fd) pump(a, g, &g->err_fd, false, false);
        else if (slots[i].which == 0 && g->pidfd == slots[i].fd && g->pid > 0) {
            bool held = g->state == AGENT_STOPPED;
            if (reap(a, g) && n_out < max) {
                snprintf(out[n_out].name, sizeof out[n_out].name, "%s", g->name);
                out[n_out++].was_held = held;
            }
        }
    }
    return n_out;
}

static void *sup_main(void *arg) {
    agents_t *a = arg;
    enum { MAXFD = 3 * 4096 + 1 };
    struct pollfd *fds = calloc(MAXFD, sizeof *fds);
    slot *slots = calloc(MAXFD, sizeof *slots);
    ended gone[64];
    double next_tick = 0, stop_since = 0;
    for (bool last = false; fds && slots && !last;) {
        pthread_mutex_lock(&a->mu);
        if (a->stop && !stop_since) stop_since = kern_now_mono();
        last = a->stop && (a->n_alive == 0 || kern_now_mono() - stop_since > 5);
        if (last && a->n_alive)
            log_warn("agents: %d agent processes did not end within 5 s of SIGKILL; leaving them", a->n_alive);
        int n = poll_set(a, fds, slots, MAXFD);
        pthread_mutex_unlock(&a->mu);
        int wait_ms = (int)((next_tick - kern_now_mono()) * 1000);
        poll(fds, (nfds_t)n, last ? 0 : wait_ms < 0 ? 0 : wait_ms);
        uint64_t junk;
        if (fds[0].revents && read(a->wake_fd, &junk, sizeof junk) < 0) {}
        pthread_mutex_lock(&a->mu);
        int n_gone = handle(a, fds, slots, n, gone, 64);
        if (kern_now_mono() >= next_tick) {
            for (int i = 0; i < a->n && n_gone < 64; i++) { /* no pidfd (Linux before 5.3): reaped here */
                agent *g = a->recs[i];
                bool held = g->state == AGENT_STOPPED;
                if (g->pid > 0 && g->pidfd < 0 && reap(a, g)) {
                    snprintf(gone[n_gone].name, sizeof gone[n_gone].name, "%s", g->name);
                    gone[n_gone++].was_held = held;
                }
            }
            watchdog(a);
            restarts(a);
            for (int i = 0; i < a->n; i++)
                if (a->recs[i]->dirty) agents_save(a, a->recs[i]);
            next_tick = kern_now_mono() + TICK_S;
        }
        pthread_mutex_unlock(&a->mu);
        for (int i = 0; i < n_gone; i++) { /* outside the lock: the hooks take the cores' and the server's */
            if (gone[i].was_held && a->p.hooks.hold) a->p.hooks.hold(a->p.hooks.ctx, gone[i].name, false);
            if (a->p.hooks.cancel) a->p.hooks.cancel(a->p.hooks.ctx, gone[i].name);
        }
    }
    free(fds);
    free(slots);
    return NULL;
}

int agents_supervisor_start(agents_t *a, char *err, size_t errlen) {
    a->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (a->wake_fd < 0 || pthread_create(&a->thread, NULL, sup_main, a)) {
        snprintf(err, errlen, "agents: cannot start the supervisor: %s", strerror(errno));
        return AIOS_ERR_IO;
    }
    a->thread_running = true;
    return AIOS_OK;
}

void agents_supervisor_stop(agents_t *a) {
    if (a->thread_running) {
        agents_wake(a);
        pthread_join(a->thread, NULL);
        a->thread_running = false;
    }
    if (a->wake_fd >= 0) close(a->wake_fd);
    a->wake_fd = -1;
}

/* ---------- logs for the API ---------- */

/* The last max bytes of g's log, the rotated file first (mu held). */
static void tail_locked(agents_t *a, agent *g, size_t max, strbuf *out) {
    char cur[AIOS_PATH_MAX * 2], old[AIOS_PATH_MAX * 2];
    agents_path(a, g, "output.log", cur, sizeof cur);
    agents_path(a, g, "output.log.1", old, sizeof old);
    struct stat st;
    size_t in_cur = stat(cur, &st) == 0 ? (size_t)st.st_size : 0;
    if (in_cur < max) sb_append_file_tail(out, old, max - in_cur);
    sb_append_file_tail(out, cur, max);
}

int agents_log_tail(agents_t *a, const char *id, size_t max, strbuf *out) {
    pthread_mutex_lock(&a->mu);
    agent *g = agents_find(a, id);
    if (g) tail_locked(a, g, max, out);
    pthread_mutex_unlock(&a->mu);
    return g ? AIOS_OK : AIOS_ERR_NOT_FOUND;
}

int agents_follow(agents_t *a, const char *id, size_t tail, syscall_t *sc) {
    strbuf t;
    sb_init(&t, 0);
    int rc = AIOS_OK;
    pthread_mutex_lock(&a->mu); /* the tail and the subscription at one point of the output */
    agent *g = agents_find(a, id);
    if (g) tail_locked(a, g, tail, &t);
    if (g && t.len) syscall_emit(sc, t.data, t.len);
    if (g && agent_alive(g) && g->n_followers < AGENT_MAX_FOLLOWERS) g->followers[g->n_followers++] = syscall_ref(sc);
    else if (g && agent_alive(g)) rc = AIOS_ERR_BUSY;
    else if (g) syscall_complete(sc, AIOS_OK, NULL);
    pthread_mutex_unlock(&a->mu);
    sb_free(&t);
    return g ? rc : AIOS_ERR_NOT_FOUND;
}
