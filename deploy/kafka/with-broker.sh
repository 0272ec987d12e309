#!/usr/bin/env bash
# with-broker.sh CMD [ARGS...]: runs CMD next to a single-node Apache Kafka 4
# (KRaft, broker and controller in one JVM) listening on free 127.0.0.1 ports.
#
# CMD sees:
#   ATRELAY_TEST_BROKERS  127.0.0.1:<port>, what internal/testkafka dials
#                         (PLAINTEXT)
#   ATRELAY_TEST_SASL_SSL_BROKERS  the same broker's SASL_SSL listener:
#                         PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 over TLS
#   ATRELAY_TEST_SSL_BROKERS   its SSL listener (server authentication only)
#   ATRELAY_TEST_MTLS_BROKERS  its SSL listener requiring a client certificate
#   ATRELAY_TEST_TLS_DIR  the PEM files (deploy/kafka/gencerts): ca.pem,
#                         client.pem, client-key.pem, other-ca.pem
#   ATRELAY_TEST_SASL_PASSWORD  the password of the SASL users (fresh each
#                         run): atrelay_plain (PLAIN), atrelay_scram256
#                         (SCRAM-SHA-256), atrelay_scram512 (SCRAM-SHA-512)
#   ATRELAY_KAFKA_CTL     path of broker-ctl.sh: `bash "$ATRELAY_KAFKA_CTL" stop`
#                         then `... start` restarts the broker on the same
#                         ports and data, mid-test
#   ATRELAY_KAFKA_DIR     the broker's state (config, pid, logs, data)
#
# Guarantees: the broker is stopped and its directory removed whatever
# happens to CMD (failure, Ctrl-C, TERM); the exit code is CMD's. The jars
# come from Maven Central once and are cached by pom.xml's hash, so later runs
# need no network. Every wait is bounded.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
[ $# -gt 0 ] || { echo "usage: with-broker.sh CMD [ARGS...]" >&2; exit 2; }
for tool in java mvn python3 go; do
  command -v "$tool" >/dev/null 2>&1 || { echo "with-broker: $tool is not on PATH" >&2; exit 1; }
done

# The jars, keyed by the pom's hash so an edited pom never reuses stale jars.
# A lock serialises concurrent first runs; the download lands in a scratch
# directory renamed into place only when complete.
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")
pomhash=$(sha256sum "$here/pom.xml" | cut -c1-16)
cache=${ATRELAY_KAFKA_CACHE:-$HOME/.cache/atrelay/kafka-$version}
jars=$cache/$pomhash
if [ ! -f "$jars/.complete" ]; then
  mkdir -p "$cache"
  exec 9>"$cache/.lock"
  flock -w 900 9 || { echo "with-broker: $cache/.lock held for 15 min" >&2; exit 1; }
  if [ ! -f "$jars/.complete" ]; then
    echo "with-broker: downloading Apache Kafka $version jars into $jars" >&2
    scratch=$(mktemp -d "$cache/.download.XXXXXX")
    if ! timeout 900 mvn -B -Dstyle.color=never -f "$here/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$scratch" >"$scratch.log" 2>&1; then
      tail -n 30 "$scratch.log" >&2
      rm -rf "$scratch" "$scratch.log"
      echo "with-broker: mvn could not fetch the broker jars (is Maven Central reachable?)" >&2
      exit 1
    fi
    rm -f "$scratch.log"
    touch "$scratch/.complete"
    rm -rf "$jars"
    mv "$scratch" "$jars"
  fi
  exec 9>&-
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/atrelay-kafka.XXXXXX")
export ATRELAY_KAFKA_DIR=$dir
watchdog=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -z "$watchdog" ] || kill "$watchdog" 2>/dev/null || true
  bash "$here/broker-ctl.sh" stop || true
  rm -rf "$dir"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Five ports the OS says are free, held together so they differ: the
