/*
 * soak.c - the soak benchmark (issue 15, part 5; bench/soak.sh starts the kernel): AGENTS
 * agents at once, each a thread with its own keep-alive connection and identity, for SECONDS
 * of a mixed closed loop through AIOS /query:
 *   llm      a short generation (max_new_tokens 8)
 *   memory   add a block; past 8 live blocks, remove the oldest (a bounded working set);
 *            every fourth operation a retrieval (k 2)
 *   storage  write one of 8 files, then read it back
 *   tool     the calculator
 * It reports, per kind, operations completed, errors by kind (503 backpressure apart from
 * every other failure), p50 / p99 latency; and the kernel's resident memory and open file
 * descriptors sampled every SAMPLE seconds, with their least-squares slope after the first
 * WARMUP seconds (MiB/min and fds/min): a leak shows as a slope that does not settle. Beside
 * them, from the kernel's /metrics: the bytes in live allocations and the free bytes its
 * allocator holds (so resident growth splits into live data and fragmentation), and what
 * SQLite holds (its page caches fill as the databases grow); and the resident memory split
 * into anonymous pages (heap, stacks, the KV cache) and file-backed or shared ones (the
 * model's mapping, SQLite's WAL index).
 *
 *   soak URL KERNEL_PID AGENTS SECONDS SAMPLE WARMUP
 */
#include <pthread.h>
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "http.h"

enum { K_LLM, K_MEM, K_STORE, K_TOOL, N_KINDS };
static const char *const KIND[N_KINDS] = {"llm", "memory", "storage", "tool"};
enum { RES_OK, RES_BUSY, RES_OTHER, RES_TRANSPORT, N_RES };

#define MAX_LAT 200000 /* latencies kept per kind and agent thread group (reservoir beyond) */
#define MAX_SAMPLES 4096
#define LIVE_BLOCKS 8

typedef struct kind_stats {
    pthread_mutex_t mu;
    unsigned long long n[N_RES], other_by_status[6]; /* 4xx..5xx classes: [4], [5]; [0] = other */
    double *lat;
    long n_lat, seen;
    char last_error[256];
} kind_stats;

static kind_stats g_stats[N_KINDS];
static const char *g_base;
static double g_deadline;

static void note(int kind, long status, double dt, const char *body) {
    kind_stats *k = &g_stats[kind];
    int r = status >= 200 && status < 300 ? RES_OK : status == 503 ? RES_BUSY : status < 0 ? RES_TRANSPORT : RES_OTHER;
    pthread_mutex_lock(&k->mu);
    k->n[r]++;
    if (r == RES_OTHER) {
        k->other_by_status[status / 100 < 6 ? status / 100 : 0]++;
        snprintf(k->last_error, sizeof k->last_error, "%ld %.200s", status, body);
    }
    if (r == RES_OK) { /* reservoir sampling keeps the latency sample unbiased */
        long i = k->seen++;
        if (k->n_lat < MAX_LAT) k->lat[k->n_lat++] = dt;
        else if ((i = random() % (i + 1)) < MAX_LAT) k->lat[i] = dt;
    }
    pthread_mutex_unlock(&k->mu);
}

/* The "memory_id" in an add's answer into id. */
static void memory_id(const char *buf, char *id, size_t cap) {
    const char *p = strstr(buf, "\"memory_id\":\"");
    id[0] = 0;
    if (!p) return;
    p += 13;
    size_t n = strcspn(p, "\"");
    if (n < cap) {
        memcpy(id, p, n);
        id[n] = 0;
    }
}

static long query(bench_conn *k, const char *body, int kind) {
    double t0 = bench_now();
    long st = bench_request(k, body);
    note(kind, st, bench_now() - t0, k->buf);
    return st;
}

