"""Floor 5: interventions on the residual stream: lenses, steering, ablation, replacement.

:mod:`.positions` names where (real-token indices that survive padding and cached generation),
:mod:`.edits` what (add a vector, project out a subspace, replace), :mod:`.hooks` installs them
on TransformerLens hook points for any forward (``intervene``), and :mod:`.lens` reads
next-token distributions off any layer (logit lens, tuned lens).

The experiments: :mod:`.directions` builds answer directions and subspaces from a store's O runs
and their random controls (norm-matched vectors, variance-matched subspaces); :mod:`.readout`
reads a forced choice off one forward; :mod:`.experiment` holds what both experiments share;
:mod:`.steering` (E5/E7, result in :mod:`.steering_result`) and :mod:`.ablation` (E6, result in
:mod:`.ablation_result`) run them. Concept injection (E8):
:mod:`.concepts` (concept vectors), :mod:`.trials` (the trial prompts), :mod:`.injection_config`
(settings and timings), :mod:`.injection` (the run, scored from logits) and
:mod:`.injection_result` (every rate beside its control).
"""

from __future__ import annotations

from innerprobe.interventions.ablation import AblationConfig, run_ablation
from innerprobe.interventions.ablation_result import AblationResult
from innerprobe.interventions.concepts import ConceptSet, concept_vectors, random_like
from innerprobe.interventions.directions import (
    ClassMeans,
    Direction,
    Subspace,
    class_means,
    norm_matched,
    random_subspace,
    store_class_means,
)
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
from innerprobe.interventions.steering import SteeringConfig, run_steering
from innerprobe.interventions.steering_result import SteeringResult

__all__ = [
    "AblationConfig", "AblationResult", "ClassMeans", "Direction", "SteeringConfig", "SteeringResult", "Subspace",
    "class_means", "norm_matched", "random_subspace", "run_ablation", "run_steering", "store_class_means",
    "AddVector", "All", "BeforePrefill", "From", "Generation", "Intervention", "InterventionLog", "Last",
    "ConceptSet", "InjectionConfig", "InjectionResult", "concept_vectors", "random_like", "run_injection",
    "ProjectOut", "Prompt", "Range", "Replace", "Single", "Span", "TunedLens", "TunedLensConfig", "intervene",
    "logit_lens", "train_tuned_lens",
]
