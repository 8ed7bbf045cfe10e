#!/bin/sh
# What `make bench` needs beyond .venv, each step a no-op when already done:
#   bench/.venv        matplotlib for the chart (kept out of the service's dependencies)
#   bench/.venv-proxy  LiteLLM proxy, pinned, in its own venv (its dependencies clash with ours)
#   wrk, redis-server  from Debian when missing and we are root
# Both venvs install only from the hash-pinned files; regenerate those with
#   cd bench && ../.venv/bin/uv pip compile --no-config --generate-hashes --python-version 3.11 requirements.in -o requirements.txt
#   cd bench && ../.venv/bin/uv pip compile --no-config --generate-hashes --python-version 3.11 requirements-proxy.in -o requirements-proxy.txt
set -eu
cd "$(dirname "$0")"
UV=../.venv/bin/uv
PYTHON=../.venv/bin/python

sync_venv() {  # $1 venv dir, $2 hash-pinned requirements
  if [ -f "$1/.synced" ] && [ ! "$2" -nt "$1/.synced" ]; then return 0; fi
  echo "bench: installing $2 into $1"
  [ -x "$1/bin/python" ] || "$UV" venv --quiet --python "$PYTHON" "$1"
  VIRTUAL_ENV="$1" "$UV" pip sync --no-config --quiet --require-hashes "$2"
  # litellm had poisoned releases that dropped .pth files (run at every interpreter start): refuse any.
  stray=$(find "$1" -name '*.pth' ! -name '_virtualenv.pth' ! -name 'distutils-precedence.pth' ! -name '__editable__*')
  if [ -n "$stray" ]; then echo "bench: unexpected .pth files in $1: $stray" >&2; exit 1; fi
  touch "$1/.synced"
}

apt_install() {  # $1 command, $2 Debian package; the bench copes without wrk, not without Redis
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bench: installing $2 from Debian"
    apt-get install -y -q "$2" >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$2" >/dev/null 2>&1; } || true
  fi
  command -v "$1" >/dev/null 2>&1 || echo "bench: $1 is not installed (apt-get install -y $2)" >&2
}

sync_venv .venv requirements.txt
sync_venv .venv-proxy requirements-proxy.txt
apt_install wrk wrk
apt_install redis-server redis-server
