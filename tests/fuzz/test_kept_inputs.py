"""Every input kept under ``tests/fuzz/corpus/`` and ``tests/fuzz/crashers/`` checked directly (no
atheris): a crasher, once fixed, stays fixed, and names its file when it does not."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fuzz.atheris_acks import test_one_input as acks_input
from tests.fuzz.atheris_callbacks import test_one_input as callbacks_input
from tests.fuzz.atheris_replies import test_one_input as replies_input
from tests.fuzz.atheris_requests import test_one_input as requests_input

HERE = Path(__file__).resolve().parent
HARNESSES: dict[str, Callable[[bytes], None]] = {
    "requests": requests_input,
    "acks": acks_input,
    "callbacks": callbacks_input,
    "replies": replies_input,
}
KEPT = sorted(
    (target, path)
    for target in HARNESSES
    for folder in ("corpus", "crashers")
    for path in (HERE / folder / target).glob("*")
    if path.is_file() and not path.name.startswith(".")
)


@pytest.mark.parametrize(
    ("target", "path"), KEPT, ids=[f"{t}/{p.parent.parent.name}/{p.name}" for t, p in KEPT]
)
def test_a_kept_input_holds_every_property(target: str, path: Path) -> None:
    HARNESSES[target](path.read_bytes())


def test_the_kept_inputs_cover_every_target() -> None:
    assert {target for target, _ in KEPT} == set(HARNESSES)
