"""Floor 5: activation patching of object and hypothetical prompts.

In data-flow order: minimal pairs (:mod:`.candidates` → :mod:`.filters` → :mod:`.search`, kept as
a :class:`.pairs.PairSet`); the model's decoder run one layer at a time (:mod:`.decoder`), whole
runs recorded (:mod:`.traces`) and patched runs batched (:mod:`.rows`); what is patched —
grids (:mod:`.grid`, with the TransformerLens-loop reference), attribution patching
(:mod:`.attribution`) and the O→H transplant (:mod:`.transplant`); figures (:mod:`.figures`);
and the whole study in one call (:mod:`.study`, settings in :mod:`.study_config`, result in
:mod:`.study_result`).
"""

from __future__ import annotations

from innerprobe.patching.attribution import AttributionResult, AttributionSummary, attribution_patch
from innerprobe.patching.candidates import (
    Candidate,
    replace_word,
    word_order,
    word_replacements,
    word_token_span,
)
from innerprobe.patching.cells import cell_names, grid_cells, p_end, transplant_positions
from innerprobe.patching.decoder import SUPPORTED, DecoderStack
from innerprobe.patching.figures import comparison_figure, heatmap
from innerprobe.patching.grid import (
    BestCell,
    PatchResult,
    PatchSummary,
    looped_patch_grid,
    patch_grid,
    resolve_positions,
)
from innerprobe.patching.pairs import (
    EXCLUSION_REASONS,
    GapRule,
    MinimalPair,
    PairSet,
    PairSetSummary,
)
from innerprobe.patching.rows import SUFFIX_STRATEGIES, PatchRow, plan_suffixes, run_rows
from innerprobe.patching.search import annotate_greedy, build_pairs, pair_tasks
from innerprobe.patching.sites import DIRECTIONS, SITES
from innerprobe.patching.study import run_patching_study
from innerprobe.patching.study_config import PatchStudyConfig, parse_layers
from innerprobe.patching.study_result import PatchStudyResult, PatchStudySummary
from innerprobe.patching.traces import Trace, baseline_metric, trace
from innerprobe.patching.transplant import (
    TransplantItem,
    TransplantResult,
    TransplantSummary,
    transplant,
)

__all__ = [
    "DIRECTIONS", "EXCLUSION_REASONS", "SITES", "SUFFIX_STRATEGIES", "SUPPORTED",
    "AttributionResult", "AttributionSummary", "BestCell", "Candidate", "DecoderStack", "GapRule",
    "MinimalPair", "PairSet", "PairSetSummary", "PatchResult", "PatchRow", "PatchStudyConfig",
    "PatchStudyResult", "PatchStudySummary", "PatchSummary", "Trace", "TransplantItem",
    "TransplantResult", "TransplantSummary",
    "annotate_greedy", "attribution_patch", "baseline_metric", "build_pairs", "cell_names",
    "comparison_figure", "grid_cells", "heatmap", "looped_patch_grid", "p_end", "pair_tasks",
    "parse_layers", "patch_grid", "plan_suffixes", "replace_word", "resolve_positions", "run_patching_study",
    "run_rows", "trace", "transplant", "transplant_positions", "word_order", "word_replacements",
    "word_token_span",
]
