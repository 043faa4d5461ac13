"""The two-party protocol of vertical federated logistic regression.

Vertical means the parties hold different columns of the same people. The
guest (here the enterprise) holds the label and some features; the host (the
carrier) holds other features. Together they fit one L2-regularised logistic
regression ``p = sigmoid(X_g w_g + X_h w_h + b)`` by accelerated full-batch
gradient descent, each party keeping its own weights.

Each round (one epoch over the training rows):

1. The host sends its partial scores ``u_h = X_h v_h`` (at its look-ahead
   weights ``v_h``).
2. The guest adds its own partial score and computes the exact residuals
   ``d = sigmoid(z) - y`` and its own gradient in the clear. For the host's
   gradient ``X_h' d`` it raises the host's Paillier-encrypted rows (sent once,
   before the first round) to its quantised residuals and multiplies them:
   an encryption of ``X_h' d`` under the host's key, which it re-randomises and
   sends back.
3. The host decrypts its gradient and updates its weights.

So the host sees ciphertexts and its own aggregate gradient, never a label or
a residual; the guest sees the host's rows only encrypted, and the host's
partial score of each row (what it needs to compute the exact sigmoid, and
what it must see anyway to score people with the joint model). Each party
preconditions its own gradient with its own block of the loss's curvature
bound ``X'X / 4n + l2``, computed locally, which makes a few tens of epochs
enough.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import gmpy2
import numpy as np
from scipy.special import expit

from telcoreach.errors import ConfigError, ModelError
from telcoreach.federated._channel import Channel
from telcoreach.federated._data import CLIP_SD, PartyData, ids_digest
from telcoreach.federated._paillier import (
    CIPHERTEXT_BYTES,
    HostCipher,
    PublicKey,
    ciphertexts_from_bytes,
    ciphertexts_to_bytes,
    pack_constant,
    pack_rows,
    slots_per_ciphertext,
    unpack,
    weighted_sum,
)

__all__ = ["PROTOCOL", "PartyResult", "TrainingSettings", "run_guest", "run_host"]

logger = logging.getLogger(__name__)

#: Name and version of the message protocol; both parties must agree.
PROTOCOL = "telcoreach-fl-hetero-lr/1"
_FEATURE_BITS = 13  # fixed-point fraction bits of a standardised feature
_RESIDUAL_BITS = 15  # fixed-point fraction bits of a residual in (-1, 1)
_FEATURE_OFFSET = int(CLIP_SD) << _FEATURE_BITS
_RESIDUAL_OFFSET = 1 << _RESIDUAL_BITS
_ROWS_PER_MESSAGE = 4096
_MAX_ROWS = 1 << 27  # keeps every packed 64-bit slot from overflowing

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TrainingSettings:
    """Hyperparameters the guest proposes and the host adopts.

    Attributes
    ----------
    epochs : int
        Rounds of full-batch gradient descent.
    learning_rate : float
        Step on the preconditioned gradient (1 is a Newton step on the bound).
    momentum : float
        Nesterov momentum in ``[0, 1)``.
    l2 : float
        Strength of the L2 penalty ``l2 / 2 * |w|**2`` on the mean log-loss
        (the intercept is not penalised); scikit-learn's ``C`` is
        ``1 / (l2 * training rows)``.
    seed : int
        Seed of the held-out split both parties draw from the ids.
    test_size : float
        Share of the ids held out.
    """

    epochs: int = 30
    learning_rate: float = 1.0
    momentum: float = 0.5
    l2: float = 1e-3
    seed: int = 0
    test_size: float = 0.25

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "learning_rate": 0 < self.learning_rate <= 2,
            "momentum": 0 <= self.momentum < 1,
            "l2": self.l2 > 0,
            "test_size": 0 < self.test_size < 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(
                    f"TrainingSettings.{name} = {getattr(self, name)!r} is out of "
                    "range; expected epochs >= 1, 0 < learning_rate <= 2, "
                    "0 <= momentum < 1, l2 > 0 and 0 < test_size < 1"
                )


@dataclass
class PartyResult:
    """What one party ends with: its own weights and the run's figures.

    Attributes
    ----------
    role : str
        ``guest`` or ``host``.
    coefficients : numpy.ndarray
        Weights of the party's own standardised columns.
    intercept : float or None
        The guest's intercept; ``None`` for the host.
    test_auc : float
        Held-out ROC AUC of the joint model (computed by the guest).
    test_scores, test_labels : numpy.ndarray or None
        The guest's held-out joint scores and labels.
    rows_train, rows_test, peer_features, epochs : int
        Sizes of the run.
    seconds : float
        Wall time of the protocol, from the greeting to the last message.
    channel : dict
        Bytes and messages sent and received.
    losses : list of float
        Guest only: training log-loss at each round's look-ahead point.
    """

    role: str
    coefficients: np.ndarray
    intercept: float | None
    test_auc: float
    rows_train: int
    rows_test: int
    peer_features: int
    epochs: int
    seconds: float
    channel: dict
    settings: TrainingSettings
    losses: list[float] = field(default_factory=list)
    test_scores: np.ndarray | None = field(default=None, repr=False)
    test_labels: np.ndarray | None = field(default=None, repr=False)


def _preconditioner(features: np.ndarray, penalised: np.ndarray, l2: float):
    rows = features.shape[0]
    curvature = 0.25 * features.T @ features / rows + np.diag(l2 * penalised)
    curvature += 1e-9 * np.eye(features.shape[1])
    return np.linalg.inv(curvature)


def _hello(data: PartyData, role: str) -> dict:
    return {
        "protocol": PROTOCOL,
        "role": role,
        "rows": int(data.ids.size),
        "ids_sha256": ids_digest(data.ids),
        "features": int(data.features.shape[1]),
    }


def _check_peer(mine: dict, theirs: dict, peer_role: str) -> str | None:
    if theirs.get("protocol") != PROTOCOL:
        return (
            f"peer speaks protocol {theirs.get('protocol')!r}, this party "
            f"{PROTOCOL!r}; run the same telcoreach version on both sides"
        )
    if theirs.get("role") != peer_role:
        return (
            f"peer is a {theirs.get('role')!r}, expected a {peer_role!r}: one "
            "party must run --role guest (label holder), the other --role host"
        )
    if (
        theirs.get("rows") != mine["rows"]
        or theirs.get("ids_sha256") != mine["ids_sha256"]
    ):
        return (
            f"the parties hold different ids: this {mine['role']} has "
            f"{mine['rows']:,} rows (ids sha256 {mine['ids_sha256'][:12]}), the "
            f"{peer_role} {theirs.get('rows')} rows (ids sha256 "
            f"{str(theirs.get('ids_sha256'))[:12]}); both must hold exactly the "
            "ids found by PSI, in the id column"
        )
    return None


def _fail(channel: Channel, reason: str) -> ModelError:
    channel.send_error(reason)
    return ModelError(reason)


def run_host(
    channel: Channel, data: PartyData, progress: Progress | None = None
) -> PartyResult:
    """Run the host's side of the protocol and return its own weights.

    Parameters
    ----------
    channel : Channel
        Connection to the guest.
    data : PartyData
        The host's rows, without a label.
    progress : callable, optional
        Called as ``progress(description, done, total)`` after each round.

    Raises
    ------
    ModelError
        If the guest holds other ids, speaks another protocol or sends a
        malformed message.
    """
    started = time.perf_counter()
    mine = _hello(data, "host")
    greeting = channel.receive("hello").meta
    problem = _check_peer(mine, greeting, "guest")
    if problem:
        raise _fail(channel, problem)
    try:
        settings = TrainingSettings(**greeting["settings"])
    except (TypeError, KeyError, ConfigError) as exc:
        raise _fail(channel, f"guest proposed unusable settings: {exc}") from exc
    if (settings.seed, settings.test_size) != (data.seed, data.test_size):
        raise _fail(
            channel,
            f"the parties drew different held-out splits: guest seed "
            f"{settings.seed}, test size {settings.test_size}; host seed "
            f"{data.seed}, test size {data.test_size}; pass the same --seed and "
            "--test-size to both",
        )
    if data.is_test.sum() == 0 or data.is_test.all():
        raise _fail(channel, "the held-out split is empty or holds every row")
    if data.ids.size >= _MAX_ROWS:
        raise _fail(
            channel,
            f"{data.ids.size:,} rows exceed the {_MAX_ROWS:,} a 64-bit slot of "
            "the encrypted gradient can sum; train on a sample",
        )

    cipher = HostCipher()
    train = data.train
    rows, columns = train.shape
    channel.send("hello", {**mine, "public_key": str(int(cipher.public.n))})

    column_sums = _send_encrypted_rows(channel, cipher, train)
    chunks = -(-columns // slots_per_ciphertext())

    preconditioner = _preconditioner(train, np.ones(columns), settings.l2)
    weights = np.zeros(columns)
    previous = weights.copy()
    for epoch in range(1, settings.epochs + 1):
        ahead = weights + settings.momentum * (weights - previous)
        channel.send("scores", {"epoch": epoch}, arrays={"partial": train @ ahead})
        reply = channel.receive("gradient")
        if len(reply.blob) != chunks * CIPHERTEXT_BYTES:
            raise _fail(
                channel,
                f"guest sent {len(reply.blob)} bytes of encrypted gradient; "
                f"expected {chunks} ciphertext(s) of {CIPHERTEXT_BYTES} bytes",
            )
        gradient = _decrypt_gradient(cipher, reply.blob, column_sums, rows)
        gradient += settings.l2 * ahead
        previous, weights = (
            weights,
            ahead - settings.learning_rate * (preconditioner @ gradient),
        )
        if progress:
            progress("federated training", epoch, settings.epochs)

    channel.send("final", arrays={"partial": data.test @ weights})
    done = channel.receive("done").meta
    return PartyResult(
        role="host",
        coefficients=weights,
        intercept=None,
        test_auc=float(done["test_auc"]),
        rows_train=rows,
        rows_test=int(data.is_test.sum()),
        peer_features=int(greeting["features"]),
        epochs=settings.epochs,
        seconds=time.perf_counter() - started,
        channel=channel.stats(),
        settings=settings,
    )


def _send_encrypted_rows(
    channel: Channel, cipher: HostCipher, train: np.ndarray
) -> list[int]:
    """Send the host's rows encrypted, in batches; return the columns' sums."""
    quantised = np.rint(train * (1 << _FEATURE_BITS)).astype(np.int64)
    chunks = -(-train.shape[1] // slots_per_ciphertext())
    # Batches keep each message (and each wait of the guest) short.
    for start in range(0, train.shape[0], _ROWS_PER_MESSAGE):
        batch = quantised[start : start + _ROWS_PER_MESSAGE] + _FEATURE_OFFSET
        encrypted = [cipher.encrypt_packed(chunk) for chunk in pack_rows(batch)]
        channel.send(
            "rows",
            {"start": start, "count": len(batch), "chunks": chunks},
            blob=b"".join(ciphertexts_to_bytes(chunk) for chunk in encrypted),
        )
    logger.info("host sent %d encrypted rows in %d chunk(s)", len(train), chunks)
    return [int(total) for total in quantised.sum(axis=0)]


def _decrypt_gradient(
    cipher: HostCipher, blob: bytes, column_sums: list[int], rows: int
) -> np.ndarray:
    """Return the host's mean log-loss gradient from the guest's ciphertexts.

    Each slot holds ``sum_i (q_ij + F)(r_i + R) - F * sum_i r_i + K`` for the
    quantised features ``q``, residuals ``r``, their offsets ``F`` and ``R``
    and ``K = F * rows * R``; removing the known terms leaves ``sum_i q_ij r_i``.
    """
    slots = slots_per_ciphertext()
    columns = len(column_sums)
    sums = []
    for chunk, ciphertext in enumerate(ciphertexts_from_bytes(blob)):
        width = min(slots, columns - chunk * slots)
        sums.extend(unpack(cipher.decrypt(ciphertext), width))
    known = 2 * _FEATURE_OFFSET * rows * _RESIDUAL_OFFSET
    exact = [
        int(s) - known - _RESIDUAL_OFFSET * c
        for s, c in zip(sums, column_sums, strict=True)
    ]
    scale = float(1 << (_FEATURE_BITS + _RESIDUAL_BITS))
    return np.array(exact, dtype=np.float64) / scale / rows


def run_guest(
    channel: Channel,
    data: PartyData,
    settings: TrainingSettings,
    progress: Progress | None = None,
) -> PartyResult:
    """Run the guest's (label holder's) side and return its weights and AUC.

    Parameters
    ----------
    channel : Channel
        Connection to the host.
    data : PartyData
        The guest's rows with the label.
    settings : TrainingSettings
        Hyperparameters, sent to the host.
    progress : callable, optional
        Called as ``progress(description, done, total)`` after each round.

    Raises
    ------
    ModelError
        If the host holds other ids, speaks another protocol or sends a
        malformed message (e.g. ciphertexts for another number of features).
    """
    from telcoreach.models import evaluate_propensity

    if data.label is None:
        raise ConfigError("the guest holds the label; pass --label with its column")
    started = time.perf_counter()
    mine = _hello(data, "guest")
    channel.send("hello", {**mine, "settings": asdict(settings)})
    greeting = channel.receive("hello").meta
    problem = _check_peer(mine, greeting, "host")
    if problem:
        raise _fail(channel, problem)
    public = PublicKey(int(greeting["public_key"]))

    train_mask = ~data.is_test
    labels = data.label[train_mask]
    train = np.column_stack([np.ones(train_mask.sum()), data.train])
    rows = train.shape[0]
    host_columns = int(greeting["features"])
    host_rows = _receive_encrypted_rows(channel, rows, host_columns)

    penalised = np.r_[0.0, np.ones(train.shape[1] - 1)]
    preconditioner = _preconditioner(train, penalised, settings.l2)
    weights = np.zeros(train.shape[1])
    previous = weights.copy()
    losses = []
    for epoch in range(1, settings.epochs + 1):
        ahead = weights + settings.momentum * (weights - previous)
        partial = channel.receive("scores").arrays.get("partial")
        if partial is None or partial.shape != (rows,):
            raise _fail(
                channel,
                f"host sent partial scores of shape "
                f"{None if partial is None else partial.shape}; expected ({rows},)",
            )
        scores = train @ ahead + partial
        probability = expit(scores)
        residual = probability - labels
        losses.append(float(np.mean(np.logaddexp(0.0, scores) - labels * scores)))

        replies = _encrypted_gradient(host_rows, residual, host_columns, public)
        channel.send("gradient", {"epoch": epoch}, blob=ciphertexts_to_bytes(replies))

        gradient = train.T @ residual / rows + settings.l2 * penalised * ahead
        previous, weights = (
            weights,
            ahead - settings.learning_rate * (preconditioner @ gradient),
        )
        if progress:
            progress("federated training", epoch, settings.epochs)

    final = channel.receive("final").arrays.get("partial")
    rows_test = int(data.is_test.sum())
    if final is None or final.shape != (rows_test,):
        raise _fail(
            channel,
            f"host sent held-out scores of shape "
            f"{None if final is None else final.shape}; expected ({rows_test},)",
        )
    test_scores = np.column_stack([np.ones(rows_test), data.test]) @ weights + final
    test_labels = data.label[data.is_test]
    metrics = evaluate_propensity(test_labels > 0, expit(test_scores))
    channel.send("done", {"test_auc": metrics.auc})
    return PartyResult(
        role="guest",
        coefficients=weights[1:],
        intercept=float(weights[0]),
        test_auc=float(metrics.auc),
        rows_train=rows,
        rows_test=rows_test,
        peer_features=host_columns,
        epochs=settings.epochs,
        seconds=time.perf_counter() - started,
        channel=channel.stats(),
        settings=settings,
        losses=losses,
        test_scores=test_scores,
        test_labels=test_labels,
    )


def _receive_encrypted_rows(
    channel: Channel, rows: int, host_columns: int
) -> list[list[gmpy2.mpz]]:
    """Return the host's encrypted rows, one list per block of 31 columns."""
    chunks = -(-host_columns // slots_per_ciphertext())
    host_rows = [[] for _ in range(chunks)]
    received = 0
    while received < rows:
        message = channel.receive("rows")
        count = min(_ROWS_PER_MESSAGE, rows - received)
        expected = count * chunks * CIPHERTEXT_BYTES
        if (
            message.meta.get("chunks") != chunks
            or message.meta.get("start") != received
            or len(message.blob) != expected
        ):
            raise _fail(
                channel,
                f"host announced {host_columns} feature columns ({chunks} "
                f"ciphertext(s) per row, {expected:,} bytes for rows {received:,} "
                f"to {received + count:,}) but sent {message.meta.get('chunks')} per "
                f"row, {len(message.blob):,} bytes from row "
                f"{message.meta.get('start')}; the host's data does not match what "
                "it declared",
            )
        batch = ciphertexts_from_bytes(message.blob)
        for chunk in range(chunks):
            host_rows[chunk].extend(batch[chunk * count : (chunk + 1) * count])
        received += count
    return host_rows


def _encrypted_gradient(
    host_rows: list[list[gmpy2.mpz]],
    residual: np.ndarray,
    host_columns: int,
    public: PublicKey,
) -> list[gmpy2.mpz]:
    """Return encryptions of ``X_h' r`` for the quantised residuals ``r``.

    A fresh encryption of ``K - F * sum(r)`` in every slot is multiplied in:
    it removes the residuals' sum (which the host must not learn) from the
    offset terms and re-randomises the ciphertext.
    """
    quantised = np.clip(
        np.rint(residual * _RESIDUAL_OFFSET),
        1 - _RESIDUAL_OFFSET,
        _RESIDUAL_OFFSET - 1,
    ).astype(np.int64)
    rows = quantised.size
    shift = _FEATURE_OFFSET * rows * _RESIDUAL_OFFSET
    shift -= _FEATURE_OFFSET * int(quantised.sum())
    slots = slots_per_ciphertext()
    replies = []
    for chunk, ciphertexts in enumerate(host_rows):
        width = min(slots, host_columns - chunk * slots)
        product = weighted_sum(
            ciphertexts,
            quantised + _RESIDUAL_OFFSET,
            _RESIDUAL_BITS + 1,
            public.n_square,
        )
        fresh = public.encrypt(pack_constant(shift, width))
        replies.append(product * fresh % public.n_square)
    return replies
