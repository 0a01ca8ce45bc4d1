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
 *   3: the rest is one DEVS2 block payload, decoded by snap_devs2_next and
 *      snap_hist2_next (each entry's history decoded again after the
 *      iterator moved on, as the loader's lookahead does), its rows mapped
 *      and its record restored.
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
    if (mode % 4 == 3) {
        struct snap_devs2 *it = malloc(sizeof(*it));
        struct snap_drow *rows = malloc(SNAP_DEV_ROWS_MAX * sizeof(*rows));
        struct engine_hist *hv = NULL;
        struct snap_dev d, prev;
        int have_prev = 0;
        if (it && rows) {
            snap_devs2_init(it, data, size);
            while (snap_devs2_next(it, &d) > 0) {
                if (d.dev.p < data || d.dev.p + d.dev.n > data + size ||
                    d.hist.p < data || d.hist.p + d.hist.n > data + size ||
                    d.nrows > SNAP_DEV_ROWS_MAX)
                    abort(); /* fields always point inside the input */
                for (uint32_t i = 0; i < d.nrows; i++) {
                    const struct snap_drow *r = &d.rows[i];
                    if (r->uri.p < data || r->uri.p + r->uri.n > data + size ||
                        r->uti.p < data || r->uti.p + r->uti.n > data + size)
                        abort();
                    struct engine_map_req rq = {d.dev.p, d.dev.n, r->uri.p, r->uri.n,
                                                r->uti.p, r->uti.n, d.owner.p, d.owner.n,
                                                r->expires_at, 0};
                    (void)engine_map(e, &rq, r->lsn, NULL);
                }
                /* The previous entry's history, decoded once the iterator
                 * has moved past it (its rows copied, as the loader does). */
                if (have_prev) {
                    struct snap_hist2 c;
                    struct engine_hist h;
                    snap_hist2_init(&c, it, &prev, rows);
                    for (uint64_t i = 0; i < prev.nhist; i++)
                        if (snap_hist2_next(&c, &h) != 1)
                            abort(); /* snap_devs2_next checked every entry */
                    if (snap_hist2_next(&c, &h) != 0)
                        abort();
                }
                hv = calloc(d.nhist ? (size_t)d.nhist : 1, sizeof(*hv));
                if (!hv)
                    break;
                struct snap_hist2 c;
                snap_hist2_init(&c, it, &d, d.rows);
                for (uint64_t i = 0; i < d.nhist; i++)
                    if (snap_hist2_next(&c, &hv[i]) != 1)
                        abort();
                struct engine_device_load dl = {
                    .dev = d.dev.p, .dev_len = d.dev.n, .owner = d.owner.p,
                    .owner_len = d.owner.n, .prefs = d.prefs.p, .prefs_len = d.prefs.n,
                    .meta = d.meta, .hist = hv, .nhist = (size_t)d.nhist,
                    .hist_lsn = d.hist_lsn, .hist_part = d.hist_part,
                };
                (void)engine_device_restore(e, &dl);
                free(hv);
                hv = NULL;
                (void)engine_history_get(e, d.dev.p, d.dev.n, 8, NULL, NULL);
                memcpy(rows, d.rows, d.nrows * sizeof(*rows));
                prev = d;
                have_prev = 1;
            }
        }
        free(rows);
        free(it);
    } else if (mode % 4 == 2) {
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
    } else if (mode % 4 == 0) {
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
