/*
 * tools_internal.h - internal to the tools module: the tool definition every source
 * produces (manifest.c, mcp.c, builtin.c), and the runners (sandbox.c, mcp.c, builtin.c).
 */
#ifndef AIOS_TOOLS_INTERNAL_H
#define AIOS_TOOLS_INTERNAL_H

#include <sys/types.h>
#include "tools.h"

typedef enum tool_kind { TOOL_KIND_PROCESS, TOOL_KIND_MCP, TOOL_KIND_BUILTIN } tool_kind;
typedef enum tool_fs { TOOL_FS_NONE, TOOL_FS_RO, TOOL_FS_WORKDIR } tool_fs;

typedef struct mcp_server mcp_server;
typedef struct tool_def tool_def;

/* What a run needs besides the definition. */
typedef struct tool_run {
    tool_manager *tm;
    const char *agent;
    const char *params; /* JSON text */
    const cJSON *params_json;
    const atomic_bool *cancel; /* the syscall's */
    const atomic_bool *stop;   /* the manager's (shutdown) */
    long max_output;
    strbuf *out; /* bounded by max_output + marker room */
    bool *out_json, *truncated;
    char *err;
    size_t errlen;
} tool_run;

typedef int (*builtin_fn)(const tool_run *run);

struct tool_def {
    atomic_int refs;
    char name[TOOL_NAME_MAX];
    char *description;
    cJSON *schema; /* parameters; NULL = any object */
    tool_kind kind;
    char version[32];
    char source[AIOS_PATH_MAX]; /* manifest file, "mcp:<server>" or "builtin" */
    /* process */
    char dir[AIOS_PATH_MAX]; /* the manifest's directory, /tool in the sandbox */
    char command[AIOS_PATH_MAX];
    char **args;
    int n_args;
    tool_fs fs;
    bool network;
    int cpu_seconds, memory_mb, file_size_mb, max_procs;
    /* all */
    int timeout_ms, max_parallel;
    bool irreversible;
    /* mcp */
    mcp_server *mcp; /* borrowed: servers live as long as the manager */
    char remote[TOOL_NAME_MAX];
    /* builtin */
    builtin_fn fn;
    const char *storage_op; /* a built-in acting on the caller's storage: its operation; else NULL */
};

tool_def *tool_def_new(void);
tool_def *tool_def_ref(tool_def *d);
void tool_def_unref(tool_def *d); /* accepts NULL */

/* manifest.c: parses one manifest file; NULL with err "FILE: FIELD: reason". */
tool_def *manifest_load(const char *path, const aios_config *cfg, char *err, size_t errlen);
/* manifest.c: whether name may name a tool (every source checks its names with it):
 * "author/name" segments of [A-Za-z0-9_.-], none empty or dots only, no ".." or "__". */
bool tool_name_ok(const char *name);

/* sandbox.c */
typedef struct sandbox sandbox;
sandbox *sandbox_new(const aios_config *cfg, char *err, size_t errlen);
void sandbox_free(sandbox *sb);
int sandbox_run(sandbox *sb, const tool_def *d, const tool_run *run, int timeout_ms);
/* Removes every tool workdir of agent (without following symlinks). */
int sandbox_purge_agent(sandbox *sb, const char *agent);
/* sandbox.c: the sandbox of one MCP server (see the MCP section there). m is borrowed and
 * must outlive it. NULL with err saying why (no bubblewrap, a bind that would expose the
 * kernel's files, ...): the server is not started. */
typedef struct sandbox_mcp sandbox_mcp;
sandbox_mcp *sandbox_mcp_new(const aios_config *kcfg, const aios_mcp_cfg *m, char *err, size_t errlen);
void sandbox_mcp_free(sandbox_mcp *p); /* accepts NULL */
/* Starts the server under bubblewrap as the leader of its own process group: *pid, and
 * the kernel's ends of its stdin, stdout and stderr in fds[0..2] (close-on-exec). */
int sandbox_mcp_spawn(sandbox_mcp *p, pid_t *pid, int fds[3], char *err, size_t errlen);

/* mcp.c: servers start in the background; tools appear once listed. changed(ctx) runs
 * (from the server's thread) whenever a server's tool list changes. */
mcp_server *mcp_start(const aios_mcp_cfg *cfg, const aios_config *kcfg, void (*changed)(void *), void *ctx);
void mcp_stop(mcp_server *s); /* accepts NULL */
/* Appends a tool_def (refs 1) per listed tool to defs (grown with realloc). */
int mcp_tools(mcp_server *s, tool_def ***defs, int *n, int *cap);
int mcp_call(mcp_server *s, const tool_def *d, const tool_run *run, int timeout_ms);
unsigned long long mcp_restarts(mcp_server *s);
/* The reader without a process (the fuzz harness tests/fuzz/fuzz_mcp.c): what a server
 * that wrote `out` (n bytes) on its stdout would have told the kernel, read by the code that
 * reads a live one. Its answers to ids 1 (initialize) and 2 (tools/list) give the tools,
 * added to defs (mcp_tools); its answer to id 3 is the tools/call of d with run: the result
 * code, run->out and run->err as mcp_call gives them. What it asks is answered on answer_fd. */
int mcp_replay(const aios_mcp_cfg *cfg, const aios_config *kcfg, const char *out, size_t n, int answer_fd, tool_def ***defs,
               int *nd, int *cap, const tool_def *d, const tool_run *run);

/* builtin.c */
int builtin_tools(storage_manager *st, tool_def ***defs, int *n, int *cap);
/* {name: parameters schema} of every built-in (the grammar property test); caller frees. */
cJSON *builtin_schemas(void);
storage_manager *tools_storage(tool_manager *tm);

/* Appends d to a growing array. */
int tool_defs_push(tool_def ***defs, int *n, int *cap, tool_def *d);

#endif
