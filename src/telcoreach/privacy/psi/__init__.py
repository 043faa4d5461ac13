"""Private set intersection (PSI): which customers two parties share, and no more.

A carrier and an enterprise each hold a list of phone numbers. With
elliptic-curve Diffie-Hellman PSI over a TCP connection, each learns which of
its own numbers the other also holds (or, in cardinality-only mode, the
joining party learns only how many), and nothing about the other numbers.
See docs/psi.md for the protocol and what each side learns.
"""

from telcoreach.privacy.psi._curves import CURVES, CurvePool
from telcoreach.privacy.psi._session import (
    IDENTIFIER_KINDS,
    PsiInput,
    join_psi,
    read_identifiers,
    serve_psi,
)
from telcoreach.privacy.psi._wire import PROTOCOL, PROTOCOL_VERSION

__all__ = [
    "CURVES",
    "IDENTIFIER_KINDS",
    "PROTOCOL",
    "PROTOCOL_VERSION",
    "CurvePool",
    "PsiInput",
    "join_psi",
    "read_identifiers",
    "serve_psi",
]
