"""Vertical federated logistic regression between a carrier and an enterprise.

Two parties hold different columns of the same people, matched beforehand by
private set intersection (PSI): the enterprise (the *guest*) holds the label,
e.g. whether the person bought, and its own columns; the carrier (the
*host*) holds behaviour columns. :func:`train_party` runs one party in its
own process; the two talk over TCP and fit one logistic regression without
either seeing the other's rows: the host's rows travel only encrypted under
its Paillier key, the labels and residuals never leave the guest (see
``docs/federated.md`` for what each party learns). :func:`run_demo` splits
the UCI bank-marketing data between the two and compares the result with
scikit-learn's logistic regression on the joined data.
"""

from telcoreach.federated._channel import Channel, Message, accept, connect
from telcoreach.federated._data import PartyData, held_out_mask, prepare_party
from telcoreach.federated._demo import (
    CARRIER_COLUMNS,
    ENTERPRISE_COLUMNS,
    centralised_auc,
    run_demo,
    split_bank_marketing,
)
from telcoreach.federated._party import train_party
from telcoreach.federated._protocol import (
    PROTOCOL,
    PartyResult,
    TrainingSettings,
    run_guest,
    run_host,
)

__all__ = [
    "CARRIER_COLUMNS",
    "ENTERPRISE_COLUMNS",
    "PROTOCOL",
    "Channel",
    "Message",
    "PartyData",
    "PartyResult",
    "TrainingSettings",
    "accept",
    "centralised_auc",
    "connect",
    "held_out_mask",
    "prepare_party",
    "run_demo",
    "run_guest",
    "run_host",
    "split_bank_marketing",
    "train_party",
]
