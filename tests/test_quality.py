"""Data quality: raw-id validators, gates on a dirty and a clean city, history."""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from typer.testing import CliRunner

from telcoreach.cli import app
from telcoreach.config import Config, parse_config
from telcoreach.engine import Engine
from telcoreach.errors import ConfigError, QualityGateError
from telcoreach.pipeline import demo_config, init_workspace, run_all, run_ingest
from telcoreach.privacy import find_raw_identifiers
from telcoreach.quality import (
    RESULTS_TABLE,
    delay_quantile_s,
    file_day,
    identifier_counts,
    imei_luhn_valid,
    imsi_length_valid,
    imsi_mcc_valid,
    msisdn_valid,
    quality_history,
    robust_z,
    run_quality,
)

runner = CliRunner()

#: A source allowed to deliver up to 2 h after its newest event.
SLOW_FRESHNESS = {"freshness": {"threshold": 2.0}}


def _luhn_reference(number: str) -> bool:
    """Textbook Luhn: from the right, double every second digit, sum digits."""
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char)
        if position % 2 == 1:
            digit *= 2
            digit = digit // 10 + digit % 10
        total += digit
    return total % 10 == 0


# --- validators on hand-made values -------------------------------------------------


def test_luhn_accepts_published_imei_examples_and_rejects_a_changed_digit():
    # 49-015420-323751-8 is the IMEI example of the IMEI article on Wikipedia;
    # 35-209900-176148-1 the GSMA example quoted there.
    published = pa.array(["490154203237518", "352099001761481"])
    altered = pa.array(["490154203237517", "352099001761482"])

    assert imei_luhn_valid(published).to_pylist() == [True, True]
    assert imei_luhn_valid(altered).to_pylist() == [False, False]


def test_luhn_agrees_with_a_textbook_implementation_on_random_numbers():
    rng = random.Random(5)
    numbers = [
        "".join(rng.choice("0123456789") for _ in range(15)) for _ in range(2000)
    ]

    found = imei_luhn_valid(pa.array(numbers)).to_pylist()

    assert found == [_luhn_reference(n) for n in numbers]
    assert 100 < sum(found) < 300  # about one number in ten passes by chance


def test_luhn_is_false_for_wrong_lengths_and_letters_and_null_for_nulls():
    values = pa.array(["49015420323751", "4901542032375180", "49015420323751A", None])

    assert imei_luhn_valid(values).to_pylist() == [False, False, False, None]


def test_msisdn_validator_accepts_chinese_mobile_numbers_only():
    values = pa.array(
        [
            *("13812345678", "+8613812345678", "8619912345678", "12812345678"),
            *("1381234567", "138123456789", "138O1234567", "02012345678"),
        ]
    )

    assert msisdn_valid(values).to_pylist() == [True] * 3 + [False] * 5


def test_imsi_validators_check_country_code_and_length_separately():
    values = pa.array(["460001234567890", "310150123456789", "46000123456789"])

    assert imsi_mcc_valid(values).to_pylist() == [True, False, True]
    assert imsi_length_valid(values).to_pylist() == [True, True, False]


def test_identifier_counts_count_rows_not_distinct_values():
    distinct = pa.array(["460001234567890", "310150123456789", ""])
    rows = pa.array([0, 1, 1, 1, 2], pa.int32())

    counts = identifier_counts("imsi", distinct, pc.not_equal(distinct, ""), rows)

    assert counts == {
        "imsi.present": 4,
        "imsi.mcc": 3,
        "imsi.length": 0,
        "imsi.malformed": 3,
    }


@pytest.mark.parametrize(
    ("name", "day"),
    [
        ("2026-11-03.csv", dt.date(2026, 11, 3)),
        ("sig_20261103.csv.gz", dt.date(2026, 11, 3)),
        ("cells.csv", None),
        ("dump_2026110313.csv", None),
        ("2026-13-01.csv", None),
    ],
)
def test_file_day_reads_the_delivery_day_from_a_file_name(name, day):
    assert file_day(name) == day


