"""Card value objects: Luhn, schemes, masking, expiry, and refusal to be serialised."""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardkeep.cde.pan import CardNumber, Cvv
from cardkeep.domain.card import Expiry, Scheme, looks_like_pan, luhn_ok, mask_pans


def with_check_digit(body: str) -> str:
    for d in "0123456789":
        if luhn_ok(body + d):
            return body + d
    raise AssertionError


@given(st.text("0123456789", min_size=11, max_size=18))
def test_exactly_one_check_digit_makes_a_number_luhn_valid(body: str) -> None:
    valid = [d for d in "0123456789" if luhn_ok(body + d)]
    assert len(valid) == 1


@given(st.text("0123456789", min_size=11, max_size=14))
def test_masked_form_never_shows_more_than_six_and_four(body: str) -> None:
    pan = with_check_digit("4" + body)
    try:
        card = CardNumber(pan)
    except ValueError:
        return
    assert card.masked[:6] == pan[:6]
    assert card.masked[-4:] == pan[-4:]
    assert set(card.masked[6:-4]) <= {"*"}
    assert pan not in repr(card)
    assert pan not in str(card)
    assert pan not in f"{card}"


@pytest.mark.parametrize(
    ("pan", "scheme"),
    [
        ("5200000000001005", Scheme.MASTERCARD),
        ("4456530000001013", Scheme.VISA),
        ("378282246310005", Scheme.AMEX),
        ("6011111111111117", Scheme.DISCOVER),
        ("36227206271667", Scheme.DCI),
        ("6759649826438453", Scheme.MAESTRO),
    ],
)
def test_schemes_are_detected(pan: str, scheme: Scheme) -> None:
    assert CardNumber(pan).scheme is scheme


@pytest.mark.parametrize("bad", ["5200000000001006", "12345", "4111x11111111111", "9" * 20])
def test_invalid_numbers_are_refused(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        CardNumber(bad)
    assert bad not in str(info.value)


def test_spaces_and_dashes_are_removed() -> None:
    assert CardNumber("5200 0000-0000 1005").digits == "5200000000001005"


def test_card_data_cannot_be_pickled() -> None:
    with pytest.raises(TypeError):
        pickle.dumps(CardNumber("5200000000001005"))
    with pytest.raises(TypeError):
        pickle.dumps(Cvv("123", Scheme.VISA))
    assert "123" not in repr(Cvv("123", Scheme.VISA))


@pytest.mark.parametrize(
    ("text", "month", "year"), [("12/29", 12, 2029), ("01 / 30", 1, 2030), ("07/2031", 7, 2031)]
)
def test_expiry_formats(text: str, month: int, year: int) -> None:
    assert Expiry.parse(text) == Expiry(month, year)


@pytest.mark.parametrize("text", ["13/29", "00/29", "1229", "12-29", "ab/cd"])
def test_bad_expiry(text: str) -> None:
    with pytest.raises(ValueError):
        Expiry.parse(text)


def test_card_is_good_through_the_last_instant_of_its_month() -> None:
    exp = Expiry(2, 2028)
    assert not exp.is_expired(datetime(2028, 2, 29, 23, 59, 59, 999999, tzinfo=UTC))
    assert exp.is_expired(datetime(2028, 3, 1, tzinfo=UTC))
    assert Expiry(12, 2028).ends_at == datetime(2029, 1, 1, tzinfo=UTC)


# -- finding card numbers in text (the request guard and log redaction share these rules) -------


@pytest.mark.parametrize(
    "text",
    [
        "5200000000001005",
        "ref 5200 0000 0000 1005 end",
        "5200-0000-0000-1005",
        "5200.0000.0000.1005",
        "5200_0000_0000_1005",
        "5200\t0000\n0000 1005",
        "x378282246310005y",  # AMEX, whatever the account accepts
        "booking 4000000000000002",
    ],
)
def test_looks_like_pan_finds_card_numbers_however_they_are_written(text: str) -> None:
    assert looks_like_pan(text)
    assert "1005" not in mask_pans(text) or "******" in mask_pans(text)


@pytest.mark.parametrize(
    "text",
    [
        "5200000000001006",  # Luhn fails
        "5200  0000 0000 1005",  # a double separator ends the run
        "2026-11-24T13:56:55.123456Z",
        "Table 4, 12 guests",
        "00000000000000000000",  # 20 digits: longer than any PAN
        "1000000000000008",  # Luhn-valid, but no scheme starts with 1
        "".join(chr(0xFF10 + int(d)) for d in "5200000000001005"),  # fullwidth digits
    ],
)
def test_looks_like_pan_leaves_other_text_alone(text: str) -> None:
    assert not looks_like_pan(text)


def test_mask_pans_masks_every_luhn_valid_run_and_keeps_the_rest() -> None:
    assert mask_pans("card 5200 0000 0000 1005, ok") == "card 520000******1005, ok"
    assert mask_pans("at 2026-11-24 for 4 guests") == "at 2026-11-24 for 4 guests"
    assert mask_pans("1000000000000008") == "100000******0008"  # logs hide scheme-less runs too


def test_mask_pans_masks_exactly_the_luhn_valid_runs_at_the_length_bounds() -> None:
    """Runs of 10 to 21 digits, with up to two separators between digits, between letters: a run
    is masked exactly when its digits are 12 to 19 long and Luhn-valid (mask_pans looks for twelve
    digits first, and must never skip one that qualifies)."""
    rng = random.Random(20261206)
    separators = ["", "", "", " ", "-", ".", "_", "--", " .", "\t"]
    for _ in range(20_000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randrange(10, 22)))
        run = "".join(d + rng.choice(separators) for d in digits[:-1]) + digits[-1]
        text = f"{rng.choice('abcdef')}{run}{rng.choice('abcdef')}"
        qualifies = 12 <= len(digits) <= 19 and luhn_ok(digits)
        assert (mask_pans(text) != text) is qualifies, text


@given(
    st.sampled_from(["4", "51", "2221", "6011", "36", "50"]),
    st.text("0123456789", min_size=14, max_size=14),
)
def test_mask_pans_never_leaves_a_pan_in_clear(prefix: str, body: str) -> None:
    pan = with_check_digit((prefix + body)[:15])
    for sep in ("", " ", "-", "."):
        text = f"id={sep.join(pan[i : i + 4] for i in range(0, 16, 4))};"
        assert looks_like_pan(text)
        masked = mask_pans(text)
        assert pan not in masked.replace(sep, "") if sep else pan not in masked
