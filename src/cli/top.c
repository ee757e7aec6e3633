/*
 * top.c - `aios top`: a live view of the kernel, refreshed every second (ncurses): the models
 * (state, active / queued, tokens/s, KV used and cached) and the agents the kernel runs (state,
 * priority, CPU, resident memory, tokens/s, syscalls, time in run queues, KV cells held, tools
 * run and running now, budget used), with totals. Keys: arrows select, P / M / T / N sort by CPU, memory, tokens/s, name;
 * s stops, c continues, k kills the selected agent (s and k ask first); q quits.
 * `aios top --once` prints one frame as text (no terminal needed).
 *
 * A frame is a list of text lines built from GET /status and GET /agents; rates are the
 * differences between two frames.
 */
#include <curses.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "cli.h"

#define MAX_ROWS 512
#define LINE 256

typedef struct row {
    char id[32], name[64], state[16];
    double prio, cpu_s, rss_kb, tokens, syscalls, wait_s, tools, kv, tools_running;
    double cpu_pct, tok_s; /* from the previous frame */
    char budget[24];
} row;

typedef struct top_state {
    aios_client_params *cp;
    row rows[MAX_ROWS], prev[MAX_ROWS];
    int n, n_prev;
    double t, t_prev;
    char sort; /* 'P' cpu, 'M' memory, 'T' tokens/s, 'N' name */
    int sel;   /* index in rows (sorted) */
    char lines[MAX_ROWS + 32][LINE];
    int n_lines, first_row; /* the line of rows[0] */
    char status[LINE];      /* the bottom line: keys, or a question, or what happened */
    double model_tokens_prev[16];
} top_state;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void add_line(top_state *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_line(top_state *s, const char *fmt, ...) {
    if (s->n_lines >= (int)(sizeof s->lines / sizeof s->lines[0])) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->lines[s->n_lines++], LINE, fmt, ap);
    va_end(ap);
}

/* The agent's most used budget as "tpm 40%", from /status's budgets. */
static void budget_of(const cJSON *budgets, const char *name, char *out, size_t cap) {
    static const char *const K[][2] = {{"tokens_per_minute", "tpm"}, {"tokens_per_day", "tpd"}, {"requests_per_minute", "rpm"}};
    double best = -1;
    snprintf(out, cap, "-");
    const cJSON *b;
    cJSON_ArrayForEach(b, budgets) {
        if (strcmp(cli_str(b, "agent"), name)) continue;
        for (int k = 0; k < 3; k++) {
            const cJSON *l = cJSON_GetObjectItemCaseSensitive(b, K[k][0]);
            double lim = cli_num(l, "limit"), pct = lim > 0 ? 100 * cli_num(l, "used") / lim : -1;
            if (l && pct > best) {
                best = pct;
                snprintf(out, cap, "%s %.0f%%", K[k][1], pct);
            }
        }
    }
}

static const row *prev_of(const top_state *s, const char *id) {
    for (int i = 0; i < s->n_prev; i++)
        if (!strcmp(s->prev[i].id, id)) return &s->prev[i];
    return NULL;
}

static int cmp_rows(const void *x, const void *y, void *ctx) {
    const row *a = x, *b = y;
    char k = *(const char *)ctx;
    double d = k == 'P' ? b->cpu_pct - a->cpu_pct : k == 'M' ? b->rss_kb - a->rss_kb : k == 'T' ? b->tok_s - a->tok_s : 0;
    if (d != 0) return d > 0 ? 1 : -1;
    return strcmp(a->name, b->name);
}