# PLAINTEXT and controller listeners, then SASL_SSL, SSL and mutual-TLS SSL.
# Another process could take one before Kafka binds it; the readiness wait
# then fails with the broker log, and a rerun picks new ports.
read -r bport cport sport tport mport < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
# The SASL users' password, new for every run so no test can depend on it
# but through ATRELAY_TEST_SASL_PASSWORD. Hex: nothing to quote in JAAS or
# in --add-scram's syntax.
password=$(python3 -c 'import secrets; print(secrets.token_hex(12))')
# A cluster id as Kafka's Uuid prints it (22 chars of url-safe base64, never
# starting with "-"), made here to save starting a JVM for StorageTool random-uuid.
cluster=$(python3 -c '
import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not s.startswith("-"):
        print(s)
        break')

mkdir -p "$dir/logs" "$dir/data"
ls "$jars"/*.jar | tr '\n' ':' >"$dir/classpath"
echo "127.0.0.1:$bport" >"$dir/brokers"
# Tests create their topics, so auto-creation stays off: a typo in a topic
# name fails instead of silently making a new topic. Internal topics have one
# replica and few partitions so the first group join is quick.
cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$bport,CONTROLLER://127.0.0.1:$cport,SASL_SSL://127.0.0.1:$sport,SSL://127.0.0.1:$tport,MTLS://127.0.0.1:$mport
advertised.listeners=PLAINTEXT://127.0.0.1:$bport,CONTROLLER://127.0.0.1:$cport,SASL_SSL://127.0.0.1:$sport,SSL://127.0.0.1:$tport,MTLS://127.0.0.1:$mport
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL,MTLS:SSL
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.cleaner.dedupe.buffer.size=16777216
# TLS on SASL_SSL, SSL and MTLS, from deploy/kafka/gencerts' PEM files.
# Only MTLS asks for a client certificate (signed by the same CA).
ssl.keystore.type=PEM
ssl.keystore.location=$dir/tls/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$dir/tls/ca.pem
ssl.client.auth=none
listener.name.mtls.ssl.client.auth=required
# SASL on SASL_SSL: PLAIN users live in the listener's JAAS entry; SCRAM
# users in the metadata log, added when the storage is formatted.
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_atrelay_plain="$password";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
PROPS

# The readiness probe, built once so a restart from inside a test is quick,
# and the TLS listeners' certificates.
(cd "$root" && go build -o "$dir/waitbroker" ./deploy/kafka/waitbroker && go run ./deploy/kafka/gencerts "$dir/tls")

if ! java -cp "$(cat "$dir/classpath")" -Dlog4j2.configurationFile="$here/log4j2.properties" \
  -Dkafka.logs.dir="$dir/logs" kafka.tools.StorageTool format --standalone \
  -t "$cluster" -c "$dir/server.properties" \
  --add-scram "SCRAM-SHA-256=[name=atrelay_scram256,password=$password]" \
  --add-scram "SCRAM-SHA-512=[name=atrelay_scram512,password=$password]" </dev/null >"$dir/logs/format.log" 2>&1; then
  echo "with-broker: formatting the KRaft storage failed:" >&2
  cat "$dir/logs/format.log" >&2
  exit 1
fi
# Should this script be killed outright (SIGKILL: no trap runs), the
# watchdog still ends CMD, stops the broker and removes its files, within 2 s.
(
  trap - EXIT INT TERM
  while kill -0 $$ 2>/dev/null; do sleep 2; done
  [ ! -f "$dir/cmd.pgid" ] || kill -TERM -- "-$(cat "$dir/cmd.pgid")" 2>/dev/null || true
  bash "$here/broker-ctl.sh" stop || true
  rm -rf "$dir"
) </dev/null >/dev/null 2>&1 &
watchdog=$!

t0=$EPOCHREALTIME
bash "$here/broker-ctl.sh" start
echo "with-broker: Apache Kafka $version ready on 127.0.0.1:$bport in $(awk "BEGIN { printf \"%.1f\", $EPOCHREALTIME - $t0 }")s" >&2

export ATRELAY_TEST_BROKERS="127.0.0.1:$bport"
export ATRELAY_TEST_SASL_SSL_BROKERS="127.0.0.1:$sport"
export ATRELAY_TEST_SSL_BROKERS="127.0.0.1:$tport"
export ATRELAY_TEST_MTLS_BROKERS="127.0.0.1:$mport"
export ATRELAY_TEST_TLS_DIR="$dir/tls"
export ATRELAY_TEST_SASL_PASSWORD="$password"
export ATRELAY_KAFKA_CTL="$here/broker-ctl.sh"
set +e
if [ -t 0 ]; then
  # At a terminal CMD stays in the foreground, so it can read the terminal
  # (e.g. `with-broker.sh bash`); Ctrl-C reaches it and this script alike.
  "$@"
  rc=$?
else
  # Otherwise CMD runs in its own process group (set -m), so that it takes
  # SIGINT by default (a background job would ignore it), and a signal sent
  # to this script alone (`kill PID`, a CI cancel) reaches all of CMD, go
  # test and its test binary, at once instead of after CMD ends.
  set -m
  "$@" <&0 &
  child=$!
  set +m
  echo "$child" >"$dir/cmd.pgid"
  trap 'kill -INT -- -$child 2>/dev/null' INT
  trap 'kill -TERM -- -$child 2>/dev/null' TERM
  while :; do
    wait "$child"
    rc=$?
    # A trapped signal ends wait early; wait again for CMD's own status.
    kill -0 "$child" 2>/dev/null || break
  done
fi
exit "$rc"
