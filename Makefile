# atrelay — build, test, benchmark, fuzz, demo.
GO      ?= go
BIN     ?= bin/atrelay
FUZZTIME ?= 15s

.PHONY: all build image test test-unit test-kafka test-deploy bench bench-e2e-kafka bench-backlog fuzz demo clean

all: build

## build: a static binary (CGO_ENABLED=0, no libc, nothing to load at start)
## stamped with the commit and its time. The Dockerfile runs this target, so
## the image's binary is built exactly as this one. In a work tree with
## uncommitted changes COMMIT ends in -dirty; the date is the commit's, so
## a rebuild of the same commit is the same binary.
VERSION_PKG := github.com/atrelay/atrelay/internal/app
COMMIT ?= $(shell git describe --always --dirty --abbrev=40 --exclude='*' 2>/dev/null)
DATE   ?= $(shell TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null)
LDFLAGS  = -s -w -X $(VERSION_PKG).Commit=$(COMMIT) -X $(VERSION_PKG).Date=$(DATE)

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/atrelay

## image: the container image (Dockerfile; needs a Docker engine with BuildKit).
IMAGE ?= atrelay:dev
image:
	docker build --build-arg COMMIT=$(COMMIT) --build-arg DATE=$(DATE) -t $(IMAGE) .

## test: vet, every test with the race detector on in-process Kafka (kfake),
## then the Kafka suites again against a real Apache Kafka broker, then the
## deploy kit's tests.
test: test-unit test-kafka test-deploy

test-unit:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

## test-kafka: the packages using internal/testkafka, with -race, against a
## real single-node KRaft Apache Kafka that deploy/kafka/with-broker.sh
## downloads once (Maven), starts and always stops. Without java/mvn: one
## "skipped" line, a failure under CI=true. Flags: KAFKA_TEST_FLAGS='-run X -v'.
test-kafka:
	bash deploy/kafka/test-real-broker.sh $(KAFKA_TEST_FLAGS)

## test-deploy: the deploy kit, in modules of their own so that their
## dependencies stay out of the service's. deploy/kubetest (Kubernetes,
## BuildKit): the Kustomize base and overlays rendered and decoded strictly,
## cross-checked with the configuration they ship; the Dockerfile; `make
## build`'s binary static and stamped. deploy/monitoring (Prometheus): the
## Grafana dashboard's and the rules' queries checked against a live
## /metrics of the service; promtool's rule tests, run with the promtool of
## its go.mod (built once into the user cache), and proven to fail on a
## broken alert; the runbook's sections.
test-deploy:
	cd deploy/kubetest && $(GO) vet ./... && $(GO) test -count=1 ./...
	cd deploy/monitoring && $(GO) vet ./... && $(GO) test -count=1 ./...

## bench: every benchmark, with allocations (the end-to-end one on kfake).
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

## bench-e2e-kafka: the end-to-end benchmark against a real broker, so that
## CPU and RSS are the service's alone.
bench-e2e-kafka:
	bash deploy/kafka/with-broker.sh $(GO) test -run '^$$' -bench EndToEnd -benchtime 200000x ./internal/relay/

## bench-backlog: a backlog of 1,000,000 records, default configuration.
bench-backlog:
	ATRELAY_BENCH_BACKLOG=1 bash deploy/kafka/with-broker.sh $(GO) test -run '^$$' -bench Backlog1M -benchtime 1x -timeout 30m ./internal/relay/

## bench-e2e: atrelay's own figures. `make build`'s binary, a real Apache
## Kafka and a collector each in their own process: per-visitor and replay
## on BENCH_N preloaded events, the BENCH_BACKLOG backlog, then 5,000
## events/s for 60 s (delivery latency p50/p99), each BENCH_REPEAT times
## with a median row (one run's figures vary by 10-20% on a shared VM).
## Prints a table and appends it, with the commit, date and load average,
## to BENCH_RESULTS. BENCH_FLAGS: more flags (-workloads, -rate,
## -steady-for, -linger, -baseline OTHER_BINARY to run a before and an
## after alternately; see deploy/kafka/benche2e). Bounded: 90 min in all,
## 10 min a run.
.PHONY: bench-e2e
BENCH_N       ?= 300000
BENCH_BACKLOG ?= 1000000
BENCH_REPEAT  ?= 3
BENCH_RESULTS ?= deploy/kafka/benche2e/RESULTS.md
bench-e2e: build
	bash deploy/kafka/with-broker.sh $(GO) run ./deploy/kafka/benche2e -atrelay $(BIN) \
	  -n $(BENCH_N) -backlog $(BENCH_BACKLOG) -repeat $(BENCH_REPEAT) -results $(BENCH_RESULTS) $(BENCH_FLAGS)

## chaos: the fault suite (internal/chaos, README "Fault suite"): every
## scenario 3 times against `go build`'s atrelay binary run as processes, on
## kfake (every commit request checked) and on a real Apache Kafka (commits
## sampled every 100 ms; the broker restart runs there only). Prints the
## table and writes it to CHAOS_RESULTS; fails if a run loses an event,
## breaks the commit invariant or exceeds its duplicate bound. About 10
## minutes on 2 cores, bounded at 25. `make test` runs a subset (one run of
## ten scenarios on kfake, about 90 s) with the other tests.
.PHONY: chaos
CHAOS_RESULTS ?= bin/chaos-results.md
chaos:
	ATRELAY_CHAOS=full ATRELAY_CHAOS_OUT=$(abspath $(CHAOS_RESULTS)) bash deploy/kafka/with-broker.sh \
	  $(GO) test -count=1 -run TestChaosFull -timeout 25m -v ./internal/chaos/

## fuzz: each fuzz target for FUZZTIME.
fuzz:
	bash scripts/fuzz.sh $(FUZZTIME)

## demo: the whole pipeline on embedded defaults.
demo:
	$(GO) run ./cmd/atrelay demo

clean:
	rm -rf bin
