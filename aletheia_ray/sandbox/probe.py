"""Probe: run a program inside the slot's sandbox and turn its findings into an IsolationReport.

Gets the slot as a ``SlotAccess`` (slot_access.py) plus what only the report needs (set-up
problems, cgroup, subreaper); it never imports the executor."""
from __future__ import annotations

import json
import os
import shutil
from typing import Optional

from aletheia_ray.sandbox.isolation import IsolationReport, Limits, SlotCgroup, resolve_binary
from aletheia_ray.sandbox.slot_access import SlotAccess

HOST_PATHS = ("/root", "/etc/shadow", "/work", "/home")


def run_probe(slot: SlotAccess, problems: dict[str, str], cgroup: Optional[SlotCgroup],
              subreaper: bool) -> IsolationReport:
    """What each isolation layer of ``slot`` achieved. ``problems``: set-up failures by layer
    (seccomp, namespaces); ``cgroup``: the slot's cgroup (None when not root); ``subreaper``:
    whether the executor adopts orphans."""
    prog = slot.new_dir()
    try:
        _, harness = slot.paths(prog)
        argv = [resolve_binary("python3"), "-I", "-B", os.path.join(harness, "probe.py"),
                json.dumps([p for p in HOST_PATHS if os.path.exists(p)])]
        limits = Limits(cpu_s=10, memory_mb=512)
        raw, _ = slot.launch(argv, prog, False, limits, b"", 20.0, 1 << 20)
    finally:
        shutil.rmtree(prog, ignore_errors=True)
    if raw.returncode != 0:
        err = (raw.launch_error or raw.stderr.decode(errors="replace"))[-500:]
        return IsolationReport("broken", {"probe": f"probe program failed: {err}"})
    seen = json.loads(raw.stdout)
    layers: dict[str, str] = {}
    good: list[bool] = []

    def layer(name: str, ok: bool, text: str) -> None:
        good.append(ok)
        layers[name] = ("ok: " if ok else "MISSING: ") + text

    namespaced = slot.mode == "bwrap"
    layer("network", seen["interfaces"] == ["lo"],
          f"interfaces inside: {seen['interfaces']}")
    writes = {d: seen[f"write_{d}"] for d in ("usr", "root", "dev")}
    layer("filesystem", not seen["host_paths_visible"]
          and all("denied" in w for w in writes.values()),
          f"host paths visible: {seen['host_paths_visible'] or 'none'}; "
          + "; ".join(f"write to {'/' + d if d != 'root' else '/'}: {w}"
                      for d, w in writes.items()))
    layer("pid_namespace", max(seen["visible_pids"]) < 100,
          f"visible pids: {seen['visible_pids'][:8]}")
    pid1_env = {k for k in seen["pid1_env_keys"] if not k.startswith("<unreadable")}
    layer("environment", pid1_env <= {"PATH", "LANG", "HOME", "TMPDIR"},
          f"pid 1 env keys: {seen['pid1_env_keys']}; own env keys: {seen['env_keys']}")
    layer("uid", seen["uid"] != 0, f"runs as uid {seen['uid']}")
    layer("seccomp", "denied" in seen["socket_inet"] and "denied" in seen["unshare"],
          f"socket(AF_INET): {seen['socket_inet']}; unshare(NEWUSER): {seen['unshare']}"
          + (f" ({problems['seccomp']})" if "seccomp" in problems else ""))
    lim = seen["rlimits"]
    layer("rlimits", lim["NPROC"] > 0 and lim["CORE"] == 0 and lim["CPU"] > 0,
          ", ".join(f"{k}={v}" for k, v in lim.items()))
    layer("scratch_tmpfs", 0 < seen["scratch_mb"] <= limits.scratch_mb
          and 0 < seen["shm_mb"] <= limits.scratch_mb,
          f"scratch (cwd) is {seen['scratch_mb']} MiB, /dev/shm {seen['shm_mb']} MiB")
    cg = cgroup
    for ctrl in ("memory", "pids"):
        ok = bool(cg and ctrl in cg.dirs)
        text = cg.dirs[ctrl] if ok else (cg.problems.get(ctrl, "not root") if cg else "not root")
        layer(f"cgroup_{ctrl}", ok, text)
    layer("subreaper", subreaper, "orphans of killed runs are adopted and reaped")
    # measured: which of the probe's namespaces differ from the host's (own process)
    fresh = sorted(ns for ns, ident in seen["namespaces"].items()
                   if ident != os.readlink(f"/proc/self/ns/{ns}"))
    shared = sorted(set(seen["namespaces"]) - set(fresh))
    if not namespaced:
        level = "none"
        layers["namespaces"] = "MISSING: " + problems.get("namespaces", "isolation='none'")
    else:
        layer("namespaces", not shared, f"bubblewrap: own {', '.join(fresh) or 'none'}"
              + (f"; SHARED with the host: {', '.join(shared)}" if shared else ""))
        level = "full" if all(good) else "partial"
    # CPU accounting is how time_limit_s is measured, not an isolation layer: reported only
    layers["cpu_accounting"] = (f"cgroup cpuacct {cg.dirs['cpuacct']}" if cg and "cpuacct"
                                in cg.dirs else "supervisor wait4 for stdio tests; else only "
                                "the CPU rlimit (whole seconds)")
    return IsolationReport(level, layers)
