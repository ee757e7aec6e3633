/*
 * cgroup.c - agents in cgroups of their own (cgroup v2), where the host delegates one to
 * the kernel (issue 14, part 2; docs/agents.md "Limits"), and the one place an agent is
 * stopped, resumed and killed.
 *
 * agents.cgroup names the delegated directory: "auto" (the default) is the kernel's own
 * cgroup on the cgroup2 mount (/proc/self/cgroup's "0::" line, as under systemd with
 * Delegate=yes, or the root of a host's unified hierarchy), "off" none, or a path. The
 * kernel makes <base>/aios-<its pid>/ and one agent-<id>/ below it per agent; the child
 * joins it before it execs bubblewrap, so every process of the agent is in it from the
 * start. Then, per what the host delegates:
 *   memory.max (+ memory.swap.max 0, memory.oom.group 1)  limits.memory_mb, OOM by the host
 *   cpu.weight                                             limits.cpu_weight
 *   pids.max                                               limits.pids (+1: bubblewrap)
 *   cgroup.freeze                                          stop / cont
 *   cgroup.kill                                            kill (every process, at once)
 * A controller the host keeps for itself (the parent's cgroup.controllers lacks it) falls
 * back to what agents.c does without cgroups (the watchdog, nice, RLIMIT_NPROC), and no
 * cgroup at all falls back to signals over the agent's pid namespace (proc.c). The record
 * says which applied (limits.mechanism).
 *
 * Controllers can be enabled for children only in a cgroup without processes of its own
 * ("no internal processes"): when the delegated cgroup holds the kernel (systemd puts the
 * service there), the kernel first moves itself into <base>/aiosd, as container runtimes do.
 * A kernel's aios-<pid> left by a crash is emptied (cgroup.kill) and removed at the next
 * start.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "agents_internal.h"

/* ---------- files ---------- */

