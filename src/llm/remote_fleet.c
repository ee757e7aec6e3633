/*
 * remote_fleet.c - the replicas (endpoints) of one remote model and their health (issue 13,
 * part 4): which endpoint takes a request, when an endpoint is taken out and when it comes
 * back. remote.c's I/O thread drives it; API threads read it for /status and /metrics, so
 * every entry point takes the fleet's mutex.
 *
 * - Balancing: the usable endpoint with the fewest outstanding requests (healthy before
 *   suspect, ties in turn), at most max_inflight on each.
 * - Affinity: an agent is pinned to the endpoint its first request went to (a hashed table,
 *   so forgetting an agent costs only a cache miss upstream), and keeps it while that
 *   endpoint is usable and has room; it is re-pinned only when its endpoint is out.
 * - Passive health: a failed request marks its endpoint suspect; breaker_failures in a row
 *   (or one refused connection) open the breaker: the endpoint is down, out of rotation.
 * - Active health: every health_interval_s a GET of health_path on each endpoint; a down
 *   endpoint is probed after breaker_open_s, and a passing probe closes its breaker. Before
 *   its first probe an endpoint is "probing": requests wait for the answer, and a model
 *   whose endpoints all fail it starts down, with the reason.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "remote_internal.h"

static const char *const STATE_NAME[] = {"probing", "up", "suspect", "down"};

void rm_route_url(const char *host, const char *route, char *out, size_t cap) {
    size_t n = strlen(host);
    while (n && host[n - 1] == '/') n--;
    bool v1 = n >= 3 && !strncmp(host + n - 3, "/v1", 3);
    snprintf(out, cap, "%.*s%s%s", (int)n, host, v1 ? "" : "/v1", route);
}

/* The probe URL: health_path on the server's root (the base URL without its /v1), or the
 * dialect's model list. */
static void probe_url(const aios_model_cfg *m, const char *host, char *out, size_t cap) {
    if (!m->health_path[0]) {
        rm_route_url(host, "/models", out, cap);
        return;
    }
    size_t n = strlen(host);
    while (n && host[n - 1] == '/') n--;
    if (n >= 3 && !strncmp(host + n - 3, "/v1", 3)) n -= 3;
    snprintf(out, cap, "%.*s%s%s", (int)n, host, m->health_path[0] == '/' ? "" : "/", m->health_path);
}

int rm_fleet_init(rm_fleet *f, const aios_model_cfg *m, const char *route, const char *auth, bool anthropic) {
    memset(f, 0, sizeof *f);
    f->cfg = m;
    f->auth = auth;
    f->anthropic = anthropic;
    f->max_inflight = m->max_inflight > 0 ? m->max_inflight : 8;
    pthread_mutex_init(&f->mu, NULL);
    char host[AIOS_PATH_MAX];
    for (int k = 0; f->n < AIOS_MAX_ENDPOINTS && config_model_endpoint_at(m, k, host, sizeof host); k++) {
        rm_endpoint *ep = &f->ep[f->n++];
        snprintf(ep->base, sizeof ep->base, "%s", host);
        rm_route_url(host, route, ep->url, sizeof ep->url);
        probe_url(m, host, ep->probe_url, sizeof ep->probe_url);
        ep->state = m->health_interval_s > 0 ? RM_EP_PROBING : RM_EP_UP;
        ep->last_ok = -1;
    }
    return f->n > 0 ? AIOS_OK : AIOS_ERR_CONFIG;
}

void rm_fleet_free(rm_fleet *f, CURLM *multi) {
    for (int i = 0; i < f->n; i++) {
        rm_endpoint *ep = &f->ep[i];
        if (!ep->probe) continue;
        curl_multi_remove_handle(multi, ep->probe);
        curl_easy_cleanup(ep->probe);
        curl_slist_free_all(ep->probe_hdrs);
        ep->probe = NULL;
    }
    pthread_mutex_destroy(&f->mu);
}

void rm_fleet_disable(rm_fleet *f, const char *why) {
    pthread_mutex_lock(&f->mu);
    f->disabled = true;
    for (int i = 0; i < f->n; i++) {
        f->ep[i].state = RM_EP_DOWN;
        snprintf(f->ep[i].last_error, sizeof f->ep[i].last_error, "%s", why);
    }
    pthread_mutex_unlock(&f->mu);
}

static bool usable(const rm_endpoint *ep) { return ep->state == RM_EP_UP || ep->state == RM_EP_SUSPECT; }

rm_room rm_fleet_room(rm_fleet *f) {
    pthread_mutex_lock(&f->mu);
    rm_room r = RM_DOWN;
    for (int i = 0; i < f->n && r != RM_ROOM; i++) {
        const rm_endpoint *ep = &f->ep[i];
        if (usable(ep)) r = ep->outstanding < f->max_inflight ? RM_ROOM : RM_FULL;
        else if (ep->state == RM_EP_PROBING && r == RM_DOWN) r = RM_WAIT;
    }
    pthread_mutex_unlock(&f->mu);
    return r;
}

