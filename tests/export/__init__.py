"""A package, so that its conftest imports as ``export.conftest``: with ``--doctest-modules`` (pyproject.toml)
the conftest files of the test folders are imported by name, and this one and tests/robustness/conftest.py
would both be ``conftest`` when the two folders are named in one pytest call."""
