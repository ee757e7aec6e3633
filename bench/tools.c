/*
 * tools.c - tool-manager benchmark through HTTP against a running aiosd whose tools.dir
 * holds bench/noop (a process tool running /bin/cat: JSON in, the same JSON out) and
 * bench/sleep (a process tool that sleeps until it is cancelled). bench/tools.sh sets
 * that up.
 *
 *   tools URL noop AGENTS N       1. the floor: N times posix_spawn of /bin/cat with the
 *                                    parameters on a pipe, no kernel and no sandbox;
 *                                 2. one agent calling bench/noop N times back to back
 *                                    (POST /query, query_type "tool"): the round trip;
 *                                 3. AGENTS agents (one thread and one keep-alive connection
 *                                    each) calling it N times each, closed loop: calls/s.
 *                                 Reports p50 / p99 / max and the ratio to the floor.
 *   tools URL llm SLOW ROUNDS AGENTS REQS G
 *                                 LLM throughput with SLOW bench/sleep calls running at once
 *                                 against none, alternating ROUNDS times (none, with, none,
 *                                 with, ...) so drift hits both alike. Each measurement is
 *                                 AGENTS agents sending REQS chat completions each (max_tokens
 *                                 G, temperature 0, the same prompt); tokens come from the
 *                                 server's usage counts. The slow calls are started, counted
 *                                 as running in /metrics (aios_tool_running) and as `sleep`
 *                                 processes in /proc (their sandboxes are set up), measured
 *                                 against, then cancelled by closing their connections (the
 *                                 kernel kills their process groups) before the next round.
 *
 * Prints markdown tables on stdout and one JSON line per measurement on stderr.
 */
#include <dirent.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
#include "http.h"

extern char **environ;

static const char *g_url;
static const char *NOOP_PARAMS = "{\"text\":\"hello\",\"n\":1}";

static void conn_init(bench_conn *k, const char *path, const char *agent) { bench_conn_init(k, g_url, path, agent); }

static void tool_body(char *out, size_t n, const char *agent, const char *tool, const char *params) {
    snprintf(
        out, n,
        "{\"agent_name\":\"%s\",\"query_type\":\"tool\",\"query_data\":{\"tool_calls\":[{\"name\":\"%s\",\"parameters\":%s}]}}",
        agent, tool, params);
}

/* One bench/noop call; 0 when it answered 200 with the parameters echoed back. */
static int noop_call(bench_conn *k, const char *body) {
    long st = bench_request(k, body);
    if (st == 200 && strstr(k->buf, "hello")) return 0;
    fprintf(stderr, "bench/noop: HTTP %ld: %.300s\n", st, k->buf);
    return -1;
}

/* ---------------- noop ---------------- */

/* The floor: spawn /bin/cat, write the parameters, read them back, reap it. */
static int spawn_cat(void) {
    int in[2], out[2];
    if (pipe(in) || pipe(out)) return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, in[1]);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    char *argv[] = {"/bin/cat", NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, "/bin/cat", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    ssize_t w = rc ? -1 : write(in[1], NOOP_PARAMS, strlen(NOOP_PARAMS));
    close(in[1]);
    char buf[256];
    size_t got = 0;
    ssize_t r;
    while ((r = read(out[0], buf + got, sizeof buf - 1 - got)) > 0) got += (size_t)r;
    close(out[0]);
    if (!rc) waitpid(pid, NULL, 0);
    return rc || w < 0 || got != strlen(NOOP_PARAMS) ? -1 : 0;
}

typedef struct noop_agent {
    int idx, n;
    double *lat;
    long fails;
} noop_agent;

static pthread_barrier_t g_bar;

static void *noop_main(void *arg) {
    noop_agent *a = arg;
    char agent[32], body[512];
    snprintf(agent, sizeof agent, "tools-bench-%d", a->idx);
    tool_body(body, sizeof body, agent, "bench/noop", NOOP_PARAMS);
    bench_conn k;
    conn_init(&k, "/query", NULL);
    a->fails += noop_call(&k, body) != 0; /* connect, warm up */
    pthread_barrier_wait(&g_bar);
    for (int i = 0; i < a->n; i++) {
        double t0 = bench_now();
        a->fails += noop_call(&k, body) != 0;
        a->lat[i] = bench_now() - t0;
    }
    bench_conn_free(&k);
    return NULL;
}

