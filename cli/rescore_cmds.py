"""Commands: agtrace rescore, scores."""

COMMANDS: list = []
