/*
 * fuzz_snap_load — a snapshot loaded from memory bytes into a fresh engine
 * (what recovery does with a damaged or hostile snapshot file). First byte
 * selects:
 *   0: the rest is a whole snapshot file: checked, then loaded.
 *   1: the rest is one ROWS block payload (past the checksum), decoded by
 *      snap_rows_next and mapped into the engine like the loader does.
 *   2: the rest is one DEVS block payload (past the checksum), decoded by
 *      snap_devs_next / snap_hist_next and restored into the engine with
 *      engine_device_restore like the loader does, then read back.
 * A fresh engine per input (history_len 4, so DEVS records are kept); a
 * refusal is fine, a crash or leak is not.
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
    struct engine_config ec = {.initial_devices = 16, .mem_limit = 64u << 20,
                               .history_len = 4, .hash_seed = 1};
    if (engine_create(&e, &ec) < 0)
        return 0;
    engine_thread_online(e);
    char err[512];
    if (mode % 3 == 2) {
        struct snap_devs it;
        struct snap_dev d;
        snap_devs_init(&it, data, size);
        while (snap_devs_next(&it, &d) > 0) {
            if (d.dev.p < data || d.dev.p + d.dev.n > data + size ||
                d.hist.p < data || d.hist.p + d.hist.n > data + size)
                abort(); /* fields always point inside the input */
            struct engine_hist *hv = calloc(d.nhist ? (size_t)d.nhist : 1, sizeof(*hv));
            if (!hv)
                break;
            struct wal_bytes rest = d.hist;
            for (uint64_t i = 0; i < d.nhist; i++)
                if (snap_hist_next(&rest, &hv[i]) != 1)
                    abort(); /* snap_devs_next checked every entry */
            if (rest.n != 0)
                abort(); /* and d.hist spans exactly those */
            struct engine_device_load dl = {
                .dev = d.dev.p, .dev_len = d.dev.n, .owner = d.owner.p,
                .owner_len = d.owner.n, .prefs = d.prefs.p, .prefs_len = d.prefs.n,
                .meta = d.meta, .hist = hv, .nhist = (size_t)d.nhist,
                .hist_lsn = d.hist_lsn, .hist_part = d.hist_part,
            };
            (void)engine_device_restore(e, &dl);
            free(hv);
            (void)engine_history_get(e, d.dev.p, d.dev.n, 8, NULL, NULL);
        }
    } else if (mode % 3 == 0) {
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
