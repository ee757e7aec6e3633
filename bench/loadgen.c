/*
 * loadgen.c - N concurrent agents against any OpenAI-compatible /v1/chat/completions URL.
 * Each agent sends R streaming requests back to back (fixed prompt, max_tokens G,
 * temperature 0, ignore_eos-free so answers may end early); the tool measures each
 * request's time to first token and latency from the client side and the total
 * generated tokens (from the server's usage counts). Prints one JSON line.
 *   loadgen URL N R G [PROMPT]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "aios/aios.h"

typedef struct sample {
    double ttft, latency;
    int tokens;
    int ok;
} sample;

typedef struct job {
    const char *url, *prompt;
    int id, reqs, max_tokens;
    sample *out;
} job;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct first {
    double t0, ttft;
} first;

static int on_piece(const char *p, size_t n, void *ud) {
    (void)p;
    (void)n;
    first *f = ud;
    if (f->ttft < 0) f->ttft = now() - f->t0;
    return 0;
}

static void *agent(void *arg) {
    job *j = arg;
    aios_client_params cp = aios_client_default_params();
    cp.url = j->url;
    char tok[32];
    snprintf(tok, sizeof tok, "bench-agent-%d", j->id);
    cp.token = tok;
    aios_client *c = aios_client_new(&cp);
    for (int r = 0; r < j->reqs; r++) {
        aios_message m = {"user", j->prompt};
        aios_chat_opts o = aios_chat_default_opts();
        o.max_tokens = j->max_tokens;
        o.temperature = 0;
        o.model = getenv("LOADGEN_MODEL");
        first f = {.t0 = now(), .ttft = -1};
        aios_chat_result res;
        int rc = aios_chat(c, &m, 1, &o, on_piece, &f, &res);
        sample *s = &j->out[r];
        s->latency = now() - f.t0;
        s->ttft = f.ttft < 0 ? s->latency : f.ttft;
        s->tokens = res.completion_tokens;
        s->ok = rc == 0;
        if (rc) fprintf(stderr, "loadgen: request failed: %d %s\n", res.http_status, res.error);
        aios_chat_result_free(&res);
    }
    aios_client_free(c);
    return NULL;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p) {
    if (n == 0) return 0;
    int i = (int)(p * (n - 1) + 0.5);
    return v[i];
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: loadgen URL N_AGENTS REQS_PER_AGENT MAX_TOKENS [PROMPT]\n");
        return 2;
    }
    int n = atoi(argv[2]), reqs = atoi(argv[3]), g = atoi(argv[4]);
    const char *prompt = argc > 5 ? argv[5] : "Write a long story about a robot who learns to paint. Use many details.";
    pthread_t *th = calloc((size_t)n, sizeof *th);
    job *jobs = calloc((size_t)n, sizeof *jobs);
    double t0 = now();
    for (int i = 0; i < n; i++) {
        jobs[i] = (job){.url = argv[1],
                        .prompt = prompt,
                        .id = i,
                        .reqs = reqs,
                        .max_tokens = g,
                        .out = calloc((size_t)reqs, sizeof(sample))};
        pthread_create(&th[i], NULL, agent, &jobs[i]);
    }
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    double wall = now() - t0;
    int total = n * reqs, ok = 0;
    long tokens = 0;
    double *lat = calloc((size_t)total, sizeof *lat), *ttft = calloc((size_t)total, sizeof *ttft);
    int k = 0;
    for (int i = 0; i < n; i++)
        for (int r = 0; r < reqs; r++) {
            sample *s = &jobs[i].out[r];
            if (!s->ok) continue;
            ok++;
            tokens += s->tokens;
            lat[k] = s->latency;
            ttft[k++] = s->ttft;
        }
    qsort(lat, (size_t)k, sizeof *lat, cmp);
    qsort(ttft, (size_t)k, sizeof *ttft, cmp);
    printf("{\"agents\":%d,\"requests\":%d,\"ok\":%d,\"wall_s\":%.3f,\"tokens\":%ld,\"tok_per_s\":%.2f,"
           "\"lat_p50\":%.3f,\"lat_p99\":%.3f,\"ttft_p50\":%.3f,\"ttft_p99\":%.3f}\n",
           n, total, ok, wall, tokens, tokens / wall, pct(lat, k, 0.5), pct(lat, k, 0.99), pct(ttft, k, 0.5), pct(ttft, k, 0.99));
    for (int i = 0; i < n; i++) free(jobs[i].out);
    free(jobs);
    free(th);
    free(lat);
    free(ttft);
    return ok == total ? 0 : 1;
}
