"""Decision Transformer (model_type ``decision_transformer``): GPT-2 blocks over a trajectory of
interleaved (return-to-go, state, action) tokens.

* Each step's return (Linear 1 -> hidden), state (Linear state_dim -> hidden) and action (Linear
  act_dim -> hidden) embeddings get the step's ``embed_timestep`` row added, are interleaved as
  R_1, s_1, a_1, R_2, ... (3 * steps tokens) and normalised by ``embed_ln``;
* the GPT-2 encoder (our GPT-2 backbone, mounted under ``encoder.``) runs on them with every
  position id 0 (Transformers passes zeros: ``wpe`` row 0 is added to every token) and each step's
  attention-mask value repeated for its three tokens; ``activation_function`` defaults to relu;
* the heads read the action tokens for ``state_preds`` and ``return_preds`` and the state tokens
  for ``action_preds`` (followed by tanh when ``action_tanh``).

The backbone returns the encoder's last hidden state (batch, 3 * steps, hidden);
:class:`DecisionTransformerTrajectoryPredictor` (``km.TrajectoryPredictor``) returns the three
predictions. Positions whose step is masked out (padding) are not compared with Transformers:
a query whose every visible key is padding gets a different, meaningless average there.
"""

from dataclasses import dataclass
from typing import ClassVar

import keras
import numpy as np
from keras import ops

from keras_models.errors import InputError
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.decoder.gpt import GPT2Backbone, GPT2Spec
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import Rule, mount
from keras_models.spec import dim, hf
from keras_models.tasks.trajectory import TrajectoryPredictor

_ser = keras.saving.register_keras_serializable(package="keras_models")
INPUTS = ("states", "actions", "returns_to_go", "timesteps")


@dataclass(frozen=True, kw_only=True)
class DecisionTransformerSpec(GPT2Spec):
    unsupported: ClassVar[dict] = {"scale_attn_by_inverse_layer_idx": (False, None),
                                   # cross-attention layers are never used by the model (no encoder states)
                                   "add_cross_attention": (False, None)}

    vocab_size: int = dim("vocab_size", 1)
    hidden_size: int = dim("hidden_size", 128)
    num_layers: int = dim("n_layer", 3)
    num_heads: int = dim("n_head", 1)
    activation: str = hf("activation_function", "relu")
    state_dim: int = dim("state_dim", 17)
    act_dim: int = dim("act_dim", 4)
    max_ep_len: int = dim("max_ep_len", 4096)
    action_tanh: bool = hf("action_tanh", True)

    def dummy_inputs(self):
        return {"states": np.zeros((1, 2, self.state_dim), "float32"),
                "actions": np.zeros((1, 2, self.act_dim), "float32"),
                "returns_to_go": np.zeros((1, 2, 1), "float32"),
                "timesteps": np.zeros((1, 2), "int32"), "attention_mask": np.ones((1, 2), "int32")}


