#!/usr/bin/env bash
# Builds tokenrelay's container image without a Docker daemon and without
# pulling a base image: the programs are compiled here as static binaries,
# laid out with the CA certificates and a non-root user in a build context,
# and the repository's Dockerfile (FROM scratch by default) is built from it
# with buildah.
#
#   scripts/image.sh           the context, then the image (needs buildah)
#   scripts/image.sh context   only the context, for `docker build -f Dockerfile build/image`
#
# Settings (environment):
#   VERSION    the version the programs report (-X internal/buildinfo.version), default dev
#   IMAGE      the image's name, default tokenrelay:$VERSION (buildah calls it localhost/tokenrelay:$VERSION)
#   GO_TAGS    the KMS drivers to link (docs/keys.md): kms_aws, ..., kms_all; none by default
#   BASE       the base image (a build argument of the Dockerfile), default scratch
#   BUILD_DIR  where the context is laid out, default build/image
# buildah's own settings apply too (CONTAINERS_STORAGE_CONF, STORAGE_DRIVER).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=${VERSION:-dev}
IMAGE=${IMAGE:-tokenrelay:$VERSION}
GO_TAGS=${GO_TAGS:-}
BASE=${BASE:-scratch}
BUILD_DIR=${BUILD_DIR:-build/image}
GO=${GO:-go}
# The unprivileged user the programs run as (distroless's nonroot).
NONROOT=65532
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

mode=${1:-image}
case "$mode" in
  image | context) ;;
  *) echo "usage: $0 [image|context]" >&2; exit 2 ;;
esac
if [ "$mode" = image ] && ! command -v buildah >/dev/null; then
  echo "image: buildah is not installed (apt-get install buildah; scripts/ensure-services.sh does)" >&2
  exit 1
fi
if [ ! -r "$CA_BUNDLE" ]; then
  echo "image: $CA_BUNDLE is missing (apt-get install ca-certificates)" >&2
  exit 1
fi

# The context: rootfs/ is copied to / as root's; home/ to /home, owned by
# the user (its home directory, where the worker's spool is by default).
rootfs=$BUILD_DIR/rootfs
rm -rf "$rootfs" "$BUILD_DIR/home"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/tmp" "$rootfs/home" "$BUILD_DIR/home/nonroot"

# The commit, stamped by -X: Go's own stamping (vcs.revision) is off where
# GOFLAGS has -buildvcs=false and in a git worktree.
commit=$(git rev-parse HEAD 2>/dev/null || true)
if [ -n "$commit" ] && [ -n "$(git status --porcelain 2>/dev/null)" ]; then commit=$commit-dirty; fi

start=$(date +%s)
# Static (no C library in the image), stripped, without local paths. Every
# program but the dev mode (cmd/tokenrelay-dev: make run), which embeds
# Redis, NATS and the vendor sandbox.
CGO_ENABLED=0 GOOS=linux "$GO" build -trimpath -tags="$GO_TAGS" \
  -ldflags="-s -w -X github.com/tokenrelay/tokenrelay/internal/buildinfo.version=$VERSION -X github.com/tokenrelay/tokenrelay/internal/buildinfo.commit=$commit" \
  -o "$rootfs/usr/local/bin/" ./cmd/scheduler ./cmd/worker ./cmd/tokenrelay ./cmd/sandbox

cp "$CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n' \
  "$NONROOT" "$NONROOT" >"$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:%d:\n' "$NONROOT" >"$rootfs/etc/group"
chmod 1777 "$rootfs/tmp"
chmod 0700 "$BUILD_DIR/home/nonroot"
if [ "$mode" = context ]; then
  echo "image: context in $BUILD_DIR (docker build -f Dockerfile --build-arg VERSION=$VERSION $BUILD_DIR)"
  exit 0
fi

buildah build --quiet --isolation chroot --platform "linux/$("$GO" env GOARCH)" \
  --build-arg BASE="$BASE" --build-arg VERSION="$VERSION" --build-arg COMMIT="$commit" \
  -f Dockerfile -t "$IMAGE" "$BUILD_DIR" >/dev/null
end=$(date +%s)
size=$(buildah images --format '{{.Size}}' "$IMAGE" | head -n1)
echo "image: built $IMAGE from $BASE in $((end - start)) s, size $size"
