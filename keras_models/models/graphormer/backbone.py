"""Graphormer (model_type ``graphormer``, removed from Transformers 5): a transformer encoder over a
graph's nodes plus a graph token, with the graph's structure as attention biases.

* Node features: the sum of each node's ``atom_encoder`` rows (one per node feature) plus its
  in- and out-degree embeddings; the ``graph_token`` row goes first. Then optionally
  ``embed_scale``, a bias-free projection (``q_noise`` > 0: Transformers' quant-noise Linear, which
  also runs at inference; its training-time weight noise is not applied here) and a LayerNorm
  (``encoder_normalize_before``).
* Attention bias per head: the collator's ``attn_bias`` (-inf beyond its spatial_pos_max), counted
  twice as in Transformers, + a per-head table of shortest-path lengths (``spatial_pos_encoder``)
  + ``graph_token_virtual_distance`` on the graph token's row and column + the edge encoding:
  ``multi_hop`` averages each hop's edge-feature rows, mixes each hop through its own
  (heads x heads) matrix (``edge_dis_encoder``, hops cut at ``multi_hop_max_dist`` when > 0) and
  divides the sum by the path length; any other ``edge_type`` averages the direct edge's rows.
  Padding nodes (first node feature 0) are masked as keys.
* Post-norm (or ``pre_layernorm``) blocks, LayerNorm eps 1e-5; the output is
  ``layer_norm(activation(lm_head_transform_weight(x)))`` (Transformers' GraphormerModel output).

With ``pre_layernorm`` Transformers builds a final LayerNorm it never applies; it is loaded and
saved, not used. ``share_input_output_embed`` has no effect in Transformers (there is no input
embedding to share) nor here; ``layerdrop`` and ``num_trans_layers_to_freeze`` act in training
only (the frozen blocks are made non-trainable here, layer drop is not applied).
"""

from dataclasses import dataclass
from typing import ClassVar

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.activations import get_activation
from keras_models.layers.encoder_block import EncoderBlock
from keras_models.layers.masks import mask_value
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.graphormer.preprocessing import MODEL_INPUTS
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, dim, hf
from keras_models.tasks.graph import GraphClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")
_EPS = 1e-5  # nn.LayerNorm's default, used by every Graphormer norm


@dataclass(frozen=True, kw_only=True)
class GraphormerSpec(Spec):
    unsupported: ClassVar[dict] = {"freeze_embeddings": (False, None), "self_attention": (True, None),
                                   "bias": (True, None)}
    ignored: ClassVar[tuple] = ("share_input_output_embed", "traceable", "apply_graphormer_init", "max_nodes",
                                "num_classes")

    num_atoms: int = dim("num_atoms", 512 * 9, doc="node feature ids (the table has num_atoms + 1 rows)")
    num_edges: int = dim("num_edges", 512 * 3, doc="edge feature ids (num_edges + 1 rows)")
    num_in_degree: int = dim("num_in_degree", 512)
    num_out_degree: int = dim("num_out_degree", 512)
    num_spatial: int = dim("num_spatial", 512)
    num_edge_dis: int = dim("num_edge_dis", 128)
    multi_hop_max_dist: int = hf("multi_hop_max_dist", 5, doc="hops kept by multi_hop (0: all)")
    spatial_pos_max: int = hf("spatial_pos_max", 1024, doc="not read by the model (the collator has its own)")
    edge_type: str = hf("edge_type", "multi_hop")
    num_layers: int = dim("num_hidden_layers", 12)
    hidden_size: int = dim("embedding_dim", 768)
    ffn_dim: int = dim("ffn_embedding_dim", 768)
    num_heads: int = dim("num_attention_heads", 32)
    kdim: int | None = hf("kdim", None)
    vdim: int | None = hf("vdim", None)
    dropout: float = hf("dropout", 0.1)
    attention_dropout: float = hf("attention_dropout", 0.1)
    activation_dropout: float = hf("activation_dropout", 0.1)
    layerdrop: float = hf("layerdrop", 0.0)
    encoder_normalize_before: bool = hf("encoder_normalize_before", False)
    pre_layernorm: bool = hf("pre_layernorm", False)
    activation_fn: str = hf("activation_fn", "gelu")
    embed_scale: float | None = hf("embed_scale", None)
    q_noise: float = hf("q_noise", 0.0)
    qn_block_size: int = hf("qn_block_size", 8)
    num_trans_layers_to_freeze: int = hf("num_trans_layers_to_freeze", 0)

    def validate(self, source="config.json"):
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{source}: embedding_dim ({self.hidden_size}) must be a multiple of "
                              f"num_attention_heads ({self.num_heads})")
        for key in ("kdim", "vdim"):
            if getattr(self, key) not in (None, self.hidden_size):
                raise ConfigError(f"{source}: {key}={getattr(self, key)} must equal embedding_dim "
                                  f"({self.hidden_size}) or be null (Graphormer's attention is self-attention)")
        if self.multi_hop_max_dist < 0:
            raise ConfigError(f"{source}: multi_hop_max_dist must be >= 0, got {self.multi_hop_max_dist}")
        if not 0 <= self.num_trans_layers_to_freeze <= self.num_layers:
            raise ConfigError(f"{source}: num_trans_layers_to_freeze={self.num_trans_layers_to_freeze} is not "
                              f"between 0 and num_hidden_layers={self.num_layers}")
        try:
            get_activation(self.activation_fn)
        except (KeyError, ValueError) as e:
            raise ConfigError(f"{source}: activation_fn={self.activation_fn!r} is not supported ({e})") from e

    def dummy_inputs(self):
        n = 2
        return {"input_nodes": np.full((1, n, 1), 3, "int32"), "input_edges": np.zeros((1, n, n, 1, 1), "int32"),
                "attn_bias": np.zeros((1, n + 1, n + 1), "float32"), "in_degree": np.ones((1, n), "int32"),
                "out_degree": np.ones((1, n), "int32"), "spatial_pos": np.ones((1, n, n), "int32"),
                "attn_edge_type": np.zeros((1, n, n, 1), "int32")}


