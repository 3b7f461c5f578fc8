"""The composition of one Plop process: backends, services, transport and background work."""
