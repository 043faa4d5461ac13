"""The UCI bank-marketing adapter: partner customers and campaign outcomes."""

from __future__ import annotations

import csv
import gzip
import re
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from telcoreach.errors import ConfigError, DataSourceError
from telcoreach.ingest.adapters._bank import read_bank_marketing
from telcoreach.schemas import ID_PATTERNS, schema_for

_ARROW_TYPES = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us"),
}


@pytest.fixture(scope="module")
def bank(datasets_dir):
    return read_bank_marketing(datasets_dir)


@pytest.fixture(scope="module")
def source_rows(datasets_dir):
    """The raw file read with the standard library, as an independent reference."""
    path = datasets_dir / "4-bank-marketing" / "bank-additional-full.csv.gz"
    with gzip.open(path, "rt", newline="") as handle:
        return list(csv.DictReader(handle, delimiter=";"))


@pytest.mark.realdata
def test_both_tables_hold_every_one_of_the_41188_calls(bank):
    customers, outcomes = bank

    assert customers.num_rows == 41_188
    assert outcomes.num_rows == 41_188


@pytest.mark.realdata
@pytest.mark.parametrize("kind", ["partner_customers", "campaign_outcomes"])
def test_columns_and_types_are_exactly_the_declared_input_fields(bank, kind):
    table = bank[0] if kind == "partner_customers" else bank[1]
    declared = schema_for(kind)

    assert tuple(table.column_names) == declared.field_names
    for field in declared.fields:
        assert table.schema.field(field.name).type == _ARROW_TYPES[field.dtype]


@pytest.mark.realdata
def test_call_duration_is_dropped_because_it_leaks_the_outcome(bank):
    customers, outcomes = bank

    assert "duration" not in customers.column_names
    assert "duration" not in outcomes.column_names


@pytest.mark.realdata
def test_converted_matches_y_yes_row_by_row(bank, source_rows):
    converted = bank[1].column("converted").to_pylist()

    assert converted == [row["y"] == "yes" for row in source_rows]
    assert sum(converted) == 4_640  # published count of subscribers


@pytest.mark.realdata
def test_renamed_attributes_keep_the_source_values(bank, source_rows):
    customers = bank[0]

    assert customers.column("credit_default").to_pylist() == [
        row["default"] for row in source_rows
    ]
    assert customers.column("nr_employed").to_pylist() == [
        float(row["nr.employed"]) for row in source_rows
    ]


@pytest.mark.realdata
def test_channel_is_the_contact_column(bank, source_rows):
    assert bank[1].column("channel").to_pylist() == [
        row["contact"] for row in source_rows
    ]


@pytest.mark.realdata
def test_msisdn_is_an_opaque_row_id_not_a_phone_number(bank):
    ids = bank[0].column("msisdn").to_pylist()

    assert ids[:2] == ["bank-1", "bank-2"]
    assert ids[-1] == "bank-41188"
    assert len(set(ids)) == len(ids)
    assert not any(re.match(ID_PATTERNS["msisdn"], value) for value in ids)
    assert bank[1].column("msisdn").to_pylist() == ids


@pytest.mark.realdata
def test_contacts_run_from_may_2008_to_november_2010(bank):
    contacted_at = bank[1].column("contacted_at")

    assert contacted_at[0].as_py() == datetime(2008, 5, 1)
    assert contacted_at[-1].as_py() == datetime(2010, 11, 1)
    assert pc.all(pc.equal(pc.day(contacted_at), 1)).as_py()


@pytest.mark.realdata
def test_inferred_year_makes_the_monthly_price_index_single_valued(bank):
    # The consumer price index is a monthly figure from the Banco de Portugal:
    # with the right year every (year, month) has one value, while the same
    # calendar month of different years has several.
    customers, outcomes = bank
    months = pa.table(
        {
            "contacted_at": outcomes.column("contacted_at"),
            "month": pc.month(outcomes.column("contacted_at")),
            "cpi": customers.column("cons_price_idx"),
        }
    )

    per_month = months.group_by("contacted_at").aggregate([("cpi", "count_distinct")])
    per_calendar_month = months.group_by("month").aggregate([("cpi", "count_distinct")])

    assert per_month.num_rows == 26
    assert set(per_month.column("cpi_count_distinct").to_pylist()) == {1}
    assert max(per_calendar_month.column("cpi_count_distinct").to_pylist()) == 3


@pytest.mark.realdata
def test_every_outcome_belongs_to_the_term_deposit_campaign(bank):
    assert set(bank[1].column("campaign_id").to_pylist()) == {"bank-term-deposit"}


def test_unknown_variant_is_a_config_error_naming_the_choices(tmp_path):
    with pytest.raises(ConfigError, match="additional"):
        read_bank_marketing(tmp_path, variant="tiny")


def test_missing_file_is_a_data_source_error_naming_the_path(tmp_path):
    with pytest.raises(DataSourceError, match=r"bank-additional-full\.csv\.gz"):
        read_bank_marketing(tmp_path)
