/*
 * test_fleet.c - unit tests of a remote model's endpoint logic (src/llm/remote_fleet.c),
 * without a network: which endpoint takes a request (least outstanding, max_inflight on
 * each, agent affinity, avoiding the one that just failed), and the health state machine
 * (suspect after a failure, breaker open after breaker_failures or one refused connection,
 * back in after a passing check, the model down when every endpoint is out).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include "llm/remote_internal.h"

static aios_model_cfg model(const char *endpoints, int max_inflight) {
    aios_model_cfg m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "fleet");
    snprintf(m.endpoints, sizeof m.endpoints, "%s", endpoints);
    m.max_inflight = max_inflight;
    m.breaker_failures = 2;
    m.breaker_open_s = 5;
    m.affinity = 1;
    return m; /* health_interval_s 0: endpoints start up, no probes */
}

static void test_urls(void **st) {
    (void)st;
    char u[256];
    rm_route_url("http://h:8000", "/chat/completions", u, sizeof u);
    assert_string_equal(u, "http://h:8000/v1/chat/completions");
    rm_route_url("https://api.x.com/v1/", "/messages", u, sizeof u);
    assert_string_equal(u, "https://api.x.com/v1/messages");
    aios_model_cfg m = model("http://a:1/v1, http://b:2", 2);
    snprintf(m.health_path, sizeof m.health_path, "/health");
    rm_fleet f;
    assert_int_equal(rm_fleet_init(&f, &m, "/chat/completions", NULL, false), AIOS_OK);
    assert_int_equal(f.n, 2);
    assert_string_equal(f.ep[0].url, "http://a:1/v1/chat/completions");
    assert_string_equal(f.ep[0].probe_url, "http://a:1/health"); /* on the server's root */
    assert_string_equal(f.ep[1].probe_url, "http://b:2/health");
    assert_int_equal(f.ep[0].state, RM_EP_UP);
    rm_fleet_free(&f, NULL);
}

static void test_least_outstanding_and_limits(void **st) {
    (void)st;
    aios_model_cfg m = model("http://a:1,http://b:2", 2);
    m.affinity = 0;
    rm_fleet f;
    rm_fleet_init(&f, &m, "/chat/completions", NULL, false);
    int a = rm_fleet_pick(&f, NULL, -1), b = rm_fleet_pick(&f, NULL, -1);
    assert_int_not_equal(a, b); /* 1 and 1 */
    int c = rm_fleet_pick(&f, NULL, -1), d = rm_fleet_pick(&f, NULL, -1);
    assert_int_not_equal(c, d); /* 2 and 2: full */
    assert_int_equal(rm_fleet_room(&f), RM_FULL);
    assert_int_equal(rm_fleet_pick(&f, NULL, -1), -1);
    rm_fleet_result(&f, 1, RM_HEALTH_OK, NULL, false, 1.0);
    assert_int_equal(rm_fleet_room(&f), RM_ROOM);
    assert_int_equal(rm_fleet_pick(&f, NULL, -1), 1); /* the one with room */
    /* avoid: the other one, unless it is the only one with room */
    rm_fleet_result(&f, 0, RM_HEALTH_OK, NULL, false, 1.0);
    rm_fleet_result(&f, 1, RM_HEALTH_OK, NULL, false, 1.0);
    assert_int_equal(rm_fleet_pick(&f, NULL, 0), 1);
    rm_fleet_result(&f, 1, RM_HEALTH_OK, NULL, false, 1.0);
    rm_fleet_result(&f, 0, RM_HEALTH_OK, NULL, false, 1.0);
    rm_fleet_pick(&f, NULL, 0);
    rm_fleet_pick(&f, NULL, 0); /* 1 is full now */
    assert_int_equal(rm_fleet_pick(&f, NULL, 0), 0);
    rm_fleet_free(&f, NULL);
}

static void test_affinity(void **st) {
    (void)st;
    aios_model_cfg m = model("http://a:1,http://b:2,http://c:3", 4);
    rm_fleet f;
    rm_fleet_init(&f, &m, "/chat/completions", NULL, false);
    int home = rm_fleet_pick(&f, "planner", -1);
    rm_fleet_result(&f, home, RM_HEALTH_OK, NULL, false, 1.0);
    for (int i = 0; i < 10; i++) { /* others come and go; the planner stays */
        int o = rm_fleet_pick(&f, "other", -1);
        assert_int_equal(rm_fleet_pick(&f, "planner", -1), home);
        rm_fleet_result(&f, home, RM_HEALTH_OK, NULL, false, 1.0);
        rm_fleet_result(&f, o, RM_HEALTH_OK, NULL, false, 1.0);
    }
    /* its replica full: served elsewhere, but still pinned */
    while (f.ep[home].outstanding < 4) f.ep[home].outstanding++;
    int away = rm_fleet_pick(&f, "planner", -1);
    assert_int_not_equal(away, home);
    rm_fleet_result(&f, away, RM_HEALTH_OK, NULL, false, 1.0);
    f.ep[home].outstanding = 0;
    assert_int_equal(rm_fleet_pick(&f, "planner", -1), home);
    rm_fleet_result(&f, home, RM_HEALTH_OK, NULL, false, 1.0);
    /* its replica out: re-pinned to another and kept there */
    rm_fleet_pick(&f, "planner", -1);
    rm_fleet_result(&f, home, RM_HEALTH_REFUSED, "refused", false, 2.0);
    int moved = rm_fleet_pick(&f, "planner", -1);
    assert_int_not_equal(moved, home);
    rm_fleet_result(&f, moved, RM_HEALTH_OK, NULL, false, 2.0);
    rm_fleet_result(&f, home, RM_HEALTH_OK, NULL, false, 3.0); /* back in */
    assert_int_equal(rm_fleet_pick(&f, "planner", -1), moved);
    rm_fleet_free(&f, NULL);
}

