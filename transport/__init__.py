"""HTTP and WebSocket transport: the GraphQL router, socket handlers and request limits."""
