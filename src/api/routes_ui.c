/*
 * routes_ui.c - the web dashboard (issue 14, part 7; docs/dashboard.md):
 *   GET /ui             the page: ui/index.html (HTML, CSS and JS in one file), embedded in
 *                       the binary at build time (no build step, no CDN, works offline)
 *   GET /ui/config      {"access_mode"}: whether the page must ask for a token before it
 *                       calls anything (a refused call would be a console error)
 *   GET /events         admin: server-sent events, one "snapshot" a second
 *                       ({"t", "status", "agents", "approvals", "audit"}), as GET /status,
 *                       /agents, /admin/approvals and /admin/audit?tail=30 would answer (so
 *                       an open page adds no audit lines of its own each second)
 *   GET /admin/audit    admin: the last ?tail=N (default 50, at most 1000) audit lines as a
 *                       JSON array, newest last
 * The page itself holds no data; it is public. Everything it shows comes from admin routes,
 * with the token the operator typed once (kept in the tab's sessionStorage).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api_internal.h"

extern const unsigned char aios_ui_index_html[];
extern const unsigned int aios_ui_index_html_len;

static enum MHD_Result h_ui(api_req *r, cJSON *body) {
    (void)body;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(aios_ui_index_html_len, (void *)aios_ui_index_html, MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
                            "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    r->status = 200;
    r->answered = true;
    enum MHD_Result ret = MHD_queue_response(r->conn, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result h_ui_config(api_req *r, cJSON *body) {
    (void)body;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "access_mode", api_cfg(r)->access.mode);
    return api_reply_json(r, 200, o);
}

static cJSON *audit_tail(api_req *r, long n, size_t window);

/* A snapshot per tick (however many ticks came since the last one). */
static void events_stream(api_req *r, const char *delta, size_t n, bool final, strbuf *sse) {
    (void)delta;
    if (!n || final) return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "t", kern_now_wall());
    kern_json_add(o, "status", api_status_json(r));
    kern_json_add(o, "agents", api_agents_json(r));
    kern_json_add(o, "approvals", access_approvals_json(api_access(r)));
    kern_json_add(o, "audit", audit_tail(r, 30, 64 << 10));
    api_sse_event(sse, "snapshot", o);
}

static enum MHD_Result h_events(api_req *r, cJSON *body) {
    (void)body;
    syscall_t *sc = syscall_new(SYSCALL_KIND_TOOL, r->agent, NULL, NULL, 1 << 20);
    if (!sc) return api_reply_error(r, AIOS_ERR_NOMEM, NULL);
    if (api_events_subscribe(r, sc)) {
        syscall_unref(sc);
        return api_reply_error(r, AIOS_ERR_BUSY, "%d event streams are open already", API_MAX_EVENT_SUBS);
    }
    return api_follow(r, sc, events_stream);
}

/* The last n JSON lines of path (read from its last `window` bytes) into arr. */
static void tail_lines(const char *path, long n, size_t window, cJSON *arr) {
    strbuf b;
    sb_init(&b, 0);
    bool cut = sb_append_file_tail(&b, path, window);
    char **last = b.data ? calloc((size_t)n, sizeof *last) : NULL;
    char *start = last && cut ? strchr(b.data, '\n') : b.data; /* (a first line cut by the window is skipped) */
    long seen = 0;
    for (char *save = NULL, *l = last ? strtok_r(start ? start : b.data + b.len, "\n", &save) : NULL; l;
         l = strtok_r(NULL, "\n", &save))
        last[seen++ % n] = l;
    for (long i = seen > n ? seen - n : 0; i < seen; i++) {
        cJSON *j = cJSON_Parse(last[i % n]);
        if (j) kern_json_push(arr, j);
    }
    free(last);
    sb_free(&b);
}

/* The last n audit lines (window: bytes read from the end of the log) as a new array. */
static cJSON *audit_tail(api_req *r, long n, size_t window) {
    char path[AIOS_PATH_MAX + 16];
    const aios_config *c = api_cfg(r);
    if (c->access.audit_file[0]) snprintf(path, sizeof path, "%s", c->access.audit_file);
    else snprintf(path, sizeof path, "%.1000s/audit.log", c->data_dir);
    cJSON *arr = cJSON_CreateArray();
    tail_lines(path, n, window, arr);
    return arr;
}

static enum MHD_Result h_audit(api_req *r, cJSON *body) {
    (void)body;
    const char *t = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "tail");
    char *end = NULL;
    long n = t ? strtol(t, &end, 10) : 50;
    if (t && (end == t || *end || n < 1 || n > 1000)) return api_reply_error(r, AIOS_ERR_INVALID, "tail must be in [1, 1000]");
    cJSON *o = cJSON_CreateObject();
    kern_json_add(o, "audit", audit_tail(r, n, 1 << 20));
    return api_reply_json(r, 200, o);
}

const api_route api_routes_ui[] = {
    {"GET", "/ui", h_ui, false, API_GATE_PUBLIC, NULL, API_DOOR_OTHER},
    {"GET", "/ui/", h_ui, false, API_GATE_PUBLIC, NULL, API_DOOR_OTHER},
    {"GET", "/ui/config", h_ui_config, false, API_GATE_PUBLIC, NULL, API_DOOR_OTHER},
    {"GET", "/events", h_events, false, API_GATE_ADMIN, NULL, API_DOOR_ADMIN},
    {"GET", "/admin/audit", h_audit, false, API_GATE_ADMIN, NULL, API_DOOR_ADMIN},
    {NULL, NULL, NULL, false, API_GATE_ADMIN, NULL, API_DOOR_ADMIN},
};
