"""The relation registry: the shipped relations, plus user-defined ones from a Python module or a YAML file.

Select by name (`negation`) or by family (`paraphrase` = every `paraphrase_*`). A Python module contributes every
`Relation` subclass it defines with a `name` (or the ones listed in its `RELATIONS`); a YAML file contributes
`relations.custom.RelationSpec` entries. A name defined twice is refused: a silently shadowed relation would report
numbers for something else.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from guardrail_server.metamorph.relations.base import Relation, RelationOptions
from guardrail_server.metamorph.relations.custom import RelationSpec, SpecRelation
from guardrail_server.metamorph.relations.demographic import DemographicSwap
from guardrail_server.metamorph.relations.negation import Negation
from guardrail_server.metamorph.relations.paraphrase import (
    ParaphraseClauseOrder,
    ParaphraseNoise,
    ParaphraseSynonym,
    ParaphraseTypo,
)
from guardrail_server.metamorph.relations.passages import DistractorPassage, PassageShuffle

__all__ = ["Relation", "RelationOptions", "RelationError", "SHIPPED", "build_relations", "load_module_relations",
           "load_yaml_relations"]

SHIPPED: dict[str, type[Relation]] = {cls.name: cls for cls in (
    ParaphraseSynonym, ParaphraseClauseOrder, ParaphraseNoise, ParaphraseTypo, DemographicSwap, Negation,
    DistractorPassage, PassageShuffle)}


class RelationError(ValueError):
    """A relation cannot be loaded or selected; the message names the file, module or name."""


class RelationsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    relations: list[RelationSpec]


def _import(module: str) -> ModuleType:
    """A dotted module name, or a path to a .py file."""
    path = Path(module)
    if module.endswith(".py") or path.is_file():
        if not path.is_file():
            raise RelationError(f"{module}: no such file")
        spec = importlib.util.spec_from_file_location(f"metamorph_user_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise RelationError(f"{module}: cannot be imported")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        return mod
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise RelationError(f"cannot import relations module {module!r}: {exc}") from None


def load_module_relations(module: str) -> list[Relation]:
    mod = _import(module)
    listed = getattr(mod, "RELATIONS", None)
    if listed is None:
        listed = [obj for _, obj in inspect.getmembers(mod, inspect.isclass)
                  if issubclass(obj, Relation) and obj.__module__ == mod.__name__ and obj.name]
    out: list[Relation] = []
    for item in listed:
        relation = item() if isinstance(item, type) else item
        if not isinstance(relation, Relation):
            raise RelationError(f"{module}: {item!r} is not a Relation")
        out.append(relation)
    if not out:
        raise RelationError(f"{module}: defines no Relation subclass with a `name`")
    return out


def load_yaml_relations(path: str | Path) -> list[Relation]:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RelationError(f"{p}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise RelationError(f"{p}: not valid YAML ({exc})") from None
    try:
        parsed = RelationsFile.model_validate(data or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise RelationError(f"{p}: {where}: {first['msg']}") from None
    out: list[Relation] = []
    for i, spec in enumerate(parsed.relations):
        if spec.uses:
            cls = SHIPPED.get(spec.uses)
            if cls is None:
                raise RelationError(f"{p}: relations.{i}.uses: unknown relation {spec.uses!r}; "
                                    f"known: {sorted(SHIPPED)}")
            common = {k: v for k, v in (("fields", spec.fields), ("invariants", spec.invariants),
                                        ("variants", spec.variants)) if v is not None}
            try:
                options = cls.Options.model_validate({**common, **spec.options})
            except ValidationError as exc:
                first = exc.errors()[0]
                raise RelationError(f"{p}: relations.{i}.options.{'.'.join(map(str, first['loc']))}: "
                                    f"{first['msg']}") from None
            relation = cls(options, name=spec.name)
            if spec.doc:
                relation.doc = spec.doc  # type: ignore[attr-defined]
            out.append(relation)
        else:
            out.append(SpecRelation(spec))
    return out


def build_relations(selected: Sequence[str] = (), *, modules: Sequence[str] = (), yaml_files: Sequence[str] = (),
                    options: dict[str, dict] | None = None) -> list[Relation]:
    """The relations to run: every shipped and user-defined one, or those named (or whose family is named)."""
    available: dict[str, Relation] = {}

    def add(relation: Relation, origin: str) -> None:
        if relation.key in available:
            raise RelationError(f"relation {relation.key!r} ({origin}) is already defined")
        available[relation.key] = relation

    for name, cls in SHIPPED.items():
        add(cls((options or {}).get(name)), "shipped")
    for module in modules:
        for relation in load_module_relations(module):
            add(relation, module)
    for path in yaml_files:
        for relation in load_yaml_relations(path):
            add(relation, str(path))
    if not selected:
        return list(available.values())
    out: list[Relation] = []
    for want in selected:
        hits = [r for r in available.values() if r.key == want or r.family_name == want]
        if not hits:
            families = sorted({r.family_name for r in available.values()})
            raise RelationError(f"unknown relation {want!r}; known: {sorted(available)} (families: {families})")
        out += [r for r in hits if r not in out]
    return out