static void load_agents(top_state *s, const cJSON *agents, const cJSON *budgets) {
    memcpy(s->prev, s->rows, sizeof s->rows);
    s->n_prev = s->n;
    s->n = 0;
    double dt = s->t - s->t_prev;
    const cJSON *g;
    cJSON_ArrayForEach(g, cJSON_GetObjectItemCaseSensitive(agents, "agents")) {
        if (s->n == MAX_ROWS) break;
        row *r = &s->rows[s->n++];
        memset(r, 0, sizeof *r);
        snprintf(r->id, sizeof r->id, "%s", cli_str(g, "id"));
        snprintf(r->name, sizeof r->name, "%s", cli_str(g, "name"));
        snprintf(r->state, sizeof r->state, "%s", cli_str(g, "state"));
        r->prio = cli_num(g, "priority");
        r->cpu_s = cli_num(g, "cpu_s");
        r->rss_kb = cli_num(g, "rss_kb");
        r->tokens = cli_num(g, "tokens");
        r->syscalls = cli_num(g, "syscalls");
        r->wait_s = cli_num(g, "wait_s");
        r->tools = cli_num(g, "tools_run");
        r->kv = cli_num(g, "kv_cells");
        r->tools_running = cli_num(g, "tools_running");
        budget_of(budgets, r->name, r->budget, sizeof r->budget);
        const row *p = prev_of(s, r->id);
        if (p && dt > 0) {
            r->cpu_pct = 100 * (r->cpu_s - p->cpu_s) / dt;
            r->tok_s = (r->tokens - p->tokens) / dt;
        }
    }
    /* finished agents last, in their listed order (newest first) */
    row live[MAX_ROWS], done[MAX_ROWS];
    int nl = 0, nd = 0;
    for (int i = 0; i < s->n; i++) {
        bool alive =
            !strcmp(s->rows[i].state, "running") || !strcmp(s->rows[i].state, "stopped") || !strcmp(s->rows[i].state, "starting");
        if (alive) live[nl++] = s->rows[i];
        else done[nd++] = s->rows[i];
    }
    qsort_r(live, (size_t)nl, sizeof *live, cmp_rows, &s->sort);
    memcpy(s->rows, live, (size_t)nl * sizeof *live);
    memcpy(s->rows + nl, done, (size_t)nd * sizeof *done);
    if (s->sel >= s->n) s->sel = s->n - 1;
    if (s->sel < 0) s->sel = 0;
}

static void model_lines(top_state *s, const cJSON *status, double dt) {
    add_line(s, "%-20s %-9s %6s %6s %8s %9s %9s", "MODEL", "STATE", "ACTIVE", "QUEUED", "TOK/S", "KV_USED", "KV_CACHED");
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(status, "llms")) {
        double tok = cli_num(m, "completion_tokens"),
               rate = i < 16 && dt > 0 && s->model_tokens_prev[i] > 0 ? (tok - s->model_tokens_prev[i]) / dt : 0;
        if (i < 16) s->model_tokens_prev[i] = tok;
        add_line(s, "%-20.20s %-9s %6.0f %6.0f %8.1f %9.0f %9.0f", cli_str(m, "name"), cli_str(m, "state"), cli_num(m, "active"),
                 cli_num(m, "queued"), rate, cli_num(m, "kv_used"), cli_num(m, "kv_cached"));
        i++;
    }
}

/* A frame: GET /status and /agents into s->lines; false when the kernel does not answer. */
static bool frame(top_state *s) {
    cJSON *status = cli_get_json(s->cp, "/status", true), *agents = cli_get_json(s->cp, "/agents", true);
    s->n_lines = 0;
    if (!status || !agents) {
        add_line(s, "aios top: no answer from the kernel at %s (is aiosd running? enforce mode needs an admin --token)",
                 s->cp->url);
        cJSON_Delete(status);
        cJSON_Delete(agents);
        return false;
    }
    s->t_prev = s->t;
    s->t = now_s();
    double dt = s->t_prev > 0 ? s->t - s->t_prev : 0;
    load_agents(s, agents, cJSON_GetObjectItemCaseSensitive(status, "budgets"));
    int alive = 0, stopped = 0;
    double tok = 0, cpu = 0, rss = 0;
    for (int i = 0; i < s->n; i++) {
        alive += !strcmp(s->rows[i].state, "running");
        stopped += !strcmp(s->rows[i].state, "stopped");
        tok += s->rows[i].tok_s, cpu += s->rows[i].cpu_pct, rss += s->rows[i].rss_kb;
    }
    add_line(s, "aiosd %s  sort: %s  up %.0fs  agents: %d running, %d stopped, %d in the table", s->cp->url,
             s->sort == 'P'       ? "cpu"
                 : s->sort == 'M' ? "memory"
                 : s->sort == 'T' ? "tokens/s"
                                  : "name",
             cli_num(status, "uptime_s"), alive, stopped, s->n);
    add_line(s, "%s", "");
    model_lines(s, status, dt);
    add_line(s, "%s", "");
    add_line(s, "%-16s %-18s %-8s %4s %6s %8s %7s %8s %8s %7s %5s %3s %9s", "ID", "NAME", "STATE", "PRIO", "CPU%", "RSS_MB",
             "TOK/S", "SYSCALLS", "WAIT_S", "KV", "TOOLS", "RUN", "BUDGET");
    s->first_row = s->n_lines;
    for (int i = 0; i < s->n; i++) {
        const row *r = &s->rows[i];
        char prio[8];
        snprintf(prio, sizeof prio, r->prio < 0 ? "-" : "%.0f", r->prio);
        add_line(s, "%-16s %-18.18s %-8s %4s %6.1f %8.1f %7.1f %8.0f %8.2f %7.0f %5.0f %3.0f %9s", r->id, r->name, r->state, prio,
                 r->cpu_pct, r->rss_kb / 1024, r->tok_s, r->syscalls, r->wait_s, r->kv, r->tools, r->tools_running, r->budget);
    }
    add_line(s, "%-16s %-18s %-8s %4s %6.1f %8.1f %7.1f", "TOTAL", "", "", "", cpu, rss / 1024, tok);
    cJSON_Delete(status);
    cJSON_Delete(agents);
    return true;
}

