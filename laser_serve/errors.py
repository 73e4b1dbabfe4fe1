"""Errors that carry a message meant for people (CLI output, gRPC status details)."""


class ConfigError(ValueError):
    """The configuration or a model name is wrong; the message says what to do."""


class Overloaded(RuntimeError):
    """The server is at a configured limit (in-flight requests, queue time): retry later."""


class InvalidArgument(ValueError):
    """A request field is wrong (gRPC INVALID_ARGUMENT); the message starts with the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
