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
 * write. All capabilities dropped, no new privileges, and a seccomp filter (libseccomp,
 * exported once to a memfd) that refuses ptrace, mount, namespaces, bpf, keyrings, module
 * loading, io_uring and the like, and without network socket(2) too (a second wall
 * behind the empty network namespace).
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
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tools_internal.h"

#define SANDBOX_MAX_ARGV 160
#define STDERR_KEEP 1024

struct sandbox {
    char bwrap[AIOS_PATH_MAX];  /* "" = not installed */
    char workroot[AIOS_PATH_MAX];
    int seccomp_fd[2];          /* memfds with the BPF programs: [network allowed] */
    bool merged_usr;            /* /bin is a link into /usr */
    bool switch_uid;
    long uid_base;
    pthread_mutex_t mu;
    unsigned char *slots;       /* in use, per uid slot */
    int n_slots;
};

static const int DENIED[] = {
    SCMP_SYS(ptrace), SCMP_SYS(process_vm_readv), SCMP_SYS(process_vm_writev), SCMP_SYS(mount), SCMP_SYS(umount2),
    SCMP_SYS(pivot_root), SCMP_SYS(swapon), SCMP_SYS(swapoff), SCMP_SYS(reboot), SCMP_SYS(kexec_load),
    SCMP_SYS(kexec_file_load), SCMP_SYS(init_module), SCMP_SYS(finit_module), SCMP_SYS(delete_module), SCMP_SYS(bpf),
    SCMP_SYS(perf_event_open), SCMP_SYS(keyctl), SCMP_SYS(add_key), SCMP_SYS(request_key), SCMP_SYS(userfaultfd),
    SCMP_SYS(setns), SCMP_SYS(unshare), SCMP_SYS(acct), SCMP_SYS(quotactl), SCMP_SYS(open_by_handle_at),
    SCMP_SYS(name_to_handle_at), SCMP_SYS(iopl), SCMP_SYS(ioperm), SCMP_SYS(settimeofday), SCMP_SYS(clock_settime),
    SCMP_SYS(fanotify_init), SCMP_SYS(move_mount), SCMP_SYS(open_tree), SCMP_SYS(fsopen), SCMP_SYS(fsmount),
    SCMP_SYS(pidfd_getfd), SCMP_SYS(io_uring_setup), SCMP_SYS(io_uring_enter), SCMP_SYS(io_uring_register),
};

/* The filter of a call: DENIED, and without network also socket(2) of any family (no
 * socket, no network; socketpair(2) and pipes still work). Other architectures' system
 * calls (int 0x80's socketcall) kill the process: libseccomp's default bad-arch action. */
