"""BLIP (``blip``): a BLIP vision tower and a BERT-like text tower whose layers cross-attend to the
image tokens (towers.py), and Transformers' three heads over them:

* ``BlipModel`` -> :class:`BlipZeroShotImageClassifier` (km.ZeroShotImageClassifier): the text
  tower without cross-attention, pooled by ``text_model.pooler`` (dense + tanh on the first
  token), the vision tower's pooled class token; both projected (``text_projection``,
  ``visual_projection``) and compared with ``exp(logit_scale)``;
* ``BlipForConditionalGeneration`` -> :class:`BlipImageToText` (km.ImageToText): the text tower
  as a causal decoder reading the image tokens, BERT's LM head (``transform`` dense + act +
  LayerNorm, then the word-embedding table (tied) plus a bias); ``generate`` as Transformers'
  (the prompt's first id becomes ``bos_token_id`` and its last one, the processor's [SEP], is
  dropped; generation stops at ``sep_token_id``);
* ``BlipForQuestionAnswering`` -> :class:`BlipQuestionAnswering` (km.ImageTextToText): the
  question encoded over the image, then a second text tower decoding the answer over the
  question's states (logits with ``decoder_input_ids``; ``generate`` from ``bos_token_id``);
* ``BlipForImageTextRetrieval`` -> :class:`BlipImageTextMatcher` (km.ImageTextMatcher): the text
  tower cross-attending to the image, ``itm_head`` on the first token (batch, 2); or, with
  ``use_itm_head=False``, the cosine similarity (images, texts) of the projected first tokens
  (``vision_proj``, ``text_proj``).

The text tower lives under a different name in each checkpoint (``text_model.``,
``text_decoder.bert.``, ``text_encoder.``): the backbone reads any of them, and each head writes
its own when saving, so that Transformers reloads what ``save_to_preset`` writes.
"""

from dataclasses import dataclass, replace

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.generation.backend import project_onto_table
from keras_models.generation.decode import CausalDecoder
from keras_models.generation.mixin import GenerationMixin, backend_to_numpy
from keras_models.layers.activations import get_activation
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.blip.towers import BlipTextBackbone, BlipVisionBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import TRANSPOSE, Rule, mount
from keras_models.spec import Spec, build_tower, dim, hf, tower
from keras_models.tasks.image_text_matching import ImageTextMatcher
from keras_models.tasks.image_to_text import ImageToText, ImageToTextProcessor, image_pixels
from keras_models.tasks.text import sparse_ce
from keras_models.tasks.zero_shot_image_classifier import ZeroShotImageClassifier, _unit

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")
TEXT_PREFIXES = ("text_model.", "text_encoder.", "text_decoder.bert.")  # read in this order


@dataclass(frozen=True, kw_only=True)
class BlipSpec(Spec):
    text_config: dict = tower("text_config", "blip_text_model")
    vision_config: dict = tower("vision_config", "blip_vision_model")
    projection_dim: int = dim("projection_dim", 512)
    logit_scale_init_value: float = hf("logit_scale_init_value", 2.6592)
    image_text_hidden_size: int = dim("image_text_hidden_size", 256)
    tie_word_embeddings: bool = hf("tie_word_embeddings", True)
    initializer_range: float = hf("initializer_range", 0.02)
    label_smoothing: float = hf("label_smoothing", 0.0, doc="training loss only")

    def dummy_inputs(self):
        size = self.vision_config.get("image_size", 384)
        size = size[0] if isinstance(size, (list, tuple)) else size
        return {"input_ids": np.ones((1, 2), "int32"), "attention_mask": np.ones((1, 2), "int32"),
                "pixel_values": np.zeros((1, size, size, 3), "float32")}


