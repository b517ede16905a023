"""The terminal side of twotier: the `twotier-tui` command, its headless printout and its Textual app."""
