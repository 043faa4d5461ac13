"""Commands of the quality stage: ``quality``."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from telcoreach.cli import (
    DebugOption,
    EngineOption,
    JsonOption,
    WorkspaceOption,
    _emit,
    _progress,
    _run,
    _workspace,
    app,
    err,
    out,
)


def _print_checks(summary: dict[str, Any]) -> None:
    for line in summary["errors"]:
        out.print(f"[bold red]error[/] {escape(line)}", highlight=False)
    for line in summary["warnings"]:
        out.print(f"[yellow]warn[/]  {escape(line)}", highlight=False)
    for jump in summary["jumps"]:
        out.print(f"[yellow]jump:[/] {escape(jump)}", highlight=False)
    identity = summary.get("identity")
    if identity:
        out.print(
            f"identity: {identity['share']:.2%} of {identity['subscribers']:,} "
            "subscribers map one to one across channels",
            highlight=False,
        )
    verdict = "[bold green]passed[/]" if summary["passed"] else "[bold red]failed[/]"
    out.print(
        f"quality {verdict}: {summary['checks_run']} gates on the newest batches, "
        f"{len(summary['errors'])} errors, {len(summary['warnings'])} warnings, "
        f"{summary['rows_checked']:,} lake rows in {summary['seconds']} s",
        highlight=False,
    )


def _print_history(summary: dict[str, Any]) -> None:
    table = Table(title="quality history", title_justify="left")
    for column in ("kind", "check", "field", "days", "latest", "z", "jump"):
        table.add_column(column)
    for series in summary["series"]:
        latest = series["values"][-1]
        shown = (
            f"{latest:,.0f}"
            if series["check"] == "volume"
            else f"{latest:.1f} h"
            if series["check"] == "freshness"
            else f"{latest:.2%}"
        )
        z = series["z"][-1]
        table.add_row(
            series["kind"],
            series["check"],
            series["field"],
            str(len(series["days"])),
            shown,
            "-" if z is None else f"{z:+.1f}",
            "yes" if series["jumps"] else "",
        )
    out.print(table)
    for jump in summary["jumps"]:
        out.print(f"[yellow]jump:[/] {escape(jump)}", highlight=False)
    if not summary["jumps"]:
        out.print(f"no jumps over {len(summary['days'])} days", highlight=False)


@app.command()
def quality(
    fail_on: Annotated[
        str | None,
        typer.Option(
            "--fail-on",
            help="Exit 1 when a gate of this severity fails: error, or warn "
            "(warnings and errors).",
        ),
    ] = None,
    history: Annotated[
        bool,
        typer.Option(
            "--history", help="Show the daily trend of each figure and its jumps."
        ),
    ] = False,
    kind: Annotated[
        str | None, typer.Option(help="With --history: one record kind only.")
    ] = None,
    check: Annotated[
        str | None, typer.Option(help="With --history: one check only.")
    ] = None,
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Check the lake against the quality gates and store the results."""
    from telcoreach.pipeline import run_quality
    from telcoreach.quality import gate_error, quality_history

    if fail_on is not None and fail_on not in ("error", "warn"):
        err.print(
            f"[bold red]error:[/] --fail-on must be error or warn, found {fail_on!r}"
        )
        raise typer.Exit(1)

    if not history and (kind is not None or check is not None):
        err.print(
            "[bold red]error:[/] --kind and --check select the trend shown by "
            "--history; add --history (the gates always cover every kind)"
        )
        raise typer.Exit(1)

    if history:
        summary = _run(
            debug,
            lambda: quality_history(
                _workspace(workspace), engine, kind=kind, check=check
            ),
        )
        if as_json:
            _emit(summary, True, "quality history")
        else:
            _print_history(summary)
        return

    def action() -> dict[str, Any]:
        with _progress() as progress:
            return run_quality(_workspace(workspace), engine, progress=progress)

    summary = _run(debug, action)
    error = gate_error(summary, fail_on)
    if fail_on is not None:
        # "passed" answers the question asked: no failure at the --fail-on level.
        summary = {**summary, "fail_on": fail_on, "passed": error is None}
    if as_json:
        _emit(summary, True, "quality")
    else:
        _print_checks(summary)
    if error is not None:
        err.print(
            f"[bold red]error:[/] {escape(str(error))}", soft_wrap=True, highlight=False
        )
        raise typer.Exit(1)
