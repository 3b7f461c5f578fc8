"""Query, mutation and subscription functions: parse, authorize, call a service, map."""
