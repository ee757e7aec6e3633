/*
 * backend.c - loading ggml's CPU backend at run time (DESIGN.md §8), and the devices a
 * model may be placed on (GPUs of a build with a GPU backend: `make llama GPU=cuda`).
 *
 * llama.cpp is built with GGML_BACKEND_DL and one CPU backend per x86-64 variant
 * (libggml-cpu-haswell.so, -skylakex.so, ...; scripts/fetch-llama.sh). At start the kernel
 * loads, from one directory only (the build's, or $AIOS_GGML_BACKEND_DIR; never the current
 * directory, so nobody can plant a backend next to where aiosd happens to run), the best
 * variant this host really supports, and logs the host's CPU features beside the variant it
 * runs, so a report of a slow or crashing engine says what ran where.
 *
 * The CPU backend's own functions (thread pools) are not linked in: they are looked up
 * through the backend registry (ggml_backend_reg_get_proc_address).
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ggml-backend.h>
#include "llamacpp_internal.h"

#ifndef AIOS_GGML_BACKEND_DIR
#define AIOS_GGML_BACKEND_DIR "."
#endif
#ifndef AIOS_LLAMA_PY_VERSION
#define AIOS_LLAMA_PY_VERSION "unknown"
#endif

typedef struct ggml_threadpool *(*tp_new_fn)(struct ggml_threadpool_params *);
typedef void (*tp_free_fn)(struct ggml_threadpool *);

static struct {
    int rc;
    char err[600];
    char desc[1024];
    tp_new_fn tp_new;
    tp_free_fn tp_free;
} g_be;

/* The SIMD features of the host that matter to ggml, from /proc/cpuinfo. */
static void host_cpu(char *out, size_t n) {
    static const char *const WANT[] = {"sse4_2",   "avx",      "avx2",     "fma",         "f16c",        "bmi2",
                                       "avx512f",  "avx512bw", "avx512vl", "avx512_vbmi", "avx512_vnni", "avx512_bf16",
                                       "avx_vnni", "amx_tile", "amx_int8", "amx_bf16"};
    char line[8192], model[128] = "unknown CPU", flags[256] = "";
    FILE *f = fopen("/proc/cpuinfo", "r");
    bool have_flags = false;
    while (f && fgets(line, sizeof line, f)) {
        char *v = strchr(line, ':');
        if (!v) continue;
        v += v[1] == ' ' ? 2 : 1;
        v[strcspn(v, "\n")] = 0;
        if (!strncmp(line, "model name", 10) && !strcmp(model, "unknown CPU")) snprintf(model, sizeof model, "%s", v);
        if (strncmp(line, "flags", 5) || have_flags) continue;
        have_flags = true;
        size_t len = 0;
        for (size_t i = 0; i < sizeof WANT / sizeof WANT[0]; i++) {
            for (char *p = v; (p = strstr(p, WANT[i])); p++) {
                size_t w = strlen(WANT[i]);
                if ((p == v || p[-1] == ' ') && (p[w] == ' ' || p[w] == 0)) {
                    len += (size_t)snprintf(flags + len, sizeof flags - len, "%s%s", len ? " " : "", WANT[i]);
                    if (len >= sizeof flags) len = sizeof flags - 1;
                    break;
                }
            }
        }
    }
    if (f) fclose(f);
    snprintf(out, n, "%s; flags: %s", model, flags[0] ? flags : "none of the SIMD ones");
}

/* "haswell (SSE3 SSSE3 AVX AVX2 F16C FMA BMI2 ...)": the variant file and what it was built with. */
static void cpu_variant(ggml_backend_reg_t reg, char *out, size_t n) {
    ggml_backend_get_features_t feats =
        (ggml_backend_get_features_t)ggml_backend_reg_get_proc_address(reg, "ggml_backend_get_features");
    Dl_info di = {0};
    const char *variant = "built in";
    char file[256] = "";
    if (feats && dladdr((void *)feats, &di) && di.dli_fname) {
        const char *b = strrchr(di.dli_fname, '/');
        snprintf(file, sizeof file, "%s", b ? b + 1 : di.dli_fname);
        char *dot = strstr(file, ".so");
        if (dot) *dot = 0;
        variant = strncmp(file, "libggml-cpu-", 12) ? file : file + 12;
    }
    size_t len = (size_t)snprintf(out, n, "%s (", variant);
    for (struct ggml_backend_feature *f = feats ? feats(reg) : NULL; f && f->name && len < n; f++) {
        if (!strcmp(f->value, "1")) len += (size_t)snprintf(out + len, n - len, "%s%s", out[len - 1] == '(' ? "" : " ", f->name);
    }
    if (len < n) snprintf(out + len, n - len, ")");
}

