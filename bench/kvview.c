/*
 * kvview.c - what idle cells in the attention view cost a decode step (issue 16 part 2),
 * straight on llama.cpp (the pinned build aiosd embeds), with no daemon in the way.
 *
 * B sequences share a P-token prefix and each has O own tokens, as agents on one system
 * prompt do. For each J in the list, J idle cells (other conversations: copies of a saved
 * sequence, restored without compute) are put into the unified KV cache after them, so
 * llama.cpp's attention view (every cell up to the highest in use) spans them too. Then R
 * decode steps of one token per sequence are timed. Prints a table: J, the view's cells,
 * ms per step (median of R), and the ratio to J = 0. The same step with the idle cells
 * snapshotted out is what context.cold_ms and compaction give aiosd.
 *   kvview MODEL [B P O R THREADS J1,J2,...]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ggml-backend.h>
#include <llama.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void add(struct llama_batch *b, llama_token t, int pos, int seq, bool logits) {
    int i = b->n_tokens++;
    b->token[i] = t;
    b->pos[i] = pos;
    b->n_seq_id[i] = 1;
    b->seq_id[i][0] = seq;
    b->logits[i] = logits;
}

/* Prefills n tokens of a fixed pseudo-text into seq from position p0, batch by batch. */
static int fill(struct llama_context *ctx, struct llama_batch *b, int nb, int seq, int p0, int n, int n_vocab) {
    for (int done = 0; done < n;) {
        b->n_tokens = 0;
        for (; done < n && b->n_tokens < nb; done++)
            add(b, (llama_token)(100 + (p0 + done) * 7919 % (n_vocab - 200)), p0 + done, seq, false);
        if (llama_decode(ctx, *b)) return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: kvview MODEL [B P O R THREADS J1,J2,...]\n");
        return 2;
    }
    int B = argc > 2 ? atoi(argv[2]) : 16, P = argc > 3 ? atoi(argv[3]) : 1024, O = argc > 4 ? atoi(argv[4]) : 160;
    int R = argc > 5 ? atoi(argv[5]) : 20, T = argc > 6 ? atoi(argv[6]) : 2;
    const char *js = argc > 7 ? argv[7] : "0,2048,4096,8192";
    if (B < 1 || B > 64 || P < 1 || O < 1 || R < 1) return 2;
    ggml_backend_load_all_from_path(AIOS_GGML_BACKEND_DIR); /* the best CPU variant for this host */
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) return 1;
    int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 32768;
    cp.n_batch = cp.n_ubatch = 512;
    cp.n_seq_max = (uint32_t)B + 2;
    cp.kv_unified = true;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_ENABLED;
    cp.n_threads = cp.n_threads_batch = T;
    cp.no_perf = true;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) return 1;
    llama_memory_t mem = llama_get_memory(ctx);
    struct llama_batch b = llama_batch_init(512, 0, 1);
    int junk = B, spare = B + 1; /* sequence ids of the idle cells and of the saved copy */
    /* the shared prefix in seq 0, copied to every sequence; then each one's own tokens */
    if (fill(ctx, &b, 512, 0, 0, P, n_vocab)) return 1;
    for (int s = 1; s < B; s++) llama_memory_seq_cp(mem, 0, s, -1, -1);
    for (int s = 0; s < B; s++)
        if (fill(ctx, &b, 512, s, P, O, n_vocab)) return 1;
    /* one idle conversation of 512 cells, saved once, restored as often as needed */
    if (fill(ctx, &b, 512, spare, 0, 512, n_vocab)) return 1;
    size_t n = llama_state_seq_get_size(ctx, spare);
    unsigned char *blob = malloc(n);
    if (!blob || llama_state_seq_get_data(ctx, blob, n, spare) != n) return 1;
    llama_memory_seq_rm(mem, spare, -1, -1);
    int pos = P + O;
    double base = 0;
    printf("B=%d sequences on a %d-token prefix, %d own tokens each, %d threads, %d steps per row\n", B, P, O, T, R);
    printf("| idle cells in view | view cells | ms / step (median) | vs none |\n|---|---|---|---|\n");
    for (const char *p = js; *p;) {
        int J = atoi(p);
        llama_memory_seq_rm(mem, junk, -1, -1);
        for (int k = 0; k < J / 512; k++) { /* each copy under spare, then renamed into junk */
            if (llama_state_seq_set_data(ctx, blob, n, spare) != n) return 1;
            llama_memory_seq_add(mem, spare, -1, -1, (k + 1) * 512);
            llama_memory_seq_cp(mem, spare, junk, -1, -1);
            llama_memory_seq_rm(mem, spare, -1, -1);
        }
        double *t = calloc((size_t)R, sizeof *t);
        for (int r = 0; r < R; r++) {
            b.n_tokens = 0;
            for (int s = 0; s < B; s++) add(&b, (llama_token)(1000 + s + r), pos, s, true);
            double t0 = now();
            if (llama_decode(ctx, b)) return 1;
            t[r] = now() - t0;
            for (int s = 0; s < B; s++) llama_memory_seq_rm(mem, s, pos, -1); /* same step again */
        }
        qsort(t, (size_t)R, sizeof *t, cmp_d);
        double med = t[R / 2] * 1e3;
        if (J == 0 || base == 0) base = med;
        int view = P + B * O + (J / 512) * 512;
        printf("| %d | %d | %.2f | %.2f |\n", J, view, med, med / base);
        fflush(stdout);
        free(t);
        while (*p && *p != ',') p++;
        if (*p == ',') p++;
    }
    free(blob);
    llama_batch_free(b);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
