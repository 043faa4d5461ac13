"""Command-line interface: parse arguments, call one function, print its summary.

Human-readable output and progress bars go to the terminal (progress on
stderr); ``--json`` prints the same summary as JSON on stdout. Errors raised
on purpose (:class:`~telcoreach.errors.TelcoreachError`) become a one-line
message and exit status 1; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from telcoreach import pipeline
from telcoreach.errors import ConfigError, QualityGateError, TelcoreachError
from telcoreach.privacy import KEY_ENV
from telcoreach.workspace import Workspace, default_workspace_path

app = typer.Typer(
    name="telcoreach",
    help="Lawful, privacy-first customer acquisition from carrier network data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
audit_app = typer.Typer(help="Check the audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")

out = Console()
err = Console(stderr=True)

WorkspaceOption = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace folder (default: $TELCOREACH_WORKSPACE, else "
        "./telcoreach-workspace).",
        show_default=False,
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the summary as JSON on stdout.")
]
DebugOption = Annotated[
    bool, typer.Option("--debug", help="Show tracebacks and debug logs.")
]
EngineOption = Annotated[
    str | None, typer.Option("--engine", help="duckdb (default) or spark.")
]


def _setup_logging(debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@contextmanager
def _progress(enabled: bool = True):
    """Yield a progress callback drawing a Rich bar on stderr."""
    if not enabled or not err.is_terminal:
        yield None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=1)

        def callback(description: str, done: int, total: int) -> None:
            bar.update(task, description=description, completed=done, total=total)

        yield callback


def _emit(summary: Any, as_json: bool, title: str) -> None:
    """Print a summary dict as JSON or as a readable table."""
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2, ensure_ascii=False, default=str))
        sys.stdout.write("\n")
        return
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("key", style="bold")
    table.add_column("value")
    items = summary.items() if isinstance(summary, dict) else enumerate(summary)
    for key, value in items:
        if isinstance(value, dict | list):
            value = json.dumps(value, ensure_ascii=False, default=str)
            if len(value) > 400:
                value = value[:400] + " ..."
        table.add_row(str(key), str(value))
    out.print(table)


def _run(debug: bool, action: Callable[[], Any]) -> Any:
    _setup_logging(debug)
    try:
        return action()
    except TelcoreachError as error:
        if debug:
            raise
        err.print(f"[bold red]error:[/] {error}", soft_wrap=True, highlight=False)
        raise typer.Exit(1) from None
    except OSError as error:
        if debug:
            raise
        if error.filename:
            message = (
                f"cannot read or write {error.filename}: {error.strerror or error}; "
                "check the path exists, is a folder where a folder is expected, "
                "and is writable"
            )
        elif error.errno == errno.EADDRINUSE:
            message = (
                f"{error.strerror}: another process listens on that port; "
                "choose another --port or stop that process"
            )
        else:
            message = f"operating-system error: {error.strerror or error}"
        err.print(f"[bold red]error:[/] {message}", soft_wrap=True, highlight=False)
        raise typer.Exit(1) from None
    except UnicodeDecodeError as error:
        if debug:
            raise
        err.print(
            f"[bold red]error:[/] a file is not UTF-8 text ({error.reason} at byte "
            f"{error.start}); convert it, e.g. `iconv -f gbk -t utf-8 FILE > OUT`",
            soft_wrap=True,
            highlight=False,
        )
        raise typer.Exit(1) from None


def _workspace(path: Path | None) -> Workspace:
    return Workspace.open(path or default_workspace_path())


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create.")],
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Create a workspace: config, key (0600), lake, warehouse, audit log."""

    def action() -> dict[str, Any]:
        workspace = pipeline.init_workspace(directory)
        return {
            "workspace": str(workspace.root),
            "config": str(workspace.root / "config.yaml"),
            "key": f"${KEY_ENV}"
            if os.environ.get(KEY_ENV)
            else str(workspace.key_path),
        }

    _emit(_run(debug, action), as_json, "workspace ready")


