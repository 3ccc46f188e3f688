"""One written form for quantities, times and dates: format-only rewordings become identical, real differences stay."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from guardrail_models.canonical import canonicalize
from guardrail_models.runtime import NliRuntime

SHIPPED = Path(__file__).resolve().parents[1] / "models/zoo/minilm-groundedness-v2"

SAME = [
    ("The Eiffel Tower is 330 metres tall.", "The Eiffel Tower is 330 m tall."),
    ("The Eiffel Tower is 330 meters tall.", "The Eiffel Tower is 330 m tall."),
    ("Support is open Monday to Friday, 9am to 5pm CET.", "Support is open Monday-Friday, 09:00–17:00 CET."),
    ("Support is open weekdays.", "Support is open Mon–Fri."),
    ("The river is 2,850 km long.", "The river is 2850 kilometres long."),
    ("It has 12,500 inhabitants.", "It has 12500 inhabitants."),
    ("Marie Curie won two Nobel Prizes.", "Marie Curie won 2 Nobel Prizes."),
    ("She was born on 12 March 1867.", "She was born on March 12, 1867."),
    ("She was born on 12 March 1867.", "She was born on 1867-03-12."),
    ("The rate is 5%.", "The rate is 5 per cent."),
    ("About 2.5 million people live there.", "About 2,500,000 people live there."),
    ("The shop opens at noon.", "The shop opens at 12 p.m."),
]
DIFFERENT = [
    ("The Eiffel Tower is 330 metres tall.", "The Eiffel Tower is 330 feet tall."),
    ("Support is open Monday to Friday, 9am to 5pm.", "Support is open Monday to Friday, 9am to 6pm."),
    ("Support is open Monday to Friday.", "Support is open Monday to Saturday."),
    ("She was born on 12 March 1867.", "She was born on March 13, 1867."),
    ("It has 12,500 inhabitants.", "It has 1,250 inhabitants."),
    ("The trail is 1.28 km long.", "The trail is 1.28 miles long."),
]
UNTOUCHED = ["Version 3.10 was released in 1987.", "The M5 motorway is busy.", "He scored 3 goals in 10.30 minutes.",
             "In 1999, 1000 people came.", "Room 101 is on floor 3s."]


@pytest.mark.parametrize(("a", "b"), SAME)
def test_format_only_rewordings_become_identical(a: str, b: str) -> None:
    assert canonicalize(a) == canonicalize(b)


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_real_differences_stay_different(a: str, b: str) -> None:
    assert canonicalize(a) != canonicalize(b)


@pytest.mark.parametrize("text", UNTOUCHED)
def test_versions_years_and_lookalikes_are_left_alone(text: str) -> None:
    assert canonicalize(text) == text


@pytest.mark.parametrize(("a", "_"), SAME + DIFFERENT)
def test_canonical_form_is_a_fixed_point(a: str, _: str) -> None:
    assert canonicalize(canonicalize(a)) == canonicalize(a)


def test_the_runtime_normalizes_only_when_the_manifest_says_so(tmp_path: Path) -> None:
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    dirs = {}
    for name, norm in (("plain", None), ("canon", "canonical_v1")):
        dirs[name] = tmp_path / name
        shutil.copytree(SHIPPED, dirs[name])
        (dirs[name] / "manifest.json").write_text(json.dumps(manifest | {"input_normalization": norm}))
    plain, canon = NliRuntime.from_dir(dirs["plain"], threads=1), NliRuntime.from_dir(dirs["canon"], threads=1)
    pair = ("The Eiffel Tower is 330 metres tall.", "The Eiffel Tower is 330 m tall.")
    normalized = (canonicalize(pair[0]), canonicalize(pair[1]))
    np.testing.assert_allclose(canon.predict([pair]), plain.predict([normalized]), atol=1e-6)
    assert not np.allclose(plain.predict([pair]), plain.predict([normalized]), atol=1e-3)
