"""Commands for private set intersection: ``psi serve`` and ``psi join``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from telcoreach.cli import (
    DebugOption,
    JsonOption,
    WorkspaceOption,
    _emit,
    _progress,
    _run,
    _workspace,
    app,
    err,
)

psi_app = typer.Typer(
    no_args_is_help=True,
    help="Private set intersection: find shared customers, reveal nothing else.",
)
app.add_typer(psi_app, name="psi")

InputOption = Annotated[
    Path,
    typer.Option("--input", "-i", help="CSV with one identifier per row."),
]
PortOption = Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")]
ColumnOption = Annotated[str, typer.Option(help="Identifier column of the CSV.")]
KindOption = Annotated[str, typer.Option(help="Identifier kind: msisdn, imsi, imei.")]
CurveOption = Annotated[
    str, typer.Option(help="x25519 (fast) or sm2 (national standard, slower).")
]
CardinalityOption = Annotated[
    bool,
    typer.Option(
        "--cardinality-only",
        help="The joining side learns only how many are shared; nothing is written.",
    ),
]
OutOption = Annotated[
    Path | None,
    typer.Option(
        "--out", help="CSV of shared tokens (default exports/psi-ROLE-TIME.csv)."
    ),
]
PurposeOption = Annotated[str, typer.Option(help="Purpose, for the audit log.")]
EnterpriseOption = Annotated[
    str | None,
    typer.Option(
        help="The partner: only subscribers with consent sharing:NAME take part "
        "(required by serve unless --purpose is sharing:NAME).",
    ),
]
WorkersOption = Annotated[
    int | None, typer.Option(min=1, help="Processes for the curve arithmetic.")
]
BatchOption = Annotated[int, typer.Option(min=1, help="Points per network frame.")]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=1.0, help="Longest silence of the peer (s).")
]


def _session(
    debug: bool,
    curve: str,
    workers: int | None,
    call: Callable[[Any, Any], dict[str, Any]],
) -> dict[str, Any]:
    from telcoreach.privacy.psi import CurvePool

    def action() -> dict[str, Any]:
        # The worker processes start before the progress bar's thread does.
        with CurvePool(curve, workers) as pool, _progress() as progress:
            return call(pool, progress)

    return _run(debug, action)


@psi_app.command("serve")
def psi_serve(
    input_path: InputOption,
    port: PortOption,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    column: ColumnOption = "msisdn",
    kind: KindOption = "msisdn",
    curve: CurveOption = "x25519",
    cardinality_only: CardinalityOption = False,
    out: OutOption = None,
    purpose: PurposeOption = "customer matching",
    enterprise: EnterpriseOption = None,
    workers: WorkersOption = None,
    batch: BatchOption = 65536,
    timeout: TimeoutOption = 60.0,
    wait: Annotated[
        float, typer.Option(min=1.0, help="How long to wait for a joiner (s).")
    ] = 300.0,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Wait for one party to join, then intersect (port 0 picks a free port)."""
    from telcoreach.privacy.psi import serve_psi

    def listening(bound_host: str, bound_port: int) -> None:
        err.print(f"PSI server listening on {bound_host}:{bound_port}", highlight=False)

    summary = _session(
        debug,
        curve,
        workers,
        lambda pool, progress: serve_psi(
            _workspace(workspace),
            input_path,
            port=port,
            host=host,
            wait_s=wait,
            on_listen=listening,
            column=column,
            kind=kind,
            curve=curve,
            cardinality_only=cardinality_only,
            out=out,
            purpose=purpose,
            enterprise=enterprise,
            batch=batch,
            timeout_s=timeout,
            pool=pool,
            progress=progress,
        ),
    )
    _emit(summary, as_json, "private set intersection (serve)")


@psi_app.command("join")
def psi_join(
    input_path: InputOption,
    port: PortOption,
    host: Annotated[str, typer.Option(help="Address of the server.")] = "127.0.0.1",
    column: ColumnOption = "msisdn",
    kind: KindOption = "msisdn",
    curve: CurveOption = "x25519",
    cardinality_only: CardinalityOption = False,
    out: OutOption = None,
    purpose: PurposeOption = "customer matching",
    enterprise: EnterpriseOption = None,
    workers: WorkersOption = None,
    batch: BatchOption = 65536,
    timeout: TimeoutOption = 60.0,
    connect_timeout: Annotated[
        float, typer.Option(min=0.0, help="How long to retry connecting (s).")
    ] = 30.0,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Connect to a server and intersect; this side computes the intersection."""
    from telcoreach.privacy.psi import join_psi

    summary = _session(
        debug,
        curve,
        workers,
        lambda pool, progress: join_psi(
            _workspace(workspace),
            input_path,
            host=host,
            port=port,
            connect_timeout_s=connect_timeout,
            column=column,
            kind=kind,
            curve=curve,
            cardinality_only=cardinality_only,
            out=out,
            purpose=purpose,
            enterprise=enterprise,
            batch=batch,
            timeout_s=timeout,
            pool=pool,
            progress=progress,
        ),
    )
    _emit(summary, as_json, "private set intersection (join)")