def test_p95_from_the_delay_histogram_is_at_most_five_percent_above_the_exact_one():
    from telcoreach.quality._arrival import DELAY_EDGES_S

    delays = np.random.default_rng(1).exponential(3600, size=50_000)
    bins = np.searchsorted(DELAY_EDGES_S, delays, side="left")
    index, counts = np.unique(bins, return_counts=True)

    bound = delay_quantile_s(
        dict(zip(index.tolist(), counts.tolist(), strict=True)), 0.95
    )
    exact = float(np.quantile(delays, 0.95))

    assert exact <= bound <= exact * 1.05


def test_robust_z_measures_distance_from_median_in_scaled_mads():
    previous = [100.0, 104.0, 96.0, 102.0, 98.0]
    # median 100, absolute deviations 0, 4, 4, 2, 2 -> MAD 2 -> scale 2.9652
    assert robust_z(110.0, previous) == pytest.approx(10 / (1.4826 * 2))


def test_quality_config_defaults_validate_and_sources_override_one_gate():
    assert Config().quality.gate("missing", "signalling").threshold == 0.05

    config = parse_config({"quality": {"sources": {"dpi": SLOW_FRESHNESS}}}, "test")

    assert config.quality.gate("freshness", "dpi").threshold == 2.0
    assert config.quality.gate("freshness", "dpi").severity == "warn"
    assert config.quality.gate("freshness", "signalling").threshold == 1.0


def test_quality_config_names_an_unknown_check():
    with pytest.raises(ConfigError, match="unknown check fresh"):
        parse_config({"quality": {"sources": {"dpi": {"fresh": {}}}}}, "test")


# --- simulated cities ---------------------------------------------------------------


def _city_workspace(root: Path, datasets: Path, dirty_rate: float):
    from telcoreach.simulate import simulate_city

    city = root / "city"
    # A dirty city also delivers its DPI files 12 h late (a late source).
    simulation = simulate_city(
        city, subscribers=300, days=2, seed=11, dirty_rate=dirty_rate, data_dir=datasets
    )
    workspace = init_workspace(root / "ws", demo_config(city))
    for source in workspace.config.sources:
        run_ingest(workspace, source.kind, [Path(p) for p in source.paths])
    return workspace, simulation


@pytest.fixture(scope="module")
def dirty(tmp_path_factory, datasets_dir):
    root = tmp_path_factory.mktemp("dirty")
    workspace, simulation = _city_workspace(root, datasets_dir, 0.05)
    return workspace, simulation, run_quality(workspace)


@pytest.fixture(scope="module")
def clean(tmp_path_factory, datasets_dir):
    root = tmp_path_factory.mktemp("clean")
    workspace, simulation = _city_workspace(root, datasets_dir, 0.0)
    return workspace, simulation, run_quality(workspace)


def _failed(summary, kind, check, field=""):
    found = [
        r
        for r in summary["failed"]
        if r["kind"] == kind and r["check"] == check and r["field"] == field
    ]
    assert len(found) == 1, [r["kind"] + " " + r["check"] for r in summary["failed"]]
    return found[0]


def test_dirty_city_names_malformed_ids_with_the_injected_count(dirty):
    _, simulation, summary = dirty
    for kind in ("signalling", "dpi"):
        result = _failed(summary, kind, "malformed_ids", "msisdn")

        assert result["failing"] == simulation.dirty[kind]["malformed_ids"]
        assert result["severity"] == "error"
        assert 0.04 < result["value"] < 0.06


def test_dirty_city_names_unknown_cells_with_the_injected_count(dirty):
    _, simulation, summary = dirty
    for kind in ("signalling", "dpi"):
        result = _failed(summary, kind, "unknown_cells", "cell_id")

        assert result["failing"] == simulation.dirty[kind]["unknown_cells"]
        assert result["severity"] == "error"


def test_dirty_city_names_the_late_batch_and_the_late_source(dirty):
    _, simulation, summary = dirty

    late = _failed(summary, "signalling", "before_batch_day", "event_time")
    slow = _failed(summary, "dpi", "freshness")

    assert late["failing"] == simulation.late_batch["events"]
    assert simulation.late_batch["to_day"] in late["detail"]
    # DPI files land 12 h after the end of their day; signalling on time.
    assert simulation.delivery_delay_h["dpi"] == 12
    assert 12 <= slow["value"] < 12.5
    assert summary["freshness_p95_h"]["signalling"] < 3


