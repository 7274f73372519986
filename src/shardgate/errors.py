"""One error hierarchy, mapped to the OpenAI error body in one place.

ShardgateError                     500 internal_error
├── InvalidRequest                 400 invalid_request_error
│   ├── PayloadTooLarge            413 invalid_request_error
│   └── ContentFiltered            400 invalid_request_error (code content_filtered)
├── AuthenticationFailed           401 authentication_error
├── PermissionDenied               403 permission_error
├── NotFound                       404 not_found_error
│   └── ModelNotFound              404 not_found_error (code model_not_found)
├── MethodNotAllowed               405 invalid_request_error
├── RequestTimeout                 408 invalid_request_error (code request_timeout)
├── AlreadyExists                  409 invalid_request_error (code already_exists)
├── TooManyRequests                429 requests (code rate_limit_exceeded)
│   ├── TokensRateLimited          429 tokens (code rate_limit_exceeded)
│   └── QuotaExceeded              429 insufficient_quota
└── ServiceUnavailable             503 service_unavailable
    ├── ShardUnavailable           503 (no shard could serve the model)
    └── SafetyUnavailable          503 (a safety detector failed closed)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "AlreadyExists",
    "AuthenticationFailed",
    "ContentFiltered",
    "InvalidRequest",
    "MethodNotAllowed",
    "ModelNotFound",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "QuotaExceeded",
    "RequestTimeout",
    "SafetyUnavailable",
    "ServiceUnavailable",
    "ShardUnavailable",
    "ShardgateError",
    "TokensRateLimited",
    "TooManyRequests",
    "error_body",
]


class ShardgateError(Exception):
    status_code = 500
    error_type = "internal_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.error_type, self.param, self.code)


class InvalidRequest(ShardgateError):
    status_code = 400
    error_type = "invalid_request_error"


class PayloadTooLarge(InvalidRequest):
    status_code = 413
    default_code = "payload_too_large"


class ContentFiltered(InvalidRequest):
    """The content filter refused the request; the message names the categories."""

    default_code = "content_filtered"


class AuthenticationFailed(ShardgateError):
    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        reason: str = "invalid",
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(message, code=code, headers=headers)
        self.reason = reason  # for metrics only: the caller never learns why


class PermissionDenied(ShardgateError):
    status_code = 403
    error_type = "permission_error"


class NotFound(ShardgateError):
    status_code = 404
    error_type = "not_found_error"


class ModelNotFound(NotFound):
    default_code = "model_not_found"


class MethodNotAllowed(ShardgateError):
    status_code = 405
    error_type = "invalid_request_error"


class RequestTimeout(ShardgateError):
    status_code = 408
    error_type = "invalid_request_error"
    default_code = "request_timeout"


class AlreadyExists(ShardgateError):
    status_code = 409
    error_type = "invalid_request_error"
    default_code = "already_exists"


class TooManyRequests(ShardgateError):
    status_code = 429
    error_type = "requests"
    default_code = "rate_limit_exceeded"


class TokensRateLimited(TooManyRequests):
    """Over a tokens-per-minute limit: OpenAI tells it apart from requests by its type."""

    error_type = "tokens"


class QuotaExceeded(TooManyRequests):
    error_type = "insufficient_quota"
    default_code = "insufficient_quota"


class ServiceUnavailable(ShardgateError):
    status_code = 503
    error_type = "service_unavailable"


class ShardUnavailable(ServiceUnavailable):
    default_code = "shard_unavailable"


class SafetyUnavailable(ServiceUnavailable):
    default_code = "content_filter_unavailable"


def error_body(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}
