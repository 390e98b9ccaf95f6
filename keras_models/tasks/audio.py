"""Audio tasks: ``SpeechRecognizer`` (CTC over a speech encoder) and ``AudioClassifier`` (projector,
mean pooling over the real frames, linear classifier), as Transformers' ``*ForCTC`` and
``*ForSequenceClassification`` heads.

Inputs: ``{"input_values": (batch, samples), "attention_mask": (batch, samples)}`` (the mask is
optional) or the waveform array itself, as :class:`~keras_models.preprocessing.audio.AudioFeatureExtractor`
returns them. ``km.SpeechRecognizer.from_preset(folder)`` resolves the family's subclass from
config.json, loads the checkpoint's feature extractor (``preprocessor_config.json``) as
``preprocessor`` and its CTC tokenizer (``vocab.json``) as ``tokenizer``;
:meth:`SpeechRecognizer.transcribe` goes from waveforms to text (greedy CTC).
"""

import contextlib

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError
from keras_models.layers.vision_embeddings import dense_rules
from keras_models.tasks.task import Task
from keras_models.tasks.text import _LabelledTask


def _split(inputs):
    if isinstance(inputs, dict):
        return inputs, inputs.get("attention_mask")
    return inputs, None


class _AudioTask(Task):
    """What every audio task shares: the checkpoint's feature extractor loaded and saved."""

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        from keras_models.presets.config import read_processor_part
        from keras_models.preprocessing.audio import AudioFeatureExtractor

        if read_processor_part(folder, "feature_extractor") is None:
            return None
        return AudioFeatureExtractor.from_preset(folder)

    def save_extra_files(self, folder):
        if self.preprocessor is not None and hasattr(self.preprocessor, "save_pretrained"):
            self.preprocessor.save_pretrained(folder)
        tokenizer = getattr(self, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)


class _NewHeadFilter:
    def filter(self, record):
        return "randomly initialised head" not in record.getMessage()


@contextlib.contextmanager
def _no_new_head_warning(active):
    from keras_models.tasks.task import logger

    f = _NewHeadFilter()
    if active:
        logger.addFilter(f)
    try:
        yield
    finally:
        logger.removeFilter(f)


