"""``printable``: untrusted names cannot forge log lines or drive the terminal."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guards.log_text import printable


@pytest.mark.parametrize(("text", "shown"), [
    ("cam0", "cam0"),
    ("x\nCRITICAL fake", "x\\nCRITICAL fake"),
    ("a\rb\tc", "a\\rb\\tc"),
    ("\x1b[2J\x1b]0;owned\x07", "\\x1b[2J\\x1b]0;owned\\x07"),
    ("left\u202eright", "left\\u202eright"),  # a bidi override reorders what is shown
    ("line\u2028sep", "line\\u2028sep"),
    ("back\\slash", "back\\slash"),
    ("café 北京", "café 北京"),
])
def test_control_characters_are_escaped(text: str, shown: str) -> None:
    assert printable(text) == shown


def test_long_text_is_cut_with_a_note() -> None:
    assert printable("a" * 300, max_chars=10) == "aaaaaaaaaa...(290 more chars)"


@given(st.text())
def test_the_result_is_always_one_printable_line(text: str) -> None:
    shown = printable(text, max_chars=10_000)
    assert shown.isprintable()
    assert "\n" not in shown
    assert "\x1b" not in shown
    assert printable(shown, max_chars=100_000) == shown  # escaping twice changes nothing
