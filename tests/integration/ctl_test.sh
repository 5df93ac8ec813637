#!/bin/bash
# ctl_test.sh CTL...: drives every lcowsnapctl command against the service at
# $LCOW_IT_ADDRESS (see with_service.sh) and checks output, exit status and
# the "CODE: message" stderr convention. CTL... is the lcowsnapctl command
# (Wine-prefixed for the Windows exe). LCOW_IT_SCRATCH_DIR: where
# create-scratch may write (as the service sees it).
set -u
ctl=("$@")
failures=0
out= err= rc=

run() {
    local e o
    e=$(mktemp)
    o=$(mktemp)
    "${ctl[@]}" --address "$LCOW_IT_ADDRESS" "$@" >"$o" 2>"$e"
    rc=$?
    out=$(tr -d '\r' <"$o")
    err=$(tr -d '\r' <"$e")
    rm -f "$e" "$o"
}

fail() {
    echo "FAIL: $*" >&2
    echo "  exit=$rc" >&2
    echo "  stdout: $out" >&2
    echo "  stderr: $err" >&2
    failures=$((failures + 1))
}

expect_ok() { # expect_ok PATTERN ARGS...: exit 0 and stdout matches PATTERN
    local pattern=$1
    shift
    run "$@"
    [ "$rc" = 0 ] || { fail "$* exited $rc"; return; }
    [ -z "$pattern" ] || grep -Eq -- "$pattern" <<<"$out" || fail "$*: stdout lacks /$pattern/"
}

expect_err() { # expect_err STATUS STDERR-PREFIX ARGS...
    local status=$1 prefix=$2
    shift 2
    run "$@"
    [ "$rc" = "$status" ] || { fail "$*: exit $rc, wanted $status"; return; }
    [[ "$err" == "$prefix"* ]] || fail "$*: stderr does not start with '$prefix'"
}

expect_ok 'Protocol: +1' version
expect_ok '"protocol": 1' --json version
expect_ok '^TYPE +SOURCE +OPTIONS' prepare --label it=ctl --label tier=base it/ctl/extract-base
expect_ok '' commit --label it=ctl it/ctl/layer it/ctl/extract-base
expect_ok 'lcow-layer .*rw,parentLayerPaths=\[.+\]' prepare it/ctl/c it/ctl/layer
expect_ok 'lcow-layer .*ro' view it/ctl/v it/ctl/layer
expect_ok '"type": "lcow-layer"' --json mounts it/ctl/c
expect_err 1 'FailedPrecondition: ' mounts it/ctl/layer
expect_err 1 'AlreadyExists: ' prepare it/ctl/c
expect_err 1 'NotFound: ' prepare it/ctl/x it/ctl/missing
expect_ok '"kind": "committed"' info it/ctl/layer
expect_ok '"it": "ctl"' info it/ctl/layer
expect_err 1 'NotFound: ' info it/ctl/none
expect_ok '^it/ctl/c +it/ctl/layer +active$' ls
expect_ok '^it/ctl/v +it/ctl/layer +view$' ls --filter 'kind==view'
run ls --filter 'kind==view'
[ "$(grep -c '^it/' <<<"$out")" = 1 ] || fail "ls --filter kind==view shows more than the view"
expect_err 1 'InvalidArgument: ' ls --filter 'kind=='
run --json ls
/usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); assert len(d)==3, d' <<<"$out" ||
    fail "--json ls is not a JSON array of 3 snapshots"
expect_ok '^it/ctl/layer$' tree
expect_ok '^ \\_ it/ctl/c$' tree
run --json tree
/usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[0]["children"], d' <<<"$out" ||
    fail "--json tree is not a JSON tree"
expect_ok '^x=1$' label it/ctl/layer x=1 y=2
run label it/ctl/layer x=
[ "$rc" = 0 ] && ! grep -q '^x=' <<<"$out" && grep -q '^y=2$' <<<"$out" || fail "label x= did not delete x"
expect_ok '^it/ctl/c ' usage it/ctl/c
expect_ok '^KEY +SIZE +INODES' usage
expect_ok '"inodes"' --json usage
# The ext4 view of the scratch disk (a fresh ext4: 11 inodes used) and
# Compact (Windows: an Event Log event each, under Wine too).
expect_ok '^it/ctl/c .* 11$' usage it/ctl/c
expect_ok '"ext4_used_inodes": 11' --json usage it/ctl/c
expect_ok '^it/ctl/c: .* -> .* given back\)$' compact it/ctl/c
expect_ok '"disks": 1, ' --json compact --all
expect_err 1 'FailedPrecondition: ' compact it/ctl/layer
expect_err 1 'NotFound: ' compact it/ctl/none
expect_err 2 'InvalidArgument: ' compact
expect_err 1 'FailedPrecondition: cannot remove' rm it/ctl/layer
expect_ok '' rm it/ctl/c it/ctl/v it/ctl/layer
expect_err 1 'NotFound: ' rm it/ctl/layer
expect_ok '' cleanup
if [ -n "${LCOW_IT_SCRATCH_DIR:-}" ]; then
    sep=/
    [[ "$LCOW_IT_SCRATCH_DIR" == *\\* ]] && sep='\'
    expect_ok 'ctl\.vhdx$' create-scratch --size-gb 1 "$LCOW_IT_SCRATCH_DIR${sep}ctl.vhdx"
fi
expect_err 1 'InvalidArgument: ' create-scratch relative.vhdx
expect_err 2 'InvalidArgument: unknown command' bogus
expect_err 2 'InvalidArgument: ' commit only-one-arg
expect_err 2 'InvalidArgument: bad label' prepare --label novalue it/ctl/z
# A service that is not there: Unavailable, exit 1.
out=$("${ctl[@]}" --address "${LCOW_IT_ADDRESS}-absent" version 2>&1)
rc=$?
out=$(tr -d '\r' <<<"$out")
err=$out
[ "$rc" = 1 ] && [[ "$out" == Unavailable:* ]] || fail "absent service: want exit 1 and Unavailable"

if [ $failures != 0 ]; then
    echo "ctl_test: $failures failure(s)" >&2
    exit 1
fi
echo "ctl_test: all lcowsnapctl checks passed"
