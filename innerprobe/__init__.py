"""innerprobe: mechanistic interpretability of language-model self-reports.

Binder et al. (2024, "Looking Inward") asked models an object-level prompt P and, in a fresh
context, a hypothetical about their own answer. innerprobe runs that protocol on open-weight
models and opens the box: activation capture, linear probes, patching and finetuned self- and
cross-predictors, to tell *self-simulation* from *privileged internal features*.

The library is a house of floors, each importing only from the floors below it (checked by
import-linter in CI)::

    cli                       the `innerprobe` command line
    study                     whole studies (battery, sweeps, report)
    training                  LoRA self-/cross-predictors, behaviour shift
    probes | patching | interventions
    activations               capture and the on-disk store
    behavior                  elicitation, self/cross prediction, baselines
    models                    load_model, fingerprints, adapters, the version shim
    protocol                  tasks, properties, prompts
    core                      errors, paths, I/O with provenance, statistics

The front doors of each stage are importable from here::

    from innerprobe import load_model, load_items, get_property, behave, BehaviorConfig
    m = load_model()                                  # embedded SmolLM2-135M-Instruct
    items = load_items("animals", n=100)
    result = behave(m, items, get_property("second_character"), BehaviorConfig(mode="forced"))
"""

from innerprobe.activations.capture import capture
from innerprobe.activations.config import CaptureConfig
from innerprobe.activations.store import ActivationStore
from innerprobe.behavior.baselines import compare_self_cross
from innerprobe.behavior.config import BehaviorConfig
from innerprobe.behavior.result import BehaviorResult
from innerprobe.behavior.run import behave
from innerprobe.core.stats import Estimate, PairedDiff
from innerprobe.models.fingerprint import ModelFingerprint
from innerprobe.models.load import load_model
from innerprobe.models.loaded import LoadedModel
from innerprobe.patching.attribution import attribution_patch
from innerprobe.patching.grid import patch_grid
from innerprobe.patching.search import build_pairs
from innerprobe.patching.study import run_patching_study
from innerprobe.patching.study_config import PatchStudyConfig
from innerprobe.patching.transplant import transplant
from innerprobe.probes.config import ProbeConfig
from innerprobe.probes.run import run_probes
from innerprobe.probes.store import probe_store
from innerprobe.protocol.prompts import PromptSpec
from innerprobe.protocol.properties import get_property
from innerprobe.protocol.tasks import load_items
from innerprobe.training.config import FinetuneConfig
from innerprobe.training.finetune import finetune
from innerprobe.training.shift import behaviour_shift

__version__ = "0.1.0"

__all__ = [
    "ActivationStore",
    "BehaviorConfig",
    "BehaviorResult",
    "CaptureConfig",
    "Estimate",
    "FinetuneConfig",
    "LoadedModel",
    "ModelFingerprint",
    "PairedDiff",
    "PatchStudyConfig",
    "ProbeConfig",
    "PromptSpec",
    "attribution_patch",
    "behave",
    "behaviour_shift",
    "build_pairs",
    "capture",
    "compare_self_cross",
    "finetune",
    "get_property",
    "load_items",
    "load_model",
    "patch_grid",
    "probe_store",
    "run_patching_study",
    "run_probes",
    "transplant",
]
