/*
 * agents_internal.h - shared by the agents module's files: the record of one agent and the
 * manager. agents.c owns the table, specs, start, signals and persistence; supervisor.c the
 * thread that reaps, pumps output into the logs and runs the watchdog (proc.c reads /proc).
 */
#ifndef AIOS_AGENTS_INTERNAL_H
#define AIOS_AGENTS_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>
#include <sys/types.h>
#include "agents.h"
#include "../tools/tools.h"

#define AGENT_ID_LEN 17 /* 16 hex digits */
#define AGENT_MAX_ARGS 64
#define AGENT_MAX_ENV 64
#define AGENT_MAX_FOLLOWERS 16
#define AGENT_LAST_LINE 4096

typedef enum agent_state { AGENT_STARTING, AGENT_RUNNING, AGENT_STOPPED, AGENT_EXITED, AGENT_KILLED, AGENT_LOST } agent_state;

typedef struct agent {
    char id[AGENT_ID_LEN];
    char name[AIOS_NAME_MAX]; /* its identity */
    char group[AIOS_NAME_MAX];
    char package[AIOS_NAME_MAX]; /* AIOS agent_id, "" for a native spec */
    cJSON *spec;                 /* owned: the normalised spec (command, env, limits, ...) */
    agent_state state;
    bool restart_on_failure;
    int restarts;
    double restart_at; /* monotonic; 0 = none pending */
    /* the process */
    pid_t pid;                 /* bubblewrap's; 0 = none */
    int pidfd, out_fd, err_fd; /* -1 when closed */
    ino_t pidns;               /* its pid namespace (0: not known yet) */
    double started, ended;     /* wall clock */
    double mono_start;
    int exit_code, term_signal; /* -1 when not applicable */
    char reason[256];           /* why it ended, when not by itself */
    bool kill_requested;
    double cpu_s;
    long rss_kb, peak_rss_kb;
    int n_procs;
    /* limits and how they were applied */
    long memory_mb, wall_s;
    int pids, cpu_weight;
    char net_how[256], limits_how[512];
    char cg[AIOS_PATH_MAX];          /* its cgroup (cgroup.c); "" = none */
    bool cg_memory, cg_cpu, cg_pids; /* limits its cgroup enforces (else the fallbacks) */
    /* accounting */
    unsigned long long syscalls, tokens, tools;
    double wait_s; /* its syscalls' time in run queues (this run, not persisted) */
    /* output */
    int log_fd;
    long log_size;                   /* bytes in the current file */
    char last_line[AGENT_LAST_LINE]; /* of stdout: an AIOS agent's result */
    size_t last_len;
    bool line_done; /* last_line holds a complete line and the next byte starts a new one */
    syscall_t *followers[AGENT_MAX_FOLLOWERS];
    int n_followers;
    bool dirty; /* its row needs saving */
} agent;

/* The cgroup v2 directory delegated to this kernel, and what it can do there (cgroup.c). */
typedef struct agents_cg {
    char dir[AIOS_PATH_MAX]; /* <base>/aios-<pid>: agents' cgroups go below; "" = none (why says) */
    char why[256];
    bool memory, cpu, pids; /* controllers enabled for agents */
    bool freeze, kill;      /* cgroup.freeze, cgroup.kill */
} agents_cg;

struct agents {
    agents_params p;
    const aios_config *cfg;
    sandbox_procs *sandbox;
    sqlite3 *db;
    pthread_mutex_t mu;
    agent **recs; /* oldest first */
    int n, cap;
    int n_alive;
    strmap live; /* identity name -> its live agent (a process): every request asks */
    pthread_t thread;
    bool thread_running;
    int wake_fd; /* eventfd: the supervisor re-reads the table */
    bool stop;
    char dir[AIOS_PATH_MAX]; /* agents.workdir, or <data_dir>/agents */
    bool own_uids;           /* other uids can reach dir: agents may run under their own */
    char kernel_url[128];
    agents_cg cg;
};

const char *agent_state_name(agent_state s);
bool agent_alive(const agent *g);
agent *agents_find(agents_t *a, const char *id); /* mu held */
/* supervisor.c */
int agents_supervisor_start(agents_t *a, char *err, size_t errlen);
void agents_supervisor_stop(agents_t *a);
void agents_wake(agents_t *a);
/* The process ended (status from waitpid, rusage times): the record is finished (mu held). */
void agents_finish(agents_t *a, agent *g, int status, double cpu_s, long maxrss_kb);
/* Saves g's row (mu held). */
void agents_save(agents_t *a, agent *g);
/* Starts g's process (again, for a restart); mu held. */
int agents_spawn(agents_t *a, agent *g, char *err, size_t errlen);
/* The directory of g's files (log, workdir). */
void agents_path(const agents_t *a, const agent *g, const char *leaf, char *out, size_t cap);
/* cgroup.c: finds (or not) the delegated cgroup and makes this kernel's directory there;
 * cg_close removes it (agents gone). */
void cg_open(agents_t *a);
void cg_close(agents_t *a);
/* Makes g's cgroup with its limits; *procs_fd (< 0: no cgroup) is its cgroup.procs opened
 * for writing, for the child to join (the caller closes it). mu held. */
int cg_prepare(agents_t *a, agent *g, int *procs_fd, char *err, size_t errlen);
/* After g's process ended: an OOM kill by memory.max goes into g->reason; the cgroup goes. */
void cg_release(agent *g);
/* Whether g's cgroup is frozen now. */
bool cg_frozen(const agent *g);
/* SIGSTOP / SIGCONT / SIGKILL to all of g: its cgroup's freezer or cgroup.kill, else
 * signals over its pid namespace. mu held. */
void agent_signal(agents_t *a, agent *g, int sig);
/* proc.c: every process in g's pid namespace (bubblewrap's child and below) gets sig. */
void proc_signal_tree(agent *g, int sig);
/* proc.c: one scan of /proc: resident memory, CPU time and processes of every live agent. */
void proc_sample(agent **recs, int n);

#endif