/* AGENTS threads of n calls each; prints one table row; returns the failures. */
static long noop_phase(const char *name, int agents, int n, double floor_p50, double *p50_out) {
    noop_agent *as = calloc((size_t)agents, sizeof *as);
    pthread_t *th = calloc((size_t)agents, sizeof *th);
    pthread_barrier_init(&g_bar, NULL, (unsigned)agents + 1);
    for (int i = 0; i < agents; i++) {
        as[i] = (noop_agent){.idx = i, .n = n, .lat = calloc((size_t)n, sizeof(double))};
        pthread_create(&th[i], NULL, noop_main, &as[i]);
    }
    pthread_barrier_wait(&g_bar);
    double t0 = bench_now();
    long fails = 0, total = (long)agents * n;
    double *all = malloc((size_t)total * sizeof *all);
    for (int i = 0; i < agents; i++) {
        pthread_join(th[i], NULL);
        fails += as[i].fails;
        memcpy(all + (long)i * n, as[i].lat, (size_t)n * sizeof *all);
        free(as[i].lat);
    }
    double secs = bench_now() - t0;
    pthread_barrier_destroy(&g_bar);
    qsort(all, (size_t)total, sizeof *all, bench_cmp_double);
    double p50 = 1e3 * bench_pct(all, total, 0.5), p99 = 1e3 * bench_pct(all, total, 0.99);
    printf("| %s | %d | %ld | %.0f | %.2f | %.2f | %.2f | %.2f |\n", name, agents, total, (double)total / secs, p50, p99,
           1e3 * all[total - 1], p50 / floor_p50);
    fprintf(
        stderr,
        "{\"phase\":\"%s\",\"agents\":%d,\"calls\":%ld,\"seconds\":%.3f,\"calls_per_s\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"failures\":%ld}\n",
        name, agents, total, secs, (double)total / secs, p50, p99, fails);
    if (p50_out) *p50_out = p50;
    free(all);
    free(as);
    free(th);
    return fails;
}

static int run_noop(int agents, int n) {
    double *lat = calloc((size_t)n, sizeof *lat), t0 = bench_now();
    long fails = 0;
    for (int i = 0; i < n; i++) {
        double s = bench_now();
        fails += spawn_cat() != 0;
        lat[i] = bench_now() - s;
    }
    double secs = bench_now() - t0;
    qsort(lat, (size_t)n, sizeof *lat, bench_cmp_double);
    double floor_p50 = 1e3 * bench_pct(lat, n, 0.5);
    printf("| path | agents | calls | calls/s | p50 ms | p99 ms | max ms | p50 / floor |\n|---|---|---|---|---|---|---|---|\n");
    printf(
        "| floor: posix_spawn /bin/cat in this process (no kernel, no sandbox) | 1 | %d | %.0f | %.2f | %.2f | %.2f | 1.00 |\n",
        n, n / secs, floor_p50, 1e3 * bench_pct(lat, n, 0.99), 1e3 * lat[n - 1]);
    free(lat);
    fails += noop_phase("aiosd: bench/noop round trip (HTTP, sandboxed process)", 1, n, floor_p50, NULL);
    char name[96];
    snprintf(name, sizeof name, "aiosd: bench/noop, %d agents closed loop", agents);
    fails += noop_phase(name, agents, n, floor_p50, NULL);
    printf("failures: %ld\n", fails);
    return fails ? 1 : 0;
}

/* ---------------- llm with slow tools ---------------- */

static atomic_bool g_stop_slow;
static atomic_int g_slow_done;

static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d) {
    (void)ud, (void)a, (void)b, (void)c, (void)d;
    return atomic_load(&g_stop_slow); /* nonzero aborts the transfer: the connection closes */
}

