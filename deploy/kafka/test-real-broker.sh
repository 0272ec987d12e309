#!/usr/bin/env bash
# The real-broker pass of `make test`: the packages whose tests use
# internal/testkafka run again against Apache Kafka (with-broker.sh).
# Without java and mvn it prints one line and passes, except under CI=true,
# where a skipped real-broker pass is a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
missing=()
command -v java >/dev/null 2>&1 || missing+=(java)
command -v mvn >/dev/null 2>&1 || missing+=(mvn)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  echo "real-broker pass: skipped (no ${missing[*]} on PATH)"
  if [ "${CI:-}" = "true" ]; then
    echo "real-broker pass: CI=true requires it; failing" >&2
    exit 1
  fi
  exit 0
fi
pkgs=$(go list -f '{{.ImportPath}} {{join .TestImports " "}} {{join .XTestImports " "}}' ./... | awk '$1 !~ /internal\/testkafka$/ && /internal\/testkafka/ {print $1}')
if [ -z "$pkgs" ]; then
  echo "real-broker pass: no package uses internal/testkafka"
  exit 0
fi
echo "real-broker pass on Apache Kafka: $(echo $pkgs | tr ' ' '\n' | sed 's|github.com/atrelay/atrelay/||' | tr '\n' ' ')"
# shellcheck disable=SC2086
exec bash deploy/kafka/with-broker.sh go test -race -count=1 $pkgs