@_ser
@register_backbone("graphormer")
class GraphormerBackbone(SpecBackbone):
    """The collator's arrays (see :mod:`keras_models.tasks.graph`) -> the hidden state
    (batch, 1 + nodes, hidden), the graph token first."""

    spec_cls = GraphormerSpec
    base_model_prefix = "encoder"
    hf_architecture = "GraphormerModel"
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, d = self.spec, self.dtype_policy
        h, heads = s.hidden_size, s.num_heads

        def table(rows, width, name):
            return keras.layers.Embedding(rows, width, name=name, dtype=d)

        self.atom_encoder = table(s.num_atoms + 1, h, "atom_encoder")
        self.in_degree_encoder = table(s.num_in_degree, h, "in_degree_encoder")
        self.out_degree_encoder = table(s.num_out_degree, h, "out_degree_encoder")
        self.edge_encoder = table(s.num_edges + 1, heads, "edge_encoder")
        self.spatial_pos_encoder = table(s.num_spatial, heads, "spatial_pos_encoder")
        self.quant_noise = keras.layers.Dense(h, use_bias=False, name="quant_noise", dtype=d) if s.q_noise > 0 else None
        norm = dict(epsilon=_EPS, dtype=d)
        self.emb_layer_norm = (keras.layers.LayerNormalization(name="emb_layer_norm", **norm)
                               if s.encoder_normalize_before else None)
        self.final_layer_norm = (keras.layers.LayerNormalization(name="final_layer_norm", **norm)
                                 if s.pre_layernorm else None)  # built by Transformers, never applied
        self.drop = keras.layers.Dropout(s.dropout, dtype=d)
        self.blocks = [EncoderBlock(h, heads, s.ffn_dim, hidden_act=s.activation_fn, layer_norm_eps=_EPS,
                                    dropout=s.dropout, attention_dropout=s.attention_dropout,
                                    norm_first=s.pre_layernorm, name=f"block_{i}", dtype=d)
                       for i in range(s.num_layers)]
        for block in self.blocks[:s.num_trans_layers_to_freeze]:
            block.trainable = False
        self.lm_head_transform_weight = keras.layers.Dense(h, name="lm_head_transform_weight", dtype=d)
        self.act = get_activation(s.activation_fn)
        self.layer_norm = keras.layers.LayerNormalization(name="layer_norm", **norm)

    def build(self, input_shape=None):
        s = self.spec
        h, heads = s.hidden_size, s.num_heads
        for t in (self.atom_encoder, self.in_degree_encoder, self.out_degree_encoder, self.edge_encoder,
                  self.spatial_pos_encoder):
            t.build((None, None))
        self.graph_token = self.add_weight(name="graph_token", shape=(1, h), initializer="zeros")
        self.virtual_distance = self.add_weight(name="graph_token_virtual_distance", shape=(1, heads),
                                                initializer="zeros")
        self.edge_dis_encoder = (self.add_weight(name="edge_dis_encoder", shape=(s.num_edge_dis * heads * heads, 1),
                                                 initializer="zeros") if s.edge_type == "multi_hop" else None)
        for layer in (self.quant_noise, self.emb_layer_norm, self.final_layer_norm, self.lm_head_transform_weight,
                      self.layer_norm, *self.blocks):
            if layer is not None:
                layer.build((None, None, h))
        self.built = True

    # --- attention bias ------------------------------------------------------------------------
    def edge_bias(self, inputs):
        """(batch, heads, nodes, nodes) edge encoding."""
        s = self.spec
        if s.edge_type != "multi_hop":
            e = ops.mean(self.edge_encoder(ops.cast(inputs["attn_edge_type"], "int32")), axis=-2)
            return ops.transpose(e, (0, 3, 1, 2))
        edges = inputs["input_edges"]
        spatial = ops.cast(inputs["spatial_pos"], "int32")
        hops = ops.where(ops.equal(spatial, 0), 1, spatial)  # padding -> 1
        hops = ops.where(hops > 1, hops - 1, hops)
        if s.multi_hop_max_dist > 0:
            hops = ops.clip(hops, 0, s.multi_hop_max_dist)
            edges = edges[:, :, :, :s.multi_hop_max_dist]
        dist = edges.shape[3]
        if dist is not None and dist > s.num_edge_dis:
            raise InputError(f"Graphormer: input_edges has paths of {dist} hops, more than num_edge_dis="
                             f"{s.num_edge_dis} (set multi_hop_max_dist or shorten the paths)")
        e = ops.mean(self.edge_encoder(ops.cast(edges, "int32")), axis=-2)  # (b, n, n, hops, heads)
        mix = ops.reshape(ops.cast(self.edge_dis_encoder, e.dtype), (-1, s.num_heads, s.num_heads))[:ops.shape(e)[3]]
        e = ops.sum(ops.einsum("bijdh,dhk->bijdk", e, mix), axis=3) / ops.cast(hops, e.dtype)[..., None]
        return ops.transpose(e, (0, 3, 1, 2))

    def attention_bias(self, inputs):
        """(batch, heads, 1 + nodes, 1 + nodes) additive bias, padding nodes masked as keys."""
        dtype = self.compute_dtype
        floor = mask_value(dtype)
        given = ops.maximum(ops.cast(inputs["attn_bias"], dtype), floor)  # -inf -> a large finite negative
        spatial = ops.transpose(self.spatial_pos_encoder(ops.cast(inputs["spatial_pos"], "int32")), (0, 3, 1, 2))
        nodes = ops.pad(spatial + self.edge_bias(inputs), ((0, 0), (0, 0), (1, 0), (1, 0)))
        size = ops.shape(given)[-1]
        idx = ops.arange(size)
        token = ops.cast(ops.logical_or(idx[:, None] == 0, idx[None, :] == 0), dtype)  # graph token row / column
        t = ops.reshape(ops.cast(self.virtual_distance, dtype), (1, -1, 1, 1))
        bias = 2.0 * given[:, None] + nodes + t * token[None, None]
        padding = ops.equal(ops.cast(inputs["input_nodes"], "int32")[:, :, 0], 0)
        padding = ops.pad(ops.cast(padding, dtype), ((0, 0), (1, 0)))
        return bias + (padding * floor)[:, None, None, :]

    # --- forward -------------------------------------------------------------------------------
    def node_features(self, inputs):
        nodes = ops.cast(inputs["input_nodes"], "int32")
        x = (ops.sum(self.atom_encoder(nodes), axis=-2) + self.in_degree_encoder(ops.cast(inputs["in_degree"], "int32"))
             + self.out_degree_encoder(ops.cast(inputs["out_degree"], "int32")))
        token = ops.broadcast_to(ops.cast(self.graph_token, x.dtype)[None], (ops.shape(x)[0], 1, self.spec.hidden_size))
        return ops.concatenate([token, x], axis=1)

    def call(self, inputs, training=False):
        s = self.spec
        missing = [k for k in MODEL_INPUTS if not isinstance(inputs, dict) or k not in inputs]
        if missing:
            raise InputError(f"Graphormer: inputs must be a dict with {', '.join(MODEL_INPUTS)} (missing "
                             f"{', '.join(missing)}); km.models.GraphormerCollator makes them from graphs")
        for key, rank in (("input_nodes", 3), ("input_edges", 5), ("attn_bias", 3), ("spatial_pos", 3),
                          ("attn_edge_type", 4), ("in_degree", 2), ("out_degree", 2)):
            if len(inputs[key].shape) != rank:
                raise InputError(f"Graphormer: {key} must have {rank} dimensions, got shape {tuple(inputs[key].shape)}")
        bias = self.attention_bias(inputs)
        x = self.node_features(inputs)
        if s.embed_scale is not None:
            x = x * s.embed_scale
        if self.quant_noise is not None:
            x = self.quant_noise(x)
        if self.emb_layer_norm is not None:
            x = self.emb_layer_norm(x)
        x = self.drop(x, training=training)
        for block in self.blocks:
            x = block(x, bias, training=training)
        return self.layer_norm(self.act(self.lm_head_transform_weight(x)))

    def weight_rules(self):
        g = "graph_encoder."
        f, a = g + "graph_node_feature.", g + "graph_attn_bias."
        r = [Rule(f + "atom_encoder.weight", self.atom_encoder.embeddings),
             Rule(f + "in_degree_encoder.weight", self.in_degree_encoder.embeddings),
             Rule(f + "out_degree_encoder.weight", self.out_degree_encoder.embeddings),
             Rule(f + "graph_token.weight", self.graph_token),
             Rule(a + "edge_encoder.weight", self.edge_encoder.embeddings),
             Rule(a + "spatial_pos_encoder.weight", self.spatial_pos_encoder.embeddings),
             Rule(a + "graph_token_virtual_distance.weight", self.virtual_distance)]
        if self.edge_dis_encoder is not None:
            r.append(Rule(a + "edge_dis_encoder.weight", self.edge_dis_encoder))
        if self.quant_noise is not None:
            r += dense_rules(g + "quant_noise", self.quant_noise)
        for name in ("emb_layer_norm", "final_layer_norm"):
            if getattr(self, name) is not None:
                r += norm_rules(g + name, getattr(self, name))
        for i, b in enumerate(self.blocks):
            p = f"{g}layers.{i}."
            att = b.attention
            for name, dense in (("self_attn.q_proj", att.query), ("self_attn.k_proj", att.key),
                                ("self_attn.v_proj", att.value), ("self_attn.out_proj", att.output_dense),
                                ("fc1", b.intermediate), ("fc2", b.output_dense)):
                r += dense_rules(p + name, dense)
            r += norm_rules(p + "self_attn_layer_norm", b.attention_norm) + norm_rules(p + "final_layer_norm",
                                                                                      b.output_norm)
        return r + dense_rules("lm_head_transform_weight", self.lm_head_transform_weight) + norm_rules(
            "layer_norm", self.layer_norm)


