#!/usr/bin/env bash
# Install a container engine from Debian's packages: dockerd (docker.io), the docker CLI, buildx and Compose v2.
# Used by `make compose-check` when no engine answers and the user is root; it installs, it does not start dockerd.
#
# Debian 12 (bookworm) ships docker.io 20.10, docker-compose 1.29 (Compose v1, no `docker compose`) and no buildx.
# Debian 13 (trixie) ships docker.io 26.1, docker-compose 2.26 (the `docker compose` plugin) and docker-buildx 0.13;
# those four packages need nothing newer than bookworm has (libc6 >= 2.34, containerd, runc, iptables, tini). On
# bookworm their .debs are therefore fetched from Debian's trixie suite through a private apt list under
# $ENGINE_CACHE (the machine's apt sources are left as they are) and apt installs them with their dependencies from
# bookworm. On trixie and later the same packages come from the machine's own sources.
set -euo pipefail

PACKAGES=(docker.io docker-cli docker-buildx docker-compose)
ENGINE_CACHE="${ENGINE_CACHE:-/var/cache/longrank-engine}"
SUITE="${ENGINE_SUITE:-trixie}"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

if [ "$(id -u)" != 0 ]; then
    echo "install-engine: needs root (apt-get); install Docker Engine with Compose v2 yourself" >&2
    exit 1
fi
command -v apt-get >/dev/null || { echo "install-engine: only Debian (apt-get) is handled here" >&2; exit 1; }
. /etc/os-release

export DEBIAN_FRONTEND=noninteractive
if [ "${VERSION_CODENAME:-}" = bookworm ]; then
    mkdir -p "$ENGINE_CACHE/lists/partial" "$ENGINE_CACHE/archives/partial" "$ENGINE_CACHE/debs"
    echo "deb [signed-by=$KEYRING] http://deb.debian.org/debian $SUITE main" >"$ENGINE_CACHE/sources.list"
    apt_private=(-o "Dir::Etc::SourceList=$ENGINE_CACHE/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
                 -o "Dir::State::Lists=$ENGINE_CACHE/lists" -o "Dir::Cache=$ENGINE_CACHE"
                 -o "Dir::Cache::archives=$ENGINE_CACHE/archives" -o "APT::Sandbox::User=root")
    echo "install-engine: fetching ${PACKAGES[*]} from Debian $SUITE (private list in $ENGINE_CACHE)"
    apt-get "${apt_private[@]}" -qq update
    rm -f "$ENGINE_CACHE"/debs/*.deb
    (cd "$ENGINE_CACHE/debs" && apt-get "${apt_private[@]}" -qq download "${PACKAGES[@]}")
    apt-get -qq update
    apt-get install -y -qq --no-install-recommends "$ENGINE_CACHE"/debs/*.deb
else
    apt-get -qq update
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"
fi
docker --version
docker compose version
docker buildx version