@_ser
@register_backbone("blip")
class BlipBackbone(SpecBackbone):
    """Calling it on ``{"input_ids", "attention_mask", "pixel_values"}`` returns
    ``{"vision_last_hidden_state": (batch, 1 + patches, vision hidden), "last_hidden_state":
    (batch, seq, text hidden)}``: the text tower (bidirectional) cross-attending to the image
    tokens, as Transformers' ``BlipModel.get_multimodal_features`` runs it before pooling."""

    spec_cls = BlipSpec
    hf_architecture = "BlipModel"
    verified_backends = _ALL
    base_model_prefix = ""
    hf_ignore = ("*position_ids",)
    text_prefix = "text_model."  # where save_to_preset writes the text tower (each head its own)

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        self.vision_model = build_tower(s.vision_config, "vision_model", self.dtype_policy)
        if not isinstance(self.vision_model, BlipVisionBackbone):
            raise ConfigError(f"vision_config: model_type {s.vision_config.get('model_type')!r} is not "
                              "blip_vision_model")
        # as Transformers' BlipConfig: the text tower's cross-attention reads the vision width
        text = dict(s.text_config, encoder_hidden_size=self.vision_model.hidden_size)
        self.text_model = build_tower(text, "text_model", self.dtype_policy)
        if not isinstance(self.text_model, BlipTextBackbone):
            raise ConfigError(f"text_config: model_type {s.text_config.get('model_type')!r} is not blip_text_model")
        self.hidden_size = self.text_model.hidden_size
        self.vocab_size = self.text_model.vocab_size
        self.max_position_embeddings = self.text_model.max_position_embeddings

    def build(self, input_shape=None):
        self.vision_model.build_from_dummy()
        self.text_model.build_from_dummy()
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    def image_states(self, pixel_values, training=False):
        return self.vision_model({"pixel_values": pixel_values}, training=training)

    def call(self, inputs, training=False):
        image = self.image_states(inputs["pixel_values"], training)
        text = self.text_model.forward(inputs["input_ids"], inputs.get("attention_mask"), context=image,
                                       training=training)
        return {"vision_last_hidden_state": image, "last_hidden_state": text}

    def weight_rules(self, text_prefix=None):
        """The towers under ``vision_model.`` and ``text_prefix`` (any BLIP checkpoint's text-tower
        name is read)."""
        text_prefix = text_prefix or self.text_prefix
        others = tuple(p for p in TEXT_PREFIXES if p != text_prefix)
        r = mount(self.vision_model.weight_rules(), "vision_model.")
        r += [replace(rule, hf=text_prefix + rule.hf, base=False, aliases=tuple(p + rule.hf for p in others))
              for rule in self.text_model.weight_rules()]
        return r


class _TextPrefixed:
    """A head whose checkpoint keeps the text tower under ``hf_text_prefix``."""

    hf_text_prefix = "text_model."

    def weight_rules(self):
        return list(self.backbone.weight_rules(self.hf_text_prefix)) + list(self.head_rules())


# --- BlipModel ----------------------------------------------------------------------------------
@_ser
@register_task(BlipBackbone, "ZeroShotImageClassifier", ("BlipModel",))
class BlipZeroShotImageClassifier(_TextPrefixed, ZeroShotImageClassifier):
    hf_text_prefix = "text_model."
    hf_head_patterns = ("logit_scale", "text_projection.*", "visual_projection.*", "text_model.pooler.*")

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        dt, p = backbone.dtype_policy, backbone.spec.projection_dim
        self.text_pooler = keras.layers.Dense(backbone.hidden_size, activation="tanh", name="text_pooler", dtype=dt)
        self.text_projection = keras.layers.Dense(p, use_bias=False, name="text_projection", dtype=dt)
        self.visual_projection = keras.layers.Dense(p, use_bias=False, name="visual_projection", dtype=dt)

    def build(self, input_shape=None):
        b = self.backbone
        b.build_from_dummy()
        self.text_pooler.build((None, b.hidden_size))
        self.text_projection.build((None, b.hidden_size))
        self.visual_projection.build((None, b.vision_model.hidden_size))
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    def encode_text(self, inputs, training=False):
        h = self.backbone.text_model.forward(inputs["input_ids"], inputs.get("attention_mask"), training=training)
        return self.text_projection(self.text_pooler(h[:, 0]))

    def encode_image(self, inputs, training=False):
        pixels = inputs["pixel_values"] if isinstance(inputs, dict) else inputs
        v = self.backbone.vision_model
        return self.visual_projection(v.pooled(v({"pixel_values": pixels}, training=training)))

    def call(self, inputs, training=False):
        text = _unit(self.encode_text(inputs, training=training))
        image = _unit(self.encode_image(inputs, training=training))
        scale = ops.exp(ops.cast(self.logit_scale, text.dtype))
        logits_per_text = ops.matmul(text, ops.transpose(image)) * scale
        return {"logits_per_image": ops.transpose(logits_per_text), "logits_per_text": logits_per_text,
                "image_embeds": image, "text_embeds": text}

    def head_rules(self):
        return (super().head_rules() + dense_rules("text_model.pooler.dense", self.text_pooler, base=False)
                + dense_rules("text_projection", self.text_projection, base=False)
                + dense_rules("visual_projection", self.visual_projection, base=False))


# --- BlipForConditionalGeneration ---------------------------------------------------------------
class BlipCaptionDecoder(CausalDecoder):
    """The engine's decoder interface: the image's cross-attention keys / values come in ``extra``."""

    def forward(self, ids, cache, index, mask, extra, last_only=False):
        return self.model.call_with_cache(ids, cache, index, mask, last_only=last_only,
                                          cross_kv=(extra or {}).get("cross_kv"))