@app.command()
def ingest(
    kind: Annotated[str, typer.Argument(help="Record kind, e.g. signalling, dpi.")],
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Files or folders to ingest.")
    ] = None,
    adapter: Annotated[
        str,
        typer.Option(
            help="csv, parquet, or a public-data adapter (geolife, "
            "beijing_cells, subway, talkingdata, bank_marketing, weather)."
        ),
    ] = "csv",
    layer: Annotated[
        str | None, typer.Option(help="Cell layer for cell adapters: city|virtual.")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Public data folder [$TELCOREACH_DATA].")
    ] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Validate, pseudonymise and store a batch; bad rows go to quarantine."""

    def action() -> dict[str, Any]:
        with _progress() as progress:
            return pipeline.run_ingest(
                _workspace(workspace),
                kind,
                list(paths or []),
                adapter=adapter,
                options={"layer": layer} if layer else None,
                data_dir=data_dir,
                progress=progress,
            )

    summary = _run(debug, action)
    _emit(summary, as_json, f"ingest {kind}")


@app.command()
def simulate(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write.")],
    subscribers: Annotated[int, typer.Option(min=1)] = 20_000,
    days: Annotated[int, typer.Option(min=1)] = 7,
    seed: int = 0,
    dirty: Annotated[
        float, typer.Option(min=0.0, max=0.2, help="Share of dirty records.")
    ] = 0.0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing city in --out.")
    ] = False,
    events_per_day: Annotated[int, typer.Option(min=1)] = 50,
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    data_dir: Annotated[Path | None, typer.Option()] = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Write a synthetic city in carrier formats, with a hidden ground truth."""
    from telcoreach.ingest import default_data_dir
    from telcoreach.simulate import simulate_city

    def action() -> dict[str, Any]:
        return simulate_city(
            out_dir,
            subscribers=subscribers,
            days=days,
            seed=seed,
            dirty_rate=dirty,
            events_per_day=events_per_day,
            data_dir=data_dir or default_data_dir(),
            fmt=fmt,
            overwrite=overwrite,
        ).to_dict()

    _emit(_run(debug, action), as_json, "simulated city")


