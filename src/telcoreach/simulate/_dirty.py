"""Defects injected on purpose into event files, counted exactly.

Real carrier feeds are not clean. At ``dirty_rate`` r, each daily event
file of n rows gets ``round(r * n)`` rows of each defect, on distinct rows:

- ``missing_required``: one required field left empty;
- ``duplicates``: an exact copy of a row, delivered right after it;
- ``malformed_ids``: an MSISDN with a digit missing, a digit too many or
  letters in it;
- ``unknown_cells``: a cell id absent from the cell table.

Besides, one day's latest events arrive in the next day's file (a late
batch): see :func:`telcoreach.simulate.simulate_city`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "DEFECTS",
    "DefectPlan",
    "malformed_msisdns",
    "plan_defects",
    "unknown_cell_ids",
]

DEFECTS: tuple[str, ...] = (
    "missing_required",
    "duplicates",
    "malformed_ids",
    "unknown_cells",
)


@dataclass
class DefectPlan:
    """Which rows of a clean table become which defect.

    ``take`` lists clean rows in output order (a duplicated row appears
    twice, consecutively). The other arrays are per output row:
    ``missing_field`` indexes the required field left empty (-1 for none).
    """

    take: np.ndarray
    missing_field: np.ndarray
    malformed: np.ndarray
    unknown_cell: np.ndarray
    counts: dict[str, int]

    @staticmethod
    def clean(rows: int) -> DefectPlan:
        """Return a plan that changes nothing."""
        return DefectPlan(
            take=np.arange(rows),
            missing_field=np.full(rows, -1),
            malformed=np.zeros(rows, dtype=bool),
            unknown_cell=np.zeros(rows, dtype=bool),
            counts=dict.fromkeys(DEFECTS, 0),
        )


def plan_defects(
    rng: np.random.Generator, rows: int, rate: float, required_fields: int
) -> DefectPlan:
    """Return the defects of a table of ``rows`` clean rows at ``rate``."""
    per_defect = min(round(rate * rows), rows // len(DEFECTS))
    if per_defect == 0:
        return DefectPlan.clean(rows)
    chosen = rng.choice(rows, size=len(DEFECTS) * per_defect, replace=False)
    missing, duplicated, malformed, unknown = chosen.reshape(len(DEFECTS), per_defect)

    missing_field = np.full(rows, -1)
    missing_field[missing] = rng.integers(0, required_fields, size=per_defect)
    malformed_row = np.zeros(rows, dtype=bool)
    malformed_row[malformed] = True
    unknown_row = np.zeros(rows, dtype=bool)
    unknown_row[unknown] = True

    take = np.sort(np.concatenate([np.arange(rows), duplicated]), kind="stable")
    return DefectPlan(
        take=take,
        missing_field=missing_field[take],
        malformed=malformed_row[take],
        unknown_cell=unknown_row[take],
        counts=dict.fromkeys(DEFECTS, per_defect),
    )


def malformed_msisdns(rng: np.random.Generator, msisdns: pa.Array) -> pa.Array:
    """Return a broken copy of each MSISDN: too short, too long or with letters."""
    count = len(msisdns)
    variant = rng.integers(0, 3, size=count)
    too_short = pc.utf8_slice_codeunits(msisdns, 0, 10)
    extra_digit = pa.array(rng.integers(0, 10, size=count)).cast(pa.string())
    too_long = pc.binary_join_element_wise(msisdns, extra_digit, "")
    with_letters = pc.utf8_replace_slice(msisdns, start=4, stop=6, replacement="O1")
    return pc.if_else(
        pa.array(variant == 0),
        too_short,
        pc.if_else(pa.array(variant == 1), too_long, with_letters),
    )


def unknown_cell_ids(rng: np.random.Generator, count: int, known: pa.Array) -> pa.Array:
    """Return ``count`` distinct cell ids of the ``bs-`` form absent from ``known``."""
    numbers = 5_000 + rng.choice(5_000, size=count, replace=False)
    ids = pc.binary_join_element_wise("bs-", pa.array(numbers).cast(pa.string()), "")
    clash = pc.is_in(ids, value_set=known)
    return pc.if_else(clash, pc.binary_join_element_wise(ids, "x", ""), ids)
