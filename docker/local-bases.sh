#!/usr/bin/env bash
# Local stand-ins for the official base images of docker-compose.yml, made from Debian's packages, for an engine
# that cannot pull from an image registry (where `docker pull` works, use the official images instead):
#
#   longrank-local/debian:bookworm          debootstrap --variant=minbase bookworm, imported with `docker import`
#   longrank-local/python:3.11-bookworm     + python3.11, venv, pip            stands in for python:3.11-slim
#   longrank-local/redis:bookworm           + redis-server 7.0 (redis-cli)     stands in for redis:7.2
#   longrank-local/prometheus:bookworm      + prometheus 2.42                  stands in for prom/prometheus
#
# Every image carries this machine's CA bundle ($CA_BUNDLE, default /etc/ssl/certs/ca-certificates.crt) as its
# system bundle and in SSL_CERT_FILE / PIP_CERT / REQUESTS_CA_BUNDLE, so that pip and apt inside a container trust
# the same certificate authorities as the machine (the official images do not get it). An image that exists is
# kept; `docker rmi` it (or pass --rebuild) to make it again. Prints the variables that point docker compose at them:
#   eval "$(docker/local-bases.sh)" && docker compose up --build
# Needs root (debootstrap), a running engine, and Debian's package registry. About 1-3 minutes the first time.
set -euo pipefail

PREFIX="${LOCAL_BASES_PREFIX:-longrank-local}"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
DEBIAN_IMAGE="$PREFIX/debian:$SUITE"
PYTHON_IMAGE="$PREFIX/python:3.11-$SUITE"
REDIS_IMAGE="$PREFIX/redis:$SUITE"
PROMETHEUS_IMAGE="$PREFIX/prometheus:$SUITE"
REBUILD=0
[ "${1:-}" = "--rebuild" ] && REBUILD=1

log() { echo "local-bases: $*" >&2; }
have() { [ "$REBUILD" = 0 ] && docker image inspect "$1" >/dev/null 2>&1; }

[ -s "$CA_BUNDLE" ] || { log "no CA bundle at $CA_BUNDLE (set CA_BUNDLE)"; exit 1; }
docker info >/dev/null 2>&1 || { log "no container engine answers (docker info)"; exit 1; }

if have "$DEBIAN_IMAGE"; then
    log "$DEBIAN_IMAGE exists"
else
    [ "$(id -u)" = 0 ] || { log "debootstrap needs root"; exit 1; }
    command -v debootstrap >/dev/null || { apt-get -qq update && apt-get install -y -qq debootstrap >/dev/null; }
    rootfs="$(mktemp -d /var/tmp/longrank-rootfs.XXXXXX)"
    trap 'rm -rf "$rootfs"' EXIT
    log "debootstrap --variant=minbase $SUITE (about 45 s)"
    debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 \
        || { tail -20 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
    rm -f "$rootfs.log"
    cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
EOF
    # Keep images small, like the official Debian images do.
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$rootfs/etc/apt/apt.conf.d/90longrank"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    # The machine's CA bundle: as the system bundle, and as a local CA file so that update-ca-certificates (run
    # when a later package pulls in ca-certificates) keeps it in the bundle it regenerates.
    mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/usr/local/share/ca-certificates"
    cp "$CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
    cp "$CA_BUNDLE" "$rootfs/usr/local/share/ca-certificates/machine-bundle.crt"
    log "docker import -> $DEBIAN_IMAGE"
    tar --numeric-owner -C "$rootfs" -c . | docker import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
        --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
        --change 'ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt' \
        --change 'CMD ["bash"]' \
        - "$DEBIAN_IMAGE" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
fi

# build NAME: a Dockerfile on stdin, FROM the Debian base, no build context.
build() {
    local name="$1"
    if have "$name"; then log "$name exists"; cat >/dev/null; return; fi
    log "building $name"
    docker build --quiet --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" -t "$name" - >/dev/null
}

build "$PYTHON_IMAGE" <<'EOF'
ARG DEBIAN_IMAGE
FROM ${DEBIAN_IMAGE}
# python3.11 as in python:3.11-slim: `python`, `python3`, `python3 -m venv` and `python3 -m pip` all work.
RUN apt-get update \
 && apt-get install -y python3.11 python3.11-venv python3-pip python-is-python3 \
 && rm -rf /var/lib/apt/lists/*
CMD ["python3"]
EOF

build "$REDIS_IMAGE" <<'EOF'
ARG DEBIAN_IMAGE
FROM ${DEBIAN_IMAGE}
# Like redis:7.2: redis-server and redis-cli on PATH, working directory /data (the volume), runs as "redis".
RUN apt-get update \
 && apt-get install -y redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data /usr/local/etc/redis \
 && chown redis:redis /data
WORKDIR /data
USER redis
EXPOSE 6379
CMD ["redis-server", "--protected-mode", "no"]
EOF

build "$PROMETHEUS_IMAGE" <<'EOF'
ARG DEBIAN_IMAGE
FROM ${DEBIAN_IMAGE}
# Like prom/prometheus: the entrypoint is prometheus, the config /etc/prometheus/prometheus.yml, data in /prometheus.
RUN apt-get update \
 && apt-get install -y prometheus \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /prometheus \
 && chown prometheus:prometheus /prometheus
USER prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
EOF

echo "export PYTHON_IMAGE=$PYTHON_IMAGE"
echo "export REDIS_IMAGE=$REDIS_IMAGE"
echo "export PROMETHEUS_IMAGE=$PROMETHEUS_IMAGE"
