/*
 * http.c - the shared HTTP client of the benchmarks (http.h): libcurl easy handles kept
 * alive per thread, with TCP_NODELAY so small requests are not held back by Nagle.
 */
#include "http.h"
#include <stdio.h>
#include <string.h>
#include <time.h>

double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bench_pct(const double *v, long n, double p) { return n > 0 ? v[(long)(p * (double)(n - 1) + 0.5)] : 0; }

static size_t on_data(char *p, size_t sz, size_t nm, void *ud) {
    bench_conn *k = ud;
    size_t n = sz * nm, room = sizeof k->buf - 1 - k->len, take = n < room ? n : room;
    memcpy(k->buf + k->len, p, take);
    k->len += take;
    k->buf[k->len] = 0;
    return n;
}

void bench_conn_init(bench_conn *k, const char *base, const char *path, const char *bearer) {
    char url[512], auth[160];
    k->c = curl_easy_init();
    k->hdr = curl_slist_append(NULL, "Content-Type: application/json");
    if (bearer) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", bearer);
        k->hdr = curl_slist_append(k->hdr, auth);
    }
    snprintf(url, sizeof url, "%s%s", base, path);
    curl_easy_setopt(k->c, CURLOPT_URL, url);
    curl_easy_setopt(k->c, CURLOPT_HTTPHEADER, k->hdr);
    curl_easy_setopt(k->c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(k->c, CURLOPT_WRITEDATA, k);
    curl_easy_setopt(k->c, CURLOPT_TCP_NODELAY, 1L);
}

void bench_conn_free(bench_conn *k) {
    curl_slist_free_all(k->hdr);
    curl_easy_cleanup(k->c);
}

long bench_request(bench_conn *k, const char *body) {
    k->len = 0;
    k->buf[0] = 0;
    if (body) curl_easy_setopt(k->c, CURLOPT_POSTFIELDS, body);
    long st = 0;
    if (curl_easy_perform(k->c) != CURLE_OK) return -1;
    curl_easy_getinfo(k->c, CURLINFO_RESPONSE_CODE, &st);
    return st;
}
