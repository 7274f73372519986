"""One error hierarchy, mapped to the OpenAI error body in one place.

ShardgateError                     500 internal_error
├── InvalidRequest                 400 invalid_request_error
│   └── PayloadTooLarge            413 invalid_request_error
├── AuthenticationFailed           401 authentication_error
├── PermissionDenied               403 permission_error
├── NotFound                       404 not_found_error
│   └── ModelNotFound              404 not_found_error (code model_not_found)
├── MethodNotAllowed               405 invalid_request_error
├── AlreadyExists                  409 invalid_request_error (code already_exists)
└── ServiceUnavailable             503 service_unavailable
    └── ShardUnavailable           503 (no shard could serve the model)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AlreadyExists",
    "AuthenticationFailed",
    "InvalidRequest",
    "MethodNotAllowed",
    "ModelNotFound",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "ServiceUnavailable",
    "ShardUnavailable",
    "ShardgateError",
    "error_body",
]


class ShardgateError(Exception):
    status_code = 500
    error_type = "internal_error"
    default_code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.error_type, self.param, self.code)


class InvalidRequest(ShardgateError):
    status_code = 400
    error_type = "invalid_request_error"


class PayloadTooLarge(InvalidRequest):
    status_code = 413
    default_code = "payload_too_large"


class AuthenticationFailed(ShardgateError):
    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"

    def __init__(self, message: str, *, code: str | None = None, reason: str = "invalid"):
        super().__init__(message, code=code)
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


class AlreadyExists(ShardgateError):
    status_code = 409
    error_type = "invalid_request_error"
    default_code = "already_exists"


class ServiceUnavailable(ShardgateError):
    status_code = 503
    error_type = "service_unavailable"


class ShardUnavailable(ServiceUnavailable):
    default_code = "shard_unavailable"


def error_body(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}
