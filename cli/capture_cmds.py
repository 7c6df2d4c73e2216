"""Capture commands: run, demo."""

COMMANDS = []
