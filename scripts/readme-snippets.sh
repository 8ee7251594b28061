#!/usr/bin/env bash
# Runs the README's shell blocks marked "```sh offline", in order, from the repository root: the
# quick start and deploy steps that work without AWS. A new user runs exactly these; so does
# `make test`. Stops at the first that fails, naming it.
set -euo pipefail
cd "$(dirname "$0")/.."
n=0
while IFS= read -r -d '' block; do
  n=$((n + 1))
  echo "README block $n:"
  printf '%s\n' "$block" | sed 's/^/  | /'
  if ! bash -eo pipefail -c "$block"; then
    echo "README block $n failed" >&2
    exit 1
  fi
done < <(awk '/^```sh offline$/ { on = 1; next } on && /^```$/ { on = 0; printf "%c", 0; next } on { print }' README.md)
if [ "$n" -eq 0 ]; then
  echo "README.md marks no block \`\`\`sh offline: nothing a new user runs is checked" >&2
  exit 1
fi
echo "README: the $n offline block(s) ran"
