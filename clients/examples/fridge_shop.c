/*
 * fridge_shop.c — the Y.4462 smart refrigerator use case on the C client:
 * the fridge maker (iot_sp, serials "FRG-") and a grocery shop (tpsp) bind
 * a fridge through the two-phase flow (MAP_REQUEST, MAP_PENDING,
 * MAP_CONFIRM, MAP_RESULT), then the shop resolves an order's binding.
 *
 * Usage: fridge_shop [--cred FILE] [--host H] [--port P]
 * (default credential: ./var/ics/admin.cred, as icsd writes it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "icsc.h"

static char host[512] = "127.0.0.1", secret[512], principal[512] = "admin";
static unsigned port = 11311;

static void load_cred(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[500];
    if (!f) {
        fprintf(stderr, "fridge_shop: cannot read %s (start icsd first, or pass --cred)\n", path);
        exit(2);
    }
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!strncmp(line, "host=", 5))
            snprintf(host, sizeof host, "%s", line + 5);
        else if (!strncmp(line, "port=", 5))
            port = (unsigned)atoi(line + 5);
        else if (!strncmp(line, "secret=", 7))
            snprintf(secret, sizeof secret, "%s", line + 7);
        else if (!strncmp(line, "principal=", 10))
            snprintf(principal, sizeof principal, "%s", line + 10);
    }
    fclose(f);
}

static icsc *connect_as(const char *user, const char *pw)
{
    icsc_opts o = {.host = host, .port = (uint16_t)port, .user = user, .secret = pw, .timeout_ms = 10000};
    icsc *c;
    int rc = icsc_connect(&c, &o);
    if (rc) {
        fprintf(stderr, "fridge_shop: connect as %s: %s\n", user, icsc_strerror(rc));
        exit(3);
    }
    return c;
}

#define MUST(expr)                                                                    \
    do {                                                                              \
        int _rc = (expr);                                                             \
        if (_rc) {                                                                    \
            fprintf(stderr, "fridge_shop: %s: %s\n", #expr, icsc_strerror(_rc));     \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

int main(int argc, char **argv)
{
    const char *cred = "var/ics/admin.cred", *h = NULL;
    int p = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--cred"))
            cred = argv[i + 1];
        else if (!strcmp(argv[i], "--host"))
            h = argv[i + 1];
        else if (!strcmp(argv[i], "--port"))
            p = atoi(argv[i + 1]);
    }
    load_cred(cred);
    if (h)
        snprintf(host, sizeof host, "%s", h);
    if (p)
        port = (unsigned)p;

    char sfx[16], maker[64], shop[64], scope_m[64], scope_s[96], uri[160], uti[64], serial[96], dev[64];
    snprintf(sfx, sizeof sfx, "%x", (unsigned)time(NULL) ^ (unsigned)getpid());
    snprintf(maker, sizeof maker, "c-fridge-maker-%s", sfx);
    snprintf(shop, sizeof shop, "c-grocer-%s", sfx);
    snprintf(scope_m, sizeof scope_m, "CFR-%s-", sfx);
    snprintf(scope_s, sizeof scope_s, "https://cshop-%s.example/", sfx);
    snprintf(uri, sizeof uri, "%sorders", scope_s);
    snprintf(uti, sizeof uti, "consent-%s", sfx);
    snprintf(serial, sizeof serial, "%s0001", scope_m);
    snprintf(dev, sizeof dev, "fridge-%s", sfx);

    icsc *admin = connect_as(principal, secret);
    const char *ms[] = {scope_m}, *ss[] = {scope_s};
    MUST(icsc_principal_set(admin, maker, ICSC_ROLE_IOT_SP, "maker-pw", NULL, ms, 1));
    MUST(icsc_principal_set(admin, shop, ICSC_ROLE_TPSP, "shop-pw", NULL, ss, 1));
    printf("  admin: principals %s (iot_sp) and %s (tpsp)\n", maker, shop);

    icsc *m = connect_as(maker, "maker-pw"), *s = connect_as(shop, "shop-pw");
    MUST(icsc_watch(m, ICSC_W_MAP_PENDING));
    MUST(icsc_watch(s, ICSC_W_MAP_RESULT));
    uint8_t rid[16];
    MUST(icsc_map_request(s, serial, uri, uti, 0, rid));
    printf("  %s: MAP_REQUEST for serial %s\n", shop, serial);
    icsc_event ev;
    MUST(icsc_poll_event(m, &ev, 10000));
    if (ev.code != ICSC_EV_MAP_PENDING || memcmp(ev.key, rid, 16)) {
        fprintf(stderr, "fridge_shop: unexpected event 0x%x\n", ev.code);
        return 1;
    }
    printf("  %s: MAP_PENDING for %s from %s\n", maker, ev.a, ev.b);
    icsc_event_clear(&ev);
    uint64_t lsn;
    MUST(icsc_map_confirm(m, rid, dev, &lsn));
    printf("  %s: user agreed; MAP_CONFIRM as %s (LSN %llu)\n", maker, dev, (unsigned long long)lsn);
    MUST(icsc_poll_event(s, &ev, 10000));
    if (ev.code != ICSC_EV_MAP_RESULT || ev.status != 0 || strcmp(ev.a, dev)) {
        fprintf(stderr, "fridge_shop: unexpected MAP_RESULT\n");
        return 1;
    }
    printf("  %s: MAP_RESULT ok, device %s\n", shop, ev.a);
    icsc_event_clear(&ev);
    char *owner = NULL;
    MUST(icsc_inquire_binding(s, uri, uti, &owner));
    printf("  %s: the milk order of UTI %s is for %s\n", shop, uti, owner);
    int ok = !strcmp(owner, dev);
    free(owner);
    icsc_close(m);
    icsc_close(s);
    icsc_close(admin);
    puts(ok ? "fridge_shop (C): ok" : "fridge_shop (C): WRONG DEVICE");
    return ok ? 0 : 1;
}
