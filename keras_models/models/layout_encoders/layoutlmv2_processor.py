"""LayoutLMv2 / LayoutXLM processor: a page image plus its words and word boxes (the user's own OCR;
Transformers' ``apply_ocr=False``) -> the model's inputs, as Transformers' ``LayoutLMv2Processor``
and ``LayoutXLMProcessor`` (LayoutLMv2ImageProcessor + LayoutLMv2Tokenizer / LayoutXLMTokenizer).

* ``pixel_values``: the image resized (Pillow, the config's filter; 224 x 224 by default) and its
  channels flipped to BGR, values left in 0..255 (no rescaling or normalisation: the model
  normalises with detectron2's pixel mean and std). Channels_last; Transformers calls the same
  array ``image`` and puts the channels first.
* ``input_ids``, ``attention_mask`` (and ``token_type_ids`` for LayoutLMv2's WordPiece tokenizer;
  LayoutXLM's returns none): the words encoded as pre-split words, or ``question`` (split on
  whitespace) and the words as a pair.
* ``bbox``: each word's box on all its pieces; ``cls_token_box`` on [CLS] / ``<s>``,
  ``sep_token_box`` on [SEP] / ``</s>``, ``pad_token_box`` on padding and on the question's
  tokens (tokenizer_config.json's values; defaults [0, 0, 0, 0], [1000, 1000, 1000, 1000],
  [0, 0, 0, 0]).
* ``labels`` (with ``word_labels``): a word's label on its first piece (every piece unless
  ``only_label_first_subword`` is false), ``pad_token_label`` (-100) elsewhere.

Two ways to call it: Transformers' keywords, ``processor(images=..., words=..., boxes=...,
word_labels=..., question=..., padding=..., truncation=..., max_length=...)`` -> a dict of numpy
arrays (labels with -100); or as a task preprocessor in ``fit`` / ``predict``: a list of samples
``{"image", "words", "boxes"[, "question"]}`` (or ``(image, words, boxes)``) with ``y`` one label
per word (or one class per document) -> ``(features, labels, sample_weight)``.
"""

from __future__ import annotations

import json

import numpy as np

from keras_models.errors import InputError, PresetError
from keras_models.models.encoder.layoutlm import BOX_MAX, LayoutLMPreprocessor, check_boxes

DEFAULT_BOXES = {"cls_token_box": [0, 0, 0, 0], "sep_token_box": [BOX_MAX] * 4, "pad_token_box": [0, 0, 0, 0]}
IMAGE_TYPE = "LayoutLMv2ImageProcessor"


