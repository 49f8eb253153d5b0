"""docs/api.md runs: its shell blocks, in order, against a live server."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from campaigns.api.auth import api_key_create

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq")
@pytest.mark.django_db(transaction=True)
def test_the_api_walkthrough_runs_as_written(live_server):
    _, key = api_key_create(name="docs")
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 8
    script = "set -euo pipefail\n" + "\n".join(blocks)

    result = subprocess.run(
        ["bash", "-c", script],
        env={"CRIER": live_server.url, "KEY": key, "PATH": "/usr/bin:/bin:/usr/local/bin"},
        capture_output=True, text=True, timeout=120,
    )

    assert result.returncode == 0, f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    assert '"external_id","email","status"' in result.stdout  # the CSV export's header, every cell quoted