@_ser
@register_task(GraphormerBackbone, "GraphClassifier", ("GraphormerForGraphClassification",))
class GraphormerGraphClassifier(GraphClassifier):
    """Logits (batch, num_classes) from the graph token: a bias-free projection plus one learned
    scalar bias (``classifier.lm_output_learned_bias``)."""

    hf_head_patterns = ("classifier.*",)

    def __init__(self, backbone, num_classes=1, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        self.num_classes = int(num_classes)
        self.classifier = keras.layers.Dense(self.num_classes, use_bias=False, name="classifier",
                                             dtype=self.dtype_policy)
        self.classifier.build((None, backbone.spec.hidden_size))
        self.learned_bias = self.add_weight(name="lm_output_learned_bias", shape=(1,), initializer="zeros")

    @classmethod
    def task_config_from_hf(cls, hf, head_from_checkpoint, num_classes=None, **kwargs):
        ckpt = hf.get("num_classes", 1)
        if not isinstance(ckpt, int) or isinstance(ckpt, bool) or ckpt < 1:
            raise ConfigError(f"config.json: num_classes must be a positive integer, got {ckpt!r}")
        if num_classes is not None and num_classes != ckpt:
            kwargs["_head_from_checkpoint"] = False  # a new head of the requested width
        kwargs["num_classes"] = ckpt if num_classes is None else num_classes
        return kwargs

    def task_config_to_hf(self):
        return {"num_classes": self.num_classes}

    def call(self, inputs, training=False):
        token = self.backbone(inputs, training=training)[:, 0]
        return self.classifier(token) + ops.cast(self.learned_bias, token.dtype)

    def head_rules(self):
        return (dense_rules("classifier.classifier", self.classifier, base=False)
                + [Rule("classifier.lm_output_learned_bias", self.learned_bias, base=False)])

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


__all__ = ["GraphormerSpec", "GraphormerBackbone", "GraphormerGraphClassifier"]
