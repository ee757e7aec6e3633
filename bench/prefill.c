/*
 * prefill.c - chunked prefill, from the client side (issue 16 part 5): K streams generate
 * while one long prompt arrives; does the prompt stall them? Against any OpenAI-compatible
 * /v1/chat/completions URL (aiosd, llama-server), through the C SDK.
 *
 * K threads each stream a chat of G tokens and time every piece that arrives. Once every
 * stream has received 8 pieces (all are decoding), the main thread sends a prompt of about
 * L tokens (distinct words, so no cache holds it) with max_tokens 1 and waits for it: its
 * latency is the long prompt's time to first token. The gaps between consecutive pieces of
 * the streams are split into those that overlap the long request (from its send to its
 * answer) and the others, with p50 / p99 / max of each; a stall shows as the overlapping
 * gaps' max. A piece is one streamed event (a server may pass several tokens in one, e.g.
 * while text is held back for stop strings); stream_tokens is what the servers counted.
 * Prints one JSON line.
 *   prefill URL K G L
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "aios/aios.h"

#define PF_MAX_PIECES 8192

typedef struct stream {
    const char *url;
    int id, max_tokens;
    double t[PF_MAX_PIECES]; /* arrival of each piece */
    int n;
    int tokens, ok, done;
} stream;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int on_piece(const char *p, size_t n, void *ud) {
    (void)p, (void)n;
    stream *s = ud;
    pthread_mutex_lock(&mu);
    if (s->n < PF_MAX_PIECES) s->t[s->n++] = now();
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    return 0;
}

static aios_client *client(const char *url, int id) {
    aios_client_params cp = aios_client_default_params();
    cp.url = url;
    char tok[32];
    snprintf(tok, sizeof tok, "prefill-bench-%d", id);
    cp.token = tok;
    return aios_client_new(&cp);
}

static void *run_stream(void *arg) {
    stream *s = arg;
    aios_client *c = client(s->url, s->id);
    char prompt[128];
    snprintf(prompt, sizeof prompt, "Count from %d to 2000, one number per line, and never stop.", s->id * 100);
    aios_message m = {"user", prompt};
    aios_chat_opts o = aios_chat_default_opts();
    o.max_tokens = s->max_tokens;
    o.temperature = 0;
    aios_chat_result res;
    s->ok = aios_chat(c, &m, 1, &o, on_piece, s, &res) == 0;
    s->tokens = res.completion_tokens;
    if (!s->ok) fprintf(stderr, "prefill: stream %d failed: %d %s\n", s->id, res.http_status, res.error);
    aios_chat_result_free(&res);
    aios_client_free(c);
    pthread_mutex_lock(&mu);
    s->done = 1; /* ended (early or failed): not waited for below */
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    return NULL;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *v, int n, double p) { return n ? v[(int)(p * (n - 1) + 0.5)] : 0; }

/* about l tokens: common words (one token each, with their space) in an order no cache has seen */
static char *long_prompt(int l) {
    static const char *const W[] = {"the",   "house", "river", "green", "small", "light", "water", "stone",
                                    "table", "city",  "road",  "blue",  "night", "day",   "tree",  "bird",
                                    "music", "paper", "glass", "cold",  "warm",  "red",   "black", "white",
                                    "old",   "new",   "long",  "short", "door",  "wind",  "fire",  "sand"};
    size_t cap = (size_t)l * 8 + 64;
    char *p = malloc(cap);
    if (!p) return NULL;
    size_t len = (size_t)snprintf(p, cap, "Summarize this list in one word: ");
    unsigned x = (unsigned)time(NULL) | 1u;
    for (int i = 0; i < l && len + 8 < cap; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        len += (size_t)snprintf(p + len, cap - len, "%s ", W[x % (sizeof W / sizeof W[0])]);
    }
    return p;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: prefill URL K G L\n");
        return 2;
    }
    const char *url = argv[1];
    int k = atoi(argv[2]), g = atoi(argv[3]), l = atoi(argv[4]);
    stream *st = calloc((size_t)k, sizeof *st);
    pthread_t *th = calloc((size_t)k, sizeof *th);
    char *prompt = long_prompt(l);
    if (!st || !th || !prompt || k < 1) return 2;
    for (int i = 0; i < k; i++) {
        st[i] = (stream){.url = url, .id = i, .max_tokens = g};
        pthread_create(&th[i], NULL, run_stream, &st[i]);
    }
    pthread_mutex_lock(&mu); /* every stream decoding */
    for (;;) {
        int ready = 0;
        for (int i = 0; i < k; i++) ready += st[i].n >= 8 || st[i].done;
        if (ready == k) break;
        pthread_cond_wait(&cv, &mu);
    }
    pthread_mutex_unlock(&mu);
    aios_client *c = client(url, 9999);
    aios_message m = {"user", prompt};
    aios_chat_opts o = aios_chat_default_opts();
    o.max_tokens = 1;
    o.temperature = 0;
    aios_chat_result res;
    double t0 = now();
    int rc = aios_chat(c, &m, 1, &o, NULL, NULL, &res);
    double t1 = now();
    if (rc) fprintf(stderr, "prefill: the long prompt failed: %d %s\n", res.http_status, res.error);
    int prompt_tokens = res.prompt_tokens;
    aios_chat_result_free(&res);
    aios_client_free(c);
    for (int i = 0; i < k; i++) pthread_join(th[i], NULL);

    double *in = malloc(sizeof(double) * (size_t)k * PF_MAX_PIECES), *out = malloc(sizeof(double) * (size_t)k * PF_MAX_PIECES);
    int n_in = 0, n_out = 0, ok = 0, tokens = 0;
    for (int i = 0; i < k; i++) {
        ok += st[i].ok;
        tokens += st[i].tokens;
        for (int j = 1; j < st[i].n; j++) {
            double a = st[i].t[j - 1], b = st[i].t[j];
            if (b > t0 && a < t1) in[n_in++] = b - a;
            else out[n_out++] = b - a;
        }
    }
    qsort(in, (size_t)n_in, sizeof *in, cmp);
    qsort(out, (size_t)n_out, sizeof *out, cmp);
    printf(
        "{\"streams\":%d,\"streams_ok\":%d,\"stream_tokens\":%d,\"long_ok\":%s,\"long_prompt_tokens\":%d,\"long_latency_s\":%.3f,"
        "\"gaps_during\":%d,\"during_p50_ms\":%.1f,\"during_p99_ms\":%.1f,\"during_max_ms\":%.1f,"
        "\"gaps_other\":%d,\"other_p50_ms\":%.1f,\"other_p99_ms\":%.1f,\"other_max_ms\":%.1f}\n",
        k, ok, tokens, rc ? "false" : "true", prompt_tokens, t1 - t0, n_in, 1e3 * pct(in, n_in, 0.5), 1e3 * pct(in, n_in, 0.99),
        n_in ? 1e3 * in[n_in - 1] : 0, n_out, 1e3 * pct(out, n_out, 0.5), 1e3 * pct(out, n_out, 0.99),
        n_out ? 1e3 * out[n_out - 1] : 0);
    free(in), free(out), free(st), free(th), free(prompt);
    return 0;
}
