"""zoo serve for real: a Ray Serve server on 127.0.0.1 (a free port), started by the test as a
user starts it, spoken to with Triton's own client and plain HTTP, then stopped by SIGTERM.

One server for the module (Ray starts in about ten seconds); its tests run in one xdist
worker (``xdist_group``; ``make test`` distributes by group). The SIGTERM test stops it; the
ones after it need no server, or start their own.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
from click.testing import CliRunner
from PIL import Image

import zoo
from zoo.cli import cli
from zoo.data import load_dataset
from zoo.export.exporter import export_model
from zoo.train import train

th = pytest.importorskip("tritonclient.http", reason="the serve extra (make test installs it)")
pytest.importorskip("ray.serve", reason="the serve extra (make test installs it)")

pytestmark = pytest.mark.xdist_group("zoo-serve")

#: Seconds the server may take to come up (Ray's start on a loaded 2-core machine) and to
#: stop after SIGTERM.
START_S = 150
STOP_S = 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


class Server:
    def __init__(self, process: subprocess.Popen[str], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.url = f"127.0.0.1:{port}"
        self.log = log

    def post(self, path: str, body: bytes, **headers: str) -> tuple[int, dict]:
        request = urllib.request.Request(
            f"http://{self.url}{path}", data=body, method="POST", headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LeNet trained one epoch on digits, exported to ONNX and TorchScript."""
    root = tmp_path_factory.mktemp("serve")
    train("lenet", "digits", epochs=1, out=str(root / "run"), progress=False, tensorboard=False)
    out = root / "export"
    report = export_model("lenet", out, checkpoint=root / "run", formats=("onnx", "torchscript"))
    assert report.ok, report.manifest.failures()
    return out


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Eight real digits as PNGs."""
    root = tmp_path_factory.mktemp("pictures")
    splits = load_dataset("digits", zoo.get_spec("lenet").input)
    paths = []
    for i in range(8):
        x, _ = splits.test[i]
        pixels = (x.squeeze(0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
        paths.append(root / f"{i}.png")
        Image.fromarray(pixels, mode="L").save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def server(digits: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port = _free_port()
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    command = [
        sys.executable, "-m", "zoo", "serve", str(digits), "--port", str(port),
        "--runtime", "onnxruntime", "--max-batch", "8", "--batch-wait-ms", "5",
        "--max-request-mb", "1",
    ]  # fmt: skip
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, text=True)
    server = Server(process, port, log)
    deadline = time.monotonic() + START_S
    while _status(f"http://{server.url}/v2/health/ready") != 200:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"zoo serve did not come up:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    yield server
    if process.poll() is None:  # the SIGTERM test did not run (or failed before it)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_S)
        except subprocess.TimeoutExpired:
            process.kill()


def _decoded(paths: list[Path]) -> np.ndarray:
    return np.stack(
        [np.asarray(Image.open(p).convert("L"), dtype=np.uint8)[..., None] for p in paths]
    )


def _infer(server: Server, x: np.ndarray, binary: bool = True) -> np.ndarray:
    client = th.InferenceServerClient(server.url)
    tensor = th.InferInput("image", list(x.shape), "UINT8")
    tensor.set_data_from_numpy(x, binary_data=binary)
    wanted = [th.InferRequestedOutput("logits", binary_data=binary)]
    result = client.infer("lenet", [tensor], outputs=wanted)
    client.close()
    return result.as_numpy("logits")


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def test_tritons_client_sees_a_v2_server(server: Server) -> None:
    client = th.InferenceServerClient(server.url)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("lenet")
    meta = client.get_model_metadata("lenet")
    assert meta["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": [-1, -1, -1, 1]}]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]
    assert meta["platform"] == "zoo_onnxruntime"
    client.close()


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_inference_over_http_equals_zoo_predict(
    server: Server, digits: Path, pictures: list[Path], binary: bool
) -> None:
    logits = _infer(server, _decoded(pictures), binary)
    result = CliRunner().invoke(
        cli, ["predict", str(digits), *map(str, pictures), "--runtime", "onnxruntime",
              "--topk", "10", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    predicted = json.loads(result.stdout)["results"]
    probabilities = _softmax(logits.astype(np.float64))
    for row, answer in zip(probabilities, predicted, strict=True):
        for guess in answer["predictions"]:
            assert guess["label"] == str(guess["index"])  # digits: the labels are the digits
            assert row[guess["index"]] == pytest.approx(guess["score"], abs=1e-6)
        assert answer["predictions"][0]["index"] == int(np.argmax(row))


def test_requests_sent_together_each_get_their_own_answer(
    server: Server, pictures: list[Path]
) -> None:
    """Eight clients at once: the server batches them, and each answer is its request's."""
    x = _decoded(pictures)
    alone = [_infer(server, x[i : i + 1]) for i in range(len(x))]
    together: list[np.ndarray | None] = [None] * len(x)

    def send(i: int) -> None:
        together[i] = _infer(server, x[i : i + 1])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(x))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for i, answer in enumerate(together):
        assert answer is not None
        np.testing.assert_allclose(answer, alone[i], rtol=1e-5, atol=1e-5)


