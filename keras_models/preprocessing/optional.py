"""Optional packages that some preprocessors call (MIDI, beat tracking, phonemes), imported lazily.

``require(module, package, extra, what)`` imports ``module`` or raises :class:`MissingPackageError`
(an ``ImportError`` that is also our ``InputError``) naming the pip package and the keras-models
extra that installs it.
"""

from __future__ import annotations

import importlib

from keras_models.errors import InputError


class MissingPackageError(InputError, ImportError):
    """An optional package a preprocessor needs is not installed; the message names the pip package
    and the ``keras-models[extra]`` that brings it."""


def require(module: str, package: str, extra: str, what: str):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingPackageError(
            f"{what} needs the optional '{package}' package, which is not installed: "
            f"pip install {package} (or keras-models[{extra}])") from e


_ESPEAK_READY = False


def phonemizer_with_espeak(what: str):
    """The `phonemizer` module, its espeak backend pointed at the eSpeak NG library that
    `espeakng-loader` bundles when no library was chosen (``EspeakWrapper.set_library`` or
    ``PHONEMIZER_ESPEAK_LIBRARY``) and the system has none."""
    global _ESPEAK_READY
    phonemizer = require("phonemizer", "phonemizer", "phonemes", what)
    if _ESPEAK_READY:
        return phonemizer
    import os

    from phonemizer.backend.espeak.wrapper import EspeakWrapper

    if not EspeakWrapper._ESPEAK_LIBRARY and "PHONEMIZER_ESPEAK_LIBRARY" not in os.environ:
        try:
            import espeakng_loader
        except ImportError:
            espeakng_loader = None
        if espeakng_loader is not None:
            EspeakWrapper.set_library(espeakng_loader.get_library_path())
            if not EspeakWrapper._ESPEAK_DATA_PATH and "PHONEMIZER_ESPEAK_DATA_PATH" not in os.environ:
                EspeakWrapper.set_data_path(espeakng_loader.get_data_path())
        else:
            try:
                EspeakWrapper.library()
            except RuntimeError as e:
                raise MissingPackageError(
                    f"{what} needs the eSpeak NG library for phonemizer, and none was found: pip install "
                    "espeakng-loader (or keras-models[phonemes]), or install espeak-ng on the system") from e
    _ESPEAK_READY = True
    return phonemizer


__all__ = ["MissingPackageError", "require", "phonemizer_with_espeak"]
