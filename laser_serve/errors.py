"""Errors that carry a message meant for people (CLI output, gRPC status details)."""


class ConfigError(ValueError):
    """The configuration or a model name is wrong; the message says what to do."""


class Overloaded(RuntimeError):
    """The server is at a configured limit (in-flight requests, queue time): retry later."""
