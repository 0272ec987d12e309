#!/usr/bin/env bash
# with-broker.sh CMD [ARGS...]: runs CMD with a single-node Apache Kafka 4
# (KRaft, broker and controller in one process) on free 127.0.0.1 ports.
# The jars come from Maven Central (pom.xml), cached by the pom's hash. The
# broker is always stopped and its files removed, even when CMD fails; the
# exit code is CMD's. CMD sees ATRELAY_TEST_BROKERS (host:port), and
# ATRELAY_KAFKA_CTL ("broker-ctl.sh", call it with stop or start) to restart
# the broker mid-test.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pomhash=$(sha256sum "$here/pom.xml" | cut -c1-12)
cache=${ATRELAY_KAFKA_CACHE:-$HOME/.cache/atrelay/kafka-$pomhash}
if [ ! -f "$cache/.complete" ]; then
  echo "with-broker: downloading the Kafka broker jars into $cache" >&2
  rm -rf "$cache"
  mkdir -p "$cache"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$cache/jars" >&2
  touch "$cache/.complete"
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/atrelay-kafka.XXXXXX")
export ATRELAY_KAFKA_DIR=$dir
cleanup() {
  bash "$here/broker-ctl.sh" stop || true
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r bport cport < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
mkdir -p "$dir/logs" "$dir/data"
ls "$cache"/jars/*.jar | tr '\n' ':' >"$dir/classpath"
echo "127.0.0.1:$bport" >"$dir/brokers"
cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$bport,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$bport,CONTROLLER://127.0.0.1:$cport
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
cp=$(cat "$dir/classpath")
uuid=$(java -cp "$cp" -Dlog4j2.configurationFile="$here/log4j2.properties" -Dkafka.logs.dir="$dir/logs" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)
java -cp "$cp" -Dlog4j2.configurationFile="$here/log4j2.properties" -Dkafka.logs.dir="$dir/logs" \
  kafka.tools.StorageTool format --standalone -t "$uuid" -c "$dir/server.properties" >"$dir/logs/format.log" 2>&1 || {
  cat "$dir/logs/format.log" >&2
  exit 1
}
start=$(date +%s)
bash "$here/broker-ctl.sh" start
echo "with-broker: Apache Kafka ready on 127.0.0.1:$bport after $(( $(date +%s) - start ))s" >&2

export ATRELAY_TEST_BROKERS="127.0.0.1:$bport"
export ATRELAY_KAFKA_CTL="$here/broker-ctl.sh"
set +e
"$@"
rc=$?
set -e
exit $rc