static void *agent_main(void *arg) {
    long me = (long)arg;
    char name[32], body[1024], blocks[LIVE_BLOCKS][32];
    int n_blocks = 0, head = 0;
    snprintf(name, sizeof name, "soak-%ld", me);
    bench_conn *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    bench_conn_init(k, g_base, "/query", name);
    unsigned seed = (unsigned)me * 2654435761u;
    for (long i = 0; bench_now() < g_deadline; i++) {
        int kind = (int)(rand_r(&seed) % 10);
        kind = kind < 1 ? K_LLM : kind < 4 ? K_MEM : kind < 7 ? K_STORE : K_TOOL;
        if (kind == K_LLM) {
            snprintf(body, sizeof body,
                     "{\"agent_name\":\"%s\",\"query_type\":\"llm\",\"query_data\":{\"messages\":[{\"role\":\"user\","
                     "\"content\":\"Say hi to %s.\"}],\"max_new_tokens\":8}}",
                     name, name);
            query(k, body, K_LLM);
        } else if (kind == K_MEM && i % 4 == 3) {
            snprintf(body, sizeof body,
                     "{\"agent_name\":\"%s\",\"query_type\":\"memory\",\"query_data\":{\"operation_type\":"
                     "\"retrieve_memory\",\"params\":{\"content\":\"note\",\"k\":2}}}",
                     name);
            query(k, body, K_MEM);
        } else if (kind == K_MEM) {
            if (n_blocks == LIVE_BLOCKS) { /* the oldest goes first: a bounded working set */
                snprintf(body, sizeof body,
                         "{\"agent_name\":\"%s\",\"query_type\":\"memory\",\"query_data\":{\"operation_type\":"
                         "\"remove_memory\",\"params\":{\"memory_id\":\"%s\"}}}",
                         name, blocks[head]);
                query(k, body, K_MEM);
                head = (head + 1) % LIVE_BLOCKS;
                n_blocks--;
            }
            snprintf(body, sizeof body,
                     "{\"agent_name\":\"%s\",\"query_type\":\"memory\",\"query_data\":{\"operation_type\":\"add_memory\","
                     "\"params\":{\"content\":\"note %ld of %s about the weather\"}}}",
                     name, i, name);
            if (query(k, body, K_MEM) == 200) {
                memory_id(k->buf, blocks[(head + n_blocks) % LIVE_BLOCKS], sizeof blocks[0]);
                n_blocks++;
            }
        } else if (kind == K_STORE) {
            snprintf(body, sizeof body,
                     "{\"agent_name\":\"%s\",\"query_type\":\"storage\",\"query_data\":{\"operation_type\":\"write\","
                     "\"params\":{\"file_path\":\"soak/f%ld.txt\",\"content\":\"version %ld of %s\"}}}",
                     name, i % 8, i, name);
            query(k, body, K_STORE);
            snprintf(body, sizeof body,
                     "{\"agent_name\":\"%s\",\"query_type\":\"storage\",\"query_data\":{\"operation_type\":\"read\","
                     "\"params\":{\"file_path\":\"soak/f%ld.txt\"}}}",
                     name, i % 8);
            query(k, body, K_STORE);
        } else {
            snprintf(body, sizeof body,
                     "{\"agent_name\":\"%s\",\"query_type\":\"tool\",\"query_data\":{\"tool_calls\":[{\"name\":"
                     "\"aios/calculator\",\"parameters\":{\"expression\":\"%ld * 3 + 1\"}}]}}",
                     name, i);
            query(k, body, K_TOOL);
        }
    }
    bench_conn_free(k);
    free(k);
    return NULL;
}

/* The value of the unlabelled series `name` in a /metrics answer; -1 when absent. */
static double metric(const char *text, const char *name) {
    size_t n = strlen(name);
    for (const char *p = text; (p = strstr(p, name)); p += n)
        if ((p == text || p[-1] == '\n') && p[n] == ' ') return atof(p + n + 1);
    return -1;
}

