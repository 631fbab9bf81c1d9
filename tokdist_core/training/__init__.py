"""Token Distillation training: configuration, teacher cache, batching, the loop and new output rows.

    config       DistillationConfig (fields carry help and bounds: config_fields()), StepRecord, the stop
    teacher      TeacherCache: teacher hidden states and prefix key/values, computed once
    batching     the batch plan and student batch assembly
    trainer      DistillationTrainer: Adam on the new input rows only
    output_rows  OutputPolicy and the new LM-head rows of untied models
"""

from .batching import SPLIT_MIN_SAVED_TOKENS
from .config import LOSSES, DistillationCancelled, DistillationConfig, FieldSpec, StepRecord, config_fields
from .output_rows import (
    OUTPUT_POLICIES,
    OutputPolicy,
    fit_output_rows,
    new_output_rows,
    subword_mean_output_rows,
)
from .teacher import TEACHER_BATCH_TOKENS, TeacherCache
from .trainer import DistillationTrainer, TrainResult, masked_mse

__all__ = [
    "LOSSES", "OUTPUT_POLICIES", "SPLIT_MIN_SAVED_TOKENS", "TEACHER_BATCH_TOKENS",
    "DistillationCancelled", "DistillationConfig", "DistillationTrainer", "FieldSpec", "OutputPolicy",
    "StepRecord", "TeacherCache", "TrainResult",
    "config_fields", "fit_output_rows", "masked_mse", "new_output_rows", "subword_mean_output_rows",
]
