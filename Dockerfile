# tokenrelay: one small image holding the scheduler, the worker, the
# tokenrelay command line and the vendor sandbox (for the compose demo).
#
#   make image                      # scripts/image.sh: localhost/tokenrelay:dev, then started and checked
#   buildah run $(buildah from localhost/tokenrelay:dev) -- worker -config /etc/tokenrelay/tokenrelay.yaml
#
# Nothing is pulled: scripts/image.sh compiles the programs on the build
# machine (static, CGO_ENABLED=0, stripped, the version and the commit
# stamped through -ldflags -X) and lays out the context this file copies,
# build/image/: rootfs/ (the programs in /usr/local/bin, CA certificates,
# /etc/passwd and /etc/group with the unprivileged user nonroot, 65532) and
# home/ (its home directory, /home/nonroot). With a Docker daemon:
#   scripts/image.sh context && docker build -f Dockerfile build/image

# The base image: scratch (nothing but what is copied), or another static
# base such as gcr.io/distroless/static-debian12 where it can be pulled.
ARG BASE=scratch
FROM ${BASE}
# Set by scripts/image.sh: the version the programs report and the commit.
ARG VERSION=dev
ARG COMMIT=
LABEL org.opencontainers.image.title="tokenrelay" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY rootfs/ /
COPY --chown=65532:65532 home/ /home/
ENV PATH=/usr/local/bin HOME=/home/nonroot
USER 65532:65532
WORKDIR /home/nonroot
# The worker's HTTP (health, metrics, admin API, asynqmon, webhooks) and the
# scheduler's metrics address, as the example configurations set them.
EXPOSE 8080 9090
# Pick the program as the command: scheduler, worker, tokenrelay or sandbox.
CMD ["worker", "-config", "/etc/tokenrelay/tokenrelay.yaml"]
