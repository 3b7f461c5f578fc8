"""Starts the real Redis, Kafka and MongoDB-protocol server through the project's script.

The benchmark starts them the same way: ``devtools.services`` holds the one implementation.
"""

from __future__ import annotations

from devtools.processes import REPO
from devtools.services import RealServices, services_script, start_real_services

__all__ = ["REPO", "RealServices", "services_script", "start_real_services"]
