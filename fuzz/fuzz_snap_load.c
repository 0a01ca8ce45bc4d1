/*
 * fuzz_snap_load — a snapshot loaded from memory bytes into a fresh engine
 * (what recovery does with a damaged or hostile snapshot file). First byte
 * selects:
 *   0: the rest is a whole snapshot file: checked, then loaded.
 *   1: the rest is one ROWS block payload (past the checksum), decoded by
 *      snap_rows_next and mapped into the engine like the loader does.
 * A fresh engine per input; a refusal is fine, a crash or leak is not.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "snap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    engine_t *e;
    struct engine_config ec = {.initial_devices = 16, .mem_limit = 64u << 20};
    if (engine_create(&e, &ec) < 0)
        return 0;
    engine_thread_online(e);
    char err[512];
    if (mode % 2 == 0) {
        struct snap_info info;
        if (snap_load_mem(NULL, data, size, NULL, NULL, NULL, &info, err, sizeof(err)) == 0)
            (void)snap_load_mem(e, data, size, NULL, NULL, NULL, &info, err, sizeof(err));
    } else {
        struct snap_rows *it = malloc(sizeof(*it));
        if (it) {
            struct snap_row r;
            snap_rows_init(it, data, size);
            while (snap_rows_next(it, &r) > 0) {
                if ((r.dev.n && (r.dev.p < data || r.dev.p + r.dev.n > data + size)) ||
                    r.uri.p < data || r.uri.p + r.uri.n > data + size)
                    abort(); /* fields always point inside the input */
                struct engine_map_req rq = {r.dev.p, r.dev.n, r.uri.p, r.uri.n, r.uti.p,
                                            r.uti.n, r.owner.p, r.owner.n, r.expires_at, 0};
                (void)engine_map(e, &rq, r.lsn, NULL);
            }
            free(it);
        }
    }
    engine_thread_offline(e);
    engine_destroy(e);
    return 0;
}
