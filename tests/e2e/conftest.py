"""Fixtures that run the real binaries: ollama-sim, and (for passthrough tests) foreman."""
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "target" / "debug"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, what: str) -> None:
    deadline = time.time() + 20
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}")


@pytest.fixture(scope="session")
def sim_url():
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "ollama-sim"), "--listen", f"127.0.0.1:{port}", "--time-scale", "0.001", "--log", "warn"],
    )
    wait_listening(port, proc, "ollama-sim")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def foreman_url(sim_url, tmp_path_factory):
    """foreman serving in front of the simulator, with its data in a temp dir."""
    port = free_port()
    data = tmp_path_factory.mktemp("foreman-data")
    env = dict(os.environ, FOREMAN_LOG="warn")
    proc = subprocess.Popen(
        [str(BIN / "foreman"), "serve", "--listen", f"127.0.0.1:{port}",
         "--target", sim_url, "--data-dir", str(data)],
        cwd=str(data), env=env,
    )
    wait_listening(port, proc, "foreman")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    assert proc.wait(timeout=30) == 0, "foreman exits 0 on SIGTERM"
