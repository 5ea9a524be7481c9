"""The ``mullama`` command: ``main.py`` builds the parser; one module per group of verbs."""