class LayoutLMv2Processor(LayoutLMPreprocessor):
    """Page images + words + word boxes -> LayoutLMv2 / LayoutXLM inputs (see the module docstring)."""

    def __init__(self, tokenizer, image_processor=None, sequence_length=None, cls_token_box=(0, 0, 0, 0),
                 sep_token_box=(BOX_MAX,) * 4, pad_token_box=(0, 0, 0, 0), pad_token_label=-100,
                 only_label_first_subword=True, **kwargs):
        super().__init__(tokenizer, sequence_length=sequence_length, **kwargs)
        if image_processor is None:
            image_processor = layoutlmv2_image_processor({})
        self.image_processor = image_processor
        self.special_boxes = {"cls": list(cls_token_box), "sep": list(sep_token_box), "pad": list(pad_token_box)}
        self.pad_token_label = int(pad_token_label)
        self.only_label_first_subword = bool(only_label_first_subword)

    # --- inputs -------------------------------------------------------------------------------
    @staticmethod
    def _batch_words(words, boxes):
        """Transformers' single-or-batch forms -> (list of word lists, list of box arrays, batched)."""
        if words is None or boxes is None:
            raise InputError("LayoutLMv2Processor needs words and boxes (one box per word): OCR is not run here")
        batched = not (isinstance(words, str) or (len(words) and isinstance(words[0], str)) or not len(words))
        words, boxes = (list(words), list(boxes)) if batched else ([words], [boxes])
        if len(words) != len(boxes):
            raise InputError(f"words: {len(words)} samples but boxes: {len(boxes)}")
        return words, boxes, batched

    def _split_samples(self, x):
        """Task-form samples -> (images, word lists, box arrays, questions or None)."""
        if isinstance(x, dict) and "words" in x and x["words"] and not isinstance(x["words"][0], str):
            n = len(x["words"])
            x = [{k: x[k][i] for k in ("image", "words", "boxes", "question") if k in x} for i in range(n)]
        if isinstance(x, (dict, tuple)):
            x = [x]
        images, samples, questions = [], [], []
        for i, sample in enumerate(x):
            if isinstance(sample, dict):
                image, question = sample.get("image"), sample.get("question")
                pair = {"words": sample.get("words"), "boxes": sample.get("boxes")}
            elif isinstance(sample, (tuple, list)) and len(sample) in (3, 4):
                image, pair = sample[0], (sample[1], sample[2])
                question = sample[3] if len(sample) == 4 else None
            else:
                raise InputError(f"sample {i}: expected {{'image': ..., 'words': [...], 'boxes': [...]}} or "
                                 "(image, words, boxes)")
            if image is None:
                raise InputError(f"sample {i}: 'image' is missing (LayoutLMv2's visual tokens need the page image)")
            images.append(image)
            samples.append(pair)
            questions.append(question)
        words, boxes = self.split_words_boxes(samples)
        if any(q is not None for q in questions):
            if any(q is None for q in questions):
                raise InputError("question: give one for every sample of the batch, or none")
        else:
            questions = None
        return images, words, boxes, questions

    # --- encoding -----------------------------------------------------------------------------
    def _encode_all(self, images, words, boxes, questions=None, **call):
        if questions is not None:
            if len(questions) != len(words):
                raise InputError(f"question: {len(questions)} questions for {len(words)} samples")
            encodings = self.encode([str(q).split() for q in questions], words, is_split_into_words=True, **call)
        else:
            encodings = self.encode(words, is_split_into_words=True, **call)
        features = self.tokenizer_outputs(encodings)
        features["bbox"] = self.token_boxes(encodings, boxes, questions is not None)
        pixels = self.image_processor(images)
        features["pixel_values"] = pixels["pixel_values"] if isinstance(pixels, dict) else pixels
        if len(features["pixel_values"]) != len(words):
            raise InputError(f"images: {len(features['pixel_values'])} images for {len(words)} samples of words")
        return encodings, features

    def token_boxes(self, encodings, boxes, pair=False):
        tok = self.tokenizer
        out = np.zeros((len(encodings), len(encodings[0].ids) if encodings else 0, 4), np.int32)
        for i, enc in enumerate(encodings):
            for t, (word, seq, token) in enumerate(zip(enc.word_ids, enc.sequence_ids, enc.ids)):
                if word is not None:
                    out[i, t] = self.special_boxes["pad"] if pair and seq == 0 else boxes[i][word]
                elif token == tok.cls_token_id:
                    out[i, t] = self.special_boxes["cls"]
                elif token == tok.sep_token_id:
                    out[i, t] = self.special_boxes["sep"]
                else:  # padding (and any other special token)
                    out[i, t] = self.special_boxes["pad"]
        return out

    def token_labels(self, encodings, labels, words, pair=False):
        """Per-token labels (``pad_token_label`` where none) from per-word ``labels``."""
        out = []
        for i, enc in enumerate(encodings):
            word_labels = list(labels[i])
            if self.label_to_id is not None:
                word_labels = [self.label_to_id[lab] if isinstance(lab, str) else lab for lab in word_labels]
            if len(word_labels) != len(words[i]):
                raise InputError(f"sample {i} has {len(words[i])} words but {len(word_labels)} labels: one label "
                                 "per word")
            row, previous = [], None
            for word, seq, offset in zip(enc.word_ids, enc.sequence_ids, enc.offsets):
                if word is None or (pair and seq == 0):
                    row.append(self.pad_token_label)
                elif not self.only_label_first_subword or self.label_all_tokens:
                    row.append(int(word_labels[word]))
                elif word != previous and offset[0] == 0:
                    row.append(int(word_labels[word]))
                else:
                    row.append(self.pad_token_label)
                previous = word
            out.append(row)
        return np.asarray(out, dtype=np.int32)

    # --- calls --------------------------------------------------------------------------------
    def features(self, x):
        images, words, boxes, questions = self._split_samples(x)
        return self._encode_all(images, words, boxes, questions)[1]

    def __call__(self, x=None, y=None, sample_weight=None, *, images=None, words=None, boxes=None,
                 word_labels=None, question=None, padding=None, truncation=None, max_length=None):
        if x is None:  # Transformers' keywords
            return self.process(images, words, boxes, word_labels=word_labels, question=question, padding=padding,
                                truncation=truncation, max_length=max_length)
        images, words, boxes, questions = self._split_samples(x)
        encodings, features = self._encode_all(images, words, boxes, questions)
        if y is None:
            return features
        if all(np.ndim(row) == 0 for row in y):  # one class per document
            return features, np.asarray(y, dtype=np.int32)
        labels = self.token_labels(encodings, y, words, questions is not None)
        weights = (labels != self.pad_token_label).astype(np.float32)
        return features, np.where(labels == self.pad_token_label, 0, labels).astype(np.int32), weights

    def process(self, images, words, boxes, word_labels=None, question=None, padding=None, truncation=None,
                max_length=None):
        """Transformers' ``processor(images, words, boxes=..., word_labels=...)`` (or
        ``processor(images, question, words, boxes=...)``): a dict of numpy arrays with a batch axis;
        ``padding`` / ``truncation`` / ``max_length`` as in Transformers (default: this
        preprocessor's settings)."""
        words, boxes, batched = self._batch_words(words, boxes)
        for i, b in enumerate(boxes):
            if len(b) != len(words[i]):
                raise InputError(f"sample {i}: {len(words[i])} words but {len(b)} boxes (boxes: one per word)")
            check_boxes(np.asarray(b, dtype=np.int64).reshape(-1, 4), BOX_MAX, f"sample {i}: boxes")
        boxes = [np.asarray(b, dtype=np.int64).reshape(-1, 4) for b in boxes]
        if not isinstance(images, (list, tuple)) and not (isinstance(images, np.ndarray) and images.ndim == 4):
            images = [images]
        questions = None
        if question is not None:
            questions = [question] if isinstance(question, str) else list(question)
        call = {}
        if padding is not None:
            call["padding"] = {True: "longest", False: None}.get(padding, padding)
        if truncation is not None:
            call["truncation"] = {True: "longest_first", False: None}.get(truncation, truncation)
        if max_length is not None:
            call["max_length"] = int(max_length)
        encodings, features = self._encode_all(images, words, boxes, questions, **call)
        if word_labels is not None:
            labels = word_labels if batched else [word_labels]
            features["labels"] = self.token_labels(encodings, labels, words, questions is not None)
        return features

    def save_pretrained(self, folder):
        self.tokenizer.save_pretrained(folder)
        self.image_processor.save_pretrained(folder)

    def __repr__(self):
        return (f"LayoutLMv2Processor(tokenizer={self.tokenizer.class_name}, sequence_length={self.sequence_length}, "
                f"image size={self.image_processor.size})")


