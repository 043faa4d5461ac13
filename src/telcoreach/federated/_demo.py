"""Split UCI bank marketing between a carrier and a bank, train, compare.

The demo writes two files from ``bank-additional-full.csv.gz`` (Moro, Cortez
and Rita, 2014; CC BY 4.0), the ids ``bank-<row>`` shared by both:

- ``carrier.csv`` (the host): how and when the person was reached, the kind of
  behaviour a carrier observes: ``contact`` (cellular or landline),
  ``month``, ``day_of_week``, ``campaign`` (contacts in this campaign),
  ``pdays`` (days since the previous campaign's contact, 999: never),
  ``previous`` (earlier contacts) and ``poutcome`` (earlier outcome). Its rows
  are shuffled: alignment is by id only.
- ``enterprise.csv`` (the guest): the label ``y`` (bought the term deposit)
  and the bank's own columns ``age``, ``job``, ``marital``, ``education``,
  ``default``, ``housing``, ``loan`` and the five economic indicators.

``duration`` (the call's length) is in neither file: it is known only after
the call, when the outcome is known too. It then starts both parties as
separate processes, and fits scikit-learn's logistic regression on the joined
data, same split, same penalty, as the centralised reference.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from telcoreach.errors import DataSourceError, ModelError
from telcoreach.federated._data import held_out_mask
from telcoreach.federated._protocol import TrainingSettings

__all__ = [
    "CARRIER_COLUMNS",
    "ENTERPRISE_COLUMNS",
    "centralised_auc",
    "run_demo",
    "split_bank_marketing",
]

logger = logging.getLogger(__name__)

BANK_FILE = Path("4-bank-marketing") / "bank-additional-full.csv.gz"
ID_COLUMN = "token"
LABEL = "y"
#: Columns the carrier (host) holds.
CARRIER_COLUMNS = [
    "contact",
    "month",
    "day_of_week",
    "campaign",
    "pdays",
    "previous",
    "poutcome",
]
#: Columns the enterprise (guest) holds besides the label.
ENTERPRISE_COLUMNS = [
    "age",
    "job",
    "marital",
    "education",
    "default",
    "housing",
    "loan",
    "emp.var.rate",
    "cons.price.idx",
    "cons.conf.idx",
    "euribor3m",
    "nr.employed",
]


def split_bank_marketing(data_dir: str | Path, out_dir: str | Path) -> dict:
    """Write the carrier's and the enterprise's files; return their paths.

    Raises
    ------
    DataSourceError
        If the bank-marketing file is missing or lacks a column.
    """
    path = Path(data_dir) / BANK_FILE
    if not path.is_file():
        raise DataSourceError(
            f"bank-marketing file not found at {path}; pass --data-dir with the "
            "public data folder holding 4-bank-marketing"
        )
    calls = pd.read_csv(path, sep=";")
    needed = {*CARRIER_COLUMNS, *ENTERPRISE_COLUMNS, LABEL}
    missing = sorted(needed - set(calls.columns))
    if missing:
        raise DataSourceError(f"{path.name} lacks the columns {', '.join(missing)}")
    calls[ID_COLUMN] = "bank-" + pd.Series(np.arange(1, len(calls) + 1)).astype(str)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    carrier = calls[[ID_COLUMN, *CARRIER_COLUMNS]].sample(frac=1.0, random_state=7)
    enterprise = calls[[ID_COLUMN, LABEL, *ENTERPRISE_COLUMNS]]
    paths = {
        "carrier": out_dir / "carrier.csv",
        "enterprise": out_dir / "enterprise.csv",
    }
    carrier.to_csv(paths["carrier"], index=False)
    enterprise.to_csv(paths["enterprise"], index=False)
    logger.info("split %d bank-marketing calls into %s", len(calls), out_dir)
    return {"rows": len(calls), **{k: str(v) for k, v in paths.items()}}


def centralised_auc(
    guest_file: str | Path,
    host_file: str | Path,
    settings: TrainingSettings,
    id_column: str = ID_COLUMN,
    label: str = LABEL,
) -> dict:
    """Return the held-out AUC of scikit-learn's LR on the joined files.

    The reference joins both parties' files on the id (what federated learning
    avoids), one-hot encodes and standardises with scikit-learn, and fits
    ``LogisticRegression(C=1 / (l2 * training rows))`` on the same split.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    guest = pd.read_csv(guest_file)
    host = pd.read_csv(host_file)
    joined = guest.merge(host, on=id_column, how="inner", validate="one_to_one")
    joined[id_column] = joined[id_column].astype(str)
    held_out = held_out_mask(
        joined[id_column].to_numpy(dtype=object), settings.seed, settings.test_size
    )
    target = joined[label].astype(str).str.lower().isin(["yes", "true", "1"])
    columns = [c for c in joined.columns if c not in (id_column, label)]
    categorical = [c for c in columns if joined[c].dtype == object]
    numeric = [c for c in columns if c not in categorical]
    encode = ColumnTransformer(
        [
            ("categorical", OneHotEncoder(handle_unknown="ignore"), categorical),
            ("numeric", "passthrough", numeric),
        ],
        sparse_threshold=0.0,
    )
    rows_train = int((~held_out).sum())
    model = make_pipeline(
        encode,
        StandardScaler(),
        LogisticRegression(C=1.0 / (settings.l2 * rows_train), max_iter=5000),
    )
    started = time.perf_counter()
    model.fit(joined.loc[~held_out, columns], target[~held_out])
    seconds = time.perf_counter() - started
    scores = model.decision_function(joined.loc[held_out, columns])
    return {
        "test_auc": float(roc_auc_score(target[held_out], scores)),
        "rows_train": rows_train,
        "rows_test": int(held_out.sum()),
        "seconds": round(seconds, 2),
    }


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def party_command(role: str, data: Path, port: int, out: Path, **options) -> list:
    """Return the command line that runs one party in a new Python process."""
    command = [
        sys.executable,
        "-c",
        "from telcoreach.cli import main; main()",
        "fl",
        "train",
        "--role",
        role,
        "--port",
        str(port),
        "--data",
        str(data),
        "--out",
        str(out),
        "--json",
    ]
    for key, value in options.items():
        if value is not None:
            command += [f"--{key.replace('_', '-')}", str(value)]
    return command


