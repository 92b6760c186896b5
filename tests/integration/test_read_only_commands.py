"""Commands that read or edit what is stored never create a store, nor migrate one."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

REPO = Path(__file__).resolve().parents[2]


def notifier(config: Path, *args: str, store_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env["NOTIFIER_STORE__URL"] = store_url
    command = [sys.executable, "-m", "notifier", "-c", str(config), *args]
    return subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "config", tmp_path / "config")
    return tmp_path / "config" / "notifier.toml"


@pytest.mark.parametrize(
    "args", [("status",), ("status", "--json"), ("report",), ("retry", "TD-x-20240101-000001")]
)
def test_a_mistyped_sqlite_path_is_refused_and_not_created(
    config: Path, tmp_path: Path, args: tuple[str, ...]
) -> None:
    missing = tmp_path / "var" / "notifer.db"
    result = notifier(config, *args, store_url=f"sqlite:///{missing}")
    assert result.returncode == 2, result.stdout
    assert result.stderr.strip() == (
        f"notifier: store.url: {missing} does not exist (nothing has run with this configuration yet: "
        "check the path, or start `notifier run` once)"
    )
    assert not missing.exists()


@pytest.mark.postgres
def test_an_empty_postgresql_database_is_refused_and_not_migrated(config: Path, postgres_url: str) -> None:
    result = notifier(config, "status", store_url=postgres_url)
    assert result.returncode == 2
    assert "holds no notifier store" in result.stderr

    async def tables() -> int:
        conn = await asyncpg.connect(postgres_url)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"))
        finally:
            await conn.close()

    assert asyncio.run(tables()) == 0