def test_bad_requests_get_4xx_and_the_server_keeps_serving(
    server: Server, pictures: list[Path]
) -> None:
    infer = "/v2/models/lenet/infer"
    image = {"name": "image", "datatype": "UINT8", "shape": [1, 8, 8, 1]}

    def tensor(**changes: object) -> bytes:
        return json.dumps({"inputs": [{**image, **changes}]}).encode()

    refused = [
        (server.post(infer, b"not json"), 400, "not JSON"),
        (server.post(infer, tensor(shape=[1, 8, 8, 3], data=[0] * 192)), 400, "expected"),
        (server.post(infer, tensor(datatype="FP32", data=[0] * 64)), 400, "FP32"),
        (server.post(infer, tensor(data=[0] * 3)), 400, "3 values"),
        (server.post(infer, b"0" * (2 * 2**20)), 413, "over"),
        (server.post("/v2/models/resnet/infer", b"{}"), 404, "no model"),
    ]
    for (status, body), want_status, says in refused:
        assert status == want_status, body
        assert says in body["error"]
    assert _status(f"http://{server.url}{infer}") == 405  # GET on infer
    assert server.process.poll() is None
    np.testing.assert_array_equal(
        np.argmax(_infer(server, _decoded(pictures)), axis=1),
        np.argmax(_infer(server, _decoded(pictures), binary=False), axis=1),
    )


