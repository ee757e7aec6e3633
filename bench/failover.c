/*
 * failover.c - failover time of a fleet model (issue 13's benchmark): one agent sends short
 * streamed requests back to back to a kernel model whose replicas include the process
 * VICTIM_PID (the replica the agent is pinned to); after a steady second the program kills
 * that replica with SIGKILL and measures the time from the kill to the end of the first
 * request answered in full after it (served by another replica). Requests that fail in
 * between (a stream the victim was serving) are counted.
 *
 *   failover URL MODEL AGENT VICTIM_PID [--tokens N] [--timeout S]
 *
 * Prints one JSON line: {"failover_s", "failed", "requests_before"}; exit status 0 when a
 * request succeeded after the kill, 1 when none did within the timeout, 2 on bad usage.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include "http.h"

/* One streamed request; 1 when it ended with a finish_reason and no error event. */
static int one(bench_conn *k, const char *model, int tokens) {
    char body[512];
    snprintf(body, sizeof body,
             "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"Name a colour.\"}],"
             "\"max_tokens\":%d,\"temperature\":0,\"stream\":true,\"ignore_eos\":true}",
             model, tokens);
    long st = bench_request(k, body);
    return st == 200 && strstr(k->buf, "\"finish_reason\":\"") && !strstr(k->buf, "\"error\"");
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: failover URL MODEL AGENT VICTIM_PID [--tokens N] [--timeout S]\n");
        return 2;
    }
    const char *url = argv[1], *model = argv[2], *agent = argv[3];
    pid_t victim = (pid_t)atol(argv[4]);
    int tokens = 8;
    double timeout = 60;
    for (int i = 5; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--tokens")) tokens = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--timeout")) timeout = atof(argv[i + 1]);
    }
    if (victim <= 1 || tokens < 1) {
        fprintf(stderr, "failover: bad VICTIM_PID or --tokens\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    bench_conn k;
    bench_conn_init(&k, url, "/v1/chat/completions", agent);
    int before = 0;
    for (double t = bench_now(); bench_now() - t < 1.0;) before += one(&k, model, tokens); /* steady, pinned */
    double t_kill = bench_now();
    kill(victim, SIGKILL);
    int failed = 0, ok = 0;
    double t_ok = 0;
    while (!ok && bench_now() - t_kill < timeout) {
        ok = one(&k, model, tokens);
        if (ok) t_ok = bench_now();
        else failed++;
    }
    bench_conn_free(&k);
    curl_global_cleanup();
    if (!ok) {
        printf("{\"failover_s\":null,\"failed\":%d,\"requests_before\":%d}\n", failed, before);
        return 1;
    }
    printf("{\"failover_s\":%.4f,\"failed\":%d,\"requests_before\":%d}\n", t_ok - t_kill, failed, before);
    return 0;
}
