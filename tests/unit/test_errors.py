"""Exceptions carry no HTTP status; the API maps each class to one."""

from __future__ import annotations

import inspect

import incidents.exceptions as exceptions
from incidents.api.errors import status_of

EXPECTED = {
    "IncidentsError": 500,
    "ConfigError": 500,
    "BadRequest": 400,
    "ValidationFailed": 422,
    "InvalidValue": 422,
    "PayloadTooLarge": 413,
    "UnsupportedMediaType": 415,
    "ClientGone": 499,
    "Unauthorized": 401,
    "Forbidden": 403,
    "NotFound": 404,
    "Conflict": 409,
    "PreconditionFailed": 412,
    "Unavailable": 503,
}


def _classes() -> dict[str, type[exceptions.IncidentsError]]:
    return {
        name: cls
        for name, cls in inspect.getmembers(exceptions, inspect.isclass)
        if issubclass(cls, exceptions.IncidentsError)
    }


def test_every_exception_class_answers_with_its_status() -> None:
    classes = _classes()
    assert set(classes) == set(EXPECTED)
    assert {name: status_of(cls("m")) for name, cls in classes.items()} == EXPECTED


def test_no_exception_class_holds_an_http_status() -> None:
    for cls in _classes().values():
        assert not hasattr(cls, "status_code") and not hasattr(cls, "status"), cls


def test_the_module_docstring_draws_every_class() -> None:
    drawn = exceptions.__doc__ or ""
    for name in _classes():
        assert f" {name} " in drawn, name
