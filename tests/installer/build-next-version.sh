#!/bin/bash
# Fixture for installer_msi_upgrade: configures a second build tree of the same
# sources with the version bumped (next-version.cmake) and builds its MSI, which
# rebuilds lcowsnap.exe and lcowsnapctl.exe with the new version compiled in.
# Incremental after the first run. Runs no Windows code.
TEST_NAME=installer_build_next_version
. "$(dirname "$0")/common.sh"
skip_unless_built

: "${LCOW_NEXT_BUILD_DIR:?}" "${LCOW_NEXT_VERSION:?}" "${LCOW_NEXT_MSI:?}" "${LCOW_SOURCE_DIR:?}"
configure_args=(-S "$LCOW_SOURCE_DIR" -B "$LCOW_NEXT_BUILD_DIR" -G "${LCOW_GENERATOR:?}"
  "-DCMAKE_TOOLCHAIN_FILE=${LCOW_TOOLCHAIN_FILE:?}"
  "-DCMAKE_BUILD_TYPE=${LCOW_BUILD_TYPE:-Debug}"
  "-DLCOW_DEPS_PREFIX=${LCOW_DEPS_PREFIX:?}"
  "-DLCOW_WINEPREFIX=$WINEPREFIX"
  "-DCMAKE_PROJECT_lcowsnap_INCLUDE=$(dirname "$(readlink -f "$0")")/next-version.cmake"
  "-DLCOW_NEXT_VERSION=$LCOW_NEXT_VERSION")
[ -n "${LCOW_C_FLAGS_DEBUG:-}" ] && configure_args+=("-DCMAKE_C_FLAGS_DEBUG=$LCOW_C_FLAGS_DEBUG")
log "configuring $LCOW_NEXT_BUILD_DIR with version $LCOW_NEXT_VERSION"
"${LCOW_CMAKE:-cmake}" "${configure_args[@]}" >"$LCOW_NEXT_BUILD_DIR.configure.log" 2>&1 ||
  { tail -30 "$LCOW_NEXT_BUILD_DIR.configure.log"; fail "configure of the next-version tree failed"; }
log "building lcowsnap_msi there (lcowsnap.exe, lcowsnapctl.exe, MSI)"
"${LCOW_CMAKE:-cmake}" --build "$LCOW_NEXT_BUILD_DIR" --target lcowsnap_msi -j2 >"$LCOW_NEXT_BUILD_DIR.build.log" 2>&1 ||
  { tail -30 "$LCOW_NEXT_BUILD_DIR.build.log"; fail "build of the next-version MSI failed"; }
[ -f "$LCOW_NEXT_MSI" ] || fail "$LCOW_NEXT_MSI was not produced"
version=$(msiinfo export "$LCOW_NEXT_MSI" Property | awk -F '\t' '$1 == "ProductVersion" { print $2 }' | tr -d '\r')
[ "$version" = "$LCOW_NEXT_VERSION" ] || fail "next MSI has ProductVersion '$version'"
log "built $(basename "$LCOW_NEXT_MSI")"
