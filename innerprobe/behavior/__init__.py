"""Floor 3: behaviour, measured black-box.

Generation and forced-choice scoring (:mod:`.inference`), object-level elicitation and self-
and cross-prediction (:mod:`.elicitation`), and the controls a self-prediction accuracy is read
against (:mod:`.baselines`).
"""

from __future__ import annotations

from innerprobe.behavior.baselines import (
    Comparison,
    TextBaseline,
    compare_self_cross,
    comparisons_frame,
    pooled_from_tables,
    pooled_self_cross,
)
from innerprobe.behavior.elicitation import (
    CHARACTER_LABELS,
    MODES,
    SKIPPED_TOO_LONG,
    TASK_DEFAULT_TOKENS,
    BehaviorConfig,
    BehaviorResult,
    ItemLabels,
    ObjectBehavior,
    Predictions,
    TaskDefaultTokens,
    behave,
    build_hypotheticals,
    dropped_reasons,
    elicit_object,
    greedy_responses,
    object_distributions,
    predict,
    property_labels,
    score,
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

__all__ = ['TextBaseline', 'Comparison', 'compare_self_cross', 'comparisons_frame', 'pooled_self_cross', 'pooled_from_tables', 'MODES', 'CHARACTER_LABELS', 'TaskDefaultTokens', 'TASK_DEFAULT_TOKENS', 'BehaviorConfig', 'ObjectBehavior', 'SKIPPED_TOO_LONG', 'Predictions', 'greedy_responses', 'elicit_object', 'dropped_reasons', 'ItemLabels', 'property_labels', 'build_hypotheticals', 'predict', 'score', 'object_distributions', 'BehaviorResult', 'behave', 'left_pad', 'batches', 'context_length', 'check_fits', 'generate', 'next_token_logprobs', 'continuation_logprobs', 'label_logprobs', 'label_distribution']
