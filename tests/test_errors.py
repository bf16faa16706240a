"""The exception tree, the status table, and what errors print."""

from __future__ import annotations

import pytest

from mirror_providers import errors as E


@pytest.mark.parametrize("status, cls", [
    (400, E.BadRequestError), (401, E.AuthenticationError), (402, E.PermissionDeniedError),
    (403, E.PermissionDeniedError), (404, E.NotFoundError), (408, E.ServerError), (409, E.ConflictError),
    (413, E.RequestTooLargeError), (418, E.BadRequestError), (422, E.BadRequestError), (429, E.RateLimitError),
    (500, E.ServerError), (502, E.ServerError), (503, E.ServerError), (504, E.ServerError),
    (529, E.OverloadedError),
])
def test_status_table(status: int, cls: type) -> None:
    assert E.error_class_for_status(status) is cls


def test_everything_is_a_provider_error() -> None:
    for name in E.__all__:
        obj = getattr(E, name)
        if isinstance(obj, type):
            assert issubclass(obj, E.ProviderError), name
    assert E.MirrorProvidersError is E.ProviderError
    assert issubclass(E.ValidationError, ValueError)


@pytest.mark.parametrize("cls, retryable, failover", [
    (E.BadRequestError, False, False), (E.ContextLengthExceededError, False, True),
    (E.AuthenticationError, False, True), (E.ModelNotFoundError, False, True),
    (E.RateLimitError, True, True), (E.QuotaExceededError, False, True), (E.ServerError, True, True),
    (E.OverloadedError, True, True), (E.ConnectError, True, True), (E.RequestTimeout, True, True),
    (E.ValidationError, False, False), (E.ConfigurationError, False, False),
])
def test_retry_and_failover_flags(cls: type[E.ProviderError], retryable: bool, failover: bool) -> None:
    assert (cls.retryable, cls.failover_ok) == (retryable, failover)


def test_api_error_str_and_repr() -> None:
    err = E.RateLimitError("slow down", provider="openai", model="gpt-4o", status=429, request_id="req_1",
                           retry_after=2.0, error_code="rate_limit_exceeded", body="x" * 5000)
    assert str(err) == "[openai gpt-4o] 429 rate_limit_exceeded: slow down (request_id=req_1)"
    assert repr(err) == ("RateLimitError(message='slow down', provider='openai', model='gpt-4o', status=429, "
                         "request_id='req_1')")
    assert err.body is not None and len(err.body) == E.BODY_LIMIT


def test_should_retry_overrides_class_default() -> None:
    assert E.ServerError("x", should_retry=False).retryable is False
    assert E.BadRequestError("x", should_retry=True).retryable is True
    assert E.ServerError.retryable is True  # the class is untouched


def test_stream_error_class_is_both() -> None:
    cls = E.stream_error_class(E.OverloadedError)
    assert issubclass(cls, E.OverloadedError) and issubclass(cls, E.StreamError)
    assert E.stream_error_class(E.OverloadedError) is cls
    assert cls.retryable and cls.__name__ == "OverloadedStreamError"


def test_all_providers_failed_keeps_attempts() -> None:
    err = E.AllProvidersFailedError("all failed", attempts=[1, 2])
    assert err.attempts == [1, 2]
