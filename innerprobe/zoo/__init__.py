"""A zoo of models with planted self-report mechanisms (ground truth for the battery).

``build_zoo_model(ZooConfig(task_kind=..., route=...))`` trains a tiny Llama from scratch (or,
with ``base="smollm2-135m-instruct"``, LoRA on SmolLM2's top blocks) on the
library's own O(P) / H(P, property) prompts with a known route from the hypothetical to its
answer (simulation: recompute the answer and read the property off it; direct: read a
property feature of its own without the answer code), for a text-derivable or a memorised
answer; ``run_zoo_check`` verifies the route with an exact intervention, independently of the
battery. Floor: above ``training`` (the SmolLM2 scale reuses its LoRA targets) and below ``study``, so the
battery's study code can run over the zoo.
"""

from innerprobe.zoo.build import ZooModel, build_zoo_model, weights_sha256
from innerprobe.zoo.check import CheckConfig, ZooCheckResult, ZooCheckSummary, run_zoo_check
from innerprobe.zoo.config import ROUTES, TASK_KINDS, ZooConfig

__all__ = ["CheckConfig", "ROUTES", "TASK_KINDS", "ZooCheckResult", "ZooCheckSummary", "ZooConfig",
           "ZooModel", "build_zoo_model", "run_zoo_check", "weights_sha256"]