static void *slow_main(void *arg) {
    int idx = (int)(long)arg;
    char agent[32], body[512];
    snprintf(agent, sizeof agent, "slow-%d", idx);
    tool_body(body, sizeof body, agent, "bench/sleep", "{}");
    bench_conn k;
    conn_init(&k, "/query", NULL);
    curl_easy_setopt(k.c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(k.c, CURLOPT_XFERINFOFUNCTION, on_progress);
    long st = bench_request(&k, body);
    if (st != -1) fprintf(stderr, "bench/sleep %d ended before it was cancelled: HTTP %ld %.200s\n", idx, st, k.buf);
    bench_conn_free(&k);
    atomic_fetch_add(&g_slow_done, 1);
    return NULL;
}

/* aios_tool_running from /metrics, or -1. */
static long tools_running(void) {
    bench_conn k;
    conn_init(&k, "/metrics", NULL);
    long st = bench_request(&k, NULL), v = -1;
    const char *p = st == 200 ? strstr(k.buf, "\naios_tool_running ") : NULL;
    if (p) v = atol(p + 19);
    bench_conn_free(&k);
    return v;
}

/* Processes on this machine named `comm` (the benchmark runs beside the kernel). */
static long count_processes(const char *comm) {
    DIR *d = opendir("/proc");
    long n = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        char path[300], name[64] = "";
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        snprintf(path, sizeof path, "/proc/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (fgets(name, sizeof name, f) && !strncmp(name, comm, strlen(comm)) && name[strlen(comm)] == '\n') n++;
        fclose(f);
    }
    if (d) closedir(d);
    return n;
}

/* Waits until aios_tool_running is want (timeout s); false on timeout. */
static bool wait_running(long want, double timeout) {
    double end = bench_now() + timeout;
    long v;
    while ((v = tools_running()) != want) {
        if (bench_now() > end) {
            fprintf(stderr, "aios_tool_running is %ld, want %ld\n", v, want);
            return false;
        }
        usleep(20000);
    }
    return true;
}

typedef struct llm_agent {
    int idx, reqs, max_tokens;
    long tokens, fails;
} llm_agent;

static void *llm_main(void *arg) {
    llm_agent *a = arg;
    char agent[32], body[1024];
    snprintf(agent, sizeof agent, "llm-bench-%d", a->idx);
    snprintf(
        body, sizeof body,
        "{\"messages\":[{\"role\":\"user\",\"content\":\"Write a long story about a robot who learns to paint. Use many details.\"}],"
        "\"max_tokens\":%d,\"temperature\":0}",
        a->max_tokens);
    bench_conn k;
    conn_init(&k, "/v1/chat/completions", agent);
    for (int r = 0; r < a->reqs; r++) {
        long st = bench_request(&k, body);
        const char *p = st == 200 ? strstr(k.buf, "\"completion_tokens\":") : NULL;
        if (p) a->tokens += atol(p + 20);
        else {
            a->fails++;
            fprintf(stderr, "chat: HTTP %ld: %.300s\n", st, k.buf);
        }
    }
    bench_conn_free(&k);
    return NULL;
}

/* One LLM measurement: tokens/s over AGENTS x REQS requests. */
static double llm_measure(int agents, int reqs, int g, long *fails) {
    llm_agent *as = calloc((size_t)agents, sizeof *as);
    pthread_t *th = calloc((size_t)agents, sizeof *th);
    double t0 = bench_now();
    for (int i = 0; i < agents; i++) {
        as[i] = (llm_agent){.idx = i, .reqs = reqs, .max_tokens = g};
        pthread_create(&th[i], NULL, llm_main, &as[i]);
    }
    long tokens = 0;
    for (int i = 0; i < agents; i++) {
        pthread_join(th[i], NULL);
        tokens += as[i].tokens;
        *fails += as[i].fails;
    }
    double secs = bench_now() - t0;
    free(as);
    free(th);
    return (double)tokens / secs;
}

static int run_llm(int slow, int rounds, int agents, int reqs, int g) {
    long fails = 0;
    double sum[2] = {0, 0};
    llm_measure(1, 1, g, &fails); /* warm up: model pages, prefix cache */
    printf("| round | slow tools running | LLM tokens/s |\n|---|---|---|\n");
    for (int r = 0; r < rounds; r++) {
        for (int with = 0; with < 2; with++) {
            pthread_t *th = calloc((size_t)slow, sizeof *th);
            atomic_store(&g_stop_slow, false);
            atomic_store(&g_slow_done, 0);
            long running = 0;
            if (with) {
                for (int i = 0; i < slow; i++) pthread_create(&th[i], NULL, slow_main, (void *)(long)i);
                if (!wait_running(slow, 60)) fails++;
                /* steady state: every sandbox set up and its `sleep` started (the setup's
                 * cost is the noop benchmark's subject, not this one's) */
                double until = bench_now() + 60;
                while (count_processes("sleep") < slow && bench_now() < until) usleep(20000);
                if (count_processes("sleep") < slow) {
                    fprintf(stderr, "round %d: only %ld sleep processes\n", r + 1, count_processes("sleep"));
                    fails++;
                }
                running = tools_running();
            }
            double tps = llm_measure(agents, reqs, g, &fails);
            if (with && tools_running() != slow) {
                fprintf(stderr, "round %d: fewer than %d slow tools were running at the end\n", r + 1, slow);
                fails++;
            }
            sum[with] += tps;
            printf("| %d | %ld | %.2f |\n", r + 1, running, tps);
            fprintf(stderr, "{\"round\":%d,\"slow_running\":%ld,\"tok_per_s\":%.3f}\n", r + 1, running, tps);
            if (with) {
                atomic_store(&g_stop_slow, true);
                for (int i = 0; i < slow; i++) pthread_join(th[i], NULL);
                if (!wait_running(0, 30)) fails++;
            }
            free(th);
        }
    }
    double none = sum[0] / rounds, busy = sum[1] / rounds;
    printf("\n| LLM tokens/s, no tools running | with %d slow tools running | ratio (target >= 0.95) |\n|---|---|---|\n", slow);
    printf("| %.2f | %.2f | %.3f |\n", none, busy, busy / none);
    fprintf(
        stderr,
        "{\"slow\":%d,\"rounds\":%d,\"agents\":%d,\"reqs\":%d,\"max_tokens\":%d,\"none_tok_per_s\":%.3f,\"with_tok_per_s\":%.3f,\"ratio\":%.4f}\n",
        slow, rounds, agents, reqs, g, none, busy, busy / none);
    printf("failures: %ld\n", fails);
    return fails ? 1 : 0;
}

int main(int argc, char **argv) {
    bool noop = argc == 5 && !strcmp(argv[2], "noop"), llm = argc == 8 && !strcmp(argv[2], "llm");
    if (!noop && !llm) {
        fprintf(stderr, "usage: tools URL noop AGENTS N | tools URL llm SLOW ROUNDS AGENTS REQS MAX_TOKENS\n");
        return 2;
    }
    g_url = argv[1];
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = noop ? run_noop(atoi(argv[3]), atoi(argv[4]))
                  : run_llm(atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atoi(argv[6]), atoi(argv[7]));
    curl_global_cleanup();
    return rc;
}
