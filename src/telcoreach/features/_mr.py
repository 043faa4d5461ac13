"""Positions between cells refined from radio measurement reports (MR).

A cell id alone places a handset at its serving cell's site, hundreds of
metres from where it is. A measurement report also gives the RSRP
(reference signal received power) of up to six neighbour cells; the
handset is nearer the cells it hears strongly. :func:`mr_positions` takes
the RSRP-weighted centroid of the serving and neighbour cell positions, as
an Ibis expression that runs on any backend.

Two weightings are offered:

``power``
    The RSRP in milliwatts (``10 ** (dBm / 10)``): a cell heard 10 dB
    weaker counts a tenth as much.
``path_loss``
    The distance each RSRP implies under a log-distance path-loss model,
    ``d = 1 km * 10 ** ((P - RSRP - L1km) / slope)``, with weight
    ``1 / d ** 2``; with the 3GPP urban-macro slope of 37.6 dB per decade,
    a cell 10 dB weaker counts about 0.3 as much, so neighbours pull harder.
"""

from __future__ import annotations

from typing import Literal

import ibis
import ibis.expr.types as ir

from telcoreach.errors import ConfigError
from telcoreach.schemas import MR_NEIGHBOURS

__all__ = ["mr_positions"]

_KEY = ("subscriber", "report_time", "serving_cell_id")


def _long(reports: ir.Table) -> ir.Table:
    """Return one row per (report, heard cell): serving as rank 0, then nc1..."""
    parts = [
        reports.select(
            *_KEY,
            cell_id=reports.serving_cell_id,
            rsrp_dbm=reports.serving_rsrp_dbm,
            rank=ibis.literal(0, "int8"),
        )
    ]
    for number in range(1, MR_NEIGHBOURS + 1):
        cell = reports[f"nc{number}_cell_id"]
        parts.append(
            reports.filter(
                cell.notnull() & reports[f"nc{number}_rsrp_dbm"].notnull()
            ).select(
                *_KEY,
                cell_id=cell,
                rsrp_dbm=reports[f"nc{number}_rsrp_dbm"],
                rank=ibis.literal(number, "int8"),
            )
        )
    return ibis.union(*parts)


def mr_positions(
    reports: ir.Table,
    cells: ir.Table,
    *,
    method: Literal["power", "path_loss"] = "path_loss",
    reference_power_dbm: float = 15.2,
    path_loss_1km_db: float = 128.1,
    path_loss_slope_db: float = 37.6,
) -> ir.Table:
    """Return each report's position refined from the RSRP of the cells it heard.

    Parameters
    ----------
    reports : ibis.Table
        ``measurement_reports`` from the lake (``subscriber``, ``report_time``,
        ``serving_cell_id``, ``serving_rsrp_dbm``, ``nc1_cell_id``,
        ``nc1_rsrp_dbm`` ... ``nc6_rsrp_dbm``).
    cells : ibis.Table
        ``cells`` with ``cell_id``, ``lat``, ``lon``.
    method : {"power", "path_loss"}
        Weighting of the cell positions (see the module notes).
    reference_power_dbm, path_loss_1km_db, path_loss_slope_db : float
        Log-distance model of ``path_loss``: transmitted power per resource
        element, loss at 1 km and loss per decade of distance (defaults:
        3GPP TR 36.814 urban macro, a 46 dBm cell).

    Returns
    -------
    ibis.Table
        One row per report: the key columns, ``serving_lat``/``serving_lon``
        (the serving cell's site), ``lat``/``lon`` (the refined position) and
        ``cells_used`` (heard cells found in ``cells``).

    Notes
    -----
    Neighbours missing from ``cells`` are ignored; a report whose serving
    cell is unknown has null serving coordinates. The centroid lies inside
    the hull of the cells heard, so a handset outside it (at the city's edge,
    or hearing only cells on one side) is placed too far inside.

    Examples
    --------
    >>> positions = mr_positions(engine.lake("measurement_reports"),
    ...                          engine.lake("cells"))  # doctest: +SKIP
    """
    if method == "power":
        weight_of = _power_weight
    elif method == "path_loss":

        def weight_of(rsrp: ir.FloatingValue) -> ir.FloatingValue:
            loss_db = reference_power_dbm - rsrp - path_loss_1km_db
            distance_km = ibis.literal(10.0) ** (loss_db / path_loss_slope_db)
            return 1.0 / (distance_km * distance_km)

    else:
        raise ConfigError(
            f"mr_positions: method must be 'power' or 'path_loss', found {method!r}"
        )

    heard = _long(reports).join(cells.select("cell_id", "lat", "lon"), "cell_id")
    heard = heard.mutate(weight=weight_of(heard.rsrp_dbm.cast("float64")))
    serving = heard.rank == 0
    return heard.group_by(list(_KEY)).aggregate(
        serving_lat=serving.ifelse(heard.lat, ibis.null()).max(),
        serving_lon=serving.ifelse(heard.lon, ibis.null()).max(),
        lat=(heard.weight * heard.lat).sum() / heard.weight.sum(),
        lon=(heard.weight * heard.lon).sum() / heard.weight.sum(),
        cells_used=heard.count(),
    )


def _power_weight(rsrp: ir.FloatingValue) -> ir.FloatingValue:
    """Return the RSRP in milliwatts."""
    return ibis.literal(10.0) ** (rsrp / 10.0)
