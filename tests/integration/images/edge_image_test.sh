#!/usr/bin/env bash
# edge-image as a release engineer and a device use it: HSM-signed bundles, refusals, A/B install, kill -9.
#
# usage: edge_image_test.sh EDGE_IMAGE EDGE_HSM EDGED_CONF KEYRING
# (KEYRING: the build-time trust keyring path, CMake EDGE_IMAGE_KEYRING)
# Real SoftHSM lab token (edge-hsm init-lab-token in a temporary EDGE_STATE_DIR), real processes.
# Prints one "ok - ..." / "not ok - ..." line per check and "N passed, N failed" at the end;
# exits non-zero when a check failed. Never skips: a missing tool is a failure.
set -uo pipefail

EDGE_IMAGE=${1:?edge-image path}
EDGE_HSM=${2:?edge-hsm path}
CONF=${3:?default configuration path}
KEYRING=${4:?build-time keyring path}

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok - $*"; }
bad() { failed=$((failed + 1)); echo "not ok - $*"; }
check() {  # check DESCRIPTION COMMAND...: passes when COMMAND succeeds
  local what=$1; shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}

for tool in "$EDGE_IMAGE" "$EDGE_HSM" openssl python3 softhsm2-util; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "not ok - required tool missing: $tool"
    echo "0 passed, 1 failed"
    exit 1
  fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/edge-image-XXXXXX")
