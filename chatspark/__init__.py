"""Chatspark: AI agents behind one HTTP API."""

import os

# One BLAS thread per process: a retrieval is a small matrix-vector product, for which OpenBLAS's
# thread pool only adds latency (10k passages: p99 under 1 ms single-threaded, 8–21 ms with the
# pool; bench/retrieval). Set before numpy is first imported; an operator's own value wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
