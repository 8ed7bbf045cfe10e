"""What only the litellm backend has: litellm's offline mode. The behaviours every backend shares
(answers, streams, retries, error mapping, timeouts, closing, warm-up, network use) are in
tests/test_backend_contract.py, run against this backend too."""

from __future__ import annotations

from tests.test_backend_contract import audit


def test_litellm_runs_offline() -> None:
    seen = audit("litellm")  # a fresh interpreter, without any LITELLM_ variable
    assert seen["offline"] == "true"  # set by backends.litellm before litellm is imported
    assert seen["after_import"] == []  # so: no cost-map fetch, no tokenizer download at import
