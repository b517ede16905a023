"""What counts as a MATCH: the full eval's answer-vs-golden rules, a graded chrF score, and word-level
answer diffs. Pure Python (no torch), so the CLI can check a `match` spec before anything heavy loads.

Rules are chosen by one string (`"match": "..."` in config.json, `--match ...` as a flag), parsed once at start:

    exact            equal after trimming surrounding white space (twotier's original verdict)
    normalized       equal after `normalize_answer` (the SQuAD normalisation, Unicode-aware)
    prefix           the normalised output begins with the normalised golden, ending at a word boundary
    contains         the normalised golden appears in the normalised output as whole words
    regex:PATTERN    PATTERN extracts the answer from the output (first group, else the whole match; the LAST
                     match wins, as GSM8K's `####` final answer does), then compared normalised with the golden;
                     a golden that itself matches the pattern is compared by its extraction too
    numeric[:TOL]    the last number in the output equals the last number in the golden within TOL (relative
                     and absolute, default 1e-6); `1,000` == `1000` == `1e3`, `-3.50` == `-3.5`
    module:function  your function(output, golden) -> bool, imported when the spec is parsed

The default is `prefix` (see DEFAULT_MATCH). Normalisation, word boundaries and the empty-golden case are
described on `normalize_answer` and `_prefix`.
"""

from __future__ import annotations

import difflib
import importlib
import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from .errors import ConfigError

DEFAULT_MATCH = "prefix"
"""The default rule. `prefix` makes the design's own example a MATCH (golden `The capital of France is
Paris...`, output `The capital of France is Paris, which is also the largest city...`), which `exact` calls
NO MATCH, while keeping the demo's word-reversal verdicts: `wlyz` vs golden `wlyz` is a MATCH under both, and
`wlyzz`, `wly`, `wly z` or `zylw` are NO MATCH under both (the golden must end at a word boundary). It differs
from exact only where the output is the golden up to case, punctuation, articles or white space (`WLYZ`,
`wlyz=`, `wlyz.`), or is the golden followed by more words (`wlyz reverse abc`): there prefix says MATCH.
`contains` would also pass outputs that merely mention the golden somewhere; `normalized` would fail the
design's example."""

ARTICLES = frozenset({"a", "an", "the"})
_ARGLESS = ("exact", "normalized", "prefix", "contains")
KNOWN_RULES = (*_ARGLESS, "numeric", "numeric:TOL", "regex:PATTERN", "module:function")
DEFAULT_TOLERANCE = 1e-6
CHRF_ORDER, CHRF_BETA = 6, 2  # sacrebleu's chrF defaults
# A number as people and models write it: a sign unless glued to a word (`COVID-19` is 19), thousands
# separated by commas, decimals, an exponent. A sentence's full stop after it is not part of it.
_NUMBER = re.compile(r"(?:(?<![\w.])[-+])?(?:(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")
_MINUS_SIGNS = str.maketrans({"\u2212": "-", "\u2012": "-", "\u2013": "-", "\ufe63": "-"})
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


@dataclass(frozen=True)
class MatchRule:
    """A parsed `match` spec: `name` for display (`✅ MATCH (prefix)`), `spec` as given (recorded with the run)."""

    name: str
    spec: str
    _test: Callable[[str, str], bool] = field(repr=False, compare=False)

    def matches(self, output: str, golden: str) -> bool:
        return bool(self._test(output, golden))

    def judge(self, output: str, golden: str | None) -> tuple[bool | None, float | None]:
        """The verdict and the chrF score of an answer; (None, None) for a probe that has no golden."""
        if golden is None:
            return None, None
        return self.matches(output, golden), score(output, golden)


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation made Unicode-aware: NFKC (full-width `１２` -> `12`, composed accents),
    case-folded, punctuation and symbols (Unicode categories P* and S*, so curly quotes too) deleted, the
    articles a/an/the dropped, white space collapsed to single spaces. Accents are kept: `café` != `cafe`."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] not in "PS")
    return " ".join(word for word in text.split() if word not in ARTICLES)


