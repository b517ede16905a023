"""The layers import one way; viewers never pay for torch. Checked in fresh interpreters."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def modules_after_import(module: str) -> set[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(result.stdout))


@pytest.mark.parametrize("module", ["twotier.store", "twotier.store.reader", "twotier.store.export"])
def test_store_imports_neither_torch_nor_textual(module):
    loaded = modules_after_import(module)
    assert not {"torch", "transformers", "textual", "twotier.engine", "twotier.tui"} & loaded


def test_engine_never_imports_textual():
    loaded = modules_after_import("twotier.engine.runner")
    assert "torch" in loaded and "textual" not in loaded and "twotier.tui" not in loaded


def test_command_line_entry_opens_without_torch():
    assert not {"torch", "transformers", "datasets"} & modules_after_import("twotier.tui.cli")
