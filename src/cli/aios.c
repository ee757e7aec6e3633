/*
 * aios.c - the `aios` command line: talk to a running aiosd.
 *   aios chat [--model M] [--max-tokens N] [--temperature T] [--agent NAME] "prompt"
 *   aios status | aios models [load|unload NAME] | aios metrics | aios tools
 *   aios agent create NAME [--group G] [--keep-data] | aios agent revoke NAME | aios agent list
 *   aios approvals | aios approve ID | aios deny ID
 *   aios run | ps | logs | stop | cont | kill | inspect: agent processes (cli_agents.c)
 *   aios top: the live view (top.c)
 * The token for enforce mode (an identity of the admin group) comes from --token or $AIOS_TOKEN.
 * The kernel URL comes from --url or $AIOS_URL (default http://127.0.0.1:8000).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <cjson/cJSON.h>
#include "aios/aios.h"
#include "aios/version.h"
#include "cli.h"

void usage(FILE *f) {
    fprintf(f,
            "usage: aios [--url URL] <command> | aios --version\n"
            "  chat [--model M] [--max-tokens N] [--temperature T] [--seed S] [--agent NAME] PROMPT\n"
            "                     stream an answer from the kernel\n"
            "  status             kernel status (models, queue, counters)\n"
            "  models [--json]    models served: backend, state (ready, loading, unloaded, down), load, aliases\n"
            "  models load NAME | models unload NAME\n"
            "                     load or unload a model at run time (admin; unloading lets its work finish)\n"
            "  metrics            Prometheus metrics\n"
            "  tools              tools the kernel serves (manifests, MCP servers, built-ins)\n"
            "  agent create NAME [--group G] [--keep-data]\n"
            "                                  new identity; prints its token once (a revoked NAME's data is\n"
            "                                  deleted unless --keep-data hands it to the new identity)\n"
            "  agent revoke NAME | agent list\n"
            "  approvals          calls of irreversible tools waiting for a decision\n"
            "  approve ID | deny ID\n"
            "  run [OPTIONS] (DIR | -- COMMAND [ARG...])\n"
            "                     start an agent process in the kernel's sandbox (docs/agents.md): DIR is a\n"
            "                     package (agent.json, or Cerebrum's config.json + agent.py); options:\n"
            "                     --name N --group G --priority P --task T --network kernel-only|none|full\n"
            "                     --memory-mb N --cpu-weight N --pids N --wall-s N --restart on-failure\n"
            "                     --env K=V --ro PATH --workdir DIR -f (follow its output to the end)\n"
            "  ps [--json]        agents the kernel runs or ran\n"
            "  logs [-f] ID       an agent's output (-f: follow it live)\n"
            "  stop ID | cont ID | kill ID\n"
            "                     suspend (its generation parks), resume, end an agent\n"
            "  inspect ID         an agent's whole record\n"
            "  top [--once]       live view of models and agents (P/M/T/N sort, s stop, c cont, k kill, q quit)\n");
}

static int print_piece(const char *p, size_t n, void *ud) {
    (void)ud;
    fwrite(p, 1, n, stdout);
    fflush(stdout);
    return 0;
}

static int cmd_chat(aios_client_params *cp, int argc, char **argv) {
    aios_chat_opts o = aios_chat_default_opts();
    const char *prompt = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--model") && i + 1 < argc) o.model = argv[++i];
        else if (!strcmp(a, "--max-tokens") && i + 1 < argc) o.max_tokens = atoi(argv[++i]);
        else if (!strcmp(a, "--temperature") && i + 1 < argc) o.temperature = atof(argv[++i]);
        else if (!strcmp(a, "--seed") && i + 1 < argc) o.seed = atol(argv[++i]);
        else if (!strcmp(a, "--agent") && i + 1 < argc) cp->token = argv[++i];
        else if (!prompt) prompt = a;
        else {
            usage(stderr);
            return 2;
        }
    }
    if (!prompt) {
        usage(stderr);
        return 2;
    }
    aios_client *c = aios_client_new(cp);
    aios_message m = {"user", prompt};
    aios_chat_result r;
    int rc = aios_chat(c, &m, 1, &o, print_piece, NULL, &r);
    printf("\n");
    if (rc) fprintf(stderr, "aios: error (%d): %s\n", r.http_status, r.error);
    else
        fprintf(stderr, "[%d prompt + %d completion tokens, waited %.3fs, first token %.3fs, total %.3fs, %s]\n", r.prompt_tokens,
                r.completion_tokens, r.waiting_s, r.ttft_s, r.turnaround_s, r.finish_reason);
    aios_chat_result_free(&r);
    aios_client_free(c);
    return rc ? 1 : 0;
}

/* GETs path (post NULL) or POSTs the JSON text post to it, and prints the answer
 * (pretty-printed JSON when pretty); 0 on a 2xx answer. */
