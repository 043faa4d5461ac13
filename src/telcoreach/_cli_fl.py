"""Commands for federated learning: ``fl train`` and ``fl demo``."""

from __future__ import annotations

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
)

fl_app = typer.Typer(
    help="Vertical federated learning between a carrier and an enterprise.",
    no_args_is_help=True,
)
app.add_typer(fl_app, name="fl")

_Epochs = Annotated[int, typer.Option(min=1, help="Rounds of gradient descent.")]
_LearningRate = Annotated[
    float, typer.Option(min=0.0, max=2.0, help="Step on the preconditioned gradient.")
]
_Momentum = Annotated[float, typer.Option(min=0.0, max=0.99, help="Nesterov momentum.")]
_L2 = Annotated[
    float, typer.Option(min=0.0, help="L2 penalty on the mean log-loss (C=1/(l2 n)).")
]
_Seed = Annotated[int, typer.Option(help="Seed of the held-out split (same on both).")]
_TestSize = Annotated[
    float, typer.Option(min=0.01, max=0.99, help="Share of ids held out.")
]


def _settings(epochs, learning_rate, momentum, l2, seed, test_size):
    from telcoreach.federated import TrainingSettings

    return TrainingSettings(
        epochs=epochs,
        learning_rate=learning_rate,
        momentum=momentum,
        l2=l2,
        seed=seed,
        test_size=test_size,
    )


@fl_app.command("train")
def fl_train(
    role: Annotated[str, typer.Option(help="guest (label holder) or host.")],
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port of the host.")],
    data: Annotated[Path, typer.Option(help="This party's CSV or Parquet file.")],
    id_column: Annotated[str, typer.Option(help="Shared id (PSI token) column.")],
    label: Annotated[
        str | None, typer.Option(help="Label column (guest only).")
    ] = None,
    features: Annotated[
        str | None, typer.Option(help="Comma-separated feature columns [all].")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on / connect to.")] = (
        "127.0.0.1"
    ),
    out: Annotated[
        Path | None, typer.Option("--out", help="Model card folder [workspace models].")
    ] = None,
    name: Annotated[str, typer.Option(help="Model name.")] = "federated-lr",
    epochs: _Epochs = 30,
    learning_rate: _LearningRate = 1.0,
    momentum: _Momentum = 0.5,
    l2: _L2 = 1e-3,
    seed: _Seed = 0,
    test_size: _TestSize = 0.25,
    timeout: Annotated[
        float, typer.Option(min=1.0, help="Seconds to wait for the peer.")
    ] = 120.0,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Train as one party; the host listens, the guest connects (one process each).

    The guest proposes the settings; the host adopts them (it must be given the
    same --seed and --test-size). Each party writes a card with its own
    coefficients only.
    """
    from telcoreach.federated import train_party

    def action() -> dict[str, Any]:
        ws = _workspace(workspace) if out is None or workspace is not None else None
        folder = out if out is not None else ws.root / "models"
        with _progress() as progress:
            summary = train_party(
                role,
                data,
                id_column,
                port=port,
                host=host,
                label=label,
                features=[c.strip() for c in features.split(",")] if features else None,
                settings=_settings(
                    epochs, learning_rate, momentum, l2, seed, test_size
                ),
                out_dir=folder,
                name=name,
                timeout_s=timeout,
                progress=progress,
            )
        if ws is not None:
            ws.record_use(
                f"fl train ({role})",
                "federated model training",
                tables=[Path(data).name],
                subscribers=summary["rows_train"] + summary["rows_test"],
                output=summary.get("card"),
                details={"peer": f"{host}:{port}", "test_auc": summary["test_auc"]},
            )
        return summary

    _emit(_run(debug, action), as_json, f"federated {role}")


@fl_app.command("demo")
def fl_demo(
    data_dir: Annotated[
        Path | None, typer.Option(help="Public data folder [$TELCOREACH_DATA].")
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the split files and cards.")
    ] = Path("telcoreach-fl-demo"),
    epochs: _Epochs = 30,
    learning_rate: _LearningRate = 1.0,
    momentum: _Momentum = 0.5,
    l2: _L2 = 1e-3,
    seed: _Seed = 0,
    test_size: _TestSize = 0.25,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Split bank marketing, run both parties as processes, compare with sklearn."""
    from telcoreach.federated import run_demo
    from telcoreach.ingest import default_data_dir

    def action() -> dict[str, Any]:
        return run_demo(
            data_dir or default_data_dir(),
            out,
            _settings(epochs, learning_rate, momentum, l2, seed, test_size),
        )

    _emit(_run(debug, action), as_json, "federated LR on bank marketing")
