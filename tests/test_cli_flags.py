"""Every config key is a flag, made from the Config fields; a bad flag is one line on stderr and exit 2."""

from __future__ import annotations

import dataclasses

import pytest

from twotier.engine.config import Config
from twotier.tui.cli import build_parser, config_from_args, main, setting_types
from twotier.tui.console import ledger

# A value of each type a key can take, as typed on a command line and as the config holds it.
SAMPLES = {int: ("7", 7), float: ("0.125", 0.125), str: ("some-text", "some-text"), dict: ('{"a": 1}', {"a": 1})}
# Keys whose values are checked against a list: a value from the list, as typed and as held.
VALID = {
    "data_format": ("messages", "messages"),
    "dtype": ("bfloat16", "bfloat16"),
    "peft": ('{"r": 4}', {"r": 4}),
    "chat_template": ("template.jinja", "template.jinja"),  # a file's path; alone, `--chat-template` is True
    "match": ("exact", "exact"),  # a rule: parsed when the config is made
}


def flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def one_line_exit_2(capsys: pytest.CaptureFixture[str], run: object, *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        run(list(argv))  # type: ignore[operator]
    assert exited.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("key", [spec.name for spec in dataclasses.fields(Config)])
def test_every_config_key_has_a_help_text(key):
    assert Config.__dataclass_fields__[key].metadata["help"].strip()


@pytest.mark.parametrize("key", [spec.name for spec in dataclasses.fields(Config)])
def test_every_config_key_is_a_flag_of_its_type(key, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./config.json: the flag alone sets the key
    kinds = setting_types(key)
    if kinds == (bool,):
        given = not getattr(Config(), key)
        argv = [flag(key) if given else "--no-" + key.replace("_", "-")]
    else:
        text, given = VALID.get(key) or SAMPLES[kinds[0]]
        argv = [flag(key), text]
    if key in ("probe_size", "eval_samples"):
        argv += ["--probe-size", "7", "--eval-samples", "7"]  # probe_size may not exceed eval_samples
    if key == "validation_split":
        given, argv = 0.25, [flag(key), "0.25"]
    assert getattr(config_from_args(build_parser().parse_args(argv)), key) == given


def test_flags_named_in_the_issue_are_accepted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["--gap-threshold", "0.1", "--max-new-tokens", "5", "--no-stop-on-nan"])
    config = config_from_args(args)
    assert (config.gap_threshold, config.max_new_tokens, config.stop_on_nan) == (0.1, 5, False)


def test_unknown_flag_is_one_line_with_a_did_you_mean(capsys):
    line = one_line_exit_2(capsys, main, "--gap-treshold", "0.1")
    assert line.startswith("twotier: error: unrecognized arguments: --gap-treshold")
    assert "did you mean --gap-threshold?" in line


def test_bad_flag_value_is_one_line_naming_the_flag(capsys):
    line = one_line_exit_2(capsys, main, "--log-steps", "ten")
    assert line == "twotier: error: argument --log-steps: must be a whole number, got 'ten'"


def test_training_args_flag_takes_a_json_object(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["--training-args", '{"warmup_steps": 5}'])
    assert config_from_args(args).training_args == {"warmup_steps": 5}
    line = one_line_exit_2(capsys, main, "--training-args", "[5]")
    assert line == "twotier: error: argument --training-args: must be a JSON object, got '[5]'"


def test_ledger_command_typo_is_one_line_with_a_did_you_mean(capsys):
    line = one_line_exit_2(capsys, ledger.main, "ledger", "rnus")
    assert line.startswith("twotier: error: argument COMMAND: invalid choice: 'rnus'")
    assert line.endswith("did you mean 'runs'?")


def test_ledger_unknown_flag_is_one_line_with_a_did_you_mean(capsys):
    line = one_line_exit_2(capsys, ledger.main, "ledger", "runs", "--stauts", "finished")
    assert "did you mean --status?" in line


def test_help_lists_every_config_flag(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for spec in dataclasses.fields(Config):
        assert flag(spec.name) in out
