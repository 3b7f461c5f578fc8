"""Strawberry types, the request context, error codes and the one Schema."""
