"""Floor 5: linear probes on stored activations, with controls and O→H transfer.

One concept a module, in the order a probe run uses them::

    config      ProbeConfig: the knobs, validated once
    labels      labels → class ids; activations checked against them
    folds       grouped, stratified, seeded CV folds and their training indicators
    linear      LinearProbe (x W + b per layer and fold), held-out predictions
    ridge | mass_mean | logistic    the three probe families, batched over layers and folds
    reference   the scikit-learn loops the batched fitters are tested against
    controls    shuffled labels, Hewitt–Liang control task, random projection, majority
    table       run / split names and the tidy per-layer table
    selection   the best layer, selected on one half of the items and estimated on the other
    figures     layer curves
    result      ProbeResult (table, summary, figure, save/load) and ProbeSummary
    run         run_probes: every run × layer × probe × control, and O ↔ H transfer
    store       probe_store: the same, read from an activation store
    peer_config | peer_result | peer    self-vs-peer probes (E3b): the self model's behaviour
                read from its own activations vs a peer's, on all and on disagreement items
    synthetic   residual-stream-like activations for tests and benchmarks

    from innerprobe.probes import ProbeConfig, probe_store
    result = probe_store(store, "object_answer", config=ProbeConfig(folds=5))
    result.summary.best[0].accuracy          # an Estimate, selected and estimated honestly
    result.save("runs/probe"); ProbeResult.load("runs/probe")
"""

from __future__ import annotations

from innerprobe.probes.config import DEFAULT_PROBES, PROBES, ProbeConfig
from innerprobe.probes.controls import (
    ControlTask,
    control_task,
    control_task_labels,
    default_control_types,
    majority_oof,
    random_projection,
    shuffled_labels,
)
from innerprobe.probes.figures import layer_curves
from innerprobe.probes.folds import fold_weights, make_folds
from innerprobe.probes.labels import Labels, check_activations, encode_labels
from innerprobe.probes.linear import LinearProbe, heldout_predictions
from innerprobe.probes.logistic import fit_logistic
from innerprobe.probes.mass_mean import fit_mass_mean
from innerprobe.probes.peer import run_peer_probes
from innerprobe.probes.peer_config import PeerProbeConfig
from innerprobe.probes.peer_result import PeerProbeResult, PeerProbeSummary
from innerprobe.probes.reference import sklearn_logistic_oof, sklearn_ridge_oof
from innerprobe.probes.result import BestLayer, ProbeResult, ProbeSummary
from innerprobe.probes.ridge import fit_ridge
from innerprobe.probes.run import run_probes
from innerprobe.probes.selection import best_layers, summarise
from innerprobe.probes.store import probe_store
from innerprobe.probes.synthetic import synthetic_activations
from innerprobe.probes.table import correct_key, run_name, split_name

__all__ = [
    "PROBES",
    "DEFAULT_PROBES",
    "ProbeConfig",
    "Labels",
    "LinearProbe",
    "ProbeResult",
    "ProbeSummary",
    "BestLayer",
    "encode_labels",
    "check_activations",
    "make_folds",
    "fold_weights",
    "fit_logistic",
    "fit_mass_mean",
    "fit_ridge",
    "sklearn_logistic_oof",
    "sklearn_ridge_oof",
    "heldout_predictions",
    "shuffled_labels",
    "control_task_labels",
    "ControlTask",
    "control_task",
    "default_control_types",
    "majority_oof",
    "random_projection",
    "run_probes",
    "run_peer_probes",
    "PeerProbeConfig",
    "PeerProbeResult",
    "PeerProbeSummary",
    "probe_store",
    "run_name",
    "split_name",
    "correct_key",
    "layer_curves",
    "best_layers",
    "summarise",
    "synthetic_activations",
]
