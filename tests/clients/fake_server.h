/*
 * fake_server.h — a canned wire-v1 server for the C client's unit tests:
 * a thread on 127.0.0.1:<port 0> that answers each request from a small
 * table (see fake_answer in fake_server.c), so every client path, including
 * "accepts and never replies" and "drops the connection mid-request", can be
 * tested without icsd.
 */
#ifndef ICS_TEST_FAKE_SERVER_H
#define ICS_TEST_FAKE_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

enum fake_mode { FAKE_ANSWER = 0, FAKE_SILENT = 1 };

typedef struct fake_server {
    int lfd;
    uint16_t port;
    int mode;
    pthread_t thr;
    /* Shared between the test and the server thread; plain atomic_* calls,
     * so seq_cst: a test counter, simplicity over speed. */
    atomic_int stop;
    atomic_int connections;   /* accepted so far */
    atomic_int dropped_reads; /* "dropread" requests dropped so far */
    uint64_t lsn;             /* next LSN handed out */
    uint8_t prefs[4096];      /* the last PREFS_SET value, echoed by PREFS_GET */
    size_t prefs_len;
} fake_server;

int fake_start(fake_server *s, int mode);
void fake_stop(fake_server *s);

#endif
