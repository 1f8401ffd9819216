"""check_compatible: which datasets can feed which model inputs, and what the errors advise."""

from __future__ import annotations

import dataclasses

import pytest

import zoo
from zoo.data import load_dataset
from zoo.datasets import DatasetInfo, check_compatible
from zoo.errors import DataMismatchError
from zoo.registry import InputSpec

GREY = DatasetInfo("grey", "image", 10, tuple("0123456789"), "d", "s", channels=1)
COLOUR = dataclasses.replace(GREY, name="colour", channels=3)
TOKENS = DatasetInfo("words", "tokens", 3, ("a", "b", "c"), "d", "s", vocab_size=9, max_length=20)


def fits(info: DatasetInfo, spec: InputSpec) -> bool:
    """Whether ``check_compatible`` lets the dataset feed the input (it raises
    DataMismatchError where not)."""
    try:
        check_compatible(info, spec)
    except DataMismatchError:
        return False
    return True


@pytest.mark.parametrize("model", ["lenet", "vae", "resnet18", "googlenet", "vgg_head"])
def test_grey_images_fit_every_image_model(model: str) -> None:
    """One channel fits one-channel models, and three-channel ones (the channel repeats)."""
    assert fits(GREY, zoo.get_spec(model).input)
    assert not fits(TOKENS, zoo.get_spec(model).input)


def test_colour_images_for_a_one_channel_model_suggest_in_channels(
    lenet_input: InputSpec,
) -> None:
    assert fits(COLOUR, zoo.get_spec("vae").input)
    with pytest.raises(DataMismatchError) as caught:
        check_compatible(COLOUR, lenet_input)
    message = str(caught.value)
    assert "takes 1 channel" in message
    assert "--arg in_channels=3" in message


def test_images_for_a_token_model_name_both_and_suggest_names(lstm_input: InputSpec) -> None:
    with pytest.raises(DataMismatchError) as caught:
        check_compatible(GREY, lstm_input)
    message = str(caught.value)
    assert "'grey' holds images" in message
    assert "int64" in message
    assert "--data names" in message


def test_tokens_for_an_image_model_name_both_and_suggest_mnist5k(lenet_input: InputSpec) -> None:
    with pytest.raises(DataMismatchError) as caught:
        check_compatible(TOKENS, lenet_input)
    message = str(caught.value)
    assert "token ids" in message
    assert "float32" in message
    assert "--data mnist5k" in message


def test_other_channel_counts_and_shapes_mismatch() -> None:
    with pytest.raises(DataMismatchError, match="64-channel"):
        check_compatible(GREY, zoo.get_spec("bam").input)
    with pytest.raises(DataMismatchError, match="sequence model"):
        check_compatible(TOKENS, InputSpec((4, 5), dtype="int64"))
    with pytest.raises(DataMismatchError, match="no dataset loader"):
        check_compatible(GREY, InputSpec((4,)))


def test_tokens_fit_sequence_models_regardless_of_vocabulary(lstm_input: InputSpec) -> None:
    assert fits(TOKENS, lstm_input)  # max_length 20 > 16 is fine: time is dynamic
    assert fits(TOKENS, zoo.get_spec("gru").input)
    assert fits(dataclasses.replace(TOKENS, vocab_size=10**6), lstm_input)
    fixed = InputSpec((16,), dtype="int64", value_range=(1, 5))
    with pytest.raises(DataMismatchError, match="exactly 16"):
        check_compatible(TOKENS, fixed)


def test_unknown_kinds_are_left_to_their_plugin(lenet_input: InputSpec) -> None:
    """zoo checks images and tokens; a kind a plugin added fits any input as far as zoo
    can tell (its loader checks), even one that images would not fit."""
    table = dataclasses.replace(GREY, kind="table", channels=None)
    assert fits(table, lenet_input) and fits(table, InputSpec((4,)))
    assert not fits(GREY, InputSpec((4,)))


def test_load_dataset_refuses_mismatches(lstm_input: InputSpec, lenet_input: InputSpec) -> None:
    with pytest.raises(DataMismatchError, match="--data names"):
        load_dataset("mnist5k", lstm_input)
    with pytest.raises(DataMismatchError, match="--data mnist5k"):
        load_dataset("names", lenet_input)
    with pytest.raises(DataMismatchError, match="in_channels=3"):
        load_dataset("cifar10", lenet_input, data_dir="/nonexistent", download=False)
