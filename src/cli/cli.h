/*
 * cli.h - shared by the `aios` command line's files: aios.c (the commands about the kernel,
 * its models, identities and approvals) and cli_agents.c (agent processes).
 */
#ifndef AIOS_CLI_H
#define AIOS_CLI_H

#include <stdbool.h>
#include <stdio.h>
#include <cjson/cJSON.h>
#include "aios/aios.h"

void usage(FILE *f);
/* GETs path (post NULL) or POSTs the JSON text post to it, and prints the answer
 * (pretty-printed JSON when pretty); 0 on a 2xx answer. */
int request_print(aios_client_params *cp, const char *path, const char *post, bool pretty);
/* POSTs body (taken) to path and prints the answer. */
int post_print(aios_client_params *cp, const char *path, cJSON *body);
/* GET path into a parsed JSON answer (caller frees); NULL when it is not a 200 JSON answer,
 * after saying why on stderr unless quiet. */
cJSON *cli_get_json(aios_client_params *cp, const char *path, bool quiet);
/* Field k of o: its string ("" when absent), its number (0 when absent). */
const char *cli_str(const cJSON *o, const char *k);
double cli_num(const cJSON *o, const char *k);

/* cli_agents.c */
int cli_run(aios_client_params *cp, int argc, char **argv);
int cli_ps(aios_client_params *cp, int argc, char **argv);
int cli_logs(aios_client_params *cp, int argc, char **argv);
/* op "stop" | "cont" | "kill", or NULL: inspect */
int cli_signal(aios_client_params *cp, const char *op, int argc, char **argv);
/* top.c: the live view (--once: one frame as text) */
int cli_top(aios_client_params *cp, int argc, char **argv);

#endif
