"""Trajectory Transformer (model_type ``trajectory_transformer``, removed from Transformers 5): a
GPT over discretised trajectories, each transition being ``transition_dim`` tokens (observation,
action, reward, value dimensions, each discretised into ``vocab_size`` bins).

* Token ``t`` at position ``p`` is embedded as row ``t + (p % transition_dim) * vocab_size`` of
  ``tok_emb`` (each dimension has its own block of the table); the stop token (``t == vocab_size``)
  takes the table's last row. A learned position table (``pos_emb``, ``block_size`` rows) is added.
* Pre-norm blocks (LayerNorm eps 1e-5, exact GELU, 4 x hidden MLP, separate query / key / value
  projections) under a causal mask that also hides every ``observation_dim + action_dim + 2``-th
  position as a key (the value estimates: Transformers' ``mask[:, joined - 1::joined] = 0``).
* The head is one (vocab_size + 1, hidden) projection per transition dimension (``head.weight``,
  (transition_dim, vocab_size + 1, hidden)): position ``p`` reads projection ``p % transition_dim``.

Config keys Transformers' model does not read are not read here either: ``layer_norm_eps`` (the
norms are nn.LayerNorm's default 1e-5), ``hidden_act`` (always exact GELU),
``max_position_embeddings`` (``block_size`` sizes the position table), ``learning_rate`` and the
initialiser ranges.

The backbone returns the final-norm output (batch, seq, hidden);
:class:`TrajectoryTransformerTrajectoryPredictor` (``km.TrajectoryPredictor``) returns
``{"logits"}`` (batch, seq, vocab_size + 1), plus ``"loss"`` when the inputs hold ``targets``:
Transformers' cross-entropy, weighted per dimension (observation 1, ``action_weight``,
``reward_weight``, ``value_weight``) when any weight is not 1, times ``attention_mask`` (ones when
absent), averaged over every position; targets of -100 count 0.
"""

from dataclasses import dataclass
from typing import ClassVar

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.encoder_block import EncoderBlock
from keras_models.layers.masks import mask_value
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, dim, hf
from keras_models.tasks.trajectory import TrajectoryPredictor

_ser = keras.saving.register_keras_serializable(package="keras_models")
_EPS = 1e-5  # nn.LayerNorm's default: config.json's layer_norm_eps is not read by Transformers either


@dataclass(frozen=True, kw_only=True)
class TrajectoryTransformerSpec(Spec):
    ignored: ClassVar[tuple] = ("layer_norm_eps", "hidden_act", "max_position_embeddings", "learning_rate",
                                "initializer_range", "kaiming_initializer_range")

    vocab_size: int = dim("vocab_size", 100, doc="bins per dimension (the stop token is vocab_size)")
    transition_dim: int = dim("transition_dim", 25, doc="tokens per transition")
    observation_dim: int = dim("observation_dim", 17)
    action_dim: int = dim("action_dim", 6)
    block_size: int = dim("block_size", 249, doc="the longest sequence (position table rows)")
    num_layers: int = dim("n_layer", 4)
    num_heads: int = dim("n_head", 4)
    hidden_size: int = dim("n_embd", 128)
    action_weight: float = hf("action_weight", 5)
    reward_weight: float = hf("reward_weight", 1)
    value_weight: float = hf("value_weight", 1)
    embd_pdrop: float = hf("embd_pdrop", 0.1)
    attn_pdrop: float = hf("attn_pdrop", 0.1)
    resid_pdrop: float = hf("resid_pdrop", 0.1)

    def validate(self, source="config.json"):
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"{source}: n_embd ({self.hidden_size}) must be a multiple of n_head ({self.num_heads})")

    def dummy_inputs(self):
        return {"trajectories": np.zeros((1, 2), "int32")}


