"""Floor 6: finetuning self- and cross-predictors, the behaviour-shift test, and self-training rounds.

Self-training rounds (:mod:`.rounds`): :class:`SelfTrainConfig` (:mod:`.rounds_config`), the
data policies (:mod:`.policies`), early-stopped LoRA (:mod:`.early_stop`), per-round
measurements (:mod:`.rounds_measure`, ground truth in :mod:`.ground_truth`) and
:class:`SelfTrainResult` (:mod:`.rounds_result`).
"""

from __future__ import annotations

from innerprobe.training.data import (
    CHARACTER_PROPERTIES,
    COLUMNS,
    HELDOUT_TASKS,
    TRAIN_TASKS,
    assistant_text,
    balance_classes,
    build_training_data,
    combo_rows,
    data_hash,
    load_training_data,
    property_values,
    save_training_data,
)
from innerprobe.training.early_stop import finetune_early_stop, heldout_loss
from innerprobe.training.finetune import (
    IGNORE,
    LORA_TARGETS,
    Encoded,
    FinetuneConfig,
    FinetuneResult,
    answer_loss,
    base_spec,
    batch_schedule,
    collate,
    encode_dataset,
    encode_row,
    epoch_order,
    hf_weights_dir,
    latest_checkpoint,
    load_checkpoint,
    lora_model,
    loss_figure,
    lr_at,
    merged_copy,
    save_adapter,
    save_checkpoint,
    steps_for,
    trainable_state,
)
from innerprobe.training.ground_truth import GROUND_TRUTH_TASKS, ground_truth_accuracy
from innerprobe.training.policies import policy_data
from innerprobe.training.rounds import load_result, run_self_training
from innerprobe.training.rounds_config import POLICIES, SelfTrainConfig
from innerprobe.training.rounds_measure import measure_model
from innerprobe.training.rounds_result import SelfTrainResult, SelfTrainSummary
from innerprobe.training.shift import ShiftResult, behaviour_shift, object_answer_data

__all__ = ['TRAIN_TASKS', 'HELDOUT_TASKS', 'CHARACTER_PROPERTIES', 'COLUMNS', 'assistant_text', 'balance_classes', 'property_values', 'combo_rows', 'build_training_data', 'data_hash', 'save_training_data', 'load_training_data', 'LORA_TARGETS', 'IGNORE', 'FinetuneConfig', 'Encoded', 'FinetuneResult', 'encode_row', 'encode_dataset', 'collate', 'answer_loss', 'epoch_order', 'batch_schedule', 'lr_at', 'hf_weights_dir', 'lora_model', 'trainable_state', 'base_spec', 'save_checkpoint', 'latest_checkpoint', 'load_checkpoint', 'save_adapter', 'loss_figure', 'merged_copy', 'steps_for', 'ShiftResult', 'behaviour_shift', 'object_answer_data', 'finetune_early_stop', 'heldout_loss', 'GROUND_TRUTH_TASKS', 'ground_truth_accuracy', 'policy_data', 'load_result', 'run_self_training', 'POLICIES', 'SelfTrainConfig', 'measure_model', 'SelfTrainResult', 'SelfTrainSummary']
