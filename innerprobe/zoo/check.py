"""The route check of a zoo model, independent of the battery, and its behavioural checks.

Behaviour (test items; the property values are those of the model's *own* object answers):

* object accuracy against the planted answers;
* self-prediction accuracy beside the mode baseline and the library's text-only third party
  (:class:`innerprobe.behavior.baselines.TextBaseline`, fitted on the train items' values); a
  memorised model's planted privilege exists only if it beats that third party.

Route (an exact intervention on the HF model, :mod:`innerprobe.zoo.hooks`): the answer subspace
(:mod:`innerprobe.zoo.subspace`, class means of the model's own answers at ``o_last``) is
projected out of H's residual at every site (on a pretrained base, every site above the frozen
trunk: :func:`first_checked_site`) after the quoted P (where H would form the answer;
the quoted words stay readable, since a 30-animal answer code overlaps the quoted animals'
identities); its control is a random subspace
of the same rank per site drawn *inside the orthogonal complement* of the answer subspace, as
close in projected variance of H's residual at ``h_last`` as the complement allows
(:func:`innerprobe.interventions.directions.random_subspace` on the complement's coordinates;
uniform where that residual is too degenerate to shape a basis). Why the complement: in a tiny
model the answer code is most of H's variance (a 30-word answer needs ~29 of 64 dimensions), so
a variance-matched random subspace drawn from the whole space must overlap the answer subspace
heavily and ablates much of the answer code itself (memorised/simulation, seed 0: self 0.96,
answer-ablated 0.13, whole-space random 0.17); the complement keeps the control's rank and as
much of its variance as exists outside the code, and so asks whether *the answer code in
particular* is needed. Where the rank exceeds half the width the control is drawn from the
whole space. The same ablation on O must break
the object answer (it is the answer code). Besides, ``h_answer_code`` is the fraction of H runs
whose final residual at ``h_last`` is nearest to the O class mean of the model's own answer.

``route_verified`` needs the self-prediction above the mode baseline (Wilson CI low above it: a
model with no self-prediction has no route to verify), and then: *simulation* when the ablation's drop (self − ablated) and its excess over
the random control (random − ablated) both have paired-bootstrap CIs above 0; *direct* when the
drop's CI rules out a drop of ``max_direct_drop`` or more.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from jaxtyping import Float
from torch import Tensor
from transformers import AutoTokenizer, LlamaForCausalLM

from innerprobe.behavior.baselines import TextBaseline
from innerprobe.core import stats
from innerprobe.core.errors import DataError, check_at_least, check_choice
from innerprobe.core.io import read_json
from innerprobe.core.result import Result, Summary
from innerprobe.core.stats import Estimate, PairedDiff
from innerprobe.interventions.directions import projected_variance, random_subspace
from innerprobe.protocol.tasks import get_task
from innerprobe.zoo.build import ZOO_JSON, ZooModel
from innerprobe.zoo.config import ZooConfig
from innerprobe.zoo.data import ZooEncoder, all_items, planted_answers
from innerprobe.zoo.measure import hypo_last_acts, nearest_mean, object_answers, self_predictions
from innerprobe.zoo.subspace import class_mean_basis, last_site_acts


@dataclass(frozen=True)
class CheckConfig:
    """Settings of the route check: bootstrap size and seed, the direct route's tolerated drop, and
    where to ablate (``adapted``: every site of a from-scratch model, the sites above the cut of a
    pretrained one, see :func:`first_checked_site`; ``all``: every site)."""

    n_boot: int = 2000
    seed: int = 0
    max_direct_drop: float = 0.15
    sites: str = "adapted"

    def __post_init__(self) -> None:
        check_choice("CheckConfig.sites", self.sites, ("adapted", "all"))
        check_at_least("CheckConfig.n_boot", self.n_boot, 100)
        check_at_least("CheckConfig.seed", self.seed, 0)
        check_at_least("CheckConfig.max_direct_drop", self.max_direct_drop, 0.0)


@dataclass
class ZooCheckSummary(Summary):
    object_accuracy: Estimate
    self_accuracy: Estimate
    mode_baseline: Estimate
    text_only: Estimate
    ablated_self: Estimate
    random_self: Estimate
    object_ablated: Estimate
    h_answer_code: Estimate
    drop: PairedDiff
    excess_over_random: PairedDiff
    self_minus_text: PairedDiff
    answer_rank: int
    route: str
    task_kind: str
    route_verified: bool
    why: str


@dataclass
class ZooCheckResult(Result):
    """Per test item: planted and own answers, property value and each predictor's label."""

    stage: ClassVar[str] = "zoo_check"
    table: pd.DataFrame
    summary: ZooCheckSummary
    model: str

    def figure(self) -> go.Figure:
        s = self.summary
        bars = [("object acc", s.object_accuracy), ("self", s.self_accuracy), ("mode", s.mode_baseline),
                ("text-only", s.text_only), ("self, answer ablated", s.ablated_self),
                ("self, random ablated", s.random_self), ("object, answer ablated", s.object_ablated)]
        fig = go.Figure(go.Bar(
            x=[b[0] for b in bars], y=[b[1].value for b in bars],
            error_y={"type": "data", "symmetric": False, "array": [b[1].ci_high - b[1].value for b in bars],
                     "arrayminus": [b[1].value - b[1].ci_low for b in bars]},
        ))
        fig.update_layout(title=f"zoo {s.task_kind}/{s.route}: route verified = {s.route_verified}",
                          yaxis_title="accuracy (Wilson 95% CI)", yaxis_range=[0, 1])
        return fig