static void test_breaker(void **st) {
    (void)st;
    aios_model_cfg m = model("http://a:1,http://b:2", 4);
    rm_fleet f;
    rm_fleet_init(&f, &m, "/chat/completions", NULL, false);
    llm_core_stats s;
    rm_fleet_pick(&f, NULL, -1);
    rm_fleet_result(&f, 0, RM_HEALTH_FAILED, "HTTP 500", false, 1.0);
    assert_int_equal(f.ep[0].state, RM_EP_SUSPECT);
    /* suspect ranks after healthy */
    int i = rm_fleet_pick(&f, NULL, -1);
    assert_int_equal(i, 1);
    rm_fleet_result(&f, 1, RM_HEALTH_OK, NULL, false, 1.0);
    rm_fleet_pick(&f, NULL, 1);
    rm_fleet_result(&f, 0, RM_HEALTH_FAILED, "HTTP 502", true, 1.5);
    assert_int_equal(f.ep[0].state, RM_EP_DOWN); /* breaker_failures = 2 */
    memset(&s, 0, sizeof s);
    rm_fleet_stats(&f, &s, 2.0);
    assert_int_equal(s.n_endpoints, 2);
    assert_string_equal(s.endpoints[0].state, "down");
    assert_string_equal(s.endpoints[0].last_error, "HTTP 502");
    assert_int_equal((int)s.endpoints[0].breaker_opens, 1);
    assert_int_equal((int)s.endpoints[0].retries, 1);
    assert_false(s.down);
    assert_int_equal(rm_fleet_pick(&f, NULL, -1), 1); /* out of rotation */
    rm_fleet_result(&f, 1, RM_HEALTH_REFUSED, "Couldn't connect to server", false, 2.0);
    assert_int_equal(rm_fleet_room(&f), RM_DOWN);
    char why[400];
    assert_true(rm_fleet_down(&f, why, sizeof why));
    assert_non_null(strstr(why, "model 'fleet' is down"));
    assert_non_null(strstr(why, "http://a:1: HTTP 502"));
    assert_non_null(strstr(why, "http://b:2: Couldn't connect"));
    /* a neutral outcome (a 4xx, a cancel) changes nothing; a passing check closes the breaker */
    f.ep[1].outstanding++;
    rm_fleet_result(&f, 1, RM_HEALTH_NEUTRAL, NULL, false, 3.0);
    assert_int_equal(f.ep[1].state, RM_EP_DOWN);
    assert_int_equal(f.ep[1].outstanding, 0);
    f.ep[0].outstanding++;
    rm_fleet_result(&f, 0, RM_HEALTH_OK, NULL, false, 8.0);
    assert_int_equal(f.ep[0].state, RM_EP_UP);
    assert_int_equal(rm_fleet_room(&f), RM_ROOM);
    assert_false(rm_fleet_down(&f, NULL, 0));
    rm_fleet_free(&f, NULL);
}

static void test_probing_at_start(void **st) {
    (void)st;
    aios_model_cfg m = model("http://a:1", 2);
    m.health_interval_s = 5;
    rm_fleet f;
    rm_fleet_init(&f, &m, "/chat/completions", NULL, false);
    assert_int_equal(f.ep[0].state, RM_EP_PROBING);
    assert_int_equal(rm_fleet_room(&f), RM_WAIT); /* requests wait for the first check */
    assert_int_equal(rm_fleet_pick(&f, "x", -1), -1);
    f.ep[0].outstanding++;
    rm_fleet_result(&f, 0, RM_HEALTH_FAILED, "health check: HTTP 503", false, 1.0);
    assert_int_equal(f.ep[0].state, RM_EP_DOWN); /* one failed first check: down with the reason */
    assert_int_equal(rm_fleet_room(&f), RM_DOWN);
    rm_fleet_free(&f, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_least_outstanding_and_limits),
        cmocka_unit_test(test_affinity),
        cmocka_unit_test(test_breaker),
        cmocka_unit_test(test_probing_at_start),
    };
    return cmocka_run_group_tests_name("fleet", tests, NULL, NULL);
}
