"""Schemas are data: the documentation is generated from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from telcoreach.errors import SchemaError
from telcoreach.schemas import KINDS, data_model_markdown, schema_for

DOCS = Path(__file__).resolve().parents[1] / "docs" / "data-model.md"
EXAMPLE_RULES = Path(__file__).resolve().parents[1] / "examples" / "rules.yaml"
PACKAGED_RULES = (
    Path(__file__).resolve().parents[1]
    / "src"
    / "telcoreach"
    / "examples"
    / "rules.yaml"
)


def test_data_model_doc_matches_the_schemas():
    assert DOCS.read_text(encoding="utf-8") == data_model_markdown(), (
        "docs/data-model.md is stale: run "
        "`python -m telcoreach.schemas > docs/data-model.md`"
    )


def test_packaged_rules_are_the_example_rules():
    assert PACKAGED_RULES.read_bytes() == EXAMPLE_RULES.read_bytes()


def test_every_kind_has_its_key_among_its_fields():
    for schema in KINDS.values():
        assert set(schema.key) <= set(schema.field_names), schema.kind


def test_unknown_kind_lists_the_known_ones():
    with pytest.raises(SchemaError, match="expected one of signalling, dpi"):
        schema_for("signaling")
