"""The ``plop`` command."""
