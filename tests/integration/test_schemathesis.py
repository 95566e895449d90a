"""#18 item 7: schemathesis (``--checks all``) against a live ``latfarm serve``: every answer of every operation
matches the OpenAPI document (statuses, bodies, headers), no request reaches a 500, schema-valid requests are
accepted and schema-violating ones refused."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx
import pytest

from tests.integration.test_serve import Served

# The fuzzer creates admin keys, after which revoking the run's own key is allowed (only the last admin key is
# refused, see test_auth_throttle) and would lock the run out of every later operation: that path runs last, alone.
REVOKE = "/v1/keys/{key_id}"


@pytest.mark.slow
def test_the_api_matches_its_openapi_document(tmp_path):
    # the fuzzer sends wrong keys on purpose (ignored_auth): throttling them is test_auth_throttle's subject
    served = Served(["--data-dir", str(tmp_path / "data")], LATFARM_AUTH_FAILURE_LIMIT="100000/minute")
    try:
        admin = {"Authorization": f"Bearer {served.key}"}
        example = httpx.post(f"{served.rest}/v1/devices", json={"name": "pixel7-cpu-fp32"}, headers=admin, timeout=10)
        assert example.status_code == 201, example.text  # the documented example names a device that exists
        for selection in (("--exclude-path", REVOKE), ("--include-path", REVOKE)):
            run = subprocess.run(
                [
                    *(sys.executable, "-m", "schemathesis.cli", "run", f"{served.rest}/openapi.json"),
                    *("--checks", "all", "--header", f"Authorization: Bearer {served.key}"),
                    *("--max-examples", "25", "--seed", "1", "--generation-database", "none"),
                    *(*selection, "--no-color"),
                    *("--request-timeout", "120"),  # an adaptation of 200 samples takes seconds
                    # --checks all would fail an answer slower than 10 s: on a loaded runner an adaptation of a big
                    # batch size took 11 s. Speed is bench/'s subject; this run checks conformance.
                    *("--max-response-time", "120"),
                ],
                capture_output=True,
                text=True,
                timeout=900,
                cwd=tmp_path,  # its cache folder stays out of the repository
            )
            assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
            assert "passed" in run.stdout and "failures" not in run.stdout.split("SUMMARY")[-1].lower()
            assert ("Selected: 1/" in run.stdout) == (selection[0] == "--include-path"), run.stdout[-2000:]
    finally:
        served.stop(signal.SIGINT)