def _verdict(route: str, mode: Estimate, self_acc: Estimate, drop: PairedDiff, excess: PairedDiff,
             cfg: CheckConfig) -> tuple[bool, str]:
    above = self_acc.ci_low > mode.value
    head = f"self CI low {self_acc.ci_low:.3f} {'>' if above else '<='} mode {mode.value:.3f}"
    if route == "simulation":
        ok = above and drop.diff.ci_low > 0 and excess.diff.ci_low > 0
        return ok, f"{head}; drop CI low {drop.diff.ci_low:.3f} and excess over random CI low {excess.diff.ci_low:.3f} (> 0 needed)"
    ok = above and drop.diff.ci_high < cfg.max_direct_drop
    return ok, f"{head}; drop CI high {drop.diff.ci_high:.3f} (< {cfg.max_direct_drop} needed)"


def _random_like(basis: Float[Tensor, "k d"], acts: Float[Tensor, "n d"], seed: int) -> Float[Tensor, "k d"]:
    """A random basis of ``basis``'s rank outside ``span(basis)``, variance-matched on ``acts`` as far
    as the complement allows (module docstring); from the whole space when the complement is
    narrower than the rank; Haar where ``acts`` are too degenerate to shape a basis."""
    k, d = basis.shape
    if k == 0:
        return basis
    outside = basis if 2 * k <= d else None
    try:
        return random_subspace(k, d, seed=seed, acts=acts, target_variance=projected_variance(acts, basis),
                               outside=outside).basis
    except DataError:  # H's residual at h_last spans fewer dimensions than the rank (e.g. one token)
        return random_subspace(k, d, seed=seed, outside=outside).basis


def first_checked_site(model, config: ZooConfig, cfg: CheckConfig) -> int:  # noqa: ANN001
    """The first site the check ablates: 0, or on a pretrained base with ``sites="adapted"`` the cut.

    A pretrained zoo model's route was planted in its adapted top blocks; the frozen trunk below
    is the base model's own computation, which knows nothing of a memorised answer. Ablating a
    rank-k subspace at each of SmolLM2's 26 frozen sites breaks its hypothetical whatever the
    subspace (memorised/simulation seed 0: answer subspace 0.10, random control 0.02, from 0.54),
    so there the check ablates at the sites the construction acted on (the residual entering the
    first adapted block, each block above, the final norm), as :mod:`innerprobe.zoo.train` does."""
    if cfg.sites == "all" or not config.pretrained:
        return 0
    return model.config.num_hidden_layers - config.n_trainable


