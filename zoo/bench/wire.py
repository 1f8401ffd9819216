"""The server scenario over the wire: ``zoo bench --endpoint URL`` (a live Open Inference
Protocol v2 server: zoo serve, Triton, KServe) and ``--serve`` (zoo serve, started by the run).

A worker's sessions are clients of the endpoint, each in a thread of its own with a
connection of its own (Triton's ``tritonclient.http``): the scenario (``zoo.bench.scenarios``)
is the same open-loop Poisson search as in-process, so a request's latency now includes the
client's serialisation, HTTP both ways and the server's queue and batching. Each call sends
one sample and reads the answer back as a NumPy array.

``--serve`` starts ``zoo serve`` on the export being measured (on a free loopback port, with
the runtime and precision of each in-process row) after the in-process rows are done, so the
two never share the CPUs, and stops it before the next. Such a server's CPU time is the
measurement's own (:func:`server_process`): a round is not disturbed by the server it measures.
A server given with ``--endpoint`` on this machine is another process: its work marks the
rounds unstable, as it does take the CPUs from the clients.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from zoo.errors import UsageError
from zoo.runtimes import Runtime, Session, Source

if TYPE_CHECKING:
    import torch

__all__ = [
    "CLIENTS",
    "WIRE",
    "Endpoint",
    "WireRuntime",
    "parse_endpoint",
    "served",
    "server_process",
]

#: The runtime name of a row measured over the wire against ``--endpoint``.
WIRE = "v2-http"
#: Client connections (sessions) a wire worker opens: enough requests in flight to fill the
#: server's batches at the rates a small model reaches.
CLIENTS = 16
#: Seconds ``zoo serve`` may take to come up (Ray starts in about ten on 2 cores).
SERVE_START_S = 180.0


@dataclass(frozen=True)
class Endpoint:
    """A v2 server (``host:port``) and the model's name on it."""

    address: str
    model: str

    @property
    def url(self) -> str:
        return f"http://{self.address}/v2/models/{self.model}"


def parse_endpoint(url: str, model: str) -> Endpoint:
    """``http://HOST:PORT`` (the model is ``model``) or ``http://HOST:PORT/v2/models/NAME``;
    UsageError for anything else."""
    parsed = urlparse(url if "://" in url else f"http://{url}")
    path = parsed.path.rstrip("/")
    if parsed.scheme != "http" or not parsed.hostname or parsed.query or parsed.fragment:
        raise UsageError(
            f"--endpoint {url!r}: give http://HOST:PORT or http://HOST:PORT/v2/models/NAME"
        )
    name = model
    if path:
        parts = path.split("/")
        if len(parts) != 4 or parts[:3] != ["", "v2", "models"] or not parts[3]:
            raise UsageError(
                f"--endpoint {url!r}: the path must be /v2/models/NAME (the v2 protocol's)"
            )
        name = parts[3]
    try:
        port = parsed.port or 80
    except ValueError:
        raise UsageError(f"--endpoint {url!r}: not a port number") from None
    host = parsed.hostname if ":" not in parsed.hostname else f"[{parsed.hostname}]"
    return Endpoint(f"{host}:{port}", name)


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def check_endpoint(endpoint: Endpoint) -> None:
    """UsageError unless the model is ready there (before any worker starts)."""
    status = _status(f"{endpoint.url}/ready")
    if status != 200:
        why = "nothing answers there" if status == 0 else f"HTTP {status}"
        raise UsageError(f"--endpoint {endpoint.url}: the model is not ready ({why})")


class WireRuntime(Runtime):
    """Clients of a v2 endpoint: ``run`` sends one request and waits for its answer."""

    name = WIRE
    format = None
    description = "a v2 endpoint over HTTP (tritonclient.http)"
    devices = ("cpu", "cuda")

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    def unavailable(self, source: Source, device: str) -> str | None:
        return None  # the endpoint's own device is the server's business

    def load(self, source: Source, device: str, threads: int) -> Session:
        """A session whose calls each use a client of their own thread: tritonclient's HTTP
        client runs on gevent, whose connections belong to the thread that made them."""
        import numpy as np
        import tritonclient.http as th

        own = threading.local()
        made: list[Any] = []

        def client() -> Any:
            if not hasattr(own, "client"):
                own.client = th.InferenceServerClient(
                    self.endpoint.address, connection_timeout=60.0, network_timeout=60.0
                )
                made.append(own.client)
            return own.client

        meta = client().get_model_metadata(self.endpoint.model)
        (spec,) = meta["inputs"]
        names = [o["name"] for o in meta["outputs"]]

        def prepare(x: torch.Tensor) -> Any:
            return np.ascontiguousarray(x.numpy())

        def run(x: Any) -> Any:
            tensor = th.InferInput(spec["name"], list(x.shape), spec["datatype"])
            tensor.set_data_from_numpy(x)
            wanted = [th.InferRequestedOutput(name) for name in names]
            answer = client().infer(self.endpoint.model, [tensor], outputs=wanted)
            return answer.as_numpy(names[0])

        def close() -> None:
            for each in made:
                each.close()

        return Session(prepare=prepare, run=run, close=close)


#: The servers ``served`` runs now: their address (``HOST:PORT``) and process id.
_SERVERS: dict[str, int] = {}


def server_process(address: str) -> int | None:
    """The process id of the server ``served`` runs at ``address`` (None: not one of ours)."""
    return _SERVERS.get(address)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def served(
    export: Path,
    runtime: str,
    precision: str,
    model: str,
    serve_args: Sequence[str] = (),
) -> Iterator[Endpoint]:
    """``zoo serve export`` on a free loopback port while the block runs, then SIGTERM;
    UsageError (with the last line it wrote) if it does not come up. Its output goes to an
    unnamed temporary file, gone when it is closed."""
    port = _free_port()
    command = [
        sys.executable, "-m", "zoo", "serve", str(export), "--port", str(port),
        "--runtime", runtime, "--precision", precision, *serve_args,
    ]  # fmt: skip
    endpoint = Endpoint(f"127.0.0.1:{port}", model)
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        _SERVERS[endpoint.address] = process.pid
        try:
            deadline = time.monotonic() + SERVE_START_S
            while _status(f"{endpoint.url}/ready") != 200:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    lines = [line for line in log.read().splitlines() if line.strip()]
                    raise UsageError(
                        f"--serve: zoo serve {export} did not come up "
                        f"({lines[-1] if lines else 'no output'})"
                    )
                time.sleep(0.5)
            yield endpoint
        finally:
            _SERVERS.pop(endpoint.address, None)
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
