"""``names``: surname -> language, from the surname lists that faker ships per locale.

The offline stand-in for the PyTorch names tutorial (its character-level RNN name classifier). Only
Latin-script locales are used, so the script alone never gives the language away.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
from collections.abc import Iterable
from typing import Any, Final

from zoo.data.tokens import clean_texts, text_splits
from zoo.datasets import DataSplits, LoadRequest
from zoo.errors import DataError

__all__ = ["LANGUAGES", "MAX_PER_LANGUAGE", "MIN_PER_LANGUAGE", "load_names", "read_names"]

#: language -> the ``(locale, Provider attribute)`` pairs its surnames come from.
#: pl_PL keeps its surnames outside ``last_names`` (which it inherits: just "Doe").
LANGUAGES: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "Czech": (("cs_CZ", "last_names"),),
    "Dutch": (("nl_NL", "last_names"),),
    "English": (("en_US", "last_names"),),
    "Finnish": (("fi_FI", "last_names"),),
    "French": (("fr_FR", "last_names"),),
    "German": (("de_DE", "last_names"),),
    "Italian": (("it_IT", "last_names"),),
    "Polish": (("pl_PL", "unisex_last_names"), ("pl_PL", "male_last_names")),
    "Portuguese": (("pt_BR", "last_names"), ("pt_PT", "last_names")),
    "Spanish": (("es_ES", "last_names"),),
    "Swedish": (("sv_SE", "last_names"),),
    "Turkish": (("tr_TR", "last_names"),),
}
#: Languages with fewer (unambiguous) surnames than this are left out.
MIN_PER_LANGUAGE: Final = 40
#: Cap per language, so the largest lists (Polish has ~3,900) do not swamp the rest.
MAX_PER_LANGUAGE: Final = 500
#: Fewer languages than this and faker's lists have changed too much to make a fair task.
MIN_LANGUAGES: Final = 8

_SOURCE: Final = "faker/providers/person/<locale>/__init__.py: Provider surname lists"


def _surnames(locale: str, attribute: str) -> list[str]:
    """Surnames of a faker locale: a tuple/list, or an OrderedDict of name -> weight."""
    try:
        module = importlib.import_module(f"faker.providers.person.{locale}")
        base = importlib.import_module("faker.providers.person")
    except ImportError:
        return []
    value: Any = getattr(getattr(module, "Provider", None), attribute, None)
    if value is None or value is getattr(base.Provider, "last_names", None):
        return []  # missing, or the base provider's placeholder
    return [str(name) for name in value]  # a mapping iterates over its names


def _keep(names: Iterable[str], limit: int) -> list[str]:
    # A content hash picks the same names on every machine and every run, whatever the seed.
    ranked = sorted(names, key=lambda n: hashlib.sha1(n.encode("utf-8")).hexdigest())
    return sorted(ranked[:limit])


@functools.cache
def read_names() -> dict[str, tuple[str, ...]]:
    """language -> its unambiguous surnames (at most ``MAX_PER_LANGUAGE``), sorted.

    Cached: faker's lists do not change while a process runs.
    """
    if importlib.util.find_spec("faker") is None:
        raise DataError("the names dataset is built from faker's surname lists: pip install faker")
    raw = {
        language: [n for locale, attr in sources for n in _surnames(locale, attr)]
        for language, sources in LANGUAGES.items()
    }
    cleaned = clean_texts(raw)
    kept = {
        language: tuple(_keep(names, MAX_PER_LANGUAGE))
        for language, names in cleaned.items()
        if len(names) >= MIN_PER_LANGUAGE
    }
    if len(kept) < MIN_LANGUAGES:
        raise DataError(
            f"faker's surname lists give only {len(kept)} usable languages "
            f"({', '.join(kept) or 'none'}), {MIN_LANGUAGES} needed; "
            "install a recent faker: pip install -U faker"
        )
    return kept


def load_names(request: LoadRequest) -> DataSplits:
    """Surnames as character ids, labelled with their language."""
    names = read_names()
    description = (
        f"{sum(map(len, names.values())):,} surnames in {len(names)} languages, from faker's "
        "locale lists (names found in two languages dropped); characters as tokens"
    )
    return text_splits(names, request, description=description, source=_SOURCE)
