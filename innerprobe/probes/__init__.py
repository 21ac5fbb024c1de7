"""Floor 5: linear probes on stored activations, with controls and O→H transfer.
"""

from __future__ import annotations

from innerprobe.probes.fit import (
    DEFAULT_PROBES,
    PROBES,
    ControlTask,
    Labels,
    LinearProbe,
    ProbeConfig,
    ProbeResult,
    best_layers,
    control_task,
    control_task_labels,
    default_control_types,
    encode_labels,
    fit_logistic,
    fit_mass_mean,
    fit_ridge,
    fold_weights,
    heldout_predictions,
    make_folds,
    plot_layer_curves,
    probe_store,
    random_projection,
    run_name,
    run_probes,
    shuffled_labels,
    sklearn_logistic_oof,
    sklearn_ridge_oof,
)

__all__ = ['PROBES', 'DEFAULT_PROBES', 'ProbeConfig', 'Labels', 'LinearProbe', 'ProbeResult', 'encode_labels', 'make_folds', 'fold_weights', 'fit_logistic', 'fit_mass_mean', 'fit_ridge', 'sklearn_logistic_oof', 'sklearn_ridge_oof', 'heldout_predictions', 'shuffled_labels', 'control_task_labels', 'ControlTask', 'control_task', 'default_control_types', 'random_projection', 'run_probes', 'probe_store', 'run_name', 'plot_layer_curves', 'best_layers']