/* ---------- the terminal ---------- */

static void draw(top_state *s) {
    erase();
    int h = LINES, w = COLS;
    for (int i = 0; i < s->n_lines && i < h - 1; i++) {
        bool sel = s->n && i == s->first_row + s->sel;
        if (sel) attron(A_REVERSE);
        else if (i == 0 || i == s->first_row - 1 || (i > 0 && !strncmp(s->lines[i], "MODEL", 5))) attron(A_BOLD);
        mvaddnstr(i, 0, s->lines[i], w);
        attroff(A_REVERSE | A_BOLD);
    }
    mvaddnstr(h - 1, 0, s->status, w);
    refresh();
}

static void act(top_state *s, const char *op) {
    if (!s->n) return;
    char path[128];
    snprintf(path, sizeof path, "/agents/%s/%s", s->rows[s->sel].id, op);
    aios_client *c = aios_client_new(s->cp);
    char *body = NULL;
    int status = 0, rc = aios_post(c, path, "{}", &body, &status);
    aios_client_free(c);
    cJSON *j = cJSON_Parse(body ? body : "");
    const char *msg =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "error"), "message"));
    snprintf(s->status, sizeof s->status, "%s %s: %s", op, s->rows[s->sel].id,
             rc                  ? "no answer"
                 : status == 200 ? "done"
                 : msg           ? msg
                                 : "refused");
    cJSON_Delete(j);
    free(body);
}

static const char KEYS_HELP[] = "q quit  up/down select  P cpu  M memory  T tokens/s  N name  s stop  c cont  k kill";

/* s and k ask first: y does it, anything else does not. */
static void confirm(top_state *s, const char *op) {
    if (!s->n) return;
    snprintf(s->status, sizeof s->status, "%s agent %s (%s)? y/n", op, s->rows[s->sel].id, s->rows[s->sel].name);
    draw(s);
    timeout(-1);
    int ch = getch();
    timeout(1000);
    if (ch == 'y' || ch == 'Y') act(s, op);
    else snprintf(s->status, sizeof s->status, "%s", KEYS_HELP);
}

static bool key(top_state *s, int ch) {
    switch (ch) {
        case 'q':
        case 'Q': return false;
        case KEY_UP:
            if (s->sel > 0) s->sel--;
            break;
        case KEY_DOWN:
            if (s->sel + 1 < s->n) s->sel++;
            break;
        case 'P':
        case 'M':
        case 'T':
        case 'N': s->sort = (char)ch; break;
        case 's': confirm(s, "stop"); break;
        case 'k': confirm(s, "kill"); break;
        case 'c': act(s, "cont"); break;
        default: break;
    }
    return true;
}

int cli_top(aios_client_params *cp, int argc, char **argv) {
    static top_state s;
    s.cp = cp;
    s.sort = 'P';
    bool once = argc == 1 && !strcmp(argv[0], "--once");
    if (argc && !once) {
        usage(stderr);
        return 2;
    }
    if (once) {
        bool ok = frame(&s);
        for (int i = 0; i < s.n_lines; i++) puts(s.lines[i]);
        return ok ? 0 : 1;
    }
    initscr();
    cbreak();
    noecho();
    keypad(stdscr, TRUE);
    curs_set(0);
    timeout(1000);
    snprintf(s.status, sizeof s.status, "%s", KEYS_HELP);
    for (bool run = true; run;) {
        frame(&s);
        draw(&s);
        double until = now_s() + 1.0;
        while (run && now_s() < until) { /* keys until the next refresh */
            int ch = getch();
            if (ch == ERR) break;
            run = key(&s, ch);
            if (run && ch != 's' && ch != 'k' && ch != 'c') frame(&s); /* sorting and moving show at once */
            draw(&s);
        }
    }
    endwin();
    return 0;
}