@_ser
@register_backbone("decision_transformer")
class DecisionTransformerBackbone(SpecBackbone):
    """``{"states", "actions", "returns_to_go", "timesteps", "attention_mask"}`` -> the encoder's
    last hidden state (batch, 3 * steps, hidden), tokens ordered R_1, s_1, a_1, R_2, ..."""

    spec_cls = DecisionTransformerSpec
    base_model_prefix = ""
    hf_architecture = "DecisionTransformerModel"
    hf_ignore = ("*attn.bias", "*attn.masked_bias")
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s, d = self.spec, self.dtype_policy
        self.hidden_size = s.hidden_size
        gpt2 = {name: getattr(s, name) for name in GPT2Spec.field_names()}
        self.encoder = GPT2Backbone(**gpt2, name="encoder", dtype=d)
        self.embed_timestep = keras.layers.Embedding(s.max_ep_len, s.hidden_size, name="embed_timestep", dtype=d)
        self.embed_return = keras.layers.Dense(s.hidden_size, name="embed_return", dtype=d)
        self.embed_state = keras.layers.Dense(s.hidden_size, name="embed_state", dtype=d)
        self.embed_action = keras.layers.Dense(s.hidden_size, name="embed_action", dtype=d)
        self.embed_ln = keras.layers.LayerNormalization(epsilon=1e-5, name="embed_ln", dtype=d)

    def build(self, input_shape=None):
        s = self.spec
        self.encoder.build()
        self.embed_timestep.build((None, None))
        self.embed_return.build((None, None, 1))
        self.embed_state.build((None, None, s.state_dim))
        self.embed_action.build((None, None, s.act_dim))
        self.embed_ln.build((None, None, s.hidden_size))
        self.built = True

    def call(self, inputs, training=False):
        s = self.spec
        missing = [k for k in INPUTS if not isinstance(inputs, dict) or k not in inputs]
        if missing:
            raise InputError(f"DecisionTransformer: inputs must be a dict with {', '.join(INPUTS)} "
                             f"(missing {', '.join(missing)})")
        states = inputs["states"]
        batch, steps = ops.shape(states)[0], ops.shape(states)[1]
        for key, width in (("states", s.state_dim), ("actions", s.act_dim), ("returns_to_go", 1)):
            shape = tuple(inputs[key].shape)
            if len(shape) != 3 or shape[-1] != width:
                raise InputError(f"DecisionTransformer: {key} must have shape (batch, steps, {width}), got {shape}")
        time = self.embed_timestep(ops.cast(inputs["timesteps"], "int32"))
        r = self.embed_return(ops.cast(inputs["returns_to_go"], self.compute_dtype)) + time
        st = self.embed_state(ops.cast(states, self.compute_dtype)) + time
        a = self.embed_action(ops.cast(inputs["actions"], self.compute_dtype)) + time
        x = ops.reshape(ops.stack([r, st, a], axis=2), (batch, 3 * steps, s.hidden_size))
        x = self.embed_ln(x)
        mask = inputs.get("attention_mask")
        mask = ops.ones((batch, steps), "int32") if mask is None else ops.cast(mask, "int32")
        mask = ops.repeat(mask, 3, axis=1)  # each step's value for its R, s, a tokens
        zeros = ops.zeros((batch, 3 * steps), "int32")  # token ids (unused) and position ids (all 0)
        hidden, _ = self.encoder._forward(zeros, mask, zeros, training=training, embed=lambda ids, table: x)
        return hidden

    def weight_rules(self):
        r = mount(self.encoder.weight_rules(), "encoder.")
        r += [Rule("embed_timestep.weight", self.embed_timestep.embeddings)]
        for name in ("embed_return", "embed_state", "embed_action"):
            r += dense_rules(name, getattr(self, name))
        return r + norm_rules("embed_ln", self.embed_ln)


@_ser
@register_task(DecisionTransformerBackbone, "TrajectoryPredictor", ("DecisionTransformerModel",))
class DecisionTransformerTrajectoryPredictor(TrajectoryPredictor):
    """``state_preds`` and ``return_preds`` from each step's action token, ``action_preds`` from its
    state token (tanh when ``action_tanh``)."""

    hf_head_patterns = ("predict_state.*", "predict_action.*", "predict_return.*")

    def __init__(self, backbone, preprocessor=None, **kwargs):
        super().__init__(backbone, preprocessor=preprocessor, **kwargs)
        s, d = backbone.spec, self.dtype_policy
        self.predict_state = keras.layers.Dense(s.state_dim, name="predict_state", dtype=d)
        self.predict_action = keras.layers.Dense(s.act_dim, name="predict_action", dtype=d)
        self.predict_return = keras.layers.Dense(1, name="predict_return", dtype=d)
        for layer in (self.predict_state, self.predict_action, self.predict_return):
            layer.build((None, None, s.hidden_size))

    def call(self, inputs, training=False):
        hidden = self.backbone(inputs, training=training)
        shape = ops.shape(hidden)
        hidden = ops.reshape(hidden, (shape[0], shape[1] // 3, 3, self.backbone.hidden_size))
        state_tok, action_tok = hidden[:, :, 1], hidden[:, :, 2]
        actions = self.predict_action(state_tok)
        if self.backbone.spec.action_tanh:
            actions = ops.tanh(actions)
        return {"state_preds": self.predict_state(action_tok), "action_preds": actions,
                "return_preds": self.predict_return(action_tok)}

    def head_rules(self):
        return (dense_rules("predict_state", self.predict_state, base=False)
                + dense_rules("predict_action.0", self.predict_action, base=False)
                + dense_rules("predict_return", self.predict_return, base=False))


__all__ = ["DecisionTransformerSpec", "DecisionTransformerBackbone", "DecisionTransformerTrajectoryPredictor"]
