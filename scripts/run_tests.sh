#!/usr/bin/env bash
# Set up .venv (when missing or out of date) and run composer's test suite.
#
#   scripts/run_tests.sh            # venv + pytest (what CI runs)
#   scripts/run_tests.sh --docker   # also build the image and run the tests inside it (needs a Docker daemon)
#   scripts/run_tests.sh --real     # also pull musicgen-small/medium and generate a short clip with each
#                                   # (needs hub access; meant for a GPU machine)
#   scripts/run_tests.sh -- -k cli  # anything after the flags goes to pytest
#
# Environment: PYTHON (interpreter for the venv, default python3), TORCH_VERSION (default 2.13.0),
# TORCH_INDEX_URL (e.g. a CUDA wheel index; default: pip's own configuration).
set -euo pipefail
cd "$(dirname "$0")/.."

docker=0 real=0
pytest_args=()
for arg in "$@"; do
  case "$arg" in
    --docker) docker=1 ;;
    --real) real=1 ;;
    --) ;;
    *) pytest_args+=("$arg") ;;
  esac
done

python=${PYTHON:-python3}
torch_version=${TORCH_VERSION:-2.13.0}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
venv_py=.venv/bin/python

# Reinstall only when pyproject.toml (or the torch pin) changed since the last install.
stamp=.venv/.composer-install-stamp
want="$(sha256sum pyproject.toml | cut -d' ' -f1) torch==$torch_version"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "== installing torch==$torch_version and composer[dev,ray]"
  "$venv_py" -m pip install -q --upgrade pip
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "   GPU found: installing a CUDA build of torch"
  else
    echo "   no GPU: installing torch for CPU (a local CPU wheel where pip is configured with one)"
  fi
  # shellcheck disable=SC2086
  "$venv_py" -m pip install -q "torch==$torch_version" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
  "$venv_py" -m pip install -q -e ".[dev,ray]"  # ray: the cluster tests run a real local Ray cluster
  echo "$want" > "$stamp"
fi

# Two system tools some tests use, installed here when missing and we are root with apt-get; otherwise
# those tests are skipped, saying why: Debian's Chromium (the studio's browser tests drive it through
# Playwright, whose own browser download is not needed) and FFmpeg (ffprobe reads the files' tags back).
for tool in chromium:chromium ffprobe:ffmpeg; do
  command=${tool%%:*} package=${tool##*:}
  if ! command -v "$command" >/dev/null 2>&1 && ! command -v "$command-browser" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "== installing Debian's $package for the tests that use it"
      (apt-get install -y -q "$package" >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 &&
        apt-get install -y -q "$package" >/dev/null 2>&1; }) || echo "   could not install $package: its tests will be skipped"
    else
      echo "== no $command (and not root with apt-get): the tests that use it will be skipped"
    fi
  fi
done

echo "== ruff + mypy"
.venv/bin/ruff check composer tests bench
.venv/bin/ruff format --check -q composer tests bench
.venv/bin/mypy composer

echo "== pytest"
set +e
"$venv_py" -m pytest -q "${pytest_args[@]}"
status=$?
set -e
if [ "$status" -ne 0 ]; then
  exit "$status"
fi

if [ "$docker" = 1 ]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    echo "== docker: building composer:test and running the tests inside it"
    docker build --build-arg EXTRAS=dev -t composer:test .
    docker run --rm --entrypoint python composer:test -m pytest -q /app/tests
  else
    echo "== docker: skipped (no Docker daemon reachable)"
  fi
fi

if [ "$real" = 1 ]; then
  echo "== real models: pulling small and medium, generating a 5 s clip with each"
  mkdir -p output
  .venv/bin/compose models pull small medium
  for size in small medium; do
    .venv/bin/compose generate --model "$size" --style industrial-ebm --duration 5 --seed 1 \
      --output "output/real-test-$size.wav"
  done
fi