cleanup() {
  [ -n "${child:-}" ] && kill -9 "$child" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
export EDGE_STATE_DIR="$WORK/state"
unset SOFTHSM2_CONF EDGE_IMAGE_STOP_AT SOURCE_DATE_EPOCH
cd "$WORK" || exit 1

OUT="$WORK/out"
ERR="$WORK/err"
run() { "$EDGE_IMAGE" "$@" >"$OUT" 2>"$ERR"; rc=$?; }
lines() { wc -l <"$1" | tr -d ' '; }
# A refused command: exit 1, exactly one line on stderr starting "edge-image: " containing $1.
refused() {
  local needle=$1
  [ "$rc" = 1 ] || { echo "  exit $rc, expected 1; stderr: $(cat "$ERR")"; return 1; }
  [ "$(lines "$ERR")" = 1 ] || { echo "  stderr has $(lines "$ERR") lines:"; sed 's/^/  | /' "$ERR"; return 1; }
  grep -q '^edge-image: ' "$ERR" || { echo "  stderr: $(cat "$ERR")"; return 1; }
  grep -qF -- "$needle" "$ERR" || { echo "  stderr lacks '$needle': $(cat "$ERR")"; return 1; }
}
succeeded() { [ "$rc" = 0 ] || { echo "  exit $rc; stderr: $(cat "$ERR")"; return 1; }; }
has() { grep -qE -- "$1" "$OUT" || { echo "  stdout lacks /$1/:"; sed 's/^/  | /' "$OUT"; return 1; }; }
booted_slot() { "$EDGE_IMAGE" boot --root "$1" 2>/dev/null | sed -n 's/^slot=\([ab]\) .*/\1/p'; }

# ---- keys ---------------------------------------------------------------------------------
"$EDGE_HSM" init-lab-token >/dev/null || { bad "init-lab-token"; echo "$passed passed, $failed failed"; exit 1; }
PUB=$("$EDGE_HSM" signkey create firmware)
check "signkey create prints the exported public key path" test "$PUB" = "$EDGE_STATE_DIR/keys/firmware.pub.pem"
check "the exported key is an EC P-256 public key for OpenSSL" \
  bash -c "openssl pkey -pubin -in '$PUB' -text -noout | grep -q 'ASN1 OID: prime256v1'"
OTHER=$(EDGE_STATE_DIR="$WORK/other" bash -c "'$EDGE_HSM' init-lab-token >/dev/null && '$EDGE_HSM' signkey create firmware")
check "a second lab token has its own key" test -s "$OTHER"

# ---- payload: real programs and a large file so an install takes a while ---------------------
head -c 48000000 /dev/urandom >big.bin
FILES=(--file "bin/edge-hsm=$EDGE_HSM" --file "bin/edge-image=$EDGE_IMAGE" --file "etc/edged.conf=$CONF"
       --file "data/big.bin=big.bin")
build() { run build --version "$1" --out "$2" "${FILES[@]}"; }

build 1.0.0 v1.bundle
check "build 1.0.0 signs with the HSM key" succeeded
check "build reports the HSM sign time" has "hsm_sign_ms="
build 1.1.0 v11.bundle
check "build 1.1.0" succeeded
build 0.9.0 v09.bundle
check "build 0.9.0" succeeded

# ---- verify -----------------------------------------------------------------------------------
run verify v1.bundle --trust "$PUB"
check "verify accepts the bundle with the right key" succeeded
check "verify lists the files with their SHA-256" has "bin/edge-hsm size=[0-9]+ sha256=$(sha256sum "$EDGE_HSM" | cut -c1-64)"

# The signature is plain DER ECDSA over the manifest: OpenSSL alone checks it.
python3 - v1.bundle <<'PY'
import struct, sys
b = open(sys.argv[1], 'rb').read()
m, s = struct.unpack('>II', b[12:20])
open('manifest.txt', 'wb').write(b[32:32 + m])
open('manifest.sig', 'wb').write(b[32 + m:32 + m + s])
PY
check "openssl dgst verifies the manifest signature independently" \
  bash -c "openssl dgst -sha256 -verify '$PUB' -signature manifest.sig manifest.txt >/dev/null"

run verify v1.bundle --trust "$OTHER"
check "wrong signer: refused" refused "signature does not verify"

# tamper PYTHON-EXPR-ON-b OUT: a copy of v1.bundle changed by the expression (b is a bytearray)
tamper() {
  python3 - v1.bundle "$2" "$1" <<'PY'
import struct, sys
b = bytearray(open(sys.argv[1], 'rb').read())
m, s = struct.unpack('>II', b[12:20])
exec(sys.argv[3])
open(sys.argv[2], 'wb').write(b)
PY
}
tamper "b[32 + b[32:32+m].find(b'version 1.0.0') + 12] = ord('9')" t_manifest.bundle
run verify t_manifest.bundle --trust "$PUB"
check "tampered manifest (version 1.0.0 -> 1.0.9): refused" refused "signature does not verify"
tamper "b[len(b) - 1000] ^= 1" t_file.bundle
run verify t_file.bundle --trust "$PUB"
check "tampered file byte: refused naming the file" refused "file data/big.bin: SHA-256 does not match"
tamper "b[32 + m + 10] ^= 0x40" t_sig.bundle
run verify t_sig.bundle --trust "$PUB"
check "tampered signature: refused" refused "signature does not verify"
tamper "b[12:16] = struct.pack('>I', 0xFFFFFFF0)" t_huge.bundle
run verify t_huge.bundle --trust "$PUB"
check "huge declared manifest length: refused without reading it" refused "manifest length 4294967280 out of range"
tamper "b[24:32] = struct.pack('>Q', 2**63)" t_hugepay.bundle
run verify t_hugepay.bundle --trust "$PUB"
check "huge declared payload length: refused" refused "payload length"
tamper "b[0] = ord('X')" t_magic.bundle
run verify t_magic.bundle --trust "$PUB"
check "not a bundle: refused" refused "bad magic"
for cut in 0 10 31 32 100 $(( $(stat -c %s v1.bundle) - 1 )); do
  head -c "$cut" v1.bundle >t_trunc.bundle
  run verify t_trunc.bundle --trust "$PUB"
  check "bundle truncated to $cut bytes: refused" refused "truncated"
done
cat v1.bundle manifest.sig >t_trailing.bundle
run verify t_trailing.bundle --trust "$PUB"
check "trailing bytes: refused" refused "trailing bytes"
run verify v1.bundle --trust "$PUB" --compatible other-product
check "wrong compatible string: refused" refused "bundle is for 'sip-outbound-edge-"
run verify v1.bundle --trust manifest.txt
check "a trust file that is not a key: refused" refused "is not a PEM public key"
run verify missing.bundle --trust "$PUB"
check "missing bundle: refused" refused "cannot open missing.bundle"
run verify v1.bundle --trust "$PUB"
check "--trust is said to be development trust" has "^note: development trust: --trust $PUB instead of the installed keyring $KEYRING"

# ---- the installed keyring (issue 18): the default trust, --trust only for development ----------
run verify v1.bundle
check "verify without --trust uses the build-time keyring $KEYRING" refused "$KEYRING"
mkdir -p ring ring_other ring_both ring_empty ring_bad
cp "$PUB" ring/firmware.pub.pem
cp "$OTHER" ring_other/old.pem
cp "$OTHER" ring_both/a-old.pem
cp "$PUB" ring_both/b-new.pem
echo "not a key" >ring_bad/x.pem
cp "$PUB" ring_bad/y.pem
echo "ignored" >ring/README
run verify v1.bundle --keyring ring
check "verify with the keyring: ok" has "^ok v1.bundle"
check "no development note with a keyring" bash -c "! grep -q 'development' '$OUT'"
run verify v1.bundle --keyring ring_other
check "a keyring without the signer: refused" refused "signature does not verify with keyring ring_other"
run verify v1.bundle --keyring ring_both
check "a keyring with the old and the new key (rotation): ok" has "^ok v1.bundle"
run verify v1.bundle --keyring ring_empty
check "an empty keyring: refused" refused "holds no *.pem key"
run verify v1.bundle --keyring ring_bad
check "a keyring with a file that is not a key: refused" refused "is not a PEM public key"
run verify v1.bundle --keyring nowhere
check "a missing keyring: refused" refused "no trust keyring at nowhere"
run verify v1.bundle --keyring ring --trust "$PUB"
check "--keyring with --trust: usage error" test "$rc" = 2

# ---- install -> boot -> mark-good --------------------------------------------------------------
R="$WORK/root"
run install t_file.bundle --root "$R" --trust "$PUB"
check "installing a tampered bundle: refused" refused "SHA-256 does not match"
check "nothing was installed from it" test ! -e "$R/slots/a"
run install v1.bundle --root "$R" --trust "$PUB"
check "install 1.0.0 into an empty root" succeeded
check "installed files are byte-identical" cmp "$R/slots/a/bin/edge-hsm" "$EDGE_HSM"
check "installed executables keep their mode" test "$(stat -c %a "$R/slots/a/bin/edge-image")" = 755
check "boot tries the new slot a" test "$(booted_slot "$R")" = a
run mark-good --root "$R"
check "mark-good commits slot a" succeeded
run install v11.bundle --root "$R" --trust "$PUB"
check "install 1.1.0 goes into the inactive slot b" has "into slot b"
check "slot a was not touched" cmp "$R/slots/a/data/big.bin" big.bin
run status --root "$R"
check "status: a good 1.0.0, b trying 1.1.0" \
  bash -c "grep -q 'slot=a state=good version=1.0.0' '$OUT' && grep -q 'slot=b state=trying version=1.1.0 tries=3' '$OUT'"
check "boot tries slot b" test "$(booted_slot "$R")" = b
run install v11.bundle --root "$R" --trust "$PUB"
check "install into the slot on trial: refused" refused "on trial"
run mark-good --root "$R"
check "mark-good commits slot b" succeeded
check "boot now uses slot b" test "$(booted_slot "$R")" = b

# ---- downgrade --------------------------------------------------------------------------------
run install v09.bundle --root "$R" --trust "$PUB"
check "downgrade 1.1.0 -> 0.9.0: refused" refused "refusing downgrade from 1.1.0"
run install v09.bundle --root "$R" --trust "$PUB" --force
check "downgrade with --force: installed into slot a" has "into slot a"

# ---- boot counter exhaustion -> fallback ----------------------------------------------------------
check "boot 1 of 3 tries slot a" test "$(booted_slot "$R")" = a
check "boot 2 of 3 tries slot a" test "$(booted_slot "$R")" = a
check "boot 3 of 3 tries slot a" test "$(booted_slot "$R")" = a
run boot --root "$R"
check "boot 4 falls back to slot b" has "^slot=b state=good version=1.1.0"
check "the fallback is reported on stderr" grep -q "slot a ran out of tries; falling back to slot b" "$ERR"
run status --root "$R"
check "slot a is bad after running out" has "slot=a state=bad"
run mark-good --root "$R"
check "mark-good after the fallback keeps slot b" has "slot b committed"

# ---- rollback index (issue 18): signed, stored at commit, --force does not pass it -------------
SMALL=(--file "etc/edged.conf=$CONF")
run build --version 2.0.0 --rollback 2 --out r2.bundle "${SMALL[@]}"
check "build with --rollback 2" has "rollback=2"
run build --version 2.1.0 --out r0.bundle "${SMALL[@]}"
check "build without --rollback: index 0" has "rollback=0"
run build --version 1.0.0 --rollback 1 --out r1.bundle "${SMALL[@]}"
check "build with --rollback 1" succeeded
run build --version 1.0.0 --rollback 01 --out rx.bundle "${SMALL[@]}"
check "build with --rollback 01: usage error" test "$rc" = 2
run verify r2.bundle --trust "$PUB"
check "verify shows the signed rollback index" has "rollback=2 "
RB="$WORK/rbroot"
"$EDGE_IMAGE" install r2.bundle --root "$RB" --trust "$PUB" >/dev/null &&
  "$EDGE_IMAGE" boot --root "$RB" >/dev/null && "$EDGE_IMAGE" mark-good --root "$RB" >/dev/null ||
  bad "install and commit r2.bundle"
run status --root "$RB"
check "status: the committed rollback index is stored" has "^active=a booted=a rollback=2"
check "slots.state holds it" grep -q '^rollback 2$' "$RB/slots.state"
run install r0.bundle --root "$RB" --trust "$PUB"
check "newer version, lower rollback index: refused" refused "below the stored rollback index 2"
run install r1.bundle --root "$RB" --trust "$PUB" --force
check "lower rollback index with --force: still refused" refused "--force does not override it"
check "nothing was installed into slot b" test ! -e "$RB/slots/b"
run install r1.bundle --root "$RB" --trust "$PUB" --allow-downgrade
check "--allow-downgrade installs it" has "into slot b"
check "--allow-downgrade warns on stderr" grep -q "warning: downgrade allowed: rollback index 1 below the stored 2" "$ERR"
check "--allow-downgrade is in the audit log" \
  grep -q "action=install uid=[0-9]* slot=b version=1.0.0 rollback=1 stored_rollback=2 force=no downgrade=allowed" \
  "$RB/audit.log"
check "the audit log names development trust" grep -q "trust=\"development key $PUB\"" "$RB/audit.log"
run install r0.bundle --root "$WORK/ringroot" --keyring ring
check "install with the keyring" has "into slot a"
check "the audit log names the keyring" grep -q 'trust="keyring ring"' "$WORK/ringroot/audit.log"
run verify r1.bundle --trust "$PUB" --allow-downgrade
check "--allow-downgrade outside install: usage error" test "$rc" = 2

# ---- interrupted installs: kill -9 at the durable-step boundaries ----------------------------------
K="$WORK/kroot"
"$EDGE_IMAGE" install v1.bundle --root "$K" --trust "$PUB" >/dev/null &&
  "$EDGE_IMAGE" boot --root "$K" >/dev/null && "$EDGE_IMAGE" mark-good --root "$K" >/dev/null ||
  bad "set up the kill root"
# wait_stopped PID: true once the process stopped itself (state T), false when it exited.
wait_stopped() {
  for _ in $(seq 1 600); do
    local st
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ "$st" = T ] && return 0
    [ "$st" = Z ] && return 1
    sleep 0.05
  done
  return 1
}
for point in marked-empty unpacking staged swapped; do
  EDGE_IMAGE_STOP_AT=$point "$EDGE_IMAGE" install v11.bundle --root "$K" --trust "$PUB" >/dev/null 2>&1 &
  child=$!
  if wait_stopped "$child"; then
    kill -9 "$child"
    wait "$child" 2>/dev/null
    child=
    check "kill -9 at '$point': boot still picks the good slot a" test "$(booted_slot "$K")" = a
    check "kill -9 at '$point': slot a intact" cmp "$K/slots/a/data/big.bin" big.bin
  else
    bad "install never reached '$point'"
    wait "$child" 2>/dev/null
    child=
  fi