int request_print(aios_client_params *cp, const char *path, const char *post, bool pretty) {
    aios_client *c = aios_client_new(cp);
    char *body = NULL;
    int status = 0;
    int rc = post ? aios_post(c, path, post, &body, &status) : aios_get(c, path, &body, &status);
    if (rc) fprintf(stderr, "aios: cannot reach the kernel at %s (is aiosd running?)\n", cp->url);
    else {
        cJSON *j = pretty ? cJSON_Parse(body) : NULL;
        char *p = j ? cJSON_Print(j) : NULL;
        printf("%s\n", p ? p : body);
        free(p);
        cJSON_Delete(j);
    }
    free(body);
    aios_client_free(c);
    return rc || status / 100 != 2 ? 1 : 0;
}

static int cmd_get(aios_client_params *cp, const char *path, bool pretty) { return request_print(cp, path, NULL, pretty); }

/* POSTs body (taken) to path and prints the answer. */
cJSON *cli_get_json(aios_client_params *cp, const char *path, bool quiet) {
    aios_client *c = aios_client_new(cp);
    char *body = NULL;
    int status = 0, rc = aios_get(c, path, &body, &status);
    aios_client_free(c);
    cJSON *j = rc || status != 200 ? NULL : cJSON_Parse(body);
    if (!quiet && rc) fprintf(stderr, "aios: cannot reach the kernel at %s (is aiosd running?)\n", cp->url);
    else if (!quiet && !j) fprintf(stderr, "aios: %s\n", body);
    free(body);
    return j;
}

const char *cli_str(const cJSON *o, const char *k) {
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
    return s ? s : "";
}

double cli_num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

int post_print(aios_client_params *cp, const char *path, cJSON *body) {
    char *txt = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    int rc = txt ? request_print(cp, path, txt, true) : 1;
    free(txt);
    return rc;
}

/* `aios models`: one line per model (name, backend, state, load, aliases) from /core/llms/list;
 * --json prints the answer as it is. */

static int cmd_models(aios_client_params *cp, int argc, char **argv) {
    if (argc == 1 && !strcmp(argv[0], "--json")) return cmd_get(cp, "/core/llms/list", true);
    if (argc == 2 && (!strcmp(argv[0], "load") || !strcmp(argv[0], "unload"))) { /* admin */
        cJSON *b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "name", argv[1]);
        return post_print(cp, !strcmp(argv[0], "load") ? "/models/load" : "/models/unload", b);
    }
    if (argc) {
        usage(stderr);
        return 2;
    }
    aios_client *c = aios_client_new(cp);
    char *body = NULL;
    int status = 0, rc = aios_get(c, "/core/llms/list", &body, &status);
    aios_client_free(c);
    cJSON *j = rc ? NULL : cJSON_Parse(body);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "llms");
    if (rc) fprintf(stderr, "aios: cannot reach the kernel at %s (is aiosd running?)\n", cp->url);
    else if (status / 100 != 2 || !cJSON_IsArray(list)) fprintf(stderr, "aios: %s\n", body);
    else {
        printf("%-24s %-10s %-8s %6s %6s %6s  %s\n", "NAME", "BACKEND", "STATE", "ACTIVE", "QUEUED", "MAX", "ALIASES");
        for (const cJSON *m = list->child; m; m = m->next) {
            char *aliases = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(m, "aliases"));
            const cJSON *reason = cJSON_GetObjectItemCaseSensitive(m, "reason");
            printf("%-24s %-10s %-8s %6d %6d %6d  %s\n", cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "name")),
                   cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "backend")),
                   cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "state")),
                   (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(m, "active")),
                   (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(m, "queued")),
                   (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(m, "max_active")), aliases ? aliases : "[]");
            if (cJSON_IsString(reason)) printf("    %s\n", reason->valuestring);
            free(aliases);
        }
    }
    int ok = !rc && status / 100 == 2 && cJSON_IsArray(list);
    cJSON_Delete(j);
    free(body);
    return ok ? 0 : 1;
}

