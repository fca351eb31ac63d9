"""The `local` backend: a run's worker is a subprocess on this host.

A subprocess, not a thread, so that a crash of the training code (or of a native library under it)
cannot take the agent, the CLI or the server down. It gets a process session of its own, so a Ctrl-C
in the terminal that started `modelbuilder train` reaches the CLI (which cancels the run cleanly)
and not the worker directly. Its output goes to `logs/worker-<attempt>.log` in the run's folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from modelbuilder.config import get_settings
from modelbuilder.core import entities as e
from modelbuilder.core.artifacts import ArtifactStore
from modelbuilder.core.scheduler import local_pool, need_of, register_launcher, signal_name
from modelbuilder.core.sizes import SizeSpec


@dataclass
class LocalWorker:
    run_id: str
    attempt: int
    process: subprocess.Popen[bytes]
    log_path: Path
    _code: int | None = field(default=None, init=False)

    def poll(self) -> int | None:
        if self._code is None:
            self._code = self.process.poll()
        return self._code

    def interrupt(self) -> None:
        """Ask for a checkpoint and an exit at the next step (as a spot eviction's SIGTERM would)."""
        if self.poll() is None:
            try:
                self.process.send_signal(signal.SIGUSR1)
            except ProcessLookupError:
                pass

    def describe_exit(self) -> str:
        tail = _last_line(self.log_path)
        return f"worker exited ({signal_name(self.poll() or 0)}) before reporting an end" + (
            f"; last output: {tail}" if tail else "")


def _last_line(path: Path, limit: int = 300) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - 4096))
            lines = [line.strip() for line in f.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:limit] if lines else ""


def worker_command(run: e.Run, owner: str) -> list[str]:
    return [sys.executable, "-m", "modelbuilder.backends.worker", run.id, "--attempt", str(run.attempt),
            "--owner", owner]


class LocalLauncher:
    def launch(self, run: e.Run, owner: str, size: SizeSpec, compute: e.Compute) -> LocalWorker:
        run_dir = ArtifactStore(get_settings().artifacts).run_dir(run.id)
        log_path = run_dir / "logs" / f"worker-{run.attempt}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        need = need_of(size, local_pool())
        if need.cpus and not need.gpus:
            # A CPU size gets the cores it pays for, so runs sharing the host do not fight over them.
            env.setdefault("OMP_NUM_THREADS", str(max(1, need.cpus)))
        env["PYTHONUNBUFFERED"] = "1"
        with log_path.open("ab") as out:
            process = subprocess.Popen(worker_command(run, owner), stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        return LocalWorker(run.id, run.attempt, process, log_path)


register_launcher("local", LocalLauncher)
