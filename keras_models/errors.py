"""Typed errors raised by keras-models. Every message names the file, tensor, key or argument."""


class KerasModelsError(Exception):
    """Base class of all keras-models errors."""


class PresetError(KerasModelsError, ValueError):
    """A preset handle cannot be resolved, or a preset folder lacks a required file."""


class ConfigError(KerasModelsError, ValueError):
    """config.json (or another config file) is malformed or describes something unsupported."""


class UnknownArchitectureError(ConfigError):
    """config.json names a model_type / architecture that no registered family handles."""


class CheckpointError(KerasModelsError, ValueError):
    """A weights file is corrupted, truncated, unsafe (pickle) or does not match the model."""


class WeightMismatchError(CheckpointError):
    """Tensors are missing, unexpected, or of the wrong shape for the model being loaded."""


class TokenizerFileError(ConfigError):
    """A tokenizer file (tokenizer.json, tokenizer_config.json, vocab.txt, vocab.json/merges.txt,
    SentencePiece .model) is malformed, corrupted or inconsistent; the message names the file."""


class InputError(KerasModelsError, ValueError):
    """Data given to a model (predict / evaluate / fit / generate) does not fit it: token ids out of
    the vocabulary or not integers, sequences longer than the model's positions, empty batches,
    missing samples. The message names the input and what the model accepts."""


class ChatTemplateError(InputError):
    """A chat template failed to compile or render, or a conversation is malformed. Raised as a
    subclass that is also jinja2's ``TemplateError`` (or ``TypeError`` for a message of the wrong
    type), so code written against Transformers' errors keeps working."""
