"""A whole run of the tiny model through the engine, read back from its ledger."""

from __future__ import annotations

from twotier.engine.matching import DEFAULT_MATCH, parse_match_rule, score
from twotier.store import Kind, LedgerReader, RunStatus


def test_reference_run_leaves_exactly_the_issue_events(short_run):
    with LedgerReader(short_run.ledger) as reader:
        events = reader.events_after(short_run.run_id)
    assert [(e.step, e.kind) for e in events] == [
        (5, Kind.FAST),
        (10, Kind.FAST),
        (15, Kind.FAST),
        (20, Kind.FULL),
        (25, Kind.FAST),
        (30, Kind.FAST),
        (35, Kind.FAST),
        (40, Kind.FULL),
    ]


def test_only_full_evals_carry_validation_loss_and_model_output(short_run):
    with LedgerReader(short_run.ledger) as reader:
        events = reader.events_after(short_run.run_id)
    for event in events:
        full = event.kind is Kind.FULL
        assert (event.val_loss is not None) is full
        assert (event.model_output is not None) is full
        assert (event.match is not None) is full
        assert (event.probe_accuracy is not None) is full


def test_every_event_has_the_example_and_its_loss(short_run):
    for event in short_run.events:
        assert event.prompt.startswith("reverse ")
        assert event.golden and event.loss is not None and event.loss > 0
        assert event.prompt_tokens == len(event.prompt) + 1  # one token per character, plus BOS
        assert event.golden_tokens == len(event.golden)  # the content's own tokens: EOS is not counted
        assert event.learning_rate is not None and event.grad_norm is not None


def test_full_eval_records_one_row_per_probe(short_run):
    with LedgerReader(short_run.ledger) as reader:
        fulls = [e for e in reader.events_after(short_run.run_id, with_probes=True) if e.is_full]
    assert [len(e.probes) for e in fulls] == [8, 8]
    assert [p.prompt for p in fulls[0].probes] == [p.prompt for p in fulls[1].probes]
    for event in fulls:
        assert event.probe_accuracy == sum(p.match for p in event.probes) / len(event.probes)


def test_full_evals_use_the_default_rule_and_score_every_answer_with_chrf(short_run):
    with LedgerReader(short_run.ledger) as reader:
        fulls = [e for e in reader.events_after(short_run.run_id, with_probes=True) if e.is_full]
    for event in fulls:
        assert event.match_rule == DEFAULT_MATCH
        assert event.match == parse_match_rule(DEFAULT_MATCH).matches(event.model_output, event.golden)
        assert event.score == score(event.model_output, event.golden)
        assert event.probe_score == sum(score(p.model_output, p.golden) for p in event.probes) / len(event.probes)


def test_gap_is_validation_loss_minus_training_mean_since_last_eval(short_run):
    for event in short_run.events:
        if event.is_full:
            assert event.gap == event.val_loss - event.train_loss_mean
            assert event.gap_ok == (event.gap <= short_run.config.gap_threshold)


def test_finished_run_is_recorded_with_its_config(short_run):
    with LedgerReader(short_run.ledger) as reader:
        run = reader.run(short_run.run_id)
    assert run.status is RunStatus.FINISHED
    assert run.last_step == 40 and run.ended_at is not None
    assert run.config["log_steps"] == 5 and run.config["eval_steps"] == 20