def run_parties(
    guest_file: Path,
    host_file: Path,
    out_dir: Path,
    settings: TrainingSettings,
    *,
    id_column: str = ID_COLUMN,
    label: str = LABEL,
    timeout_s: float = 600.0,
) -> dict:
    """Start the host and the guest as processes; return both summaries."""
    port = free_port()
    common = {
        "id_column": id_column,
        "timeout": 120,
        "seed": settings.seed,
        "test_size": settings.test_size,
    }
    tuning = {
        k: v for k, v in asdict(settings).items() if k not in ("seed", "test_size")
    }
    host = subprocess.Popen(
        party_command("host", host_file, port, out_dir / "carrier-models", **common),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    guest = subprocess.Popen(
        party_command(
            "guest",
            guest_file,
            port,
            out_dir / "enterprise-models",
            label=label,
            **common,
            **tuning,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    outputs = {}
    for role, process in (("guest", guest), ("host", host)):
        try:
            stdout, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            guest.kill()
            host.kill()
            raise ModelError(
                f"the federated {role} did not finish within {timeout_s:g} s"
            ) from exc
        if process.returncode != 0:
            other = host if role == "guest" else guest
            if other.poll() is None:
                other.kill()
            raise ModelError(
                f"the federated {role} failed: {stderr.strip().splitlines()[-1:]}"
            )
        outputs[role] = json.loads(stdout)
    return outputs


def run_demo(
    data_dir: str | Path,
    out_dir: str | Path,
    settings: TrainingSettings | None = None,
) -> dict:
    """Split bank marketing, train both parties as processes, compare with LR.

    Returns
    -------
    dict
        Federated and centralised AUCs and their difference, wall time,
        bytes each way, messages, rounds and the two card paths.
    """
    settings = settings or TrainingSettings()
    out_dir = Path(out_dir)
    files = split_bank_marketing(data_dir, out_dir / "parties")
    started = time.perf_counter()
    parties = run_parties(
        Path(files["enterprise"]), Path(files["carrier"]), out_dir, settings
    )
    seconds = time.perf_counter() - started
    reference = centralised_auc(files["enterprise"], files["carrier"], settings)
    guest, host = parties["guest"], parties["host"]
    return {
        "rows": files["rows"],
        "rows_train": guest["rows_train"],
        "rows_test": guest["rows_test"],
        "guest_features": guest["own_features"],
        "host_features": host["own_features"],
        "federated_auc": guest["test_auc"],
        "centralised_auc": round(reference["test_auc"], 6),
        "auc_difference": round(guest["test_auc"] - reference["test_auc"], 6),
        "epochs": guest["epochs"],
        "seconds": round(seconds, 2),
        "protocol_seconds": guest["seconds"],
        "bytes_guest_to_host": guest["bytes_sent"],
        "bytes_host_to_guest": host["bytes_sent"],
        "messages": guest["messages_sent"] + host["messages_sent"],
        "rounds": guest["rounds"],
        "guest_card": guest.get("card"),
        "host_card": host.get("card"),
        "files": {"carrier": files["carrier"], "enterprise": files["enterprise"]},
    }
