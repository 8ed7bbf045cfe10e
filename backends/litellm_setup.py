"""litellm, imported once the way every backend here needs it: offline and quiet.

Import `litellm` from here (`from backends.litellm_setup import litellm`), never directly: the
environment must be set before litellm's own import reads it.
"""

from __future__ import annotations

import gc
import logging
import os

# Offline mode stops the model-cost-map fetch and the tokenizer downloads; the repetition guard
# would otherwise cut legitimate repetitive output after 100 identical chunks (max_output_tokens
# already bounds a looping model).
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOG", "ERROR")
os.environ.setdefault("REPEATED_STREAMING_CHUNK_LIMIT", "100000")

import litellm  # noqa: E402

litellm.suppress_debug_info = True  # no banner on stdout for each exception
litellm.redact_messages_in_exceptions = True  # keeps user text out of exceptions and logs
litellm.disable_hf_tokenizer_download = True
if hasattr(litellm, "telemetry"):
    litellm.telemetry = False
for _name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
    # Our mapped errors are logged by the caller; litellm's own handlers would log them again.
    logging.getLogger(_name).handlers.clear()
    logging.getLogger(_name).setLevel(logging.ERROR)

# litellm's import leaves ~350,000 objects the cyclic GC tracks (the rest of a worker: ~30,000), and
# every full collection walks them all: ~0.3-0.5 s with the event loop stopped, often enough under
# load (open streams keep objects alive into the old generation) to stall streams for a second.
# They live as long as the process: collect the import's garbage once, then move them all out of
# the collector's sight (gc.freeze: a full collection afterwards takes microseconds).
gc.collect()
gc.freeze()


def exception_chain(exc: BaseException) -> list[BaseException]:
    """`exc` and what caused it, litellm's wrapped `original_exception` included: what a failure is
    (timeout, refused connection) is often only said deep down."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__ or getattr(current, "original_exception", None)
    return chain


__all__ = ["exception_chain", "litellm"]
