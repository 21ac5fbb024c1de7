"""Floor 3: behaviour, measured black-box.

One concept a module, in the order a run uses them:

* :mod:`.inference`: batched generation and forced-choice (label) scoring on the HF model;
* :mod:`.config`: :class:`BehaviorConfig`, checked at construction, and the task-default markers;
* :mod:`.elicitation`: the object-level answers (ground truth) and why items were dropped;
* :mod:`.labels`: the forced-choice label set of a property on some items;
* :mod:`.prediction`: hypothetical prompts, self-/cross-predictions and their scoring;
* :mod:`.result`: :class:`BehaviorResult` with its typed :class:`BehaviorSummary`;
* :mod:`.run`: :func:`behave`, the whole measurement in one call;
* :mod:`.baselines`: the controls a self-prediction accuracy is read against.
"""

from __future__ import annotations

from innerprobe.behavior.baselines import (
    Comparison,
    ComparisonSummary,
    TextBaseline,
    compare_self_cross,
    comparisons_frame,
    pooled_from_tables,
    pooled_self_cross,
    text_only_predictions,
)
from innerprobe.behavior.config import (
    CHARACTER_LABELS,
    MODES,
    TASK_DEFAULT,
    TASK_DEFAULT_TOKENS,
    BehaviorConfig,
    ObjectSettings,
    TaskDefaultTokens,
    config_record,
    object_settings,
)
from innerprobe.behavior.elicitation import (
    SKIPPED_TOO_LONG,
    ObjectBehavior,
    dropped_reasons,
    elicit_object,
    greedy_responses,
    object_distributions,
    per_budget,
)
from innerprobe.behavior.inference import (
    batches,
    check_fits,
    context_length,
    continuation_logprobs,
    generate,
    label_distribution,
    label_logprobs,
    left_pad,
    next_token_logprobs,
)
from innerprobe.behavior.labels import ItemLabels, property_labels
from innerprobe.behavior.prediction import Predictions, build_hypotheticals, predict, score
from innerprobe.behavior.result import BehaviorResult, BehaviorSummary, PredictorSummary
from innerprobe.behavior.run import behave

__all__ = [
    "CHARACTER_LABELS",
    "MODES",
    "SKIPPED_TOO_LONG",
    "TASK_DEFAULT",
    "TASK_DEFAULT_TOKENS",
    "BehaviorConfig",
    "BehaviorResult",
    "BehaviorSummary",
    "Comparison",
    "ComparisonSummary",
    "ItemLabels",
    "ObjectBehavior",
    "ObjectSettings",
    "PredictorSummary",
    "Predictions",
    "TaskDefaultTokens",
    "TextBaseline",
    "batches",
    "behave",
    "build_hypotheticals",
    "check_fits",
    "compare_self_cross",
    "comparisons_frame",
    "config_record",
    "context_length",
    "continuation_logprobs",
    "dropped_reasons",
    "elicit_object",
    "generate",
    "greedy_responses",
    "label_distribution",
    "label_logprobs",
    "left_pad",
    "next_token_logprobs",
    "object_distributions",
    "object_settings",
    "per_budget",
    "pooled_from_tables",
    "pooled_self_cross",
    "text_only_predictions",
    "predict",
    "property_labels",
    "score",
]
