"""Run one party from files: load, connect, train, write its model card."""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from telcoreach.errors import ConfigError, TelcoreachError
from telcoreach.federated._channel import accept, connect
from telcoreach.federated._data import ids_digest, load_party_table, prepare_party
from telcoreach.federated._protocol import (
    PROTOCOL,
    PartyResult,
    Progress,
    TrainingSettings,
    run_guest,
    run_host,
)

__all__ = ["train_party"]

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def train_party(
    role: str,
    data_path: str | Path,
    id_column: str,
    *,
    port: int,
    host: str = "127.0.0.1",
    label: str | None = None,
    features: list[str] | None = None,
    settings: TrainingSettings | None = None,
    out_dir: str | Path | None = None,
    name: str = "federated-lr",
    timeout_s: float = 120.0,
    progress: Progress | None = None,
) -> dict:
    """Train as one party of vertical federated logistic regression.

    The host listens on ``host:port`` and the guest connects to it; each runs
    in its own process and sees only its own file.

    Parameters
    ----------
    role : {"guest", "host"}
        ``guest``: the label holder (proposes the settings, computes the AUC);
        ``host``: the other party (holds the Paillier key).
    data_path : str or Path
        The party's CSV or Parquet file.
    id_column : str
        Shared id column (the PSI token).
    port : int
        TCP port the host listens on and the guest connects to.
    host : str, default "127.0.0.1"
        Address to listen on or connect to.
    label : str, optional
        Label column; required for the guest, refused for the host.
    features : list of str, optional
        Feature columns; default every other column.
    settings : TrainingSettings, optional
        The guest's hyperparameters (the host adopts the guest's).
    out_dir : str or Path, optional
        Folder of the party's model cards; nothing is written when ``None``.
    name : str, default "federated-lr"
        Model name; the card goes to ``<out_dir>/<name>/v<N>/<role>.json``.
    timeout_s : float, default 120
        How long to wait for the peer (to connect, or between messages).
    progress : callable, optional
        Progress callback ``(description, done, total)``.

    Returns
    -------
    dict
        The run summary: role, rows, AUC, seconds, bytes and messages each
        way, card path.

    Raises
    ------
    ConfigError
        If the role, label or name is wrong.
    ModelError
        If the peer is missing, holds other ids, or breaks the protocol.
    """
    if role not in ("guest", "host"):
        raise ConfigError(f"role must be 'guest' or 'host'; found {role!r}")
    if role == "guest" and not label:
        raise ConfigError("the guest holds the label: pass --label with its column")
    if role == "host" and label:
        raise ConfigError(
            "the host holds no label; drop --label (the label stays with the guest)"
        )
    if out_dir is not None and not _NAME.match(name):
        raise ConfigError(
            f"model name {name!r} must be letters, digits, '_', '.' or '-' (<= 64)"
        )
    settings = settings or TrainingSettings()
    data = prepare_party(
        load_party_table(data_path),
        id_column,
        label=label,
        features=features,
        seed=settings.seed,
        test_size=settings.test_size,
    )

    if role == "host":
        channel, port = accept(host, port, timeout_s)
    else:
        channel = connect(host, port, timeout_s)
    try:
        if role == "host":
            result = run_host(channel, data, progress)
        else:
            result = run_guest(channel, data, settings, progress)
    except TelcoreachError as error:
        channel.send_error(str(error))
        raise
    finally:
        channel.close()

    summary = _summary(result, data.feature_names)
    if out_dir is not None:
        card = _card(result, data, id_column, label, name)
        summary["card"] = str(_write_card(Path(out_dir), name, role, card))
    logger.info(
        "%s finished: AUC %.4f in %.1f s, %d bytes sent, %d received",
        role,
        result.test_auc,
        result.seconds,
        result.channel["bytes_sent"],
        result.channel["bytes_received"],
    )
    return summary


def _summary(result: PartyResult, feature_names: list[str]) -> dict:
    return {
        "role": result.role,
        "protocol": PROTOCOL,
        "rows_train": result.rows_train,
        "rows_test": result.rows_test,
        "own_features": len(feature_names),
        "peer_features": result.peer_features,
        "epochs": result.epochs,
        "test_auc": round(result.test_auc, 6),
        "seconds": round(result.seconds, 2),
        **result.channel,
        "rounds": result.epochs,
    }


def _card(result: PartyResult, data, id_column: str, label, name: str) -> dict:
    return {
        "name": name,
        "role": result.role,
        "protocol": PROTOCOL,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "id_column": id_column,
        "label": label,
        "source_columns": data.source_columns,
        "features": data.feature_names,
        "coefficients": dict(
            zip(data.feature_names, map(float, result.coefficients), strict=True)
        ),
        "intercept": result.intercept,
        "standardisation": {
            "means": [float(v) for v in data.means],
            "scales": [float(v) for v in data.scales],
        },
        "peer_features": result.peer_features,
        "ids_sha256": ids_digest(data.ids),
        "rows_train": result.rows_train,
        "rows_test": result.rows_test,
        "settings": asdict(result.settings),
        "metrics": {"test_auc": result.test_auc},
        "seconds": result.seconds,
        "channel": result.channel,
        "note": "coefficients of this party's own standardised columns only; the "
        "peer keeps its own, and scoring needs both parties",
    }


def _write_card(out_dir: Path, name: str, role: str, card: dict) -> Path:
    root = out_dir / name
    root.mkdir(parents=True, exist_ok=True)
    versions = [
        int(p.name[1:])
        for p in root.iterdir()
        if p.is_dir() and re.fullmatch(r"v[1-9][0-9]*", p.name)
    ]
    version = max(versions, default=0) + 1
    while True:
        folder = root / f"v{version}"
        try:
            folder.mkdir()
            break
        except FileExistsError:
            version += 1
    card["version"] = version
    path = folder / f"{role}.json"
    staged = folder / f".{role}.json.tmp"
    staged.write_text(json.dumps(card, indent=2), encoding="utf-8")
    os.replace(staged, path)
    return path
