"""Scripts run by the pinned tools' Pythons (tests/agents/tools.txt): the other side of an
interchange test. They import only their own environment's packages."""
