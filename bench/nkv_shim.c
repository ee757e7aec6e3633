/*
 * nkv_shim.c - bench/profile.sh's view of llama.cpp's attention: an LD_PRELOAD library that
 * sits in front of ggml_flash_attn_ext (libggml-base), which llama.cpp calls once per layer
 * whenever it builds a decode graph, and appends the graph's attention view (the K tensor's
 * rows: n_kv, the used cell range of the unified cache padded to 256) and its query tokens
 * to the file $AIOS_NKV_LOG ("n_kv n_tokens"), a line whenever they change. llama.cpp reuses
 * a graph while the shapes stay, so lines are graph builds, not steps. Measurement only: the kernel
 * never loads it. Built by bench/profile.sh against the pinned llama.cpp's ggml.h.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <ggml.h>

typedef struct ggml_tensor *(*fa_fn)(struct ggml_context *, struct ggml_tensor *, struct ggml_tensor *, struct ggml_tensor *,
                                     struct ggml_tensor *, float, float, float);

struct ggml_tensor *ggml_flash_attn_ext(struct ggml_context *ctx, struct ggml_tensor *q, struct ggml_tensor *k,
                                        struct ggml_tensor *v, struct ggml_tensor *mask, float scale, float max_bias,
                                        float logit_softcap) {
    static fa_fn real;
    static FILE *log;
    static long long last_kv = -1, last_q = -1;
    if (!real) real = (fa_fn)dlsym(RTLD_NEXT, "ggml_flash_attn_ext");
    if (!log && getenv("AIOS_NKV_LOG")) log = fopen(getenv("AIOS_NKV_LOG"), "a");
    /* every layer of a graph has the same shapes: a line when they change */
    if (log && (k->ne[1] != last_kv || q->ne[1] != last_q)) {
        last_kv = k->ne[1], last_q = q->ne[1];
        fprintf(log, "%lld %lld\n", last_kv, last_q);
        fflush(log);
    }
    return real(ctx, q, k, v, mask, scale, max_bias, logit_softcap);
}
