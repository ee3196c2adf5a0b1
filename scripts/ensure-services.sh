#!/usr/bin/env bash
# Makes sure the real Redis (127.0.0.1:6379) and NATS with JetStream
# (127.0.0.1:4222) that the integration tests use are up, installing them
# from Debian's packages and starting them if they are not, and that
# chromium (the browser test) and buildah (the container image's test) are
# installed. Never stops or restarts a server that is already running.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 100); do
    port_open "$port" && return 0
    sleep 0.1
  done
  echo "ensure-services: $name did not come up on port $port" >&2
  return 1
}

apt_updated=""
install_pkg() {
  # Both wait for another apt-get holding the lock instead of failing at once.
  if [ -z "$apt_updated" ]; then $SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -o DPkg::Lock::Timeout=300 -y -qq "$@" >/dev/null
}

if ! port_open 6379; then
  command -v redis-server >/dev/null || install_pkg redis-server
  echo "ensure-services: starting redis-server on 127.0.0.1:6379"
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  wait_port 6379 redis
fi

if ! port_open 4222; then
  [ -x /usr/sbin/nats-server ] || install_pkg nats-server
  echo "ensure-services: starting nats-server with JetStream on 127.0.0.1:4222"
  $SUDO mkdir -p /var/lib/nats-server
  $SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server
  wait_port 4222 nats
fi
# The operator pages' browser test (internal/web/operator/browser_test.go) drives Debian's
# chromium; it fails in CI without it.
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  echo "ensure-services: installing chromium for the browser test"
  install_pkg chromium
fi
# The image test (deployments/image_test.go, make image-test) builds and
# runs the container image with buildah (chroot isolation: no daemon, no OCI
# runtime needed); it fails in CI without it.
if ! command -v buildah >/dev/null; then
  echo "ensure-services: installing buildah for the image test"
  install_pkg --no-install-recommends buildah ca-certificates
fi
echo "ensure-services: redis and nats are up"
