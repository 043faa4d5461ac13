"""Read experiment results and audiences; the functions the CLI calls.

``telcoreach abtest RESULTS`` calls :func:`run_abtest`, ``telcoreach abtest
plan`` calls :func:`run_abtest_plan` and ``telcoreach abtest assign`` calls
:func:`run_abtest_assign`; each returns a JSON-serialisable summary.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from scipy import stats

from telcoreach.errors import ConfigError, DataSourceError, SchemaError
from telcoreach.measure._experiments import (
    METRICS,
    _as_binary,
    _as_number,
    analyse_experiment,
)
from telcoreach.measure._experiments_assign import HOLDOUT, assign_variants
from telcoreach.measure._experiments_plan import plan_sample_size

__all__ = [
    "COLUMN_ROLES",
    "parse_split",
    "read_experiment",
    "run_abtest",
    "run_abtest_assign",
    "run_abtest_plan",
]

logger = logging.getLogger(__name__)

#: Roles a column can play in an experiment file, with what each holds.
COLUMN_ROLES = {
    "user": "one identifier per person",
    "variant": "the variant each person was assigned",
    "outcome": "the outcome compared (0/1 conversion or an amount)",
    "revenue": "revenue per person",
    "cost": "campaign cost per person",
    "pre": "the same metric per person before the experiment (CUPED)",
}
_SYNONYMS = {
    "user": ("userid", "user_id", "subscriber", "customer", "id"),
    "variant": ("version", "group", "arm", "treatment", "bucket", "test_group"),
    "outcome": ("converted", "conversion", "purchase", "retention_1", "retained"),
    "revenue": ("value", "amount", "sales", "rev"),
    "cost": ("spend", "expense", "price"),
    "pre": ("pre", "pre_period", "baseline", "covariate"),
}
_FLAGS = {role: f"--{role} COL" for role in COLUMN_ROLES}


def read_experiment(
    path: str | Path,
    mapping: Mapping[str, str] | None = None,
    *,
    metric: str = "conversion",
) -> pd.DataFrame:
    """Read one-row-per-person experiment results into canonical columns.

    Parameters
    ----------
    path : str or Path
        CSV (any other suffix) or Parquet (``.parquet``) file.
    mapping : mapping of str to str, optional
        Source column for each role (``user``, ``variant``, ``outcome``,
        ``revenue``, ``cost``, ``pre``); a role not mapped is looked up
        under its own name (``outcome``: ``converted`` for conversion,
        ``revenue`` for revenue).
    metric : {"conversion", "revenue", "roi"}
        Decides which roles are required: ``variant`` always, ``outcome``
        for conversion and revenue, ``revenue`` and ``cost`` for ROI.

    Returns
    -------
    pandas.DataFrame
        Columns ``variant`` (str); the outcome as ``converted`` (0/1 float)
        for conversion, or for revenue as ``revenue`` when it is the revenue
        column and ``outcome`` otherwise; and ``revenue``, ``cost``, ``pre``
        (floats) and ``user`` (str) when mapped or present under their own
        names. These are :func:`analyse_experiment`'s default column names
        (pass ``outcome="outcome"`` when that column exists).

    Raises
    ------
    DataSourceError
        If the file does not exist or cannot be parsed.
    SchemaError
        If a required column is missing (the message lists the columns found
        and suggests a mapping) or holds values of the wrong kind.
    ConfigError
        If the mapping names an unknown role or the metric is unknown.
    """
    path = Path(path)
    mapping = dict(mapping or {})
    if metric not in METRICS:
        raise ConfigError(
            f"metric: expected one of {', '.join(METRICS)}, found {metric!r}"
        )
    unknown = sorted(set(mapping) - set(COLUMN_ROLES))
    if unknown:
        raise ConfigError(
            f"column mapping: expected roles among {', '.join(COLUMN_ROLES)}, "
            f"found {', '.join(unknown)}"
        )
    header = _read_header(path)
    sources = _resolve_columns(path, header, mapping, metric)
    frame = _read_columns(
        path, sorted(set(sources.values())), text=_text_columns(sources)
    )

    canonical: dict[str, pd.Series] = {"variant": frame[sources["variant"]].astype(str)}
    canonical["variant"] = canonical["variant"].where(frame[sources["variant"]].notna())
    if metric == "conversion":
        canonical["converted"] = _as_binary(
            frame[sources["outcome"]], sources["outcome"]
        )
    elif metric == "revenue":
        # The outcome is called revenue only when it is the revenue column.
        role = "revenue" if sources["outcome"] == sources.get("revenue") else "outcome"
        canonical[role] = _as_number(frame[sources["outcome"]], sources["outcome"])
    for role in ("revenue", "cost", "pre"):
        if role in sources and role not in canonical:
            canonical[role] = _as_number(frame[sources[role]], sources[role])
    if "user" in sources:
        canonical["user"] = frame[sources["user"]].astype(str)
    logger.info("read %d rows of experiment results from %s", len(frame), path.name)
    return pd.DataFrame(canonical)


def run_abtest(
    path: str | Path,
    *,
    metric: str = "conversion",
    variant: str | None = None,
    outcome: str | None = None,
    revenue: str | None = None,
    cost: str | None = None,
    pre: str | None = None,
    user: str | None = None,
    control: str | None = None,
    expected_split: Mapping[str, float] | str | None = None,
    alpha: float = 0.05,
    correction: str = "holm",
) -> dict[str, Any]:
    """Analyse an experiment file; return the summary ``telcoreach abtest`` prints.

    Column options name the source column of each role (``None``: the
    role's default name). ``expected_split`` is a mapping or a string such
    as ``"sms=0.45,push=0.45,none=0.1"``. The summary is
    :meth:`ExperimentResult.to_dict` plus ``input`` (the file name).
    """
    mapping = {
        role: column
        for role, column in {
            "variant": variant,
            "outcome": outcome,
            "revenue": revenue,
            "cost": cost,
            "pre": pre,
            "user": user,
        }.items()
        if column is not None
    }
    if isinstance(expected_split, str):
        expected_split = parse_split(expected_split)
    frame = read_experiment(path, mapping, metric=metric)
    result = analyse_experiment(
        frame,
        metric=metric,
        outcome="outcome" if "outcome" in frame else None,
        control=control,
        pre="pre" if "pre" in frame else None,
        expected_split=expected_split,
        alpha=alpha,
        correction=correction,
    )
    return {"input": Path(path).name, **result.to_dict()}


def run_abtest_plan(
    baseline_rate: float,
    minimum_detectable_effect: float,
    *,
    relative: bool = True,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    variants: int = 2,
    daily_reach: int | None = None,
) -> dict[str, Any]:
    """Return the sample-size plan ``telcoreach abtest plan`` prints.

    It is :func:`plan_sample_size` plus ``days`` (people needed divided by
    ``daily_reach``, rounded up) when a daily reach is given.
    """
    plan = plan_sample_size(
        baseline_rate,
        minimum_detectable_effect,
        relative=relative,
        alpha=alpha,
        power=power,
        ratio=ratio,
        variants=variants,
    )
    if daily_reach is not None:
        if not daily_reach > 0:
            raise ConfigError(
                f"daily reach: expected a positive number of people per day, "
                f"found {daily_reach!r}"
            )
        plan["daily_reach"] = daily_reach
        plan["days"] = int(np.ceil(plan["n_total"] / daily_reach))
    return plan


def run_abtest_assign(
    audience: str | Path,
    *,
    salt: str,
    variants: Mapping[str, float] | str,
    out: str | Path,
    holdout: float = 0.1,
    token_column: str = "subscriber",
) -> dict[str, Any]:
    """Assign an audience file to variants; return what ``abtest assign`` prints.

    Parameters
    ----------
    audience : str or Path
        CSV or Parquet file with a token column (the output of
        ``telcoreach audience``).
    salt : str
        Experiment name mixed into the hash.
    variants : mapping or str
        Weights, e.g. ``{"sms": 1, "push": 1}`` or ``"sms=1,push=1"``.
    out : str or Path
        CSV or Parquet (by suffix) to write: the input columns plus
        ``variant``.
    holdout : float
        Share kept untouched.
    token_column : str
        Column with the subscriber tokens.

    Returns
    -------
    dict
        ``input``, ``output``, ``output_sha256``, ``salt``, ``subscribers``,
        ``holdout``, ``variants`` (rows of ``variant``, ``subscribers``,
        ``share``, ``expected_share``) and ``srm_p_value`` of the achieved
        split against the planned one (a check of the hash, expected to be
        well above 0.001).
    """
    audience, out = Path(audience), Path(out)
    weights = parse_split(variants) if isinstance(variants, str) else dict(variants)
    header = _read_header(audience)
    if token_column not in header:
        raise SchemaError(
            f"{audience.name}: expected a token column {token_column!r}, found "
            f"{', '.join(header)}; name it with --token-column COL"
        )
    if "variant" in header:
        raise SchemaError(
            f"{audience.name}: expected no 'variant' column (the assignment adds "
            "it), found one; drop it or assign the original audience file"
        )
    table = _read_table(audience, text=[token_column])
    assigned = assign_variants(table[token_column], salt, weights, holdout)
    result = table.append_column("variant", assigned["variant"])

    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        pq.write_table(result, out)
    else:
        pacsv.write_csv(result, out)

    names = [*weights, HOLDOUT]
    total_weight = sum(float(w) for w in weights.values())
    expected = np.array(
        [(1 - holdout) * float(weights[n]) / total_weight for n in weights] + [holdout]
    )
    labels = np.asarray(assigned["variant"].to_numpy(zero_copy_only=False))
    counts = np.array([(labels == n).sum() for n in names], dtype=float)
    planned = expected > 0
    srm = stats.chisquare(counts[planned], expected[planned] * counts.sum())
    rows = len(labels)
    logger.info("wrote %d assigned subscribers to %s", rows, out.name)
    return {
        "input": audience.name,
        "output": str(out),
        "output_sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "salt": salt,
        "subscribers": rows,
        "holdout": holdout,
        "variants": [
            {
                "variant": name,
                "subscribers": int(count),
                "share": float(count / rows) if rows else 0.0,
                "expected_share": float(share),
            }
            for name, count, share in zip(names, counts, expected, strict=True)
        ],
        "srm_p_value": float(srm.pvalue) if rows else None,
    }


def parse_split(text: str) -> dict[str, float]:
    """Return ``{"sms": 0.45, "push": 0.45}`` from ``"sms=0.45,push=0.45"``.

    Raises
    ------
    ConfigError
        If an item is not ``NAME=NUMBER`` with a number >= 0 or a name repeats.
    """
    split: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, weight = item.partition("=")
        try:
            value = float(weight)
        except ValueError:
            value = -1.0
        if not sep or not name.strip() or value < 0 or name.strip() in split:
            raise ConfigError(
                f"split: expected NAME=WEIGHT items separated by commas, e.g. "
                f"sms=0.45,push=0.45,none=0.1; found {item!r} in {text!r}"
            )
        split[name.strip()] = value
    if not split:
        raise ConfigError(
            f"split: expected NAME=WEIGHT items such as sms=1,push=1, found {text!r}"
        )
    return split


def _read_header(path: Path) -> list[str]:
    if not path.is_file():
        raise DataSourceError(
            f"expected an experiment or audience file at {path}, found nothing; "
            "check the path"
        )
    try:
        if path.suffix == ".parquet":
            return list(pq.read_schema(path).names)
        return list(pd.read_csv(path, nrows=0).columns)
    except (OSError, ValueError, pa.ArrowException) as error:
        raise DataSourceError(
            f"{path.name}: expected a CSV with a header row or a Parquet file, "
            f"could not read it ({error}); check the file"
        ) from error


def _resolve_columns(
    path: Path, header: list[str], mapping: Mapping[str, str], metric: str
) -> dict[str, str]:
    """Return the source column of each role the metric needs or can use."""
    defaults = {
        "user": "user",
        "variant": "variant",
        "outcome": "converted"
        if metric == "conversion"
        else mapping.get("revenue", "revenue"),
        "revenue": "revenue",
        "cost": "cost",
    }
    required = ["variant", *(["revenue", "cost"] if metric == "roi" else ["outcome"])]
    sources: dict[str, str] = {}
    problems = []
    for role in COLUMN_ROLES:
        column = mapping.get(role, defaults.get(role))
        if column is None:
            continue
        if column in header:
            sources[role] = column
        elif role in required or role in mapping:
            problems.append(_missing_message(role, column, header))
    if problems:
        raise SchemaError(
            f"{path.name}: " + "; ".join(problems) + f" (found columns: "
            f"{', '.join(header)})"
        )
    if metric == "roi":
        sources.pop("outcome", None)
    return sources


def _missing_message(role: str, column: str, header: list[str]) -> str:
    guesses = [c for c in header if c.lower() in _SYNONYMS[role]]
    guesses += difflib.get_close_matches(column, header, n=2, cutoff=0.6)
    hint = f"; perhaps {_FLAGS[role].replace('COL', guesses[0])}" if guesses else ""
    return (
        f"expected a column {column!r} with {COLUMN_ROLES[role]}, not found; "
        f"name it with {_FLAGS[role]} (mapping key {role!r}){hint}"
    )


def _text_columns(sources: Mapping[str, str]) -> list[str]:
    return [sources[role] for role in ("variant", "user") if role in sources]


def _read_columns(path: Path, columns: list[str], *, text: list[str]) -> pd.DataFrame:
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path, columns=columns)
        return pd.read_csv(
            path, usecols=columns, dtype=dict.fromkeys(text, "string"), low_memory=False
        )
    except (OSError, ValueError, pa.ArrowException) as error:
        raise DataSourceError(
            f"{path.name}: expected readable columns {', '.join(columns)}, "
            f"could not read them ({error}); check the file"
        ) from error


def _read_table(path: Path, *, text: list[str]) -> pa.Table:
    try:
        if path.suffix == ".parquet":
            return pq.read_table(path)
        options = pacsv.ConvertOptions(column_types=dict.fromkeys(text, pa.string()))
        return pacsv.read_csv(path, convert_options=options)
    except (OSError, pa.ArrowException) as error:
        raise DataSourceError(
            f"{path.name}: expected a CSV with a header row or a Parquet file, "
            f"could not read it ({error}); check the file"
        ) from error
