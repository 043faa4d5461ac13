"""Chinese national (SM) cryptography: SM3, HMAC-SM3, SM4-CBC/GCM, SM2.

* **SM3** (GB/T 32905) hashing and **HMAC-SM3** come from ``cryptography``
  (OpenSSL).
* **SM4** (GB/T 32907) encryption of fields, also from ``cryptography``: GCM
  (authenticated; the default choice) and CBC with PKCS#7 padding (for
  systems that require it; CBC alone does not detect tampering).
* **SM2** (GB/T 32918) signatures, parts 1-2, and key agreement, part 3, use
  the curve arithmetic of ``gmalg`` (``ecdlp.kG``, point addition and
  multiplication, the ``Z`` value, the key derivation function). ``gmalg``
  gives the key agreement's shared key; the confirmation hashes
  ``S1``/``SB`` and ``S2``/``SA`` of GB/T 32918.3 (optional steps B8, A9,
  A10 and B10) are computed here from SM3. See ``docs/crypto.md`` for why ``gmalg``.

Byte formats: an SM2 public key is ``04 || x || y`` (65 bytes on a 256-bit
curve); a signature is ``r || s`` (64 bytes); a GCM box is
``nonce (12) || ciphertext || tag (16)``; a CBC box is ``iv (16) ||
ciphertext``.
"""

from __future__ import annotations

import hmac as _stdlib_hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import gmalg.sm3 as _gmalg_sm3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from gmalg.ellipticcurve import ECDLP
from gmalg.errors import GMError
from gmalg.sm2 import SM2Core

from telcoreach.errors import CryptoError

__all__ = [
    "SM2_DEFAULT_UID",
    "SM2_RECOMMENDED",
    "SM2Agreement",
    "SM2Curve",
    "SM2KeyExchange",
    "SM2PrivateKey",
    "SM2PublicKey",
    "hmac_sm3",
    "sm3",
    "sm4_cbc_decrypt",
    "sm4_cbc_encrypt",
    "sm4_gcm_decrypt",
    "sm4_gcm_encrypt",
]

#: The user ID GB/T 35276 prescribes when the parties agree on none.
SM2_DEFAULT_UID = b"1234567812345678"
_SM4_KEY_BYTES = 16
_GCM_NONCE_BYTES = 12
_GCM_TAG_BYTES = 16
_CBC_IV_BYTES = 16

RandomBits = Callable[[int], int]


def sm3(data: bytes) -> bytes:
    """Return the 32-byte SM3 digest of ``data`` (GB/T 32905)."""
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize()


def hmac_sm3(key: bytes, data: bytes) -> bytes:
    """Return the 32-byte HMAC-SM3 of ``data`` under ``key`` (RFC 2104 over SM3)."""
    mac = hmac.HMAC(key, hashes.SM3())
    mac.update(data)
    return mac.finalize()


def _sm4_key(key: bytes) -> algorithms.SM4:
    if len(key) != _SM4_KEY_BYTES:
        raise CryptoError(
            f"an SM4 key is 16 bytes; found {len(key)} bytes. Derive one with "
            "HKDF-SM3 or take 16 bytes of secrets.token_bytes"
        )
    return algorithms.SM4(key)


