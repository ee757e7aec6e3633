/*
 * sandbox.c - runs one process-tool call: a child per call, JSON parameters on stdin, JSON
 * (or text) on stdout, inside bubblewrap.
 *
 * The sandbox: new user, pid, ipc, uts and cgroup namespaces, and a new network namespace
 * (loopback only, nothing listening) unless the manifest allows network. The filesystem is
 * a fresh root holding /usr (and its /bin, /lib links) and /etc read-only, /dev/null,
 * /dev/zero and /dev/urandom, the tool's own directory read-only at /tool, and for
 * sandbox.fs "workdir" the agent's workdir for this tool read-write at /work ("ro": read
 * only; "none": absent). Nothing else of the host is visible, so there is nothing else to
 * write. The workdir is opened (never through a symlink, see make_workdir) and bubblewrap
 * binds that descriptor, so nothing planted on its path can redirect the mount. All
 * capabilities dropped, no new privileges, and a seccomp filter (libseccomp, exported once
 * to a memfd) that refuses ptrace, mount, namespaces, bpf, keyrings, module loading,
 * io_uring and the like, and without network socket(2) too (a second wall behind the empty
 * network namespace).
 *
 * A tool allowed the network shares the host's network namespace, so it could connect to
 * the kernel's own port and, in local mode, speak as any agent. A landlock ruleset (Linux
 * 6.7+, ABI 4: TCP connect by port) that allows every port but server.port is built once
 * (~30 ms) and applied in the child before execve (~15 ms, only for calls with network):
 * tools reach the kernel through the kernel, never over its socket. Without landlock a
 * warning says so at start.
 *
 * Limits: RLIMIT_CPU, RLIMIT_AS, RLIMIT_FSIZE, and RLIMIT_NPROC when the kernel runs as
 * root: then each running call gets its own uid (tools.sandbox_uid_base + slot), because
 * RLIMIT_NPROC counts the processes of a uid: with one shared uid, 100 concurrent calls
 * would exhaust each other's limit, and root is never limited at all.
 *
 * The child is started with clone(CLONE_VM | CLONE_VFORK): no copy of the kernel's page
 * tables (the model's mapping is large), and between clone and execve it only makes raw
 * system calls. It leads its own process group; bubblewrap's --die-with-parent and the
 * pid namespace take every descendant down when the group is killed (timeout, output
 * flood, cancellation, shutdown).
 *
 * The tool itself is pid 1 of its namespace (--as-pid-1). With bubblewrap's own reaper as
 * pid 1, bubblewrap exits as soon as that reaper reports the tool's status, before reaping
 * it; the reaper, orphaned to the host's init, lingered as a zombie of the call's uid and
 * counted against the next call's RLIMIT_NPROC (32 agents calling a no-op tool saw 2 to 3%
 * "Can't fork" failures). When pid 1 exits, the kernel kills and reaps the rest of the
 * namespace before bubblewrap sees the exit, so nothing outlives the call.
 */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tools_internal.h"

#define SANDBOX_MAX_ARGV 160
#define SANDBOX_WORK_FD "4" /* the workdir's descriptor in bubblewrap: after 0-2 and the seccomp filter's 3 */
#define STDERR_KEEP 1024

struct sandbox {
    char bwrap[AIOS_PATH_MAX]; /* "" = not installed */
    char workroot[AIOS_PATH_MAX];
    int seccomp_fd[2]; /* memfds with the BPF programs: [network allowed] */
    int port_wall;     /* landlock ruleset: no TCP connect to the kernel's port; < 0: none */
    bool merged_usr;   /* /bin is a link into /usr */
    bool switch_uid;
    long uid_base;
    pthread_mutex_t mu;
    unsigned char *slots; /* in use, per uid slot */
    int n_slots;
};

static const int DENIED[] = {
    SCMP_SYS(ptrace),
    SCMP_SYS(process_vm_readv),
    SCMP_SYS(process_vm_writev),
    SCMP_SYS(mount),
    SCMP_SYS(umount2),
    SCMP_SYS(pivot_root),
    SCMP_SYS(swapon),
    SCMP_SYS(swapoff),
    SCMP_SYS(reboot),
    SCMP_SYS(kexec_load),
    SCMP_SYS(kexec_file_load),
    SCMP_SYS(init_module),
    SCMP_SYS(finit_module),
    SCMP_SYS(delete_module),
    SCMP_SYS(bpf),
    SCMP_SYS(perf_event_open),
    SCMP_SYS(keyctl),
    SCMP_SYS(add_key),
    SCMP_SYS(request_key),
    SCMP_SYS(userfaultfd),
    SCMP_SYS(setns),
    SCMP_SYS(unshare),
    SCMP_SYS(acct),
    SCMP_SYS(quotactl),
    SCMP_SYS(open_by_handle_at),
    SCMP_SYS(name_to_handle_at),
    SCMP_SYS(iopl),
    SCMP_SYS(ioperm),
    SCMP_SYS(settimeofday),
    SCMP_SYS(clock_settime),
    SCMP_SYS(fanotify_init),
    SCMP_SYS(move_mount),
    SCMP_SYS(open_tree),
    SCMP_SYS(fsopen),
    SCMP_SYS(fsmount),
    SCMP_SYS(pidfd_getfd),
    SCMP_SYS(io_uring_setup),
    SCMP_SYS(io_uring_enter),
    SCMP_SYS(io_uring_register),
};

/* The filter of a sandbox, exported to a memfd: DENIED, and per net
 *   NONE    also socket(2) of any family (no socket, no network; socketpair(2) and pipes
 *           still work);
 *   KERNEL  also datagram, raw and seqpacket IP sockets (an agent's TCP is walled by landlock);
 *   FULL    nothing more.
 * Other architectures' system calls (int 0x80's socketcall) kill the process: libseccomp's
 * default bad-arch action. who names the sandbox in the error. */
static int build_seccomp(sandbox_net net, const char *who, char *err, size_t errlen) {
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    int fd = ctx ? memfd_create("aios-seccomp", MFD_CLOEXEC) : -1;
    int rc = fd >= 0 ? 0 : -1;
    for (size_t i = 0; !rc && i < sizeof DENIED / sizeof DENIED[0]; i++)
        if (DENIED[i] >= 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), DENIED[i], 0);
    if (!rc && net == SANDBOX_NET_NONE) rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(socket), 0);
    static const int FAM[] = {AF_INET, AF_INET6}, TYPES[] = {SOCK_DGRAM, SOCK_RAW, SOCK_SEQPACKET};
    for (int f = 0; net == SANDBOX_NET_KERNEL && !rc && f < 2; f++)
        for (int t = 0; !rc && t < 3; t++)
            rc = seccomp_rule_add(
                ctx, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(socket), 2, /* (SCMP_A0 / SCMP_A1, spelt out for clang) */
                (struct scmp_arg_cmp){.arg = 0, .op = SCMP_CMP_EQ, .datum_a = (scmp_datum_t)FAM[f]},
                (struct scmp_arg_cmp){.arg = 1, .op = SCMP_CMP_MASKED_EQ, .datum_a = 0xf, .datum_b = (scmp_datum_t)TYPES[t]});
    if (!rc) rc = seccomp_export_bpf(ctx, fd);
    if (ctx) seccomp_release(ctx);
    if (rc) {
        snprintf(err, errlen, "%s: cannot build the seccomp filter (%d)", who, rc);
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

/* What every sandbox finds on the host: bubblewrap (bwrap[0] = 0: not installed), whether
 * /bin is a link into /usr, and the tools' work root (tools.workdir, or <data_dir>/tools). */
static void host_probe(const aios_config *cfg, char bwrap[AIOS_PATH_MAX], bool *merged_usr, char workroot[AIOS_PATH_MAX]) {
    static const char *const CANDS[] = {"/usr/bin/bwrap", "/bin/bwrap", "/usr/local/bin/bwrap"};
    bwrap[0] = 0;
    for (size_t i = 0; i < 3 && !bwrap[0]; i++)
        if (access(CANDS[i], X_OK) == 0) snprintf(bwrap, AIOS_PATH_MAX, "%s", CANDS[i]);
    struct stat st;
    *merged_usr = lstat("/bin", &st) == 0 && S_ISLNK(st.st_mode);
    if (cfg->tools.workdir[0]) snprintf(workroot, AIOS_PATH_MAX, "%s", cfg->tools.workdir);
    else snprintf(workroot, AIOS_PATH_MAX, "%.1000s/tools", cfg->data_dir);
}

/* mkdir -p of the configured work root (a trusted path: symlinks in it are the operator's);
 * directories it creates get exactly mode (the kernel's umask is 077), set on the opened
 * directory, never by path. Below the root, see make_workdir. */
static int mkdir_one(const char *p, mode_t mode) {
    if (mkdir(p, mode)) return errno == EEXIST ? 0 : -1;
    int fd = open(p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int rc = fd >= 0 ? fchmod(fd, mode) : -1;
    if (fd >= 0) close(fd);
    return rc;
}

static int mkdir_p(const char *path, mode_t mode) {
    char tmp[AIOS_PATH_MAX * 2];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir_one(tmp, mode)) return -1;
            *p = '/';
        }
    return mkdir_one(tmp, mode);
}

