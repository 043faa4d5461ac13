"""Vertical federated logistic regression: two processes against scikit-learn."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from telcoreach.errors import ModelError
from telcoreach.federated import (
    Channel,
    TrainingSettings,
    held_out_mask,
    prepare_party,
    run_demo,
    run_guest,
    run_host,
)
from telcoreach.federated._demo import free_port, party_command
from telcoreach.federated._paillier import (
    HostCipher,
    pack_rows,
    unpack,
    weighted_sum,
)
from telcoreach.federated._protocol import PROTOCOL
from telcoreach.workspace import Workspace

GUEST_COLUMNS = [f"g{i}" for i in range(5)]
HOST_COLUMNS = [f"h{i}" for i in range(4)]
L2 = 1e-3


def _synthetic_parties(folder: Path, rows: int = 2000) -> tuple[Path, Path]:
    features, label = make_classification(
        n_samples=rows,
        n_features=9,
        n_informative=6,
        n_redundant=0,
        random_state=3,
    )
    ids = [f"person-{i:05d}" for i in range(rows)]
    guest = pd.DataFrame(features[:, :5], columns=GUEST_COLUMNS)
    guest.insert(0, "token", ids)
    guest["bought"] = label
    host = pd.DataFrame(features[:, 5:], columns=HOST_COLUMNS)
    host.insert(0, "token", ids)
    folder.mkdir(parents=True, exist_ok=True)
    guest.to_csv(folder / "guest.csv", index=False)
    host.sample(frac=1.0, random_state=0).to_csv(folder / "host.csv", index=False)
    return folder / "guest.csv", folder / "host.csv"


def _party(role: str, data: Path, port: int, out: Path, **options):
    command = party_command(
        role, data, port, out, id_column="token", timeout=60, **options
    )
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _run_both(guest_file: Path, host_file: Path, out: Path, **host_options):
    port = free_port()
    host = _party("host", host_file, port, out / "host", **host_options)
    guest = _party("guest", guest_file, port, out / "guest", label="bought")
    guest_out = guest.communicate(timeout=300)
    host_out = host.communicate(timeout=60)
    return (guest.returncode, *guest_out), (host.returncode, *host_out)


def _sklearn_reference(guest_file: Path, host_file: Path):
    joined = pd.read_csv(guest_file).merge(pd.read_csv(host_file), on="token")
    held_out = held_out_mask(joined["token"].to_numpy(dtype=object), 0, 0.25)
    columns = GUEST_COLUMNS + HOST_COLUMNS
    scaler = StandardScaler().fit(joined.loc[~held_out, columns])
    features = scaler.transform(joined[columns])
    model = LogisticRegression(C=1.0 / (L2 * (~held_out).sum()), max_iter=1000)
    model.fit(features[~held_out], joined["bought"][~held_out])
    auc = roc_auc_score(
        joined["bought"][held_out], model.decision_function(features[held_out])
    )
    return auc, dict(zip(columns, model.coef_[0], strict=True))


def test_two_processes_match_sklearn_auc_and_coefficients(tmp_path):
    guest_file, host_file = _synthetic_parties(tmp_path / "data")
    carrier = Workspace.create(tmp_path / "carrier")

    guest, host = _run_both(
        guest_file, host_file, tmp_path / "models", workspace=carrier.root
    )

    assert guest[0] == 0, guest[2]
    assert host[0] == 0, host[2]
    audited = [json.loads(line) for line in carrier.audit_path.read_text().splitlines()]
    assert audited[-1]["action"] == "fl train (host)"
    assert audited[-1]["output_sm3"]
    summary = json.loads(guest[1])
    reference_auc, reference_coefficients = _sklearn_reference(guest_file, host_file)
    assert summary["test_auc"] == pytest.approx(reference_auc, abs=0.01)
    guest_card = json.loads(Path(summary["card"]).read_text())
    host_card = json.loads(Path(json.loads(host[1])["card"]).read_text())
    assert set(guest_card["coefficients"]) == set(GUEST_COLUMNS)
    assert set(host_card["coefficients"]) == set(HOST_COLUMNS)
    learned = guest_card["coefficients"] | host_card["coefficients"]
    for column, expected in reference_coefficients.items():
        assert learned[column] == pytest.approx(expected, abs=0.02), column
    assert summary["bytes_received"] > 0 and summary["bytes_sent"] > 0


def test_parties_holding_different_ids_stop_with_a_clear_error(tmp_path):
    guest_file, host_file = _synthetic_parties(tmp_path / "data")
    host_rows = pd.read_csv(host_file)
    host_rows.iloc[:-10].to_csv(host_file, index=False)

    guest, host = _run_both(guest_file, host_file, tmp_path / "models")

    assert guest[0] == 1 and host[0] == 1
    for _, _, stderr in (guest, host):
        assert "different ids" in stderr
        assert "Traceback" not in stderr


def _threads(guest_data, host_data, settings=None):
    guest_socket, host_socket = socket.socketpair()
    guest_socket.settimeout(60)
    host_socket.settimeout(60)
    guest_channel = Channel(guest_socket, record=True)
    host_channel = Channel(host_socket, record=True)
    results = {}
    thread = threading.Thread(
        target=lambda: results.update(host=run_host(host_channel, host_data))
    )
    thread.start()
    results["guest"] = run_guest(
        guest_channel, guest_data, settings or TrainingSettings(epochs=10)
    )
    thread.join()
    guest_channel.close()
    host_channel.close()
    return results, guest_channel, host_channel


def _prepared(tmp_path):
    guest_file, host_file = _synthetic_parties(tmp_path, rows=600)
    guest = prepare_party(pd.read_csv(guest_file), "token", label="bought")
    host = prepare_party(pd.read_csv(host_file), "token")
    return guest, host


def test_host_receives_no_label_residual_or_guest_feature(tmp_path):
    guest, host = _prepared(tmp_path)

    _, _, host_channel = _threads(guest, host)

    kinds = [message.kind for message in host_channel.received]
    assert set(kinds) == {"hello", "gradient", "done"}
    for message in host_channel.received:
        assert message.arrays == {}
        assert set(message.meta) <= {
            "protocol",
            "role",
            "rows",
            "ids_sha256",
            "features",
            "settings",
            "epoch",
            "test_auc",
        }
    gradient = [m for m in host_channel.received if m.kind == "gradient"]
    assert all(len(m.blob) == 512 for m in gradient)  # one ciphertext each


def test_guest_receives_host_rows_only_encrypted(tmp_path):
    guest, host = _prepared(tmp_path)

    _, guest_channel, _ = _threads(guest, host)

    rows_message = next(m for m in guest_channel.received if m.kind == "rows")
    raw = host.train.astype("<f8").tobytes()
    assert raw[:64] not in rows_message.blob
    host_matrix = {len(host.train): host.train, len(host.test): host.test}
    for message in guest_channel.received:
        for values in message.arrays.values():
            assert values.ndim == 1  # partial scores, never a matrix
            if values.std() == 0:  # the first round's scores are all zero
                continue
            for column in host_matrix[values.size].T:
                assert abs(np.corrcoef(values, column)[0, 1]) < 0.999


def test_guest_rejects_ciphertexts_for_another_feature_count(tmp_path):
    guest, _ = _prepared(tmp_path)
    guest_socket, fake_socket = socket.socketpair()
    guest_socket.settimeout(60)
    fake = Channel(fake_socket)
    rows = int((~guest.is_test).sum())

    def fake_host():
        hello = fake.receive("hello").meta
        fake.send(
            "hello",
            {**hello, "role": "host", "features": 40, "public_key": str(2**2047 + 1)},
        )
        fake.send("rows", {"start": 0, "chunks": 1}, blob=bytes(512 * rows))

    thread = threading.Thread(target=fake_host)
    thread.start()
    with guest_socket, fake_socket, pytest.raises(ModelError, match="40 feature"):
        run_guest(Channel(guest_socket), guest, TrainingSettings(epochs=2))
    thread.join()


def test_host_rejects_a_peer_speaking_another_protocol(tmp_path):
    _, host = _prepared(tmp_path)
    host_socket, fake_socket = socket.socketpair()
    host_socket.settimeout(60)
    fake = Channel(fake_socket)
    fake.send("hello", {"protocol": "other/9", "role": "guest"})

    with host_socket, fake_socket:
        with pytest.raises(ModelError, match=rf"protocol 'other/9'.*{PROTOCOL}"):
            run_host(Channel(host_socket), host)
        with pytest.raises(ModelError, match=r"peer stopped: .*telcoreach version"):
            fake.receive("hello")


def test_encrypted_weighted_sum_equals_integer_arithmetic():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 2**20, size=(300, 35))
    weights = rng.integers(0, 2**16, size=300)
    cipher = HostCipher()

    chunks = pack_rows(values)
    sums = []
    for chunk in chunks:
        encrypted = cipher.encrypt_packed(chunk)
        total = weighted_sum(encrypted, weights, 16, cipher.public.n_square)
        sums.extend(unpack(cipher.decrypt(total), min(31, 35 - len(sums))))

    expected = [
        sum(int(v) * int(w) for v, w in zip(values[:, j], weights, strict=True))
        for j in range(35)
    ]
    assert [int(s) for s in sums] == expected


def test_split_depends_on_the_ids_not_their_order():
    ids = np.array([f"id-{i}" for i in range(5000)], dtype=object)
    shuffled = np.random.default_rng(1).permutation(ids)

    first = dict(zip(ids, held_out_mask(ids, seed=4, test_size=0.3), strict=True))
    second = dict(zip(shuffled, held_out_mask(shuffled, 4, 0.3), strict=True))

    assert first == second
    assert 0.27 < np.mean(list(first.values())) < 0.33


@pytest.mark.slow
def test_bank_marketing_federated_auc_matches_centralised(datasets_dir, tmp_path):
    summary = run_demo(datasets_dir, tmp_path)

    assert summary["rows"] == 41188
    assert abs(summary["auc_difference"]) <= 0.01
    assert summary["centralised_auc"] > 0.75
    assert summary["bytes_host_to_guest"] > summary["rows_train"] * 512
