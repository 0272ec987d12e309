#!/usr/bin/env bash
# Runs every fuzz target of the module for a bounded time each ($1, default 15s).
set -euo pipefail
fuzztime=${1:-15s}
cd "$(dirname "$0")/.."
found=0
while IFS=: read -r file _ line; do
  name=$(sed -E 's/^func (Fuzz[A-Za-z0-9_]*).*/\1/' <<<"$line")
  pkg=./$(dirname "$file")
  echo "== $pkg $name ($fuzztime)"
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg"
  found=$((found + 1))
done < <(grep -rn --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(' . | sort)
echo "ran $found fuzz targets"
[ "$found" -gt 0 ]
