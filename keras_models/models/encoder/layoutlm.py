"""LayoutLM (model_type ``layoutlm``): BERT plus 2D positions of each token's box on the page.

The extra input ``bbox`` (batch, seq, 4) holds (x0, y0, x1, y1) in 0..1000 (page coordinates
normalised to 1000); the embedding adds x0 and x1 (one ``x_position_embeddings`` table), y0 and y1
(``y_position_embeddings``), the height y1 - y0 and the width x1 - x0 (their own tables) to BERT's
sum, before its LayerNorm. Without ``bbox`` every box is [0, 0, 0, 0], as in Transformers.

:class:`LayoutLMPreprocessor` turns words with one box each into ``input_ids`` plus ``bbox``: each
word's box repeated on its word pieces, [0, 0, 0, 0] on [CLS] and padding, [1000, 1000, 1000, 1000]
on [SEP] (the boxes Transformers' LayoutLM examples and LayoutLMv2's tokenizer use).
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import InputError
from keras_models.models.encoder.backbone import EncoderBackbone, EncoderSpec
from keras_models.models.encoder.tasks import family_task
from keras_models.models.registry import register_backbone
from keras_models.preprocessing.text import TokenClassifierPreprocessor, align_word_labels
from keras_models.spec import dim
from keras_models.tasks.embedder import TextEmbedder
from keras_models.tasks.text import MaskedLM, QuestionAnswerer, TextClassifier, TokenClassifier

BOX_MAX = 1000  # LayoutLM's normalised page size
CLS_BOX, SEP_BOX, PAD_BOX = (0, 0, 0, 0), (BOX_MAX,) * 4, (0, 0, 0, 0)


def check_boxes(boxes, limit, what="bbox"):
    """Raise InputError unless ``boxes`` (host array, last axis 4) are integers in [0, limit]
    with x0 <= x1 and y0 <= y1 (the height and width index tables too)."""
    arr = np.asarray(boxes)
    if arr.ndim < 1 or arr.shape[-1] != 4:
        raise InputError(f"{what} must hold boxes of 4 numbers (x0, y0, x1, y1), got shape {arr.shape}")
    if arr.size == 0:
        return
    if arr.dtype.kind not in "iu":
        raise InputError(f"{what} must be integer coordinates in 0..{limit} (normalise page coordinates to "
                         f"0..1000), got dtype {arr.dtype}")
    bad = (arr < 0) | (arr > limit)
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(f"{what}{list(at)} = {int(arr[at])} is outside 0..{limit} (coordinates are "
                         "normalised to 0..1000)")
    flipped = (arr[..., 2] < arr[..., 0]) | (arr[..., 3] < arr[..., 1])
    if flipped.any():
        at = tuple(int(i) for i in np.argwhere(flipped)[0])
        raise InputError(f"{what}{list(at)} = {arr[at].tolist()}: expected x0 <= x1 and y0 <= y1")


@dataclass(frozen=True, kw_only=True)
class LayoutLMSpec(EncoderSpec):
    """LayoutLMConfig: BERT's keys plus ``max_2d_position_embeddings``."""

    max_2d_position_embeddings: int = dim("max_2d_position_embeddings", 1024)

    def dummy_inputs(self):
        inputs = super().dummy_inputs()
        inputs["bbox"] = np.zeros(inputs["input_ids"].shape + (4,), "int32")
        return inputs


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("layoutlm")
class LayoutLMBackbone(EncoderBackbone):
    """Inputs: ``input_ids``, ``bbox`` (batch, seq, 4), ``attention_mask``, ``token_type_ids``."""

    spec_cls = LayoutLMSpec
    base_model_prefix = "layoutlm"
    hf_architecture = "LayoutLMModel"
    hf_model_type = "layoutlm"
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        self.box_embeddings = {
            axis: keras.layers.Embedding(self.max_2d_position_embeddings, self.embedding_dim,
                                         embeddings_initializer=init, name=f"{axis}_position_embedding",
                                         dtype=self.dtype_policy)
            for axis in ("x", "y", "h", "w")
        }

    def extra_embeddings(self, x, inputs, training=False):
        bbox = inputs.get("bbox")
        if bbox is None:  # every box [0, 0, 0, 0]
            x0 = y0 = x1 = y1 = ops.zeros_like(ops.cast(inputs["input_ids"], "int32"))
        else:
            bbox = ops.cast(bbox, "int32")
            x0, y0, x1, y1 = bbox[..., 0], bbox[..., 1], bbox[..., 2], bbox[..., 3]
        e = self.box_embeddings
        x = x + e["x"](x0) + e["y"](y0) + e["x"](x1) + e["y"](y1)
        return x + e["h"](y1 - y0) + e["w"](x1 - x0)

    def check_host_inputs(self, inputs, where="call"):
        """``bbox`` given as a host array: integer boxes inside the 2D position tables."""
        if isinstance(inputs, dict) and isinstance(inputs.get("bbox"), (np.ndarray, list, tuple)):
            check_boxes(inputs["bbox"], min(BOX_MAX, self.max_2d_position_embeddings - 1), f"{where}: bbox")

    def __call__(self, inputs, *args, **kwargs):
        self.check_host_inputs(inputs)
        return super().__call__(inputs, *args, **kwargs)

    def weight_rules(self):
        from keras_models.presets.weight_map import Rule

        return super().weight_rules() + [
            Rule(f"embeddings.{axis}_position_embeddings.weight", layer.embeddings)
            for axis, layer in self.box_embeddings.items()
        ]


