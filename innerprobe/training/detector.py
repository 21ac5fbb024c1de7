"""The positive control of concept injection: a LoRA-trained injected-thought detector.

An untrained small model is expected to show no detection at all, and a null result only means
something if the protocol *can* see detection where it exists. So train it in (as arXiv
2511.21399 did for a 7B model): finetune a LoRA adapter to answer "yes" to the detection
question when a concept vector is injected and "no" when nothing is, on **some** concept
vectors, then run the full protocol (:func:`~innerprobe.interventions.injection.run_injection`)
on **held-out** concept vectors. To keep the detector honest about the yes-bias it is also
trained to answer "no" to *other* questions whose truthful answer is no (``impossible_train``)
under injection; the yes-bias control of the evaluation asks a question it never saw. Training
prompts use other trial numbers than the evaluation's, so no evaluation prompt is seen either.

**Injection during training** must put the vector exactly where evaluation does. The peft model
is a plain HF model (no TransformerLens hook points), so a forward pre-hook on decoder layer
``l`` adds ``α·v_row`` to its input hidden states (= ``blocks.{l}.hook_resid_pre``) at the
positions :func:`~innerprobe.interventions.injection_config.timing_selector` picks for the
trial, per row, so one batch mixes injected and clean rows.

It beats the yes-bias control when, on held-out vectors, "yes" to the detection question is
more frequent than "yes" to the impossible question under the same injection *and* than "yes"
to the detection question without injection: both paired differences with a bootstrap CI above 0
and an exact McNemar p < 0.05.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from jaxtyping import Float
from torch import Tensor

from innerprobe.core.errors import DataError, check_at_least
from innerprobe.core.result import Result, Summary
from innerprobe.core.stats import Estimate, PairedDiff
from innerprobe.interventions.concepts import ConceptSet, check_layer
from innerprobe.interventions.injection import run_injection
from innerprobe.interventions.injection_config import TIMINGS, InjectionConfig, timing_selector
from innerprobe.interventions.injection_result import InjectionSummary
from innerprobe.interventions.positions import RowContext
from innerprobe.interventions.prefix import decoder_layer_list
from innerprobe.interventions.trials import DETECT, Trial, build_trial, yes_no_ids
from innerprobe.models.load import load_model
from innerprobe.models.loaded import LoadedModel
from innerprobe.training.config import FinetuneConfig
from innerprobe.training.encode import IGNORE, Encoded, answer_loss, collate
from innerprobe.training.finetune import lora_model, merged_copy

log = logging.getLogger(__name__)

_THINGS = ("water", "a stone", "ice", "a chair", "the moon", "a fish", "a cloud", "a tree", "bread", "a river",
           "a spoon", "a rabbit")
_FALSE = ("Is {a} made of {b}?", "Can {a} sing like {b}?", "Is {a} the same thing as {b}?", "Does {a} eat {b}?")
IMPOSSIBLE_TRAIN: tuple[str, ...] = tuple(
    f"{t.format(a=a, b=b)} Answer yes or no." for t in _FALSE for a in _THINGS for b in _THINGS[::-1] if a != b
)
"""Training questions whose truthful answer is no (templated, so the detector must key on the
detection question itself; the evaluation's yes-bias question is none of them)."""


@dataclass(frozen=True)
class DetectorConfig:
    """Settings of the trained detector (checked when built).

    ``train_words`` / ``test_words`` split the concept vectors (disjoint). ``steps`` optimiser
    steps, each on one batch: two injected detection trials (target "yes"), one clean detection
    trial ("no"), one injected ``impossible_train`` question ("no"). ``eval_trials`` trial variants
    per held-out condition in the evaluation; training uses variants after them.
    """

    train_words: tuple[str, ...]
    test_words: tuple[str, ...]
    scale: float = 4.0
    timing: str = "trial"
    steps: int = 40
    lr: float = 2e-3
    rank: int = 8
    alpha: int = 16
    n_train_variants: int = 8
    eval_trials: int = 8
    impossible_train: tuple[str, ...] = IMPOSSIBLE_TRAIN
    seed: int = 0
    n_boot: int = 2000

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_words", tuple(self.train_words))
        object.__setattr__(self, "test_words", tuple(self.test_words))
        if not self.train_words or not self.test_words:
            raise DataError("the detector needs training words and held-out test words")
        if set(self.train_words) & set(self.test_words):
            raise DataError(f"train and test words overlap: {sorted(set(self.train_words) & set(self.test_words))}")
        if self.timing not in TIMINGS:
            InjectionConfig(timing=self.timing)  # raises UnknownNameError listing the timings
        for name in ("steps", "rank", "n_train_variants", "eval_trials"):
            check_at_least(name, getattr(self, name), 1)
        if not self.impossible_train:
            raise DataError("impossible_train needs at least one question")

    def lora(self) -> FinetuneConfig:
        return FinetuneConfig(rank=self.rank, alpha=self.alpha, lr=self.lr, seed=self.seed, batch_size=4)

    def injection(self) -> InjectionConfig:
        # no-injection variants stay inside the held-out evaluation variants (training uses later ones)
        return InjectionConfig(scales=(self.scale,), timing=self.timing, n_trials=self.eval_trials,
                               n_control_trials=self.eval_trials, identification=False, localisation=False, n_boot=self.n_boot, seed=self.seed)


# --------------------------------------------------------------------------- training-time injection


def decoder_layers(hf_model: Any) -> Any:
    """The decoder layer list of an HF (or peft-wrapped) causal LM (one lookup, shared with
    :func:`~innerprobe.interventions.prefix.decoder_layer_list`)."""
    return decoder_layer_list(hf_model)


def injection_mask(config: InjectionConfig, trial: Trial, width: int) -> Float[Tensor, " width"]:
    """1.0 at the positions evaluation would inject in ``trial``, in a left-padded row of ``width``."""
    t = torch.arange(len(trial.ids))
    sel = timing_selector(config, trial).select(t, RowContext(trial.prompt_len, trial.positions)).float()
    out = torch.zeros(width)
    out[width - len(trial.ids) - 1 : width - 1] = sel  # the answer token (last) is never injected
    return out


@contextmanager
def inject_rows(
    hf_model: Any, layer: int, vectors: Float[Tensor, "batch d_model"], masks: Float[Tensor, "batch seq"]
) -> Iterator[None]:
    """Add ``vectors[r]`` at ``masks[r]``'s positions to decoder layer ``layer``'s input (autograd-safe)."""

    def pre(module: Any, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        h = args[0] if args else kwargs["hidden_states"]
        h = h + masks.to(h)[..., None] * vectors.to(h)[:, None, :]
        return ((h, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": h})

    handle = decoder_layers(hf_model)[layer].register_forward_pre_hook(pre, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class _Row:
    trial: Trial
    word: str | None   # injected concept (None: clean)
    answer: int        # target token id


def _pick(rng: np.random.Generator, options: Sequence[Any]) -> Any:
    return options[int(rng.integers(0, len(options)))]


def _training_rows(config: DetectorConfig, rng: np.random.Generator, trials: dict[str, Any]) -> list[_Row]:
    """One step's batch: two injected detection trials (yes), a clean one (no), an injected
    impossible question (no)."""
    yes_id, no_id = trials["answers"]
    det, imp = trials["detect"], trials["impossible"]
    w1, w2 = _pick(rng, config.train_words), _pick(rng, config.train_words)
    return [_Row(_pick(rng, det), w1, yes_id), _Row(_pick(rng, det), w2, yes_id), _Row(_pick(rng, det), None, no_id),
            _Row(_pick(rng, imp), w1, no_id)]


def _train_trials(model: LoadedModel, config: DetectorConfig) -> dict[str, Any]:
    """Training prompts: trial numbers after the evaluation's; impossible questions drawn from
    ``config.impossible_train`` (a seeded sample of at most 256, each with a random trial number)."""
    tok = model.tokenizer
    first = config.eval_trials + 1
    ks = list(range(first, first + config.n_train_variants))
    rng = np.random.default_rng(config.seed + 1)
    qs = [config.impossible_train[int(i)] for i in rng.permutation(len(config.impossible_train))[:256]]
    det = [build_trial(tok, "detect", k, DETECT) for k in ks]
    imp = [build_trial(tok, "impossible", _pick(rng, ks), q) for q in qs]
    yes, no = yes_no_ids(tok, det[0], yes=("yes",), no=("no",))
    return {"detect": det, "impossible": imp, "answers": (yes[0], no[0])}


def _batch(rows: Sequence[_Row], concepts: ConceptSet, inj: InjectionConfig, scale: float, pad: int,
           ) -> tuple[tuple[Tensor, ...], Tensor, Tensor]:
    encoded = [Encoded(list(r.trial.ids) + [r.answer], [IGNORE] * len(r.trial.ids) + [r.answer]) for r in rows]
    ids, mask, pos, labels = collate(encoded, pad)
    width = ids.shape[1]
    masks = torch.stack([injection_mask(inj, r.trial, width) * (r.word is not None) for r in rows])
    vecs = torch.stack([concepts.vector(r.word) * scale if r.word else torch.zeros(concepts.vectors.shape[1])
                        for r in rows])
    return (ids, mask, pos, labels), vecs, masks


def train_detector_adapter(
    model: LoadedModel, concepts: ConceptSet, config: DetectorConfig, *, progress: Callable[[int], None] | None = None,
) -> tuple[Any, list[dict[str, float]]]:
    """LoRA-train ``model`` to answer yes iff a training concept vector is injected."""
    peft_model = lora_model(model, config.lora(), model.device)
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=config.lr, foreach=False)
    trials = _train_trials(model, config)
    inj = config.injection()
    rng = np.random.default_rng(config.seed)
    pad = model.tokenizer.pad_token_id
    history = []
    peft_model.train()
    t0 = time.perf_counter()
    for step in range(config.steps):
        rows = _training_rows(config, rng, trials)
        (ids, mask, pos, labels), vecs, masks = _batch(rows, concepts, inj, config.scale, pad)
        with inject_rows(peft_model, concepts.layer, vecs, masks):
            loss = answer_loss(peft_model, ids, mask, pos, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append({"step": step + 1, "loss": float(loss.item()), "seconds": time.perf_counter() - t0})
        if progress is not None:
            progress(1)
    peft_model.eval()
    return peft_model, history


# --------------------------------------------------------------------------- result


@dataclass
class DetectorSummary(Summary):
    """Held-out detection of the trained detector beside the untrained model and the yes-bias control."""

    train_words: list[str]
    test_words: list[str]
    steps: int
    loss_first: float
    loss_last: float
    trained_detect_yes: Estimate | None
    trained_false_positive: Estimate | None
    trained_impossible_yes: Estimate | None
    trained_random_yes: Estimate | None
    trained_detect_vs_impossible: PairedDiff | None
    base_detect_yes: Estimate | None
    base_false_positive: Estimate | None
    base_impossible_yes: Estimate | None
    base_detect_vs_impossible: PairedDiff | None
    beats_yes_bias: bool
    trained: InjectionSummary | None = None
    base: InjectionSummary | None = None

    @property
    def table(self) -> pd.DataFrame:
        base = super().table
        rows = []
        for name in ("trained_detect_vs_impossible", "base_detect_vs_impossible"):
            v = getattr(self, name)
            if v is not None:
                rows.append({"measure": f"{name} (a − b)", "value": v.diff.value, "ci_low": v.diff.ci_low,
                             "ci_high": v.diff.ci_high, "n": v.diff.n, "method": f"{v.diff.method}; exact McNemar p={v.mcnemar_p}"})
        return pd.concat([base, pd.DataFrame(rows)], ignore_index=True) if rows else base


def _beats(d: PairedDiff | None) -> bool:
    return bool(d is not None and d.diff.ci_low > 0 and (d.mcnemar_p or 1.0) < 0.05)


def _summary(config: DetectorConfig, history: list[dict[str, float]], trained: InjectionSummary,
             base: InjectionSummary) -> DetectorSummary:
    d = trained.detect_vs_impossible
    return DetectorSummary(
        train_words=list(config.train_words), test_words=list(config.test_words), steps=config.steps,
        loss_first=history[0]["loss"], loss_last=history[-1]["loss"],
        trained_detect_yes=trained.detect_yes_concept, trained_false_positive=trained.detect_yes_none,
        trained_impossible_yes=trained.impossible_yes_concept, trained_random_yes=trained.detect_yes_random,
        trained_detect_vs_impossible=d,
        base_detect_yes=base.detect_yes_concept, base_false_positive=base.detect_yes_none,
        base_impossible_yes=base.impossible_yes_concept, base_detect_vs_impossible=base.detect_vs_impossible,
        beats_yes_bias=_beats(d) and _beats(trained.concept_vs_none),
        trained=trained, base=base,
    )


@dataclass
class DetectorResult(Result):
    """The trained detector on held-out concept vectors (``table``: trials of both models)."""

    stage: ClassVar[str] = "inject-detector"

    table: pd.DataFrame
    history: pd.DataFrame
    summary: DetectorSummary
    config: DetectorConfig
    provenance: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def figure(self) -> go.Figure:
        s = self.summary
        names = ["detect·injected", "detect·none", "impossible·injected"]
        fig = go.Figure()
        for model, ests, color in (("untrained", [s.base_detect_yes, s.base_false_positive, s.base_impossible_yes], "#bbbbbb"),
                                   ("trained detector", [s.trained_detect_yes, s.trained_false_positive,
                                                         s.trained_impossible_yes], "#4c78a8")):
            kept = [(n, e) for n, e in zip(names, ests) if e is not None]
            fig.add_bar(name=model, x=[n for n, _ in kept], y=[e.value for _, e in kept], marker_color=color,
                        error_y={"type": "data", "symmetric": False, "array": [e.ci_high - e.value for _, e in kept],
                                 "arrayminus": [e.value - e.ci_low for _, e in kept]})
        fig.update_layout(barmode="group", yaxis_title="P(answer = yes)", yaxis_range=[0, 1.05],
                          title=f"Trained detector on held-out concepts {', '.join(s.test_words)}")
        return fig


def train_detector(
    model: LoadedModel, concepts: ConceptSet, config: DetectorConfig, *,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
) -> DetectorResult:
    """Train the detector on ``train_words``' vectors and evaluate both models on ``test_words``'."""
    check_layer(model, concepts.layer)
    for w in (*config.train_words, *config.test_words):
        concepts.vector(w)  # DataError naming the concepts when a word has no vector
    t0 = time.perf_counter()
    tick = progress("detector training", config.steps) if progress else None
    peft_model, history = train_detector_adapter(model, concepts, config, progress=tick)
    trained = load_model(merged_copy(peft_model), tokenizer=model.tokenizer)
    held_out = concepts.subset(config.test_words)
    res_trained = run_injection(trained, held_out, config.injection(), progress=progress)
    res_base = run_injection(model, held_out, config.injection(), progress=progress)
    table = pd.concat([res_trained.table.assign(model="trained"), res_base.table.assign(model="untrained")],
                      ignore_index=True)
    summary = _summary(config, history, res_trained.summary, res_base.summary)
    log.info("trained detector: held-out yes %s vs impossible-question yes %s", summary.trained_detect_yes,
             summary.trained_impossible_yes)
    return DetectorResult(table, pd.DataFrame(history), summary, config, res_base.provenance,
                          time.perf_counter() - t0)


__all__ = ["DetectorConfig", "DetectorResult", "DetectorSummary", "IMPOSSIBLE_TRAIN", "decoder_layers",
           "inject_rows", "injection_mask", "train_detector", "train_detector_adapter"]