/* The kernel's resident memory (KiB; anon_kb: its anonymous part) and open descriptors. */
static void sample(int pid, long *rss_kb, long *anon_kb, long *fds) {
    char p[64], line[256];
    *rss_kb = *anon_kb = *fds = -1;
    snprintf(p, sizeof p, "/proc/%d/status", pid);
    FILE *f = fopen(p, "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) *rss_kb = strtol(line + 6, NULL, 10);
        else if (!strncmp(line, "RssAnon:", 8)) *anon_kb = strtol(line + 8, NULL, 10);
    if (f) fclose(f);
    snprintf(p, sizeof p, "/proc/%d/fd", pid);
    DIR *d = opendir(p);
    if (!d) return;
    *fds = 0;
    for (struct dirent *e; (e = readdir(d));) *fds += e->d_name[0] != '.';
    closedir(d);
}

/* Least-squares slope of y over t (per minute), from index from on. */
static double slope_per_min(const double *t, const double *y, int from, int n) {
    double st = 0, sy = 0, stt = 0, sty = 0;
    int m = n - from;
    if (m < 2) return 0;
    for (int i = from; i < n; i++) st += t[i], sy += y[i], stt += t[i] * t[i], sty += t[i] * y[i];
    double den = m * stt - st * st;
    return den > 0 ? (m * sty - st * sy) / den * 60 : 0;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: soak URL KERNEL_PID AGENTS SECONDS SAMPLE WARMUP\n");
        return 2;
    }
    g_base = argv[1];
    int pid = atoi(argv[2]), agents = atoi(argv[3]);
    double secs = atof(argv[4]), every = atof(argv[5]), warmup = atof(argv[6]);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    for (int i = 0; i < N_KINDS; i++) {
        pthread_mutex_init(&g_stats[i].mu, NULL);
        g_stats[i].lat = malloc(MAX_LAT * sizeof(double));
    }
    double t0 = bench_now();
    g_deadline = t0 + secs;
    pthread_t *th = calloc((size_t)agents, sizeof *th);
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, 256 << 10);
    int started = 0;
    for (long i = 0; i < agents; i++) started += pthread_create(&th[i], &at, agent_main, (void *)i) == 0;
    printf("%d agents started (of %d), %.0f s, sampling every %.0f s\n%8s %10s %10s %8s %10s %10s %10s\n", started, agents, secs,
           every, "t_s", "rss_mib", "anon_mib", "fds", "live_mib", "free_mib", "sqlite_mib");
    static double ts[MAX_SAMPLES], rss[MAX_SAMPLES], anon[MAX_SAMPLES], fdn[MAX_SAMPLES], live[MAX_SAMPLES];
    static bench_conn mon; /* /metrics, whose head has the process series */
    bench_conn_init(&mon, g_base, "/metrics", "soak-monitor");
    int ns = 0, first_after_warmup = -1;
    for (double next = t0; bench_now() < g_deadline && ns < MAX_SAMPLES; next += every) {
        while (bench_now() < next) usleep(100000);
        long r, a, f;
        sample(pid, &r, &a, &f);
        ts[ns] = bench_now() - t0, rss[ns] = (double)r / 1024, anon[ns] = (double)a / 1024, fdn[ns] = (double)f;
        bool got = bench_request(&mon, NULL) == 200;
        const double mib = 1024.0 * 1024.0;
        live[ns] = got ? metric(mon.buf, "aios_heap_live_bytes") / mib : -1;
        if (first_after_warmup < 0 && ts[ns] >= warmup) first_after_warmup = ns;
        printf("%8.0f %10.1f %10.1f %8.0f %10.1f %10.1f %10.1f\n", ts[ns], rss[ns], anon[ns], fdn[ns], live[ns],
               got ? metric(mon.buf, "aios_heap_free_bytes") / mib : -1,
               got ? metric(mon.buf, "aios_sqlite_memory_bytes") / mib : -1);
        fflush(stdout);
        ns++;
    }
    for (int i = 0; i < agents; i++)
        if (th[i]) pthread_join(th[i], NULL);
    double wall = bench_now() - t0;
    printf("\n%-8s %10s %8s %8s %8s %10s %9s %9s\n", "kind", "completed", "503", "errors", "transport", "ops/s", "p50_ms",
           "p99_ms");
    for (int i = 0; i < N_KINDS; i++) {
        kind_stats *k = &g_stats[i];
        qsort(k->lat, (size_t)k->n_lat, sizeof(double), bench_cmp_double);
        printf("%-8s %10llu %8llu %8llu %8llu %10.1f %9.1f %9.1f\n", KIND[i], k->n[RES_OK], k->n[RES_BUSY], k->n[RES_OTHER],
               k->n[RES_TRANSPORT], (double)k->n[RES_OK] / wall, bench_pct(k->lat, k->n_lat, 0.5) * 1e3,
               bench_pct(k->lat, k->n_lat, 0.99) * 1e3);
        if (k->n[RES_OTHER])
            printf("         errors: 4xx %llu, 5xx other than 503 %llu; last: %s\n", k->other_by_status[4], k->other_by_status[5],
                   k->last_error);
    }
    int from = first_after_warmup < 0 ? ns : first_after_warmup;
    printf("\nafter %.0f s of warm-up (%d samples): RSS slope %+.2f MiB/min (%.1f -> %.1f MiB), fds slope %+.2f /min "
           "(%.0f -> %.0f)\n",
           warmup, ns - from, slope_per_min(ts, rss, from, ns), from < ns ? rss[from] : 0, ns ? rss[ns - 1] : 0,
           slope_per_min(ts, fdn, from, ns), from < ns ? fdn[from] : 0, ns ? fdn[ns - 1] : 0);
    printf("after warm-up: anonymous RSS slope %+.2f MiB/min (%.1f -> %.1f MiB), live allocations %+.2f MiB/min (%.1f -> "
           "%.1f MiB)\n",
           slope_per_min(ts, anon, from, ns), from < ns ? anon[from] : 0, ns ? anon[ns - 1] : 0,
           slope_per_min(ts, live, from, ns), from < ns ? live[from] : 0, ns ? live[ns - 1] : 0);
    int half = from + (ns - from) / 2; /* a slope that keeps falling is a cache still warming, not a leak */
    printf("second half (%d samples from t=%.0f s): RSS slope %+.2f MiB/min, live %+.2f MiB/min, fds slope %+.2f /min\n",
           ns - half, half < ns ? ts[half] : 0, slope_per_min(ts, rss, half, ns), slope_per_min(ts, live, half, ns),
           slope_per_min(ts, fdn, half, ns));
    bench_conn_free(&mon);
    unsigned long long bad = 0;
    for (int i = 0; i < N_KINDS; i++) bad += g_stats[i].n[RES_OTHER] + g_stats[i].n[RES_TRANSPORT];
    printf("errors other than 503 backpressure: %llu\n", bad);
    curl_global_cleanup();
    return 0;
}
