"""A folder registry of propensity models: ``<models_dir>/<name>/v<N>/``.

Each version holds ``model.joblib`` (the fitted logistic-regression pipeline)
and ``card.json`` (what it was trained on and how well it did). Versions are
never overwritten; saving again adds the next version. A version folder
without its card is an interrupted save and is ignored.
"""

from __future__ import annotations

import json
import os
import platform
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import joblib

from telcoreach.errors import ModelError
from telcoreach.models._train import PropensityModel, TrainResult

__all__ = ["ModelCard", "list_models", "load_model", "save_model"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_VERSION_DIR = re.compile(r"^v([1-9][0-9]*)$")
_MODEL_FILE = "model.joblib"
_CARD_FILE = "card.json"
_LIBRARIES = ("telcoreach", "scikit-learn", "lightgbm", "numpy", "pandas", "joblib")


@dataclass(frozen=True)
class ModelCard:
    """What a saved model version is: its data, features, metrics and libraries.

    Attributes
    ----------
    name : str
        Registry name of the model.
    version : int
        Version number, 1 for the first save of ``name``.
    created_at : str
        UTC time of the save, ISO 8601.
    label : str
        Column the model predicts.
    features, numeric_features, categorical_features : list of str
        Columns the model reads, all and by encoding.
    training_data_sha256 : str
        Row-order independent SHA-256 of the training frame's label and
        feature columns.
    rows_train, rows_test : int
        Rows used to fit and to evaluate.
    base_rate : float
        Conversion rate of the held-out rows.
    seed : int
        Seed of the split and the baseline.
    metrics : dict of str to dict
        Held-out metrics of ``logistic_regression`` and of the baseline.
    library_versions : dict of str to str
        Python and library versions the model was fitted with.
    """

    name: str
    version: int
    created_at: str
    label: str
    features: list[str]
    numeric_features: list[str]
    categorical_features: list[str]
    training_data_sha256: str
    rows_train: int
    rows_test: int
    base_rate: float
    seed: int
    metrics: dict[str, dict]
    library_versions: dict[str, str]

    def to_dict(self) -> dict:
        """Return the card as a JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ModelCard:
        """Return the card stored by :meth:`to_dict`."""
        return cls(**values)


def save_model(models_dir: str | Path, name: str, result: TrainResult) -> ModelCard:
    """Save a trained model as the next version of ``name`` and return its card.

    Parameters
    ----------
    models_dir : str or Path
        Registry folder, usually the workspace's ``models`` folder; created if
        missing.
    name : str
        Model name: letters, digits, ``_``, ``.`` and ``-``, at most 64.
    result : TrainResult
        Output of :func:`train_propensity`; its logistic regression is saved.

    Returns
    -------
    ModelCard
        The card written to ``card.json``; it is also attached to
        ``result.model.card``.

    Raises
    ------
    ModelError
        If ``name`` is not a valid model name or ``result`` is not a
        training result.
    """
    _check_name(name)
    if not isinstance(result, TrainResult):
        raise ModelError(
            "expected the TrainResult returned by train_propensity; found "
            f"{type(result).__name__}"
        )
    model_root = Path(models_dir) / name
    model_root.mkdir(parents=True, exist_ok=True)
    version, folder = _claim_next_version(model_root)

    card = ModelCard(
        name=name,
        version=version,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        label=result.label,
        features=list(result.features),
        numeric_features=list(result.numeric_features),
        categorical_features=list(result.categorical_features),
        training_data_sha256=result.training_data_sha256,
        rows_train=result.rows_train,
        rows_test=result.rows_test,
        base_rate=result.base_rate,
        seed=result.seed,
        metrics=result.metrics_dict(),
        library_versions=_library_versions(),
    )
    joblib.dump(result.model.pipeline, folder / _MODEL_FILE)
    staged = folder / f".{_CARD_FILE}.tmp"
    staged.write_text(json.dumps(card.to_dict(), indent=2), encoding="utf-8")
    os.replace(staged, folder / _CARD_FILE)
    result.model.card = card
    return card


def load_model(
    models_dir: str | Path, name: str, version: int | None = None
) -> PropensityModel:
    """Return a saved model, the latest version unless ``version`` is given.

    Raises
    ------
    ModelError
        If the model or the version does not exist (the message lists what
        does), or its files cannot be read.

    Notes
    -----
    ``model.joblib`` is a pickle: load models only from a registry you wrote.
    """
    _check_name(name)
    versions = _complete_versions(Path(models_dir) / name)
    if not versions:
        raise ModelError(
            f"no model named {name!r} in {models_dir}; "
            f"{_describe_registry(Path(models_dir))}"
        )
    chosen = max(versions) if version is None else version
    if chosen not in versions:
        raise ModelError(
            f"model {name!r} has no version {version!r}; saved versions are "
            f"{', '.join(map(str, sorted(versions)))}"
        )

    folder = versions[chosen]
    card = _read_card(folder)
    try:
        pipeline = joblib.load(folder / _MODEL_FILE)
    except (OSError, EOFError, ValueError, ImportError, AttributeError) as exc:
        raise ModelError(
            f"cannot read {folder / _MODEL_FILE}: {exc}; save the model again"
        ) from exc
    return PropensityModel(
        pipeline=pipeline,
        label=card.label,
        numeric_features=list(card.numeric_features),
        categorical_features=list(card.categorical_features),
        card=card,
    )


def list_models(models_dir: str | Path) -> list[ModelCard]:
    """Return the cards of every saved model version, by name then version."""
    root = Path(models_dir)
    if not root.is_dir():
        return []
    cards = []
    for model_root in sorted(p for p in root.iterdir() if p.is_dir()):
        if not _NAME.match(model_root.name):
            continue
        versions = _complete_versions(model_root)
        cards.extend(_read_card(versions[v]) for v in sorted(versions))
    return cards


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ModelError(
            f"model name must be 1-64 letters, digits, '_', '.' or '-' starting "
            f"with a letter or digit; found {name!r}"
        )


def _version_folders(model_root: Path) -> dict[int, Path]:
    if not model_root.is_dir():
        return {}
    folders = {}
    for path in model_root.iterdir():
        match = _VERSION_DIR.match(path.name)
        if match and path.is_dir():
            folders[int(match.group(1))] = path
    return folders


def _complete_versions(model_root: Path) -> dict[int, Path]:
    return {
        number: path
        for number, path in _version_folders(model_root).items()
        if (path / _CARD_FILE).is_file()
    }


def _claim_next_version(model_root: Path) -> tuple[int, Path]:
    """Create the next version folder; mkdir is atomic, so two saves never clash."""
    version = max(_version_folders(model_root), default=0) + 1
    while True:
        folder = model_root / f"v{version}"
        try:
            folder.mkdir()
        except FileExistsError:
            version += 1
            continue
        return version, folder


def _read_card(folder: Path) -> ModelCard:
    path = folder / _CARD_FILE
    try:
        return ModelCard.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        raise ModelError(
            f"cannot read the model card {path}: {exc}; expected the JSON "
            "written by save_model. Save the model again."
        ) from exc


def _describe_registry(root: Path) -> str:
    names = {}
    if root.is_dir():
        for model_root in sorted(p for p in root.iterdir() if p.is_dir()):
            versions = _complete_versions(model_root)
            if versions:
                names[model_root.name] = sorted(versions)
    if not names:
        return "the registry is empty: train a model and save it with save_model"
    listed = "; ".join(
        f"{name} (versions {', '.join(map(str, versions))})"
        for name, versions in names.items()
    )
    return f"saved models: {listed}"


def _library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for library in _LIBRARIES:
        try:
            versions[library] = metadata.version(library)
        except metadata.PackageNotFoundError:
            versions[library] = "not installed"
    return versions
