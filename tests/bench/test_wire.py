"""zoo bench --endpoint/--serve without a server: the endpoint's URL is read as the v2
protocol names a model, and the options are refused where they cannot measure anything.
(The scenario over a real wire: tests/deploy/test_serve.py.)"""

from __future__ import annotations

import pytest

from zoo.bench.settings import BenchSettings, validate
from zoo.bench.wire import Endpoint, parse_endpoint
from zoo.errors import UsageError


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("http://127.0.0.1:8000", Endpoint("127.0.0.1:8000", "lenet")),
        ("127.0.0.1:8000", Endpoint("127.0.0.1:8000", "lenet")),
        ("http://host:9/v2/models/digits/", Endpoint("host:9", "digits")),
        ("http://host", Endpoint("host:80", "lenet")),
        ("http://[::1]:8000", Endpoint("[::1]:8000", "lenet")),
    ],
)
def test_an_endpoint_names_a_server_and_a_model(url: str, want: Endpoint) -> None:
    assert parse_endpoint(url, "lenet") == want


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("https://host:8000", "http://HOST:PORT"),
        ("http://host:8000/v1/models/x", "/v2/models/NAME"),
        ("http://host:8000/v2/models/", "/v2/models/NAME"),
        ("http://host:8000/v2/models/x/infer", "/v2/models/NAME"),
        ("http://host:99999", "port"),
        ("http://host:8000?x=1", "http://HOST:PORT"),
    ],
)
def test_a_bad_endpoint_is_refused_in_one_line(url: str, says: str) -> None:
    with pytest.raises(UsageError, match="--endpoint") as caught:
        parse_endpoint(url, "lenet")
    assert says in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"endpoint": "http://h:1"}, "add --scenario server"),
        ({"serve": True}, "add --scenario server"),
        ({"endpoint": "http://h:1", "serve": True, "scenarios": ("server",)}, "or --serve"),
        ({"serve": True, "scenarios": ("server",), "clients": 0}, "--clients 0"),
        ({"serve_args": ("--max-batch", "4")}, "only with --serve"),
    ],
)
def test_wire_options_that_cannot_measure_are_refused(changes: dict, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        validate(BenchSettings(models=["lenet"], runtimes=("onnxruntime",), **changes))
