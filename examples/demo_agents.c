/*
 * demo_agents.c - the `make run` demo: four agents (the Cerebrum examples' personas plus
 * one more) chat with the kernel at the same time, three turns each, through the AIOS
 * /query syscall. Prints each answer with the kernel's timings for that syscall.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "aios/aios.h"

typedef struct agent {
    const char *name, *system, *turns[3];
} agent;

static const agent AGENTS[] = {
    {"language_tutor", "You are a friendly language tutor. Answer briefly.",
     {"How do I say 'good morning' in Spanish?", "And in French?", "Give me one tip to remember both."}},
    {"tech_support_agent", "You are a patient tech support agent. Answer briefly.",
     {"My laptop is slow. What should I check first?", "How do I see which program uses the most memory?", "Thanks. Anything else?"}},
    {"cocktail_mixlogist", "You are a creative cocktail expert. Answer briefly.",
     {"Suggest a refreshing summer drink.", "Make it without alcohol.", "What glass should I serve it in?"}},
    {"travel_planner", "You are a concise travel planner. Answer briefly.",
     {"Plan one day in Paris.", "Where should I eat lunch?", "What should I skip?"}},
};
#define N_AGENTS (int)(sizeof AGENTS / sizeof AGENTS[0])

static pthread_mutex_t print_mu = PTHREAD_MUTEX_INITIALIZER;
static int max_tokens = 48;

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
        else printf("[%s] turn %d  (waited %.2fs, first token %.2fs, turnaround %.2fs, %d+%d tokens)\n  Q: %s\n  A: %s\n\n",
                    a->name, t + 1, r.waiting_s, r.ttft_s, r.turnaround_s, r.prompt_tokens, r.completion_tokens,
                    a->turns[t], r.text);
        fflush(stdout);
        pthread_mutex_unlock(&print_mu);
        answers[t] = r.text;
        r.text = NULL;
        hist[n++] = (aios_message){"assistant", answers[t] ? answers[t] : ""};
        if (rc) break;
    }
    for (int t = 0; t < 3; t++) free(answers[t]);
    aios_client_free(c);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) max_tokens = atoi(argv[1]) > 0 ? atoi(argv[1]) : max_tokens;
    pthread_t th[N_AGENTS];
    printf("== %d agents chatting with aiosd at once (3 turns each, up to %d tokens per answer) ==\n\n", N_AGENTS, max_tokens);
    for (int i = 0; i < N_AGENTS; i++) pthread_create(&th[i], NULL, run_agent, (void *)&AGENTS[i]);
    for (int i = 0; i < N_AGENTS; i++) pthread_join(th[i], NULL);
    return 0;
}
