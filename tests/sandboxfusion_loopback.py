"""Test helper: a SandboxFusion-compatible ``POST /run_code`` server on 127.0.0.1, backed by our
local executor (bubblewrap sandbox), plus failure modes for the client's error handling.

Modes: ``normal``; ``fail_first:N`` (HTTP 500 for the first N requests, then normal);
``sandbox_error`` (every answer is ``{"status": "SandboxError"}``); ``hang`` (never answers until
the server stops); ``bad_request`` (HTTP 400).
"""
from __future__ import annotations

import json
import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aletheia_ray.sandbox.executor import STARTUP_S, Executor
from aletheia_ray.sandbox.isolation import Limits
from aletheia_ray.sandbox.languages import language


class LoopbackSandboxFusion:
    """``with LoopbackSandboxFusion(executor, mode) as server: server.url``"""

    def __init__(self, executor: Executor, mode: str = "normal"):
        self.executor = executor
        self.mode = mode
        self.requests: list[dict] = []  # every /run_code payload received
        self._lock = threading.Lock()  # the executor is one slot: one program at a time
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "LoopbackSandboxFusion":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------ protocol
    def answer(self, payload: dict) -> tuple[int, dict]:
        with self._lock:
            self.requests.append(payload)
            count = len(self.requests)
        if self.mode.startswith("fail_first:") and count <= int(self.mode.split(":")[1]):
            return 500, {"detail": "injected internal server error"}
        if self.mode == "sandbox_error":
            return 200, {"status": "SandboxError", "message": "injected: container died",
                         "compile_result": None, "run_result": None}
        if self.mode == "hang":
            self._stop.wait(120)
            return 503, {"detail": "server stopping"}
        if self.mode == "bad_request":
            return 400, {"detail": "injected bad request"}
        with self._lock:
            return 200, self._run_code(payload)

    def _run_code(self, p: dict) -> dict:
        ex, lang = self.executor, language(p["language"])
        prog = ex.new_dir()
        try:
            with open(os.path.join(prog, lang.source_name), "w", encoding="utf-8") as fh:
                fh.write(p["code"])
            prog_in, harness_in = ex.paths(prog)
            compile_result = None
            if lang.compiled:
                if ex.uid is not None:
                    os.chown(prog, ex.uid, ex.uid)
                argv = lang.compile_argv(prog_in, harness_in, False, 2048)
                limits = Limits(cpu_s=p["compile_timeout"], memory_mb=2048 + lang.memory_overhead_mb,
                                address_space=lang.address_space_limit, fsize_mb=256, nofile=1024)
                raw, _ = ex.launch(argv, prog, True, limits, b"", p["compile_timeout"], 1 << 20)
                if ex.uid is not None:
                    os.chown(prog, 0, 0)
                compile_result = _command_result(raw)
                if compile_result["status"] != "Finished" or raw.returncode != 0:
                    return {"status": "Failed", "message": "", "compile_result": compile_result,
                            "run_result": None}
            cpu = p["run_timeout"] + STARTUP_S[lang.name]
            limits = Limits(cpu_s=cpu, memory_mb=p["memory_limit_MB"] + lang.memory_overhead_mb,
                            address_space=lang.address_space_limit)
            argv = lang.run_argv(prog_in, harness_in, "stdio", p["memory_limit_MB"])
            raw, _ = ex.launch(argv, prog, False, limits, p["stdin"].encode(), cpu, 64 << 20)
            run_result = _command_result(raw)
            ok = run_result["status"] == "Finished" and raw.returncode == 0
            return {"status": "Success" if ok else "Failed", "message": "",
                    "compile_result": compile_result, "run_result": run_result}
        finally:
            shutil.rmtree(prog, ignore_errors=True)

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server API
                if self.path != "/run_code":
                    return self._send(404, {"detail": "not found"})
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self._send(*server.answer(body))

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # client gave up (timeout test)
                    pass

            def log_message(self, *args):  # keep pytest output clean
                pass

        return Handler


def _command_result(raw) -> dict:
    if raw.launch_error:
        raise RuntimeError(f"loopback sandbox could not launch: {raw.launch_error}")
    return {"status": "TimeLimitExceeded" if raw.timed_out else
            ("Finished" if raw.returncode == 0 else "Error"),
            "execution_time": raw.wall_s, "return_code": raw.returncode,
            "stdout": raw.stdout.decode(errors="replace"),
            "stderr": raw.stderr.decode(errors="replace")}
