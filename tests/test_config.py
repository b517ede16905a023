"""config.json, flags and defaults: precedence, old configs, and one clear line for each mistake."""

from __future__ import annotations

import json

import pytest

from twotier.engine.config import Config, load_config
from twotier.engine.errors import ConfigError


def write(tmp_path, data) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def test_old_config_without_log_steps_logs_every_ten_steps(tmp_path):
    config = load_config(write(tmp_path, {"eval_steps": 200, "max_steps": 400}))
    assert config.log_steps == 10


def test_flags_override_the_file_which_overrides_defaults(tmp_path):
    config = load_config(write(tmp_path, {"log_steps": 7, "eval_steps": 70}), {"eval_steps": 21, "seed": None})
    assert (config.log_steps, config.eval_steps, config.seed) == (7, 21, Config().seed)


def test_unknown_key_suggests_the_nearest_known_one(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'log_step'; did you mean 'log_steps'\?"):
        load_config(write(tmp_path, {"log_step": 5}))


def test_wrong_type_names_the_key_and_what_it_must_be(tmp_path):
    with pytest.raises(ConfigError, match=r"'eval_steps' must be a whole number, got \"200\""):
        load_config(write(tmp_path, {"eval_steps": "200"}))


def test_true_is_not_accepted_as_a_number(tmp_path):
    with pytest.raises(ConfigError, match="'log_steps' must be a whole number"):
        load_config(write(tmp_path, {"log_steps": True}))


def test_negative_steps_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="'log_steps' must be 0 or more, got -1"):
        load_config(write(tmp_path, {"log_steps": -1}))


def test_zero_turns_a_tier_off(tmp_path):
    config = load_config(write(tmp_path, {"log_steps": 0, "eval_steps": 0}))
    assert (config.log_steps, config.eval_steps) == (0, 0)


def test_invalid_json_names_file_and_line(tmp_path):
    path = write(tmp_path, '{\n  "log_steps": 5,\n}')
    with pytest.raises(ConfigError, match=r"config.json: not valid JSON at line 3"):
        load_config(path)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.json: config file not found"):
        load_config(tmp_path / "nope.json")


def test_config_must_be_an_object(tmp_path):
    with pytest.raises(ConfigError, match="must be a JSON object"):
        load_config(write(tmp_path, [1, 2]))


def test_eval_steps_not_a_multiple_of_log_steps_warns_what_will_happen():
    (warning,) = load_config(None, {"log_steps": 10, "eval_steps": 25}).tier_warnings()
    assert "eval_steps=25 is not a multiple of log_steps=10" in warning
    assert "gets only the full eval" in warning


def test_aligned_tiers_do_not_warn():
    assert load_config(None, {"log_steps": 10, "eval_steps": 200}).tier_warnings() == []


def test_probe_set_cannot_exceed_the_scored_validation_slice():
    with pytest.raises(ConfigError, match="'probe_size' \\(20\\) must not exceed 'eval_samples' \\(10\\)"):
        load_config(None, {"probe_size": 20, "eval_samples": 10})


def test_integers_are_accepted_where_a_number_is_expected():
    assert load_config(None, {"learning_rate": 1}).learning_rate == 1.0


def test_shipped_config_json_is_valid_and_runs_the_demo():
    config = load_config("config.json")
    assert config.model == "demo" and config.dataset == "demo"
    assert config.log_steps == 10 and config.eval_steps == 200


def test_match_defaults_to_prefix_and_a_bad_rule_is_refused_naming_the_file(tmp_path):
    assert load_config(None).match == "prefix"
    path = tmp_path / "config.json"
    path.write_text('{"match": "numeric:lots"}')
    with pytest.raises(ConfigError, match=r"config\.json: 'match' rule 'numeric:TOL' needs a tolerance"):
        load_config(path)