def test_dirty_city_names_duplicates_with_the_injected_count(dirty):
    _, simulation, summary = dirty

    result = _failed(summary, "signalling", "duplicates")

    assert result["failing"] == simulation.dirty["signalling"]["duplicates"]


def test_every_failure_line_names_the_check_the_figure_and_the_threshold(dirty):
    _, _, summary = dirty

    line = next(e for e in summary["errors"] if "signalling malformed_ids" in e)

    assert "(msisdn)" in line and "%" in line and "error gate <= 1.50%" in line


def test_quality_cli_fail_on_error_exits_non_zero_on_the_dirty_city(dirty):
    workspace, _, _ = dirty

    result = runner.invoke(
        app, ["quality", "-w", str(workspace.root), "--fail-on", "error", "--json"]
    )

    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["passed"] is False
    assert "quality gate failed" in result.stderr


def test_run_stops_before_profiling_on_the_dirty_city(dirty):
    workspace, _, _ = dirty

    with pytest.raises(QualityGateError, match="malformed_ids"):
        run_all(workspace)

    engine = Engine(workspace)
    try:
        assert engine.has_table(RESULTS_TABLE)
        assert not engine.has_table("profiles")
    finally:
        engine.close()
    saved = json.loads((workspace.reports_dir / "run.json").read_text())
    assert "malformed_ids" in saved["stopped"]


def test_run_json_prints_what_ran_before_the_gate_stopped_it(dirty):
    workspace, _, _ = dirty
    config = workspace.root / "config.yaml"

    result = runner.invoke(
        app, ["run", "--config", str(config), "-w", str(workspace.root), "--json"]
    )

    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert "malformed_ids" in summary["stopped"]
    assert "profile" not in summary["steps"]


def test_quality_output_holds_no_raw_identifier(dirty):
    workspace, _, summary = dirty
    engine = Engine(workspace)
    try:
        stored = engine.table(RESULTS_TABLE).to_pyarrow().to_pylist()
    finally:
        engine.close()

    text = json.dumps(summary, ensure_ascii=False) + json.dumps(stored, default=str)

    assert not find_raw_identifiers(text)


def test_results_are_stored_with_their_batch(dirty):
    workspace, _, summary = dirty
    engine = Engine(workspace)
    try:
        table = engine.table(RESULTS_TABLE)
        volume = table.filter(
            (table.kind == "signalling") & (table.check == "volume")
        ).to_pyarrow()
    finally:
        engine.close()

    assert set(volume.column("batch_id").to_pylist()) == {
        summary["batches"]["signalling"]
    }
    assert sorted(volume.column("day").to_pylist()) == ["2026-11-02", "2026-11-03"]


def test_clean_city_passes_every_gate(clean):
    workspace, _, summary = clean

    assert summary["passed"] is True
    assert summary["errors"] == [] and summary["warnings"] == []
    assert summary["identity"]["share"] == 1.0
    result = runner.invoke(
        app, ["quality", "-w", str(workspace.root), "--fail-on", "warn"]
    )
    assert result.exit_code == 0, result.output


# --- hand-made lakes ------------------------------------------------------------------


