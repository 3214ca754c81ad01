"""``Status`` objects, the body of every error the real API server returns, and the matching exceptions.

The Python-facing methods of ``LocalAPI`` raise the same ``errors.APIError`` subclasses the client raises,
so a test can treat a failed ``create`` like a failed POST. The HTTP layer renders the exception back into
the exact Status JSON (``kind``, ``status: Failure``, ``message``, ``reason``, ``details``, ``code``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from watcher import errors
from watcher.localapi.resources import ResourceType

# The reason the real server puts in a Status for a bare HTTP code (k8s.io/apimachinery metav1.StatusReason).
REASONS: Mapping[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}

MESSAGES: Mapping[int, str] = {
    401: "Unauthorized",
    404: "the server could not find the requested resource",
    429: "Too many requests, please try again later.",
    500: "Internal error occurred: fault injected by the local API server",
    502: "Bad Gateway",
    503: "The server is currently unable to handle the request",
    504: (
        "The server was unable to return a response in the time allotted, but may still be processing the "
        "request"
    ),
}

_CLASSES: Mapping[int, type[errors.APIError]] = {
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    409: errors.Conflict,
    410: errors.Gone,
    429: errors.Throttled,
}


def error(
    code: int,
    message: str,
    reason: Optional[str] = None,
    details: Optional[dict[str, Any]] = None,
    retry_after: Optional[float] = None,
) -> errors.APIError:
    """The ``errors`` subclass for ``code``, carrying what ``body()`` needs to render the Status."""
    base = _CLASSES.get(code) or (errors.ServerError if code >= 500 else errors.APIError)
    exc = base(
        code, message, reason=reason if reason is not None else REASONS.get(code, ""), retry_after=retry_after
    )
    exc.details = dict(details or {})  # type: ignore[attr-defined]
    return exc


def body(exc: errors.APIError) -> dict[str, Any]:
    status: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": str(exc),
        "reason": exc.reason,
        "code": exc.status,
    }
    details = dict(getattr(exc, "details", {}) or {})
    if exc.retry_after is not None:
        details.setdefault("retryAfterSeconds", max(1, round(exc.retry_after)))
    if details:
        status["details"] = details
    if not status["reason"]:
        del status["reason"]
    return status


def generic(code: int, message: Optional[str] = None, retry_after: Optional[float] = None) -> errors.APIError:
    return error(
        code,
        message or MESSAGES.get(code, f"fault injected by the local API server (HTTP {code})"),
        retry_after=retry_after,
    )


def _object_details(rtype: ResourceType, name: str) -> dict[str, Any]:
    return {"name": name, "group": rtype.group, "kind": rtype.plural}


def not_found(rtype: ResourceType, name: str) -> errors.APIError:
    return error(404, f'{rtype.qualified} "{name}" not found', details=_object_details(rtype, name))


def already_exists(rtype: ResourceType, name: str) -> errors.APIError:
    return error(
        409, f'{rtype.qualified} "{name}" already exists', "AlreadyExists", _object_details(rtype, name)
    )


def conflict(rtype: ResourceType, name: str) -> errors.APIError:
    return error(
        409,
        f'Operation cannot be fulfilled on {rtype.qualified} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        "Conflict",
        _object_details(rtype, name),
    )


def bad_request(message: str) -> errors.APIError:
    return error(400, message, "BadRequest")


def invalid(rtype: ResourceType, name: str, message: str) -> errors.APIError:
    return error(
        422,
        f'{rtype.kind} "{name}" is invalid: {message}',
        "Invalid",
        {"name": name, "group": rtype.group, "kind": rtype.kind},
    )


def too_old(requested: int, oldest: int) -> errors.APIError:
    """What the watch cache answers for a resourceVersion older than its history."""
    return error(410, f"too old resource version: {requested} ({oldest})", "Expired")


def too_large(requested: int, current: int) -> errors.APIError:
    """What the API server answers for a resourceVersion it has not reached (after an etcd restore,
    or a bogus bookmark): 504 with the cause client-go's reflector looks for before it relists."""
    return error(
        504,
        f"Too large resource version: {requested}, current: {current}",
        "Timeout",
        {
            "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": 1,
        },
    )


CONTINUE_TOO_OLD = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new "
    "list without the continue parameter, or use the continue token in this response to retrieve the "
    "remainder of the results. Continuing with the provided token results in an inconsistent list - objects "
    "that were created, modified, or deleted between the time the first chunk was returned and now may show "
    "up in the list."
)


def continue_expired() -> errors.APIError:
    return error(410, CONTINUE_TOO_OLD, "Expired")


def forbidden(
    user: str, verb: str, rtype: ResourceType, namespace: Optional[str], name: str = ""
) -> errors.APIError:
    where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    details: dict[str, Any] = {"group": rtype.group, "kind": rtype.plural}
    if name:
        details["name"] = name
    target = f'{rtype.qualified} "{name}"' if name else rtype.qualified
    return error(
        403,
        f'{target} is forbidden: User "{user}" cannot {verb} resource "{rtype.plural}" in API group '
        f'"{rtype.group}" {where}',
        "Forbidden",
        details,
    )
