"""Propensity models: train, evaluate, register and apply.

A propensity model predicts from a subscriber's features the probability
that a contact converts. :func:`train_propensity` fits a logistic regression
(and a LightGBM baseline for comparison) on a stratified split and reports
held-out AUC, KS, lift and calibration; :func:`save_model` and
:func:`load_model` keep versioned models with a card in the workspace's
``models`` folder; :func:`score` applies one.
"""

from telcoreach.models._frames import campaign_training_frame
from telcoreach.models._metrics import ModelMetrics, evaluate_propensity
from telcoreach.models._registry import (
    ModelCard,
    list_models,
    load_model,
    save_model,
)
from telcoreach.models._score import score
from telcoreach.models._train import (
    PropensityModel,
    TrainResult,
    train_propensity,
    training_data_sha256,
)

__all__ = [
    "ModelCard",
    "ModelMetrics",
    "PropensityModel",
    "TrainResult",
    "campaign_training_frame",
    "evaluate_propensity",
    "list_models",
    "load_model",
    "save_model",
    "score",
    "train_propensity",
    "training_data_sha256",
]
