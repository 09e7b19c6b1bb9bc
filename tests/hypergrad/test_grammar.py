"""hypergrad.grammar: splitting outside brackets, reading a call, printing values."""

from __future__ import annotations

import pytest

from hypergrad.grammar import (
    Call,
    GrammarError,
    closing_bracket,
    format_value,
    join_call,
    parse_call,
    split_call,
    split_spans,
    split_top,
)


@pytest.mark.parametrize(
    ("text", "sep", "parts"),
    [
        ("adam(1e-3, learn=(lr, beta1))/sgd(1e-5)", "/",
         ["adam(1e-3, learn=(lr, beta1))", "sgd(1e-5)"]),
        ("sgd(lr=0.1)+cosine(at=[0.3, 0.6])", "+", ["sgd(lr=0.1)", "cosine(at=[0.3, 0.6])"]),
        ("a(b[c{d/e}f]g)/h", "/", ["a(b[c{d/e}f]g)", "h"]),
        ("a,,b", ",", ["a", "", "b"]),
        ("single", "/", ["single"]),
        ("lr=1e+3, b=2", ",", ["lr=1e+3", "b=2"]),
    ],
)
def test_split_top_splits_outside_brackets_only(text, sep, parts):
    assert split_top(text, sep) == parts


@pytest.mark.parametrize("text", ["a(b/c", "a)b/c", "a[(b]/c"])
def test_split_top_strict_refuses_unbalanced_brackets(text):
    with pytest.raises(GrammarError, match="unbalanced"):
        split_top(text, "/")


def test_split_top_lenient_never_raises():
    assert split_top("a(b/c", "/", strict=False) == ["a(b/c"]
    assert split_top("a)b/c", "/", strict=False) == ["a)b/c"]


def test_split_call_is_lenient():
    assert split_call("adam(lr=1e-3, betas=(0.9, 0.99))") == (
        "adam", ["lr=1e-3", "betas=(0.9, 0.99)"])
    assert split_call("prodigy") == ("prodigy", [])
    assert split_call("adam^lr(1e-3)") == ("adam^lr", ["1e-3"])
    assert split_call("odd(1)x") == ("odd(1)x", [])


@pytest.mark.parametrize(
    ("text", "call"),
    [
        ("sgd", Call("sgd")),
        ("sgd()", Call("sgd")),
        ("sgd-hd(1e-3, beta=0.1)", Call("sgd-hd", ("1e-3",), (("beta", "0.1"),))),
        ("c(at=[30, 60], g=(a, (b, c)))",
         Call("c", (), (("at", "[30, 60]"), ("g", "(a, (b, c))")))),
    ],
)
def test_parse_call_and_join_call_round_trip(text, call):
    parsed = parse_call(text)
    assert parsed == call
    assert parse_call(join_call(parsed.head, parsed.items())) == parsed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sgd(lr=0.1", "cannot read"),
        ("1sgd", "cannot read"),
        ("sgd(lr=1, lr=2)", "given twice"),
        ("sgd(lr=1, 2)", "after keyword"),
        ("sgd(1,,2)", "empty argument"),
        ("sgd(a(b)", "unbalanced"),
    ],
)
def test_parse_call_errors_say_what_is_wrong(text, message):
    with pytest.raises(GrammarError, match=message):
        parse_call(text)
    assert issubclass(GrammarError, ValueError)


def test_join_call_without_arguments_is_the_bare_head():
    assert join_call("prodigy", []) == "prodigy"
    assert join_call("sgd", ["0.1", "momentum=0.9"]) == "sgd(0.1, momentum=0.9)"


@pytest.mark.parametrize(
    ("value", "spec", "baselines", "python"),
    [
        (1.0, "1", "1", "1.0"),
        (1, "1", "1", "1"),
        (1e-05, "1e-5", "1e-5", "1e-5"),
        (1e16, "1e16", "1e16", "1e16"),
        (0.001, "0.001", "0.001", "0.001"),
        (True, "true", "true", "True"),
        ("lr", "lr", "lr", "'lr'"),
        ((0.9, 0.999), "(0.9, 0.999)", "[0.9, 0.999]", "(0.9, 0.999)"),
        (("lr", "beta1"), "(lr, beta1)", "[lr, beta1]", "('lr', 'beta1')"),
        (float("inf"), "inf", "inf", "inf"),
    ],
)
def test_format_value_in_each_callers_spelling(value, spec, baselines, python):
    assert format_value(value) == spec
    assert format_value(value, brackets="[]") == baselines
    assert format_value(value, python=True) == python


@pytest.mark.parametrize("value", [0.1, 1e-7, 3.0, 123456.789, 2.5e-300, 1e300])
def test_format_value_round_trips_numbers(value):
    assert float(format_value(value)) == value
    assert float(format_value(value, python=True)) == value


def test_split_spans_are_where_split_top_parts_stand():
    text = "adam( 1e-3, learn=(lr, b) )/ sgd"
    spans = split_spans(text, "/")
    assert [text[a:b].strip() for a, b in spans] == split_top(text, "/")
    assert spans == [(0, 27), (28, len(text))]
    assert split_spans("a)/b", "/", strict=False) == [(0, 4)]  # depth -1: no split


def test_closing_bracket_nests_every_kind():
    text = "f(a, [b, (c)], d)x"
    assert closing_bracket(text, 1) == 16
    assert closing_bracket(text, 5) == 12
    assert closing_bracket("f(a, b", 1) is None
    assert closing_bracket(text, 1, end=10) is None
