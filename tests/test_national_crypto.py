"""SM3, HMAC-SM3, SM4 and SM2 against the published examples of their standards.

Reference values come from the standards' worked examples (GB/T 32905 SM3,
GB/T 32907 SM4, GB/T 32918 parts 2 and 3 SM2 on the example curve of their
appendices, RFC 8998 appendix A.1 SM4-GCM) and from gmalg's pure-Python SM3
and SM4, an implementation independent of OpenSSL.
"""

from __future__ import annotations

import base64
import random

import gmalg
import numpy as np
import pyarrow as pa
import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from telcoreach.errors import CryptoError
from telcoreach.privacy import (
    SM2Curve,
    SM2PrivateKey,
    SM2PublicKey,
    hmac_sm3,
    sm3,
    sm4_cbc_decrypt,
    sm4_cbc_encrypt,
    sm4_gcm_decrypt,
    sm4_gcm_encrypt,
)
from telcoreach.privacy._tokens import (
    _SM3_IV,
    Pseudonymiser,
    _sm3_compress_block,
    normalise_identifiers,
)

# GB/T 32905 appendix A.
SM3_ABC = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
SM3_ABCD_16 = "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"

# GB/T 32907 appendix A: key = plaintext.
SM4_KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")
SM4_ONCE = "681edf34d206965e86b3e94f536e4246"
SM4_MILLION = "595298c7c6fd271f0402f804c33d3f66"

# The 256-bit example curve of GB/T 32918 appendices (not for real use).
EXAMPLE_CURVE = SM2Curve(
    p=0x8542D69E4C044F18E8B92435BF6FF7DE457283915C45517D722EDB8B08F1DFC3,
    a=0x787968B4FA32C3FD2417842E73BBFEFF2F3C848B6831D7E0EC65228B3937E498,
    b=0x63E4C6D3B23B0C849CF84241484BFE48F61D59A5B16BA06E6E12D1DA27C5249A,
    gx=0x421DEBD61B62EAB6746434EBC3CC315E32220B3BADD50BDC4C4E6C147FEDD43D,
    gy=0x0680512BCBB42C07D47349D2153B70C4E5D7FDFCBFA36EA1A85841B9E46E09A2,
    n=0x8542D69E4C044F18E8B92435BF6FF7DD297720630485628D5AE74EE7C32E79B7,
)
ALICE = b"ALICE123@YAHOO.COM"
BILL = b"BILL456@YAHOO.COM"


def fixed(value: int):
    """A 'random' source that always answers ``value``, as the examples fix k."""
    return lambda bits: value


def xor(left: bytes, right: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(left, right, strict=True))


def gmalg_sm3(data: bytes) -> bytes:
    digest = gmalg.SM3()
    digest.update(data)
    return digest.value()


# SM3 and HMAC-SM3


@pytest.mark.parametrize(
    ("message", "expected"), [(b"abc", SM3_ABC), (b"abcd" * 16, SM3_ABCD_16)]
)
def test_sm3_matches_gbt_32905_examples(message, expected):
    assert sm3(message).hex() == expected


@pytest.mark.parametrize("key_length", [16, 32, 64, 100])
def test_hmac_sm3_equals_rfc_2104_built_by_hand_from_pure_python_sm3(key_length):
    key = bytes(range(1, key_length + 1))
    message = "subscriber 用户 42".encode()
    block = (gmalg_sm3(key) if len(key) > 64 else key).ljust(64, b"\0")
    inner = gmalg_sm3(bytes(b ^ 0x36 for b in block) + message)
    expected = gmalg_sm3(bytes(b ^ 0x5C for b in block) + inner)

    assert hmac_sm3(key, message) == expected


# SM4


def test_sm4_block_matches_gbt_32907_example():
    encryptor = Cipher(algorithms.SM4(SM4_KEY), modes.ECB()).encryptor()

    assert (encryptor.update(SM4_KEY) + encryptor.finalize()).hex() == SM4_ONCE
    assert gmalg.SM4(SM4_KEY).encrypt(SM4_KEY).hex() == SM4_ONCE


def test_sm4_million_encryptions_match_gbt_32907_example():
    encryptor = Cipher(algorithms.SM4(SM4_KEY), modes.ECB()).encryptor()
    block = SM4_KEY
    for _ in range(1_000_000):
        block = encryptor.update(block)

    assert block.hex() == SM4_MILLION


def test_sm4_gcm_opens_the_rfc_8998_example():
    nonce = bytes.fromhex("00001234567800000000ABCD")
    aad = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
    plaintext = bytes.fromhex("AA" * 8 + "BB" * 8 + "CC" * 8 + "DD" * 8)
    plaintext += bytes.fromhex("EE" * 8 + "FF" * 8 + "EE" * 8 + "AA" * 8)
    ciphertext = bytes.fromhex(
        "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
        "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
    )
    tag = bytes.fromhex("83DE3541E4C2B58177E065A9BF7B62EC")

    assert sm4_gcm_decrypt(SM4_KEY, nonce + ciphertext + tag, aad) == plaintext


