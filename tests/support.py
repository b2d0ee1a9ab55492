"""Test helpers importable from any test (pytest puts tests/ on sys.path): the real server."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = (ROOT / ".." / "shared" / "datasets").resolve()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`personalize serve` as a user runs it: a real process on a real port."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir, self.port = data_dir, free_port()
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Server:
        import httpx
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "serving.cli", "serve", "--data-dir", str(self.data_dir),
                 "--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited rc={self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError(f"server not healthy in {timeout}s:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self, service: str):  # type: ignore[no-untyped-def]
        import boto3
        return boto3.client(service, endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id="test", aws_secret_access_key="test")


class Worker:
    """`personalize stream worker` as a real process (SIGKILL-able)."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.env = {**os.environ, **env}
        self.log = log_dir / f"worker-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "serving.cli", "stream", "worker"],
                                         stdout=log, stderr=subprocess.STDOUT, env=self.env)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self, tail: int | None = 5000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text[-tail:] if tail else text
