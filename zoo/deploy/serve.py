"""``zoo serve EXPORT``: an export behind the Open Inference Protocol v2, on Ray Serve.

Each replica (a Ray actor) opens the export as ``zoo predict`` does (vetted, then loaded in
one of zoo's runtimes, :mod:`zoo.deploy.loading`) and answers v2 requests
(:mod:`zoo.deploy.v2`). Requests that arrive together are run as one batch: Ray Serve's
``@serve.batch`` gathers up to ``max_batch`` requests, waiting at most ``batch_wait_ms`` for
more after the first, and the replica runs each group of equal sample shapes as one call of
its runtime, in a worker thread (the replica's event loop goes on taking requests meanwhile).

Locally (the default), ``zoo serve`` starts Ray on this machine and shuts it down when it
stops; with ``--address`` it deploys to a running Ray cluster (KubeRay, ``ray start``),
where each node must see the export at the same path. Ray is imported only here: the rest of
zoo runs without the ``serve`` extra (the command line imports this module only for
``zoo serve``).

One local replica answers on the port itself (Ray Serve's direct ingress,
:func:`_direct_ingress`): without Ray's proxy in between, a request costs one process hop
instead of three. Measured on 2 cores (resnet18, closed loop): the proxy took 6 ms of CPU per
request, and the server answered 46 requests/s instead of 84 (the runtime in-process: 85).
More replicas, or a cluster, go through Ray's proxy, which spreads requests among them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve

from zoo.deploy.v2 import HEADER_LENGTH, MAX_REQUEST_BYTES, ProtocolError, V2Model
from zoo.errors import UsageError, one_line
from zoo.export.manifest import read_manifest

__all__ = [
    "ServeOptions",
    "V2Deployment",
    "application",
    "build_app",
    "check_port",
    "options_from_args",
    "serve_forever",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    """How ``zoo serve`` runs an export (the command's options)."""

    runtime: str | None = None
    precision: str = "fp32"
    #: ``cpu`` or ``cuda`` (each replica then holds an equal share of one GPU).
    device: str = "cpu"
    #: Threads each replica's runtime computes with (and the CPUs Ray reserves for it).
    threads: int = 1
    replicas: int = 1
    #: Requests run as one batch at most, and how long the first waits for others.
    max_batch: int = 8
    batch_wait_ms: float = 2.0
    max_request_bytes: int = MAX_REQUEST_BYTES
    #: The model's name in URLs (default: the export's model).
    name: str | None = None


def _json(status: int, payload: Any) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse(payload, status_code=status)


class V2Deployment:
    """One replica: the export loaded once, answering the v2 routes (Ray Serve calls it with
    every HTTP request whose path starts with ``/``)."""

    def __init__(self, directory: str, options: ServeOptions) -> None:
        from zoo.deploy.loading import open_export

        self.options = options
        self.export = open_export(
            Path(directory),
            options.runtime,
            device=options.device,
            threads=options.threads,
            precision=options.precision,
            serving=True,
        )
        platform = f"zoo_{self.export.runtime.name}"
        if self.export.variant is not None:
            platform += f"_{self.export.precision}"
        self.model = V2Model(
            self.export.manifest,
            name=options.name,
            platform=platform,
            max_request_bytes=options.max_request_bytes,
        )
        # Ray Serve's batching wrapper has these; its type stub does not say so.
        self.run_batch.set_max_batch_size(options.max_batch)  # type: ignore[attr-defined]
        self.run_batch.set_batch_wait_timeout_s(options.batch_wait_ms / 1e3)  # type: ignore[attr-defined]
        base = f"/v2/models/{self.model.name}"
        self.model_paths = {base, f"{base}/versions/{self.model.version}"}

    async def __call__(self, request: Any) -> Any:
        try:
            return await self._route(request)
        except ProtocolError as exc:
            from starlette.responses import Response

            return Response(exc.body(), status_code=exc.status, media_type="application/json")

    async def _route(self, request: Any) -> Any:
        path = request.url.path.rstrip("/") or "/"
        method = request.method
        if path in ("/v2/health/live", "/v2/health/ready"):
            return _json(200, {"live" if path.endswith("live") else "ready": True})
        if path == "/v2":
            return _json(200, V2Model.server_metadata())
        for base in self.model_paths:
            if path == base:
                return _json(200, self.model.metadata())
            if path == f"{base}/ready":
                return _json(200, {"name": self.model.name, "ready": True})
            if path == f"{base}/infer":
                if method != "POST":
                    raise ProtocolError(405, f"{path} takes POST, not {method}")
                return await self._infer(request)
        if path.startswith("/v2/models/"):
            raise ProtocolError(404, f"no model at {path}: this server has {self.model.name!r}")
        raise ProtocolError(404, f"no route {path} (the v2 protocol's routes are under /v2)")

    async def _infer(self, request: Any) -> Any:
        from starlette.responses import Response

        if request.headers.get("content-encoding", "identity") != "identity":
            raise ProtocolError(
                415, f"Content-Encoding {request.headers['content-encoding']!r}: send it plain"
            )
        body = await self._body(request)
        parsed = self.model.parse(body, request.headers.get(HEADER_LENGTH))
        try:
            outputs = await self.run_batch(parsed.array)
        except Exception as exc:  # the model failed on a well-formed request: the server's fault
            log.exception("inference failed")
            raise ProtocolError(500, f"inference failed: {one_line(exc)}") from None
        content, headers = self.model.response(parsed, outputs)
        return Response(content, status_code=200, headers=headers)

    async def _body(self, request: Any) -> bytes:
        """The request's body, refused (413) past the bound before it is all read."""
        limit = self.options.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ProtocolError(413, f"request of {int(declared):,} bytes, over {limit:,}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ProtocolError(413, f"request of over {limit:,} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.002)  # sizes set per replica
    async def run_batch(self, arrays: list[np.ndarray]) -> list[list[np.ndarray]]:
        """The outputs of each request's array: the requests Ray Serve gathered, run in a
        worker thread (the replica's event loop goes on taking requests meanwhile)."""
        return await asyncio.to_thread(self._compute, arrays)

    def _compute(self, arrays: list[np.ndarray]) -> list[list[np.ndarray]]:
        """The outputs of every request's array: those of one sample shape concatenated and
        run as one call, then split back, each request's in the manifest's output order."""
        import torch

        groups: dict[tuple[int, ...], list[int]] = {}
        for i, array in enumerate(arrays):
            groups.setdefault(tuple(array.shape[1:]), []).append(i)
        answers: list[list[np.ndarray]] = [[] for _ in arrays]
        with torch.inference_mode():
            for members in groups.values():
                batch = np.concatenate([arrays[i] for i in members])
                outputs = self.export.session.outputs(torch.from_numpy(batch))
                start = 0
                for i in members:
                    size = len(arrays[i])
                    answers[i] = [o[start : start + size] for o in outputs]
                    start += size
        return answers


def application(directory: Path, options: ServeOptions) -> Any:
    """The Ray Serve application serving ``directory``."""
    from ray.serve.schema import LoggingConfig

    deployment = serve.deployment(
        name="zoo",
        num_replicas=options.replicas,
        ray_actor_options={
            "num_cpus": options.threads,
            "num_gpus": 1 / options.replicas if options.device == "cuda" else 0,
        },
        # Enough requests in a replica to fill its batches while one runs.
        max_ongoing_requests=max(16, 4 * options.max_batch),
        logging_config=LoggingConfig(enable_access_log=False, log_level="WARNING"),
    )(V2Deployment)
    return deployment.bind(str(directory.resolve()), options)


#: ``build_app``'s arguments, and the type each takes (as ``zoo serve``'s options).
_ARGS: dict[str, type] = {
    "export": str,
    "runtime": str,
    "precision": str,
    "device": str,
    "threads": int,
    "replicas": int,
    "max_batch": int,
    "batch_wait_ms": float,
    "max_request_mb": float,
    "name": str,
}


def options_from_args(args: dict[str, Any]) -> tuple[Path, ServeOptions]:
    """``build_app``'s arguments (strings from ``serve run``, or typed values from a
    RayService's YAML) checked and turned into the export and its options; ValueError
    naming the first one that is wrong."""
    unknown = sorted(set(args) - set(_ARGS))
    if unknown:
        raise ValueError(f"unknown argument {unknown[0]!r}: zoo takes {', '.join(_ARGS)}")
    if "export" not in args:
        raise ValueError("give export=DIR, the export directory to serve")
    values: dict[str, Any] = {}
    for key, value in args.items():
        kind = _ARGS[key]
        try:
            values[key] = kind(value)
        except (TypeError, ValueError):
            what = {int: "an integer", float: "a number"}.get(kind, "a string")
            raise ValueError(f"{key}={value!r}: not {what}") from None
    if values.get("precision", "fp32") not in ("fp32", "bf16", "fp16", "int8"):
        raise ValueError(f"precision={values['precision']!r}: choose fp32, bf16, fp16 or int8")
    if values.get("device", "cpu") not in ("cpu", "cuda"):
        raise ValueError(f"device={values['device']!r}: choose cpu or cuda")
    for key in ("threads", "replicas", "max_batch"):
        if values.get(key, 1) < 1:
            raise ValueError(f"{key}={values[key]}: at least 1")
    if not 0 <= values.get("batch_wait_ms", 0.0) <= 1000:
        raise ValueError(f"batch_wait_ms={values['batch_wait_ms']}: from 0 to 1000")
    if not 0 < values.get("max_request_mb", 16.0) <= 4096:
        raise ValueError(f"max_request_mb={values['max_request_mb']}: above 0, at most 4096")
    export = Path(values.pop("export"))
    if not export.is_dir():
        raise ValueError(f"export={export}: not a directory")
    megabytes = values.pop("max_request_mb", None)
    if megabytes is not None:
        values["max_request_bytes"] = int(megabytes * 2**20)
    return export, ServeOptions(**values)


def build_app(args: dict[str, Any]) -> Any:
    """Ray Serve's application builder, for ``serve run`` and a RayService (KubeRay)::

        serve run zoo.deploy.serve:build_app export=/models/lenet runtime=onnxruntime

    ``args``: ``export`` and zoo serve's options by their Python names (``max_batch``,
    ``batch_wait_ms``...)."""
    export, options = options_from_args(args)
    return application(export, options)


def _probe(host: str) -> socket.socket:
    """A TCP socket of ``host``'s address family (IPv6 when it has a colon), to bind."""
    return socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)


