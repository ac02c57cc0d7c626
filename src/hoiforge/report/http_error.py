"""The one error the viewer's routes raise (its own, audit mode's): an HTTP status and a message for the page."""

from __future__ import annotations

from http import HTTPStatus


class HttpError(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status
