"""Matrix-format errors, raised by services and rendered by the API layer."""

from __future__ import annotations

from typing import Any


class MatrixError(Exception):
    """An error with a Matrix `errcode`, rendered as `{"errcode", "error", ...extra}`."""

    def __init__(self, status: int, errcode: str, error: str, **extra: Any) -> None:
        super().__init__(f"{status} {errcode}: {error}")
        self.status = status
        self.errcode = errcode
        self.error = error
        self.extra = extra
        self.headers: dict[str, str] = {}

    def to_json(self) -> dict[str, Any]:
        return {"errcode": self.errcode, "error": self.error, **self.extra}


def bad_json(error: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", error)


def not_json(error: str = "Content not JSON") -> MatrixError:
    return MatrixError(400, "M_NOT_JSON", error)


def missing_param(error: str) -> MatrixError:
    return MatrixError(400, "M_MISSING_PARAM", error)


def invalid_param(error: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", error)


def not_found(error: str = "Not found") -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", error)


def forbidden(error: str) -> MatrixError:
    return MatrixError(403, "M_FORBIDDEN", error)


def unrecognized(status: int = 404, error: str = "Unrecognized request") -> MatrixError:
    return MatrixError(status, "M_UNRECOGNIZED", error)


def too_large(error: str = "Request body too large") -> MatrixError:
    return MatrixError(413, "M_TOO_LARGE", error)


def limit_exceeded(retry_after_ms: int) -> MatrixError:
    err = MatrixError(429, "M_LIMIT_EXCEEDED", "Too many requests", retry_after_ms=retry_after_ms)
    err.headers["Retry-After"] = str(max(1, (retry_after_ms + 999) // 1000))
    return err
