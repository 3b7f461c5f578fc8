"""The rules of Plop, with no GraphQL in them, and the container that wires them."""

from services.container import Services

__all__ = ["Services"]