@_ser
@register_task(BlipBackbone, "ImageToText", ("BlipForConditionalGeneration",))
class BlipImageToText(_TextPrefixed, GenerationMixin, ImageToText):
    """Calling on ``{"pixel_values", "input_ids", "attention_mask"}`` returns the logits
    (batch, seq, vocab) of the causal text decoder reading the image tokens; ``generate(inputs,
    pixel_values=...)`` returns the prompt ids followed by the new ids."""

    hf_text_prefix = "text_decoder.bert."
    hf_head_patterns = ("text_decoder.cls.*",)
    decoder_adapter = BlipCaptionDecoder
    _HEAD = "text_decoder.cls.predictions."

    def __init__(self, backbone, preprocessor=None, tie_word_embeddings=True, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        text = backbone.text_model
        s, dt = text.spec, backbone.dtype_policy
        self.tie_word_embeddings = bool(tie_word_embeddings)
        self.transform = keras.layers.Dense(text.hidden_size, name="transform", dtype=dt)
        self.transform_act = get_activation(s.hidden_act)
        self.transform_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="transform_norm",
                                                              dtype=dt)
        self.lm_head = None
        if not self.tie_word_embeddings:
            self.lm_head = keras.layers.Dense(text.vocab_size, use_bias=False, name="lm_head", dtype=dt)

    def build(self, input_shape=None):
        b = self.backbone
        b.build_from_dummy()
        d = b.hidden_size
        self.transform.build((None, d))
        self.transform_norm.build((None, d))
        if self.lm_head is not None:
            self.lm_head.build((None, d))
        self.output_bias = self.add_weight(name="output_bias", shape=(b.vocab_size,), initializer="zeros")
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    def logits(self, hidden):
        h = self.transform_norm(self.transform_act(self.transform(hidden)))
        if self.lm_head is not None:
            out = self.lm_head(h)
        else:
            out = project_onto_table(h, self.text_decoder.token_embedding.embeddings)
        return out + ops.cast(self.output_bias, out.dtype)

    def call(self, inputs, training=False):
        b = self.backbone
        image = b.image_states(inputs["pixel_values"], training)
        hidden = b.text_model.forward(inputs["input_ids"], inputs.get("attention_mask"), context=image, causal=True,
                                      training=training)
        return self.logits(hidden)

    def default_loss(self):
        return sparse_ce(ignore_class=-100)

    # --- generation -----------------------------------------------------------------------------
    @property
    def text_decoder(self):
        """The text tower that decodes (the backbone's; BlipQuestionAnswering has its own)."""
        return self.backbone.text_model

    def init_cache(self, batch_size, max_length):
        return self.text_decoder.init_cache(batch_size, max_length)

    def call_with_cache(self, input_ids, cache, cache_index, attention_mask, last_only=False, cross_kv=None):
        hidden, cache = self.text_decoder.call_with_cache(input_ids, cache, cache_index, attention_mask, cross_kv)
        if last_only:
            hidden = hidden[:, -1:, :]
        return self.logits(hidden), cache

    def generate(self, inputs=None, generation_config=None, *, pixel_values=None, **kwargs):
        """Transformers' ``BlipForConditionalGeneration.generate``: ``inputs`` a dict with
        ``pixel_values`` (or raw images through the image processor; or ``pixel_values=`` given
        apart) and optionally a prompt (``input_ids`` as the processor makes them, [CLS] ... [SEP],
        ``attention_mask``): its first id is replaced by ``bos_token_id`` and its last one dropped.
        Without a prompt, generation starts from ``bos_token_id``. Stops at ``sep_token_id``."""
        text = self.backbone.text_model
        if isinstance(inputs, dict):
            inputs = dict(inputs)
            if "pixel_values" in inputs:
                pixel_values = inputs.pop("pixel_values")
        elif inputs is not None and pixel_values is None:
            pixel_values, inputs = inputs, None
        if pixel_values is None:
            raise InputError("generate: BLIP captioning needs pixel_values (or images)")
        pixels = image_pixels(pixel_values, self.preprocessor)
        n = pixels.shape[0]
        if not inputs or inputs.get("input_ids") is None:
            ids, mask = np.full((n, 1), text.bos_token_id, "int32"), np.ones((n, 1), "int32")
        else:
            ids = np.array(backend_to_numpy(inputs["input_ids"]), "int32", ndmin=2)
            mask = inputs.get("attention_mask")
            mask = np.ones_like(ids) if mask is None else np.array(backend_to_numpy(mask), "int32", ndmin=2)
            if ids.shape[0] != n:
                raise InputError(f"generate: {ids.shape[0]} prompt(s) for {n} image(s)")
            if ids.shape[1] < 2:
                raise InputError("generate: a BLIP prompt is [CLS] text [SEP] as its processor makes it: its last "
                                 f"token is dropped, so it needs at least 2 ids, got {ids.shape[1]}")
            ids[:, 0] = text.bos_token_id
            ids, mask = ids[:, :-1], mask[:, :-1]
        kwargs.setdefault("eos_token_id", text.sep_token_id)
        kwargs.setdefault("pad_token_id", text.pad_token_id)
        states = self.backbone.image_states(ops.convert_to_tensor(pixels))
        with self._gen_prompt_inputs(cross_kv=text.cross_kv(states)):
            return super().generate({"input_ids": ids, "attention_mask": mask}, generation_config, **kwargs)


    # --- HF conversion --------------------------------------------------------------------------
    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, **kwargs):
        kwargs.setdefault("tie_word_embeddings", bool(hf.get("tie_word_embeddings", True)))
        return kwargs

    def task_config_to_hf(self):
        return {"tie_word_embeddings": self.tie_word_embeddings}

    def head_rules(self):
        p = self._HEAD
        r = dense_rules(p + "transform.dense", self.transform, base=False)
        r += norm_rules(p + "transform.LayerNorm", self.transform_norm, base=False)
        # the decoder's bias is tied to ``predictions.bias`` (saved under that name) when tied
        bias = (p + "bias", p + "decoder.bias") if self.tie_word_embeddings else (p + "decoder.bias", p + "bias")
        r.append(Rule(bias[0], self.output_bias, base=False, aliases=(bias[1],)))
        if self.lm_head is not None:
            r.append(Rule(p + "decoder.weight", self.lm_head.kernel, TRANSPOSE, base=False))
        else:
            r.append(Rule(p + "decoder.weight", self.text_decoder.token_embedding.embeddings, base=False,
                          optional=True, export=False))
        return r

    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **_):
        return ImageToTextProcessor.from_preset(folder)

    def save_extra_files(self, folder):
        super().save_extra_files(folder)
        if self.preprocessor is not None and self.preprocessor.image_processor is not None:
            self.preprocessor.image_processor.save_pretrained(folder)

    def get_config(self):
        c = super().get_config()
        c["tie_word_embeddings"] = self.tie_word_embeddings
        return c