done
# And at moments nobody chose: while the large file is being written.
for delay in 0.02 0.08 0.15 0.3 0.5; do
  "$EDGE_IMAGE" install v11.bundle --root "$K" --trust "$PUB" >/dev/null 2>&1 &
  child=$!
  sleep "$delay"
  kill -9 "$child" 2>/dev/null
  wait "$child" 2>/dev/null
  child=
  s=$(booted_slot "$K")
  # A kill after the final rename legitimately leaves b trying: then only a mark-good is missing.
  if [ "$s" = b ]; then
    check "kill -9 after ${delay}s came after the commit: b is complete" cmp "$K/slots/b/data/big.bin" big.bin
    "$EDGE_IMAGE" boot --root "$K" >/dev/null; "$EDGE_IMAGE" boot --root "$K" >/dev/null
    check "kill -9 after ${delay}s: the uncommitted b runs out and falls back to a" test "$(booted_slot "$K")" = a
  else
    check "kill -9 after ${delay}s: boot picks the good slot a" test "$s" = a
  fi
done
run install v11.bundle --root "$K" --trust "$PUB"
check "a re-install after the kills works" succeeded
check "no staging leftovers after it" bash -c "! ls -d '$K'/slots/*.new '$K'/slots/*.old 2>/dev/null | grep -q ."
check "the re-installed slot b is complete" cmp "$K/slots/b/data/big.bin" big.bin
check "boot tries b after the re-install" test "$(booted_slot "$K")" = b

# ---- robustness of the state file and arguments ----------------------------------------------------
printf 'edge-slots 1\nactive a\n' >"$K/slots.state"
run boot --root "$K"
check "a broken state file is refused, not guessed" refused "slot state"
run boot --root "$WORK/nowhere"
check "boot of an empty root: no bootable slot" refused "no bootable slot"
run build --version x.y --out z.bundle "${FILES[@]}"
check "build with a malformed version: usage error" test "$rc" = 2
run build --version 2.0 --out z.bundle --key nokey "${FILES[@]}"
check "build with a key not in the HSM: refused with the hint" refused "edge-hsm signkey create nokey"
run frobnicate
check "unknown command: usage error" test "$rc" = 2

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
