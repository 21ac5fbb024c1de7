"""Settings of a concept-injection run, and *when* a vector is injected (the timing).

Replications of Lindsey's concept injection disagree mostly because of timing: injecting from
the prompt's start instead of from generation moved one open-model replication from the paper's
~20% to 50.5%. So the timing is a named, recorded setting here, mapped to a position selector
(:mod:`innerprobe.interventions.positions`) per trial, in the trial's real-token coordinates
(``prompt_len`` = the fresh prompt; the answer prefill is what follows it):

==============  ===========================================================================
``prompt``      ``From(0)``: every token from the prompt's start through the prefill
``trial``       ``From(trial_start − 1)``: from the token before "Trial k" onward (Lindsey)
``generation``  ``Generation()``: only the generated (teacher-forced prefill) tokens
``single``      ``Single(single_token)``: one prompt token (negative: from the prompt's end)
==============  ===========================================================================

Localisation trials inject into one sentence's token span (``Range``) whatever the timing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from innerprobe.core.errors import DataError, UnknownNameError, check_at_least
from innerprobe.interventions.positions import From, Generation, Range, Selector, Single
from innerprobe.interventions.trials import IMPOSSIBLE, SENTENCES, TWIN, Trial

TIMINGS: tuple[str, ...] = ("prompt", "trial", "generation", "single")


@dataclass(frozen=True)
class InjectionConfig:
    """Every knob of :func:`~innerprobe.interventions.injection.run_injection` (checked when built).

    Attributes:
        scales: injection strengths ``α`` (``h ← h + α·v``; with ``relative``, ``α·‖h‖·v̂``).
        timing: one of :data:`TIMINGS`.
        single_token: the token of the ``single`` timing (prompt coordinates, negative from the end).
        relative: scale against each token's residual norm instead of absolutely.
        n_trials: trial variants ("Trial 1" ... "Trial n") per injected condition.
        n_control_trials: variants of the no-injection detection and impossible-question trials
            (at least ``n_trials``; the first ``n_trials`` pair with the injected ones). No
            injection is one condition, not one per concept and scale, so a false-positive rate
            with a usable interval costs only these extra trials.
        impossible: the yes-bias control question (truthful answer: no).
        twin: the input-level twin's text, ``{word}`` replaced by the concept, put before the question.
        sentences: the localisation task's sentences (chance = 1 / len).
        identification / localisation: run those tasks (the detection controls always run).
        system: the system turn (None: the chat template's default).
        random_seed: seed of the norm-matched random vectors.
        n_boot, seed: bootstrap settings of every interval.
    """

    scales: tuple[float, ...] = (4.0,)
    timing: str = "trial"
    single_token: int = -1
    relative: bool = False
    n_trials: int = 4
    n_control_trials: int = 20
    impossible: str = IMPOSSIBLE
    twin: str = TWIN
    sentences: tuple[str, ...] = SENTENCES
    identification: bool = True
    localisation: bool = True
    system: str | None = None
    random_seed: int = 0
    batch_size: int = 16
    n_boot: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.timing not in TIMINGS:
            raise UnknownNameError("injection timing", self.timing, TIMINGS)
        scales = (self.scales,) if isinstance(self.scales, (int, float)) else tuple(float(s) for s in self.scales)
        if not scales or not all(math.isfinite(s) for s in scales):
            raise DataError(f"injection scales must be a non-empty list of finite numbers, got {self.scales!r}")
        object.__setattr__(self, "scales", scales)
        object.__setattr__(self, "sentences", tuple(self.sentences))
        check_at_least("n_trials", self.n_trials, 1)
        check_at_least("n_control_trials", self.n_control_trials, 1)
        check_at_least("batch_size", self.batch_size, 1)
        check_at_least("n_boot", self.n_boot, 1)
        if len(self.sentences) < 2:
            raise DataError(f"localisation needs at least 2 sentences, got {len(self.sentences)}")
        if "{word}" not in self.twin:
            raise DataError(f"the input twin text needs a '{{word}}' placeholder, got {self.twin!r}")


def control_variants(config: InjectionConfig) -> int:
    """How many no-injection variants of the yes/no questions run: never fewer than ``n_trials``."""
    return max(config.n_trials, config.n_control_trials)


def timing_selector(config: InjectionConfig, trial: Trial) -> Selector:
    """The selector of ``config.timing`` for ``trial`` (localisation: its target sentence's span)."""
    if trial.kind == "localise":
        j = trial.positions["target"]
        return Range(trial.positions[f"span{j}_start"], trial.positions[f"span{j}_end"])
    if config.timing == "prompt":
        return From(0)
    if config.timing == "trial":
        return From(max(0, trial.positions["trial_start"] - 1))
    if config.timing == "generation":
        if not trial.prefill_ids:
            raise DataError("timing 'generation' injects the answer prefill: the trial has none")
        return Generation()
    t = config.single_token + trial.prompt_len if config.single_token < 0 else config.single_token
    if not 0 <= t < trial.prompt_len:
        raise DataError(f"single_token {config.single_token} is outside the prompt's tokens "
                        f"0..{trial.prompt_len - 1} (or -{trial.prompt_len}..-1)")
    return Single(t)


def expected_positions(config: InjectionConfig, trial: Trial) -> list[int]:
    """The real-token indices ``timing_selector`` picks in ``trial`` (prompt + prefill)."""
    n, L = len(trial.ids), trial.prompt_len
    if trial.kind == "localise":
        j = trial.positions["target"]
        return list(range(trial.positions[f"span{j}_start"], trial.positions[f"span{j}_end"]))
    return {"prompt": list(range(n)), "trial": list(range(max(0, trial.positions["trial_start"] - 1), n)),
            "generation": list(range(L, n)),
            "single": [config.single_token % L if config.single_token < 0 else config.single_token]}[config.timing]


__all__ = ["TIMINGS", "InjectionConfig", "control_variants", "expected_positions", "timing_selector"]
