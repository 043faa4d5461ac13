"""Keyed HMAC-SM3 tokens."""

from __future__ import annotations

import base64

import pyarrow as pa
from cryptography.hazmat.primitives import hashes, hmac

from telcoreach.privacy import Pseudonymiser, find_raw_identifiers

KEY = bytes(range(32))


def reference_token(kind: str, value: str) -> str:
    mac = hmac.HMAC(KEY, hashes.SM3())
    mac.update(f"{kind}:{value}".encode())
    return base64.b32encode(mac.finalize()[:15]).decode().lower()


def test_token_is_truncated_hmac_sm3_in_base32():
    tokens = Pseudonymiser(KEY).tokenise("msisdn", pa.array(["13812345678", None]))

    assert tokens.to_pylist() == [reference_token("msisdn", "13812345678"), None]


def test_formatting_of_a_number_does_not_change_its_token():
    p = Pseudonymiser(KEY)
    forms = ["13812345678", "+8613812345678", "8613812345678", "138 1234 5678"]

    assert len({p.token("msisdn", form) for form in forms}) == 1


def test_kinds_are_separated_and_keys_matter():
    p = Pseudonymiser(KEY)

    assert p.token("msisdn", "13812345678") != p.token("imsi", "13812345678")
    assert p.token("msisdn", "1") != Pseudonymiser(bytes(32)).token("msisdn", "1")


def test_tokens_never_look_like_raw_identifiers():
    values = pa.array([str(13_000_000_000 + i * 7919) for i in range(50_000)])
    tokens = Pseudonymiser(KEY).tokenise("msisdn", values)

    assert find_raw_identifiers("\n".join(tokens.to_pylist())) == {}


def test_scan_finds_ids_in_text_but_not_inside_hex_digests():
    text = "call 13812345678, imsi: 460001234567890; imei=490154203237518"
    digest = "audit 5f3a860123456789012345b9 and 0.123456789012345"

    assert set(find_raw_identifiers(text)) == {"msisdn", "imsi", "imei"}
    assert find_raw_identifiers(digest) == {}


def test_scan_finds_full_width_and_grouped_mobile_numbers():
    assert "msisdn" in find_raw_identifiers("电话 １３９１２３４５６７８")
    assert "msisdn" in find_raw_identifiers("call 139-1234-5678 today")
    assert find_raw_identifiers("2026-11-02 13:45:00, 13 1234 5678") == {}
