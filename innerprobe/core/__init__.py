"""Floor 0, the ground: errors, cache paths, atomic pickle-free I/O with provenance, statistics.

Nothing here knows about models or prompts; every floor above may import it.
"""

from __future__ import annotations

from innerprobe.core.errors import (
    DataError,
    InnerprobeError,
    NotApplicableError,
    OutDirError,
    StoreMismatchError,
    UnknownNameError,
    check_at_least,
    check_choice,
)
from innerprobe.core.io import (
    STAGE_MARKER,
    atomic_dir,
    atomic_path,
    library_versions,
    prepare_out_dir,
    provenance,
    read_json,
    save_model_dir,
    write_json,
    write_parquet,
)
from innerprobe.core.paths import MODEL_PARTS, cache_dir, cache_root, model_cache_root
from innerprobe.core.stats import (
    Estimate,
    ModeBaseline,
    PairedDiff,
    Recovery,
    Selected,
    accuracy,
    bootstrap_ci,
    calibration_curve,
    calibration_from_distributions,
    calibration_mad,
    empirical_distribution,
    mcnemar_exact,
    mode_baseline,
    normalised_recovery,
    paired_bootstrap_diff,
    proportion,
    proportion_ci_wilson,
    select_and_estimate,
    split_halves,
)

__all__ = ['InnerprobeError', 'UnknownNameError', 'DataError', 'NotApplicableError', 'StoreMismatchError', 'OutDirError', 'check_at_least', 'check_choice', 'STAGE_MARKER', 'atomic_path', 'atomic_dir', 'prepare_out_dir', 'save_model_dir', 'write_json', 'read_json', 'write_parquet', 'library_versions', 'provenance', 'MODEL_PARTS', 'cache_root', 'model_cache_root', 'cache_dir', 'Estimate', 'ModeBaseline', 'PairedDiff', 'Recovery', 'Selected', 'bootstrap_ci', 'accuracy', 'proportion', 'mcnemar_exact', 'split_halves', 'select_and_estimate', 'mode_baseline', 'paired_bootstrap_diff', 'calibration_curve', 'calibration_mad', 'calibration_from_distributions', 'empirical_distribution', 'normalised_recovery', 'proportion_ci_wilson']
