"""``zoo export``: the bundle (preprocessing + model), the parity gate, the manifest, and the
exporter that writes every requested format (from the format registry) into one directory.
The formats themselves are plugins (``zoo/plugins/``: TorchScript, ONNX, .pt2, AOTInductor).
"""