def _write(path: Path, header: str, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


A, B, C, D = "13800000001", "13800000002", "13800000003", "13800000004"
IMSI_A, IMSI_B, IMSI_C, IMSI_X = (
    "460001000000001",
    "460001000000002",
    "460001000000003",
    "460001000000009",
)
IMEI = "490154203237518"


def _identity_lake(tmp_path: Path, with_dpi: bool = True):
    """Return a workspace where A has two IMSIs and D is not a subscriber."""
    workspace = init_workspace(tmp_path / "ws")
    subscribers = _write(
        tmp_path / "subscribers.csv",
        "msisdn,imsi,imei,consent_marketing,consent_profiling",
        [
            f"{who},{imsi},,true,true"
            for who, imsi in ((A, IMSI_A), (B, IMSI_B), (C, IMSI_C))
        ],
    )
    signalling = _write(
        tmp_path / "signalling" / "2026-11-02.csv",
        "msisdn,imsi,imei,event_time,cell_id,event_type",
        [
            f"{A},{IMSI_A},{IMEI},2026-11-02 08:00:00,c1,attach",
            f"{A},{IMSI_X},{IMEI},2026-11-02 09:00:00,c1,attach",
            f"{B},{IMSI_B},,2026-11-02 09:30:00,c1,attach",
        ],
    )
    dpi = _write(
        tmp_path / "dpi" / "2026-11-02.csv",
        "msisdn,start_time,end_time,app_name,app_category,bytes_up,bytes_down",
        [
            f"{C},2026-11-02 10:00:00,2026-11-02 10:05:00,app,news,1,2",
            f"{D},2026-11-02 10:00:00,2026-11-02 10:05:00,app,news,1,2",
        ],
    )
    sources = [("subscribers", subscribers), ("signalling", signalling)]
    for kind, path in sources + ([("dpi", dpi)] if with_dpi else []):
        run_ingest(workspace, kind, [path])
    return workspace


def test_identity_lists_subscribers_whose_ids_do_not_map_one_to_one(tmp_path):
    workspace = _identity_lake(tmp_path)

    summary = run_quality(workspace)

    identity = summary["identity"]
    # A has two IMSIs, D is not in the subscriber table: B and C of 4 are fine.
    assert identity["subscribers"] == 4
    assert identity["one_to_one"] == 2
    assert identity["problems"]["several IMSIs"] == 1
    assert identity["problems"]["not in the subscriber table"] == 1
    tokens = workspace.pseudonymiser
    subscriber_a = tokens.tokenise("msisdn", pa.array([A]))[0].as_py()
    expected_imsis = tokens.tokenise("imsi", pa.array([IMSI_A, IMSI_X])).to_pylist()
    assert identity["conflicting_pairs"] == [
        {"subscriber": subscriber_a, "kind": "imsi", "token": t}
        for t in sorted(expected_imsis)
    ]
    assert "subscribers identity" in " ".join(summary["warnings"])
    assert not find_raw_identifiers(json.dumps(summary))


def test_identity_counts_each_subscriber_once_without_dpi(tmp_path):
    workspace = _identity_lake(tmp_path, with_dpi=False)

    identity = run_quality(workspace)["identity"]

    # A, B and C are in the subscriber table or signalling; A has two IMSIs.
    assert identity["subscribers"] == 3
    assert identity["one_to_one"] == 2


def test_history_flags_a_day_whose_volume_falls_far_below_its_recent_range(
    tmp_path,
):
    workspace = init_workspace(tmp_path / "ws")
    header = "msisdn,imsi,imei,event_time,cell_id,event_type"
    for day, events in ((2, 40), (3, 42), (4, 38), (5, 41), (6, 39), (7, 4)):
        rows = [
            f"1380000{n:04d},,,2026-11-{day:02d} {n % 24:02d}:00:00,c1,attach"
            for n in range(events)
        ]
        path = _write(tmp_path / f"2026-11-{day:02d}.csv", header, rows)
        run_ingest(workspace, "signalling", [path])

    summary = run_quality(workspace)
    history = quality_history(workspace, kind="signalling", check="volume")

    (series,) = history["series"]
    assert series["values"] == [40, 42, 38, 41, 39, 4]
    assert len(series["jumps"]) == 1
    assert "2026-11-07" in series["jumps"][0] and "4 rows" in series["jumps"][0]
    assert series["jumps"] == [j for j in summary["jumps"] if "volume" in j]


def test_history_cli_prints_the_trend_as_json(tmp_path):
    workspace = init_workspace(tmp_path / "ws")
    path = _write(
        tmp_path / "2026-11-02.csv",
        "msisdn,imsi,imei,event_time,cell_id,event_type",
        ["13800000001,,,2026-11-02 08:00:00,c1,attach"],
    )
    run_ingest(workspace, "signalling", [path])
    assert runner.invoke(app, ["quality", "-w", str(workspace.root)]).exit_code == 0

    result = runner.invoke(
        app, ["quality", "-w", str(workspace.root), "--history", "--json"]
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["days"] == ["2026-11-02"]


@pytest.mark.slow
# py4j leaves sockets to the JVM open: not a failure of the code under test.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_spark_gives_the_same_quality_results_as_duckdb(tmp_path, spark_session):
    workspace = _identity_lake(tmp_path)

    on_duckdb = run_quality(workspace, "duckdb")
    on_spark = run_quality(workspace, "spark")

    def comparable(summary):
        rows = [
            {k: v for k, v in r.items() if k != "measured_at"}
            for r in summary["results"]
        ]
        return sorted(rows, key=lambda r: (r["kind"], r["check"], r["field"]))

    assert comparable(on_spark) == comparable(on_duckdb)
    assert on_spark["identity"] == on_duckdb["identity"]
    assert on_spark["rows_checked"] == on_duckdb["rows_checked"]


def test_history_does_not_flag_a_small_count_moving_within_its_counting_noise():
    from telcoreach.quality._history import series_with_jumps

    daily = [
        {
            "kind": "dpi",
            "check": "volume",
            "field": "",
            "day": f"2026-11-0{d}",
            "value": float(v),
            "rows": None,
        }
        for d, v in zip(range(1, 6), (17, 17, 18, 17, 15), strict=True)
    ]

    (series,) = series_with_jumps(daily, window_days=14, min_days=3, z=3.5)

    # 15 against a steady 17: within sqrt(17) = 4.1 rows of Poisson noise.
    assert series.jumps == []


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--history", "--kind", "bogus"], "unknown kind 'bogus'; expected one of"),
        (
            ["--history", "--kind", "dpi", "--check", "volumee"],
            "unknown check 'volumee'; expected one of",
        ),
        (["--kind", "bogus"], "--kind and --check select the trend"),
    ],
)
def test_quality_cli_refuses_unknown_kind_or_check(tmp_path, options, expected):
    workspace = init_workspace(tmp_path / "ws")

    result = runner.invoke(app, ["quality", "-w", str(workspace.root), *options])

    assert result.exit_code == 1
    assert expected in " ".join(result.output.split())


