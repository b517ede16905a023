"""Match rules, the chrF score and word-level answer diffs (twotier.engine.matching); no model needed."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from twotier.engine.errors import ConfigError
from twotier.engine.matching import (
    DEFAULT_MATCH,
    answer_changes,
    normalize_answer,
    parse_match_rule,
    score,
)

DESIGN_GOLDEN = "The capital of France is Paris..."
DESIGN_OUTPUT = "The capital of France is Paris, which is also the largest city..."


def verdict(spec: str, output: str, golden: str) -> bool:
    return parse_match_rule(spec).matches(output, golden)


def test_design_example_is_a_match_under_the_default_rule() -> None:
    assert verdict(DEFAULT_MATCH, DESIGN_OUTPUT, DESIGN_GOLDEN)


def test_design_example_is_no_match_under_exact() -> None:
    assert not verdict("exact", DESIGN_OUTPUT, DESIGN_GOLDEN)


@pytest.mark.parametrize(
    ("output", "golden"),
    [("wlyz", "wlyz"), ("  wlyz\n", "wlyz"), ("wlyzz", "wlyz"), ("wly", "wlyz"), ("wly z", "wlyz"),
     ("zylw", "wlyz"), ("", "wlyz"), ("eht", "the"), ("the", "the")],
)  # fmt: skip
def test_default_rule_agrees_with_exact_on_demo_like_answers(output: str, golden: str) -> None:
    assert verdict(DEFAULT_MATCH, output, golden) == verdict("exact", output, golden)


@pytest.mark.parametrize("output", ["WLYZ", "wlyz=", "wlyz.", "wlyz reverse abc="])
def test_default_rule_passes_what_exact_fails_when_the_golden_is_a_word_prefix(output: str) -> None:
    assert verdict(DEFAULT_MATCH, output, "wlyz") and not verdict("exact", output, "wlyz")


CASES = [
    # exact: surrounding white space only
    ("exact", "Paris", "Paris", True),
    ("exact", " Paris\n", "Paris", True),
    ("exact", "paris", "Paris", False),
    ("exact", "", "", True),
    ("exact", "", "Paris", False),
    # normalized: case, punctuation, articles, white space; Unicode-aware
    ("normalized", "The  Eiffel Tower!", "eiffel tower", True),
    ("normalized", "an apple", "Apple.", True),
    ("normalized", "“Don’t panic”", '"don\'t panic"', True),
    ("normalized", "Café", "café", True),
    ("normalized", "cafe\u0301", "café", True),  # decomposed accent == composed (NFKC)
    ("normalized", "cafe", "café", False),  # accents are kept
    ("normalized", "１２３", "123", True),  # full-width digits
    ("normalized", "STRASSE", "straße", True),  # case folding, not just lower()
    ("normalized", "Paris is nice", "Paris", False),
    ("normalized", "", "Paris", False),
    # prefix: begins with the golden, ending at a word boundary
    ("prefix", "Paris, the capital.", "paris", True),
    ("prefix", "Parisian food", "Paris", False),
    ("prefix", "In Paris", "Paris", False),
    ("prefix", "ＰＡＲＩＳ！ yes", "paris", True),
    ("prefix", "", "Paris", False),
    ("prefix", "", "", True),
    ("prefix", "the", "The", True),
    ("prefix", "anything at all", "the", False),  # a golden of only articles does not match everything
    # contains: the golden as whole words anywhere
    ("contains", "I think it is Paris, France.", "paris france", True),
    ("contains", "Parisian", "Paris", False),
    ("contains", "France, Paris", "paris france", False),
    ("contains", "Das ist Zürich.", "zürich", True),
    ("contains", "", "Paris", False),
    # regex: the last match's first group, compared normalised
    (r"regex:####\s*(\S+)", "so 3 + 4 = 7 #### 7", "#### 7", True),
    (r"regex:####\s*(\S+)", "#### 5 then I retried: #### 72", "72", True),
    (r"regex:####\s*(\S+)", "#### 72 then I retried: #### 5", "72", False),
    (r"regex:####\s*(\S+)", "The answer is 72.", "72", False),  # no match: NO MATCH, not an error
    (r"regex:answer is (\w+)", "The answer is PARIS", "paris", True),
    (r"regex:\d+", "between 10 and 12", "12", True),  # no group: the whole (last) match
    (r"regex:####\s*(\S+)", "", "72", False),
    # numeric: last number on each side, within a tolerance
    ("numeric", "It costs 1,000 dollars", "1000", True),
    ("numeric", "1e3", "1,000.00", True),
    ("numeric", "The result is -3.50.", "-3.5", True),
    ("numeric", "The result is 3.50.", "-3.5", False),
    ("numeric", "−2", "-2", True),  # U+2212 minus sign
    ("numeric", "１２", "12", True),  # full-width digits
    ("numeric", "first 5, then finally 7", "#### 7", True),
    ("numeric", "0.1 + 0.2", "0.30000000000000004", False),  # last number is 0.2
    ("numeric", "0.30000001", "0.3", True),  # within the default 1e-6
    ("numeric", "3.14", "3.14159", False),
    ("numeric:0.01", "3.14", "3.14159", True),
    ("numeric:0", "1000", "1,000", True),
    ("numeric", "no number here", "7", False),
    ("numeric", "", "7", False),
    ("numeric", "7", "seven", False),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "output", "golden", "expected"), CASES)
def test_rule_verdicts(spec: str, output: str, golden: str, expected: bool) -> None:
    assert verdict(spec, output, golden) is expected


def test_rule_records_its_spec_and_display_name() -> None:
    rule = parse_match_rule(r"regex:####\s*(\S+)")
    assert (rule.name, rule.spec) == ("regex", r"regex:####\s*(\S+)")
    assert parse_match_rule(" prefix ").name == "prefix"


def test_rule_is_frozen_and_pickles() -> None:
    rule = parse_match_rule("numeric:0.5")
    with pytest.raises(AttributeError):
        rule.name = "exact"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(rule)).matches("1.4", "1")


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "my_judge.py").write_text(
        "def same_length(output, golden):\n    return len(output) == len(golden)\nnot_a_function = 3\n",
        encoding="utf-8",
    )
    (tmp_path / "broken_judge.py").write_text("raise RuntimeError('boom')\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_judge"


def test_module_function_rule_calls_the_users_function(user_module: str) -> None:
    rule = parse_match_rule(f"{user_module}:same_length")
    assert rule.name == "my_judge:same_length"
    assert rule.matches("abcd", "wxyz") and not rule.matches("abc", "wxyz")


@pytest.mark.parametrize(
    ("spec", "named"),
    [("no_such_module_xyz:judge", "no_such_module_xyz"), ("my_judge:missing", "missing"),
     ("my_judge:not_a_function", "not_a_function"), ("broken_judge:judge", "RuntimeError: boom")],
)  # fmt: skip
def test_module_function_rule_refuses_what_cannot_be_called(user_module: str, spec: str, named: str) -> None:
    with pytest.raises(ConfigError, match="'match'") as caught:
        parse_match_rule(spec)
    assert named in str(caught.value) and "\n" not in str(caught.value)


def test_unknown_rule_is_refused_with_a_did_you_mean() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_match_rule("prefx", source="config.json")
    message = str(caught.value)
    assert message.startswith("config.json: 'match'")
    assert "did you mean 'prefix'?" in message and "exact, normalized, prefix, contains" in message
    assert caught.value.exit_code == 2 and "\n" not in message


def test_bad_regex_is_refused_naming_the_pattern_and_the_error() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_match_rule("regex:####(\\d+")
    message = str(caught.value)
    assert "'match'" in message and "####(\\d+" in message and "missing )" in message and "\n" not in message


@pytest.mark.parametrize("spec", ["", "  ", "regex", "regex:", "numeric:abc", "numeric:-1", "numeric:inf",
                                  "exact:yes", "prefix:3", "what ever"])  # fmt: skip
def test_malformed_specs_are_refused(spec: str) -> None:
    with pytest.raises(ConfigError, match="'match'"):
        parse_match_rule(spec)


def test_matching_does_not_import_torch() -> None:
    code = "import sys, twotier.engine.matching; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_normalize_answer_follows_squad() -> None:
    assert normalize_answer("  The  Quick, brown FOX! ") == "quick brown fox"


@pytest.mark.parametrize(
    ("output", "golden", "expected"),
    [
        ("wlyz", "wlyz", 1.0),
        ("abcd", "wxyz", 0.0),
        ("", "", 1.0),
        ("", "wlyz", 0.0),
        ("wlyz", "", 0.0),
        ("a b", "ab", 1.0),  # white space does not count
        # unigrams: precision 2/2, recall 2/3; bigrams: 1/1, 1/2; no trigram in "ab": P 1, R 7/12 -> 5PR/(4P+R) = 7/11
        ("ab", "abc", 7 / 11),
    ],
)
def test_chrf_on_cases_worked_by_hand(output: str, golden: str, expected: float) -> None:
    assert score(output, golden) == pytest.approx(expected)


def test_chrf_ranks_a_near_miss_above_a_scramble_and_both_below_the_answer() -> None:
    assert 1.0 > score("wlyzz", "wlyz") > score("zylw", "wlyz") > 0.0


def test_chrf_is_in_zero_to_one_for_any_text() -> None:
    for output, golden in (("The capital of France is Paris, which is also the largest city.", "Paris"),
                           ("１２３", "123"), ("😀", "😀😀"), ("x" * 500, "x")):  # fmt: skip
        assert 0.0 <= score(output, golden) <= 1.0


def test_answer_changes_flags_replaced_and_inserted_words() -> None:
    assert answer_changes("the cat sat", "the dog sat down") == [("the ", False), ("dog", True), (" sat ", False),
                                                                 ("down", True)]  # fmt: skip


def test_answer_changes_segments_join_back_to_the_current_answer() -> None:
    current = "  Paris,\n which is   large "
    assert "".join(text for text, _ in answer_changes("Paris, which", current)) == current


def test_answer_changes_unchanged_answer_is_one_unflagged_segment() -> None:
    assert answer_changes("wlyz", "wlyz") == [("wlyz", False)]


def test_answer_changes_from_nothing_flags_everything() -> None:
    assert answer_changes("", "olleh dlrow") == [("olleh dlrow", True)]


def test_answer_changes_of_an_empty_answer_is_empty() -> None:
    assert answer_changes("something", "") == []


def test_answer_changes_is_case_sensitive() -> None:
    assert answer_changes("paris", "Paris") == [("Paris", True)]


def readme_match_table() -> list[list[str]]:
    """The rows of the table in README's "What counts as a MATCH": rule, golden, output, verdict, chrF."""
    lines = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("## What counts as a MATCH")
    header = next(i for i in range(start, len(lines)) if lines[i].startswith("| rule | golden | output |"))
    rows = []
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        rows.append([cell.split("`")[1] if cell.startswith("`") else cell for cell in cells])
    return rows


def test_the_readme_shows_every_rule_and_each_row_is_what_the_rule_says() -> None:
    rows = readme_match_table()
    assert {parse_match_rule(rule).name.split(":")[0] for rule, *_ in rows} >= {
        "exact", "normalized", "prefix", "contains", "regex", "numeric", "operator"
    }  # fmt: skip
    for rule, golden, output, said, chrf in rows:
        assert verdict(rule, output, golden) == (said == "MATCH"), (rule, golden, output)
        assert f"{score(output, golden):.2f}" == chrf, (rule, golden, output)
