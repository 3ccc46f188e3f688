#!/usr/bin/env bash
# Runs the whole suite; pytest's exit code 5 ("no tests collected") is a failure, not a pass.
set -u
PYTHON="${1:-.venv/bin/python}"
shift || true
"$PYTHON" -m pytest -q "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "run-tests: pytest collected no tests - failing" >&2
  exit 1
fi
exit "$rc"
