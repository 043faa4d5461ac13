"""Consent and data-subject rights: ``consent``, ``optout``, ``forget``, ``pia``."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from telcoreach.cli import (
    DebugOption,
    JsonOption,
    WorkspaceOption,
    _emit,
    _run,
    _workspace,
    app,
    err,
    out,
)

consent_app = typer.Typer(
    help="Record and show consent per subscriber token and purpose.",
    no_args_is_help=True,
)
app.add_typer(consent_app, name="consent")

_Tokens = Annotated[list[str], typer.Argument(help="Subscriber tokens.")]
_Purpose = Annotated[
    str,
    typer.Option(
        "--purpose",
        "-p",
        help="marketing_sms, marketing_call, profiling or sharing:<enterprise>.",
    ),
]
_Source = Annotated[
    str, typer.Option(help="Where the decision came from (form, call, app...).")
]
_At = Annotated[
    datetime | None,
    typer.Option(
        help="When the person decided (Beijing time) [default: now].",
        formats=[
            "%Y-%m-%d",
            "%Y-%m-%dT%H:%M:%S",
            "%Y-%m-%d %H:%M:%S",
            "%Y-%m-%dT%H:%M",
            "%Y-%m-%d %H:%M",
        ],
    ),
]


def _change(
    tokens: list[str],
    purpose: str,
    granted: bool,
    source: str,
    at: datetime | None,
    workspace: Path | None,
    allow_unknown: bool = False,
) -> dict[str, Any]:
    from telcoreach.privacy._consent import change_consent

    return change_consent(
        _workspace(workspace),
        tokens,
        purpose,
        granted,
        source=source,
        at=at,
        allow_unknown=allow_unknown,
    )


@consent_app.command("grant")
def consent_grant(
    tokens: _Tokens,
    purpose: _Purpose,
    source: _Source = "cli",
    at: _At = None,
    allow_unknown: Annotated[
        bool,
        typer.Option(
            "--allow-unknown",
            help="Record the grant even for tokens no lake table or profile holds.",
        ),
    ] = False,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Record that subscribers consented to a purpose."""
    summary = _run(
        debug,
        lambda: _change(tokens, purpose, True, source, at, workspace, allow_unknown),
    )
    _emit(summary, as_json, "consent granted")


@consent_app.command("revoke")
def consent_revoke(
    tokens: _Tokens,
    purpose: _Purpose,
    source: _Source = "cli",
    at: _At = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Record that subscribers withdrew consent; effective at the next read."""
    summary = _run(
        debug, lambda: _change(tokens, purpose, False, source, at, workspace)
    )
    _emit(summary, as_json, "consent revoked")


@consent_app.command("show")
def consent_show(
    token: Annotated[str, typer.Argument(help="Subscriber token.")],
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Show a subscriber's consent now, per purpose, and its history."""
    from rich.table import Table

    from telcoreach.privacy._consent import show_consent

    summary = _run(debug, lambda: show_consent(_workspace(workspace), token))
    if as_json:
        _emit(summary, True, "consent")
        return
    now = Table(title="consent now", title_justify="left")
    for column in ("purpose", "consented", "basis"):
        now.add_column(column)
    for purpose, state in summary["now"].items():
        now.add_row(purpose, "yes" if state["consented"] else "no", state["basis"])
    out.print(now)
    history = Table(title="history (oldest first)", title_justify="left")
    for column in ("at", "purpose", "decision", "source"):
        history.add_column(column)
    for event in summary["history"]:
        decision = "grant" if event["granted"] else "revoke"
        history.add_row(event["at"], event["purpose"], decision, event["source"])
    out.print(history)


@app.command()
def optout(
    tokens: Annotated[
        list[str] | None, typer.Argument(help="Subscriber tokens to opt out.")
    ] = None,
    replies: Annotated[
        Path | None,
        typer.Option(
            help="CSV of SMS replies (msisdn,text,received_at); numbers are "
            "tokenised on reading and never stored."
        ),
    ] = None,
    purpose: Annotated[
        list[str] | None,
        typer.Option(
            "--purpose",
            "-p",
            help="Purposes revoked (default: marketing_sms and marketing_call).",
        ),
    ] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Record opt-outs by token or from unsubscribe replies (TD, 退订, STOP...)."""
    from telcoreach.privacy import MARKETING_PURPOSES
    from telcoreach.privacy._consent import run_optout

    summary = _run(
        debug,
        lambda: run_optout(
            _workspace(workspace),
            list(tokens or []),
            replies,
            purposes=purpose or MARKETING_PURPOSES,
        ),
    )
    _emit(summary, as_json, "opt-out")


@app.command()
def forget(
    token: Annotated[str, typer.Argument(help="Subscriber token to erase.")],
    yes: Annotated[
        bool, typer.Option("--yes", help="Do not ask for confirmation.")
    ] = False,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Erase a subscriber from lake, warehouse and exports; prove it by re-scan."""
    from telcoreach.privacy._forget import run_forget

    if not yes:
        if not sys.stdin.isatty():
            err.print(
                "[bold red]error:[/] forget erases data for good and asks first; "
                "no terminal to ask on: pass --yes to erase without asking",
                soft_wrap=True,
            )
            raise typer.Exit(1)
        typer.confirm(
            "Erase this subscriber's data everywhere in the workspace? "
            "This cannot be undone",
            abort=True,
        )
    summary = _run(debug, lambda: run_forget(_workspace(workspace), token))
    if as_json:
        _emit(summary, True, "forget")
    else:
        from rich.table import Table

        table = Table(title="forget", title_justify="left")
        for column in ("table", "removed", "remaining"):
            table.add_column(column)
        for item in summary["tables"]:
            table.add_row(item["table"], str(item["removed"]), str(item["remaining"]))
        out.print(table)
        out.print(
            f"{summary['removed']} rows removed, {summary['remaining']} remaining; "
            f"{summary['files_rewritten']} lake files rewritten"
        )
    if not summary["complete"]:
        err.print(
            "[bold red]error:[/] rows remain after erasure: "
            + json.dumps([t for t in summary["tables"] if t["remaining"]])
        )
        raise typer.Exit(1)


@app.command()
def pia(
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder [default: reports/].")
    ] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Write a personal-information impact assessment (PIPL Art. 55-56)."""
    from telcoreach.privacy._pia import run_pia

    summary = _run(debug, lambda: run_pia(_workspace(workspace), out_dir))
    _emit(summary, as_json, "impact assessment")
