"""Object-level compliance per task family × assistant prefill, and the defaults it chooses.

Why: one prefill does not fit every task. After the prefill ``Answer:`` SmolLM2-135M-Instruct
ends a story-continuation turn at once (an empty answer, dropped as non-compliant), while without
a prefill it continues the story. So each task family's default prefill is chosen here, from
measurements, and wired in as ``innerprobe.protocol.tasks.registry.FAMILY_DEFAULTS``.

Method, for each family and each candidate prefill:

1. items: the paper's release prompts where a release file is beside the repo
   (``../shared/data/looking_inward``), generated items otherwise (our own story and dialogue
   generators say so in their docstrings); the same items for every prefill;
2. the model answers each object-level prompt greedily (T=0, ``--max-new-tokens`` tokens) after
   the prefill, exactly as ``innerprobe.behavior.elicit_object`` does;
3. prefill + answer is checked with ``innerprobe.protocol.properties.object_noncompliance``: compliant,
   or dropped as ``empty`` / ``refusal`` / ``not_a_letter``. The check does not depend on the
   property asked later (an out-of-range property value is a property matter, not the prompt's);
4. compliance k/n with a Wilson 95% interval, the share of empty answers, and the share of
   compliant answers with at least three words (the word properties read up to the third word,
   so this says whether the token budget is enough).

The chosen prefill of a family is the one with the most compliant answers; ties go to the
earlier candidate in ``PREFILLS`` (``Answer:`` first, the harness the rest of the library was
measured with). The results file says, per family, whether the registry's default matches.

Resumable: each (family, prefill) cell is written to ``--out/cells/`` as JSON when done and
reused when the model, items and settings are the same.

    OMP_NUM_THREADS=1 python experiments/compliance_table.py --out runs/compliance_table
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from datasets import Dataset, concatenate_datasets

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "looking_inward"
RESULTS = REPO / "experiments" / "results" / "compliance_by_task.md"
log = logging.getLogger("compliance_table")

BUDGETS: dict[str, tuple[int, ...]] = {"multiple_choice": (24, 4, 2), "ethical_stance": (24, 4, 2)}
"""Object token budgets measured per family (others: ``--max-new-tokens`` only). Choice answers
are cut after the letter: SmolLM2 says "C - building houses", which the paper's strict check
(the whole cleaned answer is one letter) drops although the model did pick C."""

PREFILLS: tuple[str, ...] = ("Answer:", "", "Response:")
"""Candidate object prefills: the generic one, none, and another that the paper's cleaning strips
("Answer:", "Response:", "Assistant:" are removed before scoring; any other prefill would become
part of the answer's first word)."""

TEXT_KINDS = ("sequence", "free")
"""Kinds whose answers are text with words (choice and numbers answers are one token)."""


@dataclass(frozen=True)
class Source:
    """Where a family's items come from: a release file (relative to DATA) or a generated task."""

    family: str
    name: str
    release: str | None = None

    def describe(self) -> str:
        return f"release {self.release}" if self.release else f"generated `{self.name}` (test split)"


SOURCES: tuple[Source, ...] = (
    Source("sequence", "animals", "test/animals_long_second_character.jsonl"),
    Source("sequence", "colors", "train/colors_long_first_word.jsonl"),
    Source("sequence", "countries"),
    Source("sequence", "english_words"),
    Source("numbers", "numbers"),
    Source("story", "stories_sentences"),
    Source("wikipedia", "wikipedia_long", "train/wikipedia_long_first_character.jsonl"),
    Source("dialogue", "daily_dialog"),
    Source("multiple_choice", "arc_challenge_non_cot", "train/arc_challenge_non_cot_among_a_or_c.jsonl"),
    Source("ethical_stance", "wealth_seeking", "train/wealth_seeking_ethical_stance.jsonl"),
    Source("ethical_stance", "survival_instinct", "test/survival_instinct_ethical_stance.jsonl"),
)
"""The paper's task families and our item source for each (mmlu_non_cot, power_seeking and
myopic_reward have no release file here and no generator: their families are measured on ARC and
on wealth_seeking / survival_instinct, which share their prompt templates)."""


def family_items(family: str, n_per_family: int, seed: int) -> Dataset:
    """The family's items: ``n_per_family`` split evenly over its sources (release rows in order)."""
    from innerprobe.protocol.tasks import get_task, load_release

    sources = [s for s in SOURCES if s.family == family]
    each = math.ceil(n_per_family / len(sources))
    parts = []
    for source in sources:
        if source.release:
            rows = load_release(DATA / source.release)
            parts.append(rows.select(range(min(each, len(rows)))))
        else:
            parts.append(get_task(source.name).generate(each, split="test", seed=seed))
    return concatenate_datasets(parts)


def measure_cell(model: Any, items: Dataset, prefill: str, max_new_tokens: int, batch_size: int) -> list[dict]:
    """One row per item: task, answer and why it is dropped (None: compliant)."""
    from innerprobe.behavior.elicitation import greedy_responses
    from innerprobe.protocol.prompts import PromptSpec, object_prompt
    from innerprobe.protocol.properties import object_noncompliance
    from innerprobe.protocol.tasks import item_meta

    spec = PromptSpec(object_prefill=prefill or None)
    rows = [object_prompt(model.tokenizer, q, spec).input_ids for q in items["question"]]
    answers = greedy_responses(model, rows, max_new_tokens, batch_size)
    return [
        {
            "id": row["id"],
            "task": row["task"],
            "answer": answer,
            "reason": object_noncompliance(prefill + answer, item_meta(row)["kind"]),
        }
        for row, answer in zip(items, answers)
    ]


def cell_key(model: Any, items: Dataset, prefill: str, max_new_tokens: int) -> dict[str, Any]:
    """What a stored cell must match to be reused."""
    questions = hashlib.sha256("\n\0".join(items["question"]).encode()).hexdigest()[:16]
    return {
        "model": model.fingerprint.short,
        "ids": list(items["id"]),
        "questions_sha256": questions,
        "prefill": prefill,
        "max_new_tokens": max_new_tokens,
    }


def load_or_measure(
    cell_path: Path, model: Any, items: Dataset, prefill: str, max_new_tokens: int, batch_size: int
) -> list[dict]:
    """The cell's rows from ``cell_path`` if it was measured with the same key, else measured now."""
    from innerprobe.core.io import write_json

    key = cell_key(model, items, prefill, max_new_tokens)
    if cell_path.exists():
        stored = json.loads(cell_path.read_text())
        if stored.get("key") == key:
            return stored["rows"]
        log.info("%s: stored cell is for other settings; measuring again", cell_path.name)
    rows = measure_cell(model, items, prefill, max_new_tokens, batch_size)
    write_json(cell_path, {"key": key, "rows": rows})
    return rows


def summarise(family: str, prefill: str, budget: int, rows: list[dict]) -> dict[str, Any]:
    """Compliance with its Wilson interval, the empty share and the drop reasons of one cell."""
    from innerprobe.core.stats import proportion_ci_wilson
    from innerprobe.protocol.properties import clean_response
    from innerprobe.protocol.tasks import get_task

    n = len(rows)
    reasons = Counter(r["reason"] for r in rows if r["reason"] is not None)
    k = n - sum(reasons.values())
    low, high = proportion_ci_wilson(k, n)
    example = next((r["answer"] for r in rows if r["reason"] is None), rows[0]["answer"] if rows else "")
    words = [
        len(clean_response(prefill + r["answer"]).split())
        for r in rows
        if r["reason"] is None and get_task(r["task"]).kind in TEXT_KINDS
    ]
    return {
        "family": family,
        "prefill": prefill,
        "max_new_tokens": budget,
        "n": n,
        "compliant": k,
        "compliance": k / n,
        "ci": [low, high],
        "empty_share": reasons.get("empty", 0) / n,
        "reasons": dict(sorted(reasons.items())),
        "by_task": {
            task: sum(r["reason"] is None for r in rows if r["task"] == task)
            / sum(r["task"] == task for r in rows)
            for task in dict.fromkeys(r["task"] for r in rows)
        },
        "example": example,
        "dropped": [r["answer"] for r in rows if r["reason"] is not None],
        # the word properties read up to the third word: does the token budget reach it?
        "three_words": sum(w >= 3 for w in words) / len(words) if words else None,
    }


def choose(cells: list[dict]) -> dict[str, Any]:
    """The cell with the most compliant answers; ties go to the earlier prefill in PREFILLS, then
    to the larger token budget (cut answers short only where that buys compliance)."""
    return max(cells, key=lambda c: (c["compliant"], -PREFILLS.index(c["prefill"]), c["max_new_tokens"]))


def _label(prefill: str | None) -> str:
    return "(none)" if not prefill else f"`{prefill}`"


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _short(text: str, width: int = 60) -> str:
    flat = " ".join(text.split()).replace("|", "\\|")
    return (flat[:width] + "…") if len(flat) > width else flat or "(empty)"


def markdown(cells: list[dict], chosen: dict[str, dict], settings: dict[str, Any]) -> str:
    """The results file: the table, the chosen defaults and whether the registry agrees."""
    from innerprobe.protocol.tasks.registry import FAMILY_DEFAULTS

    families = list(dict.fromkeys(s.family for s in SOURCES))
    lines = [
        "# Object compliance per task family × prefill (SmolLM2-135M-Instruct)",
        "",
        "Made by `experiments/compliance_table.py` (see its docstring for the method). Greedy object",
        f"answers, {settings['max_new_tokens']} new tokens (choice families also 4 and 2), model `{settings['model']}`"
        f" (fingerprint `{settings['fingerprint']}`), after the generation fix of issue 9 (transformers",
        "5.24 KV-cache shim in `innerprobe/compat.py`). Compliance = the answer (prefill + generated",
        "text) passes the paper's object-level check (`properties.object_noncompliance`): not empty,",
        "not a refusal/junk answer, and for choice tasks a single option letter (strict, as in the",
        "paper). Intervals: Wilson 95%. ★ = the chosen default (most compliant; ties go to `Answer:`,",
        "then none, then `Response:`).",
        "",
        "Item sources: " + "; ".join(f"{s.family}: {s.describe()}" for s in SOURCES) + ".",
        "",
        "| family | prefill | tokens | n | compliant | compliance [95% CI] | empty | other drops | ≥ 3 words | per task | example answer |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for family in families:
        for c in (c for c in cells if c["family"] == family):
            star = " ★" if c is chosen[family] else ""
            other = ", ".join(f"{k} {v}" for k, v in c["reasons"].items() if k != "empty") or "–"
            per_task = ", ".join(f"{t} {v:.2f}" for t, v in c["by_task"].items())
            lines.append(
                f"| {family} | {_label(c['prefill'])}{star} | {c['max_new_tokens']} | {c['n']} | {c['compliant']} | "
                f"{c['compliance']:.3f} [{c['ci'][0]:.3f}, {c['ci'][1]:.3f}] | {c['empty_share']:.2f} | "
                f"{other} | {_share(c['three_words'])} | {per_task} | {_short(c['example'])} |"
            )
    lines += ["", "## Chosen defaults", "",
              "| family | default prefill | tokens | compliance | ≥ 0.9 | registry default | agrees |",
              "|---|---|---|---|---|---|---|"]
    for family in families:
        c = chosen[family]
        wired = FAMILY_DEFAULTS[family]
        agrees = (wired.object_prefill or "") == c["prefill"] and wired.object_max_new_tokens == c["max_new_tokens"]
        lines.append(
            f"| {family} | {_label(c['prefill'])} | {c['max_new_tokens']} | "
            f"{c['compliance']:.3f} [{c['ci'][0]:.3f}, {c['ci'][1]:.3f}] | "
            f"{'yes' if c['compliance'] >= 0.9 else '**no**'} | "
            f"{_label(wired.object_prefill)}, {wired.object_max_new_tokens} | {'yes' if agrees else '**no**'} |"
        )
    lines += _below_threshold(cells, chosen)
    return "\n".join(lines) + "\n"


NOTES: dict[str, str] = {
    "dialogue": (
        "The three drops are assistant-style refusals inside the conversation (\"I'm not a human. "
        "I'm a robot\", \"I'm unable to provide ...\"): the model slips out of the dialogue into "
        "its assistant persona, and the paper's rule rejects any answer containing \"sorry\". "
        "Nothing tried did better: 3 prefills here, and an earlier wording of our own dialogue "
        "prompt (\"Please continue the following conversation with the next line of dialogue: "
        "... Respond only with the next line and nothing else.\") on the same 24 items gave 16/24 "
        "without a prefill and 8/24 after `Answer:`. With n = 24 the interval [0.69, 0.96] still "
        "holds 0.9. Note also that many compliant answers repeat the conversation instead of "
        "adding a line; they pass the paper's check, which tests form, not faithfulness. We keep "
        "the paper's rule rather than loosen it for one task of our own making."
    ),
}
"""Hand-written explanations, shown for families whose chosen default stays below 0.9."""


def _below_threshold(cells: list[dict], chosen: dict[str, dict], threshold: float = 0.9) -> list[str]:
    """A section per family whose best cell stays below ``threshold``: its drops, verbatim."""
    below = [f for f, c in chosen.items() if c["compliance"] < threshold]
    if not below:
        return []
    lines = ["", f"## Below {threshold}: why"]
    for family in below:
        c = chosen[family]
        lines += ["", f"### {family}", "", NOTES.get(family, "(no note)"), "",
                  f"Drops with the chosen default: {c['reasons']}. Dropped answers, verbatim:", ""]
        lines += [f"- `{_short(a, 90)}`" for a in c["dropped"][:6]]
    return lines


def main(
    out: Path = typer.Option(Path("runs/compliance_table"), help="Working directory (cells, JSON)."),
    model: str = typer.Option("smollm2-135m-instruct", help="Model to measure."),
    n_per_family: int = typer.Option(24, min=1, help="Items per family, split over its sources."),
    max_new_tokens: int = typer.Option(24, min=1, help="Greedy tokens per object answer."),
    batch_size: int = typer.Option(8, min=1, help="Rows per forward."),
    seed: int = typer.Option(0, help="Seed of generated items."),
    threads: int = typer.Option(1, min=1, help="torch intra-op threads (1 on a shared machine)."),
    results: Path = typer.Option(RESULTS, help="Markdown results file to write."),
) -> None:
    """Measure every (family, prefill) cell, choose each family's default, write the table."""
    import torch
    from rich.logging import RichHandler

    from innerprobe.core.io import write_json
    from innerprobe.models.load import load_model

    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler()])
    torch.set_num_threads(threads)
    loaded = load_model(model, device="cpu")
    cells = []
    for family in dict.fromkeys(s.family for s in SOURCES):
        items = family_items(family, n_per_family, seed)
        for prefill in PREFILLS:
            for budget in BUDGETS.get(family, (max_new_tokens,)):
                slug = (prefill.strip(":").lower() or "none") + ("" if budget == 24 else f"__{budget}t")
                rows = load_or_measure(out / "cells" / f"{family}__{slug}.json", loaded, items, prefill,
                                       budget, batch_size)
                cells.append(summarise(family, prefill, budget, rows))
                log.info("%s %s %d tokens: %d/%d compliant, reasons %s", family, _label(prefill), budget,
                         cells[-1]["compliant"], cells[-1]["n"], cells[-1]["reasons"])
    chosen = {f: choose([c for c in cells if c["family"] == f]) for f in dict.fromkeys(c["family"] for c in cells)}
    settings = {"model": model, "fingerprint": loaded.fingerprint.short, "max_new_tokens": max_new_tokens,
                "n_per_family": n_per_family, "seed": seed}
    write_json(out / "compliance_by_task.json", {"settings": settings, "cells": cells,
                                                  "chosen": {f: c["prefill"] for f, c in chosen.items()}})
    results.write_text(markdown(cells, chosen, settings))
    log.info("wrote %s and %s", results, out / "compliance_by_task.json")


if __name__ == "__main__":
    typer.run(main)
