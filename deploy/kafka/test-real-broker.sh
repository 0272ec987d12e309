#!/usr/bin/env bash
# The real-broker pass of `make test` (make test-kafka): every package whose
# code or tests import internal/testkafka runs again, with the race detector,
# against Apache Kafka started by with-broker.sh.
#
# Without java or mvn (or python3, which with-broker.sh uses) it prints one
# line and passes, except under CI=true, where a skipped pass is a failure.
# Extra arguments go to `go test` (e.g. -run TestBrokerRestart -v).
set -euo pipefail
cd "$(dirname "$0")/../.."
skip() {
  echo "real-broker pass: skipped ($1)"
  [ "${CI:-}" = "true" ] && exit 1
  exit 0
}
command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1 || skip "no java/mvn on PATH"
command -v python3 >/dev/null 2>&1 || skip "no python3 on PATH"
# testkafka itself is left out: it is the switch, not a user of it.
pkgs=$(go list -f '{{.ImportPath}} {{join .Imports " "}} {{join .TestImports " "}} {{join .XTestImports " "}}' ./... |
  awk '$1 !~ /\/internal\/testkafka$/ && / github\.com\/atrelay\/atrelay\/internal\/testkafka( |$)/ { print $1 }')
if [ -z "$pkgs" ]; then
  echo "real-broker pass: no package imports internal/testkafka yet; nothing to run"
  exit 0
fi
echo "real-broker pass on Apache Kafka:" $(echo "$pkgs" | sed 's|^github.com/atrelay/atrelay/||')
# -p 1: the packages share one broker and some tests stop and restart it
# (ATRELAY_KAFKA_CTL), which would break a package running alongside.
# shellcheck disable=SC2086 # one argument per package
exec bash deploy/kafka/with-broker.sh go test -race -count=1 -p 1 "$@" $pkgs
