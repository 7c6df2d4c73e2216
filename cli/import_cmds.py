"""Commands: agtrace import."""

COMMANDS: list = []
