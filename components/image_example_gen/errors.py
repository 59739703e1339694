"""The error ingestion raises when its input cannot be ingested."""


class IngestionError(RuntimeError):
    """The input cannot be ingested as it is; the message says what to fix."""
