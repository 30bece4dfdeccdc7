"""Runs inside the sandbox: prove from the inside what each isolation layer achieved (JSON out)."""
import ctypes
import json
import os
import resource
import socket
import sys


def attempt(fn):
    try:
        fn()
        return "allowed"
    except OSError as exc:
        return f"denied ({exc.__class__.__name__}: {exc.strerror or exc})"


def main():
    host_paths = json.loads(sys.argv[1])
    report = {"uid": os.getuid(), "pid": os.getpid()}
    with open("/proc/net/dev") as fh:
        report["interfaces"] = sorted(l.split(":")[0].strip() for l in fh.readlines()[2:])
    report["socket_inet"] = attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    report["host_paths_visible"] = [p for p in host_paths if os.path.exists(p)]
    report["write_usr"] = attempt(lambda: open("/usr/aletheia-probe", "w"))
    report["write_root"] = attempt(lambda: open("/aletheia-probe", "w"))
    report["write_dev"] = attempt(lambda: open("/dev/aletheia-probe", "w"))
    report["namespaces"] = {ns: os.readlink(f"/proc/self/ns/{ns}")
                            for ns in ("net", "pid", "ipc", "mnt", "uts", "user", "cgroup")}
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.unshare(0x10000000)  # CLONE_NEWUSER
    report["unshare"] = "allowed" if rc == 0 else f"denied (errno {ctypes.get_errno()})"
    try:
        with open("/proc/1/environ", "rb") as fh:
            raw = fh.read()
        report["pid1_env_keys"] = sorted(k.split(b"=")[0].decode() for k in raw.split(b"\0") if k)
    except OSError as exc:
        report["pid1_env_keys"] = [f"<unreadable: {exc.strerror}>"]
    report["env_keys"] = sorted(os.environ)
    report["visible_pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    names = ("CPU", "AS", "NPROC", "FSIZE", "NOFILE", "CORE")
    report["rlimits"] = {n: resource.getrlimit(getattr(resource, f"RLIMIT_{n}"))[0] for n in names}
    st = os.statvfs(".")  # cwd: the scratch dir
    report["scratch_mb"] = st.f_blocks * st.f_frsize // (1 << 20)
    st = os.statvfs("/dev/shm")
    report["shm_mb"] = st.f_blocks * st.f_frsize // (1 << 20)
    report["cgroup"] = open("/proc/self/cgroup").read().strip().splitlines()
    print(json.dumps(report))


main()
