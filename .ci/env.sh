# Sourced by .ci/test, .ci/demo and the benchmarks: builds .venv from nothing with uv.
# Needs only python3 (>= 3.10) and pip on PATH and the package registries.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BABOU_VENV:-$ROOT/.venv}"
export UV_COMPILE_BYTECODE=1   # this environment sets PYTHONDONTWRITEBYTECODE; airflow is 2.5x slower without .pyc
export UV_LINK_MODE=copy

if ! command -v uv >/dev/null 2>&1; then
    python3 -m pip install --quiet --user uv >/dev/null 2>&1 || python3 -m pip install --quiet uv
    export PATH="$HOME/.local/bin:$PATH"
fi
if [ ! -x "$VENV/bin/python" ]; then
    uv venv --quiet --python "${BABOU_PYTHON:-python3}" "$VENV"
fi
# BABOU_PIN adds requirements and BABOU_UV_ARGS resolver options; the floor job in .ci/test uses
# them to install Airflow 3.1.0 with the dependency versions that were current when it came out.
# Without a pin the newest job is not the newest Airflow: from nothing, uv settles on apache-airflow
# 3.2.2 with newer cadwyn and fastapi (seen 2026-11-25). So the default job asks for the Airflow
# release we build against, or newer.
# shellcheck disable=SC2086
VIRTUAL_ENV="$VENV" uv pip install --quiet ${BABOU_UV_ARGS:-} -e "$ROOT[${BABOU_EXTRAS:-dev}]" ${BABOU_PIN:-"apache-airflow>=3.3.2"}
export PATH="$VENV/bin:$PATH"
export VIRTUAL_ENV="$VENV"
