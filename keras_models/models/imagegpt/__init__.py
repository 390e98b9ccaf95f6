"""ImageGPT (model_type ``imagegpt``): GPT-2's decoder over color-cluster tokens (one token per
pixel of a small image, raster order), written as switches of the GPT-2 table backbone:

* its norms are RMS norms without bias (``x / sqrt(mean(x^2) + eps) * weight``, no mean
  subtraction), ``layer_norm_epsilon``;
* ``activation_function`` defaults to quick_gelu, embeddings are untied;
* the causal LM head (``ImageGPTForCausalImageModeling``) is a Linear without bias to
  ``vocab_size - 1`` classes (the last id is the start-of-sequence token, never predicted);
* the image classifier (``ImageGPTForImageClassification``) averages the final hidden states over
  every position (no mask) into a Linear without bias (``score``).

Inputs are ``{"input_ids": (batch, pixels)}`` as :class:`ImageGPTImageProcessor` makes them
(resize, [-1, 1], nearest of the checkpoint's ``clusters``); a full image has no padding, and the
positions are 0..n-1 as in Transformers (an ``attention_mask`` with padding moves the padded
positions' ids, which Transformers does not).
"""

from dataclasses import dataclass
from typing import ClassVar

import keras
from keras import ops

from keras_models.models.decoder.gpt import GPT2_NAMES, GPT2Spec
from keras_models.models.decoder.llama import TableBackbone
from keras_models.models.imagegpt.processor import ImageGPTImageProcessor
from keras_models.models.registry import register_backbone, register_task
from keras_models.spec import const, dim, hf
from keras_models.tasks.causal_lm import CausalLM
from keras_models.tasks.image_classifier import ImageClassifier, ImageTask
from keras_models.tasks.task import Task

_ser = keras.saving.register_keras_serializable(package="keras_models")


@dataclass(frozen=True, kw_only=True)
class ImageGPTSpec(GPT2Spec):
    unsupported: ClassVar[dict] = {"scale_attn_by_inverse_layer_idx": (False, None),
                                   "add_cross_attention": (False, None),
                                   # a tied head would need vocab_size rows; Transformers' has vocab_size - 1
                                   "tie_word_embeddings": (False, None)}

    vocab_size: int = dim("vocab_size", 513)
    hidden_size: int = dim("n_embd", 512)
    num_layers: int = dim("n_layer", 24)
    num_heads: int = dim("n_head", 8)
    activation: str = hf("activation_function", "quick_gelu")
    max_position_embeddings: int = dim("n_positions", 1024)
    tie_word_embeddings: bool = const(False)
    bos_token_id: int | tuple | None = hf("bos_token_id", None)
    eos_token_id: int | tuple | None = hf("eos_token_id", None)
    norm_type: str = const("rms")
    norm_bias: bool = const(False)


@_ser
@register_backbone("imagegpt")
class ImageGPTBackbone(TableBackbone):
    spec_cls = ImageGPTSpec
    hf_architecture = "ImageGPTModel"
    names = GPT2_NAMES
    conv1d = True
    base_model_prefix = "transformer"
    hf_ignore = ("*attn.bias", "*attn.masked_bias")
    verified_backends = ("jax", "torch", "tensorflow")

    def pooled(self, hidden):
        return ops.mean(hidden, axis=1)


@_ser
@register_task(ImageGPTBackbone, "CausalLM", ("ImageGPTForCausalImageModeling",))
class ImageGPTCausalLM(CausalLM):
    """Logits (batch, pixels, vocab_size - 1): the next color cluster of each position."""

    def __init__(self, backbone, preprocessor=None, **kwargs):
        # CausalLM's own head would be vocab_size wide: set its attributes here instead
        Task.__init__(self, backbone, preprocessor=preprocessor, **kwargs)
        self.tied, self.final_logit_softcap, self.lm_bias = False, None, None
        self.lm_head = keras.layers.Dense(
            backbone.vocab_size - 1, use_bias=False, name="lm_head", dtype=backbone.dtype_policy,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=backbone.options["initializer_range"]))

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        return ImageGPTImageProcessor.from_preset_if_present(folder)

    def save_extra_files(self, folder):
        if self.preprocessor is not None:
            self.preprocessor.save_pretrained(folder)


@_ser
@register_task(ImageGPTBackbone, "ImageClassifier", ("ImageGPTForImageClassification",))
class ImageGPTImageClassifier(ImageClassifier):
    """Mean of the final hidden states over all positions -> Linear without bias (``score``).
    Inputs: ``{"input_ids"}`` (color clusters); raw images go through the ImageGPT processor."""

    pooling = "backbone"
    hf_out = "score"
    hf_head_patterns = ("score.*",)

    def __init__(self, backbone, num_classes=2, id2label=None, dropout=0.0, preprocessor=None, **kwargs):
        # ImageClassifier's head has a bias: set its attributes here instead
        kwargs = {k: v for k, v in kwargs.items() if k not in ("pooling", "distilled", "augmentation")}
        ImageTask.__init__(self, backbone, preprocessor=preprocessor, **kwargs)
        self.augmentation, self.pooling, self.distilled, self.dist_out = None, "backbone", False, None
        self.num_classes = num_classes
        self.id2label = {int(k): v for k, v in id2label.items()} if id2label else None
        self.dropout = dropout or 0.0
        self.drop = keras.layers.Dropout(self.dropout, dtype=backbone.dtype_policy)
        init = keras.initializers.TruncatedNormal(stddev=backbone.options["initializer_range"])
        self.out = keras.layers.Dense(num_classes, use_bias=False, name="classifier", kernel_initializer=init,
                                      dtype=backbone.dtype_policy)

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **kw):
        return ImageGPTImageProcessor.from_preset_if_present(folder)


__all__ = ["ImageGPTSpec", "ImageGPTBackbone", "ImageGPTCausalLM", "ImageGPTImageClassifier",
           "ImageGPTImageProcessor"]
