"""innerprobe: mechanistic interpretability of language-model self-reports.

Binder et al. (2024, "Looking Inward") asked models an object-level prompt P and, in a fresh
context, a hypothetical about their own answer. innerprobe runs that protocol on open-weight
models and opens the box: activation capture, linear probes, patching and finetuned self- and
cross-predictors, to tell *self-simulation* from *privileged internal features*.

Stages are plain functions over plain objects; import them from their modules::

    from innerprobe.models import load_model
    from innerprobe.tasks import load_items
    from innerprobe.properties import get_property
    from innerprobe.behavior import behave, BehaviorConfig
"""

__version__ = "0.1.0"
