/*
 * cli_agents.c - the `aios` commands for agent processes (docs/agents.md):
 *   aios run [OPTIONS] (DIR | -- COMMAND [ARG...])   POST /agents; -f follows its output and
 *                                                    exits with the agent's exit code
 *   aios ps [--json]                                 GET /agents as a table
 *   aios logs [-f] ID                                GET /agents/ID/logs (-f: ?follow=1, SSE)
 *   aios stop|cont|kill ID, aios inspect ID
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "cli.h"

/* ---------- logs ---------- */

typedef struct follow_state {
    int exit_code;
} follow_state;

static int on_event(const char *event, const char *data, void *ud) {
    follow_state *f = ud;
    cJSON *j = cJSON_Parse(data);
    if (!strcmp(event, "log")) {
        fputs(cli_str(j, "text"), stdout);
        fflush(stdout);
    } else if (!strcmp(event, "end")) {
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(j, "exit_code");
        f->exit_code = cJSON_IsNumber(code) ? (int)code->valuedouble : 128;
        char how[64] = "";
        if (cJSON_IsNumber(code)) snprintf(how, sizeof how, " (exit code %d)", f->exit_code);
        else if (*cli_str(j, "signal_name")) snprintf(how, sizeof how, " (signal %s)", cli_str(j, "signal_name"));
        fprintf(stderr, "[agent %s %s%s%s%s]\n", cli_str(j, "id"), cli_str(j, "state"), how, *cli_str(j, "reason") ? ": " : "",
                cli_str(j, "reason"));
    }
    cJSON_Delete(j);
    return 0;
}

/* Follows an agent's output to its end; its exit code (128 when it did not exit by itself). */
static int follow(aios_client_params *cp, const char *id) {
    char path[256];
    snprintf(path, sizeof path, "/agents/%s/logs?follow=1", id);
    aios_client_params p = *cp;
    p.timeout_ms = 0; /* as long as the agent lives */
    aios_client *c = aios_client_new(&p);
    follow_state f = {.exit_code = 128};
    char *body = NULL;
    int status = 0, rc = aios_get_events(c, path, on_event, &f, &body, &status);
    aios_client_free(c);
    if (rc) fprintf(stderr, "aios: cannot reach the kernel at %s (is aiosd running?)\n", cp->url);
    else if (status != 200) fprintf(stderr, "aios: %s\n", body);
    free(body);
    return rc || status != 200 ? 1 : f.exit_code;
}

int cli_logs(aios_client_params *cp, int argc, char **argv) {
    bool f = argc == 2 && (!strcmp(argv[0], "-f") || !strcmp(argv[0], "--follow"));
    if (argc != 1 && !f) {
        usage(stderr);
        return 2;
    }
    const char *id = argv[argc - 1];
    if (f) return follow(cp, id) == 1 ? 1 : 0;
    char path[256];
    snprintf(path, sizeof path, "/agents/%s/logs", id);
    aios_client *c = aios_client_new(cp);
    char *body = NULL;
    int status = 0, rc = aios_get(c, path, &body, &status);
    aios_client_free(c);
    if (rc) fprintf(stderr, "aios: cannot reach the kernel at %s (is aiosd running?)\n", cp->url);
    else (status == 200 ? fputs(body, stdout) : fprintf(stderr, "aios: %s\n", body));
    free(body);
    return rc || status != 200 ? 1 : 0;
}

/* ---------- run ---------- */

static int limit_opt(cJSON *spec, const char *key, const char *v) {
    char *end;
    long n = strtol(v, &end, 10);
    if (end == v || *end) return -1;
    cJSON *lim = cJSON_GetObjectItemCaseSensitive(spec, "limits");
    if (!lim) lim = cJSON_AddObjectToObject(spec, "limits");
    cJSON_AddNumberToObject(lim, key, (double)n);
    return 0;
}

static cJSON *list_of(cJSON *spec, const char *key) {
    cJSON *l = cJSON_GetObjectItemCaseSensitive(spec, key);
    return l ? l : cJSON_AddArrayToObject(spec, key);
}

/* One option at argv[*i] into spec; -1 when it is not one. */
static int run_opt(cJSON *spec, int argc, char **argv, int *i, bool *follow_out) {
    static const char *const STR[][2] = {{"--name", "name"},       {"--group", "group"},     {"--task", "task"},
                                         {"--network", "network"}, {"--restart", "restart"}, {"--workdir", "workdir"}};
    static const char *const LIM[][2] = {
        {"--memory-mb", "memory_mb"}, {"--cpu-weight", "cpu_weight"}, {"--pids", "pids"}, {"--wall-s", "wall_s"}};
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    if (!strcmp(a, "-f") || !strcmp(a, "--follow")) return *follow_out = true, 0;
    if (!v) return -1;
    for (size_t k = 0; k < sizeof STR / sizeof STR[0]; k++)
        if (!strcmp(a, STR[k][0])) return cJSON_AddStringToObject(spec, STR[k][1], v), (*i)++, 0;
    for (size_t k = 0; k < sizeof LIM / sizeof LIM[0]; k++)
        if (!strcmp(a, LIM[k][0])) return (*i)++, limit_opt(spec, LIM[k][1], v);
    if (!strcmp(a, "--priority")) return (*i)++, cJSON_AddNumberToObject(spec, "priority", atof(v)), 0;
    if (!strcmp(a, "--ro")) return (*i)++, cJSON_AddItemToArray(list_of(spec, "ro_paths"), cJSON_CreateString(v)), 0;
    if (!strcmp(a, "--env")) {
        const char *eq = strchr(v, '=');
        if (!eq) return -1;
        cJSON *env = cJSON_GetObjectItemCaseSensitive(spec, "env");
        if (!env) env = cJSON_AddObjectToObject(spec, "env");
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)(eq - v), v);
        cJSON_AddStringToObject(env, key, eq + 1);
        return (*i)++, 0;
    }
    return -1;
}

