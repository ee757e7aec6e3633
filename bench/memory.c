/*
 * memory.c - memory-manager benchmark through HTTP (POST /query, query_type "memory"),
 * against a running aiosd.
 *
 *   memory URL ops AGENTS N [RATE]
 *                                AGENTS concurrent agents (one thread and one keep-alive
 *                                connection each) each add N blocks, then get them back,
 *                                then run N mixed ops (half add, half get), each phase as
 *                                fast as they can (closed loop: the saturation throughput;
 *                                latency there is AGENTS / throughput by Little's law);
 *                                then N mixed ops each at a fixed offered load of RATE
 *                                ops/s in all (default 5000; open loop: latency counts from
 *                                each op's scheduled start, so a stall is not hidden).
 *                                Reports ops/s and latency p50 / p99 / max per phase.
 *   memory URL recall N Q [K]    loads N blocks into one agent (8 connections), then runs
 *                                Q retrievals (k = K, default 10) through the HNSW index,
 *                                then the same Q with "exact": true (the full scan, the
 *                                reference); reports recall@K of the index against the scan
 *                                and both latencies. MEMORY_BENCH_AGENT=NAME queries an
 *                                agent loaded by an earlier run instead of loading.
 *
 * The texts are deterministic pseudo-sentences (a fixed vocabulary, seeded), so runs are
 * comparable. A 503 (embedding or worker queue full) is retried after 5 ms and counted.
 * Prints a markdown table on stdout and one JSON line per phase on stderr.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "http.h"

static const char *WORDS[] = {
    "river",   "mountain", "engine",    "garden",   "violin", "market",  "planet",   "kitchen",   "harbor",  "forest",
    "letter",  "winter",   "doctor",    "castle",   "coffee", "window",  "battery",  "library",   "thunder", "island",
    "pencil",  "summer",   "bridge",    "camera",   "rocket", "desert",  "lantern",  "orchestra", "museum",  "tractor",
    "glacier", "bakery",   "satellite", "volcano",  "meadow", "compass", "festival", "airport",   "canyon",  "pharmacy",
    "red",     "quiet",    "ancient",   "rapid",    "golden", "fragile", "noisy",    "bright",    "hidden",  "modern",
    "repairs", "paints",   "follows",   "measures", "builds", "carries", "explores", "teaches",   "sells",   "watches",
    "the",     "a",        "near",      "under",    "beside", "after",   "before",   "with",      "without", "across",
};
#define N_WORDS (sizeof WORDS / sizeof WORDS[0])

static const char *g_url;
static atomic_long g_retries;

static void sentence(unsigned *seed, char *out, size_t n) {
    int len = 8 + (int)(rand_r(seed) % 8);
    size_t j = 0;
    for (int i = 0; i < len && j + 16 < n; i++)
        j += (size_t)snprintf(out + j, n - j, "%s%s", i ? " " : "", WORDS[rand_r(seed) % N_WORDS]);
    out[j] = 0;
}

/* POSTs body to /query; returns the HTTP status (retrying 503) with the answer in k->buf. */
static long post(bench_conn *k, const char *body) {
    for (;;) {
        long st = bench_request(k, body);
        if (st != 503) return st;
        atomic_fetch_add(&g_retries, 1);
        usleep(5000);
    }
}

static int mem_op(bench_conn *k, const char *agent, const char *op, const char *params) {
    char body[8192];
    snprintf(body, sizeof body,
             "{\"agent_name\":\"%s\",\"query_type\":\"memory\",\"query_data\":{\"operation_type\":\"%s\",\"params\":%s}}", agent,
             op, params);
    long st = post(k, body);
    if (st != 200) fprintf(stderr, "memory %s: HTTP %ld: %.300s\n", op, st, k->buf);
    return st == 200 ? 0 : -1;
}

static long parse_id(const char *buf) {
    const char *p = strstr(buf, "\"memory_id\":\"");
    return p ? atol(p + 13) : -1;
}

/* ---------------- ops ---------------- */

#define PHASES 4

typedef struct agent_run {
    int idx, n;
    long *ids;
    double *lat[PHASES];
    long fails;
} agent_run;

static pthread_barrier_t g_bar;
static double g_phase_t[PHASES][2];
static double g_rate = 5000;
static int g_agents;

