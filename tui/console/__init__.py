"""The plain command-line faces: headless training (`twotier-tui --headless`) and `twotier ledger ...`.

They print text and never load Textual; `tests/test_layers.py` holds that.
"""
