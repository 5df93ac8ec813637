#!/bin/sh
# torture_gate.sh COMMAND...: runs a long-form reliability campaign only when
# it was asked for: LCOW_TORTURE=1, or the ctest that started us selects the
# torture label (`make torture` runs `ctest -L torture`). Otherwise exits 77,
# which CTest reports as skipped, so `make test` (a plain ctest) stays short.
want=${LCOW_TORTURE:-}
if [ -z "$want" ] && [ -r "/proc/$PPID/cmdline" ]; then
    args=$(tr '\0' '\n' <"/proc/$PPID/cmdline")
    prev=
    for a in $args; do
        case "$prev" in
        -L | --label-regex) case "$a" in *torture*) want=1 ;; esac ;;
        esac
        case "$a" in
        -Ltorture* | --label-regex=*torture*) want=1 ;;
        esac
        prev=$a
    done
fi
if [ "$want" != 1 ]; then
    echo "long-form campaign skipped: run it with 'make torture' (ctest -L torture) or LCOW_TORTURE=1"
    exit 77
fi
exec "$@"
