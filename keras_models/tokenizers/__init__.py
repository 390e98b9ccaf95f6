"""Tokenizers: Transformers' tokenizer API over Rust `tokenizers` (no keras / TF / torch / JAX import)."""

from keras_models.tokenizers.tokenizer import Tokenizer

__all__ = ["Tokenizer"]
