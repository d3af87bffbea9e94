"""The two kinds of refusal the local Bot API server gives: a Bot API error and a control API error."""

from __future__ import annotations

from typing import Any

__all__ = ["ApiError", "ControlError", "bad"]


class ApiError(Exception):
    """A Bot API error answer: ``{"ok": false, "error_code": ..., "description": ...}``."""

    def __init__(self, code: int, description: str, *, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        """The JSON body Telegram sends for this error."""
        data: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.retry_after is not None:
            data["parameters"] = {"retry_after": self.retry_after}
        return data


def bad(description: str) -> ApiError:
    """A 400 Bad Request error."""
    return ApiError(400, f"Bad Request: {description}")


class ControlError(Exception):
    """A control API error (status plus message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