def test_zoo_bench_runs_the_server_scenario_over_the_wire(
    server: Server, digits: Path, tmp_path: Path
) -> None:
    """--endpoint: the in-process row and the row over HTTP in one run, the latter saying
    what it kept of the former."""
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        cli,
        ["bench", "lenet", "--artifacts", str(digits), "--runtime", "onnxruntime",
         "--scenario", "server", "--splits", "1x1", "--rounds", "1", "--max-rounds", "1",
         "--min-time", "0.2", "--server-requests", "40", "--clients", "4",
         "--latency-bound", "50", "--endpoint", f"http://{server.url}", "--json", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = {r["runtime"]: r for r in json.loads(out.read_text())["results"]}
    assert set(rows) == {"onnxruntime", "v2-http"}
    wire = rows["v2-http"]
    assert wire["status"] == "ok" and wire["scenario"] == "server" and wire["sessions"] == 4
    assert wire["detail"]["endpoint"] == f"http://{server.url}/v2/models/lenet"
    kept = wire["detail"]["in_process"]
    assert kept["runtime"] == "onnxruntime"
    assert kept["qps_ratio"] == pytest.approx(
        wire["samples_per_s"] / rows["onnxruntime"]["samples_per_s"]
    )
    assert kept["overhead_us"] > 0  # HTTP both ways costs something


def test_sigterm_stops_it_within_seconds_leaving_no_process(server: Server) -> None:
    """Last in the module: it ends the server."""
    tree = psutil.Process(server.process.pid).children(recursive=True)
    assert tree, "Ray's processes should be the server's children"
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    code = server.process.wait(STOP_S)
    took = time.monotonic() - started
    assert code == 0, server.log.read_text()[-2000:]
    _gone, alive = psutil.wait_procs(tree, timeout=10)
    assert not alive, [p.cmdline() for p in alive if p.is_running()]
    assert took < STOP_S
    assert "zoo: stopped" in server.log.read_text()
    assert _status(f"http://{server.url}/v2/health/live") == 0  # nothing listens any more


def test_zoo_bench_serve_starts_zoo_serve_with_replicas_behind_rays_proxy(
    digits: Path, tmp_path: Path
) -> None:
    """--serve: zoo bench starts zoo serve itself (here with two replicas, which Ray's proxy
    puts in front of), measures it beside the in-process row, and stops it after."""
    out = tmp_path / "bench.json"
    before = {p.pid for p in psutil.Process().children(recursive=True)}  # the module's server
    result = CliRunner().invoke(
        cli,
        ["bench", "lenet", "--artifacts", str(digits), "--runtime", "onnxruntime",
         "--scenario", "server", "--splits", "1x1", "--rounds", "1", "--max-rounds", "1",
         "--min-time", "0.2", "--server-requests", "40", "--clients", "4",
         "--serve", "--serve-args", "--replicas 2 --threads 1", "--json", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = {r["runtime"]: r for r in json.loads(out.read_text())["results"]}
    assert set(rows) == {"onnxruntime", "onnxruntime served"}
    served = rows["onnxruntime served"]
    assert served["status"] == "ok" and served["sessions"] == 4, served
    assert served["detail"]["endpoint"].startswith("http://127.0.0.1:")
    assert served["detail"]["in_process"]["runtime"] == "onnxruntime"
    assert served["samples_per_s"] > 0
    # The server this run started, and Ray's processes under it, are gone (Ray's own may take
    # a few seconds after the server exits).
    started = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    _gone, alive = psutil.wait_procs(started, timeout=15)
    left = []
    for process in alive:
        with contextlib.suppress(psutil.Error):  # one ending now is gone
            if process.status() != psutil.STATUS_ZOMBIE:
                left.append(process.cmdline())
    assert not left, left


def test_a_replica_does_not_spin_its_runtimes_threads(digits: Path, pictures: list[Path]) -> None:
    """ONNX Runtime's threads spin between calls (what a benchmark's tight loop wants); a
    replica's sleep instead, leaving the CPU to its event loop. Bench's own is unchanged."""
    from zoo.deploy.loading import open_export
    from zoo.plugins.onnx import OnnxRuntime

    runtime = OnnxRuntime()
    quiet = runtime.serving()
    assert quiet is not runtime and runtime.spinning and not quiet.spinning
    key = "session.intra_op.allow_spinning"
    assert quiet.options(2).get_session_config_entry(key) == "0"
    with pytest.raises(RuntimeError, match="does not have"):  # unset: ORT spins (its default)
        runtime.options(2).get_session_config_entry(key)
    opened = open_export(digits, "onnxruntime", serving=True)
    assert opened.runtime.name == "onnxruntime"
    import torch

    (scores,) = opened.session.outputs(torch.from_numpy(_decoded(pictures)))
    assert scores.shape[0] == len(pictures)


def test_ray_settings_for_one_replica_last_only_while_ray_starts(
    digits: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One local replica answers on --port itself (direct ingress: the range is that one
    port), Ray's proxy on another; the settings are in the environment only while ray.init
    starts Ray's processes. Two replicas keep Ray's proxy on --port."""
    import ray

    from zoo.deploy import serve as serving

    seen: list[dict[str, str]] = []
    proxy: list[int] = []

    def init(**kwargs: object) -> None:
        seen.append({k: v for k, v in os.environ.items() if k.startswith("RAY_SERVE_")})

    class Stop(Exception):
        pass

    def start(http_options: object, **kwargs: object) -> None:
        proxy.append(http_options.port)  # type: ignore[attr-defined]
        raise Stop

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(serving.serve, "start", start)
    monkeypatch.setattr(serving.serve, "shutdown", lambda: None)
    before = {k: v for k, v in os.environ.items() if k.startswith("RAY_SERVE_")}
    for replicas in (1, 2):
        port = _free_port()
        options = serving.ServeOptions(runtime="onnxruntime", replicas=replicas)
        with pytest.raises(Stop):
            serving.serve_forever(digits, options, port=port)
        if replicas == 1:
            assert seen[-1]["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
            assert seen[-1]["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"] == str(port)
            assert seen[-1]["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"] == str(port + 1)
            assert proxy[-1] != port
        else:
            assert "RAY_SERVE_ENABLE_DIRECT_INGRESS" not in seen[-1]
            assert proxy[-1] == port
        assert {k: v for k, v in os.environ.items() if k.startswith("RAY_SERVE_")} == before


def test_build_app_takes_zoo_serves_options_as_arguments(digits: Path) -> None:
    """``serve run zoo.deploy.serve:build_app export=DIR ...`` and a RayService's args."""
    from zoo.deploy.serve import options_from_args

    export, options = options_from_args(
        {"export": str(digits), "runtime": "onnxruntime", "max_batch": "16",
         "batch_wait_ms": "0.5", "max_request_mb": 2, "replicas": 2}
    )  # fmt: skip
    assert export == digits
    assert (options.runtime, options.max_batch, options.batch_wait_ms) == ("onnxruntime", 16, 0.5)
    assert (options.max_request_bytes, options.replicas) == (2 * 2**20, 2)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ({}, "give export=DIR"),
        ({"export": "/nonexistent"}, "not a directory"),
        ({"export": ".", "batch": 3}, "unknown argument 'batch'"),
        ({"export": ".", "max_batch": "many"}, "not an integer"),
        ({"export": ".", "max_batch": 0}, "at least 1"),
        ({"export": ".", "precision": "int4"}, "choose fp32"),
        ({"export": ".", "device": "tpu"}, "choose cpu or cuda"),
        ({"export": ".", "batch_wait_ms": 5000}, "from 0 to 1000"),
        ({"export": ".", "max_request_mb": 0}, "above 0"),
    ],
)
def test_build_app_refuses_bad_arguments(args: dict, says: str) -> None:
    from zoo.deploy.serve import options_from_args

    with pytest.raises(ValueError, match=says):
        options_from_args(args)


def test_a_port_in_use_is_refused_before_ray_starts() -> None:
    from zoo.deploy.serve import check_port
    from zoo.errors import UsageError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UsageError, match=f"--port {port}: cannot listen there"):
            check_port("127.0.0.1", port)
    check_port("127.0.0.1", port)  # free again
