"""Federated logistic regression on UCI bank marketing: time, bytes, AUC.

Run ``.venv/bin/python benchmarks/federated.py [--data-dir DIR] [--epochs N]``.

Splits ``bank-additional-full.csv.gz`` between a carrier (host) and a bank
(guest), runs both parties as separate processes over TCP on 127.0.0.1 and
prints, beside scikit-learn's logistic regression on the joined data (same
split, same penalty): held-out AUCs, wall time, bytes each way and messages.
It also measures python-paillier's encryption rate here, to show what the
textbook protocol (the guest encrypting every residual every epoch) would
cost on the same rows.
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import time
from pathlib import Path

from phe import paillier

from telcoreach.federated import TrainingSettings, run_demo
from telcoreach.ingest import default_data_dir


def _phe_encryptions_per_second(count: int = 100) -> float:
    public, _ = paillier.generate_paillier_keypair(n_length=2048)
    started = time.perf_counter()
    for _ in range(count):
        public.raw_encrypt(secrets.randbits(64))
    return count / (time.perf_counter() - started)


def main() -> None:
    """Parse arguments, run the demo, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        summary = run_demo(
            args.data_dir or default_data_dir(),
            folder,
            TrainingSettings(epochs=args.epochs),
        )
    rate = _phe_encryptions_per_second()
    textbook_s = summary["rows_train"] * summary["epochs"] / rate

    print(f"rows: {summary['rows_train']:,} train, {summary['rows_test']:,} test")
    print(
        f"features: guest {summary['guest_features']}, host "
        f"{summary['host_features']} (one-hot, standardised)"
    )
    print(f"{'':28}{'federated':>12}{'centralised':>14}")
    print(
        f"{'held-out AUC':28}{summary['federated_auc']:>12.4f}"
        f"{summary['centralised_auc']:>14.4f}"
    )
    print(f"AUC difference: {summary['auc_difference']:+.5f}")
    print(
        f"wall time: {summary['seconds']:.1f} s with process start "
        f"({summary['protocol_seconds']:.1f} s protocol), {summary['epochs']} rounds"
    )
    print(
        f"bytes: host->guest {summary['bytes_host_to_guest']:,}, guest->host "
        f"{summary['bytes_guest_to_host']:,}; messages {summary['messages']}"
    )
    print(
        f"python-paillier encryptions/s here: {rate:.0f}; encrypting every "
        f"residual every round would take about {textbook_s / 60:.0f} min"
    )


if __name__ == "__main__":
    main()