# --- BlipForQuestionAnswering -------------------------------------------------------------------
@_ser
@register_task(BlipBackbone, "ImageTextToText", ("BlipForQuestionAnswering",))
class BlipQuestionAnswering(BlipImageToText):
    """Visual question answering: the backbone's text tower encodes the question while
    cross-attending to the image; a second text tower (``text_decoder``, its own weights) decodes
    the answer while cross-attending to the question's states (the text width, so Transformers
    needs vision and text hidden sizes equal). Calling on ``{"pixel_values", "input_ids",
    "attention_mask", "decoder_input_ids", "decoder_attention_mask"}`` returns the answer
    decoder's logits (batch, decoder_seq, vocab); ``generate({"input_ids", "attention_mask",
    "pixel_values"})`` returns ``bos_token_id`` followed by the answer ids (stopping at
    ``sep_token_id``), as Transformers. As in Transformers 5, the answer's cross-attention sees
    every question position, padding included (its BLIP text layers drop the encoder mask)."""

    hf_text_prefix = "text_encoder."
    hf_head_patterns = ("text_decoder.*",)

    def __init__(self, backbone, preprocessor=None, tie_word_embeddings=True, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, tie_word_embeddings=tie_word_embeddings, **kwargs)
        self.answer_decoder = BlipTextBackbone(backbone.text_model.spec, name="answer_decoder",
                                               dtype=backbone.dtype_policy)

    def build(self, input_shape=None):
        super().build(input_shape)
        self.answer_decoder.build_from_dummy()

    @property
    def text_decoder(self):
        return self.answer_decoder

    def question_states(self, inputs, training=False):
        b = self.backbone
        image = b.image_states(inputs["pixel_values"], training)
        return b.text_model.forward(inputs["input_ids"], inputs.get("attention_mask"), context=image, training=training)

    def call(self, inputs, training=False):
        if "decoder_input_ids" not in inputs:
            raise InputError("BlipQuestionAnswering: give decoder_input_ids (the answer so far), or call generate")
        q = self.question_states(inputs, training)
        # every question position is visible to the answer's cross-attention, padding included: Transformers
        # 5's BLIP text layers drop the encoder attention mask before the cross-attention reads it
        h = self.answer_decoder.forward(inputs["decoder_input_ids"], inputs.get("decoder_attention_mask"), context=q,
                                        causal=True, training=training)
        return self.logits(h)

    def generate(self, inputs=None, generation_config=None, *, pixel_values=None, **kwargs):
        inputs = dict(inputs) if isinstance(inputs, dict) else {}
        pixel_values = inputs.pop("pixel_values", pixel_values)
        if pixel_values is None or inputs.get("input_ids") is None:
            raise InputError("generate: BLIP question answering needs pixel_values and the question's input_ids")
        pixels = image_pixels(pixel_values, self.preprocessor)
        ids = np.array(backend_to_numpy(inputs["input_ids"]), "int32", ndmin=2)
        mask = inputs.get("attention_mask")
        mask = np.ones_like(ids) if mask is None else np.array(backend_to_numpy(mask), "int32", ndmin=2)
        if ids.shape[0] != pixels.shape[0]:
            raise InputError(f"generate: {ids.shape[0]} question(s) for {pixels.shape[0]} image(s)")
        q = self.question_states({"pixel_values": ops.convert_to_tensor(pixels), "input_ids": ops.convert_to_tensor(ids),
                                  "attention_mask": ops.convert_to_tensor(mask)})
        dec = self.answer_decoder
        kwargs.setdefault("eos_token_id", dec.sep_token_id)
        kwargs.setdefault("pad_token_id", dec.pad_token_id)
        start = np.full((ids.shape[0], 1), dec.bos_token_id, "int32")
        with self._gen_prompt_inputs(cross_kv=dec.cross_kv(q)):
            return super(BlipImageToText, self).generate({"input_ids": start, "attention_mask": np.ones_like(start)},
                                                         generation_config, **kwargs)

    def weight_rules(self):
        r = list(self.backbone.weight_rules(self.hf_text_prefix))
        return r + mount(self.answer_decoder.weight_rules(), "text_decoder.bert.") + list(self.head_rules())