def check_port(host: str, port: int) -> None:
    """UsageError when ``host:port`` cannot be listened on (in use, or not this machine's)."""
    with _probe(host) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UsageError(
                f"--host {host} --port {port}: cannot listen there ({exc.strerror}); "
                "choose another --port"
            ) from None


#: Seconds the replica may take to answer on its port once Ray Serve says it is running.
READY_S = 60.0


def _direct_ingress(port: int) -> dict[str, str]:
    """Ray Serve's settings for one local replica that answers HTTP on ``port`` itself (its
    direct ingress: no proxy actor between client and replica). Ray reads them from the
    environment of the processes it starts, and the port range is the one port (the upper
    bound is exclusive). A replica Ray restarts takes the same port again at once (no
    quarantine, no draining period: no other proxy routes to it)."""
    return {
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(port),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(port + 1),
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0",
        "RAY_SERVE_PORT_QUARANTINE_S": "0",
    }


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in this process's environment for the block (for the processes Ray starts
    in it), and what was there before back after it."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _free_port(host: str) -> int:
    """A port free on ``host`` now (for Ray's own proxy, when the replica has the given one)."""
    with _probe(host) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _reachable(host: str) -> str:
    """The address to reach a server listening on ``host`` from this machine (a wildcard
    address is not one to connect to), bracketed for a URL when it is IPv6."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"[{host}]" if ":" in host else host


def _wait_ready(url: str, limit_s: float = READY_S) -> None:
    """Return once ``url`` answers 200; UsageError after ``limit_s`` seconds."""
    import ray

    deadline = time.monotonic() + limit_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise UsageError(
                f"the replica did not answer at {url} within {limit_s:.0f} s (Ray {ray.__version__}"
                "'s direct ingress); try --replicas 2, which serves through Ray's proxy"
            )
        time.sleep(0.2)


def serve_forever(
    directory: Path,
    options: ServeOptions,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    address: str | None = None,
    ready: Callable[[str], None] = print,
    stop: threading.Event | None = None,
) -> None:
    """Serve ``directory`` until SIGINT or SIGTERM (or ``stop``, set by another thread), then
    shut the application, and a Ray started here, down: no process of it is left behind."""
    import ray
    from ray.serve.config import HTTPOptions
    from ray.serve.schema import LoggingConfig

    from zoo._interrupts import stop_on_signals

    # Ray reports usage statistics unless told not to: a local server phones no one.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    app_name = f"zoo-{options.name or read_manifest(directory).model}"
    local = address is None
    if local:
        check_port(host, port)
        cpus = os.cpu_count() or 1
        if options.replicas * options.threads > cpus:
            raise UsageError(
                f"--replicas {options.replicas} x --threads {options.threads} needs "
                f"{options.replicas * options.threads} CPUs, this machine has {cpus}"
            )
    # One local replica answers on the port itself; Ray's proxy (which it still starts) gets
    # another, free one. Ray's processes take the settings when ray.init starts them.
    direct = local and options.replicas == 1
    proxy_port = _free_port(host) if direct else port
    with _environment(_direct_ingress(port) if direct else {}):
        ray.init(
            address=address,
            include_dashboard=False,
            logging_level=logging.WARNING,
            namespace="zoo-serve",
        )
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    # After ray.init, whose own SIGTERM handler (C++, in its core worker) would end the
    # process at once and leave Ray's agents running.
    with stop_on_signals(stop if stop is not None else threading.Event()) as stopping:
        try:
            serve.start(
                http_options=HTTPOptions(host=host, port=proxy_port),
                logging_config=LoggingConfig(enable_access_log=False, log_level="WARNING"),
            )
            serve.run(application(directory, options), name=app_name, route_prefix="/")
            url = f"http://{_reachable(host)}:{port}"
            if direct:  # Serve calls the app running before its replica listens on the port
                _wait_ready(f"{url}/v2/health/ready")
            ready(url)
            while not stopping.wait(0.5):
                pass
        finally:
            if local:
                serve.shutdown()
            else:  # the cluster's Serve goes on with its other applications
                serve.delete(app_name)
            ray.shutdown()
