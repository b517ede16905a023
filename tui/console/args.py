"""Command-line parsing that reports a bad flag the way every other bad input is reported: one line, exit 2.

argparse prints its whole usage before the error; here the error is one line, with a did-you-mean for an
unknown flag or command, and `--help` still lists everything.
"""

from __future__ import annotations

import argparse
import difflib
import re
from typing import NoReturn

USAGE_EXIT = 2
_INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)")


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser (and the subcommand parsers it makes) whose errors are one line on stderr."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_EXIT, f"twotier: error: {message}{self._hint(message)}\n")

    def _hint(self, message: str) -> str:
        if message.startswith("unrecognized arguments:"):
            known = sorted(self._all_options())
            for word in message.split(":", 1)[1].split():
                if word.startswith("--"):
                    close = difflib.get_close_matches(word.split("=", 1)[0], known, n=1)
                    if close:
                        return f"; did you mean {close[0]}? (--help lists every flag)"
            return " (--help lists every flag)"
        choice = _INVALID_CHOICE.search(message)
        if choice:
            options = [option.strip(" '") for option in choice.group(2).split(",")]
            close = difflib.get_close_matches(choice.group(1), options, n=1)
            if close:
                return f"; did you mean '{close[0]}'?"
        return ""

    def _all_options(self) -> set[str]:
        """Every long option of this parser and of its subcommands (an unknown flag may be meant for either)."""
        options = {option for option in self._option_string_actions if option.startswith("--")}
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    if isinstance(sub, OneLineParser):
                        options |= sub._all_options()
        return options
