"""VITS layers: convolutions, the text encoder's windowed relative attention and blocks, the
WaveNet residual couplings of the flow, and the HiFi-GAN decoder."""

import keras
import numpy as np
from keras import ops

from keras_models import compat
from keras_models.layers.activations import get_activation
from keras_models.presets.weight_map import TRANSPOSE, Reshape, Rule, Transpose

CONV_AXES = (2, 1, 0)  # torch Conv1d (out, in, k) <-> keras (k, in, out); ConvTranspose1d (in, out, k) <-> (k, out, in)
DEPTHWISE_AXES = (2, 0, 1)  # torch (channels, 1, k) <-> keras depthwise (k, channels, 1)


def _is_tensor(x):
    return not isinstance(x, (int, float, type(None)))


def get_activation_or_none(name):
    try:
        return get_activation(name)
    except Exception:  # an unknown name
        return None


class VitsConv(keras.layers.Layer):
    """A torch-style Conv1d on channels-last inputs: zero padding (left, right) (default: "same"
    for odd kernels), dilation, optional bias, weight norm (``g`` per output channel) or depthwise
    (``groups == channels``)."""

    def __init__(self, cin, cout, kernel_size=1, dilation=1, padding=None, use_bias=True, weight_norm=False,
                 depthwise=False, **kwargs):
        super().__init__(**kwargs)
        self.cin, self.cout, self.k, self.dilation = cin, cout, kernel_size, dilation
        total = dilation * (kernel_size - 1)
        self.padding = (total // 2, total - total // 2) if padding is None else padding
        self.use_bias, self.weight_norm, self.depthwise = use_bias, weight_norm, depthwise

    def build(self, input_shape=None):
        shape = (self.k, self.cin, 1) if self.depthwise else (self.k, self.cin, self.cout)
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer="he_normal")
        if self.weight_norm:
            self.weight_g = self.add_weight(name="weight_g", shape=(self.cout,), initializer="ones")
        self.bias = self.add_weight(name="bias", shape=(self.cout,), initializer="zeros") if self.use_bias else None
        self.built = True

    def _kernel(self):
        kernel = self.kernel
        if self.weight_norm:
            norm = ops.sqrt(ops.sum(ops.square(kernel), axis=(0, 1), keepdims=True))
            kernel = kernel * (self.weight_g / norm)
        return kernel

    def call(self, x):
        if keras.backend.backend() == "torch":  # one oneDNN call; the normed, reordered kernel cached for inference
            sources = [self.kernel] + ([self.weight_g] if self.weight_norm else [])
            w = compat.inference_cache(self, "weight", sources, lambda: compat.torch_conv1d_weight(
                ops.convert_to_tensor(self._kernel()), self.depthwise))
            bias = None if self.bias is None else self.bias.value
            return compat.torch_conv1d(ops.convert_to_tensor(x), w, bias, self.padding, self.dilation)
        kernel = self._kernel()
        if any(self.padding):
            x = ops.pad(x, ((0, 0), self.padding, (0, 0)))
        if self.depthwise:
            y = ops.depthwise_conv(x, kernel, strides=1, padding="valid", dilation_rate=self.dilation)
        else:
            y = ops.conv(x, kernel, strides=1, padding="valid", dilation_rate=self.dilation)
        return y + self.bias if self.bias is not None else y

    def rules(self, p):
        if self.weight_norm:
            r = [Rule(f"{p}.parametrizations.weight.original0", self.weight_g, Reshape((self.cout, 1, 1),
                                                                                        (self.cout,)),
                      aliases=(f"{p}.weight_g",)),
                 Rule(f"{p}.parametrizations.weight.original1", self.kernel, Transpose(CONV_AXES),
                      aliases=(f"{p}.weight_v",))]
        else:
            r = [Rule(f"{p}.weight", self.kernel, Transpose(DEPTHWISE_AXES if self.depthwise else CONV_AXES))]
        if self.bias is not None:
            r.append(Rule(f"{p}.bias", self.bias))
        return r


def _layer_norm(name, eps=1e-5, dtype=None):
    return keras.layers.LayerNormalization(epsilon=eps, name=name, dtype=dtype)


def _norm_rules(p, norm):
    return [Rule(f"{p}.weight", norm.gamma), Rule(f"{p}.bias", norm.beta)]


