"""Commands: agtrace push, pull."""

COMMANDS: list = []