@_ser
@register_backbone("trajectory_transformer")
class TrajectoryTransformerBackbone(SpecBackbone):
    """``{"trajectories"}`` (batch, seq) ints in [0, vocab_size] -> the final-norm hidden state
    (batch, seq, hidden)."""

    spec_cls = TrajectoryTransformerSpec
    base_model_prefix = ""
    hf_architecture = "TrajectoryTransformerModel"
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, d = self.spec, self.dtype_policy
        self.hidden_size = s.hidden_size
        self.tok_emb = keras.layers.Embedding(s.vocab_size * s.transition_dim + 1, s.hidden_size, name="tok_emb",
                                              dtype=d)
        self.drop = keras.layers.Dropout(s.embd_pdrop, dtype=d)
        self.blocks = [EncoderBlock(s.hidden_size, s.num_heads, 4 * s.hidden_size, hidden_act="gelu",
                                    layer_norm_eps=_EPS, dropout=s.resid_pdrop, attention_dropout=s.attn_pdrop,
                                    norm_first=True, name=f"block_{i}", dtype=d) for i in range(s.num_layers)]
        self.ln_f = keras.layers.LayerNormalization(epsilon=_EPS, name="ln_f", dtype=d)

    def build(self, input_shape=None):
        s = self.spec
        self.tok_emb.build((None, None))
        self.pos_emb = self.add_weight(name="pos_emb", shape=(1, s.block_size, s.hidden_size), initializer="zeros")
        for block in self.blocks:
            block.build((None, None, s.hidden_size))
        self.ln_f.build((None, None, s.hidden_size))
        self.built = True

    def attention_bias(self, seq):
        """(1, 1, seq, seq): causal, and every (observation_dim + action_dim + 2)-th key hidden."""
        s = self.spec
        joined = s.observation_dim + s.action_dim + 2
        q = ops.arange(seq)[:, None]
        k = ops.arange(seq)[None, :]
        allowed = ops.logical_and(k <= q, ops.not_equal(k % joined, joined - 1))
        return ops.where(allowed, 0.0, mask_value(self.compute_dtype))[None, None]

    def call(self, inputs, training=False):
        s = self.spec
        traj = inputs.get("trajectories") if isinstance(inputs, dict) else None
        if traj is None:
            raise InputError("TrajectoryTransformer: inputs must be a dict with 'trajectories' (batch, seq) token ids")
        if len(traj.shape) != 2:
            raise InputError(f"TrajectoryTransformer: trajectories must be (batch, seq), got shape {tuple(traj.shape)}")
        if traj.shape[1] is not None and traj.shape[1] > s.block_size:
            raise InputError(f"TrajectoryTransformer: trajectories has {traj.shape[1]} tokens, more than "
                             f"block_size={s.block_size}")
        traj = ops.cast(traj, "int32")
        seq = ops.shape(traj)[1]
        offsets = (ops.arange(seq, dtype="int32") % s.transition_dim) * s.vocab_size
        ids = ops.where(ops.equal(traj, s.vocab_size), s.vocab_size * s.transition_dim, traj + offsets[None])
        x = self.tok_emb(ids) + ops.cast(self.pos_emb[:, :seq], self.compute_dtype)
        x = self.drop(x, training=training)
        bias = self.attention_bias(seq)
        for block in self.blocks:
            x = block(x, bias, training=training)
        return self.ln_f(x)

    def weight_rules(self):
        r = [Rule("tok_emb.weight", self.tok_emb.embeddings), Rule("pos_emb", self.pos_emb)]
        for i, b in enumerate(self.blocks):
            p = f"blocks.{i}."
            a = b.attention
            for name, dense in (("attn.query", a.query), ("attn.key", a.key), ("attn.value", a.value),
                                ("attn.proj", a.output_dense), ("l1", b.intermediate), ("l2", b.output_dense)):
                r += dense_rules(p + name, dense)
            r += norm_rules(p + "ln1", b.attention_norm) + norm_rules(p + "ln2", b.output_norm)
        return r + norm_rules("ln_f", self.ln_f)


@_ser
@register_task(TrajectoryTransformerBackbone, "TrajectoryPredictor", ("TrajectoryTransformerModel",))
class TrajectoryTransformerTrajectoryPredictor(TrajectoryPredictor):
    """``{"trajectories", "targets" (optional), "attention_mask" (optional, weighs the loss only)}``
    -> ``{"logits"}`` (batch, seq, vocab_size + 1), plus ``"loss"`` when ``targets`` are given."""

    hf_head_patterns = ("head.weight",)

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        s = backbone.spec
        self.head = self.add_weight(name="head", shape=(s.transition_dim, s.vocab_size + 1, s.hidden_size),
                                    initializer=keras.initializers.RandomNormal(stddev=0.02))

    def logits(self, hidden):
        """Position p reads the head's projection p % transition_dim."""
        seq = ops.shape(hidden)[1]
        weights = ops.take(ops.cast(self.head, hidden.dtype), ops.arange(seq) % self.backbone.spec.transition_dim,
                           axis=0)
        return ops.einsum("bsh,svh->bsv", hidden, weights)

    def loss_weights(self, seq):
        """Transformers' per-token loss weights for ``seq`` tokens, or None when every weight is 1."""
        s = self.backbone.spec
        if s.action_weight == 1 and s.reward_weight == 1 and s.value_weight == 1:
            return None
        per = np.concatenate([np.ones(s.observation_dim), np.full(s.action_dim, float(s.action_weight)),
                              [float(s.reward_weight)], [float(s.value_weight)]])
        weights = np.tile(per, int(np.ceil(seq / s.transition_dim)))[1:]
        if len(weights) != seq:
            raise InputError(
                f"TrajectoryTransformer: the weighted loss (action_weight / reward_weight / value_weight) needs "
                f"{len(weights)} tokens for this sequence's {int(np.ceil(seq / s.transition_dim))} transitions "
                f"((observation_dim + action_dim + 2) per transition, less one), got {seq}")
        return weights.astype("float32")

    def compute_trajectory_loss(self, logits, targets, attention_mask=None):
        """Transformers' loss: mean over every token of cross-entropy x weight x attention_mask."""
        seq = targets.shape[1]
        if seq is None:
            raise InputError("TrajectoryTransformer: the loss needs a known sequence length")
        targets = ops.cast(targets, "int32")
        logp = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
        valid = ops.not_equal(targets, -100)
        picked = ops.take_along_axis(logp, ops.where(valid, targets, 0)[..., None], axis=-1)[..., 0]
        ce = ops.where(valid, -picked, 0.0)
        weights = self.loss_weights(int(seq))
        if weights is not None:
            ce = ce * ops.convert_to_tensor(weights)[None]
        if attention_mask is not None:
            ce = ce * ops.cast(attention_mask, "float32")
        return ops.mean(ce)

    def call(self, inputs, training=False):
        logits = self.logits(self.backbone(inputs, training=training))
        out = {"logits": logits}
        if isinstance(inputs, dict) and inputs.get("targets") is not None:
            out["loss"] = self.compute_trajectory_loss(logits, inputs["targets"], inputs.get("attention_mask"))
        return out

    def head_rules(self):
        return [Rule("head.weight", self.head, base=False)]


__all__ = ["TrajectoryTransformerSpec", "TrajectoryTransformerBackbone", "TrajectoryTransformerTrajectoryPredictor"]
