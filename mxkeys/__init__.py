"""mxkeys: a Matrix homeserver built around end-to-end encryption."""

__version__ = "0.1.0"
