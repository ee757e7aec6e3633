/*
 * proc.c - what the agents module learns from /proc: which processes belong to an agent
 * (those in its pid namespace: bubblewrap makes the agent pid 1 of a new one, and every
 * descendant stays inside), their resident memory and CPU time (the watchdog and the
 * record), and signalling all of them (stop / cont / kill reach the whole tree even when
 * the agent's children left its process group).
 *
 * One scan of /proc per tick serves every agent: the namespace of each process is one
 * stat(2) of /proc/PID/ns/pid, matched against the agents' namespaces.
 */
#include <ctype.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "agents_internal.h"

static ino_t ns_of(pid_t pid) {
    char p[64];
    struct stat st;
    snprintf(p, sizeof p, "/proc/%d/ns/pid", (int)pid);
    return stat(p, &st) == 0 ? st.st_ino : 0;
}

/* Calls fn(pid, ctx) for each process of /proc. */
static void each_pid(void (*fn)(pid_t pid, void *ctx), void *ctx) {
    DIR *d = opendir("/proc");
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)))
        if (isdigit((unsigned char)e->d_name[0])) fn((pid_t)atoi(e->d_name), ctx);
    closedir(d);
}

/* Of one process, from /proc/PID/stat: its parent, utime + stime (clock ticks) and resident
 * pages. */
static bool stat_of(pid_t pid, int *ppid, unsigned long long *ticks, long *rss_pages) {
    char p[64], buf[1024];
    snprintf(p, sizeof p, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(p, "r");
    if (!f) return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *s = strrchr(buf, ')'); /* the command may hold spaces and parentheses */
    unsigned long long ut = 0, st = 0;
    /* after ")": state(3) ppid(4) pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15)
     * cutime cstime priority nice num_threads itrealvalue starttime vsize rss(24) */
    if (!s ||
        sscanf(s + 1, " %*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d %*u %*u %ld", ppid, &ut, &st,
               rss_pages) != 4)
        return false;
    *ticks = ut + st;
    return true;
}

typedef struct child_ctx {
    pid_t parent, child;
} child_ctx;

static void child_one(pid_t pid, void *ctx) {
    child_ctx *c = ctx;
    int ppid;
    unsigned long long t;
    long rss;
    if (!c->child && stat_of(pid, &ppid, &t, &rss) && ppid == c->parent) c->child = pid;
}

/* The first child of pid: from /proc/PID/task/PID/children, or a scan of /proc for a kernel
 * without CONFIG_PROC_CHILDREN. */
static pid_t first_child(pid_t pid) {
    char p[64], buf[64];
    snprintf(p, sizeof p, "/proc/%d/task/%d/children", (int)pid, (int)pid);
    FILE *f = fopen(p, "r");
    if (f) {
        int child = fgets(buf, sizeof buf, f) ? atoi(buf) : 0;
        fclose(f);
        return child;
    }
    child_ctx c = {.parent = pid};
    each_pid(child_one, &c);
    return c.child;
}

/* g's namespace, from bubblewrap's child (the agent, pid 1 inside); 0 until it exists (a
 * moment after the start: asked again, briefly, when wait is set). */
static ino_t agent_ns(agent *g, bool wait) {
    for (int tries = 0; !g->pidns && g->pid > 0 && tries < (wait ? 40 : 1); tries++) {
        if (tries) usleep(5000);
        pid_t child = first_child(g->pid);
        ino_t own = ns_of(g->pid), ns = child > 0 ? ns_of(child) : 0;
        if (ns && ns != own) g->pidns = ns;
    }
    return g->pidns;
}

typedef struct sig_ctx {
    ino_t ns;
    int sig, hits;
} sig_ctx;

static void sig_one(pid_t pid, void *ctx) {
    sig_ctx *c = ctx;
    if (ns_of(pid) == c->ns && kill(pid, c->sig) == 0) c->hits++;
}

void proc_signal_tree(agent *g, int sig) {
    if (g->pid <= 0) return;
    ino_t ns = agent_ns(g, true);
    if (sig == SIGCONT) kill(g->pid, sig); /* bubblewrap first when resuming, last when stopping */
    /* twice: a process forked between the scan and the signal is caught by the second */
    for (int pass = 0; ns && pass < 2; pass++) {
        sig_ctx c = {.ns = ns, .sig = sig};
        each_pid(sig_one, &c);
    }
    if (sig != SIGCONT) kill(g->pid, sig);
}

typedef struct sample_ctx {
    agent **recs;
    int n;
    unsigned long long *ticks;
} sample_ctx;

static void sample_one(pid_t pid, void *ctx) {
    sample_ctx *c = ctx;
    ino_t ns = ns_of(pid);
    for (int i = 0; ns && i < c->n; i++) {
        agent *g = c->recs[i];
        if (g->pidns != ns) continue;
        unsigned long long t;
        long pages;
        int ppid;
        if (stat_of(pid, &ppid, &t, &pages)) {
            c->ticks[i] += t;
            g->rss_kb += pages * (sysconf(_SC_PAGESIZE) / 1024);
            g->n_procs++;
        }
        return;
    }
}

void proc_sample(agent **recs, int n) {
    if (n <= 0) return;
    unsigned long long ticks[n];
    memset(ticks, 0, sizeof ticks);
    for (int i = 0; i < n; i++) {
        agent_ns(recs[i], false);
        recs[i]->rss_kb = 0;
        recs[i]->n_procs = 0;
    }
    sample_ctx c = {.recs = recs, .n = n, .ticks = ticks};
    each_pid(sample_one, &c);
    double hz = (double)sysconf(_SC_CLK_TCK);
    for (int i = 0; i < n; i++) {
        agent *g = recs[i];
        if (g->rss_kb > g->peak_rss_kb) g->peak_rss_kb = g->rss_kb;
        if (ticks[i] / hz > g->cpu_s) g->cpu_s = ticks[i] / hz; /* the live ones; the dead are in rusage at the end */
    }
}
