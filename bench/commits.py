"""Commit messages for real history: replay commits of a repository through `commit-msg`
and, in the same run, through a baseline (the same model given the diff truncated to its
context in one prompt).

    python bench/commits.py --json --repo PATH [--n 50]

Per message: valid (parses as a Conventional Commit), subject_ok (<= 72 characters),
names_changed (names a changed file, module or a function/class defined in the diff);
model_subject (the model's subject line was kept rather than the facts')."""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath

import anyio

from mempipe.agents.commit_msg import CONVENTIONAL, CommitMsg
from mempipe.engine import GenerationRequest, Message, get_engine
from mempipe.git import parse_diff

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/ helpers

from bench.report import log, machine

BASELINE = ("Write a git commit message in the Conventional Commits format (a subject line "
            "`type(scope): summary` of at most 72 characters, a blank line, then a short "
            "body) for this diff:\n\n{diff}")
BUDGET = 2048
DEFINED = re.compile(r"^[+-]\s*(?:async\s+)?(?:def|class|function|fn|func|struct)\s+(\w+)",
                     re.M)


def git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True,
                          text=True, errors="replace").stdout


def names_in(diff: str) -> set[str]:
    """What a message may name to count as naming the change: files, modules, functions."""
    names: set[str] = set()
    for change in parse_diff(diff):
        path = PurePosixPath(change.path)
        names |= {path.name, path.stem} | ({path.parts[0]} if len(path.parts) > 1 else set())
    names |= set(DEFINED.findall(diff))
    return {n for n in names if len(n) >= 3}


def score(message: str, names: set[str]) -> dict[str, bool]:
    subject = message.strip().splitlines()[0] if message.strip() else ""
    return {"valid": bool(CONVENTIONAL.match(subject)), "subject_ok": 0 < len(subject) <= 72,
            "names_changed": any(re.search(rf"\b{re.escape(n)}\b", message) for n in names)}


async def baseline(engine, diff: str) -> str:
    room = BUDGET - 200 - engine.prompt_tokens([Message(role="user", content=BASELINE)])
    ids = engine.tokenizer(diff, add_special_tokens=False)["input_ids"][:room]
    truncated = engine.tokenizer.decode(ids)
    result = await engine.generate(GenerationRequest(
        messages=[Message(role="user", content=BASELINE.format(diff=truncated))],
        max_tokens=160, budget=BUDGET, agent="baseline"))
    return result.text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--name", help="what to call the repository in the output")
    parser.add_argument("--samples", type=int, default=5, help="messages shown in the output")
    args = parser.parse_args()

    engine = get_engine()
    shas = git(args.repo, "log", "--no-merges", "--format=%H", f"-n{args.n * 2}").split()
    rows, samples = [], []
    for sha in shas:
        if len(rows) == args.n:
            break
        diff = git(args.repo, "show", "--format=", "--no-color", "--no-ext-diff", "-M", sha)
        if not parse_diff(diff):
            continue
        names = names_in(diff)
        started = time.perf_counter()
        [item] = CommitMsg().pipeline().items(diff, engine=engine)
        message = item.text
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        base = anyio.run(baseline, engine, diff)
        base_seconds = time.perf_counter() - started
        rows.append({"sha": sha[:10], "seconds": seconds, "baseline_seconds": base_seconds,
                     "model_subject": item.meta["model_subject"],
                     **score(message, names),
                     **{f"baseline_{k}": v for k, v in score(base, names).items()}})
        if len(samples) < args.samples:
            samples.append({"sha": sha[:10], "mempipe": message, "baseline": base,
                            "original": git(args.repo, "log", "-1", "--format=%s", sha).strip()})
        log(f"{len(rows)}/{args.n} {sha[:10]} {seconds:.1f}s {message.splitlines()[0]!r}")

    def fraction(key: str) -> float:
        return round(sum(r[key] for r in rows) / len(rows), 3)

    result = {
        "machine": machine(),
        "device": getattr(engine, "device", None), "repo": args.name or os.path.basename(
            os.path.abspath(args.repo.rstrip("/"))), "n": len(rows),
        **{k: fraction(k) for k in ("valid", "subject_ok", "names_changed", "model_subject",
                                    "baseline_valid",
                                    "baseline_subject_ok", "baseline_names_changed")},
        "median_s": round(statistics.median(r["seconds"] for r in rows), 2),
        "max_s": round(max(r["seconds"] for r in rows), 2),
        "baseline_median_s": round(statistics.median(r["baseline_seconds"] for r in rows), 2),
        "samples": samples,
    }
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