/* ---------- the kernel's port behind a landlock wall ---------- */

/* The landlock ABI (linux/landlock.h of 6.7+; older system headers lack the network part). */
struct ll_ruleset_attr {
    uint64_t handled_access_fs, handled_access_net;
};
struct ll_net_port_attr {
    uint64_t allowed_access, port;
} __attribute__((packed));
#define LL_CREATE_RULESET_VERSION (1U << 0)
#define LL_RULE_NET_PORT 2
#define LL_ACCESS_NET_CONNECT_TCP (1ULL << 1)

/* A ruleset allowing TCP connect to every port but `port`, or -1 (no landlock network
 * rules here: logged once per caller with what it means). */
static int port_wall_new(int port, const char *who) {
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LL_CREATE_RULESET_VERSION);
    if (abi < 4) {
        log_warn("%s: this Linux has no landlock network rules (ABI %ld, 4 needed: 6.7+), so tools with sandbox.network "
                 "can connect to the kernel's port %d",
                 who, abi, port);
        return -1;
    }
    struct ll_ruleset_attr ra = {.handled_access_net = LL_ACCESS_NET_CONNECT_TCP};
    int fd = (int)syscall(SYS_landlock_create_ruleset, &ra, sizeof ra, 0);
    for (uint64_t p = 0; fd >= 0 && p < 65536; p++) {
        struct ll_net_port_attr na = {LL_ACCESS_NET_CONNECT_TCP, p};
        if (p != (uint64_t)port && syscall(SYS_landlock_add_rule, fd, LL_RULE_NET_PORT, &na, 0)) {
            close(fd);
            fd = -1;
        }
    }
    if (fd < 0)
        log_warn("%s: cannot build the landlock ruleset (%s); tools with sandbox.network can connect to the kernel's port %d",
                 who, strerror(errno), port);
    else fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
}

sandbox *sandbox_new(const aios_config *cfg, char *err, size_t errlen) {
    sandbox *sb = calloc(1, sizeof *sb);
    if (!sb) return NULL;
    pthread_mutex_init(&sb->mu, NULL);
    sb->seccomp_fd[0] = sb->seccomp_fd[1] = -1;
    sb->port_wall = port_wall_new(cfg->server.port, "tools");
    host_probe(cfg, sb->bwrap, &sb->merged_usr, sb->workroot);
    if (!sb->bwrap[0])
        log_warn("tools: bubblewrap (bwrap) is not installed; process tools will fail (scripts/install-deps.sh installs it)");
    sb->switch_uid = geteuid() == 0 && cfg->tools.sandbox_uid_base > 0;
    if (!sb->switch_uid)
        log_warn("tools: process tool calls run under the kernel's uid (not root, or tools.sandbox_uid_base 0), so "
                 "tools.max_procs is not enforced; a fork bomb lasts until the call's timeout kills its namespace");
    sb->uid_base = cfg->tools.sandbox_uid_base;
    sb->n_slots = cfg->tools.max_pending;
    if (!(sb->slots = calloc((size_t)sb->n_slots, 1)) ||
        (sb->seccomp_fd[0] = build_seccomp(SANDBOX_NET_NONE, "tools", err, errlen)) < 0 ||
        (sb->seccomp_fd[1] = build_seccomp(SANDBOX_NET_FULL, "tools", err, errlen)) < 0) {
        sandbox_free(sb);
        return NULL;
    }
    return sb;
}

void sandbox_free(sandbox *sb) {
    if (!sb) return;
    for (int i = 0; i < 2; i++)
        if (sb->seccomp_fd[i] >= 0) close(sb->seccomp_fd[i]);
    if (sb->port_wall >= 0) close(sb->port_wall);
    free(sb->slots);
    pthread_mutex_destroy(&sb->mu);
    free(sb);
}

static int slot_get(sandbox *sb) {
    pthread_mutex_lock(&sb->mu);
    int s = 0;
    while (s < sb->n_slots && sb->slots[s]) s++;
    if (s < sb->n_slots) sb->slots[s] = 1;
    pthread_mutex_unlock(&sb->mu);
    return s < sb->n_slots ? s : -1;
}

static void slot_put(sandbox *sb, int s) {
    if (s < 0) return;
    pthread_mutex_lock(&sb->mu);
    sb->slots[s] = 0;
    pthread_mutex_unlock(&sb->mu);
}

/* ---------- the child ---------- */

typedef struct child_spec {
    char *const *argv, *const *envp;
    int fd_in, fd_out, fd_err, fd_seccomp; /* become 0, 1, 2, 3 */
    int fd_work;                           /* becomes 4 (SANDBOX_WORK_FD); < 0: none */
    struct rlimit lim[4];
    int res[4], n_lim;
    long uid;         /* < 0: keep */
    int port_wall;    /* landlock ruleset applied before execve; < 0: none */
    int nice;         /* > 0: its scheduling niceness (an agent's cpu_weight) */
    bool join_cgroup; /* first, writes itself into fd_cgroup (a cgroup.procs) */
    int fd_cgroup;
} child_spec;

/* In the child, last before execve (no_new_privs is set): the port wall, if any, and no
 * signal blocked (the kernel's threads block SIGINT/SIGTERM; the tool must not inherit that). */
static void child_wall(const child_spec *c) {
    if (c->port_wall >= 0 && syscall(SYS_landlock_restrict_self, c->port_wall, 0)) syscall(SYS_exit, 126);
    uint64_t none = 0;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof none);
}

/* Runs in the clone(CLONE_VM|CLONE_VFORK) child: raw system calls only, then execve. */
static int child_main(void *arg) {
    const child_spec *c = arg;
    if (c->join_cgroup && syscall(SYS_write, c->fd_cgroup, "0", 1) != 1) syscall(SYS_exit, 126);
    /* the wall first: close_range below closes its descriptor (landlock needs no_new_privs) */
    syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    child_wall(c);
    int fds[5] = {c->fd_in, c->fd_out, c->fd_err, c->fd_seccomp, c->fd_work};
    int n = c->fd_work >= 0 ? 5 : 4;
    /* First every source above the targets, so that no dup2 overwrites a source not yet
     * placed and none is a dup2 onto itself (which would keep its close-on-exec flag). */
    for (int i = 0; i < n; i++)
        if ((fds[i] = (int)syscall(SYS_fcntl, fds[i], F_DUPFD, n)) < 0) syscall(SYS_exit, 126);
    for (int i = 0; i < n; i++)
        if (syscall(SYS_dup2, fds[i], i) < 0) syscall(SYS_exit, 126);
    syscall(SYS_close_range, n, ~0U, 0);
    syscall(SYS_setpgid, 0, 0);
    for (int i = 0; i < c->n_lim; i++) syscall(SYS_prlimit64, 0, c->res[i], &c->lim[i], NULL);
    if (c->nice > 0) syscall(SYS_setpriority, PRIO_PROCESS, 0, c->nice);
    if (c->uid >= 0) {
        if (syscall(SYS_setgroups, 0, NULL) || syscall(SYS_setresgid, c->uid, c->uid, c->uid) ||
            syscall(SYS_setresuid, c->uid, c->uid, c->uid))
            syscall(SYS_exit, 126);
    }
    syscall(SYS_umask, 0);
    syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0); /* after the uid change, which clears it */
    syscall(SYS_execve, c->argv[0], c->argv, c->envp);
    syscall(SYS_exit, 127);
    return 127;
}

#if defined(__SANITIZE_THREAD__)
#define SANDBOX_FORK 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SANDBOX_FORK 1
#endif
#endif

/* Runs fn(arg) in a child that shares our memory until it execs (clone(CLONE_VM |
 * CLONE_VFORK): no page tables copied, we resume when it has exec'd or exited); its pid, or -1.
 * Under ThreadSanitizer a plain fork: TSan's clone interceptor re-initialises the calling
 * thread's state in the child, which a CLONE_VM child shares with us. */
static pid_t vfork_run(int (*fn)(void *), void *arg) {
#ifdef SANDBOX_FORK
    pid_t pid = fork();
    if (pid == 0) _exit(fn(arg));
    return pid;
#else
    enum { STACK = 64 * 1024 };
    char *stack = malloc(STACK);
    if (!stack) return -1;
    pid_t pid = clone(fn, stack + STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, arg);
    free(stack); /* CLONE_VFORK: the child has exec'd or exited */
    return pid;
#endif
}

