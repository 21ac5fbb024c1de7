"""``innerprobe capture``: object answers as labels, then O and H activations into a store.

The verb first elicits the model's greedy object-level answers (object prefill ``Answer:``), so
the store's row table carries what probes are trained to predict:

* ``object_answer``: the first word of the cleaned object response (the first answered animal),
* ``property_value``: the property of the object response (``None`` when non-compliant),
* ``object_compliant``: whether the object response complied with the task,

then captures the residual stream of O(P) and H(P, property) into ``--out``
(see :mod:`innerprobe.activations.store`). Rerunning the same command on an interrupted ``--out`` resumes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from innerprobe.activations.capture import capture, resolve_position_names, resolve_sites
from innerprobe.activations.store import STORE_DTYPES
from innerprobe.behavior import BehaviorConfig, elicit_object
from innerprobe.cli.ui import Bars, console, fail, preflight
from innerprobe.core.errors import DataError, InnerprobeError, check_choice
from innerprobe.models.load import load_model
from innerprobe.protocol.prompts import PromptSpec
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import TASKS, load_items

log = logging.getLogger(__name__)


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _layers(value: str) -> str | list[int]:

    if value.strip() == "all":
        return "all"
    try:
        return [int(v) for v in _csv(value)]
    except ValueError as e:
        raise DataError(f"--layers takes 'all' or comma-separated integers, got {value!r}") from e


def _positions(value: str) -> list[str | int]:
    return [int(v) if v.lstrip("-").isdigit() else v for v in _csv(value)]


def first_vocabulary_word(cleaned: str, vocabulary: set[str] | None) -> str | None:
    """The first word of a cleaned response that belongs to the task vocabulary.

    SmolLM2 often answers "1. deer, 2. cat": the answer the model *means* is "deer", while the
    paper's property rules read the literal text ("1"). Without a vocabulary, the first word.
    """
    words = cleaned.split()
    if not vocabulary:
        return words[0] if words else None
    return next((w for w in words if w in vocabulary), None)


def object_labels(behavior, prop, vocabulary: set[str] | None = None) -> dict[str, list]:  # noqa: ANN001
    """The row-table label columns derived from the object behaviour.

    * ``object_answer``: the first task-vocabulary word of the response (the answered animal);
    * ``answer_property``: ``prop`` applied to that word (e.g. its first character);
    * ``property_value``: ``prop`` applied to the whole response, the paper's ground truth;
    * ``object_compliant``: the paper's object compliance.
    """
    answers = [first_vocabulary_word(c, vocabulary) if c else None for c in behavior.cleaned]
    return {
        "object_answer": answers,
        "answer_property": [prop.extract(a) if a else None for a in answers],
        "property_value": list(behavior.values),
        "object_compliant": [bool(c) for c in behavior.compliant],
    }


def _vocabulary(items) -> set[str] | None:  # noqa: ANN001 (Dataset)

    words = {w for t in set(items["task"]) if t in TASKS for w in (TASKS[t].vocabulary or ())}
    return words or None


def capture_cmd(
    model: str = typer.Option("smollm2-135m-instruct", help="Model: embedded name, HF dir or adapter dir."),
    task: str = typer.Option("animals", help="Task name (see `innerprobe tasks`) or a questions file."),
    property: str = typer.Option("second_character", "--property", help="Property (see `innerprobe properties`)."),
    n: int = typer.Option(100, min=1, help="Number of items."),
    split: str = typer.Option("train", help="Split of generated tasks."),
    sites: str = typer.Option("resid_post", help="Comma-separated: resid_pre,resid_mid,resid_post,attn_out,mlp_out."),
    layers: str = typer.Option("all", help="'all' or comma-separated layer indices."),
    object_positions: str = typer.Option("o_last", help="Object positions: o_last, prefill_start or integers."),
    hypothetical_positions: str = typer.Option(
        "h_last,quote_last,quote_mean", help="Hypothetical positions: h_last, quote_last, quote_mean, prefill_start, integers."
    ),
    variant: str = typer.Option("previously", help="Hypothetical wording: previously | suppose | third_person."),
    out: Path = typer.Option(Path("runs/capture"), help="Store directory (resumed when it holds the same capture)."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Rows per forward."),
    shard_size: int = typer.Option(256, "--shard-size", min=1, help="Items per shard file."),
    dtype: str = typer.Option("float32", help="Stored dtype: float32 | float16."),
    seed: int = typer.Option(0, help="Seed for items."),
    device: str | None = typer.Option(None, help="cpu | cuda | cuda:N | mps (default: cuda if available)."),
) -> None:
    """Capture activations of object and hypothetical prompts into an on-disk store."""

    try:
        prop = get_property(property)
        items = load_items(task, n=n, split=split, seed=seed)
        spec = PromptSpec(variant=variant)
        resolve_sites(_csv(sites))
        resolve_position_names("object", _positions(object_positions))
        resolve_position_names("hypothetical", _positions(hypothetical_positions))
        _layers(layers)
        check_choice("store dtype", dtype, STORE_DTYPES)
        preflight(out, "capture", device, models=(model,))
        with console.status(f"loading {model}"):
            m = load_model(model, device=device)
        with Bars() as bars:
            behavior = elicit_object(
                m, items, prop, BehaviorConfig(spec=spec, batch_size=batch_size, seed=seed),
                progress=bars.factory("object answers", len(items)),
            )
            store = capture(
                m, items, prop, spec=spec, sites=_csv(sites), layers=_layers(layers),
                object_positions=_positions(object_positions),
                hypothetical_positions=_positions(hypothetical_positions),
                labels=object_labels(behavior, prop, _vocabulary(items)), out=out, batch_size=batch_size,
                shard_size=shard_size, dtype=dtype, seed=seed,
                progress=bars.factory("capture", len(items)),
            )
    except InnerprobeError as e:
        fail(e)
        return
    n_ok = int(store.rows["object_compliant"].sum())
    console.print(f"{store!r}; object compliant {n_ok}/{store.n_items}")
    console.print(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command("capture")(capture_cmd)