class LayoutLMPreprocessor(TokenClassifierPreprocessor):
    """Words with one box each -> ``input_ids``, ``attention_mask``, ``token_type_ids`` and ``bbox``.

    A sample is ``{"words": [...], "boxes": [[x0, y0, x1, y1], ...]}`` or a ``(words, boxes)``
    pair (a batch: a list of them, or one dict of two lists). Boxes are integers in 0..1000. ``y``:
    one label per word (token classification: labels on first word pieces, weight 0 elsewhere) or
    one class id per sample (document classification)."""

    @staticmethod
    def split_words_boxes(x):
        if isinstance(x, dict) and "words" in x and x["words"] and not isinstance(x["words"][0], str):
            x = list(zip(x["words"], x.get("boxes", [None] * len(x["words"]))))
        if isinstance(x, (dict, tuple)) and not isinstance(x, list):
            x = [x]
        words, boxes = [], []
        for i, sample in enumerate(x):
            if isinstance(sample, dict):
                w, b = sample.get("words"), sample.get("boxes")
            elif isinstance(sample, (tuple, list)) and len(sample) == 2:
                w, b = sample
            else:
                raise InputError(f"sample {i}: expected {{'words': [...], 'boxes': [...]}} or (words, boxes)")
            if w is None or b is None:
                raise InputError(f"sample {i}: both 'words' and 'boxes' are needed (one box per word)")
            w = w.split() if isinstance(w, str) else list(w)
            b = np.asarray(b, dtype=np.int64).reshape(-1, 4) if len(b) else np.zeros((0, 4), np.int64)
            if len(w) != len(b):
                raise InputError(f"sample {i}: {len(w)} words but {len(b)} boxes (boxes: one per word)")
            check_boxes(b, BOX_MAX, f"sample {i}: boxes")
            words.append(w)
            boxes.append(b)
        return words, boxes

    def token_boxes(self, encodings, boxes):
        sep = self.tokenizer.sep_token_id
        out = np.zeros((len(encodings), len(encodings[0].ids) if encodings else 0, 4), np.int32)
        for i, enc in enumerate(encodings):
            for t, (word, token) in enumerate(zip(enc.word_ids, enc.ids)):
                if word is not None:
                    out[i, t] = boxes[i][word]
                elif token == sep and enc.attention_mask[t]:
                    out[i, t] = SEP_BOX
        return out

    def _encode(self, x):
        words, boxes = self.split_words_boxes(x)
        encodings = self.encode(words, is_split_into_words=True)
        features = self.tokenizer_outputs(encodings)
        features["bbox"] = self.token_boxes(encodings, boxes)
        return words, encodings, features

    def features(self, x):
        return self._encode(x)[2]

    def __call__(self, x, y=None, sample_weight=None):
        words, encodings, features = self._encode(x)
        if y is None:
            return features
        if all(np.ndim(row) == 0 for row in y):  # one class per document
            return features, np.asarray(y, dtype=np.int32)
        labels, weights = [], []
        for i, enc in enumerate(encodings):
            word_labels = list(y[i])
            if self.label_to_id is not None:
                word_labels = [self.label_to_id[lab] if isinstance(lab, str) else lab for lab in word_labels]
            if len(word_labels) != len(words[i]):
                raise InputError(f"sample {i} has {len(words[i])} words but {len(word_labels)} labels: "
                                 "one label per word")
            row = align_word_labels(enc.word_ids, word_labels, self.label_all_tokens)
            labels.append([0 if lab == -100 else lab for lab in row])
            weights.append([0.0 if lab == -100 else 1.0 for lab in row])
        return features, np.asarray(labels, dtype=np.int32), np.asarray(weights, dtype=np.float32)


def _layout_preprocessor(folder, hf, sequence_length=None, **_):
    from keras_models.tasks.text import _text_preprocessor

    plain = _text_preprocessor(folder, hf, "TextPreprocessor", sequence_length=sequence_length)
    return None if plain is None else LayoutLMPreprocessor(plain.tokenizer, sequence_length=sequence_length)


class _BoxChecks:
    """Task mixin: a host ``bbox`` is checked before Keras converts it."""

    def __call__(self, inputs, *args, **kwargs):
        self.backbone.check_host_inputs(inputs)
        return super().__call__(inputs, *args, **kwargs)


@family_task(LayoutLMBackbone, "MaskedLM", "LayoutLMForMaskedLM")
class LayoutLMMaskedLM(_BoxChecks, MaskedLM):
    pass


@family_task(LayoutLMBackbone, "TextClassifier", "LayoutLMForSequenceClassification")
class LayoutLMTextClassifier(_BoxChecks, TextClassifier):
    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        return _layout_preprocessor(folder, hf, **kw)


@family_task(LayoutLMBackbone, "TokenClassifier", "LayoutLMForTokenClassification")
class LayoutLMTokenClassifier(_BoxChecks, TokenClassifier):
    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        return _layout_preprocessor(folder, hf, **kw)


@family_task(LayoutLMBackbone, "QuestionAnswerer", "LayoutLMForQuestionAnswering")
class LayoutLMQuestionAnswerer(_BoxChecks, QuestionAnswerer):
    pass


@family_task(LayoutLMBackbone, "TextEmbedder", "LayoutLMModel")
class LayoutLMTextEmbedder(_BoxChecks, TextEmbedder):
    pass


__all__ = [
    "LayoutLMBackbone", "LayoutLMPreprocessor", "LayoutLMMaskedLM", "LayoutLMTextClassifier",
    "LayoutLMTokenClassifier", "LayoutLMQuestionAnswerer", "LayoutLMTextEmbedder",
]