@app.command()
def profile(
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Build one profile row per subscriber from the lake."""
    summary = _run(debug, lambda: pipeline.run_profile(_workspace(workspace), engine))
    _emit(summary, as_json, "profiles")


@app.command()
def staypoints(
    positions: Annotated[Path, typer.Argument(help="CSV of user_id,ts,lat,lon.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="CSV to write.")],
    dist_m: Annotated[float, typer.Option(min=0.0)] = 100.0,
    time_min: Annotated[float, typer.Option(min=0.0)] = 5.0,
    gap_min: Annotated[float, typer.Option(min=0.0)] = 15.0,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Detect stay points in any CSV of positions."""
    from telcoreach.features import staypoints_csv

    summary = _run(
        debug,
        lambda: staypoints_csv(
            positions, output, dist_m=dist_m, time_min=time_min, gap_min=gap_min
        ),
    )
    _emit(summary, as_json, "stay points")


@app.command()
def segment(
    rules: Annotated[Path | None, typer.Option(help="Tier rules YAML.")] = None,
    estimate: Annotated[
        bool, typer.Option("--estimate", help="Print tier sizes, write nothing.")
    ] = False,
    explain: Annotated[
        str | None, typer.Option("--explain", help="Explain one subscriber token.")
    ] = None,
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Assign tiers with declarative rules (first match wins)."""
    summary = _run(
        debug,
        lambda: pipeline.run_segment(
            _workspace(workspace),
            rules,
            estimate=estimate,
            explain_token=explain,
            engine_name=engine,
        ),
    )
    if explain is not None and not as_json and "text" in summary:
        out.print(summary["text"])
        return
    _emit(summary, as_json, "tiers")


@app.command()
def train(
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Fit the propensity model (LR, LightGBM beside it) and register it."""
    summary = _run(debug, lambda: pipeline.run_train(_workspace(workspace)))
    _emit(summary, as_json, "model")


@app.command()
def score(
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Write a propensity for every profiled subscriber."""
    summary = _run(debug, lambda: pipeline.run_score(_workspace(workspace)))
    _emit(summary, as_json, "scores")


@app.command()
def audience(
    segment_name: Annotated[
        str | None, typer.Option("--segment", help="Tier to export.")
    ] = None,
    top: Annotated[int | None, typer.Option(min=1)] = None,
    output: Annotated[Path | None, typer.Option("--out", help="CSV to write.")] = None,
    group_by: Annotated[
        str | None,
        typer.Option(help="Comma-separated columns: export counts, checked for k."),
    ] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Export consented subscribers of a tier, ranked by propensity."""
    summary = _run(
        debug,
        lambda: pipeline.run_audience(
            _workspace(workspace),
            segment_name,
            top,
            output,
            group_by=[c.strip() for c in group_by.split(",")] if group_by else None,
        ),
    )
    _emit(summary, as_json, "audience")


@app.command()
def report(
    truth: Annotated[
        Path | None, typer.Option(help="Simulator ground truth, for accuracy.")
    ] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Write reports/index.html."""
    summary = _run(
        debug, lambda: pipeline.run_report(_workspace(workspace), truth=truth)
    )
    _emit(summary, as_json, "report")


@app.command()
def run(
    config: Annotated[Path, typer.Option(help="Run configuration YAML.")],
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Run every step on the sources of a configuration (e.g. real data)."""

    stopped: list[QualityGateError] = []

    def action() -> dict[str, Any]:
        settings = pipeline.load_run_config(config)
        if engine is not None:
            if engine not in ("duckdb", "spark"):
                raise ConfigError(f"--engine must be duckdb or spark, found {engine!r}")
            # Later commands on this workspace must read the tables where
            # this engine stores them.
            settings = settings.model_copy(
                update={"engine": settings.engine.model_copy(update={"name": engine})}
            )
        target = workspace or default_workspace_path()
        ws = pipeline.init_workspace(target, settings)
        with _progress() as progress:
            try:
                return pipeline.run_all(ws, progress=progress, engine_name=engine)
            except QualityGateError as error:
                if not as_json:
                    raise
                # Machines get the summary of what ran, and the exit status.
                stopped.append(error)
                return error.summary

    summary = _run(debug, action)
    if as_json:
        _emit(summary, True, "run")
        if stopped:
            err.print(f"[bold red]error:[/] {stopped[0]}", soft_wrap=True)
            raise typer.Exit(1)
        return
    _print_run(summary)


@app.command()
def demo(
    directory: Annotated[Path, typer.Option("--workspace", "-w")] = Path(
        "telcoreach-demo"
    ),
    subscribers: Annotated[int, typer.Option(min=50)] = 20_000,
    days: Annotated[int, typer.Option(min=2)] = 7,
    seed: int = 42,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Simulate a city and run the whole job on it; print the report path."""

    def action() -> dict[str, Any]:
        with _progress() as progress:
            return pipeline.run_demo(
                directory,
                subscribers=subscribers,
                days=days,
                seed=seed,
                progress=progress,
            )

    summary = _run(debug, action)
    if as_json:
        _emit(summary, True, "demo")
        return
    _print_run(summary)


def _print_run(summary: dict[str, Any]) -> None:
    steps = summary["steps"]
    table = Table(title=f"telcoreach run: {summary.get('city')}", title_justify="left")
    table.add_column("step", style="bold")
    table.add_column("result")
    for label, result in steps["ingest"].items():
        table.add_row(
            f"ingest {label}",
            f"{result['rows_stored']:,} stored, {result['rows_quarantined']:,} "
            f"quarantined ({result['status']})",
        )
    quality = steps.get("quality")
    if quality:
        warnings = quality.get("warnings", [])
        table.add_row(
            "quality",
            f"{'passed' if quality['passed'] else 'failed'}: "
            f"{len(quality['errors'])} errors, {len(warnings)} warnings"
            + "".join(f"\n- {warning}" for warning in warnings),
        )
    prof = steps["profile"]
    table.add_row(
        "profile",
        f"{prof['subscribers']:,} subscribers, "
        f"{prof['home_cells_found']:,} home cells, "
        f"{prof['work_cells_found']:,} work cells, "
        f"{prof['subway_commuters']:,} subway commuters",
    )
    tiers = steps["segment"].get("tiers", [])
    table.add_row(
        "segment", ", ".join(f"{t['name']}: {t['subscribers']:,}" for t in tiers) or "-"
    )
    metrics = steps["train"].get("metrics", {})
    table.add_row(
        "train",
        ", ".join(f"{name} AUC {m['auc']:.3f}" for name, m in metrics.items()) or "-",
    )
    scored = steps["score"]
    table.add_row("score", scored.get("reason") or f"{scored['scored']:,} scored")
    chosen = steps["audience"]
    table.add_row(
        "audience",
        chosen.get("reason")
        or f"{chosen['exported']:,} of {chosen['in_segment']:,} in "
        f"{chosen['segment']!r} ({chosen['excluded_no_consent']:,} without "
        f"consent, {chosen['excluded_opted_out']:,} opted out) -> {chosen['output']}",
    )
    evaluation = steps["report"].get("evaluation")
    if evaluation:
        table.add_row(
            "accuracy",
            f"home {evaluation['home_cell_accuracy']:.1%}, work "
            f"{evaluation['work_cell_accuracy']:.1%}",
        )
    out.print(table)
    out.print(f"[bold green]report:[/] {summary.get('report')}")
    out.print(f"took {summary.get('seconds')} s")


@audit_app.command("verify")
def audit_verify(
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Check the hash chain of audit.log; name the first broken line."""

    result = _run(debug, lambda: _workspace(workspace).verify_audit())
    _emit(result.to_dict(), as_json, "audit log")
    if not result.ok:
        raise typer.Exit(1)


def main() -> None:
    """Entry point of the ``telcoreach`` command."""
    app()


# Stage command groups register themselves on ``app``.
from telcoreach import (  # noqa: E402, F401
    _cli_fetch,
    _cli_fl,
    _cli_keys,
    _cli_measure,
    _cli_psi,
    _cli_quality,
    _cli_rights,
)

if __name__ == "__main__":
    # Run as a script, this file is a second copy of the module: the command
    # groups registered themselves on the imported one.
    from telcoreach.cli import main as _imported_main

    _imported_main()
