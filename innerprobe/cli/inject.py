"""``innerprobe inject``: concept injection (E8) with its controls, scored from logits.

A thin verb: the options build an
:class:`~innerprobe.interventions.injection_config.InjectionConfig` (which checks every value),
concept vectors are read at ``--layer``
(:func:`~innerprobe.interventions.concepts.concept_vectors`),
:func:`~innerprobe.interventions.injection.run_injection` runs every trial and control,
``result.save(out)`` writes it, and the summary table is printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from innerprobe.cli.options import BatchSizeOpt, DeviceOpt, ModelOpt, OutOpt, SeedOpt, SiteOpt
from innerprobe.cli.ui import Bars, console, fail, fmt, preflight
from innerprobe.core.errors import DataError, InnerprobeError
from innerprobe.interventions.concepts import CONCEPT_WORDS, concept_vectors
from innerprobe.interventions.injection import run_injection
from innerprobe.interventions.injection_config import TIMINGS, InjectionConfig
from innerprobe.interventions.injection_result import InjectionResult
from innerprobe.models.load import load_model

WordsOpt = Annotated[str, typer.Option(help="Concept words, comma-separated (identification: first tokens must differ).")]
LayerOpt = Annotated[int, typer.Option(help="Layer the concept vectors are read at and injected into.")]
ScalesOpt = Annotated[str, typer.Option(help="Injection strengths α, comma-separated (h ← h + α·v).")]
TimingOpt = Annotated[str, typer.Option(help=f"When to inject: {' | '.join(TIMINGS)}.")]
SingleOpt = Annotated[int, typer.Option(help="The token of --timing single (negative: from the prompt's end).")]
TrialsOpt = Annotated[int, typer.Option(help="Trial variants ('Trial 1..n') per injected condition.")]
ControlTrialsOpt = Annotated[int, typer.Option(help="Variants of the no-injection yes/no trials (>= --n-trials).")]
RelativeOpt = Annotated[bool, typer.Option(help="Scale relative to each token's residual norm.")]


def _floats(value: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError as e:
        raise DataError(f"--scales must be comma-separated numbers, got {value!r}") from e


def print_summary(result: InjectionResult) -> None:
    """Each rate beside its control."""
    s = result.summary
    console.print(f"timing {s.timing} · layer {s.layer} · {s.n_trials} trials · {result.seconds:.0f} s")
    for name in ("detect_yes_concept", "detect_yes_random", "detect_yes_none", "impossible_yes_concept",
                 "impossible_yes_none", "twin_yes", "detection_shift_concept", "yes_shift_concept",
                 "shift_correlation", "identification_concept", "identification_leak", "identification_twin", "localisation_concept",
                 "localisation_random"):
        console.print(f"  {name:26s} {fmt(getattr(s, name))}")
    d = s.detect_vs_impossible
    if d is not None:
        console.print(f"  detect − impossible (yes)  {fmt(d.diff)}  McNemar p={d.mcnemar_p:.3g}")


def register(app: typer.Typer) -> None:
    @app.command()
    def inject(
        model: ModelOpt = "smollm2-135m-instruct",
        words: WordsOpt = ",".join(CONCEPT_WORDS),
        layer: LayerOpt = 15,
        scales: ScalesOpt = "4",
        timing: TimingOpt = "trial",
        single_token: SingleOpt = -1,
        n_trials: TrialsOpt = 4,
        control_trials: ControlTrialsOpt = 20,
        relative: RelativeOpt = False,
        site: SiteOpt = "resid_pre",
        out: OutOpt = Path("runs/inject"),
        batch_size: BatchSizeOpt = 16,
        seed: SeedOpt = 0,
        device: DeviceOpt = None,
    ) -> None:
        """Concept injection: detection, identification, localisation, beside every control."""
        try:
            config = InjectionConfig(scales=_floats(scales), timing=timing, single_token=single_token,
                                     relative=relative, n_trials=n_trials, n_control_trials=control_trials, batch_size=batch_size, seed=seed,
                                     random_seed=seed)
            preflight(out, "inject", device, models=(model,))
            m = load_model(model, device=device)
            concepts = concept_vectors(m, [w.strip() for w in words.split(",") if w.strip()], layer, site=site)
            with Bars() as bars:
                result = run_injection(m, concepts, config, progress=bars.factory)
            result.save(out)
        except InnerprobeError as e:
            fail(e)
            return
        print_summary(result)
        console.print(f"wrote {out}")


__all__ = ["print_summary", "register"]
