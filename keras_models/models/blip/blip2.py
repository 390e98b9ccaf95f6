"""BLIP-2 (``blip-2``) and InstructBLIP (``instructblip``): a BLIP-2 vision tower, a Q-Former and
any registered decoder language model (``text_config``: OPT, Llama / Vicuna, ...).

* Q-Former: ``num_query_tokens`` learned query embeddings (``query_tokens``) go through post-norm
  BERT layers; every ``cross_attention_frequency``-th layer (0, f, 2f, ...) also cross-attends
  from the queries to the vision tower's tokens. Queries and text have separate feed-forwards
  (``intermediate_query`` / ``output_query`` and ``intermediate`` / ``output``).
  - BLIP-2: the queries alone, LayerNorm'ed (``qformer.layernorm``) first;
  - InstructBLIP: the instruction (``qformer_input_ids``, ``qformer_attention_mask``) is embedded
    (word + position embeddings from 0) after the queries, [queries; text] LayerNorm'ed
    (``qformer.embeddings.layernorm``) and self-attended together under the text's padding mask;
    only the queries cross-attend to the image and are read out.
* ``language_projection`` maps the query outputs to the language model's width; these
  ``num_query_tokens`` features replace the embeddings of the image tokens
  (``image_token_index``) in ``input_ids``, in row-major order, as Transformers 5's processor
  expands them. Tasks: km.ImageTextToText (logits and ``generate``, keras_models/tasks/
  image_text_to_text.py). Without ``input_ids``, ``generate`` starts from [image tokens; bos], as
  Transformers does.

Seq2seq language models (Flan-T5 ``text_config``) are not implemented: they raise ConfigError.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.generation.mixin import backend_to_numpy
from keras_models.layers.activations import get_activation
from keras_models.layers.attention import Attention
from keras_models.layers.decoder_masks import positions_from_mask
from keras_models.layers.masks import padding_bias
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.blip.towers import Blip2VisionBackbone
from keras_models.models.llava.backbone import LlavaLikeBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import Reshape, Rule, mount
from keras_models.spec import Spec, build_tower, dim, hf, nested, tower
from keras_models.tasks.image_text_to_text import ImageTextToText
from keras_models.tasks.image_to_text import ImageToTextProcessor, image_pixels

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")


@dataclass(frozen=True, kw_only=True)
class QFormerSpec(Spec):
    vocab_size: int = dim("vocab_size", 30522)
    hidden_size: int = dim("hidden_size", 768)
    num_layers: int = dim("num_hidden_layers", 12)
    num_heads: int = dim("num_attention_heads", 12)
    intermediate_size: int = dim("intermediate_size", 3072)
    hidden_act: str = hf("hidden_act", "gelu")
    dropout: float = hf("hidden_dropout_prob", 0.1)
    attention_dropout: float = hf("attention_probs_dropout_prob", 0.1)
    max_position_embeddings: int = dim("max_position_embeddings", 512)
    initializer_range: float = hf("initializer_range", 0.02)
    layer_norm_eps: float = hf("layer_norm_eps", 1e-12)
    pad_token_id: int | None = hf("pad_token_id", 0)
    cross_attention_frequency: int = dim("cross_attention_frequency", 2)
    encoder_hidden_size: int = dim("encoder_hidden_size", 1408)
    use_qformer_text_input: bool = hf("use_qformer_text_input", False,
                                      doc="BLIP-2: the text feed-forward exists (unused by generation)")
    model_type: str = hf("model_type", "blip_2_qformer")

    def validate(self, source="config.json"):
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{source}: hidden_size={self.hidden_size} is not divisible by "
                              f"num_attention_heads={self.num_heads}")


@_ser
class QFormerLayer(keras.layers.Layer):
    """Post-norm self-attention over [queries; text], cross-attention of the queries to the image
    (``cross_attention``), then the queries' and the text's own feed-forwards."""

    def __init__(self, hidden_size, num_heads, intermediate_size, hidden_act="gelu", layer_norm_eps=1e-12,
                 context_size=None, cross_attention=False, text_ffn=False, dropout=0.0, attention_dropout=0.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_heads, self.intermediate_size = hidden_size, num_heads, intermediate_size
        self.hidden_act, self.layer_norm_eps, self.context_size = hidden_act, layer_norm_eps, context_size
        self.cross_attention, self.text_ffn = cross_attention, text_ffn
        self.dropout_rate, self.attention_dropout = dropout, attention_dropout
        common = dict(dtype=self.dtype_policy)

        def norm(name):
            return keras.layers.LayerNormalization(epsilon=layer_norm_eps, name=name, **common)

        attn = dict(use_bias=True, dropout=attention_dropout, **common)
        self.self_attention = Attention(hidden_size, num_heads, name="self_attention", **attn)
        self.self_norm = norm("self_norm")
        self.cross = Attention(hidden_size, num_heads, name="cross_attention", **attn) if cross_attention else None
        self.cross_norm = norm("cross_norm") if cross_attention else None
        self.ffn_in = keras.layers.Dense(intermediate_size, name="ffn_in", **common)
        self.ffn_out = keras.layers.Dense(hidden_size, name="ffn_out", **common)
        self.ffn_norm = norm("ffn_norm")
        self.text_in = keras.layers.Dense(intermediate_size, name="text_ffn_in", **common) if text_ffn else None
        self.text_out = keras.layers.Dense(hidden_size, name="text_ffn_out", **common) if text_ffn else None
        self.text_norm = norm("text_ffn_norm") if text_ffn else None
        self.act = get_activation(hidden_act)
        self.drop = keras.layers.Dropout(dropout, **common)

    def build(self, input_shape):
        d = (None, None, self.hidden_size)
        for layer in (self.self_attention, self.self_norm, self.cross_norm, self.ffn_in, self.ffn_norm, self.text_in,
                      self.text_norm):
            if layer is not None:
                layer.build(d)
        for layer in (self.ffn_out, self.text_out):
            if layer is not None:
                layer.build((None, None, self.intermediate_size))
        if self.cross is not None:
            a = self.cross
            a.query.build(d)
            for dense in (a.key, a.value):
                dense.build((None, None, self.context_size))
            a.output_dense.build(d)
            a.built = True
        self.built = True

    def _ffn(self, x, dense_in, dense_out, norm, training):
        return norm(x + self.drop(dense_out(self.act(dense_in(x))), training=training))

    def call(self, x, bias, context, num_queries, training=False):
        x = self.self_norm(x + self.drop(self.self_attention(x, bias, training=training), training=training))
        queries, text = x[:, :num_queries], x[:, num_queries:]
        if self.cross is not None:
            queries = self.cross_norm(queries + self.drop(self.cross(queries, None, context=context, training=training),
                                                          training=training))
        queries = self._ffn(queries, self.ffn_in, self.ffn_out, self.ffn_norm, training)
        if text.shape[1] == 0:
            return queries
        if self.text_in is None:
            raise InputError("qformer_input_ids given, but this Q-Former has no text feed-forward "
                             "(use_qformer_text_input is false)")
        return ops.concatenate([queries, self._ffn(text, self.text_in, self.text_out, self.text_norm, training)], 1)

    def rules(self, p):
        def attention(name, a, n):
            r = []
            for sub, dense in (("attention.query", a.query), ("attention.key", a.key), ("attention.value", a.value),
                               ("output.dense", a.output_dense)):
                r += dense_rules(f"{p}{name}.{sub}", dense)
            return r + norm_rules(f"{p}{name}.output.LayerNorm", n)

        r = attention("attention", self.self_attention, self.self_norm)
        if self.cross is not None:
            r += attention("crossattention", self.cross, self.cross_norm)
        r += dense_rules(p + "intermediate_query.dense", self.ffn_in) + dense_rules(p + "output_query.dense", self.ffn_out)
        r += norm_rules(p + "output_query.LayerNorm", self.ffn_norm)
        if self.text_in is not None:
            r += dense_rules(p + "intermediate.dense", self.text_in) + dense_rules(p + "output.dense", self.text_out)
            r += norm_rules(p + "output.LayerNorm", self.text_norm)
        return r

    def get_config(self):
        c = super().get_config()
        c.update(hidden_size=self.hidden_size, num_heads=self.num_heads, intermediate_size=self.intermediate_size,
                 hidden_act=self.hidden_act, layer_norm_eps=self.layer_norm_eps, context_size=self.context_size,
                 cross_attention=self.cross_attention, text_ffn=self.text_ffn, dropout=self.dropout_rate,
                 attention_dropout=self.attention_dropout)
        return c


@dataclass(frozen=True, kw_only=True)
class Blip2Spec(Spec):
    vision_config: dict = tower("vision_config", "blip_2_vision_model")
    qformer_config: QFormerSpec = nested("qformer_config", QFormerSpec, required=False)
    text_config: dict = tower("text_config", "opt")
    num_query_tokens: int = dim("num_query_tokens", 32)
    image_token_index: int | None = hf(("image_token_index", "image_token_id"), None)
    image_text_hidden_size: int = dim("image_text_hidden_size", 256)
    initializer_range: float = hf("initializer_range", 0.02)
    tie_word_embeddings: bool = hf("tie_word_embeddings", True)

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        if values.get("qformer_config") is None:  # Transformers' defaults
            values["qformer_config"] = QFormerSpec.from_hf({}, f"{source} [qformer_config]")
        return values

    def validate(self, source="config.json"):
        if self.image_token_index is None:
            raise ConfigError(f"{source}: image_token_index is missing (the id of the image placeholder tokens "
                              "in input_ids, as Transformers 5's processor inserts them)")

    def dummy_inputs(self):
        size = self.vision_config.get("image_size", 224)
        size = size[0] if isinstance(size, (list, tuple)) else size
        return {"input_ids": np.ones((1, 2), "int32"), "attention_mask": np.ones((1, 2), "int32"),
                "pixel_values": np.zeros((1, size, size, 3), "float32")}


@dataclass(frozen=True, kw_only=True)
class InstructBlipSpec(Blip2Spec):
    vision_config: dict = tower("vision_config", "instructblip_vision_model")

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        if values.get("qformer_config") is None:
            values["qformer_config"] = QFormerSpec.from_hf({"model_type": "instructblip_qformer"},
                                                           f"{source} [qformer_config]")
        return values

    def dummy_inputs(self):
        out = super().dummy_inputs()
        out.update(qformer_input_ids=np.ones((1, 2), "int32"), qformer_attention_mask=np.ones((1, 2), "int32"))
        return out


class Blip2LikeBackbone(SpecBackbone):
    """Calling it on ``{"input_ids", "attention_mask", "pixel_values"}`` (InstructBLIP: also
    ``qformer_input_ids``, ``qformer_attention_mask``) returns the language model's last hidden
    state (batch, seq, text hidden)."""

    base_model_prefix = ""
    hf_ignore = ("*position_ids", "*rotary_emb.inv_freq")
    instruction_aware = False
    merge_embeddings = LlavaLikeBackbone.merge_embeddings
    check_image_inputs = LlavaLikeBackbone.check_image_inputs

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, dt = self.spec, self.dtype_policy
        q = s.qformer_config
        self.vision_model = build_tower(s.vision_config, "vision_model", dt)
        if not isinstance(self.vision_model, Blip2VisionBackbone):
            raise ConfigError(f"vision_config: model_type {s.vision_config.get('model_type')!r} is not a BLIP-2 "
                              "vision tower (blip_2_vision_model, instructblip_vision_model)")
        if s.text_config.get("is_encoder_decoder"):
            raise ConfigError(f"text_config: model_type {s.text_config.get('model_type')!r} is an encoder-decoder "
                              "(Flan-T5 BLIP-2 / InstructBLIP): only decoder-only language models are implemented")
        self.language_model = build_tower(s.text_config, "language_model", dt)
        if not hasattr(self.language_model, "call_with_cache") or not hasattr(self.language_model, "options"):
            raise ConfigError(f"text_config: model_type {s.text_config.get('model_type')!r} is not a decoder")
        text = self.language_model
        self.vocab_size, self.hidden_size = text.vocab_size, text.hidden_size
        self.max_position_embeddings = text.options["max_position_embeddings"]
        self.image_token_index = s.image_token_index
        self.tokens_per_image = s.num_query_tokens
        self.tie_word_embeddings = bool(s.tie_word_embeddings and text.options["tie_word_embeddings"])
        self.num_queries, self.qformer_width = s.num_query_tokens, q.hidden_size
        context = self.vision_model.hidden_size  # as Transformers: the Q-Former reads the vision width
        self.qformer_layers = [
            QFormerLayer(q.hidden_size, q.num_heads, q.intermediate_size, q.hidden_act, q.layer_norm_eps,
                         context_size=context, cross_attention=i % q.cross_attention_frequency == 0,
                         text_ffn=self.instruction_aware or q.use_qformer_text_input, dropout=q.dropout,
                         attention_dropout=q.attention_dropout, name=f"qformer_{i}", dtype=dt)
            for i in range(q.num_layers)]
        self.qformer_norm = keras.layers.LayerNormalization(epsilon=q.layer_norm_eps, name="qformer_norm", dtype=dt)
        self.qformer_word_embedding = self.qformer_position_embedding = None
        if self.instruction_aware:
            self.qformer_word_embedding = keras.layers.Embedding(q.vocab_size, q.hidden_size,
                                                                 name="qformer_word_embedding", dtype=dt)
            self.qformer_position_embedding = keras.layers.Embedding(q.max_position_embeddings, q.hidden_size,
                                                                     name="qformer_position_embedding", dtype=dt)
        self.language_projection = keras.layers.Dense(text.hidden_size, name="language_projection", dtype=dt)

    def dummy_inputs(self):
        return self.spec.dummy_inputs()

    def build(self, input_shape=None):
        self.vision_model.build_from_dummy()
        self.language_model.build_from_dummy()
        d = self.qformer_width
        self.query_tokens = self.add_weight(name="query_tokens", shape=(self.num_queries, d), initializer="zeros")
        for layer in (*self.qformer_layers, self.qformer_norm, self.language_projection):
            layer.build((None, None, d))
        for layer in (self.qformer_word_embedding, self.qformer_position_embedding):
            if layer is not None:
                layer.build((None, None))
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    # --- image features -----------------------------------------------------------------------
    def image_features(self, pixel_values, qformer_input_ids=None, qformer_attention_mask=None, training=False):
        """(images, num_query_tokens, text hidden): the projected Q-Former query outputs."""
        image = self.vision_model({"pixel_values": pixel_values}, training=training)
        b = ops.shape(image)[0]
        x = ops.broadcast_to(ops.cast(self.query_tokens, image.dtype)[None], (b, self.num_queries, self.qformer_width))
        bias = None
        if self.instruction_aware:
            if qformer_input_ids is None:
                raise InputError("InstructBLIP needs qformer_input_ids (the instruction, tokenized by the "
                                 "Q-Former's tokenizer)")
            ids = qformer_input_ids
            positions = ops.arange(ops.shape(ids)[1], dtype="int32")[None, :]
            text = self.qformer_word_embedding(ids) + self.qformer_position_embedding(positions)
            x = ops.concatenate([x, ops.cast(text, x.dtype)], axis=1)
            if qformer_attention_mask is not None:
                mask = ops.concatenate([ops.ones((b, self.num_queries), "int32"),
                                        ops.cast(qformer_attention_mask, "int32")], axis=1)
                bias = padding_bias(mask, x.dtype)
        x = self.qformer_norm(x)
        for layer in self.qformer_layers:
            x = layer(x, bias, image, num_queries=self.num_queries, training=training)
        return self.language_projection(x[:, :self.num_queries])

    def call(self, inputs, training=False):
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        if mask is None:
            mask = ops.ones_like(ids)
        features = self.image_features(inputs["pixel_values"], inputs.get("qformer_input_ids"),
                                       inputs.get("qformer_attention_mask"), training)

        def embed(token_ids, table):
            return self.merge_embeddings(token_ids, table, features)

        return self.language_model._forward(ids, mask, positions_from_mask(mask), training=training, embed=embed)[0]

    # --- weights ------------------------------------------------------------------------------
    def weight_rules(self):
        t = self.language_model
        tp = f"{t.base_model_prefix}." if t.base_model_prefix else ""
        n, d = self.num_queries, self.qformer_width
        r = mount(self.vision_model.weight_rules(), "vision_model.")
        r += mount(t.weight_rules(), f"language_model.{tp}")
        r.append(Rule("query_tokens", self.query_tokens, Reshape((1, n, d), (n, d)), base=False))
        emb = "qformer.embeddings." if self.instruction_aware else "qformer."
        r += norm_rules(emb + "layernorm", self.qformer_norm, base=False)
        if self.instruction_aware:
            r += [Rule(emb + "word_embeddings.weight", self.qformer_word_embedding.embeddings, base=False),
                  Rule(emb + "position_embeddings.weight", self.qformer_position_embedding.embeddings, base=False)]
        for i, layer in enumerate(self.qformer_layers):
            r += mount(layer.rules(f"encoder.layer.{i}."), "qformer.")
        r += dense_rules("language_projection", self.language_projection, base=False)
        return r


@_ser
@register_backbone("blip-2")
class Blip2Backbone(Blip2LikeBackbone):
    spec_cls = Blip2Spec
    hf_architecture = "Blip2Model"
    verified_backends = _ALL


@_ser
@register_backbone("instructblip")
class InstructBlipBackbone(Blip2LikeBackbone):
    spec_cls = InstructBlipSpec
    hf_architecture = "InstructBlipModel"
    verified_backends = _ALL
    instruction_aware = True


class Blip2LikeImageTextToText(ImageTextToText):
    """Logits (batch, seq, vocab) on ``{"input_ids" (holding num_query_tokens image tokens per
    image), "attention_mask", "pixel_values"[, "qformer_input_ids", "qformer_attention_mask"]}``;
    ``generate`` returns the prompt ids followed by the new ids."""

    def generate(self, inputs=None, generation_config=None, *, pixel_values=None, **kwargs):
        """Transformers' ``generate(pixel_values, input_ids=None, attention_mask=None,
        [qformer_input_ids, qformer_attention_mask])``: ``inputs`` a dict of those names (or
        ``pixel_values=`` given apart); without ``input_ids`` the prompt is [image tokens; bos]."""
        b = self.backbone
        if isinstance(inputs, str) or (isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], str)):
            raise InputError("generate: give token ids holding num_query_tokens image tokens per image (as "
                             "Transformers' Blip2Processor / InstructBlipProcessor make them), not text")
        inputs = dict(inputs) if isinstance(inputs, dict) else ({} if inputs is None else {"input_ids": inputs})
        pixel_values = inputs.pop("pixel_values", pixel_values)
        if pixel_values is None:
            raise InputError("generate: give pixel_values (or images)")
        pixels = image_pixels(pixel_values, self.preprocessor)
        qformer = {k: inputs.pop(k) for k in ("qformer_input_ids", "qformer_attention_mask") if k in inputs}
        qformer = {k: np.asarray(backend_to_numpy(v), "int32") for k, v in qformer.items()}
        if inputs.get("input_ids") is None:
            bos = b.language_model.options.get("bos_token_id")
            if bos is None:
                raise InputError("generate: no input_ids, and the language model's config has no bos_token_id")
            row = [b.image_token_index] * b.tokens_per_image + [bos]
            inputs["input_ids"] = np.tile(np.asarray(row, "int32"), (pixels.shape[0], 1))
        ids = np.array(backend_to_numpy(inputs["input_ids"]), "int32", ndmin=2)
        mask = inputs.get("attention_mask")
        mask = np.ones_like(ids) if mask is None else np.array(backend_to_numpy(mask), "int32", ndmin=2)
        b.check_image_inputs({"input_ids": ids, "attention_mask": mask, "pixel_values": pixels}, "generate")
        features = b.image_features(ops.convert_to_tensor(pixels), *(ops.convert_to_tensor(qformer[k]) if k in qformer
                                                                       else None for k in ("qformer_input_ids",
                                                                                           "qformer_attention_mask")))
        self._gen_images = ops.reshape(features, (-1, int(features.shape[-1])))
        try:
            return super(ImageTextToText, self).generate({"input_ids": ids, "attention_mask": mask}, generation_config,
                                                         **kwargs)
        finally:
            self._gen_images = None
            self._gen_extra = None


    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **_):
        """The image processor and the language model's tokenizer (for raw images and decoding);
        prompts are given as ids (Transformers' processor inserts the image tokens)."""
        return ImageToTextProcessor.from_preset(folder)


@_ser
@register_task(Blip2Backbone, "ImageTextToText", ("Blip2ForConditionalGeneration",))
class Blip2ImageTextToText(Blip2LikeImageTextToText):
    pass


@_ser
@register_task(InstructBlipBackbone, "ImageTextToText", ("InstructBlipForConditionalGeneration",))
class InstructBlipImageTextToText(Blip2LikeImageTextToText):
    pass


__all__ = ["QFormerSpec", "QFormerLayer", "Blip2Spec", "InstructBlipSpec", "Blip2LikeBackbone", "Blip2Backbone",
           "InstructBlipBackbone", "Blip2LikeImageTextToText", "Blip2ImageTextToText", "InstructBlipImageTextToText"]