static pid_t spawn(const child_spec *c) { return vfork_run(child_main, (void *)c); }

/* ---------- argv ---------- */

typedef struct argv_b {
    const char *v[SANDBOX_MAX_ARGV];
    int n;
} argv_b;

static void add(argv_b *a, const char *s) {
    if (a->n < SANDBOX_MAX_ARGV - 1) a->v[a->n++] = s;
}

static void add3(argv_b *a, const char *x, const char *y, const char *z) {
    add(a, x);
    add(a, y);
    if (z) add(a, z);
}

/* The end of every sandbox's options: a read-only root, the working directory, the seccomp
 * filter (fd 3), then the command (its arguments follow). */
static void add_tail(argv_b *a, const char *chdir, const char *cmd) {
    add3(a, "--remount-ro", "/", NULL); /* the new root itself (a tmpfs) takes no writes either */
    add3(a, "--chdir", chdir, NULL);
    add3(a, "--seccomp", "3", NULL);
    add(a, "--");
    add(a, cmd);
}

/* The profile every sandbox starts from (process tools and MCP servers): bubblewrap with
 * new namespaces, no capabilities, the read-only system and a few devices. */
static void base_profile(argv_b *a, const char *bwrap, bool merged_usr, bool network) {
    add(a, bwrap);
    add3(a, "--unshare-user", "--unshare-pid", "--unshare-ipc");
    add3(a, "--unshare-uts", "--unshare-cgroup-try", NULL);
    add(a, "--as-pid-1"); /* see the header: no reaper that outlives bubblewrap as a zombie */
    if (!network) add(a, "--unshare-net");
    add3(a, "--die-with-parent", "--new-session", NULL);
    add3(a, "--cap-drop", "ALL", NULL);
    add3(a, "--ro-bind", "/usr", "/usr");
    add3(a, "--ro-bind-try", "/etc", "/etc");
    static const char *const LINKS[][2] = {
        {"usr/bin", "/bin"}, {"usr/lib", "/lib"}, {"usr/lib64", "/lib64"}, {"usr/sbin", "/sbin"}};
    for (int i = 0; i < 4; i++) {
        if (merged_usr) add3(a, "--symlink", LINKS[i][0], LINKS[i][1]);
        else add3(a, "--ro-bind-try", LINKS[i][1], LINKS[i][1]);
    }
    static const char *const DEVS[] = {"/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"};
    for (int i = 0; i < 4; i++) add3(a, "--dev-bind", DEVS[i], DEVS[i]);
}

static void build_argv(const sandbox *sb, const tool_def *d, const char *workdir, const char *cmd, argv_b *a) {
    base_profile(a, sb->bwrap, sb->merged_usr, d->network);
    add3(a, "--ro-bind", d->dir, "/tool");
    /* workdir is the number of its descriptor (SANDBOX_WORK_FD): bubblewrap binds the very
     * directory make_workdir checked (and itself checks that the mount is that directory);
     * a path would be looked up again, following whatever was planted there meanwhile */
    if (d->fs != TOOL_FS_NONE) add3(a, d->fs == TOOL_FS_WORKDIR ? "--bind-fd" : "--ro-bind-fd", workdir, "/work");
    add_tail(a, d->fs != TOOL_FS_NONE ? "/work" : "/tool", cmd);
    for (int i = 0; i < d->n_args; i++) add(a, d->args[i]);
    a->v[a->n] = NULL;
}

/* One path component of the work tree from an agent's or a tool's name: '%', every byte
 * outside [A-Za-z0-9_.-] and a leading '.' become %XX. Reversible, so different names never
 * share a directory ("a/b" -> "a%2Fb", "a_b" stays, "." -> "%2E", ".." -> "%2E."), and never
 * "", ".", ".." or anything with a '/'. -1 if out is too small or name is empty. */
static int work_name(const char *name, char *out, size_t outlen) {
    static const char HEX[] = "0123456789ABCDEF";
    size_t j = 0;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        bool keep = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' ||
            (*p == '.' && p != (const unsigned char *)name);
        if (j + (keep ? 1 : 3) >= outlen) return -1;
        if (keep) out[j++] = (char)*p;
        else out[j++] = '%', out[j++] = HEX[*p >> 4], out[j++] = HEX[*p & 15];
    }
    out[j] = 0;
    return j ? 0 : -1;
}

/* Opens the directory name in dir into *fd, creating it if missing, without following a
 * symlink; it must be a real directory of the kernel's euid, and gets exactly mode (on the
 * descriptor). Tools write only inside their own workdir, so anything else here was planted
 * (or left by an older kernel): AIOS_ERR_FORBIDDEN. path is for the messages. */
static int work_open(int dir, const char *name, mode_t mode, const char *path, int *fd, char *err, size_t errlen) {
    if (mkdirat(dir, name, mode) && errno != EEXIST) {
        snprintf(err, errlen, "cannot create the tool workdir %s: %s", path, strerror(errno));
        return AIOS_ERR_IO;
    }
    *fd = openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (*fd < 0 && (errno == ELOOP || errno == ENOTDIR)) {
        snprintf(err, errlen, "tool workdir %s is not a real directory (a symbolic link or another file); refusing to use it",
                 path);
        return AIOS_ERR_FORBIDDEN;
    }
    if (*fd < 0) {
        snprintf(err, errlen, "cannot open the tool workdir %s: %s", path, strerror(errno));
        return AIOS_ERR_IO;
    }
    struct stat st;
    int rc = AIOS_OK;
    if (fstat(*fd, &st)) {
        snprintf(err, errlen, "cannot stat the tool workdir %s: %s", path, strerror(errno));
        rc = AIOS_ERR_IO;
    } else if (st.st_uid != geteuid()) {
        snprintf(err, errlen, "tool workdir %s is owned by uid %u, not by the kernel's uid %u; refusing to use it", path,
                 (unsigned)st.st_uid, (unsigned)geteuid());
        rc = AIOS_ERR_FORBIDDEN;
    } else if ((st.st_mode & 07777) != mode && fchmod(*fd, mode)) {
        snprintf(err, errlen, "cannot set the mode of the tool workdir %s: %s", path, strerror(errno));
        rc = AIOS_ERR_IO;
    }
    if (rc) {
        close(*fd);
        *fd = -1;
    }
    return rc;
}

/* Opens <workroot>/<agent>/<tool> (each part through work_name) into *fd, for bubblewrap
 * to bind at /work. The workdir is world-writable (the per-call uids differ) and only this
 * agent's calls of this tool ever see it; the agent's directory is 0755, so no tool can
 * rename or replace its own workdir or a sibling's. Below the configured root nothing is
 * looked up through a symlink, and nothing is changed by path. */
static int make_workdir(const sandbox *sb, const tool_def *d, const char *agent, int *fd, char *err, size_t errlen) {
    char ag[AIOS_NAME_MAX * 3], tool[TOOL_NAME_MAX * 3], path[AIOS_PATH_MAX + sizeof ag + sizeof tool];
    if (work_name(agent, ag, sizeof ag) || work_name(d->name, tool, sizeof tool)) {
        snprintf(err, errlen, "tool '%s': no workdir for agent name '%.64s' (empty or too long)", d->name, agent);
        return AIOS_ERR_INVALID;
    }
    int root = mkdir_p(sb->workroot, 0755) ? -1 : open(sb->workroot, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) {
        snprintf(err, errlen, "cannot create the tool workdir root %s: %s", sb->workroot, strerror(errno));
        return AIOS_ERR_IO;
    }
    int agent_fd = -1;
    snprintf(path, sizeof path, "%s/%s", sb->workroot, ag);
    int rc = work_open(root, ag, 0755, path, &agent_fd, err, errlen);
    close(root);
    if (rc) return rc;
    snprintf(path, sizeof path, "%s/%s/%s", sb->workroot, ag, tool);
    rc = work_open(agent_fd, tool, 0777, path, fd, err, errlen);
    close(agent_fd);
    return rc;
}

/* ---------- the parent's side ---------- */

typedef struct io_state {
    int in, out, errfd;
    const char *input;
    size_t in_len, in_off;
    char errbuf[STDERR_KEEP];
    size_t err_len;
} io_state;

static void keep_stderr(io_state *io, const char *buf, size_t n) {
    if (n >= STDERR_KEEP) {
        memcpy(io->errbuf, buf + n - (STDERR_KEEP - 1), STDERR_KEEP - 1);
        io->err_len = STDERR_KEEP - 1;
        return;
    }
    if (io->err_len + n >= STDERR_KEEP) {
        size_t drop = io->err_len + n - (STDERR_KEEP - 1);
        memmove(io->errbuf, io->errbuf + drop, io->err_len - drop);
        io->err_len -= drop;
    }
    memcpy(io->errbuf + io->err_len, buf, n);
    io->err_len += n;
}

