"""Floor 5: activation patching of object and hypothetical prompts.

Minimal pairs (:mod:`.pairs`), the fast patching stack with its TransformerLens-loop reference
(:mod:`.stack`), and the whole study in one call (:mod:`.study`).
"""

from __future__ import annotations

from innerprobe.patching.pairs import (
    EXCLUSION_REASONS,
    Candidate,
    MinimalPair,
    PairSet,
    annotate_greedy,
    build_pairs,
    cell_names,
    grid_cells,
    p_end,
    replace_word,
    transplant_positions,
    word_order,
    word_replacements,
    word_token_span,
)
from innerprobe.patching.stack import (
    DIRECTIONS,
    SITES,
    SUFFIX_STRATEGIES,
    AttributionResult,
    LlamaStack,
    PatchResult,
    PatchRow,
    Trace,
    TransplantItem,
    TransplantResult,
    attribution_patch,
    baseline_metric,
    comparison_figure,
    heatmap,
    looped_patch_grid,
    patch_grid,
    plan_suffixes,
    resolve_positions,
    run_rows,
    trace,
    transplant,
)
from innerprobe.patching.study import check_patch_options, parse_layers, run_patch

__all__ = ['EXCLUSION_REASONS', 'MinimalPair', 'PairSet', 'replace_word', 'word_token_span', 'Candidate', 'word_replacements', 'word_order', 'annotate_greedy', 'build_pairs', 'p_end', 'cell_names', 'grid_cells', 'transplant_positions', 'SITES', 'DIRECTIONS', 'SUFFIX_STRATEGIES', 'LlamaStack', 'Trace', 'trace', 'PatchRow', 'plan_suffixes', 'run_rows', 'baseline_metric', 'resolve_positions', 'PatchResult', 'patch_grid', 'looped_patch_grid', 'AttributionResult', 'attribution_patch', 'TransplantResult', 'TransplantItem', 'transplant', 'heatmap', 'comparison_figure', 'parse_layers', 'check_patch_options', 'run_patch']
