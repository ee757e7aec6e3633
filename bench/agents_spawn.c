/*
 * agents_spawn.c - how fast the kernel starts an agent, and what each one costs it (issue 14
 * benchmark; bench/agents_spawn.sh starts the kernel and runs this).
 *
 *   agents_spawn URL AIOSD_PID N AT_ONCE
 *
 * 1. Start latency, N times each, side by side: the same program (/bin/sh running curl for
 *    one tool syscall, aios/time, then printing the wall clock) started
 *      - as an agent: POST /agents, the kernel's sandbox, its own identity and token;
 *      - bare: fork + exec by this process, with a bearer name (access.mode local).
 *    The latency is submit (or fork) -> the program has the answer of its first syscall, from
 *    the clock it prints. p50 / p99 of each and their ratio.
 * 2. AT_ONCE agents started at once (each makes its syscall, then sleeps): all must run (their
 *    records count the syscall), and the kernel's resident memory and open descriptors grow
 *    by so much per live agent (read from /proc/AIOSD_PID).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "http.h"

#define SCRIPT \
    "curl -s -o /dev/null -H \"Authorization: Bearer $AIOS_TOKEN\" -H 'Content-Type: application/json' " \
    "-d '{\"query_type\":\"tool\",\"query_data\":{\"tool_calls\":[{\"name\":\"aios/time\",\"parameters\":{}}]}}' " \
    "\"$AIOS_URL/query\" && date +%s.%N"

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The value of "key": in a JSON text (a number or a string's text), or "" */
static void field(const char *json, const char *key, char *out, size_t cap) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    out[0] = 0;
    if (!p) return;
    p += strlen(pat);
    if (*p == '"') p++;
    size_t n = strcspn(p, "\",}");
    snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), p);
}

static int start_agent(const char *base, const char *script, char *id, size_t cap) {
    bench_conn k;
    bench_conn_init(&k, base, "/agents", NULL);
    char body[4096], esc[2048];
    size_t j = 0;
    for (const char *c = script; *c && j < sizeof esc - 3; c++) { /* as a JSON string */
        if (*c == '"' || *c == '\\') esc[j++] = '\\';
        esc[j++] = *c;
    }
    esc[j] = 0;
    snprintf(body, sizeof body, "{\"command\":[\"/bin/sh\",\"-c\",\"%s\"]}", esc);
    long st = bench_request(&k, body);
    if (st == 201) field(k.buf, "id", id, cap);
    else fprintf(stderr, "POST /agents: %ld %s\n", st, k.buf);
    bench_conn_free(&k);
    return st == 201 ? 0 : -1;
}

/* GET path into k (a fresh connection); the HTTP status. */
static long get(const char *base, const char *path, bench_conn *k) {
    bench_conn_init(k, base, path, NULL);
    return bench_request(k, NULL);
}

/* Waits for the agent to end; the wall clock its output printed, or 0. */
static double agent_answer_time(const char *base, const char *id) {
    char path[128], state[32] = "";
    snprintf(path, sizeof path, "/agents/%s", id);
    for (int i = 0; i < 20000; i++) {
        bench_conn k;
        get(base, path, &k);
        field(k.buf, "state", state, sizeof state);
        bench_conn_free(&k);
        if (strcmp(state, "running") && strcmp(state, "starting")) break;
        usleep(1000);
    }
    bench_conn k;
    snprintf(path, sizeof path, "/agents/%s/logs", id);
    get(base, path, &k);
    double t = atof(k.buf);
    bench_conn_free(&k);
    return t;
}