static void *agent_main(void *arg) {
    agent_run *a = arg;
    bench_conn k;
    bench_conn_init(&k, g_url, "/query", NULL);
    char agent[32], text[512], params[1024];
    unsigned seed = 1000u + (unsigned)a->idx;
    snprintf(agent, sizeof agent, "bench-%d", a->idx);
    for (int phase = 0; phase < PHASES; phase++) {
        pthread_barrier_wait(&g_bar);
        double start = bench_now(), interval = g_agents / g_rate; /* open loop: this agent's share of RATE */
        if (a->idx == 0) g_phase_t[phase][0] = start;
        start += interval * a->idx / g_agents; /* agents spread over one interval */
        for (int i = 0; i < a->n; i++) {
            bool add = phase == 0 || (phase >= 2 && i % 2 == 0);
            double t0 = bench_now();
            if (phase == 3) { /* wait for the scheduled start; latency counts from it */
                double due = start + i * interval;
                if (due > t0) usleep((useconds_t)((due - t0) * 1e6));
                t0 = due;
            }
            int rc;
            if (add) {
                sentence(&seed, text, sizeof text);
                snprintf(params, sizeof params, "{\"content\":\"%s\",\"metadata\":{\"i\":%d}}", text, i);
                rc = mem_op(&k, agent, "add_memory", params);
                if (!rc && phase == 0) a->ids[i] = parse_id(k.buf);
            } else {
                snprintf(params, sizeof params, "{\"memory_id\":\"%ld\"}", a->ids[(i * 7919) % a->n]);
                rc = mem_op(&k, agent, "get_memory", params);
            }
            a->lat[phase][i] = bench_now() - t0;
            a->fails += rc != 0;
        }
        pthread_barrier_wait(&g_bar);
        if (a->idx == 0) g_phase_t[phase][1] = bench_now();
    }
    bench_conn_free(&k);
    return NULL;
}

static int run_ops(int agents, int n) {
    g_agents = agents;
    agent_run *runs = calloc((size_t)agents, sizeof *runs);
    pthread_t *th = calloc((size_t)agents, sizeof *th);
    pthread_barrier_init(&g_bar, NULL, (unsigned)agents);
    for (int i = 0; i < agents; i++) {
        runs[i].idx = i;
        runs[i].n = n;
        runs[i].ids = calloc((size_t)n, sizeof(long));
        for (int p = 0; p < PHASES; p++) runs[i].lat[p] = calloc((size_t)n, sizeof(double));
        pthread_create(&th[i], NULL, agent_main, &runs[i]);
    }
    long fails = 0;
    for (int i = 0; i < agents; i++) {
        pthread_join(th[i], NULL);
        fails += runs[i].fails;
    }
    static const char *NAMES[PHASES] = {"add_memory (closed loop)", "get_memory (closed loop)", "mixed 50/50 (closed loop)",
                                        "mixed 50/50 (offered load)"};
    printf("| phase | agents | ops | ops/s | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|\n");
    for (int p = 0; p < PHASES; p++) {
        long total = (long)agents * n;
        double *all = malloc((size_t)total * sizeof *all);
        for (int i = 0; i < agents; i++) memcpy(all + (long)i * n, runs[i].lat[p], (size_t)n * sizeof *all);
        qsort(all, (size_t)total, sizeof *all, bench_cmp_double);
        double secs = g_phase_t[p][1] - g_phase_t[p][0];
        if (p == 3) printf("| %s, %.0f ops/s offered", NAMES[p], g_rate);
        else printf("| %s", NAMES[p]);
        printf(" | %d | %ld | %.0f | %.2f | %.2f | %.2f |\n", agents, total, (double)total / secs,
               1e3 * bench_pct(all, total, 0.5), 1e3 * bench_pct(all, total, 0.99), 1e3 * all[total - 1]);
        fprintf(
            stderr,
            "{\"phase\":\"%s\",\"agents\":%d,\"ops\":%ld,\"seconds\":%.3f,\"ops_per_s\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f}\n",
            NAMES[p], agents, total, secs, (double)total / secs, 1e3 * bench_pct(all, total, 0.5),
            1e3 * bench_pct(all, total, 0.99));
        free(all);
    }
    printf("failures: %ld, 503 retries: %ld\n", fails, atomic_load(&g_retries));
    return fails ? 1 : 0;
}

/* ---------------- recall ---------------- */

typedef struct loader {
    int idx, stride, n;
    const char *agent;
    long fails;
} loader;

static void *load_main(void *arg) {
    loader *l = arg;
    bench_conn k;
    bench_conn_init(&k, g_url, "/query", NULL);
    char text[512], params[1024];
    for (int i = l->idx; i < l->n; i += l->stride) {
        unsigned seed = 77u * (unsigned)i + 5u;
        sentence(&seed, text, sizeof text);
        snprintf(params, sizeof params, "{\"content\":\"%s\"}", text);
        l->fails += mem_op(&k, l->agent, "add_memory", params) != 0;
    }
    bench_conn_free(&k);
    return NULL;
}

/* The ids of search_results, in order. */
static int result_ids(const char *buf, long *ids, int max) {
    int n = 0;
    const char *p = strstr(buf, "\"search_results\"");
    while (p && n < max && (p = strstr(p, "\"memory_id\":\""))) {
        ids[n++] = atol(p + 13);
        p += 13;
    }
    return n;
}