def test_history_error_lists_the_valid_checks(tmp_path):
    workspace = init_workspace(tmp_path / "ws")

    with pytest.raises(ConfigError) as raised:
        quality_history(workspace, kind="dpi", check="volumee")

    listed = str(raised.value).split("expected one of ")[1].split(", ")
    assert {"volume", "missing", "freshness", "identity"} <= set(listed)


@pytest.mark.parametrize(
    "quality",
    [
        {"checks": {"missing": {"threshold": 5}}},
        {"checks": {"identity": {"threshold": 1.5}}},
        {"sources": {"dpi": {"duplicates": {"threshold": 2}}}},
    ],
)
def test_share_threshold_above_one_is_refused(quality):
    with pytest.raises(ConfigError, match="share between 0 and 1"):
        parse_config({"quality": quality}, "test configuration")


def test_checks_entry_may_set_severity_or_threshold_alone():
    config = parse_config(
        {
            "quality": {
                "checks": {
                    "missing": {"severity": "warn"},
                    "freshness": {"threshold": 6},
                }
            }
        },
        "test configuration",
    )

    default = Config().quality.checks
    assert config.quality.checks.missing.severity == "warn"
    assert config.quality.checks.missing.threshold == default.missing.threshold
    assert config.quality.checks.freshness.threshold == 6
    assert config.quality.checks.freshness.severity == default.freshness.severity


def test_json_passed_answers_the_fail_on_level(clean, dirty):
    for (workspace, _, _), fail_on, expected in (
        (clean, "warn", True),
        (dirty, "error", False),
    ):
        result = runner.invoke(
            app,
            ["quality", "-w", str(workspace.root), "--fail-on", fail_on, "--json"],
        )

        summary = json.loads(result.stdout)
        assert summary["fail_on"] == fail_on
        assert summary["passed"] is expected
        assert result.exit_code == (0 if expected else 1)