/* Pumps stdin/stdout/stderr until both outputs closed; returns AIOS_OK, AIOS_ERR_TIMEOUT,
 * AIOS_ERR_CANCELLED or AIOS_ERR_TOO_LARGE (output over the limit). */
static int pump(io_state *io, const tool_run *run, double deadline) {
    char buf[16384];
    while (io->out >= 0 || io->errfd >= 0) {
        if (atomic_load(run->cancel) || atomic_load(run->stop)) return AIOS_ERR_CANCELLED;
        double left = deadline - kern_now_mono();
        if (left <= 0) return AIOS_ERR_TIMEOUT;
        struct pollfd p[3];
        int n = 0, iw = -1, io_ = -1, ie = -1;
        if (io->in >= 0) {
            iw = n;
            p[n++] = (struct pollfd){.fd = io->in, .events = POLLOUT};
        }
        if (io->out >= 0) {
            io_ = n;
            p[n++] = (struct pollfd){.fd = io->out, .events = POLLIN};
        }
        if (io->errfd >= 0) {
            ie = n;
            p[n++] = (struct pollfd){.fd = io->errfd, .events = POLLIN};
        }
        int ms = left > 0.2 ? 200 : (int)(left * 1000) + 1; /* wakes 5 times a second to see a cancel */
        if (poll(p, (nfds_t)n, ms) <= 0) continue;
        if (iw >= 0 && p[iw].revents) {
            ssize_t w = p[iw].revents & POLLOUT ? write(io->in, io->input + io->in_off, io->in_len - io->in_off) : -1;
            if (w > 0) io->in_off += (size_t)w;
            if (w < 0 || io->in_off == io->in_len) {
                close(io->in);
                io->in = -1;
            }
        }
        if (io_ >= 0 && p[io_].revents) {
            ssize_t r = read(io->out, buf, sizeof buf);
            if (r <= 0) {
                close(io->out);
                io->out = -1;
            } else {
                size_t room = (size_t)run->max_output - run->out->len;
                sb_append(run->out, buf, (size_t)r < room ? (size_t)r : room);
                if ((size_t)r > room) return AIOS_ERR_TOO_LARGE;
            }
        }
        if (ie >= 0 && p[ie].revents) {
            ssize_t r = read(io->errfd, buf, sizeof buf);
            if (r <= 0) {
                close(io->errfd);
                io->errfd = -1;
            } else keep_stderr(io, buf, (size_t)r);
        }
    }
    return AIOS_OK;
}

static const char *sig_text(int sig) {
    switch (sig) {
        case SIGXCPU: return "it exceeded its CPU-time limit (SIGXCPU)";
        case SIGXFSZ: return "it exceeded its file-size limit (SIGXFSZ)";
        case SIGKILL: return "it was killed (SIGKILL)";
        case SIGSEGV: return "it crashed (SIGSEGV)";
        case SIGABRT: return "it aborted (SIGABRT)";
        default: return "it was killed by a signal";
    }
}

/* Turns the exit status and output into the call's result. */
static int judge(const tool_def *d, const tool_run *run, io_state *io, int status) {
    io->errbuf[io->err_len] = 0;
    for (size_t i = 0; i < io->err_len; i++)
        if ((unsigned char)io->errbuf[i] < 0x20 && io->errbuf[i] != '\n') io->errbuf[i] = ' ';
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code == 0) {
        const char *txt = run->out->data ? run->out->data : "";
        cJSON *j = cJSON_ParseWithLength(txt, run->out->len);
        *run->out_json = j != NULL;
        cJSON_Delete(j);
        return AIOS_OK;
    }
    if (code > 128)
        snprintf(run->err, run->errlen, "tool '%s' failed: %s%s%.400s", d->name, sig_text(code - 128),
                 io->err_len ? "; stderr: " : "", io->errbuf);
    else
        snprintf(run->err, run->errlen, "tool '%s' exited with status %d%s%.400s", d->name, code, io->err_len ? "; stderr: " : "",
                 io->errbuf);
    return AIOS_ERR_TOOL_FAILED;
}

static int kill_and_reap(pid_t pid) {
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    return status;
}

typedef struct run_fds {
    int in[2], out[2], err[2], sec;
} run_fds;

static void close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

static void close_all(run_fds *f) {
    for (int i = 0; i < 2; i++) {
        close_fd(&f->in[i]);
        close_fd(&f->out[i]);
        close_fd(&f->err[i]);
    }
    close_fd(&f->sec);
}

static int open_fds(const sandbox *sb, bool network, run_fds *f) {
    char p[64];
    snprintf(p, sizeof p, "/proc/self/fd/%d", sb->seccomp_fd[network]);
    f->sec = open(p, O_RDONLY | O_CLOEXEC); /* own offset: concurrent calls each read it whole */
    if (pipe2(f->in, O_CLOEXEC) || pipe2(f->out, O_CLOEXEC) || pipe2(f->err, O_CLOEXEC) || f->sec < 0) return -1;
    fcntl(f->in[1], F_SETFL, O_NONBLOCK);
    return 0;
}

/* RLIMIT_NPROC counts every task of a uid (threads included), so it is set only when the
 * call has a uid of its own: under the kernel's uid it would count the kernel's threads. */
static void set_limits(child_spec *c, const tool_def *d) {
    c->res[0] = RLIMIT_CPU;
    c->lim[0] = (struct rlimit){(rlim_t)d->cpu_seconds, (rlim_t)d->cpu_seconds + 1};
    c->res[1] = RLIMIT_AS;
    c->lim[1] = (struct rlimit){(rlim_t)d->memory_mb << 20, (rlim_t)d->memory_mb << 20};
    c->res[2] = RLIMIT_FSIZE;
    c->lim[2] = (struct rlimit){(rlim_t)d->file_size_mb << 20, (rlim_t)d->file_size_mb << 20};
    c->res[3] = RLIMIT_NPROC; /* + bubblewrap's own process */
    c->lim[3] = (struct rlimit){(rlim_t)d->max_procs + 1, (rlim_t)d->max_procs + 1};
    c->n_lim = c->uid >= 0 ? 4 : 3;
}

int sandbox_run(sandbox *sb, const tool_def *d, const tool_run *run, int timeout_ms) {
    if (!sb->bwrap[0]) {
        snprintf(run->err, run->errlen, "tool '%s' cannot run: bubblewrap (bwrap) is not installed", d->name);
        return AIOS_ERR_TOOL_FAILED;
    }
    char cmd[AIOS_PATH_MAX + 8];
    int work = -1; /* the workdir, bound by descriptor */
    if (d->fs != TOOL_FS_NONE) {
        int rc = make_workdir(sb, d, run->agent, &work, run->err, run->errlen);
        if (rc) return rc;
    }
    /* absolute: as is; "dir/x", or a bare name next to the manifest: under /tool; else PATH */
    char host[AIOS_PATH_MAX * 2];
    snprintf(host, sizeof host, "%s/%s", d->dir, d->command);
    bool local = d->command[0] != '/' && (strchr(d->command, '/') || access(host, F_OK) == 0);
    snprintf(cmd, sizeof cmd, "%s%s", local ? "/tool/" : "", d->command);
    argv_b a = {0};
    build_argv(sb, d, work >= 0 ? SANDBOX_WORK_FD : "", cmd, &a);
    char e_agent[AIOS_NAME_MAX + 16], e_tool[TOOL_NAME_MAX + 16];
    snprintf(e_agent, sizeof e_agent, "AIOS_AGENT=%s", run->agent);
    snprintf(e_tool, sizeof e_tool, "AIOS_TOOL=%s", d->name);
    char *const envp[] = {"PATH=/usr/local/bin:/usr/bin:/bin",
                          d->fs != TOOL_FS_NONE ? "HOME=/work" : "HOME=/tool",
                          "LANG=C.UTF-8",
                          e_agent,
                          e_tool,
                          NULL};
    run_fds f = {{-1, -1}, {-1, -1}, {-1, -1}, -1};
    int slot = sb->switch_uid ? slot_get(sb) : -1;
    if ((sb->switch_uid && slot < 0) || open_fds(sb, d->network, &f)) {
        close_all(&f);
        close_fd(&work);
        slot_put(sb, slot);
        snprintf(run->err, run->errlen, "tool '%s': no sandbox slot or descriptors left", d->name);
        return AIOS_ERR_BUSY;
    }
    child_spec c = {.argv = (char *const *)a.v,
                    .envp = envp,
                    .fd_in = f.in[0],
                    .fd_out = f.out[1],
                    .fd_err = f.err[1],
                    .fd_seccomp = f.sec,
                    .fd_work = work,
                    .uid = slot >= 0 ? sb->uid_base + slot : -1,
                    .port_wall = d->network ? sb->port_wall : -1};
    set_limits(&c, d);
    pid_t pid = spawn(&c);
    close_fd(&f.in[0]);
    close_fd(&f.out[1]);
    close_fd(&f.err[1]);
    close_fd(&f.sec);
    close_fd(&work);
    if (pid < 0) {
        close_all(&f);
        slot_put(sb, slot);
        snprintf(run->err, run->errlen, "tool '%s': cannot start: %s", d->name, strerror(errno));
        return AIOS_ERR_TOOL_FAILED;
    }
    io_state io = {.in = f.in[1], .out = f.out[0], .errfd = f.err[0], .input = run->params, .in_len = strlen(run->params)};
    f.in[1] = f.out[0] = f.err[0] = -1;
    int rc = pump(&io, run, kern_now_mono() + timeout_ms / 1000.0);
    int status = 0;
    if (rc) status = kill_and_reap(pid);
    else
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    kill(-pid, SIGKILL); /* stragglers that left the session die with the pid namespace anyway */
    close_fd(&io.in);
    close_fd(&io.out);
    close_fd(&io.errfd);
    slot_put(sb, slot);
    if (rc == AIOS_ERR_TIMEOUT)
        snprintf(run->err, run->errlen, "tool '%s' timed out after %d ms; its process group was killed", d->name, timeout_ms);
    else if (rc == AIOS_ERR_CANCELLED)
        snprintf(run->err, run->errlen, "tool '%s' was cancelled; its process group was killed", d->name);
    else if (rc == AIOS_ERR_TOO_LARGE) {
        *run->truncated = true;
        sb_printf(run->out, "\n[aios: output truncated at %ld bytes (tools.max_output_bytes)]", run->max_output);
        snprintf(run->err, run->errlen,
                 "tool '%s' wrote more than tools.max_output_bytes (%ld); it was stopped and its output cut", d->name,
                 run->max_output);
    }
    return rc ? rc : judge(d, run, &io, status);
}

