"""Test harness: real services, real server processes, gql clients."""
