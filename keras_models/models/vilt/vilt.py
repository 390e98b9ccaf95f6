"""ViLT (``vilt``): one pre-norm transformer over BERT-style text embeddings followed by ViT-style
patch embeddings, each tagged with a modality-type embedding (0 = text, 1 = the image; NLVR2 uses 2
for its second image).

Image tokens. The patch grid comes from the input's size; ``pixel_mask`` (batch, height, width),
1 = real pixel (the image processor pads images of a batch to one size), is sampled onto the
grid (nearest). Each image's position table (the ``image_size / patch_size`` grid of the
checkpoint) is resized bilinearly (corners aligned) to that image's valid rows x columns and
zero-padded to the grid. Patches are then reordered valid-first (raster order) and the first
``n`` are kept, ``n = min(max_image_length, grid patches)`` (``max_image_length < 0``: every
patch); the kept padding patches are masked out of attention.

Differences from Transformers 5, all deliberate:

* Transformers draws the kept patches with ``torch.multinomial`` even in eval: a random order of
  the valid patches, a random subset when an image has more than ``max_image_length``, random
  padding patches. Here the choice is deterministic: the first valid patches in raster order,
  then the first padding patches -- what Transformers computes when its sampler returns the
  first indices (the tests pin it so). Outputs that do not depend on the order (the pooled
  output, every text token) equal Transformers' whenever no image is truncated.
* Transformers trims the image tokens to the batch's largest valid image when
  ``max_image_length < 0``; here their number is static (every grid patch), so a compiled
  forward pass has one shape; the extra tokens are masked padding.

Calling the backbone on ``{"input_ids", "attention_mask", "token_type_ids", "pixel_values"
(channels_last), "pixel_mask"}`` returns ``{"last_hidden_state": (batch, text + 1 + n, hidden),
"pooler_output": (batch, hidden), "attention_mask": the combined (batch, text + 1 + n) mask}``.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.activations import get_activation
from keras_models.layers.masks import padding_bias
from keras_models.layers.vision_block import VisionBlock
from keras_models.layers.vision_embeddings import PatchEmbedding, conv_rules, dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.clip.vision import _square
from keras_models.models.registry import register_backbone, register_task
from keras_models.models.vilt.processing import ViltImageProcessor
from keras_models.presets.weight_map import Reshape, Rule
from keras_models.spec import Spec, dim, hf
from keras_models.tasks.image_text_matching import ImageTextMatcher
from keras_models.tasks.task import Task, labelled_task_kwargs, labels_to_hf
from keras_models.tasks.visual_question_answering import VisualQuestionAnswerer

_ser = keras.saving.register_keras_serializable(package="keras_models")
_ALL = ("jax", "torch", "tensorflow")


@dataclass(frozen=True, kw_only=True)
class ViltSpec(Spec):
    vocab_size: int = dim("vocab_size", 30522)
    type_vocab_size: int = hf("type_vocab_size", 2)
    modality_type_vocab_size: int = hf("modality_type_vocab_size", 2)
    max_position_embeddings: int = dim("max_position_embeddings", 40)
    hidden_size: int = dim("hidden_size", 768)
    num_layers: int = dim("num_hidden_layers", 12)
    num_heads: int = dim("num_attention_heads", 12)
    intermediate_size: int = dim("intermediate_size", 3072)
    hidden_act: str = hf("hidden_act", "gelu")
    dropout: float = hf("hidden_dropout_prob", 0.0)
    attention_dropout: float = hf("attention_probs_dropout_prob", 0.0)
    initializer_range: float = hf("initializer_range", 0.02)
    layer_norm_eps: float = hf("layer_norm_eps", 1e-12)
    image_size: int = hf("image_size", 384, read=_square, dim=True)
    patch_size: int = hf("patch_size", 32, read=_square, dim=True)
    num_channels: int = dim("num_channels", 3)
    qkv_bias: bool = hf("qkv_bias", True)
    max_image_length: int = hf("max_image_length", -1, doc="patches kept per image; < 0: all")
    num_images: int = hf("num_images", -1, doc="images per example of the NLVR2 head")
    pad_token_id: int | None = hf("pad_token_id", None)

    def validate(self, source="config.json"):
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{source}: hidden_size={self.hidden_size} is not divisible by "
                              f"num_attention_heads={self.num_heads}")
        if self.image_size % self.patch_size:
            raise ConfigError(f"{source}: image_size={self.image_size} is not a multiple of "
                              f"patch_size={self.patch_size}")

    def dummy_inputs(self):
        s = self.image_size
        return {"input_ids": np.ones((1, 2), "int32"), "attention_mask": np.ones((1, 2), "int32"),
                "pixel_values": np.zeros((1, s, s, self.num_channels), "float32")}


def _nearest_index(out_size, in_size):
    """torch nearest-neighbour resize: output i reads input floor(i * in / out)."""
    scale = np.float32(in_size) / np.float32(out_size)
    return np.minimum(np.floor(np.arange(out_size, dtype=np.float32) * scale).astype("int64"), in_size - 1)


def _bilinear_rows(valid, out_size, in_size, dtype):
    """(batch, out_size, in_size) weights of a corners-aligned bilinear resize of ``in_size`` rows to
    ``valid`` rows (per example), zero rows beyond ``valid``."""
    valid = ops.cast(valid, "float32")[:, None]
    i = ops.arange(out_size, dtype="float32")[None, :]
    scale = ops.where(valid > 1, (in_size - 1) / ops.maximum(valid - 1, 1.0), 0.0)
    src = i * scale
    lo = ops.minimum(ops.floor(src), in_size - 1)
    hi = ops.minimum(lo + 1, in_size - 1)
    frac = src - lo
    w = (ops.one_hot(ops.cast(lo, "int32"), in_size) * (1.0 - frac)[..., None]
         + ops.one_hot(ops.cast(hi, "int32"), in_size) * frac[..., None])
    return ops.cast(w * ops.cast(i < valid, "float32")[..., None], dtype)


@_ser
@register_backbone("vilt")
class ViltBackbone(SpecBackbone):
    spec_cls = ViltSpec
    hf_architecture = "ViltModel"
    base_model_prefix = "vilt"
    verified_backends = _ALL
    hf_ignore = ("*position_ids", "*token_type_ids")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        self.hidden_size, self.vocab_size, self.num_layers = s.hidden_size, s.vocab_size, s.num_layers
        self.grid = s.image_size // s.patch_size
        init = keras.initializers.TruncatedNormal(stddev=s.initializer_range)
        self._init = init
        common = dict(dtype=self.dtype_policy)
        d = s.hidden_size

        def emb(n, name):
            return keras.layers.Embedding(n, d, embeddings_initializer=init, name=name, **common)

        self.word_embedding = emb(s.vocab_size, "word_embedding")
        self.text_position_embedding = emb(s.max_position_embeddings, "text_position_embedding")
        self.text_type_embedding = emb(s.type_vocab_size, "text_type_embedding")
        self.text_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="text_norm", **common)
        self.modality_embedding = emb(s.modality_type_vocab_size, "modality_embedding")
        self.patch_embedding = PatchEmbedding(d, s.patch_size, s.num_channels, kernel_initializer=init,
                                              name="patch_embedding", **common)
        self.blocks = [VisionBlock(d, s.num_heads, s.intermediate_size, hidden_act=s.hidden_act,
                                   layer_norm_eps=s.layer_norm_eps, qkv_bias=s.qkv_bias, dropout=s.dropout,
                                   attention_dropout=s.attention_dropout, kernel_initializer=init,
                                   name=f"block_{i}", **common)
                       for i in range(s.num_layers)]
        self.final_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="final_norm", **common)
        self.pooler = keras.layers.Dense(d, activation="tanh", kernel_initializer=init, name="pooler", **common)
        self.dropout = keras.layers.Dropout(s.dropout, **common)

    def build(self, input_shape=None):
        s, d = self.spec, self.hidden_size
        self.cls_token = self.add_weight(name="cls_token", shape=(d,), initializer=self._init)
        self.image_position_embedding = self.add_weight(name="image_position_embedding",
                                                        shape=(self.grid * self.grid + 1, d), initializer=self._init)
        for layer in (self.word_embedding, self.text_position_embedding, self.text_type_embedding,
                      self.modality_embedding):
            layer.build((None, None))
        self.text_norm.build((None, None, d))
        self.patch_embedding.build((None, None, None, s.num_channels))
        for layer in (*self.blocks, self.final_norm):
            layer.build((None, None, d))
        self.pooler.build((None, d))
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    # --- embeddings ---------------------------------------------------------------------------
    def text_embeddings(self, inputs, training=False):
        ids = inputs["input_ids"]
        n = ops.shape(ids)[1]
        x = self.word_embedding(ids) + self.text_position_embedding(ops.arange(n, dtype="int32")[None, :])
        types = inputs.get("token_type_ids")
        x = x + self.text_type_embedding(ops.zeros_like(ids) if types is None else types)
        return self.dropout(self.text_norm(x), training=training)

    def image_embeddings(self, pixel_values, pixel_mask=None, training=False):
        """(tokens (batch, 1 + n, hidden), mask (batch, 1 + n)): [CLS] and the kept patches."""
        if len(pixel_values.shape) != 4:
            raise InputError(f"pixel_values must be (batch, height, width, channels), got shape "
                             f"{tuple(pixel_values.shape)}")
        s, d = self.spec, self.hidden_size
        x = self.patch_embedding(ops.cast(pixel_values, self.compute_dtype))
        b, gh, gw = ops.shape(x)[0], x.shape[1], x.shape[2]
        if gh is None or gw is None:
            raise InputError("pixel_values: ViLT needs a static image height and width")
        if pixel_mask is None:
            grid_mask = ops.ones((b, gh, gw), "int32")
        else:
            if len(pixel_mask.shape) != 3:
                raise InputError(f"pixel_mask must be (batch, height, width), got shape {tuple(pixel_mask.shape)}")
            mh, mw = pixel_mask.shape[1], pixel_mask.shape[2]
            grid_mask = ops.take(ops.take(ops.cast(pixel_mask, "int32"), _nearest_index(gh, mh), axis=1),
                                 _nearest_index(gw, mw), axis=2)
        rows = ops.sum(grid_mask[:, :, 0], axis=1)
        cols = ops.sum(grid_mask[:, 0, :], axis=1)
        table = ops.cast(self.image_position_embedding, x.dtype)
        grid = ops.reshape(table[1:], (self.grid, self.grid, d))
        wh = _bilinear_rows(rows, gh, self.grid, x.dtype)
        ww = _bilinear_rows(cols, gw, self.grid, x.dtype)
        pos = ops.einsum("bip,pqd,bjq->bijd", wh, grid, ww)
        n_all = gh * gw
        x = ops.reshape(x + pos, (b, n_all, d))
        flat = ops.reshape(grid_mask, (b, n_all))
        keep = n_all if s.max_image_length < 0 else min(s.max_image_length, n_all)
        order = ops.argsort((1 - flat) * n_all + ops.arange(n_all, dtype="int32")[None, :], axis=1)[:, :keep]
        x = ops.take_along_axis(x, order[..., None], axis=1)
        flat = ops.take_along_axis(flat, order, axis=1)
        cls = ops.broadcast_to((ops.cast(self.cls_token, x.dtype) + table[0])[None, None, :], (b, 1, d))
        x = self.dropout(ops.concatenate([cls, x], axis=1), training=training)
        return x, ops.concatenate([ops.ones((b, 1), "int32"), flat], axis=1)

    # --- forward ------------------------------------------------------------------------------
    def call(self, inputs, training=False, image_token_type_idx=1):
        if "pixel_values" not in inputs or "input_ids" not in inputs:
            raise InputError("ViLT takes input_ids and pixel_values")
        text = self.text_embeddings(inputs, training)
        image, image_mask = self.image_embeddings(inputs["pixel_values"], inputs.get("pixel_mask"), training)
        text_mask = inputs.get("attention_mask")
        if text_mask is None:
            text_mask = ops.ones(ops.shape(inputs["input_ids"]), "int32")
        text = text + self.modality_embedding(ops.zeros_like(ops.cast(text_mask, "int32")))
        image = image + self.modality_embedding(ops.full(ops.shape(image_mask), image_token_type_idx, "int32"))
        x = ops.concatenate([text, image], axis=1)
        mask = ops.concatenate([ops.cast(text_mask, "int32"), image_mask], axis=1)
        bias = padding_bias(mask, x.dtype)
        for block in self.blocks:
            x = block(x, bias, training=training)
        x = self.final_norm(x)
        return {"last_hidden_state": x, "pooler_output": self.pooler(x[:, 0]), "attention_mask": mask}

    # --- HF conversion ------------------------------------------------------------------------
    def weight_rules(self):
        d, n = self.hidden_size, self.grid * self.grid + 1
        t = "embeddings.text_embeddings."
        r = [Rule(t + "word_embeddings.weight", self.word_embedding.embeddings),
             Rule(t + "position_embeddings.weight", self.text_position_embedding.embeddings),
             Rule(t + "token_type_embeddings.weight", self.text_type_embedding.embeddings),
             *norm_rules(t + "LayerNorm", self.text_norm),
             Rule("embeddings.cls_token", self.cls_token, Reshape((1, 1, d), (d,))),
             Rule("embeddings.position_embeddings", self.image_position_embedding, Reshape((1, n, d), (n, d))),
             Rule("embeddings.token_type_embeddings.weight", self.modality_embedding.embeddings),
             *conv_rules("embeddings.patch_embeddings.projection", self.patch_embedding.projection)]
        names = (("query", "attention.attention.query"), ("key", "attention.attention.key"),
                 ("value", "attention.attention.value"), ("output_dense", "attention.output.dense"))
        for i, block in enumerate(self.blocks):
            p = f"encoder.layer.{i}."
            for ours, theirs in names:
                r += dense_rules(p + theirs, getattr(block.attention, ours))
            r += dense_rules(p + "intermediate.dense", block.fc1) + dense_rules(p + "output.dense", block.fc2)
            r += norm_rules(p + "layernorm_before", block.norm1) + norm_rules(p + "layernorm_after", block.norm2)
        return r + norm_rules("layernorm", self.final_norm) + dense_rules("pooler.dense", self.pooler)


# --- heads ----------------------------------------------------------------------------------------
class _ViltHead:
    @classmethod
    def preprocessor_from_preset(cls, folder, hf, **_):
        """The tokenizer and :class:`ViltImageProcessor` (its ``pixel_mask`` feeds the model)."""
        from keras_models.preprocessing.image import CONFIG_NAME
        from keras_models.tasks.image_to_text import ImageToTextProcessor

        proc = ImageToTextProcessor.from_preset(folder)
        if proc is not None and (folder / CONFIG_NAME).is_file():
            proc.image_processor = ViltImageProcessor.from_preset(folder)
        return proc

    def save_extra_files(self, folder):
        super().save_extra_files(folder)  # the tokenizer
        image = getattr(self.preprocessor, "image_processor", None)
        if image is not None and not isinstance(self, ImageTextMatcher | VisualQuestionAnswerer):
            image.save_pretrained(folder)

    def build(self, input_shape=None):
        self.backbone.build_from_dummy()
        self.build_head(self.backbone.hidden_size)
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self


def _mlp_rules(prefix, first, norm, last):
    return (dense_rules(prefix + ".0", first, base=False) + norm_rules(prefix + ".1", norm, base=False)
            + dense_rules(prefix + ".3", last, base=False))


class _LabelHead(_ViltHead):
    """A classifier with ``num_classes`` / ``id2label`` from config.json."""

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, num_classes=None, **kwargs):
        return labelled_task_kwargs(hf, num_classes, head_from_checkpoint, kwargs)

    def task_config_to_hf(self):
        return labels_to_hf(self.id2label, self.num_classes)

    def get_config(self):
        c = super().get_config()
        c.update(num_classes=self.num_classes, id2label=self.id2label)
        return c


@_ser
@register_task(ViltBackbone, "VisualQuestionAnswerer", ("ViltForQuestionAnswering",))
class ViltQuestionAnswerer(_LabelHead, VisualQuestionAnswerer):
    """VQA as multi-label classification: the pooled output through dense (2x wide), LayerNorm,
    exact GELU, dense -> logits (batch, num_classes) (sigmoid scores; trained with binary
    cross-entropy, as Transformers)."""

    hf_head_patterns = ("classifier.*",)

    def __init__(self, backbone, num_classes=2, id2label=None, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.num_classes = int(num_classes)
        self.id2label = {int(k): v for k, v in id2label.items()} if id2label else None
        dt, d = backbone.dtype_policy, backbone.hidden_size
        self.dense = keras.layers.Dense(2 * d, name="dense", dtype=dt)
        self.norm = keras.layers.LayerNormalization(epsilon=1e-5, name="norm", dtype=dt)
        self.out = keras.layers.Dense(self.num_classes, name="out", dtype=dt)

    def build_head(self, d):
        self.dense.build((None, d))
        self.norm.build((None, 2 * d))
        self.out.build((None, 2 * d))

    def call(self, inputs, training=False):
        pooled = self.backbone(inputs, training=training)["pooler_output"]
        return self.out(ops.gelu(self.norm(self.dense(pooled)), approximate=False))

    def default_loss(self):
        return keras.losses.BinaryCrossentropy(from_logits=True)

    def head_rules(self):
        return _mlp_rules("classifier", self.dense, self.norm, self.out)


@_ser
@register_task(ViltBackbone, "ImageTextMatcher", ("ViltForImageAndTextRetrieval",))
class ViltImageTextMatcher(_ViltHead, ImageTextMatcher):
    """Image-text retrieval: ``rank_output`` on the pooled output -> a score (batch, 1)."""

    hf_head_patterns = ("rank_output.*",)

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.rank_output = keras.layers.Dense(1, name="rank_output", dtype=backbone.dtype_policy)

    def build_head(self, d):
        self.rank_output.build((None, d))

    def call(self, inputs, training=False):
        return self.rank_output(self.backbone(inputs, training=training)["pooler_output"])

    def head_rules(self):
        return dense_rules("rank_output", self.rank_output, base=False)


@_ser
@register_task(ViltBackbone, "MaskedLM", ("ViltForMaskedLM",))
class ViltMaskedLM(_ViltHead, Task):
    """Masked language modelling over the text tokens (read in the context of the image): dense,
    activation, LayerNorm, then the word-embedding table (tied) plus a bias -> (batch, text, vocab)."""

    hf_head_patterns = ("mlm_score.*",)

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        dt, s = backbone.dtype_policy, backbone.spec
        self.transform = keras.layers.Dense(backbone.hidden_size, name="transform", dtype=dt)
        self.transform_act = get_activation(s.hidden_act)
        self.transform_norm = keras.layers.LayerNormalization(epsilon=s.layer_norm_eps, name="transform_norm",
                                                              dtype=dt)

    def build_head(self, d):
        self.transform.build((None, d))
        self.transform_norm.build((None, d))
        self.output_bias = self.add_weight(name="output_bias", shape=(self.backbone.vocab_size,), initializer="zeros")

    def call(self, inputs, training=False):
        h = self.backbone(inputs, training=training)["last_hidden_state"]
        h = h[:, : ops.shape(inputs["input_ids"])[1]]
        h = self.transform_norm(self.transform_act(self.transform(h)))
        table = ops.cast(self.backbone.word_embedding.embeddings, h.dtype)
        return ops.matmul(h, ops.transpose(table)) + ops.cast(self.output_bias, h.dtype)

    def head_rules(self):
        p = "mlm_score."
        return (dense_rules(p + "transform.dense", self.transform, base=False)
                + norm_rules(p + "transform.LayerNorm", self.transform_norm, base=False)
                + [Rule(p + "decoder.bias", self.output_bias, base=False, aliases=(p + "bias",)),
                   Rule(p + "decoder.weight", self.backbone.word_embedding.embeddings, base=False, optional=True,
                        export=False)])


@_ser
@register_task(ViltBackbone, "ImagesAndTextClassifier", ("ViltForImagesAndTextClassification",))
class ViltImagesAndTextClassifier(_LabelHead, Task):
    """NLVR2: ``pixel_values`` (batch, num_images, height, width, channels) and ``pixel_mask``
    (batch, num_images, height, width); the text runs once per image (image ``i`` tagged with
    modality type ``i + 1``), the pooled outputs are concatenated and classified (dense, LayerNorm,
    exact GELU, dense) -> logits (batch, num_classes)."""

    hf_head_patterns = ("classifier.*",)

    def __init__(self, backbone, num_classes=2, id2label=None, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.num_classes = int(num_classes)
        self.id2label = {int(k): v for k, v in id2label.items()} if id2label else None
        self.num_images = backbone.spec.num_images
        if self.num_images < 1:
            raise ConfigError(f"num_images={self.num_images}: ViltForImagesAndTextClassification needs num_images "
                              ">= 1 in config.json")
        dt, w = backbone.dtype_policy, backbone.hidden_size * self.num_images
        self.dense = keras.layers.Dense(w, name="dense", dtype=dt)
        self.norm = keras.layers.LayerNormalization(epsilon=1e-5, name="norm", dtype=dt)
        self.out = keras.layers.Dense(self.num_classes, name="out", dtype=dt)

    def build_head(self, d):
        w = d * self.num_images
        self.dense.build((None, w))
        self.norm.build((None, w))
        self.out.build((None, w))

    def call(self, inputs, training=False):
        pixels, pmask = inputs["pixel_values"], inputs.get("pixel_mask")
        if len(pixels.shape) != 5 or pixels.shape[1] != self.num_images:
            raise InputError(f"pixel_values must be (batch, {self.num_images}, height, width, channels), got shape "
                             f"{tuple(pixels.shape)}")
        pooled = []
        for i in range(self.num_images):
            one = dict(inputs, pixel_values=pixels[:, i])
            if pmask is not None:
                one["pixel_mask"] = pmask[:, i]
            pooled.append(self.backbone(one, training=training, image_token_type_idx=i + 1)["pooler_output"])
        h = ops.concatenate(pooled, axis=-1)
        return self.out(ops.gelu(self.norm(self.dense(h)), approximate=False))

    def default_loss(self):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def head_rules(self):
        return _mlp_rules("classifier", self.dense, self.norm, self.out)


__all__ = ["ViltImageProcessor", "ViltSpec", "ViltBackbone", "ViltQuestionAnswerer", "ViltImageTextMatcher", "ViltMaskedLM",
           "ViltImagesAndTextClassifier"]
