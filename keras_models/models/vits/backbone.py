"""VITS text-to-speech (Transformers' ``VitsModel``, the facebook/mms-tts-* checkpoints).

``input_ids`` (batch, tokens) go through a post-norm Transformer text encoder (windowed relative
position attention, convolutional feed-forward), a projection to the prior's means and log
variances, a duration predictor (deterministic convolutions, or the stochastic one: a flow of
rational-quadratic splines run in reverse from noise), a monotonic expansion of the prior to
``ceil(exp(log_duration) / speaking_rate)`` frames per token, a reversed residual-coupling flow
(WaveNet couplings) and a HiFi-GAN decoder.

Outputs (a dict, Transformers' names): ``waveform`` (batch, samples), ``sequence_lengths``
(batch,) samples per row, ``spectrogram`` (batch, frames, flow_size) -- channels last, where
Transformers' is (batch, flow_size, frames) -- and ``last_hidden_state`` (batch, tokens, hidden),
the text encoder's output (``hidden_states`` too with ``output_hidden_states=True``).

The number of frames depends on the predicted durations, so a call computes it eagerly; under a
compiled call (``jax.jit``, ``predict_on_batch`` on jax) pass ``output_frames`` (a Python int):
the outputs are then that many frames long (rows padded with zeros, or cut). ``noise_scale`` and
``noise_scale_duration`` (config.json, or call arguments) scale the drawn noise; with both 0 the
outputs are a pure function of the weights and the inputs.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.backend_choice import switch_on
from keras_models.errors import ConfigError, InputError
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone
from keras_models.models.vits.duration import (VitsDurationPredictor, VitsStochasticDurationPredictor,
                                               rational_quadratic_spline_inverse)
from keras_models.models.vits.layers import (VitsConv, VitsCoupling, VitsEncoderLayer, VitsHifiGan, VitsWaveNet,
                                             _is_tensor, get_activation_or_none)
from keras_models.presets.weight_map import Rule
from keras_models.spec import Spec, dim, hf



def _ints(v):
    return tuple(int(x) for x in v)


def _nested_ints(v):
    return tuple(tuple(int(x) for x in row) for row in v)


TF_GRAPH_ENV = "KM_VITS_TF_GRAPH"


def tf_graph_enabled():
    """The tensorflow fast path of ``VitsBackbone.synthesize`` (issue 20): the flows and HiFi-GAN
    decoder run as one ``tf.function`` graph (no XLA; grappler's oneDNN conv fusions), traced once
    for all lengths. On unless the environment sets ``KM_VITS_TF_GRAPH=0`` (then: eager, the plain
    Keras path; outputs equal up to float summation order)."""
    return switch_on(TF_GRAPH_ENV)


@dataclass(frozen=True, kw_only=True)
class VitsSpec(Spec):
    vocab_size: int = dim("vocab_size", 38)
    hidden_size: int = dim("hidden_size", 192)
    num_layers: int = hf("num_hidden_layers", 6)
    num_heads: int = dim("num_attention_heads", 2)
    window_size: int = dim("window_size", 4)  # Transformers needs a positive window
    use_bias: bool = hf("use_bias", True)
    ffn_dim: int = dim("ffn_dim", 768)
    ffn_kernel_size: int = dim("ffn_kernel_size", 3)
    flow_size: int = dim("flow_size", 192)
    spectrogram_bins: int = dim("spectrogram_bins", 513)
    hidden_act: str = hf("hidden_act", "relu")
    layer_norm_eps: float = hf("layer_norm_eps", 1e-5)
    use_stochastic_duration_prediction: bool = hf("use_stochastic_duration_prediction", True)
    num_speakers: int = dim("num_speakers", 1)
    speaker_embedding_size: int = hf("speaker_embedding_size", 0)
    upsample_initial_channel: int = dim("upsample_initial_channel", 512)
    upsample_rates: tuple = hf("upsample_rates", (8, 8, 2, 2), read=_ints)
    upsample_kernel_sizes: tuple = hf("upsample_kernel_sizes", (16, 16, 4, 4), read=_ints)
    resblock_kernel_sizes: tuple = hf("resblock_kernel_sizes", (3, 7, 11), read=_ints)
    resblock_dilation_sizes: tuple = hf("resblock_dilation_sizes", ((1, 3, 5),) * 3, read=_nested_ints)
    leaky_relu_slope: float = hf("leaky_relu_slope", 0.1)
    depth_separable_channels: int = dim("depth_separable_channels", 2)
    depth_separable_num_layers: int = hf("depth_separable_num_layers", 3)
    duration_predictor_flow_bins: int = dim("duration_predictor_flow_bins", 10)
    duration_predictor_tail_bound: float = hf("duration_predictor_tail_bound", 5.0)
    duration_predictor_kernel_size: int = dim("duration_predictor_kernel_size", 3)
    duration_predictor_num_flows: int = hf("duration_predictor_num_flows", 4)
    duration_predictor_filter_channels: int = dim("duration_predictor_filter_channels", 256)
    prior_encoder_num_flows: int = hf("prior_encoder_num_flows", 4)
    prior_encoder_num_wavenet_layers: int = dim("prior_encoder_num_wavenet_layers", 4)
    posterior_encoder_num_wavenet_layers: int = dim("posterior_encoder_num_wavenet_layers", 16)
    wavenet_kernel_size: int = dim("wavenet_kernel_size", 5)
    wavenet_dilation_rate: int = dim("wavenet_dilation_rate", 1)
    speaking_rate: float = hf("speaking_rate", 1.0)
    noise_scale: float = hf("noise_scale", 0.667)
    noise_scale_duration: float = hf("noise_scale_duration", 0.8)
    sampling_rate: int = dim("sampling_rate", 16000)
    pad_token_id: int | None = hf("pad_token_id", None)
    # training-only rates (inference ignores them, as Transformers' eval mode)
    layerdrop: float = hf("layerdrop", 0.1)
    hidden_dropout: float = hf("hidden_dropout", 0.1)
    attention_dropout: float = hf("attention_dropout", 0.1)
    activation_dropout: float = hf("activation_dropout", 0.1)
    duration_predictor_dropout: float = hf("duration_predictor_dropout", 0.5)
    wavenet_dropout: float = hf("wavenet_dropout", 0.0)
    initializer_range: float = hf("initializer_range", 0.02)

    def validate(self, source="config.json"):
        def fail(key, msg):
            raise ConfigError(f"{source}: {key} {msg}")

        if self.hidden_size % self.num_heads:
            fail("num_attention_heads", f"({self.num_heads}) must divide hidden_size ({self.hidden_size})")
        for key in ("num_layers", "depth_separable_num_layers", "duration_predictor_num_flows",
                    "prior_encoder_num_flows", "speaker_embedding_size"):
            v = getattr(self, key)
            name = "num_hidden_layers" if key == "num_layers" else key
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 1024:
                fail(name, f"must be an integer in [0, 1024], got {v!r}")
        if self.window_size > 4096:
            fail("window_size", f"must be at most 4096, got {self.window_size}")
        if self.depth_separable_channels != 2:
            fail("depth_separable_channels", f"must be 2 (the duration flows' two channels), got "
                 f"{self.depth_separable_channels}")
        if get_activation_or_none(self.hidden_act) is None:
            fail("hidden_act", f"{self.hidden_act!r} is not a supported activation")
        n = len(self.upsample_rates)
        if not n or n != len(self.upsample_kernel_sizes):
            fail("upsample_kernel_sizes", f"must be as long as upsample_rates, got {self.upsample_kernel_sizes} "
                 f"and {self.upsample_rates}")
        for u, k in zip(self.upsample_rates, self.upsample_kernel_sizes):
            if not 0 < u <= k <= 4096:
                fail("upsample_kernel_sizes", f"must be at least the upsample rates (positive), got "
                     f"{self.upsample_kernel_sizes} for rates {self.upsample_rates}")
        if self.upsample_initial_channel % (2 ** n):
            fail("upsample_initial_channel", f"({self.upsample_initial_channel}) must be divisible by 2**{n}")
        if not self.resblock_kernel_sizes or len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            fail("resblock_dilation_sizes", "must be as long as resblock_kernel_sizes (non-empty)")
        odd = [("resblock_kernel_sizes", self.resblock_kernel_sizes), ("wavenet_kernel_size",
               (self.wavenet_kernel_size,)), ("duration_predictor_kernel_size", (self.duration_predictor_kernel_size,))]
        for key, values in odd:
            if any(not 0 < k <= 4096 or k % 2 == 0 for k in values):
                fail(key, f"must be odd positive sizes (an even size changes the length), got {values}")
        if any(not row or any(not 0 < d <= 4096 for d in row) for row in self.resblock_dilation_sizes):
            fail("resblock_dilation_sizes", f"must be non-empty lists of positive dilations, got "
                 f"{self.resblock_dilation_sizes}")
        if self.flow_size % 2:
            fail("flow_size", f"must be even (the coupling halves), got {self.flow_size}")
        if self.num_speakers > 1 and not self.speaker_embedding_size:
            fail("speaker_embedding_size", "must be positive when num_speakers > 1")
        for key in ("layer_norm_eps", "leaky_relu_slope", "duration_predictor_tail_bound", "speaking_rate",
                    "noise_scale", "noise_scale_duration"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
                fail(key, f"must be a finite number, got {v!r}")
        if self.speaking_rate <= 0:
            fail("speaking_rate", f"must be positive, got {self.speaking_rate}")
        if self.duration_predictor_tail_bound <= 0:
            fail("duration_predictor_tail_bound", f"must be positive, got {self.duration_predictor_tail_bound}")
        if self.duration_predictor_flow_bins * 1e-3 > 1:
            fail("duration_predictor_flow_bins", f"must be at most 1000, got {self.duration_predictor_flow_bins}")
        for key in ("layerdrop", "hidden_dropout", "attention_dropout", "activation_dropout",
                    "duration_predictor_dropout", "wavenet_dropout"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                fail(key, f"must be a rate in [0, 1], got {v!r}")

    def dummy_inputs(self):
        return {"input_ids": np.ones((1, 4), "int32"), "attention_mask": np.ones((1, 4), "int32")}


@keras.saving.register_keras_serializable(package="keras_models")
@register_backbone("vits")
class VitsBackbone(SpecBackbone):
    """VITS: ``{"input_ids", "attention_mask"?, "speaker_id"?}`` -> ``{"waveform", "sequence_lengths",
    "spectrogram", "last_hidden_state"}`` (see the module docstring)."""

    spec_cls = VitsSpec
    hf_architecture = "VitsModel"
    verified_backends = ("jax", "torch", "tensorflow")

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec=spec, **kwargs)
        s = self.spec
        common = dict(dtype=self.dtype_policy)
        self.embed_tokens = keras.layers.Embedding(s.vocab_size, s.hidden_size, name="embed_tokens", **common)
        self.encoder_layers = [VitsEncoderLayer(s, name=f"layer_{i}", **common) for i in range(s.num_layers)]
        self.project = VitsConv(s.hidden_size, 2 * s.flow_size, 1, name="project", **common)
        self.flows = [VitsCoupling(s, name=f"flow_{i}", **common) for i in range(s.prior_encoder_num_flows)]
        self.decoder = VitsHifiGan(s, name="decoder", **common)
        dp = VitsStochasticDurationPredictor if s.use_stochastic_duration_prediction else VitsDurationPredictor
        self.duration_predictor = dp(s, name="duration_predictor", **common)
        self.embed_speaker = (keras.layers.Embedding(s.num_speakers, s.speaker_embedding_size, name="embed_speaker",
                                                     **common) if s.num_speakers > 1 else None)
        # the posterior encoder (training only): kept so that checkpoints round-trip whole
        self.posterior_conv_pre = VitsConv(s.spectrogram_bins, s.hidden_size, 1, name="posterior_conv_pre", **common)
        self.posterior_wavenet = VitsWaveNet(s, s.posterior_encoder_num_wavenet_layers, name="posterior_wavenet",
                                             **common)
        self.posterior_conv_proj = VitsConv(s.hidden_size, 2 * s.flow_size, 1, name="posterior_conv_proj", **common)
        self.noise_seed = keras.random.SeedGenerator(name="noise_seed")

    def build(self, input_shape=None):
        self.embed_tokens.build(None)
        if self.embed_speaker is not None:
            self.embed_speaker.build(None)
        for layer in [*self.encoder_layers, self.project, *self.flows, self.decoder, self.duration_predictor,
                      self.posterior_conv_pre, self.posterior_wavenet, self.posterior_conv_proj]:
            layer.build(None)
        self.built = True

    def compute_output_spec(self, inputs, **kwargs):
        ids = inputs["input_ids"] if isinstance(inputs, dict) else inputs
        b, t = ids.shape[0], ids.shape[1]
        return {"waveform": keras.KerasTensor((b, None)), "sequence_lengths": keras.KerasTensor((b,), "int32"),
                "spectrogram": keras.KerasTensor((b, None, self.spec.flow_size)),
                "last_hidden_state": keras.KerasTensor((b, t, self.spec.hidden_size))}

    def _speaker(self, speaker_id, batch):
        s = self.spec
        if speaker_id is None or s.num_speakers <= 1:
            return None
        sid = ops.reshape(ops.cast(ops.convert_to_tensor(speaker_id), "int32"), (-1,))
        try:
            values = np.asarray(ops.convert_to_numpy(sid))
        except Exception:  # traced: checked when called eagerly
            values = None
        if values is not None and ((values < 0).any() or (values >= s.num_speakers).any()):
            raise InputError(f"speaker_id: expected ids in 0..{s.num_speakers - 1}, got {values}")
        if sid.shape[0] not in (1, batch):
            raise InputError(f"speaker_id: expected one id or one per row ({batch}), got {sid.shape[0]}")
        if sid.shape[0] == 1 and batch != 1:
            sid = ops.repeat(sid, batch, axis=0)
        return self.embed_speaker(sid)[:, None, :]  # (batch, 1, speaker_embedding_size)

    def encode(self, inputs, output_hidden_states=False):
        """Text encoder: ``(hidden (b, t, h), means, log_variances (b, t, flow_size), mask (b, t, 1), hidden_states)``."""
        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        if "input_ids" not in inputs:
            raise InputError("inputs: expected a dict with 'input_ids' (batch, tokens)")
        ids = ops.convert_to_tensor(inputs["input_ids"])
        if len(ids.shape) == 1:
            ids = ids[None]
        if len(ids.shape) != 2:
            raise InputError(f"input_ids: expected (batch, tokens), got shape {tuple(ids.shape)}")
        mask = inputs.get("attention_mask")
        mask = ops.ones_like(ids) if mask is None else ops.reshape(ops.convert_to_tensor(mask), ops.shape(ids))
        pmask = ops.cast(mask, self.compute_dtype)[..., None]
        x = self.embed_tokens(ids) * float(np.sqrt(self.spec.hidden_size)) * pmask
        states = []
        for layer in self.encoder_layers:
            states.append(x)
            x = layer(x, mask, pmask)
        x = x * pmask
        states.append(x)
        stats = self.project(x) * pmask
        f = self.spec.flow_size
        return x, stats[..., :f], stats[..., f:], pmask, states

    def call(self, inputs, speaking_rate=None, noise_scale=None, noise_scale_duration=None, output_frames=None,
             seed=None, output_hidden_states=False, training=False):
        front = self._front(inputs, speaking_rate, noise_scale_duration, seed, output_hidden_states)
        if output_frames is None:
            try:
                output_frames = int(np.max(ops.convert_to_numpy(front["lengths"])))
            except Exception as e:  # a traced call: the length is not known
                raise InputError("VITS: the number of frames depends on the predicted durations; under a compiled "
                                 "call pass output_frames= (a Python int)") from e
        given = inputs if isinstance(inputs, dict) else {}
        return self._back(front, int(output_frames), noise_scale, given.get("prior_noise"), seed,
                          output_hidden_states)

    def _front(self, inputs, speaking_rate, noise_scale_duration, seed, output_hidden_states):
        """Text encoder, prior statistics and durations: everything before the number of frames is known."""
        s = self.spec
        x, means, log_vars, pmask, states = self.encode(inputs, output_hidden_states)
        given = inputs if isinstance(inputs, dict) else {}
        speaker = self._speaker(given.get("speaker_id"), x.shape[0])
        seed = self.noise_seed if seed is None else seed
        nsd = s.noise_scale_duration if noise_scale_duration is None else noise_scale_duration
        duration, lengths = self._durations(x, pmask, speaker, given.get("duration_noise"), speaking_rate, nsd,
                                            seed)
        front = {"hidden": x, "means": means, "log_vars": log_vars, "pmask": pmask, "duration": duration,
                 "lengths": lengths}
        if speaker is not None:
            front["speaker"] = speaker
        if output_hidden_states:
            front["states"] = tuple(states)
        return front

    def _back(self, front, frames, noise_scale, prior_noise, seed, output_hidden_states):
        """Alignment, prior sample, flows and vocoder for ``frames`` output frames (a Python int)."""
        s = self.spec
        seed = self.noise_seed if seed is None else seed
        ns = s.noise_scale if noise_scale is None else noise_scale
        lengths, duration, pmask = front["lengths"], front["duration"], front["pmask"]
        speaker = front.get("speaker")
        positions = ops.cast(ops.arange(frames), self.compute_dtype)  # frames: an int, or a traced scalar (tf)
        out_mask = ops.cast(positions[None, :] < lengths[:, None], self.compute_dtype)  # (b, frames)
        cum = ops.cumsum(duration, axis=1)  # (b, t)
        valid = ops.cast(positions[None, None, :] < cum[..., None], self.compute_dtype)  # (b, t, frames)
        path = valid - ops.pad(valid, ((0, 0), (1, 0), (0, 0)))[:, :-1]
        path = path * pmask * out_mask[:, None, :]
        means = ops.einsum("btf,btc->bfc", path, front["means"])
        log_vars = ops.einsum("btf,btc->bfc", path, front["log_vars"])
        z = means
        if prior_noise is not None or _is_tensor(ns) or ns:
            noise = prior_noise
            if noise is None:
                noise = keras.random.normal(ops.shape(means), seed=seed, dtype=self.compute_dtype)
            else:
                noise = ops.cast(ops.convert_to_tensor(noise), self.compute_dtype)
                if isinstance(frames, int) and tuple(noise.shape[1:]) != (frames, s.flow_size):
                    raise InputError(f"prior_noise: expected (batch, {frames}, {s.flow_size}), got "
                                     f"{tuple(noise.shape)}")
            z = z + noise * ops.exp(log_vars) * ns
        omask = out_mask[..., None]
        for flow in reversed(self.flows):
            z = flow(ops.flip(z, axis=-1), omask, speaker)
        spectrogram = z * omask
        waveform = self.decoder(spectrogram, speaker)
        out = {"waveform": waveform,
               "sequence_lengths": ops.cast(lengths, "int32") * int(np.prod(s.upsample_rates)),
               "spectrogram": spectrogram, "last_hidden_state": front["hidden"]}
        if output_hidden_states:
            out["hidden_states"] = front["states"]
        return out

    def _durations(self, x, pmask, speaker, noise, speaking_rate, nsd, seed):
        """Frames per token (b, t) and per row (b,), as floats."""
        s = self.spec
        b, t = ops.shape(x)[0], x.shape[1]
        if s.use_stochastic_duration_prediction:
            if noise is None and not _is_tensor(nsd) and not nsd:
                noise = ops.zeros((b, t, 2), self.compute_dtype)
            else:
                if noise is None:
                    noise = keras.random.normal((b, t, 2), seed=seed, dtype=self.compute_dtype)
                noise = ops.cast(ops.convert_to_tensor(noise), self.compute_dtype)
                if t is not None and tuple(noise.shape[1:]) != (t, 2):
                    raise InputError(f"duration_noise: expected (batch, {t}, 2), got {tuple(noise.shape)}")
                noise = noise * nsd
        log_duration = self.duration_predictor(x, pmask, speaker, noise)  # (b, t, 1)
        rate = s.speaking_rate if speaking_rate is None else speaking_rate
        if not _is_tensor(rate) and (not isinstance(rate, (int, float)) or isinstance(rate, bool) or not rate > 0):
            raise InputError(f"speaking_rate: expected a positive number, got {rate!r}")
        duration = ops.ceil(ops.exp(log_duration) * pmask * (1.0 / rate))[..., 0]  # (b, t)
        return duration, ops.maximum(ops.sum(duration, axis=1), 1.0)

    def synthesize(self, inputs, speaking_rate=None, noise_scale=None, noise_scale_duration=None, seed=None,
                   output_hidden_states=False):
        """The outputs of ``call`` through two functions compiled under jax (where an eager call runs
        op by op; torch runs them eagerly): the durations, then the whole model with that many frames.
        Tensorflow runs both as ``tf.function`` graphs without XLA (XLA-compiling this conv stack costs more
        than it saves; the graph gets grappler's fused oneDNN convs, ~2.8x less CPU than eager), traced once
        for every text length and frame count (``tf_graph_enabled``; ``KM_VITS_TF_GRAPH=0``: eager). Settings and
        noise are inputs of the compiled functions (no recompilation per setting); noise, where a scale
        is not 0, is drawn first from ``seed`` (an int) or the model's seed generator."""
        from keras_models.generation.backend import BACKEND, compile_fn, no_grad, tf_graph as graph_of

        tf_graph = BACKEND == "tensorflow" and tf_graph_enabled()

        def compile_(fn, generic=False):
            if BACKEND == "tensorflow":
                if not tf_graph:
                    return fn
                # graph mode without XLA: grappler fuses conv + bias (+ activation) into oneDNN calls;
                # ``generic``: traced once for any length (the second length relaxes the shapes)
                return graph_of(fn, jit_compile=False, reduce_retracing=generic)
            return compile_fn(self, fn)  # torch: eager, direct layer calls

        if not isinstance(inputs, dict):
            inputs = {"input_ids": inputs}
        if "input_ids" not in inputs:
            raise InputError("inputs: expected a dict with 'input_ids' (batch, tokens)")
        s = self.spec
        ids = np.asarray(ops.convert_to_numpy(inputs["input_ids"])).astype("int32")
        ids = ids[None] if ids.ndim == 1 else ids
        mask = inputs.get("attention_mask")
        mask = np.ones_like(ids) if mask is None else np.asarray(ops.convert_to_numpy(mask)).astype("int32")
        feed = {"input_ids": ids, "attention_mask": mask.reshape(ids.shape)}
        if inputs.get("speaker_id") is not None and s.num_speakers > 1:
            sid = np.asarray(ops.convert_to_numpy(inputs["speaker_id"])).astype("int32").reshape(-1)
            feed["speaker_id"] = np.repeat(sid, ids.shape[0]) if sid.size == 1 else sid
        nsd = float(s.noise_scale_duration if noise_scale_duration is None else noise_scale_duration)
        ns = float(s.noise_scale if noise_scale is None else noise_scale)
        rate = float(s.speaking_rate if speaking_rate is None else speaking_rate)
        if not rate > 0:
            raise InputError(f"speaking_rate: expected a positive number, got {speaking_rate!r}")
        rng = self.noise_seed if seed is None else seed
        feed["scales"] = np.array([rate, ns, nsd], "float32")  # traced: one compilation for all settings
        b, t = ids.shape
        if s.use_stochastic_duration_prediction:
            feed["duration_noise"] = np.zeros((b, t, 2), "float32") if not nsd else np.asarray(
                ops.convert_to_numpy(keras.random.normal((b, t, 2), seed=rng)), "float32")
        cache = self.__dict__.setdefault("_km_compiled", {})
        key = ("front", output_hidden_states, tf_graph)
        if key not in cache:
            def front_fn(feed):
                sc = feed["scales"]
                return self._front(feed, sc[0], sc[2], None, output_hidden_states)
            cache[key] = compile_(front_fn, generic=True)  # tensorflow: one graph for all text lengths
        with no_grad():
            front = cache[key](feed)  # the text encoder and duration predictor run once
            frames = int(np.max(ops.convert_to_numpy(front["lengths"])))
            prior = np.zeros((b, frames, s.flow_size), "float32") if not ns else np.asarray(
                ops.convert_to_numpy(keras.random.normal((b, frames, s.flow_size), seed=rng)), "float32")
            if tf_graph:  # one graph for every length: the frame count is an input
                key = ("back", None, output_hidden_states, True)
                if key not in cache:
                    def back_fn(front, prior, scales, frames):
                        return self._back(front, frames, scales[1], prior, None, output_hidden_states)
                    cache[key] = compile_(back_fn, generic=True)
                return cache[key](front, prior, feed["scales"], np.array(frames, "int32"))
            key = ("back", frames, output_hidden_states)
            if key not in cache:
                def back_fn(front, prior, scales):
                    return self._back(front, frames, scales[1], prior, None, output_hidden_states)
                cache[key] = compile_(back_fn)
            return cache[key](front, prior, feed["scales"])

    def weight_rules(self):
        r = [Rule("text_encoder.embed_tokens.weight", self.embed_tokens.embeddings)]
        for i, layer in enumerate(self.encoder_layers):
            r += layer.rules(f"text_encoder.encoder.layers.{i}.")
        r += self.project.rules("text_encoder.project")
        for i, flow in enumerate(self.flows):
            r += flow.rules(f"flow.flows.{i}.")
        r += self.decoder.rules("decoder.") + self.duration_predictor.rules("duration_predictor.")
        if self.embed_speaker is not None:
            r.append(Rule("embed_speaker.weight", self.embed_speaker.embeddings))
        r += (self.posterior_conv_pre.rules("posterior_encoder.conv_pre")
              + self.posterior_wavenet.rules("posterior_encoder.wavenet.")
              + self.posterior_conv_proj.rules("posterior_encoder.conv_proj"))
        return r


__all__ = ["VitsSpec", "VitsBackbone", "rational_quadratic_spline_inverse"]
