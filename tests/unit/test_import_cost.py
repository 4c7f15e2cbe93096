"""What a DAG file pays to import the operators: every DAG parse and task start pays it again."""

from __future__ import annotations

import subprocess
import sys


def test_the_operators_do_not_import_the_triggerers_http_client() -> None:
    code = "import sys, airflow_provider_babou.operators.babou; print(sorted({'aiohttp'} & set(sys.modules)))"
    command = [sys.executable, "-c", code]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