class VitsAttention(keras.layers.Layer):
    def __init__(self, spec, **kwargs):
        super().__init__(**kwargs)
        s = spec
        self.heads, self.head_dim, self.window = s.num_heads, s.hidden_size // s.num_heads, s.window_size
        common = dict(use_bias=s.use_bias, dtype=self.dtype_policy)
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (
            keras.layers.Dense(s.hidden_size, name=n, **common) for n in ("q_proj", "k_proj", "v_proj", "out_proj"))
        self.hidden = s.hidden_size

    def build(self, input_shape=None):
        for d in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            d.build((None, None, self.hidden))
        if self.window:
            shape = (2 * self.window + 1, self.head_dim)
            self.emb_rel_k = self.add_weight(name="emb_rel_k", shape=shape, initializer="random_normal")
            self.emb_rel_v = self.add_weight(name="emb_rel_v", shape=shape, initializer="random_normal")
        self.built = True

    def _relative(self, table, length):
        """(length, length, head_dim): row i, column j holds table[j - i + window] within the window, else 0."""
        if isinstance(length, int):  # static: index tables built once in numpy
            rel = np.arange(length)[None, :] - np.arange(length)[:, None]
            inside, idx = (np.abs(rel) <= self.window).astype("float32"), np.clip(rel + self.window, 0, 2 * self.window)
        else:  # a traced length (tensorflow's synthesize graph, traced once for all text lengths)
            pos = ops.arange(length)
            rel = pos[None, :] - pos[:, None]
            inside, idx = ops.abs(rel) <= self.window, ops.clip(rel + self.window, 0, 2 * self.window)
        return ops.take(table, idx, axis=0) * ops.cast(inside, table.dtype)[..., None]

    def call(self, x, mask):
        b, t = ops.shape(x)[0], ops.shape(x)[1]

        def heads(y):
            return ops.transpose(ops.reshape(y, (b, t, self.heads, self.head_dim)), (0, 2, 1, 3))

        q = heads(self.q_proj(x) * (self.head_dim ** -0.5))
        k, v = heads(self.k_proj(x)), heads(self.v_proj(x))
        scores = ops.einsum("bhid,bhjd->bhij", q, k)
        if self.window:
            scores = scores + ops.einsum("bhid,ijd->bhij", q, self._relative(self.emb_rel_k, t))
        key_mask = ops.cast(mask, "bool")[:, None, None, :]
        scores = ops.where(key_mask, scores, ops.cast(-1e30, scores.dtype))
        probs = ops.softmax(scores, axis=-1)
        out = ops.einsum("bhij,bhjd->bhid", probs, v)
        if self.window:
            out = out + ops.einsum("bhij,ijd->bhid", probs, self._relative(self.emb_rel_v, t))
        out = ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (b, t, self.hidden))
        return self.out_proj(out)

    def rules(self, p):
        r = []
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            d = getattr(self, name)
            r.append(Rule(f"{p}{name}.weight", d.kernel, TRANSPOSE))
            if d.use_bias:
                r.append(Rule(f"{p}{name}.bias", d.bias))
        if self.window:
            n = 2 * self.window + 1
            r += [Rule(f"{p}emb_rel_k", self.emb_rel_k, Reshape((1, n, self.head_dim), (n, self.head_dim))),
                  Rule(f"{p}emb_rel_v", self.emb_rel_v, Reshape((1, n, self.head_dim), (n, self.head_dim)))]
        return r