def parse_match_rule(spec: str, source: str | None = None) -> MatchRule:
    """Parse a `match` spec once, at start; a bad one raises ConfigError (one line, naming `match`)."""
    where = f"{source}: 'match'" if source else "'match'"
    shown = spec if spec.isprintable() else json.dumps(spec)
    spec = spec.strip()
    known = f"known rules: {', '.join(KNOWN_RULES)}"
    if not spec:
        raise ConfigError(f"{where} is empty; {known}")
    name, colon, arg = spec.partition(":")
    if name == "regex":
        if not arg:
            raise ConfigError(f"{where} rule 'regex' needs a pattern: regex:PATTERN, got '{shown}'")
        return MatchRule("regex", spec, partial(_regex, _compile(arg, where)))
    if name == "numeric":
        tol = _tolerance(arg, where) if colon else DEFAULT_TOLERANCE
        return MatchRule("numeric", spec, partial(_numeric, tol=tol))
    if name in _ARGLESS:
        if colon:
            raise ConfigError(f"{where} rule '{name}' takes no argument, got '{shown}'")
        return MatchRule(name, spec, _RULES[name])
    if colon and _IDENTIFIER.fullmatch(name) and arg.isidentifier():
        return MatchRule(spec, spec, _import_function(name, arg, where))
    close = difflib.get_close_matches(name, [*_ARGLESS, "numeric", "regex"], n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise ConfigError(f"{where} has an unknown rule '{shown}'{hint} ({known})")


def score(output: str, golden: str) -> float:
    """chrF, the character n-gram F-score (Popović, 2015) that sacrebleu reports as `chrF`, on a 0-1 scale:
    character 1- to 6-grams of the texts without white space, precision and recall averaged over the orders
    both texts have, recall weighted twice (beta 2). A near miss scores near 1 (`wlyzz` for `wlyz`: 0.91),
    so it moves before an exact verdict does, also on one-word answers where token F1 is only ever 0 or 1.
    1.0 when both texts are empty, 0.0 when only one is."""
    hypothesis, reference = "".join(output.split()), "".join(golden.split())
    if not hypothesis or not reference:
        return float(hypothesis == reference)
    precisions, recalls = [], []
    for n in range(1, CHRF_ORDER + 1):
        made, wanted = _ngrams(hypothesis, n), _ngrams(reference, n)
        if not made or not wanted:
            continue
        common = sum((made & wanted).values())
        precisions.append(common / sum(made.values()))
        recalls.append(common / sum(wanted.values()))
    precision, recall = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    if not precision and not recall:
        return 0.0
    beta2 = CHRF_BETA**2
    return (1 + beta2) * precision * recall / (beta2 * precision + recall)


def _ngrams(text: str, n: int) -> Counter[str]:
    return Counter(text[i : i + n] for i in range(len(text) - n + 1))


def answer_changes(previous: str, current: str) -> list[tuple[str, bool]]:
    """`current` cut into segments, each flagged True where its words differ from `previous` (word-level
    difflib, case-sensitive). The segments join back to `current` exactly; white space between words is never
    flagged on its own; words only deleted since `previous` leave no segment (show `previous` for those)."""
    old = previous.split()
    spans = [m.span() for m in re.finditer(r"\S+", current)]
    words = [current[a:b] for a, b in spans]
    segments: list[tuple[str, bool]] = []
    pos = 0
    matcher = difflib.SequenceMatcher(None, old, words, autojunk=False)
    for tag, _, _, j1, j2 in matcher.get_opcodes():
        if j1 == j2:
            continue
        start, end = spans[j1][0], spans[j2 - 1][1]
        if start > pos:
            segments.append((current[pos:start], False))
        segments.append((current[start:end], tag != "equal"))
        pos = end
    if pos < len(current):
        segments.append((current[pos:], False))
    merged: list[tuple[str, bool]] = []
    for text, changed in segments:
        if merged and merged[-1][1] == changed:
            merged[-1] = (merged[-1][0] + text, changed)
        else:
            merged.append((text, changed))
    return merged


# -- the rules; module-level functions (bound with functools.partial) so a MatchRule pickles


def _exact(output: str, golden: str) -> bool:
    return output.strip() == golden.strip()


def _normalized(output: str, golden: str) -> bool:
    return normalize_answer(output) == normalize_answer(golden)


def _prefix(output: str, golden: str) -> bool:
    """Word-wise prefix of the normalised texts, so the golden ends at a word boundary of the output. A golden
    that normalises to nothing (`the`, `...`) matches only an output that does too: an empty prefix would
    otherwise pass every answer."""
    out, gold = normalize_answer(output).split(), normalize_answer(golden).split()
    return out[: len(gold)] == gold if gold else not out


def _contains(output: str, golden: str) -> bool:
    out, gold = normalize_answer(output).split(), normalize_answer(golden).split()
    if not gold:
        return not out
    return any(out[i : i + len(gold)] == gold for i in range(len(out) - len(gold) + 1))


def _extract(pattern: re.Pattern[str], text: str) -> str | None:
    matches = list(pattern.finditer(text))
    if not matches:
        return None
    last = matches[-1]
    return (last.group(1) or "") if pattern.groups else last.group(0)


def _regex(pattern: re.Pattern[str], output: str, golden: str) -> bool:
    answer = _extract(pattern, output)
    if answer is None:
        return False
    wanted = _extract(pattern, golden)
    return normalize_answer(answer) == normalize_answer(golden if wanted is None else wanted)


def last_number(text: str) -> float | None:
    """The last number written in `text` (after NFKC, so full-width digits count), or None."""
    text = unicodedata.normalize("NFKC", text).translate(_MINUS_SIGNS)
    found = [m.group(0) for m in _NUMBER.finditer(text)]
    return float(found[-1].replace(",", "")) if found else None


def _numeric(output: str, golden: str, tol: float) -> bool:
    got, wanted = last_number(output), last_number(golden)
    return got is not None and wanted is not None and math.isclose(got, wanted, rel_tol=tol, abs_tol=tol)


_RULES: dict[str, Callable[[str, str], bool]] = {
    "exact": _exact, "normalized": _normalized, "prefix": _prefix, "contains": _contains,
}  # fmt: skip


# -- parsing helpers


def _compile(pattern: str, where: str) -> re.Pattern[str]:
    shown = pattern if pattern.isprintable() else json.dumps(pattern)
    try:
        return re.compile(pattern)
    except re.error as err:
        raise ConfigError(f"{where} has a bad regex '{shown}': {err}") from None


def _tolerance(arg: str, where: str) -> float:
    try:
        tol = float(arg)
    except ValueError:
        tol = -1.0
    if not (math.isfinite(tol) and tol >= 0):
        shown = arg if arg.isprintable() else json.dumps(arg)
        raise ConfigError(f"{where} rule 'numeric:TOL' needs a tolerance of 0 or more, got '{shown}'")
    return tol


def _import_function(module: str, name: str, where: str) -> Callable[[str, str], bool]:
    try:
        loaded = importlib.import_module(module)
    except ModuleNotFoundError as err:
        close = difflib.get_close_matches(module, [*_ARGLESS, "numeric", "regex"], n=1)
        hint = f"; did you mean the rule '{close[0]}'?" if close else ""
        raise ConfigError(f"{where} names module '{module}', which cannot be imported: {err}{hint}") from None
    except Exception as err:  # the user's module failed while importing: say so in one line
        problem = f"{type(err).__name__}: {err}".splitlines()[0]
        raise ConfigError(f"{where} names module '{module}', which failed on import: {problem}") from None
    function = getattr(loaded, name, None)
    if not callable(function):
        raise ConfigError(f"{where} names '{module}:{name}', but '{module}' has no function '{name}'")
    return function