def test_sm4_gcm_round_trip_uses_a_fresh_nonce_each_time():
    first = sm4_gcm_encrypt(SM4_KEY, b"13800000000 is not stored here", b"ctx")
    second = sm4_gcm_encrypt(SM4_KEY, b"13800000000 is not stored here", b"ctx")

    assert first != second
    assert sm4_gcm_decrypt(SM4_KEY, first, b"ctx") == sm4_gcm_decrypt(
        SM4_KEY, second, b"ctx"
    )


@pytest.mark.parametrize("where", ["nonce", "ciphertext", "tag", "aad", "key"])
def test_sm4_gcm_detects_any_tampering(where):
    box = bytearray(sm4_gcm_encrypt(SM4_KEY, b"field value", b"table.column"))
    key, aad = SM4_KEY, b"table.column"
    if where == "nonce":
        box[0] ^= 1
    elif where == "ciphertext":
        box[12] ^= 1
    elif where == "tag":
        box[-1] ^= 1
    elif where == "aad":
        aad = b"table.other_column"
    else:
        key = bytes(16)

    with pytest.raises(CryptoError, match="authentication failed"):
        sm4_gcm_decrypt(key, bytes(box), aad)


def test_sm4_cbc_box_is_iv_then_chained_blocks_of_the_standard_cipher():
    plaintext = b"0123456789abcdef0123"  # 20 bytes: PKCS#7 pads to 32
    box = sm4_cbc_encrypt(SM4_KEY, plaintext)

    iv, first, second = box[:16], box[16:32], box[32:48]
    padded = plaintext + bytes([12] * 12)
    reference = gmalg.SM4(SM4_KEY)
    assert len(box) == 48
    assert first == reference.encrypt(xor(padded[:16], iv))
    assert second == reference.encrypt(xor(padded[16:], first))
    assert sm4_cbc_decrypt(SM4_KEY, box) == plaintext


def test_sm4_rejects_a_key_of_the_wrong_length():
    with pytest.raises(CryptoError, match="16 bytes; found 32"):
        sm4_gcm_encrypt(bytes(32), b"x")


# SM2 signatures (GB/T 32918.2 appendix A)

SIGN_D = 0x128B2FA8BD433C6C068C8D803DFF79792A519A55171B1B650C23661D15897263
SIGN_K = 0x6CB28D99385C175C94F94E934817663FC176D925DD72B727260DBAAE1FB2F96F
SIGN_R = "40F1EC59F793D9F49E09DCEF49130D4194F79FB1EED2CAA55BACDB49C4E755D1"
SIGN_S = "6FC6DAC32C5D5CF10C77DFB20F7C2EB667A457872FB09EC56327A67EC7DEEBE7"
SIGN_PUBLIC = (
    "04"
    "0AE4C7798AA0F119471BEE11825BE46202BB79E2A5844495E97C04FF4DF2548A"
    "7C0240F88F1CD4E16352A73C17B7F16F07353E53A176D684A9FE0C6BB798E857"
)


def test_sm2_signature_reproduces_the_standard_example_with_its_fixed_k():
    key = SM2PrivateKey(SIGN_D, EXAMPLE_CURVE, random_bits=fixed(SIGN_K))

    assert key.public_key.to_bytes().hex().upper() == SIGN_PUBLIC
    assert key.public_key.z_value(ALICE).hex().upper() == (
        "F4A38489E32B45B6F876E3AC2168CA392362DC8F23459C1D1146FC3DBFB7BC9A"
    )
    assert key.sign(b"message digest", ALICE).hex().upper() == SIGN_R + SIGN_S


def test_sm2_published_signature_verifies_and_a_changed_one_does_not():
    public = SM2PublicKey.from_bytes(bytes.fromhex(SIGN_PUBLIC), EXAMPLE_CURVE)
    signature = bytes.fromhex(SIGN_R + SIGN_S)

    assert public.verify(b"message digest", signature, ALICE)
    assert not public.verify(b"message digesT", signature, ALICE)
    assert not public.verify(b"message digest", signature, BILL)
    assert not public.verify(b"message digest", signature[:-1] + b"\0", ALICE)


def test_sm2_signs_and_verifies_on_the_recommended_curve():
    key = SM2PrivateKey.generate()
    signature = key.sign(b"audience export sha256=...")
    public = SM2PublicKey.from_bytes(key.public_key.to_bytes())

    assert len(signature) == 64
    assert public.verify(b"audience export sha256=...", signature)
    assert not SM2PrivateKey.generate().public_key.verify(
        b"audience export sha256=...", signature
    )


def test_sm2_refuses_a_point_off_the_curve():
    good = bytearray(SM2PrivateKey.generate().public_key.to_bytes())
    good[-1] ^= 1

    with pytest.raises(CryptoError, match="not a point"):
        SM2PublicKey.from_bytes(bytes(good))


# SM2 key agreement (GB/T 32918.3 appendix A)

AGREE_DA = 0x6FCBA2EF9AE0AB902BC3BDE3FF915D44BA4CC78F88E2F8E7F8996D3B8CCEEDEE
AGREE_DB = 0x5E35D7D3F3C54DBAC72E61819E730B019A84208CA3A35E4C2E353DFCCB2A3B53
AGREE_RA = 0x83A2C9C8B96E5AF70BD480B472409A9A327257F1EBB73F5B073354B248668563
AGREE_RB = 0x33FE21940342161C55619C4A0C060293D543C80AF19748CE176D83477DE71C80