int cli_run(aios_client_params *cp, int argc, char **argv) {
    cJSON *spec = cJSON_CreateObject();
    bool fol = false;
    int i = 0;
    for (; i < argc && strcmp(argv[i], "--") && argv[i][0] == '-'; i++)
        if (run_opt(spec, argc, argv, &i, &fol)) {
            cJSON_Delete(spec);
            usage(stderr);
            return 2;
        }
    char dir[PATH_MAX];
    if (i < argc && !strcmp(argv[i], "--") && i + 1 < argc) {
        cJSON *cmd = cJSON_AddArrayToObject(spec, "command");
        for (i++; i < argc; i++) cJSON_AddItemToArray(cmd, cJSON_CreateString(argv[i]));
    } else if (i + 1 == argc && realpath(argv[i], dir)) {
        cJSON_AddStringToObject(spec, "package_dir", dir);
    } else {
        if (i + 1 == argc) fprintf(stderr, "aios: %s: no such directory\n", argv[i]);
        else usage(stderr);
        cJSON_Delete(spec);
        return 2;
    }
    char *txt = cJSON_PrintUnformatted(spec);
    cJSON_Delete(spec);
    aios_client *c = aios_client_new(cp);
    char *body = NULL;
    int status = 0, rc = aios_post(c, "/agents", txt, &body, &status);
    aios_client_free(c);
    free(txt);
    cJSON *j = !rc && status == 201 ? cJSON_Parse(body) : NULL;
    if (rc) fprintf(stderr, "aios: cannot reach the kernel at %s (is aiosd running?)\n", cp->url);
    else if (!j) fprintf(stderr, "aios: %s\n", body);
    else printf("%s\n", cli_str(j, "id"));
    free(body);
    int out = j ? 0 : 1;
    if (j && fol) {
        fflush(stdout);
        out = follow(cp, cli_str(j, "id"));
    }
    cJSON_Delete(j);
    return out;
}

/* ---------- ps, signals, inspect ---------- */

static void age(double started, char *out, size_t cap) {
    double s = (double)time(NULL) - started;
    if (s < 120) snprintf(out, cap, "%.0fs", s < 0 ? 0 : s);
    else if (s < 7200) snprintf(out, cap, "%.0fm", s / 60);
    else snprintf(out, cap, "%.0fh", s / 3600);
}

int cli_ps(aios_client_params *cp, int argc, char **argv) {
    if (argc == 1 && !strcmp(argv[0], "--json")) return request_print(cp, "/agents", NULL, true);
    if (argc) {
        usage(stderr);
        return 2;
    }
    cJSON *j = cli_get_json(cp, "/agents", false);
    if (!j) return 1;
    printf("%-16s %-20s %-8s %7s %8s %9s %8s %8s %6s  %s\n", "ID", "NAME", "STATE", "PID", "CPU_S", "RSS_KB", "SYSCALLS",
           "TOKENS", "AGE", "COMMAND");
    const cJSON *g;
    cJSON_ArrayForEach(g, cJSON_GetObjectItemCaseSensitive(j, "agents")) {
        char when[16], cmd[80] = "";
        age(cli_num(g, "started"), when, sizeof when);
        const cJSON *a;
        size_t len = 0;
        cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(g, "command")) if (len < sizeof cmd - 1) len +=
            (size_t)snprintf(cmd + len, sizeof cmd - len, "%s%s", len ? " " : "", cJSON_GetStringValue(a));
        printf("%-16s %-20.20s %-8s %7.0f %8.2f %9.0f %8.0f %8.0f %6s  %s\n", cli_str(g, "id"), cli_str(g, "name"),
               cli_str(g, "state"), cli_num(g, "pid"), cli_num(g, "cpu_s"), cli_num(g, "rss_kb"), cli_num(g, "syscalls"),
               cli_num(g, "tokens"), when, cmd);
    }
    cJSON_Delete(j);
    return 0;
}

int cli_signal(aios_client_params *cp, const char *op, int argc, char **argv) {
    if (argc != 1) {
        usage(stderr);
        return 2;
    }
    char path[256];
    snprintf(path, sizeof path, "/agents/%s%s%s", argv[0], op ? "/" : "", op ? op : "");
    return op ? request_print(cp, path, "{}", true) : request_print(cp, path, NULL, true);
}
