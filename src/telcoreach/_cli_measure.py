"""Commands of the ``measure`` stage: ``attribute`` and ``abtest``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from typer.core import TyperGroup

from telcoreach.cli import DebugOption, JsonOption, _emit, _run, app, err, out


class _AnalyseByDefault(TyperGroup):
    """Route ``abtest RESULTS ...`` to ``abtest analyse RESULTS ...``."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["analyse", *args]
        return super().parse_args(ctx, args)


abtest_app = typer.Typer(
    cls=_AnalyseByDefault,
    no_args_is_help=True,
    help="Analyse (default), plan and assign A/B tests.",
)
app.add_typer(abtest_app, name="abtest")

_Column = Annotated[str | None, typer.Option()]


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


@abtest_app.command("analyse")
def abtest_analyse(
    results: Annotated[Path, typer.Argument(help="One row per person (CSV/Parquet).")],
    metric: Annotated[str, typer.Option(help="conversion, revenue or roi.")] = (
        "conversion"
    ),
    variant: Annotated[str | None, typer.Option(help="Variant column.")] = None,
    outcome: Annotated[str | None, typer.Option(help="Outcome column.")] = None,
    revenue: Annotated[str | None, typer.Option(help="Revenue column.")] = None,
    cost: Annotated[str | None, typer.Option(help="Cost column.")] = None,
    pre: Annotated[str | None, typer.Option(help="Pre-period column (CUPED).")] = None,
    user: Annotated[str | None, typer.Option(help="Person column (unique).")] = None,
    control: Annotated[str | None, typer.Option(help="Control variant.")] = None,
    split: Annotated[
        str | None, typer.Option(help="Planned split, e.g. sms=45,push=45,none=10.")
    ] = None,
    alpha: Annotated[float, typer.Option(help="Significance level.")] = 0.05,
    correction: Annotated[str, typer.Option(help="holm, bonferroni or none.")] = (
        "holm"
    ),
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Compare each variant with the control: lift, interval, p-value, SRM check."""
    from telcoreach.measure import run_abtest

    summary = _run(
        debug,
        lambda: run_abtest(
            results,
            metric=metric,
            variant=variant,
            outcome=outcome,
            revenue=revenue,
            cost=cost,
            pre=pre,
            user=user,
            control=control,
            expected_split=split,
            alpha=alpha,
            correction=correction,
        ),
    )
    for warning in summary["warnings"]:
        err.print(f"[bold red]WARNING:[/] {warning}", soft_wrap=True, highlight=False)
    if as_json:
        _emit(summary, True, "")
        return
    table = Table(title=summary["method"], title_justify="left")
    for column in ("treatment", "vs", "difference", "interval", "lift", "p adj", "p"):
        table.add_column(column)
    for c in summary["comparisons"]:
        lift = "-" if c["lift"] is None else f"{c['lift']:+.2%}"
        table.add_row(
            c["treatment"],
            c["control"],
            _number(c["difference"]),
            f"[{_number(c['ci_low'])}, {_number(c['ci_high'])}]",
            lift,
            _number(c["p_value"]),
            _number(c["p_value_raw"]),
        )
    out.print(table)
    out.print(f"sample-ratio check p = {summary['srm_p_value']:.3g}")


@abtest_app.command("plan")
def abtest_plan(
    baseline: Annotated[float, typer.Option(help="Control rate, e.g. 0.02.")],
    mde: Annotated[float, typer.Option(help="Smallest effect worth detecting.")],
    absolute: Annotated[
        bool, typer.Option("--absolute", help="MDE in rate points, not relative.")
    ] = False,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: Annotated[float, typer.Option(help="Treatment per control person.")] = 1.0,
    variants: Annotated[int, typer.Option(help="Arms including the control.")] = 2,
    daily_reach: Annotated[
        int | None, typer.Option(help="People reachable per day.")
    ] = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """How many people each arm needs (and how many days at a daily reach)."""
    from telcoreach.measure import run_abtest_plan

    summary = _run(
        debug,
        lambda: run_abtest_plan(
            baseline,
            mde,
            relative=not absolute,
            alpha=alpha,
            power=power,
            ratio=ratio,
            variants=variants,
            daily_reach=daily_reach,
        ),
    )
    _emit(summary, as_json, "sample size")


@abtest_app.command("assign")
def abtest_assign(
    audience: Annotated[Path, typer.Argument(help="Audience CSV/Parquet of tokens.")],
    salt: Annotated[str, typer.Option(help="Experiment name mixed into the hash.")],
    variants: Annotated[str, typer.Option(help="Weights, e.g. sms=1,push=1.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")],
    holdout: Annotated[float, typer.Option(help="Share never contacted.")] = 0.1,
    token_column: Annotated[str, typer.Option(help="Token column.")] = "subscriber",
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Split an audience deterministically by SHA-256(salt:token), with a holdout."""
    from telcoreach.measure import run_abtest_assign

    summary = _run(
        debug,
        lambda: run_abtest_assign(
            audience,
            salt=salt,
            variants=variants,
            out=output,
            holdout=holdout,
            token_column=token_column,
        ),
    )
    _emit(summary, as_json, "assignment")


@app.command()
def attribute(
    journeys: Annotated[
        Path, typer.Argument(help="Touches (user,ts,channel,...) or aggregated paths.")
    ],
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="Model to run (repeatable); default: all."),
    ] = None,
    costs: Annotated[
        Path | None, typer.Option(help="Spend per channel (CSV channel,cost_yuan).")
    ] = None,
    half_life_days: Annotated[float, typer.Option(min=0.0)] = 7.0,
    position_shares: Annotated[
        str, typer.Option(help="First,middle,last shares of position-based.")
    ] = "0.4,0.2,0.4",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help=".json, .csv or .parquet")
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(help="Also write an HTML report (tables, charts) here."),
    ] = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Credit conversions to channels: heuristics, Markov removal effect, Shapley."""
    from telcoreach.measure import run_attribution
    from telcoreach.reports import build_attribution_report

    shares = tuple(float(part) for part in position_shares.split(","))
    summary = _run(
        debug,
        lambda: run_attribution(
            journeys,
            model or None,
            costs,
            output,
            half_life_days=half_life_days,
            position_shares=shares,
        ),
    )
    if report is not None:
        written = _run(debug, lambda: build_attribution_report(summary, report))
        err.print(f"report written to {written['path']}", highlight=False)
    if as_json:
        sys.stdout.write(json.dumps(summary["rows"], ensure_ascii=False) + "\n")
        return
    models = list(dict.fromkeys(row["model"] for row in summary["rows"]))
    table = Table(title="conversions credited per channel", title_justify="left")
    table.add_column("channel", style="bold")
    for name in models:
        table.add_column(name, justify="right")
    credit = {(r["model"], r["channel"]): r["conversions"] for r in summary["rows"]}
    for channel in dict.fromkeys(row["channel"] for row in summary["rows"]):
        table.add_row(
            channel, *(f"{credit.get((name, channel), 0):,.1f}" for name in models)
        )
    out.print(table)
