"""How far refined measurement-report positions are from the truth, vs the cell.

Run with ``.venv/bin/python benchmarks/mr_positions.py [--subscribers N]
[--days D] [--shadowing-db S] [DATA_DIR]``. DATA_DIR is the public data
folder (default ``$TELCOREACH_DATA`` or ``../shared/datasets``).

A city is simulated with measurement reports (true positions known), the
reports and cells are ingested into a fresh workspace, and for each report
the error of three positions is measured against the truth: the serving
cell's site (what a cell id alone gives), and the RSRP-weighted centroid of
the serving and neighbour cells with ``power`` and ``path_loss`` weights.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from telcoreach.engine import Engine
from telcoreach.features import mr_positions
from telcoreach.pipeline import init_workspace, run_ingest
from telcoreach.simulate import _mr as simulated_mr
from telcoreach.simulate import simulate_city

_METRES_PER_DEGREE = 6_371_000 * math.pi / 180


def _errors_m(table: pa.Table, lat: str, lon: str) -> np.ndarray:
    true_lat = table["true_lat"].to_numpy()
    dy = (table[lat].to_numpy() - true_lat) * _METRES_PER_DEGREE
    dx = (
        (table[lon].to_numpy() - table["true_lon"].to_numpy())
        * _METRES_PER_DEGREE
        * np.cos(np.radians(true_lat))
    )
    return np.hypot(dx, dy)


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "data_dir",
        nargs="?",
        default=os.environ.get("TELCOREACH_DATA", root.parent / "shared" / "datasets"),
    )
    parser.add_argument("--subscribers", type=int, default=2_000)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--reports-per-day", type=float, default=24)
    parser.add_argument("--shadowing-db", type=float, default=simulated_mr.SHADOWING_DB)
    args = parser.parse_args()
    simulated_mr.SHADOWING_DB = args.shadowing_db

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        started = time.perf_counter()
        simulate_city(
            out / "city",
            subscribers=args.subscribers,
            days=args.days,
            seed=1,
            data_dir=args.data_dir,
            measurement_reports_per_day=args.reports_per_day,
        )
        workspace = init_workspace(out / "ws")
        run_ingest(workspace, "cells", [out / "city" / "cells.csv"])
        run_ingest(
            workspace, "measurement_reports", [out / "city" / "measurement_reports"]
        )
        truth = pacsv.read_csv(
            out / "city" / "truth" / "measurement_positions.csv",
            convert_options=pacsv.ConvertOptions(
                column_types={
                    "msisdn": pa.string(),
                    "serving_cell_id": pa.string(),
                    "report_time": pa.timestamp("us"),
                }
            ),
        )
        tokens = workspace.pseudonymiser.tokenise("msisdn", truth["msisdn"])
        truth = truth.drop(["msisdn"]).append_column("subscriber", tokens)
        print(
            f"{truth.num_rows:,} reports of {args.subscribers:,} subscribers over "
            f"{args.days} days, shadow fading {args.shadowing_db} dB "
            f"(simulated and ingested in {time.perf_counter() - started:.1f} s)"
        )
        print(f"{'position':<28}{'median m':>10}{'p75 m':>10}{'p90 m':>10}")
        engine = Engine(workspace)
        try:
            for method in ("path_loss", "power"):
                started = time.perf_counter()
                positions = mr_positions(
                    engine.lake("measurement_reports"),
                    engine.lake("cells"),
                    method=method,
                ).to_pyarrow()
                seconds = time.perf_counter() - started
                joined = positions.join(
                    truth, ["subscriber", "report_time", "serving_cell_id"]
                )
                if method == "path_loss":
                    _row(
                        "serving cell site",
                        _errors_m(joined, "serving_lat", "serving_lon"),
                    )
                _row(f"centroid, {method} weights", _errors_m(joined, "lat", "lon"))
                print(f"{'':<28}({positions.num_rows:,} reports in {seconds:.2f} s)")
        finally:
            engine.close()


def _row(label: str, errors: np.ndarray) -> None:
    median, p75, p90 = np.percentile(errors, [50, 75, 90])
    print(f"{label:<28}{median:>10.0f}{p75:>10.0f}{p90:>10.0f}")


if __name__ == "__main__":
    main()