static void backend_load(void) {
    const char *dir = getenv("AIOS_GGML_BACKEND_DIR");
    if (!dir || !*dir) dir = AIOS_GGML_BACKEND_DIR;
    llama_log_set(lc_log, NULL); /* ggml's loader reports only failures, through our log */
    ggml_backend_load_all_from_path(dir);
    ggml_backend_reg_t cpu = ggml_backend_reg_by_name("CPU");
    if (!cpu) {
        g_be.rc = AIOS_ERR_MODEL;
        snprintf(g_be.err, sizeof g_be.err,
                 "no ggml CPU backend (libggml-cpu-*.so) loads from %s on this host (run `make llama`, or set "
                 "AIOS_GGML_BACKEND_DIR)",
                 dir);
        return;
    }
    g_be.tp_new = (tp_new_fn)ggml_backend_reg_get_proc_address(cpu, "ggml_threadpool_new");
    g_be.tp_free = (tp_free_fn)ggml_backend_reg_get_proc_address(cpu, "ggml_threadpool_free");
    char hostd[400], var[360];
    host_cpu(hostd, sizeof hostd);
    cpu_variant(cpu, var, sizeof var);
    snprintf(g_be.desc, sizeof g_be.desc, "host CPU %s; ggml CPU variant %s", hostd, var);
    log_info("engine: %s", g_be.desc);
    llama_backend_init();
}

int lc_backend_init(char *err, size_t errlen) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, backend_load);
    llama_log_set(lc_log, NULL);
    if (g_be.rc && err) snprintf(err, errlen, "%s", g_be.err);
    return g_be.rc;
}

const char *lc_backend_describe(void) { return g_be.desc; }

struct ggml_threadpool *lc_threadpool_new(struct ggml_threadpool_params *p) {
    return g_be.tp_new ? g_be.tp_new(p) : NULL;
}

void lc_threadpool_free(struct ggml_threadpool *tp) {
    if (tp && g_be.tp_free) g_be.tp_free(tp);
}

/* One real decode outside the kernel's engine: prompt, then n greedy tokens, on the variant
 * loaded above. For `aiosd --self-test` (make test's preflight), run in a child process so
 * that an instruction the host cannot run ends that child, not the test run. */
int llm_self_test(const char *model_path, int n, char *out, size_t outlen, char *err, size_t errlen) {
    int rc = lc_check_gguf(model_path, err, errlen);
    if (rc || (rc = lc_backend_init(err, errlen))) return rc;
    struct llama_model *model = llama_model_load_from_file(model_path, llama_model_default_params());
    if (!model) {
        snprintf(err, errlen, "cannot load model %s", model_path);
        return AIOS_ERR_MODEL;
    }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 128;
    cp.n_batch = cp.n_ubatch = 32;
    cp.no_perf = true;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    struct llama_sampler *smp = llama_sampler_init_greedy();
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    llama_token toks[64];
    static const char PROMPT[] = "The capital of France is";
    int nt = llama_tokenize(vocab, PROMPT, (int32_t)strlen(PROMPT), toks, 32, true, false);
    rc = !ctx || !smp || nt <= 0 ? AIOS_ERR_MODEL : AIOS_OK;
    if (rc) snprintf(err, errlen, "cannot set up a llama.cpp context for the self-test");
    struct llama_batch b = llama_batch_get_one(toks, nt);
    int done = 0;
    for (; !rc && done < n && done < 32; done++) {
        if (llama_decode(ctx, b) != 0) {
            snprintf(err, errlen, "llama_decode failed after %d tokens", done);
            rc = AIOS_ERR_MODEL;
            break;
        }
        toks[nt + done] = llama_sampler_sample(smp, ctx, -1);
        b = llama_batch_get_one(&toks[nt + done], 1);
    }
    if (!rc) {
        char piece[512];
        size_t len = 0;
        for (int i = 0; i < done && len < sizeof piece - 1; i++) {
            int w = llama_token_to_piece(vocab, toks[nt + i], piece + len, (int32_t)(sizeof piece - 1 - len), 0, false);
            if (w > 0) len += (size_t)w;
        }
        piece[len] = 0;
        for (char *p = piece; (p = strpbrk(p, "\r\n\t"));) *p = ' '; /* one line */
        snprintf(out, outlen, "%d prompt + %d generated tokens (\"%s%s\") on %s", nt, done, PROMPT, piece, g_be.desc);
    }
    llama_sampler_free(smp);
    if (ctx) llama_free(ctx);
    llama_model_free(model);
    return rc;
}