# --- BlipForImageTextRetrieval ------------------------------------------------------------------
def _l2_normalize(x):
    """torch.nn.functional.normalize: x / max(||x||, 1e-12)."""
    return x / ops.maximum(ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True)), 1e-12)


@_ser
@register_task(BlipBackbone, "ImageTextMatcher", ("BlipForImageTextRetrieval",))
class BlipImageTextMatcher(_TextPrefixed, ImageTextMatcher):
    """Calling on ``{"input_ids", "attention_mask", "pixel_values"}`` returns Transformers'
    ``itm_score``: the image-text matching logits (batch, 2) (``use_itm_head=True``), or the
    cosine similarities (images, texts) of the projected first tokens (``use_itm_head=False``)."""

    hf_text_prefix = "text_encoder."
    hf_head_patterns = ("itm_head.*", "vision_proj.*", "text_proj.*")

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        dt, width = backbone.dtype_policy, backbone.spec.image_text_hidden_size
        self.itm_head = keras.layers.Dense(2, name="itm_head", dtype=dt)
        self.vision_proj = keras.layers.Dense(width, name="vision_proj", dtype=dt)
        self.text_proj = keras.layers.Dense(width, name="text_proj", dtype=dt)

    def build(self, input_shape=None):
        b = self.backbone
        b.build_from_dummy()
        self.itm_head.build((None, b.hidden_size))
        self.text_proj.build((None, b.hidden_size))
        self.vision_proj.build((None, b.vision_model.hidden_size))
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    def call(self, inputs, training=False, use_itm_head=True):
        b = self.backbone
        image = b.image_states(inputs["pixel_values"], training)
        ids, mask = inputs["input_ids"], inputs.get("attention_mask")
        if use_itm_head:
            text = b.text_model.forward(ids, mask, context=image, training=training)
            return self.itm_head(text[:, 0])
        text = b.text_model.forward(ids, mask, training=training)
        image_feat = _l2_normalize(self.vision_proj(image[:, 0]))
        text_feat = _l2_normalize(self.text_proj(text[:, 0]))
        return ops.matmul(image_feat, ops.transpose(text_feat))

    def head_rules(self):
        return (dense_rules("itm_head", self.itm_head, base=False)
                + dense_rules("vision_proj", self.vision_proj, base=False)
                + dense_rules("text_proj", self.text_proj, base=False))


__all__ = ["BlipSpec", "BlipBackbone", "BlipZeroShotImageClassifier", "BlipImageToText", "BlipCaptionDecoder",
           "BlipQuestionAnswering",
           "BlipImageTextMatcher", "TEXT_PREFIXES"]