/* ---------- an agent's tool workdirs ---------- */

/* Removes name below dir and everything in it, never following a symlink (a tool may have
 * planted any); at most SANDBOX_PURGE_DEPTH levels deep. -1 when something stayed. */
#define SANDBOX_PURGE_DEPTH 64
static int remove_tree_at(int dir, const char *name, int depth) {
    int fd = openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return 0;
        return errno == ENOTDIR || errno == ELOOP ? unlinkat(dir, name, 0) : -1;
    }
    DIR *d = depth < SANDBOX_PURGE_DEPTH ? fdopendir(fd) : NULL;
    if (!d) {
        close(fd);
        return -1;
    }
    int rc = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && remove_tree_at(dirfd(d), e->d_name, depth + 1)) rc = -1;
    closedir(d);
    return unlinkat(dir, name, AT_REMOVEDIR) ? -1 : rc;
}

int sandbox_purge_agent(sandbox *sb, const char *agent) {
    char name[AIOS_NAME_MAX * 3 + 1];
    if (work_name(agent, name, sizeof name)) return AIOS_ERR_INVALID;
    int root = open(sb->workroot, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (root < 0) return errno == ENOENT ? AIOS_OK : AIOS_ERR_IO;
    int rc = remove_tree_at(root, name, 0) ? AIOS_ERR_IO : AIOS_OK;
    close(root);
    if (rc) log_warn("tools: could not remove every tool workdir of '%s' below %s", agent, sb->workroot);
    return rc;
}

/* ---------- MCP servers ----------
 * An MCP server is one long-lived child per configured server, in the sandbox of a process
 * tool call: bubblewrap with new namespaces (network too, unless the server's config says
 * network: true), /usr and /etc read-only, all capabilities dropped, no new privileges,
 * the same seccomp filter, --die-with-parent, and rlimits on address space, file size and
 * (under a uid of its own) processes; no CPU limit, since it runs as long as the kernel.
 * Its filesystem: its own directory <workroot>/.mcp/<name> at /work (fs workdir, ro or
 * none; agent names never start with '.', so it is no agent's workdir), and read-only at
 * their own paths the install directory of its command and its ro_paths -- never the data
 * dir, the workdir root, a model, the audit log, the kernel's executable or the cache dir
 * itself. The kernel opens every bound directory (checking it still is what was checked at
 * start) and passes the descriptor on. Under a uid of its own, bubblewrap could not use it:
 * it resolves a descriptor's path again, and the server's uid may not search the parents
 * (/root is 0700, so is the data dir). So the kernel clones each opened directory into a
 * detached mount (open_tree), and the child, still root, enters a private mount namespace
 * and attaches them at stage paths (<stage>/<i> on a tmpfs over /mnt or the like, which
 * only the child sees), which bubblewrap binds instead.
 * Its environment: PATH, HOME, LANG and its configured env, never the kernel's. A kernel
 * running as root gives it the uid tools.sandbox_uid_base + tools.max_pending + its index
 * (after every per-call uid), so max_procs holds and it can signal nothing of the kernel's.
 */
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#define MCP_MAX_BINDS (AIOS_MCP_MAX_RO + 1)

struct sandbox_mcp {
    const aios_mcp_cfg *m; /* borrowed */
    char bwrap[AIOS_PATH_MAX];
    bool merged_usr;
    tool_fs fs;
    char workdir[AIOS_PATH_MAX * 2];
    char binds[MCP_MAX_BINDS][AIOS_PATH_MAX]; /* host paths, bound read-only at the same path */
    char canon[MCP_MAX_BINDS][PATH_MAX];      /* what each must still resolve to when opened */
    int n_binds;
    const char *envp[AIOS_MCP_MAX_ARGS + 4];
    int seccomp_fd;
    int port_wall;  /* landlock ruleset (network servers); < 0: none */
    long uid;       /* < 0: the kernel's */
    char stage[16]; /* where the child stages binds; "" = passed by fd */
    int memory_mb, file_size_mb, max_procs;
};

/* Whether canonical path is dir or lies below it. */
static bool path_within(const char *path, const char *dir) {
    size_t n = strlen(dir);
    if (n == 1 && dir[0] == '/') return true;
    return n && !strncmp(path, dir, n) && (path[n] == 0 || path[n] == '/');
}

/* Whether binding canonical path bind would expose prot: it holds prot, or (unless
 * inside_ok) lies inside it. */
static bool exposes(const char *bind, const char *prot, bool inside_ok) {
    char c[PATH_MAX];
    if (!prot || !prot[0]) return false;
    if (!realpath(prot, c)) snprintf(c, sizeof c, "%s", prot);
    return path_within(c, bind) || (!inside_ok && path_within(bind, c));
}

/* What of the kernel's a bind of canonical path would expose, or NULL. */
static const char *bind_conflict(const aios_config *kcfg, const char *workroot, const char *bind) {
    char audit[AIOS_PATH_MAX + 16], emb[AIOS_PATH_MAX], cache[AIOS_PATH_MAX];
    const char *env_cache = getenv("AIOS_CACHE"), *home = getenv("HOME");
    if (env_cache && *env_cache) snprintf(cache, sizeof cache, "%s", env_cache);
    else snprintf(cache, sizeof cache, "%s/.cache/aios", home ? home : "/root");
    if (kcfg->access.audit_file[0]) snprintf(audit, sizeof audit, "%s", kcfg->access.audit_file);
    else snprintf(audit, sizeof audit, "%.1000s/audit.log", kcfg->data_dir);
    config_embedding_model(kcfg, emb, sizeof emb);
    if (exposes(bind, kcfg->data_dir, false)) return "the data dir";
    if (exposes(bind, workroot, false)) return "the tools workdir root";
    if (exposes(bind, audit, false)) return "the audit log";
    if (exposes(bind, emb, false)) return "the embedding model";
    if (exposes(bind, "/proc/self/exe", false)) return "the kernel's executable";
    for (int i = 0; i < kcfg->llms.n_models; i++)
        if (exposes(bind, kcfg->llms.models[i].path, false)) return "a model file";
    if (exposes(bind, cache, true)) return "the cache dir";
    return NULL;
}

/* An absolute path without "." or ".." components (it is also the path in the sandbox). */
static bool plain_path(const char *p) {
    if (p[0] != '/') return false;
    for (const char *s = p; (s = strchr(s, '/')); s++)
        if ((s[1] == '.' && (s[2] == '/' || !s[2])) || (s[1] == '.' && s[2] == '.' && (s[3] == '/' || !s[3]))) return false;
    return true;
}

static bool visible_anyway(const char *p) {
    static const char *const V[] = {"/usr", "/etc", "/bin", "/lib", "/lib64", "/sbin"};
    for (size_t i = 0; i < sizeof V / sizeof V[0]; i++)
        if (path_within(p, V[i])) return true;
    return false;
}

/* Whether host path (what: for messages) may be bound into a sandbox (same_path: at the
 * same path, so not where the sandbox has its own directories): AIOS_OK with its canonical
 * form in c ("" when the sandbox shows it anyway), or an error. */
static int check_bind(const aios_config *kcfg, const char *workroot, const char *path, bool same_path, const char *what,
                      char c[PATH_MAX], char *err, size_t errlen) {
    c[0] = 0;
    if (!plain_path(path)) {
        snprintf(err, errlen, "%s '%s': must be an absolute path without '.' or '..'", what, path);
        return AIOS_ERR_CONFIG;
    }
    if (same_path && visible_anyway(path)) return AIOS_OK;
    if (!realpath(path, c)) {
        snprintf(err, errlen, "%s '%s': %s", what, path, strerror(errno));
        return AIOS_ERR_CONFIG;
    }
    bool own =
        path_within(path, "/work") || path_within(path, "/dev") || path_within(path, "/proc") || path_within(path, "/agent");
    const char *why = !strcmp(path, "/") || (same_path && own)      ? "the sandbox's own directories"
        : !same_path && (visible_anyway(path) || visible_anyway(c)) ? "a system directory"
                                                                    : bind_conflict(kcfg, workroot, c);
    if (why) {
        snprintf(err, errlen, "%s '%s' would expose %s to the sandbox; it is not bound", what, path, why);
        return AIOS_ERR_CONFIG;
    }
    return AIOS_OK;
}

/* Adds path (what: for messages) to the read-only binds after checking it. */
static int add_bind(sandbox_mcp *p, const aios_config *kcfg, const char *workroot, const char *path, const char *what, char *err,
                    size_t errlen) {
    char c[PATH_MAX];
    int rc = check_bind(kcfg, workroot, path, true, what, c, err, errlen);
    if (rc || !c[0]) return rc;
    snprintf(p->binds[p->n_binds], sizeof p->binds[0], "%s", path);
    snprintf(p->canon[p->n_binds++], sizeof p->canon[0], "%s", c);
    return AIOS_OK;
}

/* The install directory of an absolute command (the parent of its bin/, as for a Python
 * venv; else its own directory) into out; "" when it is visible anyway (/usr, /bin...). */
static void install_dir(const char *command, char *out, size_t outlen) {
    char dir[AIOS_PATH_MAX], c[PATH_MAX];
    out[0] = 0;
    snprintf(dir, sizeof dir, "%s", command);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return;
    *slash = 0;
    if (visible_anyway(dir) || (realpath(dir, c) && visible_anyway(c))) return;
    slash = strrchr(dir, '/');
    if (slash != dir && !strcmp(slash + 1, "bin")) *slash = 0;
    snprintf(out, outlen, "%s", dir);
}

int sandbox_install_dirs(const char *command, char dirs[2][AIOS_PATH_MAX]) {
    char real[PATH_MAX];
    int n = 0;
    install_dir(command, dirs[0], AIOS_PATH_MAX);
    n += dirs[0][0] != 0;
    if (realpath(command, real) && strcmp(real, command)) { /* a venv's python: the interpreter it links to */
        install_dir(real, dirs[n], AIOS_PATH_MAX);
        n += dirs[n][0] && (n == 0 || strcmp(dirs[0], dirs[n]));
    }
    return n;
}

static int mcp_binds(sandbox_mcp *p, const aios_config *kcfg, const char *workroot, char *err, size_t errlen) {
    const aios_mcp_cfg *m = p->m;
    if (strchr(m->command, '/') && m->command[0] != '/') {
        snprintf(err, errlen, "command '%s': must be an absolute path or a name on the sandbox's PATH (/usr/bin:/bin)",
                 m->command);
        return AIOS_ERR_CONFIG;
    }
    char dirs[2][AIOS_PATH_MAX];
    int rc = AIOS_OK;
    for (int i = 0, n = sandbox_install_dirs(m->command, dirs); i < n && !rc; i++)
        rc = add_bind(p, kcfg, workroot, dirs[i], "the command's install directory", err, errlen);
    for (int i = 0; !rc && i < m->n_ro_paths; i++) rc = add_bind(p, kcfg, workroot, m->ro_paths[i], "ro_paths", err, errlen);
    return rc;
}

/* PATH, HOME, LANG unless the server's env sets them, then its env. */
static void mcp_env(sandbox_mcp *p) {
    const char *base[] = {"PATH=/usr/bin:/bin", p->fs == TOOL_FS_NONE ? "HOME=/" : "HOME=/work", "LANG=C.UTF-8"};
    int n = 0;
    for (int i = 0; i < 3; i++) {
        size_t klen = (size_t)(strchr(base[i], '=') - base[i]) + 1;
        bool set = false;
        for (int j = 0; j < p->m->n_env && !set; j++) set = !strncmp(p->m->env[j], base[i], klen);
        if (!set) p->envp[n++] = base[i];
    }
    for (int j = 0; j < p->m->n_env; j++) p->envp[n++] = p->m->env[j];
    p->envp[n] = NULL;
}

/* The server's uid (or -1) and limits (-1 in its config: the tools.* default). */
static void mcp_identity(sandbox_mcp *p, const aios_config *kcfg) {
    int idx = 0;
    while (idx < kcfg->tools.n_mcp && strcmp(kcfg->tools.mcp[idx].name, p->m->name)) idx++;
    long uid = kcfg->tools.sandbox_uid_base + kcfg->tools.max_pending + idx;
    p->uid = geteuid() == 0 && kcfg->tools.sandbox_uid_base > 0 && uid < 0xFFFFFFFEL ? uid : -1;
    if (p->uid < 0)
        log_warn("mcp %s: runs under the kernel's uid (%s), so its max_procs is not enforced", p->m->name,
                 geteuid() == 0 ? "tools.sandbox_uid_base is 0" : "the kernel is not root");
    p->memory_mb = p->m->memory_mb >= 0 ? p->m->memory_mb : kcfg->tools.memory_mb;
    p->file_size_mb = p->m->file_size_mb >= 0 ? p->m->file_size_mb : kcfg->tools.file_size_mb;
    p->max_procs = p->m->max_procs >= 0 ? p->m->max_procs : kcfg->tools.max_procs;
}

/* A directory every uid may search, that the kernel never needs, to stage binds on. */
static int pick_stage(sandbox_mcp *p, char *err, size_t errlen) {
    static const char *const CANDS[] = {"/mnt", "/media", "/srv", "/run"};
    struct stat st;
    for (size_t i = 0; i < sizeof CANDS / sizeof CANDS[0] && !p->stage[0]; i++)
        if (lstat(CANDS[i], &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0001))
            snprintf(p->stage, sizeof p->stage, "%s", CANDS[i]);
    if (!p->stage[0]) snprintf(err, errlen, "no directory to stage its binds on (/mnt, /media, /srv or /run)");
    return p->stage[0] ? AIOS_OK : AIOS_ERR_CONFIG;
}

static int mcp_setup(sandbox_mcp *p, const aios_config *kcfg, char *err, size_t errlen) {
    char workroot[AIOS_PATH_MAX];
    host_probe(kcfg, p->bwrap, &p->merged_usr, workroot);
    if (!p->bwrap[0]) {
        snprintf(err, errlen,
                 "bubblewrap (bwrap) is not installed, and MCP servers run only sandboxed (scripts/install-deps.sh)");
        return AIOS_ERR_CONFIG;
    }
    p->fs = !strcmp(p->m->fs, "none") ? TOOL_FS_NONE : !strcmp(p->m->fs, "ro") ? TOOL_FS_RO : TOOL_FS_WORKDIR;
    snprintf(p->workdir, sizeof p->workdir, "%s/.mcp/%s", workroot, p->m->name);
    char *base = strrchr(p->workdir, '/') + 1;
    if (base[0] == '.') base[0] = '_'; /* "." or ".." would name the root itself */
    mcp_identity(p, kcfg);
    mcp_env(p);
    int rc = mcp_binds(p, kcfg, workroot, err, errlen);
    if (!rc && p->uid >= 0) rc = pick_stage(p, err, errlen);
    return rc;
}

void sandbox_mcp_free(sandbox_mcp *p) {
    if (!p) return;
    if (p->seccomp_fd >= 0) close(p->seccomp_fd);
    if (p->port_wall >= 0) close(p->port_wall);
    free(p);
}

sandbox_mcp *sandbox_mcp_new(const aios_config *kcfg, const aios_mcp_cfg *m, char *err, size_t errlen) {
    sandbox_mcp *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->m = m;
    p->seccomp_fd = -1;
    p->port_wall = m->network ? port_wall_new(kcfg->server.port, m->name) : -1;
    if (mcp_setup(p, kcfg, err, errlen) ||
        (p->seccomp_fd = build_seccomp(m->network ? SANDBOX_NET_FULL : SANDBOX_NET_NONE, "tools", err, errlen)) < 0) {
        sandbox_mcp_free(p);
        return NULL;
    }
    return p;
}

/* A descriptor at 4 or above (0 to 3 become the child's stdio and seccomp). */
static int fd_above3(int fd) {
    if (fd < 0 || fd > 3) return fd;
    int d = fcntl(fd, F_DUPFD_CLOEXEC, 4);
    close(fd);
    return d;
}

/* The server's own directory, created (owned by its uid, mode 0700) and opened. */
static int open_mcp_workdir(const sandbox_mcp *p, int *fd, char *err, size_t errlen) {
    *fd = -1;
    if (p->fs == TOOL_FS_NONE) return AIOS_OK;
    uid_t u = p->uid >= 0 ? (uid_t)p->uid : geteuid();
    gid_t g = p->uid >= 0 ? (gid_t)p->uid : getegid();
    int d = mkdir_p(p->workdir, 0755) ? -1 : open(p->workdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (d < 0 || fchown(d, u, g) || fchmod(d, 0700)) {
        snprintf(err, errlen, "cannot create its workdir %s: %s", p->workdir, strerror(errno));
        if (d >= 0) close(d);
        return AIOS_ERR_IO;
    }
    *fd = fd_above3(d);
    return *fd < 0 ? AIOS_ERR_IO : AIOS_OK;
}

/* Opens every read-only bind, checking it still resolves to what was checked at start. */
static int open_mcp_binds(const sandbox_mcp *p, int *fds, char *err, size_t errlen) {
    for (int i = 0; i < p->n_binds; i++) {
        char proc[64], now[PATH_MAX];
        fds[i] = fd_above3(open(p->binds[i], O_PATH | O_DIRECTORY | O_CLOEXEC));
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fds[i]);
        ssize_t n = fds[i] >= 0 ? readlink(proc, now, sizeof now - 1) : -1;
        if (n >= 0) now[n] = 0;
        if (n < 0 || strcmp(now, p->canon[i])) {
            snprintf(err, errlen, "cannot bind %s: %s", p->binds[i],
                     n < 0 ? strerror(errno) : "it moved since the kernel started");
            return AIOS_ERR_IO;
        }
    }
    return AIOS_OK;
}

/* Replaces each directory descriptor with a detached copy of its mount tree, for the child
 * to attach in its own mount namespace (a path could not cross into it). */
static int detach_binds(int *fds, int n, char *err, size_t errlen) {
    for (int i = 0; i < n; i++) {
        int t = fd_above3(
            (int)syscall(SYS_open_tree, fds[i], "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE));
        if (t < 0) {
            snprintf(err, errlen, "cannot clone a bind's mount (open_tree): %s", strerror(errno));
            return AIOS_ERR_IO;
        }
        close(fds[i]);
        fds[i] = t;
    }
    return AIOS_OK;
}

/* src[i]: what bubblewrap binds for bind i (p->n_binds: the workdir), a stage path or a
 * descriptor number. */
static void mcp_argv(const sandbox_mcp *p, char src[][32], int wfd, argv_b *a) {
    const char *ro = p->stage[0] ? "--ro-bind" : "--ro-bind-fd", *rw = p->stage[0] ? "--bind" : "--bind-fd";
    base_profile(a, p->bwrap, p->merged_usr, p->m->network);
    for (int i = 0; i < p->n_binds; i++) add3(a, ro, src[i], p->binds[i]);
    if (wfd >= 0) add3(a, p->fs == TOOL_FS_WORKDIR ? rw : ro, src[p->n_binds], "/work");
    add_tail(a, p->fs != TOOL_FS_NONE ? "/work" : "/", p->m->command);
    for (int i = 0; i < p->m->n_args; i++) add(a, p->m->args[i]);
    a->v[a->n] = NULL;
}

typedef struct mcp_child {
    child_spec c;
    const int *keep; /* the binds' descriptors (all >= 4) */
    int n_keep;
    const char *stage; /* "": keep them open for bubblewrap; else stage them (as root) */
    char (*dst)[32];   /* per bind: its stage path */
} mcp_child;

/* In the child, still root: a private mount namespace, a tmpfs on the stage directory, and
 * each bind's detached mount (keep) attached at its stage path. */
static int stage_binds(const mcp_child *k) {
    if (syscall(SYS_unshare, CLONE_NEWNS) || syscall(SYS_mount, "none", "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
        syscall(SYS_mount, "aios-mcp", k->stage, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k"))
        return -1;
    for (int i = 0; i < k->n_keep; i++)
        if (syscall(SYS_mkdirat, AT_FDCWD, k->dst[i], 0700) ||
            syscall(SYS_move_mount, k->keep[i], "", AT_FDCWD, k->dst[i], MOVE_MOUNT_F_EMPTY_PATH))
            return -1;
    return 0;
}

/* child_main, but with the binds staged, or kept open across execve. */
static int mcp_child_main(void *arg) {
    const mcp_child *k = arg;
    const child_spec *c = &k->c;
    if (syscall(SYS_dup2, c->fd_in, 0) < 0 || syscall(SYS_dup2, c->fd_out, 1) < 0 || syscall(SYS_dup2, c->fd_err, 2) < 0 ||
        syscall(SYS_dup2, c->fd_seccomp, 3) < 0)
        syscall(SYS_exit, 126);
    if (k->stage[0] && stage_binds(k)) syscall(SYS_exit, 125);
    syscall(SYS_close_range, 4, ~0U, CLOSE_RANGE_CLOEXEC);
    for (int i = 0; !k->stage[0] && i < k->n_keep; i++) syscall(SYS_fcntl, k->keep[i], F_SETFD, 0);
    syscall(SYS_setpgid, 0, 0);
    for (int i = 0; i < c->n_lim; i++) syscall(SYS_prlimit64, 0, c->res[i], &c->lim[i], NULL);
    if (c->uid >= 0 &&
        (syscall(SYS_setgroups, 0, NULL) || syscall(SYS_setresgid, c->uid, c->uid, c->uid) ||
         syscall(SYS_setresuid, c->uid, c->uid, c->uid)))
        syscall(SYS_exit, 126);
    syscall(SYS_umask, 077);
    syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    child_wall(c);
    syscall(SYS_execve, c->argv[0], c->argv, c->envp);
    syscall(SYS_exit, 127);
    return 127;
}

/* RLIMIT_AS, RLIMIT_FSIZE, and RLIMIT_NPROC under its own uid (+ bubblewrap itself). */
static void mcp_limits(const sandbox_mcp *p, child_spec *c) {
    c->res[0] = RLIMIT_AS;
    c->lim[0] = (struct rlimit){(rlim_t)p->memory_mb << 20, (rlim_t)p->memory_mb << 20};
    c->res[1] = RLIMIT_FSIZE;
    c->lim[1] = (struct rlimit){(rlim_t)p->file_size_mb << 20, (rlim_t)p->file_size_mb << 20};
    c->res[2] = RLIMIT_NPROC;
    c->lim[2] = (struct rlimit){(rlim_t)p->max_procs + 1, (rlim_t)p->max_procs + 1};
    c->n_lim = c->uid >= 0 ? 3 : 2;
}

static pid_t mcp_clone(mcp_child *k) { return vfork_run(mcp_child_main, k); }

int sandbox_mcp_spawn(sandbox_mcp *p, pid_t *pid, int fds[3], char *err, size_t errlen) {
    int keep[MCP_MAX_BINDS + 1], wfd = -1, n = p->n_binds;
    char src[MCP_MAX_BINDS + 1][32];
    for (int i = 0; i <= MCP_MAX_BINDS; i++) keep[i] = -1;
    run_fds f;
    memset(&f, -1, sizeof f); /* every descriptor -1 */
    int rc = open_mcp_binds(p, keep, err, errlen);
    if (!rc && !(rc = open_mcp_workdir(p, &wfd, err, errlen)) && wfd >= 0) keep[n++] = wfd;
    if (!rc && p->stage[0]) rc = detach_binds(keep, n, err, errlen);
    char sec[64];
    snprintf(sec, sizeof sec, "/proc/self/fd/%d", p->seccomp_fd);
    if (!rc &&
        ((f.sec = open(sec, O_RDONLY | O_CLOEXEC)) < 0 || pipe2(f.in, O_CLOEXEC) || pipe2(f.out, O_CLOEXEC) ||
         pipe2(f.err, O_CLOEXEC))) {
        snprintf(err, errlen, "no descriptors left: %s", strerror(errno));
        rc = AIOS_ERR_BUSY;
    }
    *pid = -1;
    if (!rc) {
        for (int i = 0; i < n; i++) {
            if (p->stage[0]) snprintf(src[i], sizeof src[i], "%s/%d", p->stage, i);
            else snprintf(src[i], sizeof src[i], "%d", keep[i]);
        }
        argv_b a = {0};
        mcp_argv(p, src, wfd, &a);
        mcp_child k = {.c = {.argv = (char *const *)a.v,
                             .envp = (char *const *)p->envp,
                             .fd_in = f.in[0],
                             .fd_out = f.out[1],
                             .fd_err = f.err[1],
                             .fd_seccomp = f.sec,
                             .uid = p->uid,
                             .port_wall = p->port_wall},
                       .keep = keep,
                       .n_keep = n,
                       .stage = p->stage,
                       .dst = src};
        mcp_limits(p, &k.c);
        if ((*pid = mcp_clone(&k)) < 0) {
            snprintf(err, errlen, "cannot start bubblewrap: %s", strerror(errno));
            rc = AIOS_ERR_IO;
        }
    }
    for (int i = 0; i <= MCP_MAX_BINDS; i++) close_fd(&keep[i]);
    close_fd(&f.in[0]);
    close_fd(&f.out[1]);
    close_fd(&f.err[1]);
    close_fd(&f.sec);
    if (rc) close_all(&f);
    fds[0] = f.in[1], fds[1] = f.out[0], fds[2] = f.err[0];
    return rc;
}

/* ---------- agent processes (the agents module's sandbox) ----------
 *
 * The same profile as a process tool (bubblewrap, namespaces, seccomp, no capabilities,
 * no new privileges, the read-only system), for a long-running program: its own workdir
 * read-write at /work (by descriptor), its package read-only at /agent, a few checked host
 * directories read-only at their own paths (a venv the command lives in), stdin from
 * /dev/null and stdout / stderr into the caller's pipes. Network, per spec:
 *   none         a new network namespace (loopback only, nothing listening) and no socket(2);
 *   kernel-only  the host's network, TCP connect only to the kernel's port (a landlock
 *                ruleset, Linux 6.7+) and no datagram or raw sockets (seccomp); without
 *                landlock's network rules it cannot be enforced and the spawn is refused;
 *   full         the host's network. */

struct sandbox_procs {
    char bwrap[AIOS_PATH_MAX];
    bool merged_usr;
    char workroot[AIOS_PATH_MAX];
    int seccomp_fd[3]; /* per sandbox_net */
    int kernel_wall;   /* landlock: TCP connect to the kernel's port only; < 0: unavailable */
    long landlock_abi;
};

/* A landlock ruleset that allows TCP connect to port alone, or -1. */
static int kernel_wall_new(int port, long abi) {
    if (abi < 4) return -1;
    struct ll_ruleset_attr ra = {.handled_access_net = LL_ACCESS_NET_CONNECT_TCP};
    int fd = (int)syscall(SYS_landlock_create_ruleset, &ra, sizeof ra, 0);
    struct ll_net_port_attr na = {LL_ACCESS_NET_CONNECT_TCP, (uint64_t)port};
    if (fd >= 0 && syscall(SYS_landlock_add_rule, fd, LL_RULE_NET_PORT, &na, 0)) {
        close(fd);
        return -1;
    }
    if (fd >= 0) fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
}

void sandbox_procs_free(sandbox_procs *sp) {
    if (!sp) return;
    for (int i = 0; i < 3; i++)
        if (sp->seccomp_fd[i] >= 0) close(sp->seccomp_fd[i]);
    if (sp->kernel_wall >= 0) close(sp->kernel_wall);
    free(sp);
}

sandbox_procs *sandbox_procs_new(const aios_config *kcfg, char *err, size_t errlen) {
    sandbox_procs *sp = calloc(1, sizeof *sp);
    if (!sp) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    sp->seccomp_fd[0] = sp->seccomp_fd[1] = sp->seccomp_fd[2] = sp->kernel_wall = -1;
    host_probe(kcfg, sp->bwrap, &sp->merged_usr, sp->workroot);
    sp->landlock_abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LL_CREATE_RULESET_VERSION);
    sp->kernel_wall = kernel_wall_new(kcfg->server.port, sp->landlock_abi);
    for (int i = 0; i < 3; i++)
        if ((sp->seccomp_fd[i] = build_seccomp((sandbox_net)i, "agents", err, errlen)) < 0) {
            sandbox_procs_free(sp);
            return NULL;
        }
    return sp;
}

int sandbox_procs_network(const sandbox_procs *sp, sandbox_net net, char *how, size_t cap) {
    if (net == SANDBOX_NET_NONE) snprintf(how, cap, "a private network namespace (loopback only) and no sockets");
    else if (net == SANDBOX_NET_FULL) snprintf(how, cap, "the host's network");
    else if (sp->kernel_wall >= 0)
        snprintf(how, cap, "landlock: TCP connect to the kernel's port only (ABI %ld); no datagram or raw sockets (seccomp)",
                 sp->landlock_abi);
    else {
        snprintf(how, cap,
                 "this Linux has no landlock network rules (ABI %ld; 4, Linux 6.7+, is needed), so network "
                 "'kernel-only' cannot be enforced: use 'none' or 'full'",
                 sp->landlock_abi);
        return AIOS_ERR_UNSUPPORTED;
    }
    return sp->bwrap[0] ? AIOS_OK : AIOS_ERR_UNSUPPORTED;
}

int sandbox_procs_check_path(const sandbox_procs *sp, const aios_config *kcfg, const char *path, bool same_path, const char *what,
                             char *err, size_t errlen) {
    char c[PATH_MAX];
    return check_bind(kcfg, sp->workroot, path, same_path, what, c, err, errlen);
}

static void agent_argv(const sandbox_procs *sp, const sandbox_proc_spec *s, argv_b *a) {
    base_profile(a, sp->bwrap, sp->merged_usr, s->net != SANDBOX_NET_NONE);
    for (int i = 0; i < s->n_ro; i++) add3(a, "--ro-bind", s->ro_paths[i], s->ro_paths[i]);
    if (s->pkg_dir) add3(a, "--ro-bind", s->pkg_dir, "/agent");
    if (s->runner_dir) add3(a, "--ro-bind", s->runner_dir, "/runner");
    add3(a, "--bind-fd", SANDBOX_WORK_FD, "/work");
    add_tail(a, "/work", s->argv[0]);
    for (int i = 1; s->argv[i]; i++) add(a, s->argv[i]);
    a->v[a->n] = NULL;
}

int sandbox_procs_spawn(sandbox_procs *sp, const aios_config *kcfg, const sandbox_proc_spec *s, pid_t *pid, char *err,
                        size_t errlen) {
    char how[256];
    *pid = -1;
    if (!sp->bwrap[0]) {
        snprintf(err, errlen, "bubblewrap (bwrap) is not installed, and agents run only sandboxed (scripts/install-deps.sh)");
        return AIOS_ERR_UNSUPPORTED;
    }
    int rc = sandbox_procs_network(sp, s->net, how, sizeof how);
    if (rc) {
        snprintf(err, errlen, "%s", how);
        return rc;
    }
    for (int i = 0; i < s->n_ro && !rc; i++)
        rc = sandbox_procs_check_path(sp, kcfg, s->ro_paths[i], true, "ro_paths", err, errlen);
    if (rc) return rc;
    char sec[64];
    snprintf(sec, sizeof sec, "/proc/self/fd/%d", sp->seccomp_fd[s->net]);
    int fd_sec = open(sec, O_RDONLY | O_CLOEXEC), fd_null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd_sec < 0 || fd_null < 0) {
        snprintf(err, errlen, "no descriptors left: %s", strerror(errno));
        rc = AIOS_ERR_BUSY;
    } else {
        argv_b a = {0};
        agent_argv(sp, s, &a);
        child_spec c = {.argv = (char *const *)a.v,
                        .envp = (char *const *)s->envp,
                        .fd_in = fd_null,
                        .fd_out = s->fd_out,
                        .fd_err = s->fd_err,
                        .fd_seccomp = fd_sec,
                        .fd_work = s->workdir_fd,
                        .uid = s->uid,
                        .port_wall = s->net == SANDBOX_NET_KERNEL ? sp->kernel_wall : -1,
                        .nice = s->nice,
                        .join_cgroup = s->cgroup_fd >= 0,
                        .fd_cgroup = s->cgroup_fd};
        if (s->uid >= 0 && s->max_procs > 0) { /* + bubblewrap's own process */
            c.res[0] = RLIMIT_NPROC;
            c.lim[0] = (struct rlimit){(rlim_t)s->max_procs + 1, (rlim_t)s->max_procs + 1};
            c.n_lim = 1;
        }
        if ((*pid = spawn(&c)) < 0) {
            snprintf(err, errlen, "cannot start bubblewrap: %s", strerror(errno));
            rc = AIOS_ERR_IO;
        }
    }
    if (fd_sec >= 0) close(fd_sec);
    if (fd_null >= 0) close(fd_null);
    return rc;
}
