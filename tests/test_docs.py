"""The published contract (docs/api.md) and the OpenAPI document list the same operations."""

from __future__ import annotations

import re
from pathlib import Path

from chatspark.openapi import document

CONTRACT = Path(__file__).resolve().parent.parent / "docs" / "api.md"
OPERATION = re.compile(r"\b(GET|POST|PATCH|PUT|DELETE|OPTIONS) (/[^\s(),`]+)")


def normalised(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def test_the_published_contract_and_the_openapi_document_list_the_same_operations() -> None:
    headings = [line for line in CONTRACT.read_text().splitlines() if line.startswith("### ")]
    documented = {(method, normalised(path)) for line in headings for method, path in OPERATION.findall(line)}
    served = {
        (method.upper(), normalised(path))
        for path, operations in document()["paths"].items()
        for method in operations
        if path != "/openapi.json"  # the document itself
    }
    assert documented == served
