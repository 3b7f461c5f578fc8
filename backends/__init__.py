"""Connections to the storage backends (MongoDB, Redis), each chosen by its URL."""
