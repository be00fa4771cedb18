"""The HTTP edge: FastAPI app factory, routes, the one error translator."""
