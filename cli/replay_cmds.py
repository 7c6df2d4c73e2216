"""Replay commands: replay."""

COMMANDS = []
