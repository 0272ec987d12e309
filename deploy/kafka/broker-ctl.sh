#!/usr/bin/env bash
# broker-ctl.sh start|stop|status: controls the test broker whose state
# with-broker.sh wrote to $ATRELAY_KAFKA_DIR (server.properties, classpath,
# brokers, waitbroker, pid, logs, data). Tests reach it as $ATRELAY_KAFKA_CTL
# to stop and restart the broker mid-run.
#
#   start   returns once the broker answers metadata and group requests
#           (at most 90 s; otherwise prints the log tail, stops it, fails).
#           The same ports and data as before, so a restart loses nothing.
#           Starting a running broker does nothing.
#   stop    SIGTERM (a clean shutdown), SIGKILL after 30 s; returns once the
#           process is gone. Stopping a stopped broker does nothing.
#   status  exit 0 if the broker process is running.
set -euo pipefail
dir=${ATRELAY_KAFKA_DIR:?ATRELAY_KAFKA_DIR is not set (run under deploy/kafka/with-broker.sh)}
here=$(cd "$(dirname "$0")" && pwd)

# running succeeds if the pid file names a live kafka.Kafka process, so a
# recycled pid is never signalled.
running() {
  [ -f "$dir/pid" ] || return 1
  local pid
  pid=$(cat "$dir/pid")
  [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'kafka\.Kafka '
}

# gone waits up to $1 tenths of a second for the process to exit.
gone() {
  local pid=$2
  for _ in $(seq 1 "$1"); do
    kill -0 "$pid" 2>/dev/null || return 0
    # A zombie (its parent has not reaped it yet) holds no port or file.
    [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && return 0
    sleep 0.1
  done
  return 1
}

stop() {
  running || { rm -f "$dir/pid"; return 0; }
  local pid
  pid=$(cat "$dir/pid")
  kill -TERM "$pid" 2>/dev/null || true
  if ! gone 300 "$pid"; then
    echo "broker-ctl: broker $pid ignored SIGTERM for 30s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
    gone 100 "$pid" || echo "broker-ctl: broker $pid survived SIGKILL" >&2
  fi
  rm -f "$dir/pid"
}

start() {
  running && return 0
  # The JVM stays in the caller's process group, so a signal to the whole
  # group (Ctrl-C aside, which a background job ignores) reaches it too.
  java -Xms64m -Xmx512m -XX:+UseSerialGC -Djava.awt.headless=true \
    -Dkafka.logs.dir="$dir/logs" -Dlog4j2.configurationFile="$here/log4j2.properties" \
    -cp "$(cat "$dir/classpath")" kafka.Kafka "$dir/server.properties" \
    </dev/null >>"$dir/logs/stdout.log" 2>&1 &
  echo $! >"$dir/pid"
  if ! "$dir/waitbroker" -timeout 90s -pid $! "$(cat "$dir/brokers")"; then
    echo "broker-ctl: the broker did not become ready; the end of its logs:" >&2
    tail -n 40 "$dir/logs/stdout.log" "$dir/logs/broker.log" >&2 || true
    stop
    return 1
  fi
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) running ;;
*)
  echo "usage: broker-ctl.sh start|stop|status" >&2
  exit 2
  ;;
esac
