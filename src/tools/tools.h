/*
 * tools.h - the tool manager (DESIGN.md §1): tools described by manifests, validated
 * against their JSON Schema, run with per-tool parallel limits (no global lock), process
 * tools sandboxed (bubblewrap + rlimits + seccomp), MCP servers as tool providers, and
 * built-in tools for the demo agents.
 *
 * Sources of tools, merged into one table that is swapped whole when one changes:
 *   - manifests: one JSON file per tool in tools.dir (reloaded on inotify events; a bad
 *     manifest is logged with file and field and skipped, the rest keep working);
 *   - MCP servers (tools.mcp_servers): their tools/list, named "<server>/<tool>";
 *   - built-ins: aios/calculator, aios/time, aios/read_file, aios/write_file, aios/list_files.
 *
 * A tool syscall's args is a tool_batch; tools_submit starts every call (each on its own
 * thread once its tool has a free slot, else queued FIFO behind that tool's running calls)
 * and completes the syscall when the last call finished. A slow or hanging tool only
 * ever holds its own slots, never other tools or LLM work.
 */
#ifndef AIOS_TOOLS_H
#define AIOS_TOOLS_H

#include <stdatomic.h>
#include <cjson/cJSON.h>
#include "../kernel/kernel.h"
#include "../syscall/syscall.h"
#include "../storage/storage.h"
#include "../sched/sched.h"

#define TOOL_NAME_MAX 128

typedef struct tool_manager tool_manager;

/* One call: the request, then its result (written by the manager before completion). */
typedef struct tool_call {
    char name[TOOL_NAME_MAX];
    char id[48];
    cJSON *params; /* owned */
    int rc;        /* AIOS_OK or an error code */
    char *output;  /* owned: the tool's output (JSON text when output_json) */
    bool output_json, truncated;
    char err[512];
    double seconds;
} tool_call;

typedef struct tool_batch {
    char agent[AIOS_NAME_MAX];
    int n;
    tool_call *calls;
    atomic_int remaining; /* manager-side */
} tool_batch;

/* New batch of n empty calls for agent; free with tool_batch_free (the syscall's args_free). */
tool_batch *tool_batch_new(const char *agent, int n);
void tool_batch_free(void *batch);

typedef struct tool_hooks {
    void *ctx;
    /* Irreversible tools: blocks until a user decides (AIOS_OK = approved). NULL = allowed. */
    int (*approve)(void *ctx, const char *agent, const char *tool, const char *params, const atomic_bool *cancel, char *err,
                   size_t errlen);
    /* Every finished run (rc is the call's result). */
    void (*ran)(void *ctx, const char *agent, const char *tool, const char *params, int rc, double ms);
} tool_hooks;

typedef struct tool_manager_params {
    const aios_config *cfg;   /* borrowed: tools.* keys, data_dir */
    storage_manager *storage; /* borrowed; the storage built-ins (NULL: they are absent) */
    tool_hooks hooks;
} tool_manager_params;

typedef struct tool_stats {
    unsigned long long calls, failed, timeouts, truncated, rejected, mcp_restarts, reloads;
    int running, queued, tools;
} tool_stats;

tool_manager_params tool_manager_default_params(void);
/* Loads manifests, starts MCP servers (in the background) and the manifest watcher. */
tool_manager *tool_manager_new(const tool_manager_params *p, char *err, size_t errlen);
/* Kills running tool processes, fails queued calls, stops MCP servers, joins. Accepts NULL. */
void tool_manager_free(tool_manager *tm);

/* Whether name is a tool; fills *irreversible. */
bool tools_exists(tool_manager *tm, const char *name, bool *irreversible);
/* The storage operation ("read", "write", "list") a built-in storage tool makes on the
 * caller's own namespace (so the admission gate can claim it), or NULL. */
const char *tools_storage_op(tool_manager *tm, const char *name);
/* Checks a call before anything runs: AIOS_ERR_NOT_FOUND (unknown tool) or
 * AIOS_ERR_INVALID (parameters against the tool's schema; err names the field). */
int tools_validate(tool_manager *tm, const char *name, const cJSON *params, char *err, size_t errlen);
/* Queues every call of sc's batch on the tool run queue (by sc's priority and agent); sc
 * completes (AIOS_OK; per-call results in the batch) once all finished. AIOS_ERR_BUSY when
 * tools.max_pending calls are already pending; a call beyond kernel.max_jobs_per_agent
 * waiting calls of its agent fails alone (503). */
