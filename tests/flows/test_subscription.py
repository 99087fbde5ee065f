"""The subscription's window, decided on an injected clock from what its Variable holds:
no Prefect server, milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from regards_order.errors import ConfigurationError
from regards_order.flows.subscription import choose_window, closed

NOW = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)
VARIABLE = "regards-order-window-subscription"


def test_the_first_run_starts_at_since_and_keeps_its_window_pending() -> None:
    window, keep = choose_window(None, "2024-05-01", NOW, VARIABLE)
    assert (window.since, window.until) == (datetime(2024, 5, 1, tzinfo=UTC), NOW)
    assert keep == {
        "done": None,
        "pending": {"since": "2024-05-01T00:00:00+00:00", "until": NOW.isoformat()},
    }


def test_a_window_delivered_whole_is_followed_by_the_next_one() -> None:
    first, kept = choose_window(None, "2024-05-01T00:00:00Z", NOW, VARIABLE)
    assert kept is not None
    later = NOW + timedelta(hours=1)
    second, keep = choose_window(closed(first), "2024-05-01", later, VARIABLE)
    assert (second.since, second.until) == (NOW, later)  # from the last end, since ignored
    assert keep is not None and keep["done"] == NOW.isoformat()


def test_a_window_left_unfinished_is_taken_again_as_it_was() -> None:
    first, kept = choose_window(None, "2024-05-01", NOW, VARIABLE)
    again, keep = choose_window(kept, "2024-05-01", NOW + timedelta(days=3), VARIABLE)
    assert (again.since, again.until) == (first.since, first.until)  # same window, same order
    assert keep is None  # the Variable holds it already


def test_a_clock_behind_the_last_window_gives_an_empty_window_not_an_inverted_one() -> None:
    ahead = (NOW + timedelta(minutes=5)).isoformat()
    window, _ = choose_window({"done": ahead, "pending": None}, "", NOW, VARIABLE)
    assert window.since == window.until == NOW + timedelta(minutes=5)


@pytest.mark.parametrize(
    ("stored", "since", "expected"),
    [
        (None, "", "give the first window's start"),
        (None, "yesterday", "since 'yesterday' is not an ISO 8601 date"),
        ({"done": "soon", "pending": None}, "", "the last window's end 'soon'"),
    ],
)
def test_a_window_that_cannot_be_told_is_a_configuration_error(
    stored: object, since: str, expected: str
) -> None:
    with pytest.raises(ConfigurationError, match=expected):
        choose_window(stored, since, NOW, VARIABLE)