static double bare_answer_time(const char *base) {
    int fd[2];
    if (pipe(fd)) return 0;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        setenv("AIOS_URL", base, 1);
        setenv("AIOS_TOKEN", "bench-bare", 1);
        execl("/bin/sh", "sh", "-c", SCRIPT, (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    char buf[128] = "";
    ssize_t n = read(fd[0], buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    close(fd[0]);
    waitpid(pid, NULL, 0);
    return atof(buf);
}

static void report(const char *what, double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    printf("%-34s p50 %7.1f ms   p99 %7.1f ms   (n=%d)\n", what, bench_pct(v, n, 0.5) * 1e3, bench_pct(v, n, 0.99) * 1e3, n);
}

static void latency(const char *base, int n) {
    double *agent = calloc((size_t)n, sizeof *agent), *bare = calloc((size_t)n, sizeof *bare);
    int na = 0, nb = 0;
    for (int i = 0; i < n; i++) { /* alternating, so drift affects both alike */
        char id[64];
        double t0 = wall_now();
        if (!start_agent(base, SCRIPT, id, sizeof id)) {
            double t = agent_answer_time(base, id);
            if (t > t0) agent[na++] = t - t0;
        }
        t0 = wall_now();
        double t = bare_answer_time(base);
        if (t > t0) bare[nb++] = t - t0;
    }
    printf("## start latency: submit -> the answer of the program's first syscall\n");
    report("agent (POST /agents, sandboxed)", agent, na);
    report("bare fork+exec of the same program", bare, nb);
    if (na && nb) printf("ratio p50 agent / bare: %.2f\n", bench_pct(agent, na, 0.5) / bench_pct(bare, nb, 0.5));
    free(agent);
    free(bare);
}

/* The kernel's resident KiB and open descriptors. */
static void kernel_cost(int pid, long *rss_kb, int *fds) {
    char p[64], line[256];
    snprintf(p, sizeof p, "/proc/%d/status", pid);
    FILE *f = fopen(p, "r");
    *rss_kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) *rss_kb = atol(line + 6);
    if (f) fclose(f);
    snprintf(p, sizeof p, "/proc/%d/fd", pid);
    DIR *d = opendir(p);
    *fds = 0;
    while (d && readdir(d)) (*fds)++;
    if (d) closedir(d);
}

static void at_once(const char *base, int pid, int n) {
    char(*ids)[64] = calloc((size_t)n, sizeof *ids);
    long rss0, rss1;
    int fd0, fd1, started = 0, ran = 0;
    kernel_cost(pid, &rss0, &fd0);
    double t0 = bench_now();
    for (int i = 0; i < n; i++) started += !start_agent(base, SCRIPT " && sleep 20", ids[i], sizeof ids[i]);
    double t_started = bench_now() - t0;
    for (int round = 0; round < 600 && ran < started; round++) { /* until every one made its syscall */
        usleep(50000);
        ran = 0;
        for (int i = 0; i < n; i++) {
            char path[128], calls[32];
            bench_conn k;
            snprintf(path, sizeof path, "/agents/%s", ids[i]);
            if (!ids[i][0] || get(base, path, &k) != 200) continue;
            field(k.buf, "syscalls", calls, sizeof calls);
            ran += atoi(calls) >= 1;
            bench_conn_free(&k);
        }
    }
    double t_ran = bench_now() - t0;
    kernel_cost(pid, &rss1, &fd1);
    printf("\n## %d agents started at once\n", n);
    printf("started %d of %d in %.2f s; %d made their syscall within %.2f s\n", started, n, t_started, ran, t_ran);
    printf("kernel: resident %ld -> %ld KiB (%+.1f KiB per agent), descriptors %d -> %d (%+.2f per agent)\n", rss0, rss1,
           started ? (double)(rss1 - rss0) / started : 0, fd0, fd1, started ? (double)(fd1 - fd0) / started : 0);
    for (int i = 0; i < n; i++) {
        char path[128];
        bench_conn k;
        snprintf(path, sizeof path, "/agents/%s/kill", ids[i]);
        bench_conn_init(&k, base, path, NULL);
        if (ids[i][0]) bench_request(&k, "{}");
        bench_conn_free(&k);
    }
    free(ids);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: agents_spawn URL AIOSD_PID N AT_ONCE\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    latency(argv[1], atoi(argv[3]));
    at_once(argv[1], atoi(argv[2]), atoi(argv[4]));
    curl_global_cleanup();
    return 0;
}