bool rm_fleet_other(rm_fleet *f, int i) {
    pthread_mutex_lock(&f->mu);
    bool other = false;
    for (int k = 0; k < f->n && !other; k++) other = k != i && usable(&f->ep[k]) && f->ep[k].outstanding < f->max_inflight;
    pthread_mutex_unlock(&f->mu);
    return other;
}

/* FNV-1a of an agent's name (0 is kept for "no agent"). */
static uint64_t agent_hash(const char *agent) {
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)agent; *p; p++) h = (h ^ *p) * 1099511628211ull;
    return h ? h : 1;
}

/* The least loaded usable endpoint with room (healthy ranks before suspect; ties in turn),
 * not avoid unless it is the only one; -1 when none has room. */
static int least_loaded(rm_fleet *f, int avoid) {
    int best = -1;
    for (int pass = 0; pass < 2 && best < 0; pass++)
        for (int k = 0; k < f->n; k++) {
            int i = (int)((f->turn + (unsigned)k) % (unsigned)f->n);
            const rm_endpoint *ep = &f->ep[i];
            if (!usable(ep) || ep->outstanding >= f->max_inflight || (pass == 0 && i == avoid)) continue;
            if (best < 0) {
                best = i;
                continue;
            }
            const rm_endpoint *b = &f->ep[best];
            bool sus = ep->state == RM_EP_SUSPECT, bsus = b->state == RM_EP_SUSPECT;
            if (sus < bsus || (sus == bsus && ep->outstanding < b->outstanding)) best = i;
        }
    f->turn++;
    return best;
}

int rm_fleet_pick(rm_fleet *f, const char *agent, int avoid) {
    pthread_mutex_lock(&f->mu);
    uint64_t h = f->cfg->affinity && f->n > 1 && agent && *agent ? agent_hash(agent) : 0;
    size_t slot = (size_t)(h % RM_AFFINITY_SLOTS);
    int pinned = h && f->aff_key[slot] == h ? f->aff_ep[slot] : -1;
    int i = -1;
    if (pinned >= 0 && pinned != avoid && usable(&f->ep[pinned]) && f->ep[pinned].outstanding < f->max_inflight) i = pinned;
    if (i < 0) i = least_loaded(f, avoid);
    /* pin a new agent, or one whose endpoint is out; one whose endpoint is only full keeps it */
    if (i >= 0 && h && (pinned < 0 || !usable(&f->ep[pinned]))) {
        f->aff_key[slot] = h;
        f->aff_ep[slot] = (uint8_t)i;
    }
    if (i >= 0) {
        f->ep[i].outstanding++;
        f->ep[i].requests++;
    }
    pthread_mutex_unlock(&f->mu);
    return i;
}

/* Opens ep's breaker (locked). */
static void open_breaker(rm_fleet *f, rm_endpoint *ep, double now) {
    if (ep->state != RM_EP_DOWN) {
        ep->breaker_opens++;
        log_warn("model '%s': endpoint %s is out (%s); probing it again in %d s", f->cfg->name, ep->base, ep->last_error,
                 f->cfg->breaker_open_s);
    }
    ep->state = RM_EP_DOWN;
    ep->reopen_at = now + f->cfg->breaker_open_s;
}

/* A health verdict on ep (locked): a request's or a probe's. */
static void verdict(rm_fleet *f, rm_endpoint *ep, rm_health h, const char *why, double now) {
    if (h == RM_HEALTH_NEUTRAL) return;
    if (h == RM_HEALTH_OK) {
        if (ep->state != RM_EP_UP && ep->state != RM_EP_PROBING)
            log_info("model '%s': endpoint %s is back in", f->cfg->name, ep->base);
        ep->state = RM_EP_UP;
        ep->fails = 0;
        ep->last_ok = now;
        return;
    }
    ep->failures++;
    ep->fails++;
    snprintf(ep->last_error, sizeof ep->last_error, "%s", why ? why : "failed");
    if (h == RM_HEALTH_REFUSED || ep->state == RM_EP_PROBING || ep->fails >= f->cfg->breaker_failures) open_breaker(f, ep, now);
    else if (ep->state == RM_EP_UP) ep->state = RM_EP_SUSPECT;
}

void rm_fleet_result(rm_fleet *f, int i, rm_health h, const char *why, bool retried, double now) {
    if (i < 0 || i >= f->n) return;
    pthread_mutex_lock(&f->mu);
    rm_endpoint *ep = &f->ep[i];
    if (ep->outstanding > 0) ep->outstanding--;
    if (retried) ep->retries++;
    verdict(f, ep, h, why, now);
    pthread_mutex_unlock(&f->mu);
}

