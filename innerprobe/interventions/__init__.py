"""Floor 5: interventions on the residual stream: lenses, steering, ablation, replacement.

:mod:`.positions` names where (real-token indices that survive padding and cached generation),
:mod:`.edits` what (add a vector, project out a subspace, replace), :mod:`.hooks` installs them
on TransformerLens hook points for any forward (``intervene``), and :mod:`.lens` reads
next-token distributions off any layer (logit lens, tuned lens). Concept injection (E8):
:mod:`.concepts` (concept vectors), :mod:`.trials` (the trial prompts), :mod:`.injection_config`
(settings and timings), :mod:`.injection` (the run, scored from logits) and
:mod:`.injection_result` (every rate beside its control).
"""

from __future__ import annotations

from innerprobe.interventions.concepts import ConceptSet, concept_vectors, random_like
from innerprobe.interventions.edits import AddVector, ProjectOut, Replace
from innerprobe.interventions.hooks import Intervention, InterventionLog, intervene
from innerprobe.interventions.injection import InjectionConfig, InjectionResult, run_injection
from innerprobe.interventions.lens import TunedLens, TunedLensConfig, logit_lens, train_tuned_lens
from innerprobe.interventions.positions import (
    All,
    BeforePrefill,
    From,
    Generation,
    Last,
    Prompt,
    Range,
    Single,
    Span,
)

__all__ = [
    "AddVector", "All", "BeforePrefill", "ConceptSet", "From", "Generation", "InjectionConfig", "InjectionResult",
    "Intervention", "InterventionLog", "Last", "concept_vectors", "random_like", "run_injection",
    "ProjectOut", "Prompt", "Range", "Replace", "Single", "Span", "TunedLens", "TunedLensConfig", "intervene",
    "logit_lens", "train_tuned_lens",
]
