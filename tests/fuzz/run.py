"""Run one atheris harness: ``python -m tests.fuzz.run TARGET (--seconds S | --runs N) [--work DIR]``.

New inputs go to the work directory (``var/fuzz/<target>/`` by default), never into the repository;
the kept seeds (``tests/fuzz/corpus/<target>/``) and crashers (``tests/fuzz/crashers/<target>/``)
are read as a start, and a crash is written to the work directory, to be reduced to a synthetic
input and kept under ``crashers/`` with a regression test. ``--runs`` makes a short run of fixed
length with a fixed seed: the same inputs every time (what ``make test`` runs).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
TARGETS = {
    "requests": ("json.dict", 64 * 1024),
    "acks": ("json.dict", 16 * 1024),
    "callbacks": (None, 4 * 1024),
    "replies": ("mail.dict", 128 * 1024),
}
# Real mail read as extra seeds by long runs (never written to: new inputs go to the work directory).
EXTRA_SEEDS = {"replies": [REPO / "tests" / "mail-corpus"]}


def command(target: str, *, work: Path, seconds: int | None, runs: int | None) -> list[str]:
    dictionary, max_len = TARGETS[target]
    found = work / "corpus"
    found.mkdir(parents=True, exist_ok=True)
    args = [
        sys.executable,
        "-m",
        f"tests.fuzz.atheris_{target}",
        f"-artifact_prefix={work}/",
        f"-max_len={max_len}",
        "-timeout=20",  # seconds for one input: slower than that is a finding too
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
    ]
    if dictionary is not None:
        args.append(f"-dict={HERE / 'dicts' / dictionary}")
    seeds = [HERE / "corpus" / target, HERE / "crashers" / target]
    if runs is not None:
        args += [f"-runs={runs}", "-seed=1"]
    else:
        args.append(f"-max_total_time={seconds}")
        seeds += EXTRA_SEEDS.get(target, [])
    return args + [str(found)] + [str(path) for path in seeds if path.is_dir()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=sorted(TARGETS))
    length = parser.add_mutually_exclusive_group(required=True)
    length.add_argument("--seconds", type=int, help="run this long (a long run: make fuzz)")
    length.add_argument("--runs", type=int, help="run this many inputs with a fixed seed (make test)")
    parser.add_argument("--work", type=Path, help="where new inputs and crashes go")
    options = parser.parse_args()
    work = options.work or REPO / "var" / "fuzz" / options.target
    args = command(options.target, work=work, seconds=options.seconds, runs=options.runs)
    print(f"fuzz {options.target}: {' '.join(args[2:])}", flush=True)
    return subprocess.call(args, cwd=REPO)


if __name__ == "__main__":
    sys.exit(main())
