#!/bin/sh
# What `make test` needs beyond .venv, each step a no-op when already there:
#   redis-server  the suite uses $REDIS_URL or 127.0.0.1:6379 for most tests, but the fault and
#                 cluster tests start private servers of their own, so the binary must exist.
#   nginx         tests/gateway run deploy/nginx.conf with Debian's nginx in front of 3 replicas.
#   chromium      the widget's browser tests (tests/browser) drive Debian's Chromium through
#                 Playwright, never a browser Playwright downloads; plus a font to render text with.
#   tests/node    `npm ci` when its lock changed (the SSE clients, axe-core): once, here, before
#                 the pytest workers start, so two of them never run it at the same time.
# Installed from Debian when missing and we are root; otherwise says what to install and stops
# (for chromium and nginx only under CI=true: elsewhere their tests then skip, saying why).
set -eu

# Debian puts nginx in /usr/sbin, which a non-root PATH may lack (tests/gateway look there too).
PATH="$PATH:/usr/sbin:/usr/local/sbin"

need() {  # $1 command, $2 Debian package, $3 why, $4 "optional": outside CI, go on without it
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "make test: installing $2 from Debian ($3)"
    { apt-get install -y -qq "$2" || { apt-get update -qq && apt-get install -y -qq "$2"; }; } >/dev/null 2>&1 || true
  fi
  if ! command -v "$1" >/dev/null 2>&1; then
    if [ "${4:-}" = optional ] && [ "${CI:-}" != true ]; then
      echo "make test: no $1 ($3): those tests will skip; install it, e.g. 'sudo apt-get install $2'" >&2
      return 0
    fi
    echo "make test: needs $1 ($3); install it, e.g. 'sudo apt-get install $2'" >&2
    exit 1
  fi
}

need redis-server redis-server "the fault and cluster tests start private Redis servers"
need nginx nginx "the gateway tests (tests/gateway) run deploy/nginx.conf in front of 3 replicas" optional
need chromium chromium "the widget's browser tests (tests/browser) drive it headless" optional
# A headless Chromium renders text only with some font installed (a bare image may have none).
if ! fc-list 2>/dev/null | grep -q .; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "make test: installing fonts-dejavu-core from Debian (text in the browser tests' pages)"
    { apt-get install -y -qq fonts-dejavu-core || { apt-get update -qq && apt-get install -y -qq fonts-dejavu-core; }; } >/dev/null 2>&1 || true
  fi
fi
node_lock=tests/node/package-lock.json
node_done=tests/node/node_modules/.package-lock.json  # npm ci writes it last
if command -v npm >/dev/null 2>&1 && { [ ! -e "$node_done" ] || [ "$node_done" -ot "$node_lock" ]; }; then
  echo "make test: npm ci in tests/node (browser SSE clients, axe-core)"
  (cd tests/node && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
