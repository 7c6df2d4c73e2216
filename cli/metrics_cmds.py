"""Commands: agtrace metrics, diff."""

COMMANDS: list = []