def test_sm2_key_agreement_reproduces_the_standard_example():
    alice = SM2PrivateKey(AGREE_DA, EXAMPLE_CURVE, random_bits=fixed(AGREE_RA))
    bill = SM2PrivateKey(AGREE_DB, EXAMPLE_CURVE, random_bits=fixed(AGREE_RB))
    a = alice.key_exchange(bill.public_key, initiator=True, uid=ALICE, peer_uid=BILL)
    b = bill.key_exchange(alice.public_key, initiator=False, uid=BILL, peer_uid=ALICE)

    bill_side = b.derive(a.ephemeral_public, 16)
    alice_side = a.derive(b.ephemeral_public, 16)

    assert a.ephemeral_public.hex().upper() == (
        "04"
        "6CB5633816F4DD560B1DEC458310CBCC6856C09505324A6D23150C408F162BF0"
        "0D6FCF62F1036C0A1B6DACCF57399223A65F7D7BF2D9637E5BBBEB857961BF1A"
    )
    assert alice_side.key.hex().upper() == "55B0AC62A6B927BA23703832C853DED4"
    assert bill_side.key == alice_side.key
    assert bill_side.confirmation.hex().upper() == (  # S_B
        "284C8F198F141B502E81250F1581C7E9EEB4CA6990F9E02DF388B45471F5BC5C"
    )
    assert alice_side.confirmation.hex().upper() == (  # S_A
        "23444DAF8ED7534366CB901C84B3BDBB63504F4065C1116C91A4C00697E6CF7A"
    )
    alice_side.check_peer(bill_side.confirmation)
    bill_side.check_peer(alice_side.confirmation)


def test_sm2_key_agreement_on_the_recommended_curve_gives_both_sides_one_key():
    alice, bill = SM2PrivateKey.generate(), SM2PrivateKey.generate()
    a = alice.key_exchange(bill.public_key, initiator=True)
    b = bill.key_exchange(alice.public_key, initiator=False)

    bill_side = b.derive(a.ephemeral_public, 32)
    alice_side = a.derive(b.ephemeral_public, 32)

    assert alice_side.key == bill_side.key
    assert len(alice_side.key) == 32
    alice_side.check_peer(bill_side.confirmation)
    bill_side.check_peer(alice_side.confirmation)


def test_sm2_key_agreement_with_a_wrong_peer_identity_fails_confirmation():
    alice, bill = SM2PrivateKey.generate(), SM2PrivateKey.generate()
    a = alice.key_exchange(bill.public_key, initiator=True, peer_uid=b"mallory")
    b = bill.key_exchange(alice.public_key, initiator=False)

    bill_side = b.derive(a.ephemeral_public)
    alice_side = a.derive(b.ephemeral_public)

    assert alice_side.key != bill_side.key
    with pytest.raises(CryptoError, match="confirmation failed"):
        alice_side.check_peer(bill_side.confirmation)


# The tokeniser's numba SM3 kernel


def test_tokeniser_sm3_compression_matches_gbt_32905_example():
    block = np.zeros(64, np.int64)
    block[:3] = list(b"abc")
    block[3] = 0x80
    block[63] = 24  # message length in bits
    state = _SM3_IV.copy()

    _sm3_compress_block(state, block, np.empty(68, np.int64))

    assert b"".join(int(w).to_bytes(4, "big") for w in state).hex() == SM3_ABC


def reference_tokens(key: bytes, kind: str, values: list[str]) -> list[str]:
    tokens = []
    for value in values:
        mac = hmac.HMAC(key, hashes.SM3())
        mac.update(f"{kind}:{value}".encode())
        tokens.append(base64.b32encode(mac.finalize()[:15]).decode().lower())
    return tokens


@pytest.mark.parametrize("key_length", [16, 32, 100])
def test_kernel_tokens_equal_openssl_hmac_for_any_length_and_text(key_length):
    rng = random.Random(key_length)
    alphabet = "0123456789 -+abcé中"
    values = [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 130)))
        for _ in range(6000)  # above the kernel threshold
    ]
    key = bytes(range(key_length))

    tokens = Pseudonymiser(key, workers=1).tokenise("imsi", pa.array(values))

    normalised = normalise_identifiers("imsi", pa.array(values)).to_pylist()
    assert tokens.to_pylist() == reference_tokens(key, "imsi", normalised)


def test_parallel_tokenising_gives_the_same_tokens_as_one_thread():
    values = pa.array([str(13_000_000_000 + i * 7) for i in range(250_000)])
    key = bytes(range(32))

    parallel = Pseudonymiser(key, workers=2).tokenise("msisdn", values)
    single = Pseudonymiser(key, workers=1).tokenise("msisdn", values)

    assert parallel.equals(single)
    sample = list(range(0, 250_000, 9973))
    assert parallel.take(sample).to_pylist() == reference_tokens(
        key, "msisdn", values.take(sample).to_pylist()
    )
