"""A real Redis Cluster on loopback for the tests: 3 masters and a replica each, started by the
tests (`redis-server --cluster-enabled yes`, `redis-cli --cluster create`), stopped and removed after.

A cluster node also listens on its port + 10000 (the cluster bus): both stay below the kernel's
ephemeral range, where every other test server (free_port) and every outgoing connection takes its
port, so none can take a node's port or bus between the probe and the node's start (a bus port at
40072 once was: "node 30072 did not start").
Every path is absolute: redis-server resolves a relative cluster config file inside its --dir.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

MASTERS = 3
# A master silent this long is failed over to its replica: short, so a test's failover takes seconds.
NODE_TIMEOUT_MS = 1000
PORT_LOW = 10000
READY_TIMEOUT_S = 30.0


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux's default when it cannot be read)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free_ports(count: int) -> list[int]:
    """`count` ports whose cluster bus ports (+10000) are free too, all below the ephemeral range."""
    high = _ephemeral_low() - 10001
    assert high - PORT_LOW >= 100 * count, f"no room for {count} cluster ports below the ephemeral range"
    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(PORT_LOW, high)
        if port not in ports and _free(port) and _free(port + 10000):
            ports.append(port)
    return ports


class LocalRedisCluster:
    """The cluster's nodes (port -> data directory) and what a test does to them."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="tollgate-cluster-", dir="/tmp")).resolve()
        self.ports = _free_ports(MASTERS * 2)

    @property
    def url(self) -> str:
        """TOLLGATE_REDIS_URL for the gateway: any one node (the client finds the others)."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=2)

    def reading(self, port: int) -> redis.Redis:
        """A client of one node that reads its keys even while it is a replica (READONLY)."""
        client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=2,
                             single_connection_client=True)
        client.execute_command("READONLY")
        return client

    def start_node(self, port: int) -> None:
        directory = self.root / str(port)
        directory.mkdir(exist_ok=True)
        subprocess.run(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--cluster-enabled", "yes",
             "--cluster-config-file", str(directory / "nodes.conf"),
             "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--cluster-replica-validity-factor", "0",
             "--save", "", "--appendonly", "no", "--daemonize", "yes", "--dir", str(directory),
             "--pidfile", str(directory / "redis.pid"), "--logfile", str(directory / "log")],
            check=True, stdout=subprocess.DEVNULL)
        self._wait(lambda: self.node(port).ping(), f"node {port} did not start", directory / "log")

    def start(self) -> None:
        for port in self.ports:
            self.start_node(port)
        subprocess.run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                        "--cluster-replicas", "1", "--cluster-yes"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=60)
        self.wait_healthy()

    def wait_healthy(self) -> None:
        """Every live node says cluster_state:ok, every slot is served by a master, and every replica
        is in sync with its master."""
        def healthy() -> bool:
            for port in self.live_ports():
                node = self.node(port)
                if node.cluster("info")["cluster_state"] != "ok":
                    return False
                replication = node.info("replication")
                if replication["role"] == "slave" and replication.get("master_link_status") != "up":
                    return False
            return len(self.masters()) == MASTERS
        self._wait(healthy, "the cluster did not become healthy")

    def live_ports(self) -> list[int]:
        return [port for port in self.ports if self.pid(port) is not None]

    def masters(self) -> list[int]:
        """The ports of the masters that serve slots, as a live node sees them."""
        nodes = self.node(self.live_ports()[0]).cluster("nodes")
        return sorted(int(address.split(":")[1].split("@")[0]) for address, node in nodes.items()
                      if "master" in node["flags"] and "fail" not in node["flags"] and node["slots"])

    def master_of(self, key: str) -> int:
        """The port of the master that serves the key's slot now."""
        slot = self.node(self.live_ports()[0]).cluster("keyslot", key)
        for start, end, master, *_ in self.node(self.live_ports()[0]).execute_command("CLUSTER SLOTS"):
            if start <= slot <= end:
                return int(master[1])
        raise AssertionError(f"slot {slot} has no master")

    def wait_failed_over(self, killed: int) -> float:
        """Wait until a replica serves the killed master's slots and the cluster is whole; seconds taken."""
        started = time.monotonic()
        self._wait(lambda: killed not in self.masters() and len(self.masters()) == MASTERS
                   and all(self.node(port).cluster("info")["cluster_state"] == "ok" for port in self.live_ports()),
                   f"no replica took over from {killed}")
        return time.monotonic() - started

    def replica_of(self, master: int) -> int:
        """The port of a live replica of the master on `master`."""
        nodes = self.node(master).cluster("nodes")
        master_id = next(node["node_id"] for node in nodes.values() if "myself" in node["flags"])
        for address, node in nodes.items():
            if node["master_id"] == master_id and "slave" in node["flags"] and "fail" not in node["flags"]:
                return int(address.split(":")[1].split("@")[0])
        raise AssertionError(f"{master} has no live replica")

    def freeze(self, port: int) -> None:
        """SIGSTOP a node: it neither answers nor takes its master's writes until thawed."""
        pid = self.pid(port)
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)

    def cut_off_replicas(self, master: int) -> None:
        """Close the master's replication links (its frozen replicas cannot reconnect): what it
        takes from now on reaches no replica, even from the socket buffers."""
        self.node(master).client_kill_filter(_type="replica")

    def thaw(self, port: int) -> None:
        pid = self.pid(port)
        if pid is not None:
            os.kill(pid, signal.SIGCONT)

    def flush(self) -> None:
        for port in self.masters():
            self.node(port).flushall()

    def pid(self, port: int) -> int | None:
        pid_file = self.root / str(port) / "redis.pid"
        try:
            pid = int(pid_file.read_text().strip())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        return pid

    def kill(self, port: int) -> None:
        """kill -9 a node: no goodbye to the cluster, its unreplicated writes lost."""
        pid = self.pid(port)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        (self.root / str(port) / "redis.pid").unlink(missing_ok=True)

    def stop(self) -> None:
        for port in self.ports:
            pid = self.pid(port)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                os.kill(pid, signal.SIGCONT)
        shutil.rmtree(self.root, ignore_errors=True)

    @staticmethod
    def _wait(check, message: str, log: Path | None = None) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except (redis.RedisError, OSError):
                pass
            time.sleep(0.05)
        if log is not None and log.exists():  # the node's own words (e.g. a port already in use)
            message += ":\n" + "\n".join(log.read_text(errors="replace").splitlines()[-5:])
        raise AssertionError(message)