static int cmd_agent(aios_client_params *cp, int argc, char **argv) {
    if (argc >= 1 && !strcmp(argv[0], "list")) return cmd_get(cp, "/admin/agents", true);
    if (argc < 2 || (strcmp(argv[0], "create") && strcmp(argv[0], "revoke"))) {
        usage(stderr);
        return 2;
    }
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "name", argv[1]);
    if (!strcmp(argv[0], "revoke")) return post_print(cp, "/admin/agents/revoke", b);
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--group") && i + 1 < argc) cJSON_AddStringToObject(b, "group", argv[++i]);
        else if (!strcmp(argv[i], "--keep-data")) cJSON_AddBoolToObject(b, "keep_data", true);
        else {
            cJSON_Delete(b);
            usage(stderr);
            return 2;
        }
    }
    return post_print(cp, "/admin/agents", b);
}

static int cmd_decide(aios_client_params *cp, const char *decision, int argc, char **argv) {
    char *end = NULL;
    long id = argc == 1 ? strtol(argv[0], &end, 10) : 0;
    if (argc != 1 || !end || *end || id <= 0) {
        usage(stderr);
        return 2;
    }
    cJSON *b = cJSON_CreateObject();
    cJSON_AddNumberToObject(b, "id", (double)id);
    cJSON_AddStringToObject(b, "decision", decision);
    return post_print(cp, "/admin/approvals/decide", b);
}

int main(int argc, char **argv) {
    aios_client_params cp = aios_client_default_params();
    int i = 1;
    if (getenv("AIOS_TOKEN")) cp.token = getenv("AIOS_TOKEN");
    for (bool more = true; more && i + 1 < argc;) {
        more = false;
        if (!strcmp(argv[i], "--url")) {
            cp.url = argv[i + 1];
            i += 2;
            more = true;
        } else if (!strcmp(argv[i], "--token")) {
            cp.token = argv[i + 1];
            i += 2;
            more = true;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[i++];
    if (!strcmp(cmd, "--version")) {
        printf("aios %s (git %s)\n", AIOS_VERSION, AIOS_GIT_REV);
        return 0;
    }
    if (!strcmp(cmd, "chat")) return cmd_chat(&cp, argc - i, argv + i);
    if (!strcmp(cmd, "status")) return cmd_get(&cp, "/status", true);
    if (!strcmp(cmd, "models")) return cmd_models(&cp, argc - i, argv + i);
    if (!strcmp(cmd, "metrics")) return cmd_get(&cp, "/metrics", false);
    if (!strcmp(cmd, "tools")) return cmd_get(&cp, "/v1/tools", true);
    if (!strcmp(cmd, "agent")) return cmd_agent(&cp, argc - i, argv + i);
    if (!strcmp(cmd, "run")) return cli_run(&cp, argc - i, argv + i);
    if (!strcmp(cmd, "top")) return cli_top(&cp, argc - i, argv + i);
    if (!strcmp(cmd, "ps")) return cli_ps(&cp, argc - i, argv + i);
    if (!strcmp(cmd, "logs")) return cli_logs(&cp, argc - i, argv + i);
    if (!strcmp(cmd, "inspect")) return cli_signal(&cp, NULL, argc - i, argv + i);
    if (!strcmp(cmd, "stop") || !strcmp(cmd, "cont") || !strcmp(cmd, "kill")) return cli_signal(&cp, cmd, argc - i, argv + i);
    if (!strcmp(cmd, "approvals")) return cmd_get(&cp, "/admin/approvals", true);
    if (!strcmp(cmd, "approve")) return cmd_decide(&cp, "approve", argc - i, argv + i);
    if (!strcmp(cmd, "deny")) return cmd_decide(&cp, "deny", argc - i, argv + i);
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return 2;
}
