"""Chinese personal data in free text: detection, checksums, masking at ingest."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from telcoreach.engine import Engine
from telcoreach.ingest import file_sources, ingest_batch, validate_chunk
from telcoreach.pipeline import init_workspace
from telcoreach.privacy import Pseudonymiser, find_raw_identifiers, scrub_pii
from telcoreach.schemas import schema_for


def iso7064_mod11_2(body: str) -> str:
    """Check character by the iterative form of ISO 7064 MOD 11-2."""
    remainder = 0
    for char in body:
        remainder = ((remainder + int(char)) * 2) % 11
    value = (12 - remainder) % 11
    return "X" if value == 10 else str(value)


def luhn_check_digit(body: str) -> str:
    """Digit that makes ``body + digit`` pass Luhn, by trying all ten."""
    for digit in "0123456789":
        number = body + digit
        total = 0
        for index, char in enumerate(number[::-1]):
            doubled = int(char) * 2 if index % 2 else int(char)
            total += sum(int(c) for c in str(doubled))
        if total % 10 == 0:
            return digit
    raise AssertionError("unreachable: one digit always fits")


def scrubbed(text: str) -> tuple[str, dict[str, int]]:
    result = scrub_pii(pa.array([text]))
    return result.text[0].as_py(), result.counts


def test_published_id_card_example_is_masked():
    # The sample number printed in GB 11643-1999.
    text, counts = scrubbed("身份证 11010519491231002X 已登记")

    assert text == "身份证 <id_card> 已登记"
    assert counts["id_card"] == 1


def test_id_card_with_a_wrong_check_digit_is_not_an_id_card():
    _, counts = scrubbed("身份证 110105194912310021")

    assert counts["id_card"] == 0


def test_id_card_check_digits_agree_with_iterative_iso7064():
    rng = random.Random(11)
    for _ in range(40):
        body = (
            rng.choice(["110105", "310104", "510107", "230102"])
            + f"{rng.randint(1930, 2015)}{rng.randint(1, 12):02d}"
            + f"{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
        )
        good = body + iso7064_mod11_2(body)
        wrong = body + ("0" if good[-1] != "0" else "1")

        assert scrubbed(good)[1]["id_card"] == 1, good
        assert scrubbed(wrong)[1]["id_card"] == 0, wrong


@pytest.mark.parametrize(
    "written",
    [
        "13812345678",
        "+86 138 1234 5678",
        "86-138-1234-5678",
        "+8613812345678",
        "199-0000-1111",
    ],
)
def test_mobile_number_in_any_usual_writing_is_masked(written):
    text, counts = scrubbed(f"联系 {written} 家教")

    assert text == "联系 <mobile> 家教"
    assert counts["mobile"] == 1


@pytest.mark.parametrize("not_mobile", ["12812345678", "1381234567", "0.13812345678"])
def test_number_that_is_not_a_mobile_is_kept(not_mobile):
    text, counts = scrubbed(f"value {not_mobile}")

    assert text == f"value {not_mobile}"
    assert sum(counts.values()) == 0


def test_mobile_glued_to_letters_in_a_host_is_masked():
    text, _ = scrubbed("h13911112222.example.com")

    assert text == "h<mobile>.example.com"


def test_imsi_with_china_country_code_is_masked():
    text, counts = scrubbed("imsi 460001234567890")

    assert text == "imsi <imsi>"
    assert counts["imsi"] == 1


def test_imei_needs_a_valid_luhn_digit():
    # 490154203237518 is the worked IMEI example of 3GPP TS 23.003 / Wikipedia.
    body = "49015420323751"
    wrong = body + str((int(luhn_check_digit(body)) + 1) % 10)

    assert scrubbed("imei 490154203237518") == (
        "imei <imei>",
        {"id_card": 0, "mobile": 0, "imsi": 0, "imei": 1, "bank_card": 0},
    )
    assert scrubbed(f"imei {wrong}")[0] == f"imei {wrong}"


@pytest.mark.parametrize(
    "body", ["621700123456789012", "622202100112345", "411111111111111"]
)
def test_bank_card_with_a_valid_luhn_digit_is_masked(body):
    card = body + luhn_check_digit(body)
    wrong = body + str((int(luhn_check_digit(body)) + 1) % 10)

    assert scrubbed(f"卡号{card}")[0] == "卡号<bank_card>"
    assert scrubbed(f"卡号{wrong}")[1]["bank_card"] == 0


def test_long_number_without_a_card_prefix_is_not_a_bank_card():
    body = "173331234567890"  # a nanosecond-like timestamp, not an issuer
    number = body + luhn_check_digit(body)

    assert scrubbed(number)[0] == number


def test_counts_add_up_over_an_array_and_nulls_stay_null():
    values = pa.chunked_array(
        [["13812345678 和 13912345678", None], ["460001234567890", "数学辅导"]]
    )

    result = scrub_pii(values)

    assert result.text.to_pylist() == [
        "<mobile> 和 <mobile>",
        None,
        "<imsi>",
        "数学辅导",
    ]
    assert result.counts["mobile"] == 2 and result.counts["imsi"] == 1
    assert result.total == 3


def test_validate_chunk_reports_masked_items_by_kind():
    schema = schema_for("dpi")
    chunk = pa.table(
        {
            "msisdn": ["13812345678"],
            "start_time": ["2026-11-02 08:00:00"],
            "end_time": ["2026-11-02 08:05:00"],
            "app_name": ["baidu"],
            "app_category": ["search"],
            "search_keywords": ["身份证11010519491231002X 电话13987654321"],
            "bytes_up": ["1"],
            "bytes_down": ["1"],
            "host": ["h13911112222.example.com"],
            "cell_id": ["c1"],
        }
    )

    result = validate_chunk(
        schema, chunk, Pseudonymiser(bytes(32)), source_file="x.csv", first_line=2
    )

    assert result.pii_masked == {
        "id_card": 1,
        "mobile": 2,
        "imsi": 0,
        "imei": 0,
        "bank_card": 0,
    }
    assert result.valid.column("search_keywords").to_pylist() == [
        "身份证<id_card> 电话<mobile>"
    ]


def test_dpi_file_with_personal_data_in_search_keywords_stores_none(tmp_path):
    workspace = init_workspace(tmp_path / "ws")
    card = "621700123456789012" + luhn_check_digit("621700123456789012")
    imei = "35693803564380" + luhn_check_digit("35693803564380")
    typed = [
        "家教 联系 138-1234-5678",
        "身份证 11010519491231002X",
        f"银行卡 {card}",
        f"imei {imei} imsi 460011234567890",
        "补习 +86 139 8765 4321",
    ]
    header = (
        "msisdn,start_time,end_time,app_name,app_category,search_keywords,"
        "bytes_up,bytes_down,host,cell_id\n"
    )
    rows = [
        f"13812345678,2026-11-02 08:0{i}:00,2026-11-02 08:0{i}:30,baidu,search,"
        f"{words},1,1,s.example.com,c1"
        for i, words in enumerate(typed)
    ]
    path = tmp_path / "dpi.csv"
    path.write_text(header + "\n".join(rows) + "\n", encoding="utf-8")

    summary = ingest_batch(workspace, "dpi", file_sources("dpi", [path]))

    stored = Engine(workspace).lake("dpi").to_pandas().to_csv()
    assert summary.rows_stored == len(typed)
    assert find_raw_identifiers(stored) == {}
    for secret in [
        "1234-5678",
        "11010519491231002X",
        card,
        imei,
        "460011234567890",
        "8765 4321",
    ]:
        assert secret not in stored, secret
    assert "<bank_card>" in stored and "<id_card>" in stored


def test_scanner_finds_id_cards_and_bank_cards_with_valid_check_digits():
    card = "6217001234567890123"[:-1]
    card += luhn_check_digit(card)

    found = find_raw_identifiers(f"id 11010519491231002X card {card}.")

    assert set(found) == {"id_card", "bank_card"}
    assert found["id_card"] == ["*" * 16 + "2X"]


def test_scanner_ignores_bad_check_digits_digests_and_fractions():
    card = "621700123456789012"
    card += str((int(luhn_check_digit(card)) + 1) % 10)
    text = (
        f"id 110105194912310021 card {card} "
        "sha 3f11010519491231002X9a 0.11010519491231002 ts 1733312345678901234"
    )

    assert find_raw_identifiers(text) == {}


def test_reference_check_digits_reproduce_published_examples():
    # GB 11643 samples, the TS 23.003 IMEI example and the Visa test card.
    assert iso7064_mod11_2("11010519491231002") == "X"
    assert iso7064_mod11_2("44052418800101001") == "4"
    assert luhn_check_digit("49015420323751") == "8"
    assert luhn_check_digit("411111111111111") == "1"


def test_full_width_digits_from_chinese_input_methods_are_masked():
    scrubbed = scrub_pii(
        pa.array(["我的电话１３９１２３４５６７８", "＋８６ １３９ １２３４ ５６７８"])
    )

    assert scrubbed.text.to_pylist() == ["我的电话<mobile>", "<mobile>"]
    assert scrubbed.counts["mobile"] == 2


def test_grouped_mobile_number_followed_by_another_number_is_masked():
    scrubbed = scrub_pii(pa.array(["call 139 1234 5678 2024", "order 2024 12 31"]))

    assert scrubbed.text.to_pylist() == ["call <mobile> 2024", "order 2024 12 31"]
