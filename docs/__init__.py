"""The README's harness: its blocks run as tests and `make docs` regenerates what they show."""
