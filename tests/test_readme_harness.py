"""The README harness itself: run-to-run figures pass, format drift fails, `…` elides, and an
unannotated block is found."""

from __future__ import annotations

from docs.readme import matches, normalise, parse, regenerate, session

SUMMARY = "✔ run 9a1dde6d7ceb finished at step 200, train loss 3.8546 → 0.1437, took 0:00:26, ledger runs/ledger.db"


def test_other_ids_figures_and_durations_still_match():
    other = "✔ run 0123456789ab finished at step 180, train loss 2.1000 → 0.0071, took 0:01:02, ledger runs/ledger.db"
    assert matches([SUMMARY], [other])


def test_a_changed_number_format_does_not_match():
    assert not matches(["val loss 0.2838"], ["val loss 0.284"])


def test_a_changed_word_does_not_match():
    assert not matches([SUMMARY], [SUMMARY.replace("train loss", "training loss")])


def test_runs_of_spaces_count_as_one_so_realigned_tables_match():
    assert matches(["  step  val loss", "    50    2.2378"], ["  step    val loss", "    150   12.2378"])


def test_match_marks_and_the_models_answer_differ_from_cpu_to_cpu():
    shown = ["🤖 MODEL (4 tokens):", "mkti", "✅ MATCH", "Gap=+0.0173 ✅"]
    actual = ["🤖 MODEL (6 tokens):", "mktiqq", "❌ NO MATCH", "Gap=+0.3012 ⚠️"]
    assert matches(shown, actual)
    assert normalise('{"model_output": "cyq", "match": false}') == normalise('{"model_output": "a\\"b", "match": true}')


def test_the_answers_of_a_probe_history_differ_from_cpu_to_cpu_but_its_format_does_not():
    shown = ["step     50  ❌ 0.35  olmeh", "step    100  ✅ 1.00  «olleh»", "step     50  💬    -  wt"]
    actual = ["step     50  ❌ 0.42  «olleh» x", "step    100  ✅ 0.91  olle", "step     50  💬    -"]
    assert matches(shown, actual)
    assert not matches(["step     50  ❌ 0.35  olmeh"], ["step     50  ❌ 0.4  olmeh"])


def test_a_float_with_twelve_decimals_is_a_float_not_a_run_id():
    assert matches(["8813.221440211504,0.25"], ["3295.8289710753775,0.25"])


def test_how_much_of_the_elapsed_time_was_loading_is_a_machines_figure():
    shown = ["5.31 steps/s  ·  3,445 tok/s  ·  elapsed 0:00:07  ·  ETA -"]
    assert matches(shown, ["5.88 steps/s  ·  3,817 tok/s  ·  elapsed 0:00:09 (loading 0:00:02 of it)  ·  ETA -"])
    assert not matches(shown, ["5.88 steps/s  ·  3,817 tok/s  ·  elapsed 0:00:09 (loaded 0:00:02 of it)  ·  ETA -"])


def test_a_float_whose_decimals_look_like_a_run_id_is_still_a_float():
    assert matches(["0.136,2.199013095431858,x"], ["0.512,2.7182818284590,x"])


def test_an_ellipsis_line_stands_for_any_number_of_lines():
    shown = ["config", "  answer_field  answer", "  …", "  validation_split  0.1"]
    assert matches(shown, ["config", "  answer_field  answer", "  validation_split  0.1"])
    assert matches(shown, ["config", "  answer_field  answer", "  a  1", "  b  2", "  validation_split  0.1"])
    assert not matches(shown, ["config", "  answer_field  answer", "  a  1"])


def test_a_line_ending_in_an_ellipsis_stands_for_any_line_so_begun():
    shown = ['{"step": 10, "prompt": "reverse jahf=", …']
    assert matches(shown, ['{"step": 20, "prompt": "reverse jahf=", "loss": 3.71}'])
    assert not matches(shown, ['{"step": 20, "prompt": "reverse other=", "loss": 3.71}'])


def test_regenerating_keeps_each_ellipsis_where_it_stands():
    shown = ["head", "  …", "end 1", "11,abc,…"]
    actual = ["head", "x", "y", "end 2", "12,abc,2.5,7"]
    assert regenerate(shown, actual) == ["head", "  …", "end 2", "12,abc,…"]


def test_a_console_block_is_commands_with_their_output_and_continuations():
    readme = parse("<!-- readme: output -->\n```console\n$ a \\\n    --b\nshown\n$ c\n```\n")
    (block,) = readme.blocks
    assert [(c.text, c.shown) for c in session(block)] == [("a \\\n    --b", ["shown"]), ("c", [])]


def test_a_block_without_an_annotation_is_found_as_such():
    readme = parse("# Title\n\ntext\n```sh\nls\n```\n<!-- readme: run -->\n```sh\nls\n```\n")
    assert [(block.kind, block.heading) for block in readme.blocks] == [(None, "Title"), ("run", "Title")]
