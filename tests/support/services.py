"""Starts the real Redis, Kafka and MongoDB-protocol server through the project's script.

The benchmark starts them the same way: ``bench.server`` holds the one implementation.
"""

from __future__ import annotations

from bench.server import REPO, RealServices, services_script, start_real_services

__all__ = ["REPO", "RealServices", "services_script", "start_real_services"]
