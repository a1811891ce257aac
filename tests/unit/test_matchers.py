"""Matchers read and match as Alertmanager's do.

The cases follow the ones Alertmanager tests its own parsers with (the UTF-8 parser, the
classic parser, and the fallback between them that its default mode applies), written
again here as our own table.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from incidents.config import load_settings
from incidents.exceptions import ConfigError, ValidationFailed
from incidents.routing.matchers import Matcher, Op, parse_matcher, parse_matchers

Triples = list[tuple[str, str, str]]


def triples(text: str) -> Triples:
    return [(m.name, m.op.value, m.value) for m in parse_matchers(text)]


# -- what both grammars, or one of them, accept ------------------------------------------

ACCEPTED: list[tuple[str, Triples]] = [
    # The UTF-8 grammar: braces optional, a trailing comma allowed, bare or quoted.
    ("{foo=bar}", [("foo", "=", "bar")]),
    ("{foo=bar,}", [("foo", "=", "bar")]),
    ("{foo!=bar}", [("foo", "!=", "bar")]),
    ("{foo=~[a-z]+}", [("foo", "=~", "[a-z]+")]),
    ("{foo!~[a-z]+}", [("foo", "!~", "[a-z]+")]),
    ("{foo=🙂}", [("foo", "=", "🙂")]),
    ("{foo=🙂bar}", [("foo", "=", "🙂bar")]),
    ("foo=bar", [("foo", "=", "bar")]),
    ("foo=bar,", [("foo", "=", "bar")]),
    ("foo!~[a-z]+", [("foo", "!~", "[a-z]+")]),
    ('{"foo"="bar"}', [("foo", "=", "bar")]),
    ('{"foo"="bar",}', [("foo", "=", "bar")]),
    ('{"foo"!~"[a-z]+"}', [("foo", "!~", "[a-z]+")]),
    ('{"foo"="🙂"}', [("foo", "=", "🙂")]),
    ('{"foo"="\\U0001f642"}', [("foo", "=", "🙂")]),
    ('{"foo"="bar\\n"}', [("foo", "=", "bar\n")]),
    ('{"foo"="bar\\t"}', [("foo", "=", "bar\t")]),
    ('{"foo"="\\"bar\\""}', [("foo", "=", '"bar"')]),
    ('{"foo"="bar\\\\"}', [("foo", "=", "bar\\")]),
    ('"foo"="bar",', [("foo", "=", "bar")]),
    ("{foo=bar,bar!=baz}", [("foo", "=", "bar"), ("bar", "!=", "baz")]),
    ('foo="bar",bar!="baz"', [("foo", "=", "bar"), ("bar", "!=", "baz")]),
    ("{}", []),
    # The classic grammar.
    ('{foo="bar", baz!~"quux.*"}', [("foo", "=", "bar"), ("baz", "!~", "quux.*")]),
    ('{foo=""}', [("foo", "=", "")]),
    ('{foo="bar,quux", job="job1"}', [("foo", "=", "bar,quux"), ("job", "=", "job1")]),
    ('{foo = "bar", dings != "bums", }', [("foo", "=", "bar"), ("dings", "!=", "bums")]),
    (
        '{quote="She said: \\"Hi, all! It\'s here…\\""}',
        [("quote", "=", 'She said: "Hi, all! It\'s here…"')],
    ),
    ('statuscode=~"5.."', [("statuscode", "=~", "5..")]),
    ("tricky=~~~", [("tricky", "=~", "~~")]),
    ('trickier==\\\\=\\=\\"', [("trickier", "=", '=\\=\\="')]),
    (
        'contains_quote != "\\"" , contains_comma !~ "foo,bar" , ',
        [("contains_quote", "!=", '"'), ("contains_comma", "!~", "foo,bar")],
    ),
    ("{foo='}", [("foo", "=", "'")]),
    ("{foo=`}", [("foo", "=", "`")]),
    ('{foo=\\"}', [("foo", "=", '"')]),
    ("{foo=bar}}", [("foo", "=", "bar}")]),
    ("{foo=bar}},}", [("foo", "=", "bar}}")]),
    ("{foo=,bar=}}", [("foo", "=", ""), ("bar", "=", "}")]),
    ("{foo=bar\\t}", [("foo", "=", "bar\\t")]),
    ("{foo=bar\\n}", [("foo", "=", "bar\n")]),
    ("{foo=bar\\}", [("foo", "=", "bar\\")]),
    ('{foo=bar\\"}', [("foo", "=", 'bar"')]),
    ("job=", [("job", "=", "")]),
    ("{foo=", [("foo", "=", "")]),
    ("{foo=}b", [("foo", "=", "}b")]),
    # Only the UTF-8 grammar reads these: the name is not a classic label name.
    ("foo🙂=bar", [("foo🙂", "=", "bar")]),
    ("{foo🙂=bar,bar=baz🙂}", [("foo🙂", "=", "bar"), ("bar", "=", "baz🙂")]),
    ('{invalid-name = "valid label"}', [("invalid-name", "=", "valid label")]),
    ('"label with space"="x"', [("label with space", "=", "x")]),
    # Only the classic grammar reads these; the default mode takes its reading.
    ("foo=!bar\\n", [("foo", "=", "!bar\n")]),
    ("{foo=!bar,bar=$baz\\n}", [("foo", "=", "!bar"), ("bar", "=", "$baz\n")]),
    ("{foo=bar baz}", [("foo", "=", "bar baz")]),
    # Both read it, differently (Go escapes against OpenMetrics ones): classic wins.
    ('{foo="\\xf0\\x9f\\x99\\x82"}', [("foo", "=", "\\xf0\\x9f\\x99\\x82")]),
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED)
def test_matchers_read_as_alertmanager_reads_them(text: str, expected: Triples) -> None:
    if not expected:
        with pytest.raises(ValidationFailed, match="no matcher"):
            parse_matchers(text)
        return
    assert triples(text) == expected


# -- what neither grammar accepts ----------------------------------------------------------

REFUSED: list[tuple[str, str]] = [
    ('alertname=="X"', "unescaped double quote"),
    ('job="value', "unescaped double quote"),
    ('job=value"', "unescaped double quote"),
    ('trickier==\\\\=\\=\\""', "unescaped double quote"),
    ('contains_unescaped_quote = foo"bar', "unescaped double quote"),
    ('"{foo=\\"bar"}', "bad matcher"),
    ('"foo=\\"bar\\""', "bad matcher"),
    ('"foo="bar""', "bad matcher"),
    ("{{foo=", "bad matcher"),
    (",", "bad matcher"),
    ("{,}", "bad matcher"),
    ("foo!bar", "expected one of =, !=, =~, !~"),
    ("alertname", "expected one of =, !=, =~, !~"),
    ('{foo=~"invalid[regexp"}', "regular expression"),
]


@pytest.mark.parametrize(("text", "words"), REFUSED)
def test_bad_matchers_are_refused_naming_the_field(text: str, words: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_matchers(text, where="filter[2]")
    assert caught.value.field == "filter[2]"
    assert caught.value.message.startswith("filter[2]: ")
    assert words in caught.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("foo=bar", ("foo", "=", "bar")),
        ("foo🙂=bar", ("foo🙂", "=", "bar")),
        ("foo=!bar\\n", ("foo", "=", "!bar\n")),
        # One classic matcher: its value runs to the end, commas and all.
        ("foo=bar,bar=baz", ("foo", "=", "bar,bar=baz")),
        ('foo="\\xf0\\x9f\\x99\\x82"', ("foo", "=", "\\xf0\\x9f\\x99\\x82")),
    ],
)
def test_one_matcher_reads_as_alertmanager_reads_a_filter(
    text: str, expected: tuple[str, str, str]
) -> None:
    found = parse_matcher(text)
    assert (found.name, found.op.value, found.value) == expected


@pytest.mark.parametrize("text", ["{foo=bar}", "{foo=bar", "foo=bar}", "foo!bar", ""])
def test_one_matcher_refuses_braces_and_bad_input(text: str) -> None:
    with pytest.raises(ValidationFailed):
        parse_matcher(text, where="filter[0]")


@pytest.mark.parametrize(
    ("name", "op", "value"),
    [
        ("alertname", "=", "Disk full"),
        ("a", "=~", 'quote " and backslash \\ and\nnewline'),
        ("team", "!=", ""),
        ("label with space", "!~", "x|y"),
        ("foo🙂", "=", "tab\there"),
        ("a-b", "=", "\\d"),
        ('we"ird', "=", "\x00\x7f é"),
    ],
)
def test_a_matcher_prints_as_text_that_reads_back_unchanged(name: str, op: str, value: str) -> None:
    matcher = Matcher.create(name, op, value)
    [again] = parse_matchers(str(matcher))
    assert (again.name, again.op, again.value) == (name, Op(op), value)


# -- regular expressions: RE2, fully anchored ---------------------------------------------


def test_regexes_are_anchored_at_both_ends() -> None:
    [m] = parse_matchers('instance=~"web-[0-9]+"')
    assert m.matches({"instance": "web-12"})
    assert not m.matches({"instance": "web-12.example"})
    assert not m.matches({"instance": "my-web-12"})
    assert not m.matches({"instance": "web-12\n"})
    [alternation] = parse_matchers('env=~"prod|staging"')
    assert not alternation.matches({"env": "production"})
    assert alternation.matches({"env": "staging"})


def test_regexes_follow_go_semantics() -> None:
    # `.` does not match a line feed unless the pattern asks with (?s), as in Go.
    [dot] = parse_matchers('msg=~"a.b"')
    assert not dot.matches({"msg": "a\nb"})
    assert parse_matchers('msg=~"(?s)a.b"')[0].matches({"msg": "a\nb"})
    # An absent label matches as the empty string.
    [negated] = parse_matchers('team!~"ops|sre"')
    assert negated.matches({})
    assert parse_matchers('team=~".*"')[0].matches({})


@pytest.mark.parametrize(
    "pattern", ["(a)\\\\1", "(?=x)foo", "(?<=a)b", "(?!x)y", "a++", "(?P=name)"]
)
def test_a_regex_re2_refuses_is_a_validation_error_naming_the_matcher(pattern: str) -> None:
    text = f'instance=~"{pattern}"'
    with pytest.raises(ValidationFailed) as caught:
        parse_matchers(text, where="filter[0]")
    assert caught.value.field == "filter[0]"
    assert "regular expression" in caught.value.message
    assert "instance=~" in caught.value.message


def test_a_catastrophic_pattern_runs_in_linear_time() -> None:
    # In a child process: a backtracking engine would hold the GIL for ever, and only a
    # process can be stopped from outside.
    script = textwrap.dedent(
        """
        import time
        from incidents.routing.matchers import parse_matchers
        value = "a" * 10_000 + "b"
        began = time.perf_counter()
        for text in ['i=~"(a+)+"', 'i=~"(a|a)*"', 'i=~"(a*)*c"', 'i!~"(a+)+$"']:
            [m] = parse_matchers(text)
            m.matches({"i": value})
        print(time.perf_counter() - began)
        """
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        pytest.fail("matching (a+)+ against a 10,001-character value ran for over 20 s")
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) < 0.5


# -- inhibition rules in the config file -------------------------------------------------


def test_an_inhibition_rule_with_a_regex_re2_refuses_fails_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("INCIDENTS_")]:
        monkeypatch.delenv(key)
    config = tmp_path / "config.yaml"
    config.write_text(
        "correlation:\n"
        "  inhibit_rules:\n"
        "    - source_matchers: ['alertname=\"NodeDown\"']\n"
        "      target_matchers: ['severity=\"warning\"', 'instance=~\"(?<=db)-1\"']\n"
        "      equal: [instance]\n"
    )
    monkeypatch.setenv("INCIDENTS_CONFIG", str(config))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = caught.value.message
    assert str(config) in message
    assert f"{config}:4: correlation.inhibit_rules.0.target_matchers" in message
    assert "target_matchers[1]: invalid regular expression" in message
    assert "instance=~" in message