static int build_seccomp(bool network, char *err, size_t errlen) {
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    int fd = ctx ? memfd_create("aios-seccomp", MFD_CLOEXEC) : -1;
    int rc = fd >= 0 ? 0 : -1;
    for (size_t i = 0; !rc && i < sizeof DENIED / sizeof DENIED[0]; i++)
        if (DENIED[i] >= 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), DENIED[i], 0);
    if (!rc && !network) rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(socket), 0);
    if (!rc) rc = seccomp_export_bpf(ctx, fd);
    if (ctx) seccomp_release(ctx);
    if (rc) {
        snprintf(err, errlen, "tools: cannot build the seccomp filter (%d)", rc);
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

/* mkdir -p; directories it creates get exactly mode (the kernel's umask is 077). */
static int mkdir_one(const char *p, mode_t mode) {
    if (mkdir(p, mode) == 0) return chmod(p, mode);
    return errno == EEXIST ? 0 : -1;
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

sandbox *sandbox_new(const aios_config *cfg, char *err, size_t errlen) {
    sandbox *sb = calloc(1, sizeof *sb);
    if (!sb) return NULL;
    pthread_mutex_init(&sb->mu, NULL);
    sb->seccomp_fd[0] = sb->seccomp_fd[1] = -1;
    const char *cands[] = {"/usr/bin/bwrap", "/bin/bwrap", "/usr/local/bin/bwrap"};
    for (size_t i = 0; i < 3 && !sb->bwrap[0]; i++)
        if (access(cands[i], X_OK) == 0) snprintf(sb->bwrap, sizeof sb->bwrap, "%s", cands[i]);
    if (!sb->bwrap[0]) log_warn("tools: bubblewrap (bwrap) is not installed; process tools will fail (scripts/install-deps.sh installs it)");
    struct stat st;
    sb->merged_usr = lstat("/bin", &st) == 0 && S_ISLNK(st.st_mode);
    if (cfg->tools.workdir[0]) snprintf(sb->workroot, sizeof sb->workroot, "%s", cfg->tools.workdir);
    else snprintf(sb->workroot, sizeof sb->workroot, "%.1000s/tools", cfg->data_dir);
    sb->switch_uid = geteuid() == 0 && cfg->tools.sandbox_uid_base > 0;
    if (!sb->switch_uid)
        log_warn("tools: process tool calls run under the kernel's uid (not root, or tools.sandbox_uid_base 0), so "
                 "tools.max_procs is not enforced; a fork bomb lasts until the call's timeout kills its namespace");
    sb->uid_base = cfg->tools.sandbox_uid_base;
    sb->n_slots = cfg->tools.max_pending;
    if (!(sb->slots = calloc((size_t)sb->n_slots, 1)) || (sb->seccomp_fd[0] = build_seccomp(false, err, errlen)) < 0 ||
        (sb->seccomp_fd[1] = build_seccomp(true, err, errlen)) < 0) {
        sandbox_free(sb);
        return NULL;
    }
    return sb;
}

void sandbox_free(sandbox *sb) {
    if (!sb) return;
    for (int i = 0; i < 2; i++)
        if (sb->seccomp_fd[i] >= 0) close(sb->seccomp_fd[i]);
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
    struct rlimit lim[4];
    int res[4], n_lim;
    long uid;                               /* < 0: keep */
} child_spec;

/* Runs in the clone(CLONE_VM|CLONE_VFORK) child: raw system calls only, then execve. */
static int child_main(void *arg) {
    const child_spec *c = arg;
    if (syscall(SYS_dup2, c->fd_in, 0) < 0 || syscall(SYS_dup2, c->fd_out, 1) < 0 || syscall(SYS_dup2, c->fd_err, 2) < 0 ||
        syscall(SYS_dup2, c->fd_seccomp, 3) < 0)
        syscall(SYS_exit, 126);
    syscall(SYS_close_range, 4, ~0U, 0);
    syscall(SYS_setpgid, 0, 0);
    for (int i = 0; i < c->n_lim; i++) syscall(SYS_prlimit64, 0, c->res[i], &c->lim[i], NULL);
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

static pid_t spawn(const child_spec *c) {
    enum { STACK = 64 * 1024 };
    char *stack = malloc(STACK);
    if (!stack) return -1;
    pid_t pid = clone(child_main, stack + STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, (void *)c);
    free(stack); /* CLONE_VFORK: the child has exec'd or exited */
    return pid;
}

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

static void build_argv(const sandbox *sb, const tool_def *d, const char *workdir, const char *cmd, argv_b *a) {
    add(a, sb->bwrap);
    add3(a, "--unshare-user", "--unshare-pid", "--unshare-ipc");
    add3(a, "--unshare-uts", "--unshare-cgroup-try", NULL);
    add(a, "--as-pid-1"); /* see the header: no reaper that outlives bubblewrap as a zombie */
    if (!d->network) add(a, "--unshare-net");
    add3(a, "--die-with-parent", "--new-session", NULL);
    add3(a, "--cap-drop", "ALL", NULL);
    add3(a, "--ro-bind", "/usr", "/usr");
    add3(a, "--ro-bind-try", "/etc", "/etc");
    static const char *const LINKS[][2] = {{"usr/bin", "/bin"}, {"usr/lib", "/lib"}, {"usr/lib64", "/lib64"}, {"usr/sbin", "/sbin"}};
    for (int i = 0; i < 4; i++) {
        if (sb->merged_usr) add3(a, "--symlink", LINKS[i][0], LINKS[i][1]);
        else add3(a, "--ro-bind-try", LINKS[i][1], LINKS[i][1]);
    }
    static const char *const DEVS[] = {"/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"};
    for (int i = 0; i < 4; i++) add3(a, "--dev-bind", DEVS[i], DEVS[i]);
    add3(a, "--ro-bind", d->dir, "/tool");
    if (d->fs != TOOL_FS_NONE) add3(a, d->fs == TOOL_FS_WORKDIR ? "--bind" : "--ro-bind", workdir, "/work");
    add3(a, "--remount-ro", "/", NULL); /* the new root itself (a tmpfs) takes no writes either */
    add3(a, "--chdir", d->fs != TOOL_FS_NONE ? "/work" : "/tool", NULL);
    add3(a, "--seccomp", "3", NULL);
    add(a, "--");
    add(a, cmd);
    for (int i = 0; i < d->n_args; i++) add(a, d->args[i]);
    a->v[a->n] = NULL;
}

/* <workroot>/<agent>/<tool with '/' as '__'>, created world-writable (the per-call uids
 * differ); only this agent's calls of this tool ever see it. */
static int make_workdir(const sandbox *sb, const tool_def *d, const char *agent, char *out, size_t outlen, char *err,
                        size_t errlen) {
    char tool[TOOL_NAME_MAX * 2];
    size_t j = 0;
    for (const char *p = d->name; *p && j + 3 < sizeof tool; p++) {
        if (*p == '/') tool[j++] = '_', tool[j++] = '_';
        else tool[j++] = *p;
    }
    tool[j] = 0;
    char ag[AIOS_NAME_MAX];
    snprintf(ag, sizeof ag, "%s", agent);
    for (char *p = ag; *p; p++)
        if (*p == '/' || (p == ag && *p == '.')) *p = '_';
    snprintf(out, outlen, "%s/%s/%s", sb->workroot, ag, tool);
    if (mkdir_p(out, 0755) || chmod(out, 0777)) {
        snprintf(err, errlen, "cannot create the tool workdir %s: %s", out, strerror(errno));
        return AIOS_ERR_IO;
    }
    return AIOS_OK;
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
        if (io->in >= 0) { iw = n; p[n++] = (struct pollfd){.fd = io->in, .events = POLLOUT}; }
        if (io->out >= 0) { io_ = n; p[n++] = (struct pollfd){.fd = io->out, .events = POLLIN}; }
        if (io->errfd >= 0) { ie = n; p[n++] = (struct pollfd){.fd = io->errfd, .events = POLLIN}; }
        int ms = left > 0.2 ? 200 : (int)(left * 1000) + 1; /* wakes 5 times a second to see a cancel */
        if (poll(p, (nfds_t)n, ms) <= 0) continue;
        if (iw >= 0 && p[iw].revents) {
            ssize_t w = p[iw].revents & POLLOUT ? write(io->in, io->input + io->in_off, io->in_len - io->in_off) : -1;
            if (w > 0) io->in_off += (size_t)w;
            if (w < 0 || io->in_off == io->in_len) { close(io->in); io->in = -1; }
        }
        if (io_ >= 0 && p[io_].revents) {
            ssize_t r = read(io->out, buf, sizeof buf);
            if (r <= 0) { close(io->out); io->out = -1; }
            else {
                size_t room = (size_t)run->max_output - run->out->len;
                sb_append(run->out, buf, (size_t)r < room ? (size_t)r : room);
                if ((size_t)r > room) return AIOS_ERR_TOO_LARGE;
            }
        }
        if (ie >= 0 && p[ie].revents) {
            ssize_t r = read(io->errfd, buf, sizeof buf);
            if (r <= 0) { close(io->errfd); io->errfd = -1; }
            else keep_stderr(io, buf, (size_t)r);
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
    if (code > 128) snprintf(run->err, run->errlen, "tool '%s' failed: %s%s%.400s", d->name, sig_text(code - 128),
                             io->err_len ? "; stderr: " : "", io->errbuf);
    else snprintf(run->err, run->errlen, "tool '%s' exited with status %d%s%.400s", d->name, code,
                  io->err_len ? "; stderr: " : "", io->errbuf);
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
    char workdir[AIOS_PATH_MAX * 2] = "", cmd[AIOS_PATH_MAX + 8];
    if (d->fs != TOOL_FS_NONE) {
        int rc = make_workdir(sb, d, run->agent, workdir, sizeof workdir, run->err, run->errlen);
        if (rc) return rc;
    }
    /* absolute: as is; "dir/x", or a bare name next to the manifest: under /tool; else PATH */
    char host[AIOS_PATH_MAX * 2];
    snprintf(host, sizeof host, "%s/%s", d->dir, d->command);
    bool local = d->command[0] != '/' && (strchr(d->command, '/') || access(host, F_OK) == 0);
    snprintf(cmd, sizeof cmd, "%s%s", local ? "/tool/" : "", d->command);
    argv_b a = {0};
    build_argv(sb, d, workdir, cmd, &a);
    char e_agent[AIOS_NAME_MAX + 16], e_tool[TOOL_NAME_MAX + 16];
    snprintf(e_agent, sizeof e_agent, "AIOS_AGENT=%s", run->agent);
    snprintf(e_tool, sizeof e_tool, "AIOS_TOOL=%s", d->name);
    char *const envp[] = {"PATH=/usr/local/bin:/usr/bin:/bin", d->fs != TOOL_FS_NONE ? "HOME=/work" : "HOME=/tool",
                          "LANG=C.UTF-8", e_agent, e_tool, NULL};
    run_fds f = {{-1, -1}, {-1, -1}, {-1, -1}, -1};
    int slot = sb->switch_uid ? slot_get(sb) : -1;
    if ((sb->switch_uid && slot < 0) || open_fds(sb, d->network, &f)) {
        close_all(&f);
        slot_put(sb, slot);
        snprintf(run->err, run->errlen, "tool '%s': no sandbox slot or descriptors left", d->name);
        return AIOS_ERR_BUSY;
    }
    child_spec c = {.argv = (char *const *)a.v, .envp = envp, .fd_in = f.in[0], .fd_out = f.out[1], .fd_err = f.err[1],
                    .fd_seccomp = f.sec, .uid = slot >= 0 ? sb->uid_base + slot : -1};
    set_limits(&c, d);
    pid_t pid = spawn(&c);
    close_fd(&f.in[0]);
    close_fd(&f.out[1]);
    close_fd(&f.err[1]);
    close_fd(&f.sec);
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
    else while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    kill(-pid, SIGKILL); /* stragglers that left the session die with the pid namespace anyway */
    close_fd(&io.in);
    close_fd(&io.out);
    close_fd(&io.errfd);
    slot_put(sb, slot);
    if (rc == AIOS_ERR_TIMEOUT)
        snprintf(run->err, run->errlen, "tool '%s' timed out after %d ms; its process group was killed", d->name, timeout_ms);
    else if (rc == AIOS_ERR_CANCELLED) snprintf(run->err, run->errlen, "tool '%s' was cancelled; its process group was killed", d->name);
    else if (rc == AIOS_ERR_TOO_LARGE) {
        *run->truncated = true;
        sb_printf(run->out, "\n[aios: output truncated at %ld bytes (tools.max_output_bytes)]", run->max_output);
        snprintf(run->err, run->errlen, "tool '%s' wrote more than tools.max_output_bytes (%ld); it was stopped and its output cut",
                 d->name, run->max_output);
    }
    return rc ? rc : judge(d, run, &io, status);
}
