"""User-defined relations without code: word replacements or regular expressions, declared in YAML.

```yaml
relations:
  - name: units_spelled_out          # becomes RELATION in RELATION@TARGET
    doc: Spelling out units must not change the verdict.
    replace: {km: kilometres, "%": percent}   # whole words, case kept
    fields: [context, response]
    invariants: [entailment]
    expect: same                     # or flip
  - name: hedged
    regex: [{pattern: '\\.$', replacement: ', I believe.'}]
    fields: [response]
  - name: many_typos                 # a shipped relation under another name, with options
    uses: paraphrase_typo
    options: {max_edits: 5}
```
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from guardrail_server.metamorph.relations.base import Relation, RelationOptions, segments, transformed
from guardrail_server.metamorph.relations.paraphrase import match_case
from guardrail_server.metamorph.types import Edit, Expect, FieldName, Transformed
from guardrail_invariants.types import Case

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


class RegexRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pattern: str
    replacement: str
    ignore_case: bool = False

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value


class RelationSpec(BaseModel):
    """One YAML entry: exactly one of `replace`, `regex`, `uses`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    doc: str = ""
    expect: Expect = "same"
    fields: tuple[FieldName, ...] | None = None
    invariants: tuple[str, ...] | None = None
    variants: int = Field(1, ge=1, le=100)
    replace: dict[str, str] | None = None
    regex: tuple[RegexRule, ...] | None = None
    uses: str | None = None
    options: dict = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be an identifier (letters, digits, _ and -)")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> RelationSpec:
        kinds = [k for k in ("replace", "regex", "uses") if getattr(self, k)]
        if len(kinds) != 1:
            raise ValueError(f"give exactly one of replace, regex, uses (got {kinds or 'none'})")
        if self.options and not self.uses:
            raise ValueError("options belong to `uses:` entries")
        return self


class SpecRelation(Relation):
    """A relation declared in YAML (word replacements or regular expressions)."""

    default_fields: ClassVar[dict[str, tuple[FieldName, ...]]] = {
        "judges": ("context", "response"), "generator": ("question", "context")}

    def __init__(self, spec: RelationSpec) -> None:
        super().__init__(RelationOptions(fields=spec.fields, invariants=spec.invariants, variants=spec.variants),
                         name=spec.name)
        self.spec = spec
        self.expect = spec.expect  # type: ignore[misc]
        self.invariants = spec.invariants or ("entailment", "reference_integrity", "pii_boundary")  # type: ignore[misc]
        self.doc = spec.doc or f"user-defined ({'word replacements' if spec.replace else 'regular expressions'})"
        rules: list[tuple[re.Pattern[str], str, bool]] = []
        if spec.replace:
            for word, new in sorted(spec.replace.items(), key=lambda kv: -len(kv[0])):
                lead, tail = (r"\b" if word[:1].isalnum() else ""), (r"\b" if word[-1:].isalnum() else "")
                bounded = lead + re.escape(word) + tail
                rules.append((re.compile(bounded, re.IGNORECASE), new, True))
        for rule in spec.regex or ():
            rules.append((re.compile(rule.pattern, re.IGNORECASE if rule.ignore_case else 0), rule.replacement, False))
        self.rules = rules

    def transform(self, case: Case, rng: random.Random, fields: Sequence[FieldName]) -> Transformed | None:
        texts = dict(segments(case, fields))
        edits: list[Edit] = []
        for where, text in texts.items():
            for pattern, new, keep_case in self.rules:
                def sub(m: re.Match[str], where: str = where, new: str = new, keep_case: bool = keep_case,
                        pattern: re.Pattern[str] = pattern) -> str:
                    after = match_case(m.group(0), new) if keep_case else m.expand(new)
                    edits.append(Edit(where, "replace" if keep_case else "regex", m.group(0), after))
                    return after
                text = pattern.sub(sub, text)
            texts[where] = text
        return transformed(case, texts, edits)
