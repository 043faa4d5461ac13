"""Commands of the delivery stage: ``fetch``."""

from __future__ import annotations

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
)


@app.command()
def fetch(
    source: Annotated[
        str, typer.Argument(help="Source name (or record kind) in the config.")
    ],
    ingest: Annotated[
        bool,
        typer.Option(
            "--ingest",
            help="Ingest every inbox file of the source not yet in the lake.",
        ),
    ] = False,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Pull new files of a source (folder, SFTP, HTTP) into the workspace inbox."""
    from telcoreach.fetch import fetch_source

    def action() -> dict[str, Any]:
        with _progress() as progress:
            return fetch_source(
                _workspace(workspace), source, ingest=ingest, progress=progress
            ).to_dict()

    _emit(_run(debug, action), as_json, f"fetch {source}")