@keras.saving.register_keras_serializable(package="keras_models")
class SpeechRecognizer(_AudioTask):
    """CTC speech recognition: per-frame vocabulary logits (batch, frames, vocab_size)."""

    task_name = "SpeechRecognizer"
    hf_out = "lm_head"
    hf_head_patterns = ("lm_head.*",)

    def __init__(self, backbone, vocab_size=32, pad_token_id=0, dropout=0.0, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.vocab_size, self.pad_token_id, self.dropout = int(vocab_size), pad_token_id, dropout or 0.0
        init = keras.initializers.TruncatedNormal(stddev=getattr(backbone, "initializer_range", 0.02))
        self.drop = keras.layers.Dropout(self.dropout, dtype=backbone.dtype_policy)
        self.lm_head = keras.layers.Dense(self.vocab_size, kernel_initializer=init, name="lm_head",
                                          dtype=backbone.dtype_policy)
        self.tokenizer = None

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        kwargs.setdefault("vocab_size", hf.get("vocab_size") or 32)
        kwargs.setdefault("pad_token_id", hf.get("pad_token_id", 0))
        kwargs.setdefault("dropout", hf.get("final_dropout") or 0.0)
        return kwargs

    def task_config_to_hf(self):
        return {"vocab_size": self.vocab_size, "pad_token_id": self.pad_token_id, "final_dropout": self.dropout}

    @classmethod
    def from_preset(cls, preset, *args, tokenizer=True, target_lang=None, **kwargs):
        """``target_lang``: a language of an MMS checkpoint (Wav2Vec2 with adapters): its adapter file
        and its table of vocab.json are loaded, as Transformers' ``target_lang=``."""
        from keras_models.presets.resolve import resolve_preset

        if target_lang is not None:  # the language's CTC head may have another size: built at that size
            from keras_models.models.wav2vec2.adapters import adapter_vocab_size

            vocab_size = adapter_vocab_size(resolve_preset(preset), target_lang)
            if vocab_size is not None:
                kwargs.update(vocab_size=vocab_size, _head_from_checkpoint=False)
        with _no_new_head_warning(target_lang is not None):  # the adapter file supplies the head
            model = super().from_preset(preset, *args, **kwargs)
        if target_lang is not None:
            if not hasattr(model, "load_adapter"):
                raise ConfigError(f"target_lang={target_lang!r}: {type(model).__name__} has no language adapters")
            model.load_adapter(target_lang, folder=resolve_preset(preset))
            model.head_from_checkpoint = True
        if tokenizer is True:
            folder = resolve_preset(preset)
            if (folder / "vocab.json").is_file():
                from keras_models.tokenizers import Tokenizer

                tokenizer = Tokenizer.from_preset(folder, **({} if target_lang is None else {"target_lang": target_lang}))
            else:
                tokenizer = None
        model.tokenizer = tokenizer or None
        return model

    def call(self, inputs, training=False):
        h = self.backbone(inputs, training=training)
        return self.lm_head(self.drop(h, training=training))

    def head_rules(self):
        return dense_rules(self.hf_out, self.lm_head, base=False)

    def transcribe(self, waveforms, sampling_rate=16000, batch_size=8):
        """Texts of ``waveforms`` (greedy CTC: the best id per frame, decoded by the tokenizer)."""
        if self.preprocessor is None or self.tokenizer is None:
            raise ValueError("transcribe needs the preset's feature extractor (preprocessor_config.json) and "
                             "CTC tokenizer (vocab.json); pass preprocessor= and set .tokenizer")
        feats = self.preprocessor(waveforms, sampling_rate=sampling_rate)
        logits = self.predict(feats, batch_size=batch_size, verbose=0)
        ids = np.argmax(logits, axis=-1)
        if "attention_mask" in feats:
            frames = self.backbone.frame_mask(feats["attention_mask"], ids.shape[1])
            ids = np.where(keras.ops.convert_to_numpy(frames), ids, self.pad_token_id)
        return self.tokenizer.batch_decode(ids)

    def get_config(self):
        c = super().get_config()
        c.update(vocab_size=self.vocab_size, pad_token_id=self.pad_token_id, dropout=self.dropout)
        return c


@keras.saving.register_keras_serializable(package="keras_models")
class AudioClassifier(_LabelledTask, _AudioTask):
    """Utterance classification: ``projector`` per frame, mean over the real frames (all frames
    without an attention mask), ``classifier``. Output: (batch, num_classes) logits."""

    task_name = "AudioClassifier"
    hf_head_patterns = ("projector.*", "classifier.*")

    def __init__(self, backbone, num_classes=2, id2label=None, classifier_proj_size=256, dropout=0.0,
                 preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.num_classes = num_classes
        self.id2label = {int(k): v for k, v in id2label.items()} if id2label else None
        self.classifier_proj_size, self.dropout = int(classifier_proj_size), dropout or 0.0
        init = keras.initializers.TruncatedNormal(stddev=getattr(backbone, "initializer_range", 0.02))
        dense = dict(kernel_initializer=init, dtype=backbone.dtype_policy)
        self.projector = keras.layers.Dense(self.classifier_proj_size, name="projector", **dense)
        self.classifier = keras.layers.Dense(num_classes, name="classifier", **dense)

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        if head_from_checkpoint and not hf.get("id2label") and not hf.get("num_labels"):
            hf = {**hf, "num_labels": 2}
        kwargs = super().task_config_from_hf(hf, head_from_checkpoint, **kwargs)
        kwargs.setdefault("classifier_proj_size", hf.get("classifier_proj_size") or 256)
        kwargs.setdefault("dropout", 0.0)
        return kwargs

    def task_config_to_hf(self):
        c = super().task_config_to_hf()
        c["classifier_proj_size"] = self.classifier_proj_size
        return c

    def call(self, inputs, training=False):
        h = self.projector(self.backbone(inputs, training=training))
        _, mask = _split(inputs)
        if mask is None:
            pooled = ops.mean(h, axis=1)
        else:
            frames = ops.cast(self.backbone.frame_mask(mask, ops.shape(h)[1]), h.dtype)[..., None]
            pooled = ops.sum(h * frames, axis=1) / ops.sum(frames, axis=1)
        return self.classifier(pooled)

    def head_rules(self):
        return dense_rules("projector", self.projector, base=False) + dense_rules("classifier", self.classifier,
                                                                                base=False)

    def get_config(self):
        c = super().get_config()
        c.update(classifier_proj_size=self.classifier_proj_size)
        return c


__all__ = ["SpeechRecognizer", "AudioClassifier"]
