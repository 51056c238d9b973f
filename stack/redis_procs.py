"""Private redis-server processes for the local stack and the tests: one server, or an N-master Redis Cluster.

Each process runs in its own directory on its own port (127.0.0.1), logs to ``redis.log`` there, and is stopped
by ``stop()`` (SIGTERM, SIGKILL after a timeout). A cluster is formed with ``redis-cli --cluster create`` and is
ready once every node reports ``cluster_state:ok``. Nothing here imports redis-py: PING and INFO go over a raw
socket, so the helpers also serve before the Python client is configured.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"


class RedisProcessError(RuntimeError):
    """A redis-server that would not start, or a cluster that would not form; the message carries the log tail."""


def free_port(below: int = 65536) -> int:
    """A TCP port below ``below`` on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port < below:
            return port
    raise RedisProcessError(f"no free port below {below}")


def command(port: int, *words: str, timeout_s: float = 1.0) -> bytes:
    """Send one inline command to 127.0.0.1:port and return the raw reply (b'' when nothing answers)."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout_s) as sock:
            sock.sendall((" ".join(words) + "\r\n").encode())
            chunks = []
            while True:
                chunk = sock.recv(65536)
                chunks.append(chunk)
                if not chunk or chunk.endswith(b"\r\n"):
                    break
            return b"".join(chunks)
    except OSError:
        return b""


@dataclass
class RedisProcess:
    """One redis-server: ``start()``, ``stop()``, ``kill()``; ``url`` for the store."""

    port: int
    dir: Path
    args: tuple[str, ...] = ()
    conf: Path | None = None  # a redis.conf read first; the command-line arguments override it
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.dir / "redis.log"

    def start(self, timeout_s: float = 10.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisProcessError("redis-server is not installed (Debian: apt-get install redis-server)")
        self.dir.mkdir(parents=True, exist_ok=True)
        cmd = [binary, *([str(self.conf)] if self.conf else []),
               "--port", str(self.port), "--bind", HOST, "--dir", str(self.dir), "--logfile", str(self.log),
               "--daemonize", "no", *self.args]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if command(self.port, "PING").startswith((b"+PONG", b"-NOAUTH")):  # NOAUTH: up, with a password
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        tail = self.log.read_text()[-2000:] if self.log.exists() else "(no log)"
        self.stop()
        raise RedisProcessError(f"redis-server on port {self.port} did not answer PING; log:\n{tail}")

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash would (no shutdown save)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        """Stop, then start again on the same port and directory."""
        self.stop()
        self.start()


def start_server(directory: Path, *, port: int | None = None, conf: Path | None = None,
                 args: Sequence[str] = ()) -> RedisProcess:
    """Start one redis-server (with ``conf`` when given) and wait for PING."""
    server = RedisProcess(port=port or free_port(), dir=directory, args=tuple(args), conf=conf)
    server.start()
    return server


@dataclass
class LocalCluster:
    """An N-master Redis Cluster of local processes, no replicas."""

    nodes: list[RedisProcess]

    @property
    def url(self) -> str:
        """A store URL reaching the cluster through its first node."""
        return f"redis://{HOST}:{self.nodes[0].port}/0?cluster=true"

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_cluster(directory: Path, masters: int = 3, timeout_s: float = 20.0) -> LocalCluster:
    """Start ``masters`` cluster-enabled servers, join them with ``redis-cli --cluster create`` and wait until every
    node reports ``cluster_state:ok``. Stops whatever it started when it fails."""
    if masters < 3:
        raise ValueError(f"masters={masters}: redis-cli --cluster create needs at least 3")
    cli = shutil.which("redis-cli")
    if cli is None:
        raise RedisProcessError("redis-cli is not installed (Debian: apt-get install redis-tools)")
    cluster = LocalCluster([])
    try:
        for i in range(masters):
            # a cluster node's port must be <= 55535 (the bus port defaults to port + 10000; we set it apart)
            args = ("--cluster-enabled", "yes", "--cluster-port", str(free_port()),
                    "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000",
                    "--save", "", "--appendonly", "no")  # fmt: skip
            node = RedisProcess(port=free_port(below=55536), dir=directory / f"node{i}", args=args)
            cluster.nodes.append(node)
            node.start()
        addresses = [f"{HOST}:{n.port}" for n in cluster.nodes]
        done = subprocess.run([cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
                              capture_output=True, text=True, timeout=timeout_s, check=False)
        if done.returncode != 0:
            raise RedisProcessError(f"redis-cli --cluster create failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        deadline = time.monotonic() + timeout_s
        while not all(b"cluster_state:ok" in command(n.port, "CLUSTER", "INFO") for n in cluster.nodes):
            if time.monotonic() > deadline:
                raise RedisProcessError(f"cluster {addresses} did not reach cluster_state:ok in {timeout_s} s")
            time.sleep(0.1)
    except BaseException:
        cluster.stop()
        raise
    return cluster
