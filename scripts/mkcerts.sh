#!/usr/bin/env bash
# mkcerts.sh — a development PKI for icsd's TLS listener (docs/tls.md).
#
# Usage: scripts/mkcerts.sh OUTDIR [options] [principal...]
#   principal         client cert NAME.pem/.key: CN=NAME, SAN URI urn:ics:principal:NAME
#   --alias F:P       client cert F.pem: CN=F but SAN URI urn:ics:principal:P (tests precedence)
#   --cn-only NAME    client cert without a SAN URI (principal from the CN)
#   --expired NAME    client cert that expired in 2020
#   --future NAME     client cert not valid before 2099
#   --untrusted NAME  client cert from another CA (other-ca.pem), not ours
#   --intermediate NAME  client cert issued by an intermediate CA under ours;
#                     NAME.pem holds the leaf then the intermediate (a chain)
#   --revoked NAME    client cert listed in crl.pem
#   --server-eku NAME client cert whose extendedKeyUsage is serverAuth only
#   --server NAME     an extra server cert NAME.pem (e.g. to test a reload)
#
# Makes (ECDSA P-256, SHA-256): ca.pem/ca.key (the development CA),
# server.pem/server.key (localhost, 127.0.0.1, ::1), crl.pem (the CA's CRL,
# rebuilt every run), and the certificates asked for. Idempotent: existing
# keys and certificates are kept, so a second run only adds what is missing.
# Uses the openssl command line tool (Debian's OpenSSL); nothing here is
# meant for production keys.
set -euo pipefail

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 2; }
[ $# -ge 1 ] || usage
case $1 in -h|--help) usage ;; esac
OUT=$1; shift
command -v openssl >/dev/null || { echo "mkcerts: needs the openssl tool (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
umask 077

CLIENTS=() ALIASES=() CNONLY=() EXPIRED=() FUTURE=() INTERMEDIATE=() UNTRUSTED=() REVOKED=() SERVEREKU=() SERVERS=()
while [ $# -gt 0 ]; do
  case $1 in
    --alias)      ALIASES+=("$2"); shift 2 ;;
    --cn-only)    CNONLY+=("$2"); shift 2 ;;
    --expired)    EXPIRED+=("$2"); shift 2 ;;
    --future)     FUTURE+=("$2"); shift 2 ;;
    --untrusted)  UNTRUSTED+=("$2"); shift 2 ;;
    --intermediate) INTERMEDIATE+=("$2"); shift 2 ;;
    --revoked)    REVOKED+=("$2"); shift 2 ;;
    --server-eku) SERVEREKU+=("$2"); shift 2 ;;
    --server)     SERVERS+=("$2"); shift 2 ;;
    -*)           echo "mkcerts: unknown option $1" >&2; usage ;;
    *)            CLIENTS+=("$1"); shift ;;
  esac
done

say() { echo "mkcerts: $*"; }

# A name becomes a file name: keep it to a safe alphabet.
checkname() {
  [[ $1 =~ ^[A-Za-z0-9._@-]{1,128}$ ]] || { echo "mkcerts: bad name '$1'" >&2; exit 2; }
}