def run_zoo_check(zoo: ZooModel | str | Path, cfg: CheckConfig = CheckConfig()) -> ZooCheckResult:
    """Measure one zoo model's behaviour and verify its planted route (module docstring)."""
    path = Path(zoo.path if isinstance(zoo, ZooModel) else zoo)
    config = ZooConfig(**json_config(path))
    model = LlamaForCausalLM.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    enc = ZooEncoder(tok, config)
    items = all_items(config)
    planted = planted_answers(config, items)
    encoded = [enc.encode(r["question"], a) for r, a in zip(items, planted)]
    words = list(get_task(config.task).vocabulary or ())
    word_ids = [enc.answer_tokens("x", w)[0] for w in words]
    pad = tok.pad_token_id
    own = object_answers(model, encoded, word_ids, words, pad)
    values = [enc.prop.extract(w) for w in own]
    n_tr = config.n_train
    test = slice(n_tr, None)
    # the answer subspace from O runs over every item, labelled by the model's own answers
    o_acts = last_site_acts(model, [e.object_ids[: e.object_prompt_len] for e in encoded], pad)
    max_rank = model.config.hidden_size // 2
    first = first_checked_site(model, config, cfg)
    bases = [class_mean_basis(o_acts[:, s], own, max_rank if s >= first else 0) for s in range(o_acts.shape[1])]
    h_acts = hypo_last_acts(model, encoded, pad)
    rand = [_random_like(b, h_acts[:, s], cfg.seed + s) for s, b in enumerate(bases)]
    te = encoded[test]
    pred = self_predictions(model, te, enc.label_ids, enc.labels, pad)
    abl = self_predictions(model, te, enc.label_ids, enc.labels, pad, bases)
    rnd = self_predictions(model, te, enc.label_ids, enc.labels, pad, rand)
    own_abl = object_answers(model, te, word_ids, words, pad, bases)
    text = TextBaseline(seed=cfg.seed).fit(items.select(range(n_tr)), values[:n_tr]).predict(items.select(range(n_tr, len(items))))
    nearest = nearest_mean(o_acts[:, -1], own, h_acts[test, -1])
    v = values[test]
    hit = lambda p: np.array([a == b for a, b in zip(p, v)], dtype=float)  # noqa: E731
    table = pd.DataFrame({
        "id": items["id"][n_tr:], "planted": planted[test], "answer": own[test], "value": v,
        "self": pred, "ablated": abl, "random": rnd, "text_only": text, "answer_ablated": own_abl,
        "h_nearest_answer": nearest,
    })
    mode = stats.mode_baseline(v).estimate
    drop = stats.paired_bootstrap_diff(hit(pred), hit(abl), n_boot=cfg.n_boot, seed=cfg.seed)
    excess = stats.paired_bootstrap_diff(hit(rnd), hit(abl), n_boot=cfg.n_boot, seed=cfg.seed)
    self_acc = stats.accuracy(hit(pred))
    ok, why = _verdict(config.route, mode, self_acc, drop, excess, cfg)
    summary = ZooCheckSummary(
        object_accuracy=stats.accuracy(np.array([a == b for a, b in zip(own[test], planted[test])])),
        self_accuracy=self_acc, mode_baseline=mode, text_only=stats.accuracy(hit(text)),
        ablated_self=stats.accuracy(hit(abl)), random_self=stats.accuracy(hit(rnd)),
        object_ablated=stats.accuracy(np.array([a == b for a, b in zip(own_abl, own[test])])),
        h_answer_code=stats.accuracy(np.array([a == b for a, b in zip(nearest, own[test])])),
        drop=drop, excess_over_random=excess,
        self_minus_text=stats.paired_bootstrap_diff(hit(pred), hit(text), n_boot=cfg.n_boot, seed=cfg.seed),
        answer_rank=max(b.shape[0] for b in bases), route=config.route, task_kind=config.task_kind,
        route_verified=bool(ok), why=why,
    )
    return ZooCheckResult(table=table, summary=summary, model=str(path))


def json_config(path: Path) -> dict:
    """The ``ZooConfig`` fields recorded in a zoo model directory's ``zoo.json``."""
    return dict(json_read(path / ZOO_JSON)["config"])


def json_read(path: Path) -> dict:
    return dict(read_json(path))


__all__ = ["CheckConfig", "ZooCheckResult", "ZooCheckSummary", "run_zoo_check"]
