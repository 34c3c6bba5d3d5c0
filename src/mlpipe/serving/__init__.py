"""Serving: the model behind an HTTP API, scoring records as they arrive, and the prediction log."""