def sm4_gcm_encrypt(
    key: bytes, plaintext: bytes, associated_data: bytes = b""
) -> bytes:
    """Return ``nonce || ciphertext || tag`` of SM4-GCM with a random nonce.

    ``associated_data`` is authenticated, not encrypted: bind a field's
    ciphertext to its context (table, column, row key) so it cannot be moved.
    A random 96-bit nonce per message keeps the nonce-reuse risk negligible
    for up to about 2^32 messages under one key.
    """
    nonce = secrets.token_bytes(_GCM_NONCE_BYTES)
    encryptor = Cipher(_sm4_key(key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(associated_data)
    body = encryptor.update(plaintext) + encryptor.finalize()
    return nonce + body + encryptor.tag


def sm4_gcm_decrypt(key: bytes, box: bytes, associated_data: bytes = b"") -> bytes:
    """Return the plaintext of an SM4-GCM box made by :func:`sm4_gcm_encrypt`.

    Raises
    ------
    CryptoError
        If the box is too short, or it, its associated data or the key differ
        from those it was sealed with.
    """
    if len(box) < _GCM_NONCE_BYTES + _GCM_TAG_BYTES:
        raise CryptoError(
            f"an SM4-GCM box is at least {_GCM_NONCE_BYTES + _GCM_TAG_BYTES} bytes "
            f"(nonce and tag); found {len(box)} bytes: it is truncated"
        )
    nonce = box[:_GCM_NONCE_BYTES]
    tag = box[-_GCM_TAG_BYTES:]
    decryptor = Cipher(_sm4_key(key), modes.GCM(nonce, tag)).decryptor()
    decryptor.authenticate_additional_data(associated_data)
    body = decryptor.update(box[_GCM_NONCE_BYTES:-_GCM_TAG_BYTES])
    try:
        return body + decryptor.finalize()
    except InvalidTag:
        raise CryptoError(
            "SM4-GCM authentication failed: the ciphertext, its associated data "
            "or the key is not the one it was sealed with (tampered or wrong key)"
        ) from None


def sm4_cbc_encrypt(key: bytes, plaintext: bytes) -> bytes:
    """Return ``iv || ciphertext`` of SM4-CBC with PKCS#7 padding.

    Notes
    -----
    CBC gives confidentiality only: a changed ciphertext decrypts to changed
    text without an error. Prefer :func:`sm4_gcm_encrypt` unless a partner
    system requires CBC, and then sign or MAC the result.
    """
    iv = secrets.token_bytes(_CBC_IV_BYTES)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(_sm4_key(key), modes.CBC(iv)).encryptor()
    return iv + encryptor.update(padded) + encryptor.finalize()


def sm4_cbc_decrypt(key: bytes, box: bytes) -> bytes:
    """Return the plaintext of an SM4-CBC box made by :func:`sm4_cbc_encrypt`.

    Raises
    ------
    CryptoError
        If the box length is not an IV plus whole blocks, or the padding is
        wrong (usually a wrong key).
    """
    body = box[_CBC_IV_BYTES:]
    if len(box) < 2 * _CBC_IV_BYTES or len(body) % 16:
        raise CryptoError(
            "an SM4-CBC box is a 16-byte IV followed by whole 16-byte blocks; "
            f"found {len(box)} bytes"
        )
    decryptor = Cipher(_sm4_key(key), modes.CBC(box[:_CBC_IV_BYTES])).decryptor()
    padded = decryptor.update(body) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise CryptoError(
            "SM4-CBC padding is invalid after decryption: wrong key or a "
            "damaged ciphertext"
        ) from None


@dataclass(frozen=True)
class SM2Curve:
    """Parameters of an SM2 curve ``y^2 = x^3 + ax + b`` over GF(p).

    Use :data:`SM2_RECOMMENDED` (GB/T 32918.5); other curves exist for the
    standard's worked examples.
    """

    p: int
    a: int
    b: int
    gx: int
    gy: int
    n: int
    h: int = 1

    @cached_property
    def ecdlp(self) -> ECDLP:
        """The curve as ``gmalg`` arithmetic."""
        return ECDLP(self.p, self.a, self.b, (self.gx, self.gy), self.n, self.h)

    @property
    def field_bytes(self) -> int:
        """Bytes in one coordinate."""
        return (self.p.bit_length() + 7) // 8

    def core(self, random_bits: RandomBits | None = None) -> SM2Core:
        """Return a ``gmalg`` SM2 engine on this curve."""
        return SM2Core(self.ecdlp, _gmalg_sm3.SM3(), random_bits)


#: The recommended 256-bit curve of GB/T 32918.5 (``sm2p256v1``).
SM2_RECOMMENDED = SM2Curve(
    p=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF,
    a=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC,
    b=0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93,
    gx=0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
    gy=0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0,
    n=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123,
)


@dataclass(frozen=True)
class SM2PublicKey:
    """A point on an SM2 curve that verifies signatures and agrees keys."""

    x: int
    y: int
    curve: SM2Curve = SM2_RECOMMENDED

    def __post_init__(self) -> None:
        if not self.curve.core().verify_pk((self.x, self.y)):
            raise CryptoError(
                "SM2 public key is not a point of order n on the curve; expected "
                "04 || x || y of a key made by SM2PrivateKey.generate()"
            )

    @property
    def point(self) -> tuple[int, int]:
        """The point as ``(x, y)``."""
        return (self.x, self.y)

    @classmethod
    def from_bytes(cls, data: bytes, curve: SM2Curve = SM2_RECOMMENDED) -> SM2PublicKey:
        """Read an uncompressed point ``04 || x || y``."""
        size = curve.field_bytes
        if len(data) != 1 + 2 * size or data[0] != 4:
            raise CryptoError(
                f"an SM2 public key is 04 || x || y, {1 + 2 * size} bytes; found "
                f"{len(data)} bytes starting with {data[:1].hex() or 'nothing'}"
            )
        x = int.from_bytes(data[1 : 1 + size], "big")
        y = int.from_bytes(data[1 + size :], "big")
        return cls(x, y, curve)

    def to_bytes(self) -> bytes:
        """Return the uncompressed point ``04 || x || y``."""
        size = self.curve.field_bytes
        return b"\x04" + self.x.to_bytes(size, "big") + self.y.to_bytes(size, "big")

    def z_value(self, uid: bytes = SM2_DEFAULT_UID) -> bytes:
        """Return ``Z = SM3(ENTL || ID || a || b || xG || yG || x || y)``."""
        return self.curve.core().entity_info(uid, self.point)

    def verify(
        self, message: bytes, signature: bytes, uid: bytes = SM2_DEFAULT_UID
    ) -> bool:
        """Return whether ``signature`` (``r || s``) signs ``message`` for ``uid``."""
        size = (self.curve.n.bit_length() + 7) // 8
        if len(signature) != 2 * size:
            return False
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        return self.curve.core().verify(message, r, s, uid, self.point)


class SM2PrivateKey:
    """An SM2 private key: signs (GB/T 32918.2) and agrees keys (32918.3).

    Parameters
    ----------
    d : int
        The secret scalar, ``1 <= d <= n - 2``.
    curve : SM2Curve
        Defaults to the recommended curve.
    random_bits : callable, optional
        ``random_bits(k)`` returns a k-bit random integer; defaults to
        :func:`secrets.randbits`. Replace it only to reproduce a published
        worked example: a predictable nonce reveals the key.
    """

    def __init__(
        self,
        d: int,
        curve: SM2Curve = SM2_RECOMMENDED,
        *,
        random_bits: RandomBits | None = None,
    ) -> None:
        if not 1 <= d <= curve.n - 2:
            raise CryptoError(
                f"an SM2 private key is an integer in [1, n-2]; found one of "
                f"{d.bit_length()} bits outside that range"
            )
        self._d = d
        self.curve = curve
        self._core = curve.core(random_bits)
        x, y = self._core.generate_pk(d)
        self.public_key = SM2PublicKey(x, y, curve)

    @classmethod
    def generate(cls, curve: SM2Curve = SM2_RECOMMENDED) -> SM2PrivateKey:
        """Return a new random private key."""
        return cls(secrets.randbelow(curve.n - 2) + 1, curve)

    @classmethod
    def from_bytes(
        cls, data: bytes, curve: SM2Curve = SM2_RECOMMENDED
    ) -> SM2PrivateKey:
        """Read a big-endian secret scalar."""
        return cls(int.from_bytes(data, "big"), curve)

    def to_bytes(self) -> bytes:
        """Return the secret scalar, big-endian, as many bytes as n."""
        return self._d.to_bytes((self.curve.n.bit_length() + 7) // 8, "big")

    def __repr__(self) -> str:
        return f"SM2PrivateKey(public={self.public_key.to_bytes().hex()[:18]}...)"

    def sign(self, message: bytes, uid: bytes = SM2_DEFAULT_UID) -> bytes:
        """Return the signature ``r || s`` of ``message`` for user ``uid``.

        The signed digest is ``SM3(Z || message)`` with ``Z`` from
        :meth:`SM2PublicKey.z_value`, as GB/T 32918.2 prescribes.
        """
        r, s = self._core.sign(message, self._d, uid, self.public_key.point)
        size = (self.curve.n.bit_length() + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")

    def key_exchange(
        self,
        peer: SM2PublicKey,
        *,
        initiator: bool,
        uid: bytes = SM2_DEFAULT_UID,
        peer_uid: bytes = SM2_DEFAULT_UID,
    ) -> SM2KeyExchange:
        """Start a GB/T 32918.3 key agreement with ``peer``."""
        return SM2KeyExchange(
            self, peer, initiator=initiator, uid=uid, peer_uid=peer_uid
        )


@dataclass(frozen=True)
class SM2Agreement:
    """The outcome of one side of an SM2 key agreement.

    Attributes
    ----------
    key : bytes
        The shared key ``K`` (``KA`` = ``KB``).
    confirmation : bytes
        What this side sends to prove it holds ``K``: ``SB`` from the
        responder, ``SA`` from the initiator.
    expected : bytes
        What the peer's confirmation must equal: ``S1`` (checked by the
        initiator against ``SB``) or ``S2`` (checked by the responder
        against ``SA``).
    """

    key: bytes
    confirmation: bytes
    expected: bytes

    def check_peer(self, confirmation: bytes) -> None:
        """Check the peer's confirmation hash.

        Raises
        ------
        CryptoError
            If it differs: the peer derived another key (wrong identity,
            public key or a tampered message), so ``key`` must not be used.
        """
        if not _stdlib_hmac.compare_digest(confirmation, self.expected):
            raise CryptoError(
                "SM2 key confirmation failed: the peer's hash does not match the "
                "key derived here; discard the key (wrong peer key or ID, or the "
                "exchange was tampered with)"
            )


class SM2KeyExchange:
    """One party of the SM2 key agreement protocol (GB/T 32918.3).

    Each side makes an ephemeral point ``R = [r]G``
    (:attr:`ephemeral_public`), sends it, and calls :meth:`derive` with the
    peer's. The responder (B) sends ``R_B`` with its confirmation ``S_B``;
    the initiator (A) checks it and answers ``S_A``, which B checks.
    """

    def __init__(
        self,
        own: SM2PrivateKey,
        peer: SM2PublicKey,
        *,
        initiator: bool,
        uid: bytes = SM2_DEFAULT_UID,
        peer_uid: bytes = SM2_DEFAULT_UID,
    ) -> None:
        if peer.curve != own.curve:
            raise CryptoError("both SM2 keys of a key agreement must be on one curve")
        self._own = own
        self._peer = peer
        self._initiator = initiator
        self._uid = uid
        self._peer_uid = peer_uid
        # Steps A1-A3 / B1-B3 and A4-A5 / B4-B5: R = [r]G, t = (d + x̄·r) mod n.
        self._ephemeral, self._t = own._core.begin_key_exchange(own._d)

    @property
    def ephemeral_public(self) -> bytes:
        """The ephemeral point ``R`` to send to the peer, ``04 || x || y``."""
        x, y = self._ephemeral
        return SM2PublicKey(x, y, self._own.curve).to_bytes()

    def derive(self, peer_ephemeral: bytes, key_bytes: int = 16) -> SM2Agreement:
        """Return the shared key and confirmation hashes from the peer's ``R``.

        Raises
        ------
        CryptoError
            If the peer's point is not on the curve or the shared point is
            the point at infinity.
        """
        curve = self._own.curve
        peer_r = SM2PublicKey.from_bytes(peer_ephemeral, curve).point
        core = self._own._core
        try:
            # Steps A6-A7 / B5-B6: V = [h·t](P_peer + [x̄_peer]R_peer).
            shared = core.get_secret_point(self._t, peer_r, self._peer.point)
        except GMError as error:  # R not on the curve, or V at infinity
            raise CryptoError(
                f"SM2 key agreement failed on the peer's ephemeral point: {error}"
            ) from None
        own_z = self._own.public_key.z_value(self._uid)
        peer_z = self._peer.z_value(self._peer_uid)
        if self._initiator:
            za, zb = own_z, peer_z
            ra, rb = self._ephemeral, peer_r
            init = (self._uid, self._own.public_key.point)
            resp = (self._peer_uid, self._peer.point)
        else:
            za, zb = peer_z, own_z
            ra, rb = peer_r, self._ephemeral
            init = (self._peer_uid, self._peer.point)
            resp = (self._uid, self._own.public_key.point)
        # Steps A8 / B7: K = KDF(xV || yV || ZA || ZB, klen).
        key = core.generate_skey(key_bytes, shared, *init, *resp)

        size = curve.field_bytes
        xv, yv = (c.to_bytes(size, "big") for c in shared)
        points = b"".join(c.to_bytes(size, "big") for c in (*ra, *rb))
        inner = sm3(xv + za + zb + points)
        tag_02 = sm3(b"\x02" + yv + inner)  # SB / S1
        tag_03 = sm3(b"\x03" + yv + inner)  # S2 / SA
        if self._initiator:
            return SM2Agreement(key, confirmation=tag_03, expected=tag_02)
        return SM2Agreement(key, confirmation=tag_02, expected=tag_03)


def describe_backends() -> dict[str, Any]:
    """Return which library provides each algorithm (for ``keys status``)."""
    from cryptography import __version__ as cryptography_version
    from cryptography.hazmat.backends.openssl import backend
    from gmalg import __version__ as gmalg_version

    return {
        "sm3, hmac-sm3, sm4": f"cryptography {cryptography_version} "
        f"({backend.openssl_version_text()})",
        "sm2": f"gmalg {gmalg_version} (pure Python)",
    }
