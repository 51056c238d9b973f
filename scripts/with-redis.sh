#!/usr/bin/env bash
# Run a command with a reachable Redis, exported as LONGRANK_TEST_REDIS_URL.
#  1. 127.0.0.1:6379 answers PING -> use it (tests take their own key prefix and clean up).
#  2. otherwise start our own redis-server on a free port (installing Debian's redis-server first when the
#     binary is missing and we are root), and stop it when the command ends.
#  3. neither works -> a clear message and exit 1.
# The redis-server binary is also needed by the persistence/restart tests, so it is installed when missing.
set -euo pipefail

ping_redis() {  # host port -> 0 when PONG
    local reply
    exec 3<>"/dev/tcp/$1/$2" 2>/dev/null || return 1
    printf 'PING\r\n' >&3
    IFS= read -r -t 2 reply <&3 || true
    exec 3>&- 3<&-
    [[ "$reply" == "+PONG"* ]]
}

ensure_binary() {
    command -v redis-server >/dev/null 2>&1 && return 0
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "with-redis: redis-server is missing; installing Debian's redis-server" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2
    fi
    command -v redis-server >/dev/null 2>&1
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

have_binary=0
ensure_binary && have_binary=1

if [[ -n "${LONGRANK_TEST_REDIS_URL:-}" ]]; then
    :
elif ping_redis 127.0.0.1 6379; then
    export LONGRANK_TEST_REDIS_URL="redis://127.0.0.1:6379/0"
elif [[ "$have_binary" == 1 ]]; then
    port=$(free_port)
    dir=$(mktemp -d)
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --daemonize yes \
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
    trap 'kill "$(cat "$dir/redis.pid")" 2>/dev/null || true; rm -rf "$dir"' EXIT
    for _ in $(seq 50); do ping_redis 127.0.0.1 "$port" && break; sleep 0.1; done
    ping_redis 127.0.0.1 "$port" || { echo "with-redis: started redis-server on $port but it does not answer (log: $dir/redis.log)" >&2; exit 1; }
    export LONGRANK_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
    echo "with-redis: started our own redis-server on 127.0.0.1:$port" >&2
else
    echo "with-redis: no Redis answers at 127.0.0.1:6379 and redis-server is not installed" \
         "(install it with 'apt-get install redis-server', or set LONGRANK_TEST_REDIS_URL)" >&2
    exit 1
fi
echo "with-redis: using $LONGRANK_TEST_REDIS_URL" >&2
"$@"
