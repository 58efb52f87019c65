# syntax=docker/dockerfile:1
#
# farmgate: one static binary for every role (gateway, exit, demo, customers).
#
#   docker build -t farmgate:dev --build-arg VERSION=$(git describe --tags --always --dirty) .
#   docker run --rm farmgate:dev version
#
# The image runs as the distroless "nonroot" user (65532:65532); its
# entrypoint is the binary, so the command is the subcommand and its flags:
#   docker run farmgate:dev gateway --config /etc/farmgate/gateway.yaml ...
# deploy/compose, deploy/kubernetes and deploy/systemd show whole farms.

ARG GO_VERSION=1.26

# ---- build: a static, reproducible binary ---------------------------------
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
# Module downloads are a layer of their own: they change less often than code.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
# CGO_ENABLED=0: no libc, so the binary runs on a distroless/static base and
# resolves names with Go's own resolver. -trimpath and -buildvcs=false keep
# builds reproducible; main.version is what `farmgate version` prints.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/farmgate ./cmd/farmgate
# Fail the build if the binary came out dynamically linked.
RUN ! ldd /out/farmgate >/dev/null 2>&1 || { echo "farmgate is dynamically linked" >&2; exit 1; }

# ---- runtime: no shell, no package manager, not root ----------------------
# distroless/static carries CA certificates, tzdata and /etc/passwd with the
# nonroot user; nothing else.
FROM gcr.io/distroless/static-debian12:nonroot AS runtime
ARG VERSION=dev
LABEL org.opencontainers.image.title="farmgate" \
      org.opencontainers.image.description="Gateway in front of a forward-proxy farm" \
      org.opencontainers.image.source="https://github.com/farmgate/farmgate" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/farmgate /usr/local/bin/farmgate
# The shipped example configs; deployments mount their own over them.
COPY --from=build /src/deploy/config/gateway.yaml /src/deploy/config/exit.yaml /etc/farmgate/
USER 65532:65532
# 8080 customers (gateway), 3128 gateways (exit), 9090 admin (gateway),
# 7946 gossip (TCP and UDP, every node).
EXPOSE 8080/tcp 3128/tcp 9090/tcp 7946/tcp 7946/udp
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/farmgate"]
CMD ["--help"]
