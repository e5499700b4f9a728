"""schemathesis against foreman's /openapi.json: no 5xx, every response conforms to the schema."""
import subprocess
from pathlib import Path


def test_openapi_contract_holds_under_generated_input(foreman_url):
    st = Path(__file__).resolve().parents[2] / "target" / "e2e-venv" / "bin" / "schemathesis"
    result = subprocess.run(
        [str(st), "run", f"{foreman_url}/openapi.json",
         "--checks", "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
         "--max-examples", "50", "--seed", "1"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
