"""The user's schema: document types and fields (with kinds), declared or read off the labels.

Declared in the config's ``schema`` section, it is the contract labels are checked against; left
empty, it is taken from the labels file (every field of kind ``text``). Either way the names pass
:func:`docloop.config.label_name_problem`, and the extractor's IOB2 tags are derived from them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pydantic import BaseModel, ConfigDict

from docloop.config import FieldKind, SchemaConfig, label_name_problem
from docloop.errors import InvalidInput

DEFAULT_DOC_TYPE = "document"
"""The one document type of a schema that names none (labels without ``doc_type``)."""

OUTSIDE_TAG = "O"


class FieldSpec(BaseModel):
    """One field: its name and how its value is printed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: FieldKind = "text"


class LabelSchema(BaseModel):
    """The schema in force for a dataset (written to its manifest).

    Attributes:
        doc_types: document types, sorted.
        fields: fields, sorted by name.
        declared: True when it came from the config, False when read off the labels.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    doc_types: list[str]
    fields: list[FieldSpec]
    declared: bool = False

    @property
    def field_names(self) -> list[str]:
        """Field names, sorted."""
        return [spec.name for spec in self.fields]

    @property
    def kinds(self) -> dict[str, FieldKind]:
        """Field name -> kind."""
        return {spec.name: spec.kind for spec in self.fields}

    @property
    def tags(self) -> list[str]:
        """The extractor's IOB2 tags: ``O``, then ``B-``/``I-`` per field."""
        return [OUTSIDE_TAG] + [f"{p}-{name}" for name in self.field_names for p in ("B", "I")]

    def grown(
        self,
        doc_types: Iterable[str],
        fields: Iterable[str],
        kinds: Mapping[str, FieldKind] | None = None,
    ) -> LabelSchema:
        """This schema with the new document types and fields a retrain brought (feedback).

        A schema only grows: known names keep their kind; a new field takes its kind from
        ``kinds`` (the config's declaration) or ``text``.
        """
        known = self.kinds
        added = {name: (kinds or {}).get(name, "text") for name in fields if name not in known}
        merged = {**known, **added}
        return LabelSchema(
            doc_types=sorted({*self.doc_types, *doc_types}),
            fields=[FieldSpec(name=n, kind=k) for n, k in sorted(merged.items())],
            declared=self.declared,
        )

    def kind_of(self, name: str) -> FieldKind:
        """The kind of field ``name`` (``text`` for a field the schema does not name)."""
        return self.kinds.get(name, "text")

    def unknown_field(self, name: str) -> str | None:
        """Why a label naming field ``name`` is refused (None when the schema has it)."""
        if name in self.kinds:
            return None
        return (
            f"field {name!r} is not in the schema (fields: {', '.join(self.field_names) or 'none'})"
            "; declare it under schema.fields in docloop.yaml, or rename the label"
        )

    def unknown_doc_type(self, name: str) -> str | None:
        """Why a label naming document type ``name`` is refused (None when the schema has it)."""
        if name in self.doc_types:
            return None
        return (
            f"document type {name!r} is not in the schema (doc_types: "
            f"{', '.join(self.doc_types) or 'none'}); declare it under schema.doc_types in "
            "docloop.yaml, or correct the label"
        )


def schema_from_config(config: SchemaConfig) -> LabelSchema | None:
    """The declared schema, or None when the config declares nothing (take it from labels).

    Fields without document types make one type (``document``); document types without fields
    are a classification-only schema (entity labels are then refused).
    """
    if not config.fields and not config.doc_types:
        return None
    return LabelSchema(
        doc_types=sorted(config.doc_types) or [DEFAULT_DOC_TYPE],
        fields=[FieldSpec(name=n, kind=k) for n, k in sorted(config.fields.items())],
        declared=True,
    )


def schema_from_names(
    doc_types: Iterable[str | None],
    fields: Iterable[str],
    kinds: Mapping[str, FieldKind] | None = None,
) -> LabelSchema:
    """A schema read off labels: the types and fields they name (each name checked).

    Raises:
        InvalidInput: a name is empty, holds a space or a control character, or is ``O``.
    """
    types = sorted({t for t in doc_types if t is not None}) or [DEFAULT_DOC_TYPE]
    names = sorted(set(fields))
    problems = [p for name in [*types, *names] if (p := label_name_problem(name))]
    if problems:
        raise InvalidInput(
            "the labels name types or fields that cannot be used: " + "; ".join(problems)
        )
    kinds = kinds or {}
    return LabelSchema(
        doc_types=types,
        fields=[FieldSpec(name=n, kind=kinds.get(n, "text")) for n in names],
        declared=False,
    )
