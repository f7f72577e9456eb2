#!/usr/bin/env bash
# The edge-hsm CLI as an operator uses it: lab token, key sets, selftest, and its error behaviour.
#
# usage: hsm_tool_test.sh EDGE_HSM SHIM_MODULE SOFTHSM_MODULE
# Prints one "ok - ..." / "not ok - ..." line per check and "N passed, N failed" at the end;
# exits non-zero when a check failed. Never skips: a missing tool is a failure.
set -uo pipefail

EDGE_HSM=${1:?edge-hsm path}
SHIM=${2:?shim module path}
SOFTHSM=${3:?SoftHSM module path}

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok - $*"; }
bad() { failed=$((failed + 1)); echo "not ok - $*"; }
check() {  # check DESCRIPTION COMMAND...: passes when COMMAND succeeds
  local what=$1; shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}

for tool in "$EDGE_HSM" python3 softhsm2-util pkcs11-tool; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "not ok - required tool missing: $tool"
    echo "0 passed, 1 failed"
    exit 1
  fi
done
[ -r "$SHIM" ] || { echo "not ok - shim module missing: $SHIM"; echo "0 passed, 1 failed"; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/edge-hsm-cli-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export EDGE_STATE_DIR="$WORK/state"
unset SOFTHSM2_CONF EDGE_P11SHIM_CONTROL EDGE_P11SHIM_STATS EDGE_P11SHIM_MODULE

OUT="$WORK/out"
ERR="$WORK/err"
# run ARGS...: runs edge-hsm, keeps stdout/stderr in $OUT/$ERR, sets $rc.
run() { "$EDGE_HSM" "$@" >"$OUT" 2>"$ERR"; rc=$?; }
lines() { wc -l <"$1" | tr -d ' '; }
# A refused command: exit status $1, exactly one line on stderr that starts with
# "edge-hsm: " and contains $2, nothing on stdout.
refused() {
  local want_rc=$1 needle=$2
  [ "$rc" = "$want_rc" ] || { echo "  exit $rc, expected $want_rc; stderr: $(cat "$ERR")"; return 1; }
  [ "$(lines "$ERR")" = 1 ] || { echo "  stderr has $(lines "$ERR") lines:"; sed 's/^/  | /' "$ERR"; return 1; }
  grep -q '^edge-hsm: ' "$ERR" || { echo "  stderr: $(cat "$ERR")"; return 1; }
  grep -qF -- "$needle" "$ERR" || { echo "  stderr lacks '$needle': $(cat "$ERR")"; return 1; }
  [ ! -s "$OUT" ] || { echo "  stdout not empty: $(cat "$OUT")"; return 1; }
}
succeeded() { [ "$rc" = 0 ] || { echo "  exit $rc; stderr: $(cat "$ERR")"; return 1; }; }
has() { grep -qE -- "$1" "$OUT" || { echo "  stdout lacks /$1/:"; sed 's/^/  | /' "$OUT"; return 1; }; }
hasnt() { ! grep -qE -- "$1" "$OUT" || { echo "  stdout has /$1/:"; sed 's/^/  | /' "$OUT"; return 1; }; }
mode_of() { stat -c %a "$1"; }
json() {  # json PYTHON-EXPRESSION over d = the parsed stdout; true when it holds
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' "$OUT" "$1" \
    || { echo "  json check failed: $1"; sed 's/^/  | /' "$OUT"; return 1; }
}

HSM_DIR="$EDGE_STATE_DIR/hsm"

# ---- before any token exists ---------------------------------------------------------
run keyset list
check "keyset list without a lab token: one line naming init-lab-token, exit 1" refused 1 "init-lab-token"

# ---- init-lab-token, twice ------------------------------------------------------------
run init-lab-token
check "init-lab-token creates the token" succeeded
check "init-lab-token reports a new token" has "created"
check "user PIN file has mode 0600" test "$(mode_of "$HSM_DIR/user-pin")" = 600
check "SO PIN file has mode 0600" test "$(mode_of "$HSM_DIR/so-pin")" = 600
check "softhsm2.conf points at the state directory" grep -q "$HSM_DIR/tokens" "$HSM_DIR/softhsm2.conf"
check "the PIN is not printed" bash -c "! grep -qF -- \"\$(cat '$HSM_DIR/user-pin')\" '$OUT' '$ERR'"
serial1=$(sed -n 's/^token .* serial \([0-9a-f]*\).*/\1/p' "$OUT")
check "init-lab-token prints the serial" test -n "$serial1"
pin_sum=$(cat "$HSM_DIR/user-pin" "$HSM_DIR/so-pin" | sha256sum)
pin_inode=$(stat -c %i "$HSM_DIR/user-pin")
tokens_before=$(ls "$HSM_DIR/tokens" | wc -l)

run init-lab-token
check "second init-lab-token succeeds" succeeded
check "second init-lab-token keeps the token" has "already present"
check "second init-lab-token keeps the serial" has "serial $serial1"
check "second init-lab-token keeps both PIN files" test "$(cat "$HSM_DIR/user-pin" "$HSM_DIR/so-pin" | sha256sum)" = "$pin_sum"
check "second init-lab-token does not rewrite the user PIN file" test "$(stat -c %i "$HSM_DIR/user-pin")" = "$pin_inode"
check "user PIN file still 0600" test "$(mode_of "$HSM_DIR/user-pin")" = 600
check "no second token" test "$(ls "$HSM_DIR/tokens" | wc -l)" = "$tokens_before"
export SOFTHSM2_CONF="$HSM_DIR/softhsm2.conf"
check "softhsm2-util sees exactly one edge-lab token" \
  test "$(softhsm2-util --show-slots | grep -c 'Label: *edge-lab *$')" = 1
unset SOFTHSM2_CONF

# ---- key sets -------------------------------------------------------------------------
run keyset create sipflow
check "keyset create" succeeded
check "create shows v1 active minting" has "^sipflow v1 active minting created=[0-9T:Z-]+$"

run keyset create sipflow
check "creating an existing set: one line naming it, exit 1" refused 1 "sipflow"

run keyset rotate sipflow
check "keyset rotate" succeeded
check "rotate: v2 is minting" has "^sipflow v2 active minting"
check "rotate: v1 stays active, not minting" has "^sipflow v1 active created="

run keyset create short --retain 2
check "keyset create --retain 2" succeeded

run keyset list --json
check "list --json succeeds" succeeded
check "list --json: two sets" json 'sorted(s["name"] for s in d["key_sets"]) == ["short", "sipflow"]'
check "list --json: sipflow mints v2, retains 3" \
  json '[(s["minting_version"], s["retain"]) for s in d["key_sets"] if s["name"]=="sipflow"] == [(2, 3)]'
check "list --json: versions with states" \
  json '[(v["version"], v["state"], v["minting"]) for s in d["key_sets"] if s["name"]=="sipflow" for v in s["versions"]] == [(1,"active",False),(2,"active",True)]'
check "list --json: created is a unix time" \
  json 'all(isinstance(v["created_unix"], int) and v["created_unix"] > 1500000000 for s in d["key_sets"] for v in s["versions"])'

run keyset retire sipflow 1
check "keyset retire" succeeded
check "retire: v1 retired" has "^sipflow v1 retired"
check "retire: v2 still minting" has "^sipflow v2 active minting"
run keyset retire sipflow 2
check "retire the minting version" succeeded
check "no version mints when all are retired" hasnt "minting"
run keyset rotate sipflow
check "rotate after retiring everything: v3 mints" has "^sipflow v3 active minting"

run keyset rotate short
run keyset rotate short
check "retention 2: after two rotations the two newest remain" has "^short v2 active created="
check "retention 2: v3 minting" has "^short v3 active minting"
check "retention 2: v1 destroyed" hasnt "^short v1 "

run keyset list
check "keyset list (text)" succeeded
check "text list: one line per version" test "$(grep -c '^sipflow v' "$OUT")" = 3

run keyset retire sipflow 9
check "retiring an unknown version: one line, exit 1" refused 1 "9"

run keyset destroy short
check "keyset destroy" succeeded
run keyset list --json
check "destroyed set is gone" json '[s["name"] for s in d["key_sets"]] == ["sipflow"]'
run keyset destroy short
check "destroying a missing set: one line, exit 1" refused 1 "short"

# ---- selftest -------------------------------------------------------------------------
run selftest
check "selftest succeeds" succeeded
check "selftest reports CKM_SHA256_HMAC" has "CKM_SHA256_HMAC: yes"
check "selftest round trip ok" has "^selftest: ok$"

# ---- bad arguments: one line on stderr, exit 2, before touching the HSM ----------------
run
check "no command" refused 2 "command"
run frobnicate
check "unknown command" refused 2 "frobnicate"
run --frob keyset list
check "unknown option" refused 2 "--frob"
run keyset
check "keyset without subcommand" refused 2 "subcommand"
run keyset create 'bad/name'
check "invalid key set name" refused 2 "bad/name"
run keyset create "$(printf 'x%.0s' $(seq 65))"
check "65-character name" refused 2 "invalid key set name"
run keyset create extra --retain 0
check "--retain 0" refused 2 "--retain"
run keyset create extra --retain many
check "--retain not a number" refused 2 "--retain"
run keyset retire sipflow x
check "retire with a non-numeric version" refused 2 "VERSION"
run keyset rotate
check "rotate without a name" refused 2 "rotate NAME"
run keyset list extra-arg
check "list with an extra argument" refused 2 "list"
run keyset rotate sipflow --json
check "--json outside list" refused 2 "--json"
run --module "$SOFTHSM" keyset list
check "--module without PIN source" refused 2 "--pin-file"
run keyset list --json
check "bad arguments changed nothing" json '[s["name"] for s in d["key_sets"]] == ["sipflow"]'

# ---- PIN problems: one line, exit 1, the PIN never shown, never a second attempt -----------
printf 'wrong-pin-4711\n' >"$WORK/wrong.pin"
chmod 600 "$WORK/wrong.pin"
# A login by hand with the token's own tool (pkcs11-tool): resets SoftHSM's wrong-PIN counter.
login_by_hand() {
  SOFTHSM2_CONF="$HSM_DIR/softhsm2.conf" pkcs11-tool --module "$SOFTHSM" --token-label edge-lab --login \
    --pin "$(head -n 1 "$HSM_DIR/user-pin")" --list-objects >/dev/null 2>&1
}
run --pin-file "$WORK/wrong.pin" keyset list
check "wrong PIN: one line naming CKR_PIN_INCORRECT, exit 1" refused 1 "CKR_PIN_INCORRECT"
check "wrong PIN is not echoed" bash -c "! grep -q wrong-pin-4711 '$ERR'"

# The token now reports CKF_USER_PIN_COUNT_LOW: no C_Login at all, even with the right PIN, until
# a login by hand resets the counter. Counted through the fault shim (forwarding only).
: >"$WORK/shim.control"
EDGE_P11SHIM_MODULE="$SOFTHSM" EDGE_P11SHIM_CONTROL="$WORK/shim.control" EDGE_P11SHIM_STATS="$WORK/shim.stats" \
  SOFTHSM2_CONF="$HSM_DIR/softhsm2.conf" \
  "$EDGE_HSM" --module "$SHIM" --token edge-lab --pin-file "$HSM_DIR/user-pin" keyset list >"$OUT" 2>"$ERR"
rc=$?
check "after a wrong PIN even the right one is not tried: one line naming the flag" refused 1 "CKF_USER_PIN_COUNT_LOW"
check "after a wrong PIN: no C_Login reached the token" grep -qx "calls C_Login 0" "$WORK/shim.stats"
check "a login by hand resets the counter" login_by_hand
run keyset list
check "the token is not locked after a wrong PIN" succeeded
run --pin-file "$WORK/wrong.pin" keyset list
run --pin-file "$WORK/wrong.pin" keyset list
check "a second wrong PIN is not tried" refused 1 "CKF_USER_PIN_COUNT_LOW"
check "a login by hand resets the counter again" login_by_hand
run keyset list
check "still not locked after more wrong PINs" succeeded

cp "$HSM_DIR/user-pin" "$WORK/open.pin"
chmod 644 "$WORK/open.pin"
run --pin-file "$WORK/open.pin" keyset list
check "world-readable PIN file refused: one line, exit 1" refused 1 "$WORK/open.pin"
check "the PIN of a refused file is not echoed" bash -c "! grep -qF -- \"\$(cat '$HSM_DIR/user-pin')\" '$ERR'"
run --pin-file "$WORK/absent.pin" keyset list
check "missing PIN file: one line, exit 1" refused 1 "absent.pin"

# ---- a non-lab HSM by --module / --token / --token-uri --------------------------------
export SOFTHSM2_CONF="$HSM_DIR/softhsm2.conf"
run --module "$SOFTHSM" --token edge-lab --pin-file "$HSM_DIR/user-pin" keyset list --json
check "explicit --module/--token/--pin-file" json '[s["name"] for s in d["key_sets"]] == ["sipflow"]'
run --module "$SOFTHSM" --token-uri "pkcs11:token=edge-lab;serial=$serial1" --pin-file "$HSM_DIR/user-pin" keyset list
check "--token-uri with serial" succeeded
run --module "$SOFTHSM" --token no-such-token --pin-file "$HSM_DIR/user-pin" keyset list
check "unknown token label: one line naming it, exit 1" refused 1 "no-such-token"
run --module "$WORK/nope.so" --token edge-lab --pin-file "$HSM_DIR/user-pin" keyset list
check "bad module path: one line naming it, exit 1" refused 1 "$WORK/nope.so"
unset SOFTHSM2_CONF

# ---- two provisioning runs at once (first boot and an operator) make one token --------
export EDGE_STATE_DIR="$WORK/race"
"$EDGE_HSM" init-lab-token >"$WORK/race1.out" 2>&1 &
p1=$!
"$EDGE_HSM" init-lab-token >"$WORK/race2.out" 2>&1 &
p2=$!
wait $p1; rc1=$?
wait $p2; rc2=$?
check "concurrent init-lab-token: both succeed" test "$rc1/$rc2" = 0/0
check "concurrent init-lab-token: exactly one created the token" \
  test "$(cat "$WORK/race1.out" "$WORK/race2.out" | grep -c ' created$')" = 1
check "concurrent init-lab-token: one token directory" test "$(ls "$EDGE_STATE_DIR/hsm/tokens" | wc -l)" = 1
run keyset create after-race
check "concurrent init-lab-token: the token works with the PIN file" succeeded

# ---- a token whose user PIN file was lost: refused clearly, nothing overwritten -------
mv "$EDGE_STATE_DIR/hsm/user-pin" "$WORK/lost-user-pin"
run init-lab-token
check "init-lab-token with the user PIN file lost: one line, exit 1" refused 1 "user-pin"
check "no new PIN file was invented for the existing token" test ! -e "$EDGE_STATE_DIR/hsm/user-pin"
mv "$WORK/lost-user-pin" "$EDGE_STATE_DIR/hsm/user-pin"
run init-lab-token
check "with the PIN file back, init-lab-token is content again" has "already present"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
