"""Your own probe prompts (`probes`) and the run's match rule (`match`) in a real run of the tiny demo model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import FinishedRun, headless, train
from twotier.engine.config import load_config
from twotier.engine.errors import DataError
from twotier.engine.matching import score
from twotier.engine.probes import load_probes
from twotier.store import LedgerReader, RunStatus, StepEvent
from twotier.tui.app import make_app
from twotier.tui.app.widgets.probe_history import ProbeHistory
from twotier.tui.console.ledger import main

PROBE_ROWS = [
    {"prompt": "reverse abc=", "answer": "cba"},
    {"prompt": "reverse hello="},
    {"prompt": "reverse dog=", "answer": "god"},
    {"prompt": "reverse cat=", "answer": None},
]
BUILT_IN = 2  # probe_size: the validation probes come first, the file's rows after them
# A rule of the user's own that passes every answer: the verdicts can only come from the configured rule.
RULE_MODULE = "twotier_test_rule_always"
RULE = f"{RULE_MODULE}:always"


def write_rows(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FinishedRun]:
    tmp = tmp_path_factory.mktemp("probe-run")
    (tmp / f"{RULE_MODULE}.py").write_text("def always(output, golden):\n    return True\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(tmp))
        run = train(
            tmp,
            probes=write_rows(tmp / "probes.jsonl", PROBE_ROWS),
            match=RULE,
            probe_size=BUILT_IN,
            eval_samples=8,
            max_steps=10,
            log_steps=5,
            eval_steps=5,
        )
    assert run.status is RunStatus.FINISHED, run.error
    yield run


def full_evals(run: FinishedRun) -> list[StepEvent]:
    with LedgerReader(run.ledger) as reader:
        return [e for e in reader.events_after(run.run_id, with_probes=True) if e.is_full]


def test_a_probe_file_is_asked_after_the_probe_set_at_every_full_eval(probe_run):
    fulls = full_evals(probe_run)
    assert [e.step for e in fulls] == [5, 10]
    for event in fulls:
        assert [p.probe_id for p in event.probes] == list(range(BUILT_IN + len(PROBE_ROWS)))
        assert [p.prompt for p in event.probes[BUILT_IN:]] == [row["prompt"] for row in PROBE_ROWS]
        assert all(isinstance(p.model_output, str) for p in event.probes)


def test_probes_with_a_golden_get_a_verdict_and_a_score_and_those_without_get_neither(probe_run):
    for event in full_evals(probe_run):
        asked = event.probes[BUILT_IN:]
        assert [p.golden for p in asked] == ["cba", None, "god", None]
        assert [p.match for p in asked] == [True, None, True, None]
        assert [p.score is None for p in asked] == [False, True, False, True]


def test_the_configured_rule_makes_every_verdict_and_is_recorded_with_it(probe_run):
    for event in full_evals(probe_run):
        assert event.match_rule == RULE and event.match is True
        assert all(p.match is True for p in event.probes if p.golden is not None)
    with LedgerReader(probe_run.ledger) as reader:
        assert reader.run(probe_run.run_id).config["match"] == RULE


def test_every_score_is_the_chrf_of_the_answer_against_its_golden(probe_run):
    for event in full_evals(probe_run):
        assert event.score == score(event.model_output or "", event.golden)
        for probe in event.probes:
            if probe.golden is not None:
                assert probe.score == score(probe.model_output, probe.golden)


def test_probe_accuracy_and_probe_score_count_only_the_probes_with_a_golden(probe_run):
    for event in full_evals(probe_run):
        judged = [p for p in event.probes if p.golden is not None]
        assert len(judged) == BUILT_IN + 2
        assert event.probe_accuracy == 1.0
        assert event.probe_score == pytest.approx(sum(p.score for p in judged) / len(judged))


def test_export_writes_each_probe_s_score_and_no_golden_as_null(probe_run, tmp_path, capsys):
    out = tmp_path / "probes.jsonl"
    assert main(["ledger", "export", "--ledger", str(probe_run.ledger), "--probes", "--out", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    unanswered = [r for r in records if r["prompt"] == "reverse hello="]
    assert len(unanswered) == 2
    assert all(r["golden"] is None and r["match"] is None and r["score"] is None for r in unanswered)
    assert all(isinstance(r["score"], float) for r in records if r["golden"] is not None)


def test_ledger_show_lists_the_probe_chrf_of_each_full_eval(probe_run, capsys):
    assert main(["ledger", "show", "--ledger", str(probe_run.ledger), probe_run.run_id]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.split()[:1] == ["step"] and "probe chrF" in line)
    rows = lines[lines.index(header) + 1 : lines.index(header) + 3]
    scores = [e.probe_score for e in full_evals(probe_run)]
    assert [row.split()[-2] for row in rows] == [f"{s:.2f}" for s in scores]


def test_ledger_show_probe_without_a_golden_shows_its_answers_only(probe_run, capsys):
    args = ["ledger", "show", "--ledger", str(probe_run.ledger), probe_run.run_id, "--probe", str(BUILT_IN + 1)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "no golden: answered only" in out
    history = [line for line in out.splitlines() if line.startswith("step ") and line.split()[1].isdigit()]
    assert [line.split()[1:3] for line in history] == [["5", "💬"], ["10", "💬"]]


@pytest.mark.anyio
async def test_the_app_shows_the_history_of_a_probe_without_a_golden(probe_run):
    app = make_app(attach=probe_run.ledger)
    async with app.run_test(size=(100, 30)) as pilot:
        await app.push_screen(ProbeHistory(probe_run.ledger, probe_run.run_id, BUILT_IN + 1))
        while "loading" in str(app.screen.query_one("#history").render()):
            await pilot.pause(0.05)
        history = str(app.screen.query_one("#history").render())
    assert "reverse hello=" in history and "no golden: answered only" in history
    assert history.index("step      5") < history.index("step     10")


# ---- reading a probe file -----------------------------------------------------------------------


def test_a_file_of_prompts_only_is_asked_as_training_encodes_the_same_prompt(tiny, tmp_path, demo_examples):
    example = demo_examples.validation[0]
    path = write_rows(tmp_path / "p.jsonl", [{"prompt": example.prompt_text}])
    (probe,) = load_probes(path, load_config(None, {"max_length": 64}), tiny.tokenizer, None)
    assert probe.golden is None
    assert probe.prompt_ids == example.prompt_ids and probe.prompt == example.prompt_text


def test_messages_probes_are_asked_under_the_chat_template_with_or_without_an_answer(chat_model_dir, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(chat_model_dir)
    rows = [
        {"messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]},
        {"messages": [{"role": "user", "content": "Say hello."}]},
    ]
    config = load_config(None, {"model": str(chat_model_dir)})
    answered, open_ended = load_probes(write_rows(tmp_path / "p.jsonl", rows), config, tokenizer, None)
    assert (answered.golden, open_ended.golden) == ("4", None)
    wanted = tokenizer.apply_chat_template(rows[1]["messages"], add_generation_prompt=True, tokenize=False)
    assert tokenizer.decode(open_ended.prompt_ids) == wanted


def test_a_probe_row_without_a_prompt_is_named_by_file_and_row(tiny, tmp_path):
    path = write_rows(tmp_path / "p.jsonl", [{"prompt": "reverse ab=", "answer": "ba"}, {"answer": "x"}])
    with pytest.raises(DataError, match=r"p\.jsonl: row 2 has no 'prompt'"):
        load_probes(path, load_config(None, {"max_length": 64}), tiny.tokenizer, None)


def test_a_probe_prompt_longer_than_max_length_is_named_by_row(tiny, tmp_path):
    path = write_rows(tmp_path / "p.jsonl", [{"prompt": "reverse ab="}, {"prompt": "reverse " + "a" * 80 + "="}])
    with pytest.raises(DataError, match=r"p\.jsonl: row 2: the prompt does not fit in max_length=64"):
        load_probes(path, load_config(None, {"max_length": 64}), tiny.tokenizer, None)


def test_text_rows_are_refused_as_probes(tiny, tmp_path):
    path = write_rows(tmp_path / "p.jsonl", [{"text": "reverse ab=ba"}])
    with pytest.raises(DataError, match=r"p\.jsonl: probe rows need a prompt"):
        load_probes(path, load_config(None, {"max_length": 64}), tiny.tokenizer, None)


# ---- refused at start ---------------------------------------------------------------------------


def test_an_unknown_rule_exits_2_naming_it_with_a_did_you_mean(tmp_path):
    result = headless(tmp_path, "--match", "prefx")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "'match' has an unknown rule 'prefx'; did you mean 'prefix'?" in line
    assert not (tmp_path / "ledger.db").exists()


def test_a_bad_pattern_in_the_config_exits_2_naming_it(tmp_path):
    result = headless(tmp_path, config={"match": "regex:#### (\\d+"})
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "config.json: 'match' has a bad regex '#### (\\d+'" in line


def test_a_missing_probes_file_exits_2_naming_it(tmp_path):
    result = headless(tmp_path, "--probes", "nowhere.jsonl")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["twotier: error: nowhere.jsonl: probes file not found"]
    assert not (tmp_path / "ledger.db").exists()
