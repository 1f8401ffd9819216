"""ONNX Runtime: zoo's configured session, the plain default session as a peer, and TensorRT.

``get_available_providers()`` lists CUDA and TensorRT on any onnxruntime-gpu install, GPU or
not, so the device is detected for real (torch sees a CUDA device) and the session is checked
for the provider it actually got.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from zoo.bench.runtimes.base import Runtime, Session, Source

__all__ = ["OnnxRuntime", "OnnxRuntimeDefault", "OnnxRuntimeTensorRT"]

_PROVIDER = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    format = "onnx"
    description = "model.onnx, InferenceSession with the run's thread count (CPU or CUDA EP)"

    def options(self, threads: int) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return options

    def providers(self, device: str) -> list[str]:
        return (
            [_PROVIDER[device], "CPUExecutionProvider"] if device != "cpu" else [_PROVIDER[device]]
        )

    def unavailable(self, source: Source, device: str) -> str | None:
        why = super().unavailable(source, device)
        if why is None:
            try:
                import onnxruntime as ort
            except ImportError:
                return "onnxruntime is not installed"
            wanted = self.providers(device)[0]
            if wanted not in ort.get_available_providers():
                return f"this onnxruntime build has no {wanted}"
        return why

    def load(self, source: Source, device: str, threads: int) -> Session:
        import onnxruntime as ort

        path = source.artifact("onnx")
        assert path is not None
        session = ort.InferenceSession(
            str(path), sess_options=self.options(threads), providers=self.providers(device)
        )
        wanted = self.providers(device)[0]
        if session.get_providers()[0] != wanted:
            raise RuntimeError(
                f"onnxruntime fell back to {session.get_providers()[0]}: {wanted} did not load "
                "(CUDA, cuDNN or TensorRT libraries missing?)"
            )
        name = session.get_inputs()[0].name
        outputs = [o.name for o in session.get_outputs()]
        # Input and outputs are bound once per batch size (IOBinding): each timed call is
        # the inference itself, without converting a feed dict (measured: a few us less per
        # call for LeNet at batch 1, the same for large batches).
        binding = session.io_binding()
        where = "cpu" if device == "cpu" else "cuda"

        def prepare(x: Any) -> Any:
            array = np.ascontiguousarray(x.numpy())
            value = ort.OrtValue.ortvalue_from_numpy(array, where, 0)
            binding.clear_binding_inputs()
            binding.clear_binding_outputs()
            binding.bind_ortvalue_input(name, value)
            for output in outputs:
                binding.bind_output(output, where)
            return value  # keeps the input alive while it is bound

        def run(value: Any) -> Any:
            session.run_with_iobinding(binding)

        # On the CPU the outputs are ready when run_with_iobinding returns: no sync call.
        sync = binding.synchronize_outputs if device != "cpu" else (lambda: None)
        return Session(prepare=prepare, run=run, sync=sync)


class OnnxRuntimeDefault(OnnxRuntime):
    name = "onnxruntime-default"
    description = "model.onnx, a plain InferenceSession(path) and session.run: the peer to beat"

    def load(self, source: Source, device: str, threads: int) -> Session:
        import onnxruntime as ort

        path = source.artifact("onnx")
        assert path is not None
        # ORT's defaults: one thread per physical core, all graph optimisations.
        session = ort.InferenceSession(str(path), providers=self.providers(device))
        name = session.get_inputs()[0].name

        def prepare(x: Any) -> dict[str, np.ndarray]:
            return {name: x.numpy()}

        def run(feed: dict[str, np.ndarray]) -> Any:
            return session.run(None, feed)

        return Session(prepare=prepare, run=run)


class OnnxRuntimeTensorRT(OnnxRuntime):
    name = "onnxruntime-trt"
    description = "model.onnx on ONNX Runtime's TensorRT EP (CUDA only)"
    devices = ("cuda",)

    def providers(self, device: str) -> list[str]:
        return ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