static void start_probe(rm_fleet *f, rm_endpoint *ep, CURLM *multi) {
    ep->probe = curl_easy_init();
    if (!ep->probe) return;
    if (f->auth) ep->probe_hdrs = curl_slist_append(NULL, f->auth);
    if (f->anthropic) ep->probe_hdrs = curl_slist_append(ep->probe_hdrs, "anthropic-version: 2023-06-01");
    curl_easy_setopt(ep->probe, CURLOPT_URL, ep->probe_url);
    curl_easy_setopt(ep->probe, CURLOPT_HTTPHEADER, ep->probe_hdrs);
    curl_easy_setopt(ep->probe, CURLOPT_PRIVATE, (char *)ep);
    curl_easy_setopt(ep->probe, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(ep->probe, CURLOPT_CONNECTTIMEOUT, 2L);
    curl_easy_setopt(ep->probe, CURLOPT_TIMEOUT, 5L);
    curl_easy_setopt(ep->probe, CURLOPT_NOBODY, 0L);
    curl_easy_setopt(ep->probe, CURLOPT_WRITEFUNCTION, rm_discard);
    curl_multi_add_handle(multi, ep->probe);
}

double rm_fleet_tick(rm_fleet *f, CURLM *multi, double now) {
    double next = now + 1.0;
    pthread_mutex_lock(&f->mu);
    if (f->disabled) {
        pthread_mutex_unlock(&f->mu);
        return next;
    }
    for (int i = 0; i < f->n; i++) {
        rm_endpoint *ep = &f->ep[i];
        if (ep->probe) continue;
        double due = ep->state == RM_EP_DOWN ? ep->reopen_at
            : f->cfg->health_interval_s > 0  ? ep->last_probe + f->cfg->health_interval_s
                                             : -1;
        if (ep->state == RM_EP_PROBING) due = 0;
        if (due < 0) continue;
        if (due <= now) {
            ep->last_probe = now;
            start_probe(f, ep, multi);
        } else if (due < next) {
            next = due;
        }
    }
    pthread_mutex_unlock(&f->mu);
    return next;
}

bool rm_fleet_probe_done(rm_fleet *f, CURLM *multi, CURL *easy, CURLcode cc, double now) {
    char *priv = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
    if (priv < (char *)f->ep || priv >= (char *)(f->ep + f->n)) return false;
    rm_endpoint *ep = (rm_endpoint *)priv;
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    char why[160];
    rm_health h = RM_HEALTH_OK;
    if (cc != CURLE_OK) {
        h = cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST ? RM_HEALTH_REFUSED : RM_HEALTH_FAILED;
        snprintf(why, sizeof why, "health check: %s", curl_easy_strerror(cc));
    } else if (status >= 500 || status == 408 || status == 429) {
        h = RM_HEALTH_FAILED;
        snprintf(why, sizeof why, "health check: HTTP %ld", status);
    }
    pthread_mutex_lock(&f->mu);
    curl_multi_remove_handle(multi, easy);
    curl_easy_cleanup(easy);
    curl_slist_free_all(ep->probe_hdrs);
    ep->probe = NULL;
    ep->probe_hdrs = NULL;
    bool first = ep->state == RM_EP_PROBING;
    verdict(f, ep, h, why, now);
    if (first && h == RM_HEALTH_OK) log_info("model '%s': endpoint %s is up", f->cfg->name, ep->base);
    pthread_mutex_unlock(&f->mu);
    return true;
}

/* "model 'm' is down: url: last error; ..." (locked). */
static void down_reason(const rm_fleet *f, char *why, size_t cap) {
    int n = snprintf(why, cap, "model '%s' is down (every endpoint is out):", f->cfg->name);
    for (int i = 0; i < f->n && n > 0 && (size_t)n < cap; i++)
        n += snprintf(why + n, cap - (size_t)n, "%s %s: %s", i ? ";" : "", f->ep[i].base,
                      f->ep[i].last_error[0] ? f->ep[i].last_error : "out");
}

bool rm_fleet_down(rm_fleet *f, char *why, size_t cap) {
    pthread_mutex_lock(&f->mu);
    bool down = true;
    for (int i = 0; i < f->n; i++) down = down && f->ep[i].state == RM_EP_DOWN;
    if (down && why && cap) down_reason(f, why, cap);
    pthread_mutex_unlock(&f->mu);
    return down;
}

void rm_fleet_stats(rm_fleet *f, llm_core_stats *o, double now) {
    pthread_mutex_lock(&f->mu);
    o->n_endpoints = f->n;
    bool down = true;
    for (int i = 0; i < f->n; i++) {
        const rm_endpoint *ep = &f->ep[i];
        llm_endpoint_stats *s = &o->endpoints[i];
        snprintf(s->url, sizeof s->url, "%s", ep->base);
        s->state = STATE_NAME[ep->state];
        s->outstanding = ep->outstanding;
        s->requests = ep->requests;
        s->failures = ep->failures;
        s->retries = ep->retries;
        s->breaker_opens = ep->breaker_opens;
        s->last_ok_ago_s = ep->last_ok < 0 ? -1 : now - ep->last_ok;
        snprintf(s->last_error, sizeof s->last_error, "%s", ep->last_error);
        down = down && ep->state == RM_EP_DOWN;
    }
    o->down = down;
    if (down) down_reason(f, o->down_reason, sizeof o->down_reason);
    pthread_mutex_unlock(&f->mu);
}

size_t rm_discard(char *ptr, size_t size, size_t nmemb, void *ud) {
    (void)ptr;
    (void)ud;
    return size * nmemb;
}
