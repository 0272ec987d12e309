#!/usr/bin/env bash
# broker-ctl.sh start|stop: starts or stops the test broker whose state is in
# $ATRELAY_KAFKA_DIR (server.properties, classpath, pid, logs). Used by
# with-broker.sh and, through $ATRELAY_KAFKA_CTL, by tests that restart the
# broker mid-run. Restarting reuses the same ports and data.
set -euo pipefail
dir=${ATRELAY_KAFKA_DIR:?ATRELAY_KAFKA_DIR is not set}
here=$(cd "$(dirname "$0")" && pwd)
case "${1:-}" in
start)
  cp=$(cat "$dir/classpath")
  java -Xms128m -Xmx512m -XX:+UseSerialGC -Djava.awt.headless=true \
    -Dkafka.logs.dir="$dir/logs" -Dlog4j2.configurationFile="$here/log4j2.properties" \
    -cp "$cp" kafka.Kafka "$dir/server.properties" >>"$dir/logs/stdout.log" 2>&1 &
  echo $! >"$dir/pid"
  (cd "$here/../.." && go run ./deploy/kafka/waitbroker -timeout 90s "$(cat "$dir/brokers")") || {
    echo "broker did not become ready; last lines of its log:" >&2
    tail -n 40 "$dir/logs/broker.log" "$dir/logs/stdout.log" >&2 || true
    exit 1
  }
  ;;
stop)
  [ -f "$dir/pid" ] || exit 0
  pid=$(cat "$dir/pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/pid"
  ;;
*)
  echo "usage: broker-ctl.sh start|stop" >&2
  exit 2
  ;;
esac
