"""Token Distillation training: configuration, teacher cache, batching, the loop and new output rows.

    config       DistillationConfig (fields carry help and bounds: config_fields()), OutputPolicy, StepRecord,
                 the stop; imports no torch, so the command line reads it before any heavy import
    teacher      TeacherCache: teacher hidden states and prefix key/values, computed once
    batching     the batch plan and student batch assembly
    trainer      DistillationTrainer: Adam (or L-BFGS) on the new input rows only
    lbfgs        RowLBFGS: L-BFGS for many independent rows at once
    trajectory   RowRecorder: the rows at evenly spaced steps while they train (opt-in, for the Replay view)
    output_rows  the new LM-head rows of untied models
"""

from __future__ import annotations

from ..foundations.lazy import lazy_exports

# Loaded on first use: `config` imports no torch, so the command line reads the fields' metadata without it.
_EXPORTS = {
    "LOSSES": "config", "DISTILL_LOSSES": "config", "NEXT_TOKEN_LOSSES": "config", "LOGIT_LOSSES": "config",
    "INITS": "config", "SCHEDULES": "config", "OPTIMIZERS": "config", "ADAPT_DEFAULTS": "config", "lr_factor": "config", "PRECISIONS": "config", "DistillationCancelled": "config", "DistillationConfig": "config",
    "FieldSpec": "config", "StepRecord": "config", "config_fields": "config",
    "steps_per_epoch": "config",
    "SPLIT_MIN_SAVED_TOKENS": "batching", "STUDENT_PASS_TOKENS": "batching",
    "OUTPUT_POLICIES": "config", "OutputPolicy": "config", "fit_output_rows": "output_rows",
    "new_output_rows": "output_rows", "subword_mean_output_rows": "output_rows",
    "TEACHER_BATCH_TOKENS": "teacher", "TeacherCache": "teacher",
    "RowLBFGS": "lbfgs", "DistillationTrainer": "trainer", "TrainResult": "trainer", "masked_mse": "trainer",
    "DEFAULT_TRAJECTORY_POINTS": "trajectory", "RowRecorder": "trajectory", "recorded_steps": "trajectory",
    "check_trajectory_points": "trajectory",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, globals(), _EXPORTS)
