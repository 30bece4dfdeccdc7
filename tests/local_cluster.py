"""A real Ray cluster of several nodes on this machine: ``ray start --head`` plus ``ray start
--address=HEAD`` per further node, each node with its own ``--temp-dir`` (Ray 2.60 takes one per
node), its own CPU/GPU counts and a custom resource naming it (``cluster_node<i>``).

GPUs are fake: Ray accepts ``--num-gpus=N`` on a machine without any and only hands the ids out
(``ray.get_gpu_ids()``, ``CUDA_VISIBLE_DEVICES``); nothing here touches a device.

Token auth (on by default in Ray 2.60) uses a token made here and passed to every process started
through ``cluster.env`` (with this checkout first on PYTHONPATH); RAY_ADDRESS of the caller is
dropped. Cleanup never runs ``ray stop`` (it would stop every Ray on the machine): the processes
whose command line names one of this cluster's temp dirs, and their descendants, are stopped by pid
(``e2e_helpers.kill_processes``).
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Iterator

from e2e_helpers import REPO, kill_processes, processes_of

NODE_RESOURCE = "cluster_node{}"  # custom resource naming node i (so a test can tell head from worker)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalCluster:
    gcs_address: str  # 127.0.0.1:PORT (ray.init / ray start --address)
    dashboard_url: str  # http://127.0.0.1:PORT (ray job submit, state API)
    env: dict  # environment for drivers and CLI clients of this cluster (auth token, no RAY_ADDRESS)
    temp_dirs: list[str] = field(default_factory=list)  # one per node, head first

    def run(self, cmd: list[str], *, timeout: float, driver: bool = False) -> subprocess.CompletedProcess:
        """Run ``cmd`` in the repo; with ``driver`` RAY_ADDRESS points at this cluster (a Ray driver)."""
        env = dict(self.env, RAY_ADDRESS=self.gcs_address) if driver else self.env
        return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)

    def nodes(self) -> dict[str, str]:
        """node id -> node name (``cluster_node<i>``, i = start order) of every alive node, from the state API."""
        done = self.run(["ray", "list", "nodes", f"--address={self.dashboard_url}", "--format=json", "--detail"],
                        timeout=60)
        assert done.returncode == 0, done.stderr[-3000:]
        names = {}
        for node in json.loads(done.stdout):
            if node["state"] == "ALIVE":
                names[node["node_id"]] = next(k for k in node["resources_total"] if k.startswith("cluster_node"))
        return names

    def actors(self) -> list[dict]:
        """Every actor the cluster has known (dead ones included), from the state API."""
        done = self.run(["ray", "list", "actors", f"--address={self.dashboard_url}", "--format=json", "--detail",
                         "--limit=10000"], timeout=60)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout)


@contextlib.contextmanager
def local_cluster(nodes: list[dict], *, object_store_mb: int = 300) -> Iterator[LocalCluster]:
    """Start one Ray node per entry of ``nodes`` (``{"num_cpus": 2, "num_gpus": 4}``; the first is
    the head, with the dashboard); stop exactly these processes afterwards."""
    temp_dirs = [tempfile.mkdtemp(prefix=f"raynode{i}_", dir="/tmp") for i in range(len(nodes))]  # short: socket paths
    gcs_port, dashboard_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "CUDA_VISIBLE_DEVICES")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))
    # this checkout, whatever the installer mapped (aletheia_ray/__init__.py): drivers, nodes, their workers
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    cluster = LocalCluster(f"127.0.0.1:{gcs_port}", f"http://127.0.0.1:{dashboard_port}", env, temp_dirs)
    try:
        for i, (node, temp) in enumerate(zip(nodes, temp_dirs)):
            cmd = ["ray", "start", "--node-ip-address=127.0.0.1", f"--num-cpus={node['num_cpus']}",
                   f"--num-gpus={node.get('num_gpus', 0)}", f"--resources={json.dumps({NODE_RESOURCE.format(i): 1})}",
                   f"--temp-dir={temp}", f"--object-store-memory={object_store_mb * 1024 ** 2}",
                   # node-local agents: ports of their own (two nodes share this machine)
                   f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}",
                   "--disable-usage-stats"]
            if i == 0:
                cmd += ["--head", f"--port={gcs_port}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                        f"--dashboard-port={dashboard_port}"]
            else:
                cmd += [f"--address={cluster.gcs_address}"]
            done = cluster.run(cmd, timeout=180)
            if done.returncode != 0:
                raise RuntimeError(f"ray start of node {i} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        yield cluster
    finally:
        kill_processes([p for temp in temp_dirs for p in processes_of(temp)])
        for temp in temp_dirs:
            shutil.rmtree(temp, ignore_errors=True)
