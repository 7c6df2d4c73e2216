"""Commands: agtrace report, compare."""

COMMANDS: list = []
