"""agtrace.cli: the click commands. Imported by nothing."""
