/*
 * demo_agents.c - the `make run` demo: four agents (the Cerebrum examples' personas plus
 * one more) chat with the kernel at the same time, three turns each, through the AIOS
 * /query syscall. Prints each answer with the kernel's timings for that syscall. Then each
 * agent uses the built-in tools: the model picks a call (action_type call_tool over
 * aios/calculator and aios/time; the kernel runs it), and the agent saves its answers with
 * aios/write_file while reading the clock (two calls of one tool query, run in parallel)
 * and lists them with aios/list_files.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "aios/aios.h"

typedef struct agent {
    const char *name, *system, *turns[3], *tool_task;
} agent;

static const agent AGENTS[] = {
    {"language_tutor",
     "You are a friendly language tutor. Answer briefly.",
     {"How do I say 'good morning' in Spanish?", "And in French?", "Give me one tip to remember both."},
     "What time is it now?"},
    {"tech_support_agent",
     "You are a patient tech support agent. Answer briefly.",
     {"My laptop is slow. What should I check first?", "How do I see which program uses the most memory?",
      "Thanks. Anything else?"},
     "How many megabytes are 3 gigabytes? Compute 3 * 1024."},
    {"cocktail_mixlogist",
     "You are a creative cocktail expert. Answer briefly.",
     {"Suggest a refreshing summer drink.", "Make it without alcohol.", "What glass should I serve it in?"},
     "How much juice for 4 glasses of 150 ml each? Compute 4 * 150."},
    {"travel_planner",
     "You are a concise travel planner. Answer briefly.",
     {"Plan one day in Paris.", "Where should I eat lunch?", "What should I skip?"},
     "What is the date today?"},
};
#define N_AGENTS (int)(sizeof AGENTS / sizeof AGENTS[0])

static pthread_mutex_t print_mu = PTHREAD_MUTEX_INITIALIZER;
static int max_tokens = 48;

/* Prints "  name -> result" for each entry of the answer's tool_results. */
static void print_tool_results(const char *agent, const char *what, const char *body, int status) {
    cJSON *root = cJSON_Parse(body ? body : "");
    const cJSON *resp = cJSON_GetObjectItemCaseSensitive(root, "response");
    const cJSON *results = cJSON_GetObjectItemCaseSensitive(resp, "tool_results");
    pthread_mutex_lock(&print_mu);
    printf("[%s] %s  (HTTP %d)\n", agent, what, status);
    const cJSON *r;
    cJSON_ArrayForEach(r, results) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(r, "name"), *res = cJSON_GetObjectItemCaseSensitive(r, "result");
        char *txt = cJSON_IsString(res) ? NULL : cJSON_PrintUnformatted(res);
        printf("  %s -> %.160s\n", cJSON_IsString(name) ? name->valuestring : "?",
               cJSON_IsString(res) ? res->valuestring
                   : txt           ? txt
                                   : "");
        free(txt);
    }
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(resp, "response_message");
    if (!cJSON_GetArraySize(results)) printf("  %.300s\n", cJSON_IsString(msg) ? msg->valuestring : body ? body : "(no answer)");
    printf("\n");
    fflush(stdout);
    pthread_mutex_unlock(&print_mu);
    cJSON_Delete(root);
}

/* POSTs a /query body built as JSON and prints its tool results. */
static void post_query(aios_client *c, const char *agent, const char *what, cJSON *q) {
    char *json = cJSON_PrintUnformatted(q), *body = NULL;
    int status = 0;
    if (json) aios_post(c, "/query", json, &body, &status);
    print_tool_results(agent, what, body, status);
    free(json);
    free(body);
}

static cJSON *envelope(const char *agent, const char *type, cJSON **qd) {
    cJSON *q = cJSON_CreateObject();
    cJSON_AddStringToObject(q, "agent_name", agent);
    cJSON_AddStringToObject(q, "query_type", type);
    *qd = cJSON_AddObjectToObject(q, "query_data");
    return q;
}

static cJSON *tool_call(cJSON *calls, const char *name) {
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "name", name);
    cJSON_AddItemToArray(calls, t);
    return cJSON_AddObjectToObject(t, "parameters");
}

/* The model picks a tool for the agent's task (the kernel fills the bare references from
 * its tool table and runs the call); then the agent saves and lists its notes directly. */