int llm_devices(llm_device *out, int max) {
    if (lc_backend_init(NULL, 0)) return 0;
    int n = (int)ggml_backend_dev_count();
    for (int i = 0; i < n && i < max; i++) {
        ggml_backend_dev_t d = ggml_backend_dev_get((size_t)i);
        llm_device *o = &out[i];
        snprintf(o->name, sizeof o->name, "%s", ggml_backend_dev_name(d));
        snprintf(o->description, sizeof o->description, "%s", ggml_backend_dev_description(d));
        enum ggml_backend_dev_type t = ggml_backend_dev_type(d);
        o->type = t == GGML_BACKEND_DEVICE_TYPE_CPU ? "cpu"
            : t == GGML_BACKEND_DEVICE_TYPE_GPU     ? "gpu"
            : t == GGML_BACKEND_DEVICE_TYPE_IGPU    ? "igpu"
                                                    : "accel";
        ggml_backend_dev_memory(d, &o->memory_free, &o->memory_total);
    }
    return n;
}

/* The index-th GPU device, or NULL; *n_gpus gets how many there are. */
static ggml_backend_dev_t nth_gpu(int index, int *n_gpus) {
    ggml_backend_dev_t found = NULL;
    *n_gpus = 0;
    for (size_t i = 0; i < ggml_backend_dev_count(); i++) {
        ggml_backend_dev_t d = ggml_backend_dev_get(i);
        enum ggml_backend_dev_type t = ggml_backend_dev_type(d);
        if (t != GGML_BACKEND_DEVICE_TYPE_GPU && t != GGML_BACKEND_DEVICE_TYPE_IGPU) continue;
        if (*n_gpus == index) found = d;
        (*n_gpus)++;
    }
    return found;
}

int lc_gpu_placement(const aios_model_cfg *m, int *n_gpu_layers, int *main_gpu, char *device, size_t devlen, char *err,
                     size_t errlen) {
    *n_gpu_layers = 0;
    *main_gpu = 0;
    snprintf(device, devlen, "CPU");
    if (m->gpu_layers <= 0) return AIOS_OK;
    int n_gpus = 0;
    ggml_backend_dev_t d = nth_gpu(m->main_gpu, &n_gpus);
    if (d) {
        *n_gpu_layers = m->gpu_layers;
        *main_gpu = m->main_gpu;
        snprintf(device, devlen, "%s", ggml_backend_dev_name(d));
        return AIOS_OK;
    }
    char why[200];
    if (n_gpus == 0)
        snprintf(why, sizeof why, "no GPU that ggml can use on this host (devices: %s; a GPU build is `make llama GPU=cuda`)",
                 ggml_backend_dev_count() > 1 ? "no GPU among them" : "the CPU only");
    else
        snprintf(why, sizeof why, "main_gpu %d, but there %s only %d GPU%s", m->main_gpu, n_gpus == 1 ? "is" : "are", n_gpus,
                 n_gpus == 1 ? "" : "s");
    if (!strcmp(m->gpu_fallback, "cpu")) {
        log_warn("model '%s': gpu_layers %d asked for a GPU, but %s: running on the CPU (gpu_fallback: cpu)", m->name,
                 m->gpu_layers, why);
        return AIOS_OK;
    }
    snprintf(err, errlen, "model '%s': gpu_layers %d asks for a GPU, but %s; set gpu_fallback: cpu to run it on the CPU", m->name,
             m->gpu_layers, why);
    return AIOS_ERR_MODEL;
}

void llm_engine_version(char *out, size_t cap) {
    char err[640] = "";
    int rc = lc_backend_init(err, sizeof err);
    snprintf(out, cap, "llama.cpp as vendored by llama-cpp-python %s, from %s; %s", AIOS_LLAMA_PY_VERSION, AIOS_GGML_BACKEND_DIR,
             rc ? err : lc_backend_describe());
}
