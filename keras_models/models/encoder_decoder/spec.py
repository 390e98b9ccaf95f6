"""Spec helpers shared by the encoder-decoder families (BART-likes, T5, ProphetNet)."""

import dataclasses
import typing

from keras_models.spec import REQUIRED


def keep_explicit_nulls(cls, config, values):
    """An explicit ``null`` in config.json for an optional field whose Transformers default is not
    None stays None (``"forced_eos_token_id": null`` switches off BART's default 2); Spec.from_hf
    treats null as absent. For use in ``adjust_from_hf``."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f.metadata.get("hf")
        if not isinstance(key, str) or f.name in values or key not in config or config[key] is not None:
            continue
        if f.default is None or f.default is REQUIRED:
            continue
        if type(None) in typing.get_args(hints.get(f.name)):
            values[f.name] = None
    return values


__all__ = ["keep_explicit_nulls"]
