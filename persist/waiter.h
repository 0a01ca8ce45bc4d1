/*
 * waiter.h — block a thread until the store calls a store_done_fn.
 *
 * The store's asynchronous changes (store_map, store_aux, ...) report
 * through a store_done_fn from its writer or commit thread. A caller that
 * has nothing else to do (the job thread, an admin path, a test) passes
 * store_waiter_done with a struct store_waiter and then store_waiter_wait:
 * one helper instead of a mutex/condvar pair in every such caller.
 *
 * Threads: store_waiter_done on the store's thread, store_waiter_wait on
 * the caller's; the mutex orders the result before done is seen. A waiter
 * must outlive the callback (it lives on the waiting thread's stack, which
 * is why the caller waits whenever submission succeeded).
 */
#ifndef ICS_PERSIST_WAITER_H
#define ICS_PERSIST_WAITER_H

#include <pthread.h>
#include <stdint.h>

struct store_waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, status;
    uint64_t lsn;          /* the change's LSN (0 if it has none) */
};

#define STORE_WAITER_INIT {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0}

/* A store_done_fn: arg is a struct store_waiter. */
static inline void store_waiter_done(void *arg, int status, uint64_t lsn)
{
    struct store_waiter *w = (struct store_waiter *)arg;
    pthread_mutex_lock(&w->mu);
    w->status = status;
    w->lsn = lsn;
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Waits for the callback; returns its status (0 or a negative errno). */
static inline int store_waiter_wait(struct store_waiter *w)
{
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
    return w->status;
}

#endif /* ICS_PERSIST_WAITER_H */
