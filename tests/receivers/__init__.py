"""Scripts run by the side environments' Pythons (tests/side_venv.py): the other side of an
interchange test. They import only their own environment's packages."""
