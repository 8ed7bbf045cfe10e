#!/bin/sh
# What `make test` needs beyond .venv, each step a no-op when already there:
#   redis-server  the suite uses $REDIS_URL or 127.0.0.1:6379 for most tests, but the fault and
#                 cluster tests start private servers of their own, so the binary must exist.
# Installed from Debian when missing and we are root; otherwise says what to install and stops.
set -eu

need() {  # $1 command, $2 Debian package, $3 why
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "make test: installing $2 from Debian ($3)"
    { apt-get install -y -qq "$2" || { apt-get update -qq && apt-get install -y -qq "$2"; }; } >/dev/null 2>&1 || true
  fi
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "make test: needs $1 ($3); install it, e.g. 'sudo apt-get install $2'" >&2
    exit 1
  fi
}

need redis-server redis-server "the fault and cluster tests start private Redis servers"