class VitsEncoderLayer(keras.layers.Layer):
    def __init__(self, spec, **kwargs):
        super().__init__(**kwargs)
        s = spec
        common = dict(dtype=self.dtype_policy)
        self.attention = VitsAttention(s, name="attention", **common)
        self.layer_norm = _layer_norm("layer_norm", s.layer_norm_eps, self.dtype_policy)
        self.final_layer_norm = _layer_norm("final_layer_norm", s.layer_norm_eps, self.dtype_policy)
        k = s.ffn_kernel_size
        pad = ((k - 1) // 2, k // 2)
        self.conv_1 = VitsConv(s.hidden_size, s.ffn_dim, k, padding=pad, name="conv_1", **common)
        self.conv_2 = VitsConv(s.ffn_dim, s.hidden_size, k, padding=pad, name="conv_2", **common)
        self.act = get_activation(s.hidden_act)
        self.hidden = s.hidden_size

    def build(self, input_shape=None):
        self.attention.build(None)
        self.layer_norm.build((None, None, self.hidden))
        self.final_layer_norm.build((None, None, self.hidden))
        self.conv_1.build(None)
        self.conv_2.build(None)
        self.built = True

    def call(self, x, mask, pmask):
        x = self.layer_norm(x + self.attention(x, mask))
        h = self.act(self.conv_1(x * pmask)) * pmask
        h = self.conv_2(h) * pmask
        return self.final_layer_norm(x + h)

    def rules(self, p):
        return (self.attention.rules(f"{p}attention.") + _norm_rules(f"{p}layer_norm", self.layer_norm)
                + _norm_rules(f"{p}final_layer_norm", self.final_layer_norm)
                + self.conv_1.rules(f"{p}feed_forward.conv_1") + self.conv_2.rules(f"{p}feed_forward.conv_2"))


class VitsWaveNet(keras.layers.Layer):
    """Weight-normed gated dilated convolutions with residual and skip outputs."""

    def __init__(self, spec, num_layers, **kwargs):
        super().__init__(**kwargs)
        s = spec
        h = s.hidden_size
        self.hidden, self.n = h, num_layers
        common = dict(weight_norm=True, dtype=self.dtype_policy)
        self.cond_layer = (VitsConv(s.speaker_embedding_size, 2 * h * num_layers, 1, name="cond_layer", **common)
                           if s.speaker_embedding_size else None)
        self.in_layers = [VitsConv(h, 2 * h, s.wavenet_kernel_size, dilation=s.wavenet_dilation_rate ** i,
                                   name=f"in_{i}", **common) for i in range(num_layers)]
        self.res_skip_layers = [VitsConv(h, 2 * h if i < num_layers - 1 else h, 1, name=f"res_skip_{i}", **common)
                                for i in range(num_layers)]

    def build(self, input_shape=None):
        for c in self._convs():
            c.build(None)
        self.built = True

    def _convs(self):
        return ([self.cond_layer] if self.cond_layer is not None else []) + self.in_layers + self.res_skip_layers

    def call(self, x, pmask, cond=None):
        h = self.hidden
        out = ops.zeros_like(x)
        if cond is not None:
            cond = self.cond_layer(cond)
        for i in range(self.n):
            a = self.in_layers[i](x)
            if cond is not None:
                a = a + cond[..., 2 * h * i:2 * h * (i + 1)]
            acts = ops.tanh(a[..., :h]) * ops.sigmoid(a[..., h:])
            rs = self.res_skip_layers[i](acts)
            if i < self.n - 1:
                x = (x + rs[..., :h]) * pmask
                out = out + rs[..., h:]
            else:
                out = out + rs
        return out * pmask

    def rules(self, p):
        r = self.cond_layer.rules(f"{p}cond_layer") if self.cond_layer is not None else []
        for i in range(self.n):
            r += self.in_layers[i].rules(f"{p}in_layers.{i}") + self.res_skip_layers[i].rules(f"{p}res_skip_layers.{i}")
        return r


class VitsCoupling(keras.layers.Layer):
    """A mean-only residual coupling layer (run in reverse: the second half minus a WaveNet's mean)."""

    def __init__(self, spec, **kwargs):
        super().__init__(**kwargs)
        s = spec
        self.half = s.flow_size // 2
        common = dict(dtype=self.dtype_policy)
        self.conv_pre = VitsConv(self.half, s.hidden_size, 1, name="conv_pre", **common)
        self.wavenet = VitsWaveNet(s, s.prior_encoder_num_wavenet_layers, name="wavenet", **common)
        self.conv_post = VitsConv(s.hidden_size, self.half, 1, name="conv_post", **common)

    def build(self, input_shape=None):
        for layer in (self.conv_pre, self.wavenet, self.conv_post):
            layer.build(None)
        self.built = True

    def call(self, x, pmask, cond=None):
        first, second = x[..., :self.half], x[..., self.half:]
        h = self.wavenet(self.conv_pre(first) * pmask, pmask, cond)
        mean = self.conv_post(h) * pmask
        return ops.concatenate([first, (second - mean) * pmask], axis=-1)

    def rules(self, p):
        return (self.conv_pre.rules(f"{p}conv_pre") + self.wavenet.rules(f"{p}wavenet.")
                + self.conv_post.rules(f"{p}conv_post"))


class VitsConvTranspose(keras.layers.Layer):
    """torch ConvTranspose1d(kernel k, stride u, padding (k - u) // 2) on channels-last inputs."""

    def __init__(self, cin, cout, kernel_size, stride, **kwargs):
        super().__init__(**kwargs)
        self.cin, self.cout, self.k, self.u = cin, cout, kernel_size, stride

    def build(self, input_shape=None):
        self.kernel = self.add_weight(name="kernel", shape=(self.k, self.cout, self.cin), initializer="he_normal")
        self.bias = self.add_weight(name="bias", shape=(self.cout,), initializer="zeros")
        self.built = True

    def call(self, x):
        p = (self.k - self.u) // 2
        if keras.backend.backend() == "torch":  # crop and bias inside torch's call
            w = compat.inference_cache(self, "weight", [self.kernel],
                                       lambda: compat.torch_conv_transpose1d_weight(self.kernel.value))
            return compat.torch_conv_transpose1d(ops.convert_to_tensor(x), w, self.bias.value, self.u, p)
        y = ops.conv_transpose(x, self.kernel, strides=self.u, padding="valid")  # (t - 1) * u + k samples
        return (y[:, p:-p] if p else y) + self.bias  # (t - 1) * u + k - 2p samples; no static length needed

    def rules(self, p):
        return [Rule(f"{p}.weight", self.kernel, Transpose(CONV_AXES)), Rule(f"{p}.bias", self.bias)]


class VitsHifiGan(keras.layers.Layer):
    def __init__(self, spec, **kwargs):
        super().__init__(**kwargs)
        s = spec
        common = dict(dtype=self.dtype_policy)
        c0 = s.upsample_initial_channel
        self.slope, self.kernels = s.leaky_relu_slope, len(s.resblock_kernel_sizes)
        self.conv_pre = VitsConv(s.flow_size, c0, 7, name="conv_pre", **common)
        self.upsampler = [VitsConvTranspose(c0 // 2 ** i, c0 // 2 ** (i + 1), k, u, name=f"up_{i}", **common)
                          for i, (u, k) in enumerate(zip(s.upsample_rates, s.upsample_kernel_sizes))]
        self.resblocks = []
        for i in range(len(self.upsampler)):
            ch = c0 // 2 ** (i + 1)
            for j, (k, dil) in enumerate(zip(s.resblock_kernel_sizes, s.resblock_dilation_sizes)):
                self.resblocks.append((
                    [VitsConv(ch, ch, k, dilation=d, name=f"res_{i}_{j}_a{n}", **common) for n, d in enumerate(dil)],
                    [VitsConv(ch, ch, k, name=f"res_{i}_{j}_b{n}", **common) for n in range(len(dil))]))
        self.conv_post = VitsConv(c0 // 2 ** len(self.upsampler), 1, 7, use_bias=False, name="conv_post", **common)
        self.cond = VitsConv(s.speaker_embedding_size, c0, 1, name="cond", **common) if s.speaker_embedding_size else None

    def build(self, input_shape=None):
        layers = [self.conv_pre, self.conv_post, *self.upsampler] + ([self.cond] if self.cond is not None else [])
        for convs1, convs2 in self.resblocks:
            layers += convs1 + convs2
        for layer in layers:
            layer.build(None)
        self.built = True

    def call(self, x, speaker=None):
        x = self.conv_pre(x)
        if speaker is not None:
            x = x + self.cond(speaker)
        for i, up in enumerate(self.upsampler):
            x = up(ops.leaky_relu(x, self.slope))
            total = None
            for convs1, convs2 in self.resblocks[i * self.kernels:(i + 1) * self.kernels]:
                h = x
                for c1, c2 in zip(convs1, convs2):
                    h = c2(ops.leaky_relu(c1(ops.leaky_relu(h, self.slope)), self.slope)) + h
                total = h if total is None else total + h
            x = total / self.kernels
        x = self.conv_post(ops.leaky_relu(x, 0.01))  # torch's default slope here, as Transformers
        return ops.tanh(x[..., 0])

    def rules(self, p):
        r = self.conv_pre.rules(f"{p}conv_pre") + self.conv_post.rules(f"{p}conv_post")
        if self.cond is not None:
            r += self.cond.rules(f"{p}cond")
        for i, up in enumerate(self.upsampler):
            r += up.rules(f"{p}upsampler.{i}")
        for i, (convs1, convs2) in enumerate(self.resblocks):
            for n, (c1, c2) in enumerate(zip(convs1, convs2)):
                r += c1.rules(f"{p}resblocks.{i}.convs1.{n}") + c2.rules(f"{p}resblocks.{i}.convs2.{n}")
        return r
