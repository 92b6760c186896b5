"""The shape of the package: small modules, and a domain contract that covers every module.

import-linter (``make lint``) checks the arrows between layers; these tests keep the two things it
cannot: that no module grows past what a reader takes in at once, and that the contract forbidding
the domain every other notifier module names each of them, including one added later.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "notifier"

# A module past ~400 lines has more than one reason to change; the margin keeps a small addition
# from failing the build before the split is due.
MAX_LINES = 420


def _line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def _importlinter() -> dict[str, Any]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    section: dict[str, Any] = config["tool"]["importlinter"]
    return section


def test_no_module_in_notifier_is_over_the_line_limit() -> None:
    oversized = sorted(
        f"{path.relative_to(ROOT).as_posix()} ({_line_count(path)} lines)"
        for path in PACKAGE.rglob("*.py")
        if _line_count(path) > MAX_LINES
    )
    assert not oversized, f"split by reason to change, each under {MAX_LINES} lines: {', '.join(oversized)}"


def test_the_domain_contract_forbids_every_other_notifier_module() -> None:
    contract = next(
        c
        for c in _importlinter()["contracts"]
        if c["type"] == "forbidden" and c["source_modules"] == ["notifier.domain"]
    )
    top_level = {
        f"notifier.{path.stem if path.is_file() else path.name}"
        for path in PACKAGE.iterdir()
        if (path.suffix == ".py" and path.name != "__init__.py") or (path / "__init__.py").is_file()
    }
    missing = sorted(top_level - {"notifier.domain"} - set(contract["forbidden_modules"]))
    assert not missing, f"add to the domain's forbidden_modules in pyproject.toml: {', '.join(missing)}"
