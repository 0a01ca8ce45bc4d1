/*
 * acl.c — the "who" columns of wire-v1 as one table, and the per-row checks
 * (see acl.h). Pure: no state.
 */
#include "acl.h"

#include <string.h>

#include "prefs.h"

#define R_ADMIN PRINCIPAL_ADMIN
#define R_IOT PRINCIPAL_IOT_SP
#define R_TPSP PRINCIPAL_TPSP
#define R_GEN PRINCIPAL_GENERATOR
#define R_VAL PRINCIPAL_VALIDATOR
#define ANY_AUTH 0x100u /* any authenticated principal */
#define PRE_AUTH 0x200u /* also before authentication */

/* The one table of opcode -> roles. Opcodes absent here (0) are ones ICS
 * does not serve: any authenticated principal reaches the dispatcher,
 * which answers NOT_SUPPORTED or UNKNOWN_COMMAND. */
static unsigned op_roles(uint8_t op)
{
    switch (op) {
    case ACL_OP_QUIT: case ACL_OP_QUITQ: case ACL_OP_NOOP: case ACL_OP_VERSION:
    case ACL_OP_SASL_LIST_MECHS: case ACL_OP_SASL_AUTH: case ACL_OP_SASL_STEP:
        return PRE_AUTH;
    case ACL_OP_STAT: case ACL_OP_WATCH: case ACL_OP_WHOAMI:
        return ANY_AUTH;
    /* GET family = INQUIRE_DEVICE (case 1). */
    case ACL_OP_GET: case ACL_OP_GETQ: case ACL_OP_GETK: case ACL_OP_GETKQ:
    case ACL_OP_INQUIRE_DEVICE: case ACL_OP_INQUIRE_BINDING:
    case ACL_OP_DEMAP: case ACL_OP_HISTORY:
        return R_ADMIN | R_IOT | R_TPSP;
    case ACL_OP_MAP: case ACL_OP_EXPORT: case ACL_OP_SNAPSHOT:
    case ACL_OP_PRINCIPAL_SET: case ACL_OP_PRINCIPAL_DEL: case ACL_OP_PRINCIPAL_LIST:
        return R_ADMIN;
    case ACL_OP_MAP_REQUEST:
        return R_TPSP;
    /* Only the routed iot_sp: pending_take checks which one. */
    case ACL_OP_MAP_CONFIRM: case ACL_OP_MAP_REJECT:
        return R_IOT;
    case ACL_OP_DEMAP_DEVICE: case ACL_OP_PREFS_SET: case ACL_OP_PREFS_GET:
        return R_ADMIN | R_IOT;
    case ACL_OP_DEMAP_BINDING: case ACL_OP_DEMAP_SERVICE:
        return R_ADMIN | R_TPSP;
    case ACL_OP_KEY_ISSUE:
        return R_ADMIN | R_GEN;
    case ACL_OP_KEY_VALIDATE:
        return R_ADMIN | R_VAL;
    default:
        return 0;
    }
}

unsigned acl_op_roles(uint8_t opcode)
{
    unsigned r = op_roles(opcode);
    return (r & (ANY_AUTH | PRE_AUTH)) ? 0 : r;
}

bool acl_op_allowed(const struct principal *p, uint8_t opcode)
{
    unsigned r = op_roles(opcode);
    if (r & PRE_AUTH)
        return true;
    if (!p)
        return false;
    if (r == 0 || (r & ANY_AUTH))
        return true;
    return (p->roles & r) != 0;
}

static bool prefix_of(const struct principal *p, const void *s, size_t len)
{
    for (uint16_t i = 0; i < p->nscopes; i++) {
        const struct principal_span *sc = &p->scopes[i];
        if (sc->len <= len && memcmp(s, sc->p, sc->len) == 0)
            return true;
    }
    return false;
}

bool acl_uri_in_scope(const struct principal *p, const void *uri, size_t len)
{
    if (!p)
        return false;
    if (p->roles & PRINCIPAL_ADMIN)
        return true;
    return (p->roles & PRINCIPAL_TPSP) && prefix_of(p, uri, len);
}

bool acl_serial_in_scope(const struct principal *p, const void *serial, size_t len)
{
    return p && (p->roles & PRINCIPAL_IOT_SP) && prefix_of(p, serial, len);
}

bool acl_owns_device(const struct principal *p, const void *owner, size_t owner_len)
{
    if (!p)
        return false;
    if (p->roles & PRINCIPAL_ADMIN)
        return true;
    return (p->roles & PRINCIPAL_IOT_SP) && owner_len != 0 && owner_len == p->name_len &&
           memcmp(owner, p->name, owner_len) == 0;
}

enum acl_via acl_row_via(const struct principal *p, const struct engine_row *row,
                         uint64_t now_us)
{
    if (!p || !row)
        return ACL_VIA_NONE;
    if (p->roles & PRINCIPAL_ADMIN)
        return ACL_VIA_ADMIN;
    if (acl_owns_device(p, row->owner, row->owner_len))
        return ACL_VIA_OWNER;
    if (acl_uri_in_scope(p, row->uri, row->uri_len)) {
        if (row->prefs_len &&
            !prefs_allows(row->prefs, row->prefs_len, row->uri, row->uri_len, now_us))
            return ACL_VIA_NONE;
        return ACL_VIA_TPSP;
    }
    return ACL_VIA_NONE;
}

const char *acl_role_name(const struct principal *p)
{
    if (!p)
        return "none";
    if (p->roles & PRINCIPAL_ADMIN)
        return "admin";
    if (p->roles & PRINCIPAL_IOT_SP)
        return "iot_sp";
    if (p->roles & PRINCIPAL_TPSP)
        return "tpsp";
    if (p->roles & PRINCIPAL_GENERATOR)
        return "generator";
    if (p->roles & PRINCIPAL_VALIDATOR)
        return "validator";
    return "none";
}
