import pytest

from agi_daemon.core.phone import InvalidPhone, dial_forms, masked, numbers_masked, readable, to_e164


@pytest.mark.parametrize(
    "text, region, expected",
    [
        ("+33 1 84 88 00 00", "FR", "+33184880000"),
        ("01 84 88 00 00", "FR", "+33184880000"),
        ("0033184880000", "FR", "+33184880000"),
        ("33184880000", "FR", "+33184880000"),  # trunks often drop the '+'
        ("(212) 555-0100", "US", "+12125550100"),
        ("+1 212 555 0100", "FR", "+12125550100"),
    ],
)
def test_written_number_normalises_to_e164(text, region, expected):
    assert to_e164(text, region) == expected


@pytest.mark.parametrize("text", ["", "abc", "12", "anonymous"])
def test_unreadable_number_raises_invalid_phone(text):
    with pytest.raises(InvalidPhone):
        to_e164(text, "FR")


def test_dial_forms_cover_what_a_trunk_delivers():
    assert set(dial_forms("+33184880000", "FR")) == {"+33184880000", "33184880000", "0033184880000", "0184880000", "184880000"}


@pytest.mark.parametrize("e164, region", [("+33184880000", "FR"), ("+12125550100", "US"), ("+442079460000", "GB")])
def test_every_dial_form_reads_back_to_the_same_number(e164, region):
    assert dial_forms(e164, region)
    assert {to_e164(form, region) for form in dial_forms(e164, region)} == {e164}


def test_foreign_line_keeps_only_the_forms_the_daemon_reads_back():
    forms = dial_forms("+442071234567", "FR")
    assert set(forms) == {"+442071234567", "00442071234567"}


def test_masked_number_shows_only_last_digits():
    assert masked("+33184880042") == "…0042"
    assert "3318488" not in masked("+33184880042")
    assert masked(None) == "-"


@pytest.mark.parametrize(
    "text, region, expected",
    [
        ("01 84 88 00 00", "FR", "+33 1 84 88 00 00"),
        ("0033 1 84 88 00 01", "FR", "+33 1 84 88 00 01"),
        ("06 1234 5678", "IT", "+39 06 1234 5678"),  # Italy keeps its leading zero
        ("(212) 555-0101 ext. 12", "US", "+1 212-555-0101"),  # E.164 has no extension: neither has the name
    ],
)
def test_number_just_read_reads_as_its_international_form(text, region, expected):
    assert readable(to_e164(text, region)) == expected


def test_number_never_read_still_reads_as_its_international_form():
    assert readable("+33184889999") == "+33 1 84 88 99 99"


@pytest.mark.parametrize(("text", "shown"), [
    ('HTTP 422 {"input": "+33612345678"}', 'HTTP 422 {"input": "…5678"}'),
    ("Key (phone)=(+33 6 12 34 56 78) exists", "Key (phone)=(…5678) exists"),
    ("no client for 0612345678.", "no client for …5678."),
    ("duplicate 33612345678, +33-6-12-34-56-78", "duplicate …5678, …5678"),
    ("+33612345678 called 2 times; +33 6 12 34 56 78 2 times; +7 916 123-45-67 1 attempt",
     "…5678 called 2 times; …5678 2 times; …4567 1 attempt"),
    ("Spain 612345678, Italy 3123456789, US 4155552671", "Spain …5678, Italy …6789, US …2671"),
    # what an error also names, and must keep: a linkedid, an address, a status, a short id
    ("1700000000.12/records: HTTP 503 from 127.0.0.1:36087, lead 12", None),
])
def test_numbers_quoted_in_an_error_show_only_their_last_digits(text, shown):
    assert numbers_masked(text) == (text if shown is None else shown)
