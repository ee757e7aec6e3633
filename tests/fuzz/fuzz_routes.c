/*
 * fuzz_routes.c - the body of every route that takes one, through the whole kernel: aiosd
 * itself (kernel_main, src/kernel/boot.c) runs in a thread of this process with the default
 * model and embedder (a small context, so a valid request's generation is short), and each
 * input is one HTTP request to it over loopback. Byte 0 picks the route (method and path,
 * the table below), the rest is the body. Every door is here: AIOS /query, OpenAI chat
 * completions / completions / embeddings / responses, Anthropic messages, the Ollama routes,
 * llama-server's helpers, the agents API and the admin routes.
 * Properties: every request gets a whole HTTP answer (never a dropped connection or a hang);
 * none is a 500 (the fuzzer's process has memory: a 500 is a kernel fault); an error is JSON
 * with an "error" member, in the door's shape; the kernel keeps serving. ASan and UBSan watch
 * every thread of the kernel meanwhile.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <cjson/cJSON.h>
#include "fuzz.h"
#include "kernel/kernel.h"

typedef struct route {
    const char *method, *path;
} route;

static const route ROUTES[] = {
    {"POST", "/query"},
    {"POST", "/v1/chat/completions"},
    {"POST", "/v1/completions"},
    {"POST", "/v1/embeddings"},
    {"POST", "/v1/responses"},
    {"POST", "/v1/responses/input_tokens"},
    {"POST", "/v1/messages"},
    {"POST", "/v1/messages/count_tokens"},
    {"POST", "/api/chat"},
    {"POST", "/api/generate"},
    {"POST", "/api/embed"},
    {"POST", "/api/embeddings"},
    {"POST", "/api/show"},
    {"POST", "/tokenize"},
    {"POST", "/detokenize"},
    {"POST", "/apply-template"},
    {"POST", "/agents/submit"},
    {"POST", "/agents"},
    {"POST", "/admin/agents"},
    {"POST", "/admin/agents/revoke"},
    {"POST", "/admin/approvals/decide"},
    {"POST", "/user/select/llms"},
    {"GET", "/agents/ps"},
    {"GET", "/v1/responses/resp_0"},
};
#define N_ROUTES (sizeof ROUTES / sizeof ROUTES[0])

static int port;

static void *kernel_thread(void *arg) {
    char **argv = arg;
    int argc = 0;
    while (argv[argc]) argc++;
    kernel_main(argc, argv);
    return NULL;
}

/* One request; the whole answer into ans (NUL-terminated); its status, or -1 when the
 * connection dropped or it took more than 60 s. */
static int http(const char *method, const char *path, const char *body, size_t n, strbuf *ans) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    struct timeval tv = {60, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int c;
    while ((c = connect(fd, (struct sockaddr *)&sa, sizeof sa)) && errno == EINTR) {}
    if (c) {
        close(fd);
        return -1;
    }
    strbuf req;
    sb_init(&req, 0);
    sb_printf(&req,
              "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer fuzz\r\nContent-Type: application/json\r\n"
              "Content-Length: %zu\r\nConnection: close\r\n\r\n",
              method, path, n);
    sb_append(&req, body, n);
    size_t off = 0;
    for (ssize_t w; off < req.len && ((w = write(fd, req.data + off, req.len - off)) > 0 || errno == EINTR);)
        if (w > 0) off += (size_t)w;
    bool sent = off == req.len;
    sb_free(&req);
    char buf[65536];
    ssize_t r;
    while (sent && ((r = read(fd, buf, sizeof buf)) > 0 || (r < 0 && errno == EINTR))) /* (libFuzzer's SIGALRM) */
        if (r > 0) sb_append(ans, buf, (size_t)r);
    close(fd);
    int status = -1;
    if (!ans->data || sscanf(ans->data, "HTTP/1.1 %d", &status) != 1) return -1;
    return r == 0 ? status : -1;
}

static char dir[] = "/tmp/aios-fuzz-routes-XXXXXX";

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static pthread_t kernel;

/* At exit: the kernel shuts down as on SIGTERM (its thread takes it with sigwait) before the
 * libraries' own destructors run under its threads, then its data goes. */
static void stop_kernel(void) {
    pthread_kill(kernel, SIGTERM);
    pthread_join(kernel, NULL);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    static char conf[64], portarg[32], data[64];
    if (!mkdtemp(dir)) abort();
    int s = socket(AF_INET, SOCK_STREAM, 0); /* a free port */
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof sa;
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (bind(s, (struct sockaddr *)&sa, sizeof sa) || getsockname(s, (struct sockaddr *)&sa, &len)) abort();
    port = ntohs(sa.sin_port);
    close(s);
    snprintf(conf, sizeof conf, "%s/aiosd.yaml", dir);
    FILE *f = fopen(conf, "w");
    if (!f) abort();
    fputs("llms:\n  default_max_tokens: 8\n  models:\n    - name: smollm2\n      ctx_size: 256\n      kv_size: 4096\n"
          "agents:\n  cgroup: \"off\"\n  max_running: 4\nkernel:\n  log_level: error\n",
          f);
    fclose(f);
    snprintf(portarg, sizeof portarg, "%d", port);
    snprintf(data, sizeof data, "%s/data", dir);
    static char *args[] = {"aiosd", "--config", conf, "--port", portarg, "--data-dir", data, NULL};
    if (pthread_create(&kernel, NULL, kernel_thread, args)) abort();
    atexit(stop_kernel);
    for (int i = 0; i < 1200; i++) { /* until /health says the models are loaded (120 s) */
        strbuf ans;
        sb_init(&ans, 0);
        int st = http("GET", "/health", "", 0, &ans);
        sb_free(&ans);
        if (st == 200) return 0;
        usleep(100 * 1000);
    }
    fprintf(stderr, "fuzz_routes: the kernel did not come up on port %d\n", port);
    abort();
}

/* The door's error shape: OpenAI / AIOS {"error": {...}}, Anthropic {"type": "error",
 * "error": {...}}, Ollama {"error": "..."}: an object with an "error" member. */
static bool error_json(const char *body) {
    cJSON *j = cJSON_Parse(body);
    bool ok = cJSON_IsObject(j) && cJSON_GetObjectItemCaseSensitive(j, "error");
    cJSON_Delete(j);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const route *rt = &ROUTES[data[0] % N_ROUTES];
    strbuf ans;
    sb_init(&ans, 0);
    int st = http(rt->method, rt->path, (const char *)data + 1, size - 1, &ans);
    if (st < 0 || st == 500)
        fprintf(stderr, "%s %s (errno %d): %s\n", rt->method, rt->path, errno, ans.data ? ans.data : "(no answer)");
    FUZZ_CHECK(st > 0);
    FUZZ_CHECK(st != 500);
    const char *body = strstr(ans.data, "\r\n\r\n");
    bool chunked = strcasestr(ans.data, "\r\nTransfer-Encoding: chunked") != NULL;
    if (st >= 400 && !chunked) {
        if (!body || !error_json(body + 4)) fprintf(stderr, "%s %s: %s\n", rt->method, rt->path, ans.data);
        FUZZ_CHECK(body && error_json(body + 4));
    }
    sb_free(&ans);
    return 0;
}
