/*
 * policy_fifo.c - first come, first served: a doubly linked list in arrival order.
 * O(1) push and peek; remove is a linear find, fine because cancelling a waiting
 * request is rare next to push/pop and the queue is bounded by scheduler.max_queue.
 */
#include <stdlib.h>
#include "sched.h"

typedef struct fifo_node {
    syscall_t *sc;
    struct fifo_node *prev, *next;
} fifo_node;

typedef struct fifo {
    fifo_node *head, *tail;
    size_t n;
} fifo;

static void *fifo_create(void) { return calloc(1, sizeof(fifo)); }

static void fifo_destroy(void *p) {
    fifo *q = p;
    if (!q) return;
    for (fifo_node *n = q->head, *next; n; n = next) {
        next = n->next;
        free(n);
    }
    free(q);
}

static void fifo_push(void *p, syscall_t *sc) {
    fifo *q = p;
    fifo_node *n = calloc(1, sizeof *n);
    if (!n) abort(); /* 24 bytes; the syscall itself was just allocated */
    n->sc = sc;
    n->prev = q->tail;
    if (q->tail) q->tail->next = n;
    else q->head = n;
    q->tail = n;
    q->n++;
}

static syscall_t *fifo_peek(void *p) {
    fifo *q = p;
    return q->head ? q->head->sc : NULL;
}

static bool fifo_remove(void *p, syscall_t *sc) {
    fifo *q = p;
    for (fifo_node *n = q->head; n; n = n->next) {
        if (n->sc != sc) continue;
        if (n->prev) n->prev->next = n->next;
        else q->head = n->next;
        if (n->next) n->next->prev = n->prev;
        else q->tail = n->prev;
        free(n);
        q->n--;
        return true;
    }
    return false;
}

static size_t fifo_len(void *p) { return ((fifo *)p)->n; }

const sched_policy_ops sched_policy_fifo = {
    .name = "fifo", .create = fifo_create, .destroy = fifo_destroy, .push = fifo_push,
    .peek = fifo_peek, .remove = fifo_remove, .len = fifo_len,
};
