"""Tools to run Plop for tests and the benchmark: server processes and the real services."""