class LayoutXLMProcessor(LayoutLMv2Processor):
    """The same processor over LayoutXLM's XLM-R tokenizer (Transformers' ``LayoutXLMProcessor``)."""


def layoutlmv2_image_processor(config):
    """Transformers' LayoutLMv2ImageProcessor from a preprocessor_config.json dict (also the older
    ``LayoutLMv2FeatureExtractor`` configs): resize, flip to BGR, no rescaling or normalisation.
    ``apply_ocr`` is not run here: words and boxes come with the inputs."""
    from keras_models.preprocessing.image import ImageProcessor

    config = {k: v for k, v in config.items() if k in ("do_resize", "resample", "size")}
    return ImageProcessor.from_config({**config, "image_processor_type": IMAGE_TYPE})


def layoutlmv2_processor(folder, hf, sequence_length=None, **_):
    """The processor of a LayoutLMv2 / LayoutXLM folder: None without tokenizer files."""
    from keras_models.tasks.text import _text_preprocessor

    plain = _text_preprocessor(folder, hf, "TextPreprocessor", sequence_length=sequence_length)
    if plain is None:
        return None
    kwargs = {}
    path = folder / "tokenizer_config.json"
    cfg = json.loads(path.read_text()) if path.is_file() else {}
    for key in DEFAULT_BOXES:
        value = cfg.get(key)
        if value is None:
            continue
        if not (isinstance(value, list) and len(value) == 4 and all(type(v) is int for v in value)):
            raise PresetError(f"{path}: {key}={value!r} must be a list of 4 integers")
        kwargs[key] = value
    for key, kind in (("pad_token_label", int), ("only_label_first_subword", bool)):
        if cfg.get(key) is not None:
            if type(cfg[key]) is not kind:
                raise PresetError(f"{path}: {key}={cfg[key]!r} must be {kind.__name__}")
            kwargs[key] = cfg[key]
    image_path = folder / "preprocessor_config.json"
    image_config = json.loads(image_path.read_text()) if image_path.is_file() else {}
    tok = plain.tokenizer  # (a folder written by save_to_preset names the original class apart)
    source_class = tok.init_config.get("keras_models_source_class") or tok.class_name
    xlm = source_class in ("LayoutXLMTokenizer", "LayoutXLMTokenizerFast")
    cls = LayoutXLMProcessor if xlm else LayoutLMv2Processor
    return cls(plain.tokenizer, layoutlmv2_image_processor(image_config), sequence_length=sequence_length,
               **kwargs)


__all__ = ["LayoutLMv2Processor", "LayoutXLMProcessor"]
