# syntax=docker/dockerfile:1
# tokenrelay: one small image holding the scheduler, the worker, the
# tokenrelay command line and the vendor sandbox (for the compose demo).
#
#   docker build -t tokenrelay .
#   docker run --rm -v $PWD/deployments:/etc/tokenrelay tokenrelay scheduler -config /etc/tokenrelay/tokenrelay.yaml
#
# Static binaries (CGO_ENABLED=0) on distroless/static: CA certificates and
# tzdata, no shell, running as the unprivileged user nonroot (65532).

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first, so that a code change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# The version -version prints and tokenrelay_build_info labels: docker build
# --build-arg VERSION=v1.4.0 (.git is not copied, so no commit is stamped).
ARG VERSION=dev
# The KMS drivers to link (docs/keys.md): --build-arg GO_TAGS=kms_aws, or
# kms_all; none by default (localsecrets and plain keys only).
ARG GO_TAGS=
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=linux go build -trimpath -tags=${GO_TAGS} -ldflags="-s -w -X github.com/tokenrelay/tokenrelay/internal/buildinfo.version=${VERSION}" -o /out/ \
      ./cmd/scheduler ./cmd/worker ./cmd/tokenrelay ./cmd/sandbox

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER nonroot:nonroot
# The worker's HTTP (health, metrics, admin API, asynqmon, webhooks) and the
# scheduler's metrics address, as the example configurations set them.
EXPOSE 8080 9090
# Pick the program as the command: scheduler, worker, tokenrelay or sandbox.
CMD ["worker", "-config", "/etc/tokenrelay/tokenrelay.yaml"]
