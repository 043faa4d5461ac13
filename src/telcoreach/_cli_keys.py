"""Commands for keys and national cryptography: ``keys``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from telcoreach.cli import (
    DebugOption,
    JsonOption,
    WorkspaceOption,
    _emit,
    _progress,
    _run,
    _workspace,
    app,
    out,
)

keys_app = typer.Typer(
    help="Rotate the pseudonymisation key; show it and the retired keys.",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")


@keys_app.command("rotate")
def keys_rotate(
    ids: Annotated[
        list[Path] | None,
        typer.Option(
            "--ids",
            help="Raw CSV/Parquet files or folders with msisdn/imsi/imei columns "
            "(the ingested inputs or a subscriber register); repeatable.",
        ),
    ] = None,
    drop_unmatched: Annotated[
        bool,
        typer.Option(
            "--drop-unmatched",
            help="Delete rows whose token has no raw id in --ids instead of refusing.",
        ),
    ] = False,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Make a new key and re-tokenise lake, warehouse and forget list with it.

    Old tokens stay resolvable for privacy.key_retention_days through an
    SM4-GCM encrypted token map. Run it again to finish an interrupted one.
    """
    from telcoreach.privacy import rotate_key

    def action() -> dict[str, Any]:
        with _progress() as progress:
            return rotate_key(
                _workspace(workspace),
                list(ids or []),
                drop_unmatched=drop_unmatched,
                progress=progress,
            )

    _emit(_run(debug, action), as_json, "key rotated")


@keys_app.command("status")
def keys_status(
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Show the key's fingerprint, origin and age, and the retired keys."""
    from telcoreach.privacy import key_status

    summary = _run(debug, lambda: key_status(_workspace(workspace)))
    if as_json:
        _emit(summary, True, "")
        return
    _emit({k: v for k, v in summary.items() if k != "retired"}, False, "key")
    if summary["retired"]:
        table = Table(title="retired keys", title_justify="left")
        for column in ("fingerprint", "retired at", "resolvable until", "tokens"):
            table.add_column(column)
        for item in summary["retired"]:
            until = item["resolvable_until"] if item["resolvable"] else "expired"
            table.add_row(
                item["fingerprint"], item["retired_at"], until, str(item["tokens"])
            )
        out.print(table)


@keys_app.command("resolve")
def keys_resolve(
    tokens: Annotated[list[str], typer.Argument(help="Old subscriber tokens.")],
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Translate tokens made with a retired key into current tokens."""
    from telcoreach.privacy import resolve_tokens

    resolved = _run(debug, lambda: resolve_tokens(_workspace(workspace), tokens))
    _emit(dict(zip(tokens, resolved.to_pylist(), strict=True)), as_json, "resolved")
