/*
 * http.h - what the HTTP benchmark clients (memory.c, tools.c, doors.c) share: a monotonic clock,
 * percentiles, and one keep-alive libcurl connection per thread with a bounded answer
 * buffer (answers beyond it are cut, which no benchmark reads).
 */
#ifndef AIOS_BENCH_HTTP_H
#define AIOS_BENCH_HTTP_H

#include <stddef.h>
#include <curl/curl.h>

double bench_now(void);                                   /* CLOCK_MONOTONIC seconds */
int bench_cmp_double(const void *a, const void *b);       /* qsort ascending */
double bench_pct(const double *sorted, long n, double p); /* p in [0, 1]; 0 when n is 0 */

typedef struct bench_conn {
    CURL *c;
    struct curl_slist *hdr;
    char buf[65536]; /* the last answer, NUL-terminated */
    size_t len;
} bench_conn;

/* A connection to base + path (JSON bodies); bearer (may be NULL) goes in an
 * Authorization header, which names the agent in access.mode local. */
void bench_conn_init(bench_conn *k, const char *base, const char *path, const char *bearer);
void bench_conn_free(bench_conn *k);
/* POSTs body (GET when NULL); the HTTP status with the answer in k->buf, or -1 when the
 * transfer failed. */
long bench_request(bench_conn *k, const char *body);

#endif
