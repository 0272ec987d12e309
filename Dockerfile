# syntax=docker/dockerfile:1
#
# atrelay's image: a static binary on distroless, running as a non-root user.
#
#   make image                  # = docker build --build-arg COMMIT=… --build-arg DATE=… -t atrelay:dev .
#   docker run --rm -v "$PWD/atrelay.yaml:/etc/atrelay/atrelay.yaml:ro" atrelay:dev
#
# The entrypoint is `atrelay run`; the default arguments read the
# configuration from /etc/atrelay/atrelay.yaml (mount it there, as the
# Kubernetes manifests in deploy/kubernetes do). Other commands:
#   docker run --rm --entrypoint /atrelay atrelay:dev version
#   docker run --rm --entrypoint /atrelay -v …:/etc/atrelay:ro atrelay:dev check --config /etc/atrelay/atrelay.yaml
# Ports: 9464 (/metrics) and 8080 (/healthz, /readyz), telemetry's defaults.

# The build stage runs on the builder's platform and cross-compiles: the
# binary is pure Go. Its Go is go.mod's `go` line (deploy/kubetest checks).
FROM --platform=$BUILDPLATFORM golang:1.26.8 AS build
ENV CGO_ENABLED=0
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS TARGETARCH
# .git is not sent (.dockerignore): the commit and its time come as build
# arguments, which `make image` fills.
ARG COMMIT DATE
# `make build` is the one build command: the same flags as a local build.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH make build BIN=/out/atrelay COMMIT="$COMMIT" DATE="$DATE"

# static-debian12: CA certificates, tzdata and /etc/passwd, no shell, no
# libc. 65532 is its nonroot user, numeric so that Kubernetes'
# runAsNonRoot can verify it.
FROM gcr.io/distroless/static-debian12:nonroot
ARG COMMIT DATE
LABEL org.opencontainers.image.title="atrelay" \
      org.opencontainers.image.description="Purchasely subscription events from Kafka to Piano Analytics" \
      org.opencontainers.image.source="https://github.com/atrelay/atrelay" \
      org.opencontainers.image.revision="$COMMIT" \
      org.opencontainers.image.created="$DATE"
COPY --from=build /out/atrelay /atrelay
USER 65532:65532
EXPOSE 9464 8080
ENTRYPOINT ["/atrelay", "run"]
CMD ["--config", "/etc/atrelay/atrelay.yaml"]