static int run_recall(int n, int queries, int k) {
    char agent[64];
    snprintf(agent, sizeof agent, "recall-%d-%ld", n, (long)time(NULL));
    const char *reuse = getenv("MEMORY_BENCH_AGENT"); /* query an agent loaded before: no loading */
    if (reuse) snprintf(agent, sizeof agent, "%s", reuse);
    enum { LOADERS = 8 };
    loader ls[LOADERS];
    pthread_t th[LOADERS];
    double t0 = bench_now();
    for (int i = 0; i < LOADERS; i++) {
        ls[i] = (loader){i, LOADERS, reuse ? 0 : n, agent, 0};
        pthread_create(&th[i], NULL, load_main, &ls[i]);
    }
    long fails = 0;
    for (int i = 0; i < LOADERS; i++) {
        pthread_join(th[i], NULL);
        fails += ls[i].fails;
    }
    double t_add = bench_now() - t0;
    bench_conn k1;
    bench_conn_init(&k1, g_url, "/query", NULL);
    char params[1024], text[512];
    double t1 = bench_now();
    mem_op(&k1, agent, "retrieve_memory", "{\"content\":\"warm up\",\"k\":1}"); /* waits for every embedding */
    double t_index = bench_now() - t1;
    fprintf(stderr, "loaded %d blocks in %.1f s (%.0f adds/s); embeddings caught up %.1f s later\n", n, t_add, n / t_add,
            t_index);
    double *lat_a = calloc((size_t)queries, sizeof(double)), *lat_e = calloc((size_t)queries, sizeof(double));
    long *ann = calloc((size_t)queries * 128, sizeof(long)), hit = 0, want = 0;
    int *n_ann = calloc((size_t)queries, sizeof(int));
    for (int pass = 0; pass < 2; pass++) { /* all index queries, then all scans: neither warms the other's caches */
        for (int q = 0; q < queries; q++) {
            unsigned seed = 999983u * (unsigned)q + 11u;
            sentence(&seed, text, sizeof text);
            snprintf(params, sizeof params, "{\"content\":\"%s\",\"k\":%d%s}", text, k, pass ? ",\"exact\":true" : "");
            double s = bench_now();
            fails += mem_op(&k1, agent, "retrieve_memory", params) != 0;
            (pass ? lat_e : lat_a)[q] = bench_now() - s;
            if (!pass) {
                n_ann[q] = result_ids(k1.buf, ann + (long)q * 128, 128);
                continue;
            }
            long e[128];
            int ne = result_ids(k1.buf, e, 128);
            for (int i = 0; i < ne; i++)
                for (int j = 0; j < n_ann[q]; j++) hit += e[i] == ann[(long)q * 128 + j];
            want += ne;
        }
    }
    free(ann);
    free(n_ann);
    qsort(lat_a, (size_t)queries, sizeof(double), bench_cmp_double);
    qsort(lat_e, (size_t)queries, sizeof(double), bench_cmp_double);
    double recall = want ? (double)hit / (double)want : 0;
    printf("| items | queries | recall@%d (HNSW vs exact) | HNSW p50 ms | HNSW p99 ms | exact p50 ms | exact p99 ms |\n", k);
    printf("|---|---|---|---|---|---|---|\n");
    printf("| %d | %d | %.4f | %.2f | %.2f | %.2f | %.2f |\n", n, queries, recall, 1e3 * bench_pct(lat_a, queries, 0.5),
           1e3 * bench_pct(lat_a, queries, 0.99), 1e3 * bench_pct(lat_e, queries, 0.5), 1e3 * bench_pct(lat_e, queries, 0.99));
    fprintf(
        stderr,
        "{\"items\":%d,\"queries\":%d,\"recall\":%.4f,\"ann_p50_ms\":%.3f,\"ann_p99_ms\":%.3f,\"exact_p50_ms\":%.3f,\"exact_p99_ms\":%.3f,\"load_s\":%.1f,\"index_catchup_s\":%.1f}\n",
        n, queries, recall, 1e3 * bench_pct(lat_a, queries, 0.5), 1e3 * bench_pct(lat_a, queries, 0.99),
        1e3 * bench_pct(lat_e, queries, 0.5), 1e3 * bench_pct(lat_e, queries, 0.99), t_add, t_index);
    printf("failures: %ld, 503 retries: %ld\n", fails, atomic_load(&g_retries));
    bench_conn_free(&k1);
    free(lat_a);
    free(lat_e);
    return fails ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc < 5 || (strcmp(argv[2], "ops") && strcmp(argv[2], "recall"))) {
        fprintf(stderr, "usage: memory URL ops AGENTS N [RATE] | memory URL recall N QUERIES [K]\n");
        return 2;
    }
    g_url = argv[1];
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (!strcmp(argv[2], "ops") && argc > 5) g_rate = atof(argv[5]);
    int rc = !strcmp(argv[2], "ops") ? run_ops(atoi(argv[3]), atoi(argv[4]))
                                     : run_recall(atoi(argv[3]), atoi(argv[4]), argc > 5 ? atoi(argv[5]) : 10);
    curl_global_cleanup();
    return rc;
}
