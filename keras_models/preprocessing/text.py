"""Host-side (numpy) text preprocessors that tasks use in fit / predict / evaluate.

Contract (see keras_models/tasks/raw_data.py): ``preprocessor(x, y=None)`` takes a list of raw
samples. Supervised preprocessors return the feature dict when ``y`` is None and
``(features, labels[, sample_weight])`` otherwise. Self-supervised ones (masked / causal LM) build
their labels from ``x`` and always return ``(features, labels, sample_weight)``; use
``preprocessor.features(x)`` for inference inputs. Labels that must be ignored by the loss are
given sample weight 0 (and a valid class id), so plain Keras losses work on every backend.

Nothing here imports keras, TensorFlow, torch or JAX.
"""

from __future__ import annotations

import numpy as np

from keras_models.preprocessing.text_lm import CausalLMPreprocessor, MaskedLMPreprocessor  # noqa: F401
from keras_models.preprocessing.text_base import TextPreprocessor, split_pairs

__all__ = [
    "TextPreprocessor",
    "TextClassifierPreprocessor",
    "TokenClassifierPreprocessor",
    "MaskedLMPreprocessor",
    "CausalLMPreprocessor",
    "Seq2SeqPreprocessor",
    "align_word_labels",
]


class TextClassifierPreprocessor(TextPreprocessor):
    """Single texts or text pairs -> ``input_ids``/``attention_mask``(/``token_type_ids``).

    ``x`` may be a list of strings, a list of ``(text, text_pair)`` tuples, or a tuple of two
    equal-length lists. ``y`` (class ids or floats for regression) is returned as a numpy array.
    """

    def features(self, x):
        texts, pairs = split_pairs(x)
        return self.tokenize(texts, pairs)

    def __call__(self, x, y=None, sample_weight=None):
        features = self.features(x)
        if y is None:
            return features
        y = np.asarray(y)
        if y.dtype.kind in "iub":
            y = y.astype(np.int32)
        elif y.dtype.kind == "f":
            y = y.astype(np.float32)
        if sample_weight is not None:
            return features, y, np.asarray(sample_weight, dtype=np.float32)
        return features, y


def align_word_labels(word_ids, word_labels, label_all_tokens=False, ignore_index=-100):
    """Labels per token from labels per word: the first piece of each word gets the word's label,
    the others ``ignore_index`` (or the label too with ``label_all_tokens``); special tokens and
    padding get ``ignore_index``."""
    out, previous = [], None
    for word in word_ids:
        if word is None:
            out.append(ignore_index)
        elif word != previous:
            out.append(word_labels[word])
        else:
            out.append(word_labels[word] if label_all_tokens else ignore_index)
        previous = word
    return out


class TokenClassifierPreprocessor(TextPreprocessor):
    """Words (list of str per sample, or a str split on whitespace) with one label per word.

    Returns ``(features, labels, sample_weight)``: labels per word piece, with weight 0 on special
    tokens, padding and (unless ``label_all_tokens``) non-first pieces. ``label_to_id`` maps string
    labels to ids.
    """

    def __init__(self, tokenizer, sequence_length=None, label_all_tokens=False, label_to_id=None, **kwargs):
        super().__init__(tokenizer, sequence_length=sequence_length, **kwargs)
        self.label_all_tokens = label_all_tokens
        self.label_to_id = dict(label_to_id) if label_to_id else None

    @staticmethod
    def _words(x):
        """A batch: each sample is a list of words, or a str split on whitespace."""
        if isinstance(x, str):
            x = [x]
        return [s.split() if isinstance(s, str) else list(s) for s in x]

    def encode_words(self, x):
        """Encodings (with ``word_ids``) of a batch of word lists."""
        words = self._words(x)
        return words, self.encode(words, is_split_into_words=True)

    def features(self, x):
        _, encodings = self.encode_words(x)
        return self.tokenizer_outputs(encodings)

    def __call__(self, x, y=None):
        words, encodings = self.encode_words(x)
        features = self.tokenizer_outputs(encodings)
        if y is None:
            return features
        labels, weights = [], []
        for i, enc in enumerate(encodings):
            word_labels = list(y[i])
            if self.label_to_id is not None:
                word_labels = [self.label_to_id[lab] if isinstance(lab, str) else lab for lab in word_labels]
            if len(word_labels) != len(words[i]):
                raise ValueError(
                    f"sample {i} has {len(words[i])} words but {len(word_labels)} labels: one label per word"
                )
            row = align_word_labels(enc.word_ids, word_labels, self.label_all_tokens)
            labels.append([0 if lab == -100 else lab for lab in row])
            weights.append([0.0 if lab == -100 else 1.0 for lab in row])
        return features, np.asarray(labels, dtype=np.int32), np.asarray(weights, dtype=np.float32)


class Seq2SeqPreprocessor(TextPreprocessor):
    """Source texts (``x``) and target texts (``y``) for encoder-decoder training.

    Features: ``input_ids``, ``attention_mask`` (source), ``decoder_input_ids`` (targets shifted
    right, starting with ``decoder_start_token_id``), ``decoder_attention_mask``. Labels are the
    target ids, weighted by the target mask. ``decoder_start_token_id`` defaults to the pad token
    (T5's convention); BART-style models pass their config's value.
    """

    def __init__(
        self,
        tokenizer,
        sequence_length=None,
        target_sequence_length=None,
        decoder_start_token_id=None,
        **kwargs,
    ):
        super().__init__(tokenizer, sequence_length=sequence_length, **kwargs)
        self.target_sequence_length = target_sequence_length or self.sequence_length
        if decoder_start_token_id is None:
            decoder_start_token_id = tokenizer.pad_token_id
        if decoder_start_token_id is None:
            raise ValueError("decoder_start_token_id is required: the tokenizer has no pad token")
        self.decoder_start_token_id = int(decoder_start_token_id)

    def features(self, x):
        return self.tokenize(list(x) if not isinstance(x, str) else [x])

    def targets(self, y):
        if isinstance(y, str):
            y = [y]
        enc = self.encode(list(y), sequence_length=self.target_sequence_length, padding_side="right")
        ids = np.asarray([e.ids for e in enc], dtype=np.int32)
        mask = np.asarray([e.attention_mask for e in enc], dtype=np.int32)
        return ids, mask

    def __call__(self, x, y=None):
        features = self.features(x)
        if y is None:
            return features
        ids, mask = self.targets(y)
        start = np.full((ids.shape[0], 1), self.decoder_start_token_id, dtype=np.int32)
        decoder_ids = np.concatenate([start, ids[:, :-1]], axis=1)
        pad = self.tokenizer.pad_token_id
        decoder_ids = np.where(np.concatenate([np.ones_like(start), mask[:, :-1]], axis=1) == 1, decoder_ids, pad)
        features["decoder_input_ids"] = decoder_ids.astype(np.int32)
        features["decoder_attention_mask"] = np.concatenate([np.ones_like(start), mask[:, :-1]], axis=1)
        return features, ids, mask.astype(np.float32)