static int cg_write(const char *dir, const char *file, const char *val) {
    char p[AIOS_PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    int fd = open(p, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    size_t n = strlen(val);
    int rc = write(fd, val, n) == (ssize_t)n ? 0 : errno;
    close(fd);
    return rc;
}

static bool cg_has(const char *dir, const char *file) {
    char p[AIOS_PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    return access(p, F_OK) == 0;
}

/* The whole (small) file into buf; false if it cannot be read. */
static bool cg_read(const char *dir, const char *file, char *buf, size_t cap) {
    char p[AIOS_PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    buf[n > 0 ? n : 0] = 0;
    return n >= 0;
}

/* The value of "key N" in a flat-keyed file (cgroup.events, memory.events); -1 = none. */
static long cg_key(const char *dir, const char *file, const char *key) {
    char buf[1024];
    if (!cg_read(dir, file, buf, sizeof buf)) return -1;
    size_t kl = strlen(key);
    for (char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (!strncmp(l, key, kl) && l[kl] == ' ') return strtol(l + kl + 1, NULL, 10);
    return -1;
}

/* Whether word is one of the space-separated words of list. */
static bool has_word(const char *list, const char *word) {
    size_t n = strlen(word);
    for (const char *p = strstr(list, word); p; p = strstr(p + 1, word))
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\n' || !p[n])) return true;
    return false;
}

/* Kills what is left in cgroup dir and removes it; true when it is gone. */
static bool cg_remove_dir(const char *dir, double wait_s) {
    if (rmdir(dir) == 0 || errno == ENOENT) return true;
    if (errno != EBUSY) return false;
    cg_write(dir, "cgroup.kill", "1");
    for (double t = 0; t < wait_s; t += 0.01) {
        if (rmdir(dir) == 0 || errno == ENOENT) return true;
        usleep(10000);
    }
    return false;
}

/* A kernel's directory: every agent-* below it, then itself. */
static bool cg_remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[AIOS_PATH_MAX + 300];
        while ((e = readdir(d)))
            if (!strncmp(e->d_name, "agent-", 6)) {
                snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
                cg_remove_dir(p, 1);
            }
        closedir(d);
    }
    return cg_remove_dir(dir, 1);
}

/* ---------- finding the delegated cgroup ---------- */

/* The cgroup2 mount point and the kernel's own cgroup on it: base = mount + path. */
static bool own_cgroup(char *base, size_t cap, char *mount, size_t mcap) {
    char line[4096], path[AIOS_PATH_MAX] = "";
    FILE *f = fopen("/proc/self/cgroup", "re");
    bool found = false;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "0::", 3)) {
            line[strcspn(line, "\n")] = 0;
            snprintf(path, sizeof path, "%.1000s", line + 3);
            found = true;
        }
    if (f) fclose(f);
    if (!found || !(f = fopen("/proc/self/mountinfo", "re"))) return false;
    found = false;
    while (!found && fgets(line, sizeof line, f)) {
        /* id parent maj:min root mountpoint options [optional...] - fstype source ... */
        char *sep = strstr(line, " - "), *save = NULL;
        if (!sep || strncmp(sep + 3, "cgroup2 ", 8)) continue;
        char *tok = strtok_r(line, " ", &save);
        for (int i = 1; tok && i < 5; i++) tok = strtok_r(NULL, " ", &save);
        if (tok) {
            snprintf(mount, mcap, "%s", tok);
            found = true;
        }
    }
    fclose(f);
    if (found) snprintf(base, cap, "%.400s%.600s", mount, strcmp(path, "/") ? path : "");
    return found;
}

/* Empties and removes the directories of kernels that are gone (aios-<pid>, pid dead, or
 * this very pid: a kernel before us that had it, in a container where pids repeat). */
static void sweep_stale(const char *base) {
    DIR *d = opendir(base);
    if (!d) return;
    struct dirent *e;
    char p[AIOS_PATH_MAX + 300];
    while ((e = readdir(d))) {
        char *end;
        long pid = strncmp(e->d_name, "aios-", 5) ? 0 : strtol(e->d_name + 5, &end, 10);
        if (pid <= 0 || *end || (pid != getpid() && (kill((pid_t)pid, 0) == 0 || errno != ESRCH))) continue;
        snprintf(p, sizeof p, "%s/%s", base, e->d_name);
        log_info("agents: removing cgroup %s, left by a kernel that is gone", p);
        cg_remove_tree(p);
    }
    closedir(d);
}

/* Enables the controllers agents use that base offers, in base and in dir; when base holds
 * processes (the kernel's own), the kernel moves into base/aiosd first. */
static void enable_controllers(agents_cg *cg, const char *base) {
    char avail[512];
    if (!cg_read(base, "cgroup.controllers", avail, sizeof avail)) return;
    static const char *const WANT[] = {"memory", "cpu", "pids"};
    bool *on[] = {&cg->memory, &cg->cpu, &cg->pids};
    for (int i = 0; i < 3; i++) {
        if (!has_word(avail, WANT[i])) continue;
        char w[16];
        snprintf(w, sizeof w, "+%s", WANT[i]);
        int rc = cg_write(base, "cgroup.subtree_control", w);
        if (rc == EBUSY) { /* the kernel is in base ("no internal processes"): into a leaf of its own */
            char leaf[AIOS_PATH_MAX + 16], pid[24];
            snprintf(leaf, sizeof leaf, "%s/aiosd", base);
            snprintf(pid, sizeof pid, "%d", (int)getpid());
            if ((mkdir(leaf, 0755) == 0 || errno == EEXIST) && cg_write(leaf, "cgroup.procs", pid) == 0) {
                log_info("agents: the kernel moved into cgroup %s, so that %s can delegate controllers to its agents", leaf,
                         base);
                rc = cg_write(base, "cgroup.subtree_control", w);
            }
        }
        if (!rc) rc = cg_write(cg->dir, "cgroup.subtree_control", w);
        *on[i] = rc == 0;
        if (rc) log_info("agents: cgroup controller %s not delegated to %s (%s)", WANT[i], cg->dir, strerror(rc));
    }
}

void cg_open(agents_t *a) {
    agents_cg *cg = &a->cg;
    memset(cg, 0, sizeof *cg);
    const char *conf = a->cfg->procs.cgroup;
    char base[AIOS_PATH_MAX], mount[AIOS_PATH_MAX] = "";
    if (!strcmp(conf, "off")) {
        snprintf(cg->why, sizeof cg->why, "agents.cgroup is off");
        return;
    }
    if (strcmp(conf, "auto")) snprintf(base, sizeof base, "%s", conf);
    else if (!own_cgroup(base, sizeof base, mount, sizeof mount)) {
        snprintf(cg->why, sizeof cg->why, "no cgroup2 file system is mounted");
        return;
    }
    if (!cg_has(base, "cgroup.subtree_control")) {
        snprintf(cg->why, sizeof cg->why, "%.200s is not a cgroup v2 directory", base);
        return;
    }
    if (access(base, W_OK) || access(base, X_OK)) {
        snprintf(cg->why, sizeof cg->why, "cgroup %.180s is not delegated to the kernel (not writable)", base);
        return;
    }
    sweep_stale(base);
    if (strlen(base) > 900) {
        snprintf(cg->why, sizeof cg->why, "the cgroup path %.100s... is too long", base);
        return;
    }
    snprintf(cg->dir, sizeof cg->dir, "%.900s/aios-%d", base, (int)getpid());
    if ((mkdir(cg->dir, 0755) && errno != EEXIST)) {
        snprintf(cg->why, sizeof cg->why, "cannot make a cgroup in %.150s: %s", base, strerror(errno));
        cg->dir[0] = 0;
        return;
    }
    cg->freeze = cg_has(cg->dir, "cgroup.freeze");
    cg->kill = cg_has(cg->dir, "cgroup.kill");
    enable_controllers(cg, base);
    log_info("agents: each agent runs in a cgroup of its own under %s (controllers:%s%s%s%s; freezer %s, cgroup.kill %s)",
             cg->dir, cg->memory ? " memory" : "", cg->cpu ? " cpu" : "", cg->pids ? " pids" : "",
             cg->memory || cg->cpu || cg->pids ? "" : " none delegated", cg->freeze ? "yes" : "no", cg->kill ? "yes" : "no");
}

void cg_close(agents_t *a) {
    if (a->cg.dir[0] && !cg_remove_tree(a->cg.dir)) log_warn("agents: cgroup %s is still busy; left in place", a->cg.dir);
    a->cg.dir[0] = 0;
}

/* ---------- one agent's ---------- */

static void set_limit(const char *dir, const char *file, long long v, bool *ok) {
    char s[32];
    snprintf(s, sizeof s, "%lld", v);
    int rc = cg_write(dir, file, s);
    if (rc) log_warn("agents: %s/%s = %s: %s", dir, file, s, strerror(rc));
    *ok = *ok && rc == 0;
}

int cg_prepare(agents_t *a, agent *g, int *procs_fd, char *err, size_t errlen) {
    *procs_fd = -1;
    g->cg[0] = 0;
    g->cg_memory = g->cg_cpu = g->cg_pids = false;
    if (!a->cg.dir[0]) return AIOS_OK;
    snprintf(g->cg, sizeof g->cg, "%.950s/agent-%s", a->cg.dir, g->id);
    if (!cg_remove_dir(g->cg, 1) || mkdir(g->cg, 0755)) { /* (a restart's: left by the last run) */
        snprintf(err, errlen, "cgroup %s: %s", g->cg, strerror(errno));
        g->cg[0] = 0;
        return AIOS_ERR_IO;
    }
    bool ok = true;
    if (a->cg.memory && g->memory_mb) {
        set_limit(g->cg, "memory.max", (long long)g->memory_mb << 20, &ok);
        if (cg_has(g->cg, "memory.swap.max")) set_limit(g->cg, "memory.swap.max", 0, &ok);
        set_limit(g->cg, "memory.oom.group", 1, &ok);
        g->cg_memory = ok;
    }
    if (a->cg.cpu && g->cpu_weight != 100) {
        set_limit(g->cg, "cpu.weight", g->cpu_weight, &ok);
        g->cg_cpu = ok;
    }
    if (a->cg.pids && g->pids) {
        set_limit(g->cg, "pids.max", g->pids + 1, &ok);
        g->cg_pids = ok;
    }
    char p[AIOS_PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/cgroup.procs", g->cg);
    if (!ok || (*procs_fd = open(p, O_WRONLY | O_CLOEXEC)) < 0) {
        snprintf(err, errlen, "cgroup %s: its limits could not be set (the kernel's log says which)", g->cg);
        cg_remove_dir(g->cg, 0);
        g->cg[0] = 0;
        return AIOS_ERR_IO;
    }
    return AIOS_OK;
}

void cg_release(agent *g) {
    if (!g->cg[0]) return;
    if (g->cg_memory && !g->kill_requested && cg_key(g->cg, "memory.events", "oom_kill") > 0)
        snprintf(g->reason, sizeof g->reason, "out of memory: limits.memory_mb %ld reached (cgroup memory.max)", g->memory_mb);
    if (cg_remove_dir(g->cg, 1)) g->cg[0] = 0;
    else log_warn("agents: cgroup %s is still busy; removed at the kernel's end", g->cg);
}

void agent_signal(agents_t *a, agent *g, int sig) {
    if (g->pid <= 0) return;
    bool in_cg = g->cg[0] != 0;
    if (in_cg && a->cg.freeze && (sig == SIGSTOP || sig == SIGCONT)) {
        int rc = cg_write(g->cg, "cgroup.freeze", sig == SIGSTOP ? "1" : "0");
        if (!rc) return;
        log_warn("agents: %s/cgroup.freeze: %s; signalling instead", g->cg, strerror(rc));
    }
    if (in_cg && a->cg.kill && sig == SIGKILL) {
        int rc = cg_write(g->cg, "cgroup.kill", "1");
        if (!rc) return;
        log_warn("agents: %s/cgroup.kill: %s; signalling instead", g->cg, strerror(rc));
    }
    proc_signal_tree(g, sig);
}

bool cg_frozen(const agent *g) { return g->cg[0] && cg_key(g->cg, "cgroup.events", "frozen") == 1; }
