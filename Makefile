# One command to run, one to test. `make install` is idempotent and near-instant when nothing changed.
PYTHON ?= python3
VENV   := .venv
UV     := $(VENV)/bin/uv
STAMP  := $(VENV)/.synced

.PHONY: install run test clean bench bench-budgets bench-retrieval faults

install: $(STAMP)

$(STAMP): pyproject.toml uv.lock .ci/uv-bootstrap.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@test -x $(UV) || $(VENV)/bin/python -m pip install -q --disable-pip-version-check --require-hashes -r .ci/uv-bootstrap.txt
	@# Bytecode compiled once here, so the first `make run` does not compile litellm (seconds).
	$(UV) sync --frozen --quiet --compile-bytecode
	@# litellm had poisoned releases that dropped .pth files: fail loudly on any we did not expect.
	@stray=$$(find $(VENV) -name '*.pth' ! -name '__editable__*' ! -name 'distutils-precedence.pth' ! -name '_virtualenv.pth'); \
	  if [ -n "$$stray" ]; then echo "unexpected .pth files (they run code at every start): $$stray"; exit 1; fi
	@touch $(STAMP)

# `make run PORT=8080` to listen elsewhere (default: server.port of config.toml, 8000).
run: install
	$(VENV)/bin/chatspark serve --dev $(if $(PORT),--port $(PORT))

# Two pytest workers on the 2-core machine (one per core, at most 4 elsewhere): most tests wait on
# sockets and Redis, so a second process keeps both cores busy. `PYTEST_ARGS=-n0` runs them in one.
# loadgroup: tests marked xdist_group run in one worker (tests/gateway shares one nginx + 3 replicas).
test: install
	@sh tests/setup.sh
	$(VENV)/bin/python -m pytest -n auto --maxprocesses 4 --dist loadgroup $(PYTEST_ARGS)

# Chatspark vs LiteLLM proxy on one fake upstream, then the feature budgets, then the README's bench
# section regenerated from both (bench/README.md); ≤ 10 minutes. BENCH_ARGS=--quick for ~3 minutes,
# results in bench/results/quick/ and the README left alone.
bench: install
	@sh bench/setup.sh
	$(VENV)/bin/python -m bench $(BENCH_ARGS) $(if $(findstring --quick,$(BENCH_ARGS)),--out bench/results/quick)
	$(VENV)/bin/python -m bench.budgets $(if $(findstring --quick,$(BENCH_ARGS)),--quick --out bench/results/quick)
	$(if $(findstring --quick,$(BENCH_ARGS)),,$(VENV)/bin/python -m bench.readme)

# Only the feature budgets (bench/results/budgets.md): CPU, latency and Redis round trips each adds to a turn.
bench-budgets: install
	$(VENV)/bin/python -m bench.budgets $(BENCH_ARGS)

# Retrieval quality and speed (bench/retrieval): top-1, recall@5, MRR, no-answer; search latency by size.
bench-retrieval: install
	$(VENV)/bin/python -m bench.retrieval

# Knowledge: website and text ingestion, a grounded turn's added latency and CPU (bench/README.md);
# about a minute, against the Redis at $REDIS_URL (default 127.0.0.1:6379) under a throwaway prefix.
.PHONY: bench-knowledge
bench-knowledge: install
	$(VENV)/bin/python -m bench.knowledge $(BENCH_ARGS)

# The fault suite (tests/faults): Redis killed mid-load, upstream faults, slow readers, a 2-minute
# soak; prints the table (faults, requests, acknowledged turns, turns lost, 5xx, RSS/fd drift).
faults: install
	$(VENV)/bin/python -m pytest -m faults tests/faults; status=$$?; \
	  $(VENV)/bin/python -m tests.faults.report; exit $$status

clean:
	rm -rf $(VENV)
