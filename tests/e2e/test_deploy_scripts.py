"""scripts/pull-models.sh against foreman in front of the simulator."""
import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pull-models.sh"


def run(foreman_url, *models):
    env = dict(os.environ, FOREMAN_URL=foreman_url)
    return subprocess.run([str(SCRIPT), *models], capture_output=True, text=True, env=env, timeout=120)


def test_pulls_show_progress_and_are_idempotent(foreman_url):
    first = run(foreman_url, "tinyllama")
    assert first.returncode == 0, first.stderr
    assert "pulling manifest" in first.stdout and "100%" in first.stdout and "ok" in first.stdout
    again = run(foreman_url, "tinyllama", "llama3.2")
    assert again.returncode == 0, again.stderr


def test_an_unknown_model_fails_the_script(foreman_url):
    r = run(foreman_url, "llama3.2", "no-such-model")
    assert r.returncode == 1
    assert "FAILED: no-such-model" in r.stderr
    assert "file does not exist" in r.stderr
