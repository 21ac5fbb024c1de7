"""Battery adapters E4 (patching maps inside O and H, and their similarity) and E5 (O→H transplant).

Both read one patching study (:func:`~innerprobe.patching.study.run_patching_study`) per model
role: ``patch_pairs`` minimal pairs (P_A, P_B differ in one word, the answer *and* its property
change), the denoising map of O and of H over (layer × cell: the replaced word, the last P
tokens, the last prompt tokens), and the O→H transplant with its controls. The study is run
once, kept in ``ctx.shared`` and saved under ``ctx.work_dir/patching`` (atomically), so E5 after
E4, and a resumed battery, reuse it.

**E4 — do the maps agree?** Self-simulation predicts that H processes its quote of P as O
processes P: the recovery map of H over the quoted P mirrors O's map over P
(``interp_methods.md`` §3 E4). The effect is the Pearson r between the two mean maps over the
cells they share (the word and the last P tokens, every patched layer), with a percentile
bootstrap over pairs (the same pairs resampled in both maps). Its control is what r is when the
maps share only their layer profile: O's columns permuted within each layer (mean and 2.5–97.5%
range over permutations). Unit: ``recovery`` (r of recovery maps; ``min_recovery`` applies).

**E5 — does H read O's state?** Writing O(P_B)'s residual into H(P_A)'s quote should move H's
prediction toward P_B's property if H consumes the object-level answer state. The effect is,
per pair, the shift (``logit[donor label] − logit[own label]``, in logits) averaged over the
patched layers from ``transplant_from`` of the depth on (the study transplants there only; at the first layers the word's residual
is its token embedding, so a transplant there rewrites H's input, which says nothing), minus the
same shift from a control donor, bootstrapped over pairs (paired). The primary control is the
object prompt of another task (real activations, wrong content); the norm-matched random vector
and a donor of the recipient's own property are reported beside it.

No pair surviving the filters is an explicit "not run" row saying why, never a number.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from jaxtyping import Float

from innerprobe.core.errors import DataError
from innerprobe.core.io import atomic_dir
from innerprobe.core.result import RESULT_JSON
from innerprobe.core.stats import Estimate, paired_bootstrap_diff
from innerprobe.patching.study import (
    PatchStudyConfig,
    PatchStudyResult,
    parse_layers,
    run_patching_study,
)
from innerprobe.patching.transplant import ANSWER_STATE
from innerprobe.study.evidence import Evidence, not_run
from innerprobe.study.step_context import StepContext

log = logging.getLogger(__name__)
STUDY = "patching"
E4_SUB, E5_SUB = "O vs H patching maps", "O->H transplant"


def patch_config(ctx: StepContext) -> PatchStudyConfig:
    """The patching study of the battery's settings: only what E4 and E5 read is computed.

    No control-pair map; the maps patch ``resid_post`` (the residual leaving layer ``l``), on
    which the study runs no attribution patching (AtP is triage on ``resid_pre``; the battery
    reads exact maps only); the transplant (which writes ``resid_pre``) runs only at the layers
    E5 reads (:func:`late_layers`); the greedy decode that records each pair's greedy answer is
    6 tokens (the first answer word), not behaviour's 24.
    """
    c = ctx.config
    n_layers = int(ctx.model.fingerprint.n_layers)
    layers = parse_layers(c.patch_layers, n_layers)
    late = [layers[i] for i in late_layers(layers, n_layers, c.transplant_from)]
    return PatchStudyConfig(
        task=c.task, n_pairs=c.patch_pairs, n_controls=0, n_items=c.patch_items, min_gap=c.patch_min_gap,
        site="resid_post", p_tokens=c.patch_p_tokens, last=c.patch_last, layers=c.patch_layers,
        transplant_layers=",".join(map(str, late)), greedy_max_new_tokens=6,
        other_task="animals" if c.task == "colors" else "colors", n_boot=c.n_boot, seed=c.seed,
    )


def patching_study(ctx: StepContext) -> PatchStudyResult | str:
    """The role's patching study (run once, then shared and saved), or why it could not run."""
    if STUDY in ctx.shared:
        return ctx.shared[STUDY]
    saved = Path(ctx.work_dir) / STUDY if ctx.work_dir is not None else None
    if saved is not None and (saved / RESULT_JSON).exists():
        got: PatchStudyResult | str = PatchStudyResult.load(saved)
    else:
        try:
            got = run_patching_study(ctx.model, ctx.config.task, ctx.config.property, patch_config(ctx))
        except DataError as error:
            got = f"patching study could not run: {error}"
        if saved is not None and not isinstance(got, str):
            with atomic_dir(saved) as tmp:
                got.save(tmp)
    ctx.shared[STUDY] = got
    return got


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def _mean_map(rec: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.nanmean(rec, axis=0)


def map_similarity(
    o_rec: Float[np.ndarray, "pairs layers cells"],
    h_rec: Float[np.ndarray, "pairs layers cells"],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[Estimate, Estimate] | None:
    """``(r, null)``: Pearson r of the mean O and H maps, bootstrapped over pairs, and its
    within-layer permutation null (see the module docstring). ``None`` when r is undefined
    (fewer than 3 finite cells, or a constant map)."""
    if o_rec.shape != h_rec.shape:
        raise DataError(f"map_similarity: O map {o_rec.shape} and H map {h_rec.shape} differ in shape")
    finite = np.isfinite(o_rec).any(axis=(1, 2)) & np.isfinite(h_rec).any(axis=(1, 2))
    o, h = o_rec[finite], h_rec[finite]
    n = int(finite.sum())
    mo, mh = _mean_map(o), _mean_map(h)
    r = _pearson(mo.ravel(), mh.ravel())
    if n < 2 or not np.isfinite(r):
        return None
    rng = np.random.default_rng(seed)
    boots = np.array([_pearson(_mean_map(o[i]).ravel(), _mean_map(h[i]).ravel())
                      for i in (rng.integers(0, n, n) for _ in range(n_boot))])
    boots = boots[np.isfinite(boots)]
    lo, hi = np.quantile(boots, [0.025, 0.975]) if boots.size else (r, r)
    null = np.array([_pearson(rng.permuted(mo, axis=1).ravel(), mh.ravel()) for _ in range(n_boot)])
    null = null[np.isfinite(null)]
    if not null.size:
        return None
    effect = Estimate(r, float(lo), float(hi), n, f"Pearson r of mean maps, percentile bootstrap over pairs (n_boot={n_boot})")
    control = Estimate(float(null.mean()), float(np.quantile(null, 0.025)), float(np.quantile(null, 0.975)), n,
                       f"O columns permuted within each layer ({null.size} permutations)")
    return effect, control


def e4_patching_maps(ctx: StepContext) -> list[Evidence]:
    """E4: the similarity of H's and O's minimal-pair patching maps over the (quoted) P."""
    study = patching_study(ctx)
    if isinstance(study, str):
        return [not_run("E4", E4_SUB, study, model=ctx.role)]
    shared = list(range(1 + study.config.p_tokens))
    sim = map_similarity(study.o_map.recovery[:, :, shared], study.h_map.recovery[:, :, shared],
                         n_boot=ctx.config.n_boot, seed=ctx.config.seed)
    if sim is None:
        return [not_run("E4", E4_SUB, f"map similarity undefined on {study.summary.n_pairs} pairs (constant or "
                        "no finite recovery)", model=ctx.role)]
    effect, control = sim
    return [Evidence("E4", E4_SUB, "Pearson r of O and H recovery maps (word + last P tokens × layers)",
                     effect, control, effect.n, model=ctx.role, unit="recovery")]


def late_layers(layers: Sequence[int], n_layers: int, start: float) -> list[int]:
    """Column indices of ``layers`` at or after ``start`` of the depth (the deepest one if none)."""
    cols = [i for i, layer in enumerate(layers) if layer >= start * n_layers]
    return cols or [len(layers) - 1]


def _per_item(shift: np.ndarray, cols: list[int]) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.nanmean(shift[:, cols], axis=1)


def e5_transplant(ctx: StepContext) -> list[Evidence]:
    """E5: O→H transplant shift toward the donor's property, against its controls (paired).

    The primary row is the reference protocol's transplant: O's answer state (``o_last``) into
    H's last token, donor − other-task donor. The word-site transplant (O's residual at the
    replaced word and P's last tokens into H's quote) is reported beside it, not voted: on models
    whose H reads the quote early it comes after the read (the zoo's planted simulation models),
    so its null says nothing about the route.
    """
    study = patching_study(ctx)
    if isinstance(study, str):
        return [not_run("E5", E5_SUB, study, model=ctx.role)]
    tr = study.transplant
    n_layers = int(ctx.model.fingerprint.n_layers)
    cols = late_layers(tr.layers, n_layers, ctx.config.transplant_from)
    where = f"layers {tr.layers[cols[0]]}..{tr.layers[cols[-1]]}"
    rows = []
    for site, suffix, label in (("answer state", ANSWER_STATE, "o_last → h_last"), ("word", "", "word + P end")):
        donor_key = "donor" + suffix
        if donor_key not in tr.shift:
            rows.append(not_run("E5", f"{E5_SUB} ({site})", f"no {site} transplant in this study", model=ctx.role))
            continue
        donor = _per_item(tr.shift[donor_key], cols)
        for cond in ("other_task", "random", "same_property"):
            primary = site == "answer state" and cond == "other_task"
            sub = f"{E5_SUB} vs {cond.replace('_', ' ')}" + ("" if primary else f" ({site})")
            ctrl = tr.shift.get(cond + suffix)
            rows.append(_transplant_row(ctx, donor, None if ctrl is None else _per_item(ctrl, cols), cond, sub,
                                        f"{label}, {where}", primary))
    return rows


def _transplant_row(ctx: StepContext, donor: np.ndarray, control: np.ndarray | None, cond: str, sub: str,
                    where: str, primary: bool) -> Evidence:
    """donor − control shift per item (paired bootstrap), or a not-run row saying why."""
    if control is None:
        return not_run("E5", sub, f"control {cond} was not run", model=ctx.role)
    ok = np.isfinite(donor) & np.isfinite(control)
    if ok.sum() < 2:
        return not_run("E5", sub, f"{int(ok.sum())} pairs with a finite shift", model=ctx.role)
    d = paired_bootstrap_diff(donor[ok], control[ok], n_boot=ctx.config.n_boot, seed=ctx.config.seed)
    return Evidence("E5", sub, f"shift toward donor's label, donor − {cond.replace('_', ' ')} ({where})",
                    d.diff, None, int(ok.sum()), model=ctx.role, unit="logits", primary=primary)


__all__ = ["e4_patching_maps", "e5_transplant", "late_layers", "map_similarity", "patch_config", "patching_study"]
