"""A real `modelbuilder server` in a subprocess, for tests that need the whole process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """`modelbuilder server` in a subprocess over `home`, its output in a file."""

    def __init__(self, home: Path) -> None:
        self.home, self.port = home, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> Server:
        env = {**os.environ, "MODELBUILDER_HOME": str(self.home), "MODELBUILDER_OFFLINE": "1"}
        env.pop("MODELBUILDER_TOKEN", None)
        with open(self.home / "server-output.log", "ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "modelbuilder", "server", "--port", str(self.port)],
                                            env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.home / "server-output.log").read_text()[-2000:]
            try:
                httpx.get(f"{self.url}/api/v1/health", timeout=2)
                return self
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError("the server did not start")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
