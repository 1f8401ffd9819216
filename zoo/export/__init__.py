"""Exporters: TorchScript, ONNX and torch.export programs.

Every ``torch.jit`` call of zoo lives in ``zoo.export.torchscript`` (and, later, the runtime
adapters), with TorchScript's deprecation warning filtered narrowly there.
"""
