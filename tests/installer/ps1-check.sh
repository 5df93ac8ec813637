#!/bin/bash
# install.ps1 / uninstall.ps1 cannot run here (no PowerShell on Debian, and Wine has
# none), so this is a static check only:
#  - a real parse with the tree-sitter PowerShell grammar (npm packages
#    tree-sitter-powershell + web-tree-sitter, WebAssembly, installed on first use
#    into LCOW_PS_PARSER_DIR); without node/npm or the registry it says so and
#    falls back to a bracket-balance check;
#  - the admin check comes before any change, and the exact lcowsnap flags they use.
# It proves nothing about runtime behaviour; installer/README.md says so too.
TEST_NAME=installer_ps1_check
. "$(dirname "$0")/common.sh"
dir=${LCOW_INSTALLER_DIR:?}

balanced() { # strip comments and strings, then count (){}[]
  python3 - "$1" <<'PY'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
text = re.sub(r"<#.*?#>", "", text, flags=re.S)
out, i, n = [], 0, len(text)
while i < n:
    c = text[i]
    if c == "#":
        while i < n and text[i] != "\n": i += 1
        continue
    if c in "'\"":
        q = c; i += 1
        while i < n:
            if text[i] == "`" and q == '"': i += 2; continue
            if text[i] == q:
                if i + 1 < n and text[i + 1] == q: i += 2; continue
                break
            i += 1
        i += 1; continue
    out.append(c); i += 1
stack, pairs = [], {")": "(", "}": "{", "]": "["}
for ch in out:
    if ch in "({[": stack.append(ch)
    elif ch in ")}]":
        if not stack or stack.pop() != pairs[ch]: sys.exit("unbalanced " + ch)
if stack: sys.exit("unclosed " + "".join(stack))
PY
}

parser_modules=
if [ -n "${LCOW_PS_PARSER_DIR:-}" ] && command -v node >/dev/null && command -v npm >/dev/null; then
  if [ ! -f "$LCOW_PS_PARSER_DIR/node_modules/tree-sitter-powershell/tree-sitter-powershell.wasm" ]; then
    mkdir -p "$LCOW_PS_PARSER_DIR"
    (cd "$LCOW_PS_PARSER_DIR" && npm install --no-save --ignore-scripts --no-audit --no-fund \
      tree-sitter-powershell@0.26.4 web-tree-sitter@0.27.2 >npm-install.log 2>&1) ||
      log "NOTE: npm install of the PowerShell grammar failed (see $LCOW_PS_PARSER_DIR/npm-install.log)"
  fi
  [ -f "$LCOW_PS_PARSER_DIR/node_modules/tree-sitter-powershell/tree-sitter-powershell.wasm" ] &&
    parser_modules="$LCOW_PS_PARSER_DIR/node_modules"
fi
if [ -n "$parser_modules" ]; then
  # --liftoff-only: without it V8 keeps optimising the large grammar module in the
  # background and the process takes minutes to exit after the parse is done.
  node --liftoff-only "$(dirname "$0")/ps-parse.mjs" "$parser_modules" "$dir/install.ps1" "$dir/uninstall.ps1" ||
    fail "PowerShell syntax errors (tree-sitter-powershell grammar)"
else
  log "NOTE: no node/npm PowerShell grammar available: only the bracket-balance check runs"
fi

for script in install.ps1 uninstall.ps1; do
  f="$dir/$script"
  [ -f "$f" ] || fail "$script missing"
  balanced "$f" || fail "$script: brackets do not balance"
  grep -q '^\[CmdletBinding()\]' "$f" && grep -q '^param(' "$f" || fail "$script has no param block"
  admin_line=$(grep -n 'if (-not (Test-Administrator))' "$f" | head -1 | cut -d: -f1)
  # first line after the comment-based help that changes the machine
  first_change=$(awk '/^#>/ { body = 1; next } body && !/^[[:space:]]*#/ && !/Write-Host/ &&
    /New-Item|Copy-Item|Remove-Item|Stop-Service|Start-Service|--register-service|--unregister-service/ { print NR; exit }' "$f")
  [ -n "$admin_line" ] && [ "$admin_line" -lt "$first_change" ] ||
    fail "$script: administrator check (line $admin_line) is not before the first change (line $first_change)"
  grep -q 'exit 1' "$f" || fail "$script never exits non-zero"
done
grep -q "'--register-service'" "$dir/install.ps1" || fail "install.ps1 does not call --register-service"
# ImagePath quoted (CWE-428): only --register-service registers (it quotes the exe
# path); New-Service or `sc create` would take whatever quoting the script built.
if grep -nEi 'New-Service|sc(\.exe)?["'"'"']?[[:space:]]+create' "$dir/install.ps1"; then
  fail "install.ps1 registers the service itself (New-Service / sc create), not through --register-service"
fi
grep -q "@('--root', \$Root)" "$dir/install.ps1" || fail "install.ps1 does not pass -Root as --root"
grep -q "@('--address', \$Address)" "$dir/install.ps1" || fail "install.ps1 does not pass -Address as --address"
grep -q "\$ctlArgs += 'version'" "$dir/install.ps1" || fail "install.ps1 does not verify with lcowsnapctl version"
grep -q -- '--unregister-service' "$dir/uninstall.ps1" || fail "uninstall.ps1 does not call --unregister-service"
grep -q 'if (\$PurgeData)' "$dir/uninstall.ps1" || fail "uninstall.ps1 deletes data without -PurgeData"
[ "$(grep -c 'Remove-Item -LiteralPath \$stateDir' "$dir/uninstall.ps1")" -eq 1 ] ||
  fail "uninstall.ps1 removes the state directory in more than one place"
log "static checks OK$([ -n "$parser_modules" ] && echo ', tree-sitter parse clean') (not executed: no PowerShell on this host)"