int tools_submit(tool_manager *tm, syscall_t *sc);
/* {"type":"function","function":{name, description, parameters}} or NULL if unknown. */
cJSON *tools_function_json(tool_manager *tm, const char *name);
/* Whether value satisfies a tool parameters schema (the JSON Schema subset manifests use,
 * docs/tools.md): AIOS_OK, or AIOS_ERR_INVALID with err naming the first violation. */
int tools_check_params(const cJSON *schema, const cJSON *value, char *err, size_t errlen);
/* Every tool with its manifest fields and live counters, plus manifest errors:
 * {"tools":[...], "errors":[{"file","error"}]}. */
cJSON *tools_list_json(tool_manager *tm);
void tools_get_stats(tool_manager *tm, tool_stats *out);
/* The tool resource's run queue (pull mode), for /status and /metrics. */
runq_t *tools_runq(tool_manager *tm);
/* Reads the manifests again now (SIGHUP; they also reload by themselves when tools.dir
 * changes): how many tools there are, and in *n_errors how many manifests were refused. */
int tools_reload(tool_manager *tm, int *n_errors);
/* Removes agent's tool workdirs: a new identity of a revoked name starts empty. */
int tools_purge_agent(tool_manager *tm, const char *agent);

/* ---- agent processes' sandbox (sandbox.c; used by the agents module) ----
 * An agent runs under the process tools' sandbox profile with its workdir at /work, its
 * package at /agent, and one of three network modes (see sandbox.c). */
typedef enum sandbox_net { SANDBOX_NET_NONE, SANDBOX_NET_KERNEL, SANDBOX_NET_FULL } sandbox_net;
typedef struct sandbox_procs sandbox_procs;
typedef struct sandbox_proc_spec {
    const char *const *argv;     /* argv[0]: an absolute path, or a name on /usr/bin:/bin; NULL-ended */
    const char *const *envp;     /* its whole environment; NULL-ended */
    const char *const *ro_paths; /* host directories bound read-only at their own paths (checked) */
    int n_ro;
    const char *pkg_dir;    /* bound read-only at /agent; NULL: none */
    const char *runner_dir; /* bound read-only at /runner (the Cerebrum runner's script); NULL: none */
    int workdir_fd;         /* an open directory, bound read-write at /work (its cwd) */
    int fd_out, fd_err;     /* its stdout and stderr (stdin is /dev/null) */
    int cgroup_fd;          /* its cgroup's cgroup.procs, open for writing: joined before anything else; < 0: none */
    sandbox_net net;
    long uid;      /* < 0: the kernel's */
    int max_procs; /* RLIMIT_NPROC under its own uid; 0: none */
    int nice;      /* > 0: its niceness */
} sandbox_proc_spec;
sandbox_procs *sandbox_procs_new(const aios_config *kcfg, char *err, size_t errlen);
void sandbox_procs_free(sandbox_procs *sp); /* accepts NULL */
/* How network mode net is enforced here, into how; AIOS_ERR_UNSUPPORTED (how says why)
 * when it cannot be (or bubblewrap is missing). */
int sandbox_procs_network(const sandbox_procs *sp, sandbox_net net, char *how, size_t cap);
/* The directories an absolute command needs bound to run in the sandbox: its install
 * directory (the parent of its bin/, as for a Python venv; else its own directory) and, when
 * it is a link (a venv's python), the install directory of what it links to; none that the
 * sandbox shows anyway (/usr, /bin...). How many (0..2). */
int sandbox_install_dirs(const char *command, char dirs[2][AIOS_PATH_MAX]);
/* Whether a host directory may be bound into an agent's sandbox (not the kernel's files;
 * same_path: bound at its own path, so not under /work, /agent, /dev, /proc). */
int sandbox_procs_check_path(const sandbox_procs *sp, const aios_config *kcfg, const char *path, bool same_path, const char *what,
                             char *err, size_t errlen);
/* Starts it: *pid is bubblewrap's (the leader of its own process group; the agent is pid 1
 * of its pid namespace below it, and dies with it). */
int sandbox_procs_spawn(sandbox_procs *sp, const aios_config *kcfg, const sandbox_proc_spec *s, pid_t *pid, char *err,
                        size_t errlen);

#endif