newkey() { # file
  [ -s "$1" ] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

# An `openssl ca` database per CA, so certificates get serials and can be revoked.
cadb() { # dir
  mkdir -p "$1/newcerts"
  [ -f "$1/index.txt" ] || : >"$1/index.txt"
  [ -f "$1/index.txt.attr" ] || echo "unique_subject = no" >"$1/index.txt.attr"
  [ -f "$1/serial" ] || openssl rand -hex 8 >"$1/serial"
  [ -f "$1/crlnumber" ] || echo 1000 >"$1/crlnumber"
  cat >"$1/ca.cnf" <<EOF
[ ca ]
default_ca = dev
[ dev ]
dir = $1
database = \$dir/index.txt
new_certs_dir = \$dir/newcerts
serial = \$dir/serial
crlnumber = \$dir/crlnumber
default_md = sha256
default_days = 825
default_crl_days = 3650
policy = anything
copy_extensions = none
[ anything ]
commonName = supplied
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused
[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
}

makeca() { # dir name
  local d=$1
  cadb "$d"
  newkey "$d/ca.key"
  if [ ! -s "$d/ca.pem" ]; then
    openssl req -new -x509 -config "$d/ca.cnf" -key "$d/ca.key" -subj "/CN=$2" \
      -days 3650 -extensions v3_ca -out "$d/ca.pem" 2>/dev/null
    say "made CA $d/ca.pem ($2)"
  fi
}

# issue DIR-OF-CA OUTBASE CN EXTENSIONS [extra openssl ca args...]
issue() {
  local cad=$1 base=$2 cn=$3 ext=$4; shift 4
  if [ -s "$base.pem" ] && [ -s "$base.key" ]; then return 0; fi
  newkey "$base.key"
  local tmp; tmp=$(mktemp -d)
  printf '[ x ]\n%s\n' "$ext" >"$tmp/ext.cnf"
  openssl req -new -key "$base.key" -subj "/CN=$cn" -out "$tmp/req.csr" 2>/dev/null
  openssl ca -batch -notext -config "$cad/ca.cnf" -cert "$cad/ca.pem" -keyfile "$cad/ca.key" \
    -extfile "$tmp/ext.cnf" -extensions x -in "$tmp/req.csr" -out "$base.pem" "$@" 2>"$tmp/err" \
    || { cat "$tmp/err" >&2; rm -rf "$tmp"; exit 1; }
  rm -rf "$tmp"
  say "made $base.pem (CN=$cn)"
}

client_ext() { # principal-or-empty eku
  local e="basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = ${2:-clientAuth}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid"
  [ -z "$1" ] || e+="
subjectAltName = URI:urn:ics:principal:$1"
  echo "$e"
}

SERVER_EXT="basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid"

CA="$OUT/.ca"
makeca "$CA" "icsd development CA"
cp "$CA/ca.pem" "$OUT/ca.pem"
[ -s "$OUT/ca.key" ] || cp "$CA/ca.key" "$OUT/ca.key"

issue "$CA" "$OUT/server" "localhost" "$SERVER_EXT"
for s in "${SERVERS[@]+"${SERVERS[@]}"}"; do
  checkname "$s"; issue "$CA" "$OUT/$s" "localhost" "$SERVER_EXT"
done
for n in "${CLIENTS[@]+"${CLIENTS[@]}"}"; do
  checkname "$n"; issue "$CA" "$OUT/$n" "$n" "$(client_ext "$n")"
done
for a in "${ALIASES[@]+"${ALIASES[@]}"}"; do
  f=${a%%:*} p=${a#*:}
  checkname "$f"; checkname "$p"; issue "$CA" "$OUT/$f" "$f" "$(client_ext "$p")"
done
for n in "${CNONLY[@]+"${CNONLY[@]}"}"; do
  checkname "$n"; issue "$CA" "$OUT/$n" "$n" "$(client_ext "")"
done
for n in "${SERVEREKU[@]+"${SERVEREKU[@]}"}"; do
  checkname "$n"; issue "$CA" "$OUT/$n" "$n" "$(client_ext "$n" serverAuth)"
done
for n in "${EXPIRED[@]+"${EXPIRED[@]}"}"; do
  checkname "$n"
  issue "$CA" "$OUT/$n" "$n" "$(client_ext "$n")" -startdate 20200101000000Z -enddate 20200102000000Z
done
for n in "${FUTURE[@]+"${FUTURE[@]}"}"; do
  checkname "$n"
  issue "$CA" "$OUT/$n" "$n" "$(client_ext "$n")" -startdate 20990101000000Z -enddate 20990102000000Z
done
for n in "${REVOKED[@]+"${REVOKED[@]}"}"; do
  checkname "$n"
  if [ ! -s "$OUT/$n.pem" ]; then
    issue "$CA" "$OUT/$n" "$n" "$(client_ext "$n")"
    openssl ca -batch -config "$CA/ca.cnf" -cert "$CA/ca.pem" -keyfile "$CA/ca.key" \
      -revoke "$OUT/$n.pem" 2>/dev/null
    say "revoked $OUT/$n.pem"
  fi
done
if [ ${#UNTRUSTED[@]} -gt 0 ]; then
  OTHER="$OUT/.other-ca"
  makeca "$OTHER" "some other CA"
  cp "$OTHER/ca.pem" "$OUT/other-ca.pem"
  for n in "${UNTRUSTED[@]}"; do
    checkname "$n"; issue "$OTHER" "$OUT/$n" "$n" "$(client_ext "$n")"
  done
fi

INT="$OUT/.int-ca"
if [ ${#INTERMEDIATE[@]} -gt 0 ]; then
  cadb "$INT"
  newkey "$INT/ca.key"
  if [ ! -s "$INT/ca.pem" ]; then
    openssl req -new -key "$INT/ca.key" -subj "/CN=icsd development intermediate CA" \
      -out "$INT/req.csr" 2>/dev/null
    openssl ca -batch -notext -config "$CA/ca.cnf" -cert "$CA/ca.pem" -keyfile "$CA/ca.key" \
      -extensions v3_ca -in "$INT/req.csr" -out "$INT/ca.pem" 2>/dev/null
    say "made intermediate CA $INT/ca.pem"
  fi
  for n in "${INTERMEDIATE[@]}"; do
    checkname "$n"
    if [ ! -s "$OUT/$n.pem" ]; then
      issue "$INT" "$OUT/$n" "$n" "$(client_ext "$n")"
      cat "$INT/ca.pem" >>"$OUT/$n.pem"   # the chain the client presents
    fi
  done
fi

# crl.pem: our CA's CRL, then the intermediate's if there is one (one file
# may hold several CRLs; revocation checking needs the leaf issuer's).
openssl ca -batch -gencrl -config "$CA/ca.cnf" -cert "$CA/ca.pem" -keyfile "$CA/ca.key" \
  -out "$OUT/crl.pem" 2>/dev/null
if [ -s "$INT/ca.pem" ]; then
  openssl ca -batch -gencrl -config "$INT/ca.cnf" -cert "$INT/ca.pem" -keyfile "$INT/ca.key" \
    -out "$INT/crl.pem" 2>/dev/null
  cat "$INT/crl.pem" >>"$OUT/crl.pem"
fi
say "made $OUT/crl.pem ($(grep -c . "$CA/index.txt" | tr -d ' ') issued, $(grep -c '^R' "$CA/index.txt" || true) revoked)"
chmod 0644 "$OUT"/*.pem
say "done: CA $OUT/ca.pem, server $OUT/server.pem + server.key, CRL $OUT/crl.pem"