static void use_tools(aios_client *c, const agent *a, char *const answers[3]) {
    cJSON *qd, *q = envelope(a->name, "llm", &qd);
    cJSON *msgs = cJSON_AddArrayToObject(qd, "messages"), *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "user");
    cJSON_AddStringToObject(m, "content", a->tool_task);
    cJSON_AddItemToArray(msgs, m);
    cJSON *tools = cJSON_AddArrayToObject(qd, "tools");
    static const char *const OFFER[] = {"aios/calculator", "aios/time"};
    for (int i = 0; i < 2; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "type", "function");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(t, "function"), "name", OFFER[i]);
        cJSON_AddItemToArray(tools, t);
    }
    cJSON_AddStringToObject(qd, "action_type", "call_tool");
    cJSON_AddNumberToObject(qd, "temperature", 0);
    cJSON_AddNumberToObject(qd, "max_new_tokens", 96);
    char what[256];
    snprintf(what, sizeof what, "call_tool: \"%s\" (the model picks, the kernel runs)", a->tool_task);
    post_query(c, a->name, what, q);
    cJSON_Delete(q);

    char notes[4096] = "";
    for (int t = 0; t < 3; t++)
        snprintf(notes + strlen(notes), sizeof notes - strlen(notes), "Q: %s\nA: %s\n", a->turns[t],
                 answers[t] ? answers[t] : "");
    q = envelope(a->name, "tool", &qd);
    cJSON *calls = cJSON_AddArrayToObject(qd, "tool_calls");
    cJSON *p = tool_call(calls, "aios/write_file");
    cJSON_AddStringToObject(p, "file_path", "notes/chat.txt");
    cJSON_AddStringToObject(p, "content", notes);
    tool_call(calls, "aios/time");
    post_query(c, a->name, "tool query: save the chat and read the clock (two calls, run in parallel)", q);
    cJSON_Delete(q);
    q = envelope(a->name, "tool", &qd);
    cJSON_AddStringToObject(tool_call(cJSON_AddArrayToObject(qd, "tool_calls"), "aios/list_files"), "dir_path", "notes");
    post_query(c, a->name, "tool query: list the notes", q);
    cJSON_Delete(q);
}

static void *run_agent(void *arg) {
    const agent *a = arg;
    aios_client_params cp = aios_client_default_params();
    aios_client *c = aios_client_new(&cp);
    aios_message hist[8];
    char *answers[3] = {0};
    int n = 0;
    hist[n++] = (aios_message){"system", a->system};
    for (int t = 0; t < 3; t++) {
        hist[n++] = (aios_message){"user", a->turns[t]};
        aios_chat_opts o = aios_chat_default_opts();
        o.max_tokens = max_tokens;
        o.temperature = 0.7;
        aios_chat_result r;
        int rc = aios_query_chat(c, a->name, hist, n, &o, &r);
        pthread_mutex_lock(&print_mu);
        if (rc) printf("[%s] turn %d: ERROR %d: %s\n", a->name, t + 1, r.http_status, r.error);
        else
            printf("[%s] turn %d  (waited %.2fs, first token %.2fs, turnaround %.2fs, %d+%d tokens)\n  Q: %s\n  A: %s\n\n",
                   a->name, t + 1, r.waiting_s, r.ttft_s, r.turnaround_s, r.prompt_tokens, r.completion_tokens, a->turns[t],
                   r.text);
        fflush(stdout);
        pthread_mutex_unlock(&print_mu);
        answers[t] = r.text;
        r.text = NULL;
        hist[n++] = (aios_message){"assistant", answers[t] ? answers[t] : ""};
        if (rc) break;
    }
    use_tools(c, a, answers);
    for (int t = 0; t < 3; t++) free(answers[t]);
    aios_client_free(c);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) max_tokens = atoi(argv[1]) > 0 ? atoi(argv[1]) : max_tokens;
    pthread_t th[N_AGENTS];
    printf("== %d agents chatting with aiosd at once (3 turns each, up to %d tokens per answer), then using tools ==\n\n",
           N_AGENTS, max_tokens);
    for (int i = 0; i < N_AGENTS; i++) pthread_create(&th[i], NULL, run_agent, (void *)&AGENTS[i]);
    for (int i = 0; i < N_AGENTS; i++) pthread_join(th[i], NULL);
    return 0;
}
