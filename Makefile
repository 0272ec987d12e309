# atrelay — build, test, benchmark, fuzz, demo.
GO      ?= go
BIN     ?= bin/atrelay
FUZZTIME ?= 15s

.PHONY: all build test test-unit test-kafka bench bench-e2e-kafka bench-backlog fuzz demo clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/atrelay

## test: vet, every test with the race detector on in-process Kafka (kfake),
## then the Kafka suites again against a real Apache Kafka broker.
test: test-unit test-kafka

test-unit:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

## test-kafka: the packages using internal/testkafka, with -race, against a
## real single-node KRaft Apache Kafka that deploy/kafka/with-broker.sh
## downloads once (Maven), starts and always stops. Without java/mvn: one
## "skipped" line, a failure under CI=true. Flags: KAFKA_TEST_FLAGS='-run X -v'.
test-kafka:
	bash deploy/kafka/test-real-broker.sh $(KAFKA_TEST_FLAGS)

## bench: every benchmark, with allocations (the end-to-end one on kfake).
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

## bench-e2e-kafka: the end-to-end benchmark against a real broker, so that
## CPU and RSS are the service's alone.
bench-e2e-kafka:
	bash deploy/kafka/with-broker.sh $(GO) test -run '^$$' -bench EndToEnd -benchtime 200000x ./internal/relay/

## bench-backlog: a backlog of 1,000,000 records, max_buffered_events 50000.
bench-backlog:
	ATRELAY_BENCH_BACKLOG=1 bash deploy/kafka/with-broker.sh $(GO) test -run '^$$' -bench Backlog1M -benchtime 1x -timeout 30m ./internal/relay/

## fuzz: each fuzz target for FUZZTIME.
fuzz:
	bash scripts/fuzz.sh $(FUZZTIME)

## demo: the whole pipeline on embedded defaults.
demo:
	$(GO) run ./cmd/atrelay demo

clean:
	rm -rf bin
