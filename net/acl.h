/*
 * acl.h — access control of wire-v1 sections 3.2, 3.3 and 4, as pure
 * functions of a principal and what it asks for.
 *
 * Two steps, both required:
 *  1. acl_op_allowed: may this principal send this opcode at all (the
 *     "who" columns as roles)? No: ACCESS_DENIED (AUTH_ERROR before
 *     authentication, p == NULL).
 *  2. per object: acl_row_via / acl_uri_in_scope / acl_owns_device.
 *     A row the principal may not see is answered exactly like a row that
 *     does not exist (NOT_FOUND), never ACCESS_DENIED, so a tpsp cannot
 *     even learn that another tpsp's row exists.
 * Rights of several roles add up (an iot_sp that is also a tpsp sees both
 * its devices and its URIs). admin sees and may do everything.
 *
 * Threads: none; no state, no allocation. Callers pass a principal they
 * hold a reference to (principal.h).
 */
#ifndef ICS_NET_ACL_H
#define ICS_NET_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "principal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Opcodes of wire-v1 this module knows (the codec has its own names). */
enum acl_opcode {
    ACL_OP_GET = 0x00, ACL_OP_QUIT = 0x07, ACL_OP_GETQ = 0x09, ACL_OP_NOOP = 0x0A,
    ACL_OP_VERSION = 0x0B, ACL_OP_GETK = 0x0C, ACL_OP_GETKQ = 0x0D,
    ACL_OP_STAT = 0x10, ACL_OP_QUITQ = 0x17,
    ACL_OP_SASL_LIST_MECHS = 0x20, ACL_OP_SASL_AUTH = 0x21, ACL_OP_SASL_STEP = 0x22,
    ACL_OP_MAP = 0xC0, ACL_OP_MAP_REQUEST = 0xC1, ACL_OP_MAP_CONFIRM = 0xC2,
    ACL_OP_MAP_REJECT = 0xC3, ACL_OP_DEMAP = 0xC4, ACL_OP_DEMAP_DEVICE = 0xC5,
    ACL_OP_DEMAP_BINDING = 0xC6, ACL_OP_DEMAP_SERVICE = 0xC7,
    ACL_OP_INQUIRE_DEVICE = 0xC8, ACL_OP_INQUIRE_BINDING = 0xC9,
    ACL_OP_WATCH = 0xCA, ACL_OP_EXPORT = 0xCB,
    ACL_OP_KEY_ISSUE = 0xD0, ACL_OP_KEY_VALIDATE = 0xD1, ACL_OP_HISTORY = 0xD2,
    ACL_OP_SNAPSHOT = 0xD3, ACL_OP_WHOAMI = 0xD4, ACL_OP_PREFS_SET = 0xD5,
    ACL_OP_PREFS_GET = 0xD6, ACL_OP_PRINCIPAL_SET = 0xD7, ACL_OP_PRINCIPAL_DEL = 0xD8,
    ACL_OP_PRINCIPAL_LIST = 0xD9,
};

/* The roles that may send opcode (0 for "no role needed"). */
unsigned acl_op_roles(uint8_t opcode);

/* Step 1. p == NULL (not authenticated): only NOOP, VERSION, QUIT(Q) and
 * SASL_*. Authenticated: the opcode's roles, or any principal for
 * STAT, WHOAMI, WATCH and opcodes ICS does not serve (so the dispatcher
 * answers them NOT_SUPPORTED / UNKNOWN_COMMAND rather than ACCESS_DENIED). */
bool acl_op_allowed(const struct principal *p, uint8_t opcode);

/* admin, or a tpsp with a scope that is a prefix of uri. */
bool acl_uri_in_scope(const struct principal *p, const void *uri, size_t len);

/* admin, or an iot_sp whose name equals the device's owner (len 0: none). */
bool acl_owns_device(const struct principal *p, const void *owner, size_t owner_len);

/* How p may see a row at unix time now_us, if at all: as admin (all rows),
 * as the device's owner iot_sp (all its rows), or as a tpsp whose scopes
 * cover the row's URI and whose request the device's preferences allow at
 * that time (wire-v1 section 4: a row they refuse is one that does not
 * exist). The one rule for answers, changes and events alike. */
enum acl_via { ACL_VIA_NONE = 0, ACL_VIA_ADMIN, ACL_VIA_OWNER, ACL_VIA_TPSP };
enum acl_via acl_row_via(const struct principal *p, const struct engine_row *row,
                         uint64_t now_us);

/* true if serial starts with one of p's scopes (iot_sp serial prefixes). */
bool acl_serial_in_scope(const struct principal *p, const void *serial, size_t len);

/* wire-v1 WHOAMI role string: the highest role held, "admin" > "iot_sp" >
 * "tpsp" > "generator" > "validator"; "none" without any. */
const char *acl_role_name(const struct principal *p);

#ifdef __cplusplus
}
#endif
#endif /* ICS_NET_ACL_H */
