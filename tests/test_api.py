import types

import zoo


def test_all_is_sorted_and_complete() -> None:
    assert zoo.__all__ == sorted(zoo.__all__)
    public = {
        name
        for name, value in vars(zoo).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public | {"__version__"} == set(zoo.__all__)


def test_every_error_derives_from_zoo_error() -> None:
    errors = [getattr(zoo, n) for n in zoo.__all__ if n.endswith("Error")]
    assert all(issubclass(e, zoo.ZooError) for e in errors)
    assert issubclass(zoo.UnknownModelError, KeyError)
    assert issubclass(zoo.InvalidArgumentsError, TypeError)
