"""Any config.json is either accepted or refused with one line naming the key and exit status 2, never a traceback."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import headless_command
from twotier.engine.config import FIELDS, Config, load_config
from twotier.engine.errors import ConfigError

FUZZ_CASES = 400
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
plain_keys = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=12)
configs = st.dictionaries(st.sampled_from(sorted(FIELDS)) | plain_keys, json_values, max_size=5)


@settings(max_examples=FUZZ_CASES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=configs)
def test_every_generated_config_is_accepted_or_refused_naming_its_key(tmp_path, data):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    try:
        config = load_config(path)
    except ConfigError as err:
        message = str(err)
        assert err.exit_code == 2 and "\n" not in message
        assert any(f"'{key}'" in message or json.dumps(key) in message for key in data) or "must not exceed" in message
        return
    assert isinstance(config, Config)


@pytest.mark.parametrize("value", ["NaN", "Infinity"])
@pytest.mark.parametrize("key", ["learning_rate", "gap_threshold"])
def test_a_non_finite_number_is_refused_naming_the_key(tmp_path, key, value):
    path = tmp_path / "config.json"
    path.write_text(f'{{"{key}": {value}}}')
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(path)


@pytest.mark.parametrize("key", ["log\nsteps", "\u001b[2Jlog"])
def test_an_unknown_key_with_control_characters_is_refused_in_one_inert_line(tmp_path, key):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({key: 1}))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert not any(char in str(caught.value) for char in "\n\x1b")


def test_non_object_and_broken_json_are_refused_in_one_line(tmp_path):
    for text in ("[1, 2]", '{"log_steps": ', "\xff\xfe", "null"):
        path = tmp_path / "config.json"
        path.write_bytes(text.encode("latin-1"))
        try:
            load_config(path)
        except ConfigError as err:
            assert "\n" not in str(err) and str(path) in str(err)
        else:
            raise AssertionError(f"{text!r} was accepted")


def test_invalid_configs_through_the_cli_exit_2_with_one_line(tmp_path):
    for bad in ({"max_steps": "ten"}, {"log_step": 5}, {"probe_size": 99, "eval_samples": 8}, {"batch_size": 0}):
        path = tmp_path / "config.json"
        path.write_text(json.dumps(bad))
        result = subprocess.run(
            headless_command(path, "--ledger", str(tmp_path / "l.db")),
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
        )
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
        assert not Path(tmp_path / "l.db").exists()
