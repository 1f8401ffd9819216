"""``zoo predict EXPORT INPUT...``: what an export says about your files.

The export is vetted as ``zoo bench --artifacts`` vets one (hashes, weights, the operators
and files its artifact would use) and run by one of zoo's runtimes. Images are decoded with
a bound on their pixels and fed as uint8 ``[B, H, W, C]`` to the artifact, whose own
preprocessing (inside the export) resizes and normalises them, so the answer is the
artifact's, not a re-implementation of its preprocessing; images of one size go in one
batch. A sequence model's inputs are text lines, turned into ids by the vocabulary the
export carries. The outputs become the top-k classes, named by the export's labels.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.data.tokens import SPECIALS, pad_ids
from zoo.deploy.loading import DEFAULT_RUNTIMES, open_export
from zoo.errors import UsageError, ZooError, one_line
from zoo.export.manifest import Manifest, read_manifest
from zoo.runtimes import Runtime, Session

__all__ = [
    "DEFAULT_RUNTIMES",
    "MAX_IMAGE_PIXELS",
    "MAX_TEXT_BYTES",
    "InputError",
    "Prediction",
    "Predictor",
]

#: An image of more pixels is refused before it is decoded (a decompression bomb: a few KB
#: of PNG can declare gigapixels). 64 MP is a large photograph.
MAX_IMAGE_PIXELS = 64 * 2**20
#: A text input file larger than this is refused unread.
MAX_TEXT_BYTES = 16 * 2**20


class InputError(ZooError):
    """An input file cannot be fed to the export: not an image, an empty file, a colour
    image for a grey model, too many pixels, text outside the vocabulary..."""


@dataclass(frozen=True)
class Prediction:
    """The top classes of one input, best first: (label, index, score) each."""

    #: The file (and, for text, the line) it answers.
    input: str
    classes: tuple[tuple[str, int, float], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "predictions": [
                {"label": label, "index": index, "score": score}
                for label, index, score in self.classes
            ],
        }


class Predictor:
    """An export loaded in one runtime, ready to answer batches of files."""

    def __init__(
        self,
        directory: Path,
        runtime: str | None = None,
        *,
        device: str = "cpu",
        threads: int = 1,
    ) -> None:
        self.directory = directory
        self.manifest = read_manifest(directory)
        self._check_classifies(self.manifest)
        entry = self.manifest.inputs[0]
        self.tokens = entry.dtype in ("int64", "int32")
        self.channels = int(entry.shape[-1]) if not self.tokens else 0
        labels = self.manifest.labels
        self.labels = labels.classes if labels is not None else None
        if self.tokens:
            if labels is None or labels.vocabulary is None:
                raise UsageError(
                    f"{directory}: the export carries no vocabulary, so text cannot be turned "
                    "into its ids: export it again from a checkpoint trained with this zoo"
                )
            specials = len(SPECIALS)  # <pad> and <unk> are no characters a text can hold
            self.index = {t: i for i, t in enumerate(labels.vocabulary) if i >= specials}
        elif self.manifest.raw:
            raise UsageError(
                f"{directory} is a raw export (the bare model, no preprocessing inside): "
                f"export {self.manifest.model} again without --raw to predict on image files"
            )
        elif entry.dtype != "uint8" or len(entry.shape) != 3:
            raise UsageError(
                f"{self.manifest.model}'s export takes {entry.dtype} {list(entry.shape)} "
                "inputs: zoo predict reads image files and text lines"
            )
        #: A sequence model of fixed length (its time axis is not dynamic): every input is
        #: padded to it, and a longer text is refused.
        self.length = int(entry.shape[0]) if self.tokens and 1 not in entry.dynamic_axes else None
        # Only now, with an export zoo can use, is any of it checked in full and loaded.
        self.export = open_export(
            directory, runtime, device=device, threads=threads, manifest=self.manifest
        )
        self.runtime: Runtime = self.export.runtime
        self.session: Session = self.export.session

    @staticmethod
    def _check_classifies(manifest: Manifest) -> None:
        kinds = {"none": 1, "softmax": 1, "topk": 2}
        if len(manifest.outputs) != kinds.get(manifest.postprocess, 0) or (
            manifest.postprocess != "topk" and len(manifest.outputs[0].shape) != 1
        ):
            raise UsageError(
                f"{manifest.model}'s export does not classify (its outputs are "
                f"{', '.join(o.name for o in manifest.outputs)}): zoo predict names classes"
            )

    def predict(
        self, paths: Sequence[Path], topk: int = 5, batch_size: int = 32
    ) -> Iterator[Prediction]:
        """The predictions of every input (each text line for a sequence model), in order;
        InputError naming the file for the first input that cannot be fed."""
        items = self._texts(paths) if self.tokens else self._images(paths)
        classes = len(self.labels) if self.labels is not None else self._classes()
        k = max(1, min(topk, classes))
        while window := list(itertools.islice(items, batch_size)):  # decoded a batch at a time
            yield from self._answer(window, k)

    def _classes(self) -> int:
        post = self.manifest
        return int(post.top_k or 0) if post.postprocess == "topk" else post.outputs[0].shape[0]

    def _answer(self, items: list[tuple[str, np.ndarray]], k: int) -> Iterator[Prediction]:
        """One batch per image size (the artifact resizes, a batch has one size); texts in
        one batch, padded with 0 on the right (the models read each up to its length)."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (_, x) in enumerate(items):
            groups.setdefault(() if self.tokens else x.shape, []).append(i)
        answers: dict[int, Prediction] = {}
        for indices in groups.values():
            arrays = [items[i][1] for i in indices]
            batch = (
                pad_ids([torch.from_numpy(a) for a in arrays], self.length)
                if self.tokens
                else torch.from_numpy(np.stack(arrays))
            )
            scores, best = self._top(self.session.outputs(batch), k)
            for row, i in enumerate(indices):
                answers[i] = Prediction(
                    items[i][0],
                    tuple(
                        (self._label(int(c)), int(c), float(s))
                        for c, s in zip(best[row], scores[row], strict=True)
                    ),
                )
        for i in range(len(items)):
            yield answers[i]

    def _top(self, outputs: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, class indices), each ``[B, k]`` best first: the artifact's own top-k, or
        the top of its probabilities (a softmax of its logits where it has none)."""
        if self.manifest.postprocess == "topk":
            return outputs[0][:, :k].astype(np.float64), outputs[1][:, :k].astype(np.int64)
        values = outputs[0].astype(np.float64)
        if self.manifest.postprocess == "none":
            shifted = np.exp(values - values.max(axis=1, keepdims=True))
            values = shifted / shifted.sum(axis=1, keepdims=True)
        best = np.argsort(-values, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(values, best, axis=1), best

    def _label(self, index: int) -> str:
        if self.labels is not None and 0 <= index < len(self.labels):
            return self.labels[index]
        return str(index)

    # -- inputs -------------------------------------------------------------------------------

    def _images(self, paths: Sequence[Path]) -> Iterator[tuple[str, np.ndarray]]:
        for path in paths:
            yield str(path), self._image(path)

    def _image(self, path: Path) -> np.ndarray:
        """``path`` decoded as uint8 ``[H, W, C]`` with the model's channels."""
        from PIL import Image, ImageOps, UnidentifiedImageError

        if not path.is_file():
            raise InputError(f"{path}: not a file")
        if path.stat().st_size == 0:
            raise InputError(f"{path}: an empty file, not an image")
        try:
            with warnings.catch_warnings():  # zoo's own bound below says it, in one line
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(path)
            with image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:  # before decoding a single pixel
                    raise InputError(
                        f"{path}: {width}x{height} pixels, over the {MAX_IMAGE_PIXELS:,} zoo "
                        "decodes (a decompression bomb?)"
                    )
                image.load()
                return self._shaped(path, ImageOps.exif_transpose(image))
        except Image.DecompressionBombError:  # PIL's own bound, far above zoo's: zoo's words
            raise InputError(
                f"{path}: over the {MAX_IMAGE_PIXELS:,} pixels zoo decodes (a decompression bomb?)"
            ) from None
        except UnidentifiedImageError as exc:
            raise InputError(f"{path}: not an image zoo can read ({one_line(exc)})") from None
        except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
            raise InputError(f"{path}: a damaged image ({one_line(exc)})") from None

    def _shaped(self, path: Path, image: Any) -> np.ndarray:
        """The image in the model's channels: a colour image for a grey model is refused
        unless its channels are equal (grey saved as RGB); alpha is dropped."""
        if image.mode.startswith(("I", "F")):  # convert() would clamp, not scale, them to 8 bits
            raise InputError(
                f"{path}: a {image.mode} image (16-bit or float pixels); zoo predict reads 8-bit "
                "images: convert it to 8 bits first"
            )
        if self.channels == 3:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
        if self.channels != 1:
            raise InputError(f"{path}: the model takes {self.channels} channels, not an image")
        if image.mode not in ("L", "LA", "1"):
            pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
            if np.abs(pixels - pixels[..., :1]).max() > 0:
                raise InputError(
                    f"{path}: a colour image ({image.mode}), and {self.manifest.model} takes "
                    "grey images (one channel): convert it to greyscale first"
                )
        return np.asarray(image.convert("L"), dtype=np.uint8)[..., None]

    def _texts(self, paths: Sequence[Path]) -> Iterator[tuple[str, np.ndarray]]:
        for path in paths:
            if not path.is_file():
                raise InputError(f"{path}: not a file")
            size = path.stat().st_size
            if size > MAX_TEXT_BYTES:
                raise InputError(f"{path}: {size:,} bytes, over the {MAX_TEXT_BYTES:,} zoo reads")
            try:
                lines = path.read_text(encoding="utf-8-sig").split("\n")  # as editors number them
            except UnicodeDecodeError as exc:
                raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from None
            texts = [(n, line.strip()) for n, line in enumerate(lines, 1) if line.strip()]
            if not texts:
                raise InputError(f"{path}: no text in it (one input per line)")
            for n, text in texts:
                yield f"{path}:{n}", self._encode(path, n, text)

    def _encode(self, path: Path, line: int, text: str) -> np.ndarray:
        import unicodedata

        text = unicodedata.normalize("NFC", text)  # as the dataset was read
        unknown = sorted({ch for ch in text if ch not in self.index})
        if unknown:
            raise InputError(
                f"{path}:{line}: {''.join(unknown)!r} outside the model's vocabulary of "
                f"{len(self.index)} characters (from {self.manifest.labels.dataset})"  # type: ignore[union-attr]
            )
        if self.length is not None and len(text) > self.length:
            raise InputError(
                f"{path}:{line}: {len(text)} characters, over the model's fixed length of "
                f"{self.length}"
            )
        return np.array([self.index[ch] for ch in text], dtype=np.int64)

    def close(self) -> None:
        self.session.close()
