"""Commands: agtrace export."""

COMMANDS: list = []
