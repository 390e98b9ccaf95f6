"""Transformer-XL (``transfo-xl``, removed from Transformers 5; Transformers 4.x
``models/deprecated/transfo_xl``).

* Adaptive input embeddings: the vocabulary is split at ``cutoffs``; cluster ``i`` has its own
  table ``d_embed // div_val**i`` wide and a projection to ``d_model`` (``div_val`` 1: one table,
  projected only when ``d_embed != d_model``); the embedding is scaled by ``sqrt(d_model)``.
* Every layer attends over ``memories + segment`` (memories: the inputs of that layer from earlier
  segments, ``mem_len`` of them; a call without memories uses ``mem_len`` zero vectors, as
  Transformers does) with relative positions: scores ``((q + r_w_bias) . k_j + (q + r_r_bias) .
  R(i - j)) / sqrt(d_head)``, ``R`` a sinusoidal table of the distance (clamped at ``clamp_len``)
  through the layer's ``r_net``; causal, and with ``same_length`` each query also sees at most
  ``mem_len`` earlier keys. Post-norm blocks (``pre_lnorm``: pre-norm, no final norm).
* There is no attention mask (Transformers takes none): padding tokens are read as tokens. The
  sequence classifier pools the token before the first ``pad_token_id`` (the last one without).
* The LM head is the projected adaptive log-softmax: the task returns log-probabilities over the
  vocabulary (Transformers' ``prediction_scores``), the head cluster's shortlist plus, per tail
  cluster, the head's cluster log-probability plus the cluster's own log-softmax. Output tables
  and projections are tied to the input ones where config.json says so (``tie_word_embeddings``,
  ``tie_projs``).

``backbone.call_with_mems(input_ids, mems)`` returns ``(hidden, new_mems)``, the memories stacked
as (layers, batch, mem_len, d_model); the tasks take ``{"input_ids", "mems"}`` too.

``CausalLM.generate`` (greedy, sampling, beams) uses the memories as the cache: the prompt with zero
memories, then one token per step with the memories returned, as Transformers 4.x's
``prepare_inputs_for_generation`` feeds the model (prompts of unequal length are left-padded, and
the padding is read as tokens, as it would be there). The tokenizer (TransfoXLTokenizer, a pickled
vocabulary) is not supported: pickle is never loaded.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_models.errors import ConfigError, InputError
from keras_models.layers.vision_embeddings import dense_rules, norm_rules
from keras_models.models.backbone import SpecBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.presets.weight_map import TRANSPOSE, Rule
from keras_models.spec import Spec, dim, hf
from keras_models.tasks.causal_lm import CausalLM
from keras_models.tasks.task import Task
from keras_models.tasks.text import TextClassifier

_ser = keras.saving.register_keras_serializable(package="keras_models")
NEG = float(np.finfo(np.float32).min)


@dataclass(frozen=True, kw_only=True)
class TransfoXLSpec(Spec):
    vocab_size: int = dim("vocab_size", 267735)
    cutoffs: tuple = hf("cutoffs", (20000, 40000, 200000), doc="adaptive cluster boundaries")
    d_model: int = dim("d_model", 1024)
    d_embed: int = dim("d_embed", 1024)
    n_head: int = dim("n_head", 16)
    d_head: int = dim("d_head", 64)
    d_inner: int = dim("d_inner", 4096)
    div_val: int = dim("div_val", 4)
    pre_lnorm: bool = hf("pre_lnorm", False)
    n_layer: int = dim("n_layer", 18)
    mem_len: int = hf("mem_len", 1600, doc="memory length (>= 0)")
    clamp_len: int = hf("clamp_len", 1000, doc="relative distances clamped here (<= 0: not clamped)")
    same_length: bool = hf("same_length", True)
    untie_r: bool = hf("untie_r", True)
    attn_type: int = hf("attn_type", 0)
    sample_softmax: int = hf("sample_softmax", -1)
    tie_projs: tuple | None = hf("tie_projs", None, doc="output projections tied to the input ones")
    tie_word_embeddings: bool = hf("tie_word_embeddings", True)
    layer_norm_epsilon: float = hf("layer_norm_epsilon", 1e-5)
    dropout: float = hf("dropout", 0.1)
    pad_token_id: int | None = hf("pad_token_id", None)
    eos_token_id: int | tuple | None = hf("eos_token_id", 0)

    unsupported = {"attn_type": (0,), "untie_r": (True,)}

    def validate(self, source="config.json"):
        if self.attn_type != 0:
            raise ConfigError(f"{source}: attn_type={self.attn_type!r}: only 0 (relative partial attention) exists")
        if self.untie_r is not True:
            raise ConfigError(f"{source}: untie_r={self.untie_r!r}: shared r-biases are not supported (only True)")
        if isinstance(self.sample_softmax, bool) or not isinstance(self.sample_softmax, int) or self.sample_softmax > 0:
            raise ConfigError(f"{source}: sample_softmax={self.sample_softmax!r}: sampled softmax is not supported "
                              "(expected <= 0)")
        if isinstance(self.mem_len, bool) or not isinstance(self.mem_len, int) or not 0 <= self.mem_len < 2**20:
            raise ConfigError(f"{source}: mem_len={self.mem_len!r} must be an integer >= 0")
        if isinstance(self.clamp_len, bool) or not isinstance(self.clamp_len, int):
            raise ConfigError(f"{source}: clamp_len={self.clamp_len!r} must be an integer")
        if self.d_model % 2:
            raise ConfigError(f"{source}: d_model={self.d_model} must be even (sinusoidal positions)")
        cuts = self.cutoffs
        if (not all(isinstance(c, int) and not isinstance(c, bool) for c in cuts)
                or list(cuts) != sorted(set(cuts)) or (cuts and (cuts[0] <= 0 or cuts[-1] >= self.vocab_size))):
            raise ConfigError(f"{source}: cutoffs={list(cuts)!r} must be increasing integers in (0, vocab_size)")
        for i in range(len(cuts) + 1):
            if self.div_val > 1 and self.d_embed // self.div_val**i < 1:
                raise ConfigError(f"{source}: d_embed={self.d_embed} // div_val**{i} is 0 (cluster {i} has no width)")
        if self.tie_projs is not None and not all(isinstance(t, bool) for t in self.tie_projs):
            raise ConfigError(f"{source}: tie_projs={self.tie_projs!r} must be a list of booleans")

    def cluster_widths(self):
        """(first id, end id, width) of each input table (one table when div_val is 1)."""
        if self.div_val == 1:
            return [(0, self.vocab_size, self.d_embed)]
        ends = [0, *self.cutoffs, self.vocab_size]
        return [(ends[i], ends[i + 1], self.d_embed // self.div_val**i) for i in range(len(ends) - 1)]

    def proj_tied(self, i):
        ties = self.tie_projs
        if ties is None:
            ties = (False,) + (True,) * len(self.cutoffs)
        return i < len(ties) and bool(ties[i])


def positional_table(positions, width):
    inv = 1.0 / (10000.0 ** (ops.arange(0, width, 2, dtype="float32") / width))
    angles = positions[:, None] * inv[None, :]
    return ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1)


@_ser
class TransfoXLBlock(keras.layers.Layer):
    """Relative partial attention over (memory + segment) and the position-wise feed-forward."""

    def __init__(self, d_model, n_head, d_head, d_inner, eps, pre_lnorm, **kwargs):
        super().__init__(**kwargs)
        self.d_model, self.n_head, self.d_head, self.d_inner = d_model, n_head, d_head, d_inner
        self.eps, self.pre_lnorm = eps, pre_lnorm
        d = self.dtype_policy

        def dense(units, name, bias=False):
            return keras.layers.Dense(units, use_bias=bias, name=name, dtype=d)

        self.qkv = dense(3 * n_head * d_head, "qkv_net")
        self.r_net = dense(n_head * d_head, "r_net")
        self.o_net = dense(d_model, "o_net")
        self.attn_norm = keras.layers.LayerNormalization(epsilon=eps, name="attn_norm", dtype=d)
        self.ff1 = dense(d_inner, "ff1", bias=True)
        self.ff2 = dense(d_model, "ff2", bias=True)
        self.ff_norm = keras.layers.LayerNormalization(epsilon=eps, name="ff_norm", dtype=d)

    def build(self, input_shape=None):
        m, hd = self.d_model, self.n_head * self.d_head
        self.r_w_bias = self.add_weight(name="r_w_bias", shape=(self.n_head, self.d_head), initializer="zeros")
        self.r_r_bias = self.add_weight(name="r_r_bias", shape=(self.n_head, self.d_head), initializer="zeros")
        for layer, width in ((self.qkv, m), (self.r_net, m), (self.o_net, hd), (self.attn_norm, m),
                             (self.ff1, m), (self.ff2, self.d_inner), (self.ff_norm, m)):
            layer.build((None, None, width))
        self.built = True

    def call(self, x, mem, pos, hidden):
        """x (b, q, m), mem (b, l, m), pos (k, m) distances k-1 .. 0, hidden (q, k): True where a key is not seen."""
        b, q = ops.shape(x)[0], ops.shape(x)[1]
        n, dh = self.n_head, self.d_head
        cat = ops.concatenate([mem, x], axis=1)
        k_len = ops.shape(cat)[1]
        heads = self.qkv(self.attn_norm(cat) if self.pre_lnorm else cat)
        wq, wk, wv = ops.split(heads, 3, axis=-1)
        wq = ops.reshape(wq[:, -q:], (b, q, n, dh))
        wk, wv = ops.reshape(wk, (b, k_len, n, dh)), ops.reshape(wv, (b, k_len, n, dh))
        rk = ops.reshape(self.r_net(pos), (k_len, n, dh))
        ac = ops.einsum("bind,bjnd->bnij", wq + self.r_w_bias, wk)
        bd = ops.einsum("bind,jnd->bnij", wq + self.r_r_bias, rk)  # column p: distance k_len - 1 - p
        # relative shift: query i (at memory length + i) and key j are (k_len - q + i - j) apart
        i = ops.arange(q, dtype="int32")[:, None]
        j = ops.arange(k_len, dtype="int32")[None, :]
        index = ops.clip(j + q - 1 - i, 0, k_len - 1)
        bd = ops.take_along_axis(bd, ops.broadcast_to(index[None, None], (b, n, q, k_len)), axis=3)
        scores = (ac + bd) * ops.cast(self.d_head**-0.5, ac.dtype)
        scores = ops.where(hidden[None, None], ops.cast(NEG, "float32"), ops.cast(scores, "float32"))
        probs = ops.cast(ops.softmax(scores, axis=-1), wv.dtype)
        out = ops.reshape(ops.einsum("bnij,bjnd->bind", probs, wv), (b, q, n * dh))
        out = self.o_net(out)
        h = x + out if self.pre_lnorm else self.attn_norm(x + out)
        if self.pre_lnorm:
            return h + self.ff2(ops.relu(self.ff1(self.ff_norm(h))))
        return self.ff_norm(h + self.ff2(ops.relu(self.ff1(h))))

    def get_config(self):
        config = super().get_config()
        config.update(d_model=self.d_model, n_head=self.n_head, d_head=self.d_head, d_inner=self.d_inner,
                      eps=self.eps, pre_lnorm=self.pre_lnorm)
        return config


@_ser
@register_backbone("transfo-xl")
class TransfoXLBackbone(SpecBackbone):
    """Last hidden state (batch, seq, d_model) of ``{"input_ids"[, "mems"]}``; see the module
    docstring (``attention_mask`` is accepted and, as in Transformers, not used)."""

    spec_cls = TransfoXLSpec
    base_model_prefix = "transformer"
    hf_architecture = "TransfoXLModel"
    hf_ignore = ("transformer.pos_emb.inv_freq", "pos_emb.inv_freq")
    lora_targets = ("qkv_net",)
    slot_dependent = True  # no attention mask: generation must not left-pad prompts to a bucket
    verified_backends = ("jax", "torch", "tensorflow")
    not_covered = 'the tokenizer (a pickled vocab: never loaded)'  # shown beside the row in docs/models.md

    def __init__(self, spec=None, **kwargs):
        super().__init__(spec, **kwargs)
        s = self.spec
        self.vocab_size, self.hidden_size, self.num_layers = s.vocab_size, s.d_model, s.n_layer
        self.dropout_rate, self.initializer_range = 0.0, 0.02
        self.clusters = s.cluster_widths()
        self.blocks = [TransfoXLBlock(s.d_model, s.n_head, s.d_head, s.d_inner, s.layer_norm_epsilon, s.pre_lnorm,
                                      name=f"layer_{i}", dtype=self.dtype_policy) for i in range(s.n_layer)]

    def build(self, input_shape=None):
        s = self.spec
        self.emb_tables, self.emb_projs = [], []
        for i, (lo, hi, width) in enumerate(self.clusters):
            self.emb_tables.append(self.add_weight(name=f"emb_{i}", shape=(hi - lo, width),
                                                   initializer=keras.initializers.RandomNormal(stddev=0.02)))
            needs = s.div_val != 1 or width != s.d_model
            self.emb_projs.append(self.add_weight(name=f"emb_proj_{i}", shape=(s.d_model, width),
                                                  initializer=keras.initializers.RandomNormal(stddev=0.02))
                                  if needs else None)
        for block in self.blocks:
            block.build((None, None, s.d_model))
        self.built = True

    # --- forward ------------------------------------------------------------------------------
    def embed(self, ids):
        s = self.spec
        out = None
        for (lo, hi, _), table, proj in zip(self.clusters, self.emb_tables, self.emb_projs):
            inside = ops.logical_and(ids >= lo, ids < hi)
            e = ops.take(table, ops.where(inside, ids - lo, 0), axis=0)
            if proj is not None:
                e = ops.matmul(e, ops.transpose(proj))
            e = e * ops.cast(inside[..., None], e.dtype) if len(self.clusters) > 1 else e
            out = e if out is None else out + e
        return out * ops.cast(s.d_model**0.5, out.dtype)

    def init_mems(self, batch_size):
        return ops.zeros((self.spec.n_layer, batch_size, self.spec.mem_len, self.spec.d_model), self.compute_dtype)

    def call_with_mems(self, input_ids, mems=None):
        s = self.spec
        ids = ops.cast(input_ids, "int32")
        b, q = ops.shape(ids)[0], ids.shape[1]
        if q is None:
            raise InputError("TransfoXL: input_ids need a static sequence length")
        if mems is None:
            mems = self.init_mems(b)
        mems = ops.cast(mems, self.compute_dtype)
        mlen = mems.shape[2]
        if mlen is None:
            raise InputError("TransfoXL: mems need a static length (layers, batch, mem_len, d_model)")
        x = self.embed(ids)
        k = mlen + q
        i = ops.arange(q, dtype="int32")[:, None]
        j = ops.arange(k, dtype="int32")[None, :]
        mask = j > i + mlen
        if s.same_length:
            mask_len = k - s.mem_len
            shift = q - mask_len if mask_len > 0 else q
            mask = ops.logical_or(mask, j - i <= -shift)
        positions = ops.cast(ops.arange(k - 1, -1, -1, dtype="int32"), "float32")
        if s.clamp_len > 0:
            positions = ops.minimum(positions, float(s.clamp_len))
        pos = ops.cast(positional_table(positions, s.d_model), x.dtype)
        hids = []
        for index, block in enumerate(self.blocks):
            hids.append(x)
            x = block(x, mems[index], pos, mask)
        end = mlen + q
        start = max(0, end - s.mem_len)
        new = [ops.concatenate([mems[index], h], axis=1)[:, start:end] for index, h in enumerate(hids)]
        return x, ops.stack(new) if new else mems

    def call(self, inputs, training=False):
        ids = inputs["input_ids"] if isinstance(inputs, dict) else inputs
        mems = inputs.get("mems") if isinstance(inputs, dict) else None
        return self.call_with_mems(ids, mems)[0]

    # --- weights ------------------------------------------------------------------------------
    def weight_rules(self):
        r = []
        for i, (table, proj) in enumerate(zip(self.emb_tables, self.emb_projs)):
            r.append(Rule(f"word_emb.emb_layers.{i}.weight", table))
            if proj is not None:
                r.append(Rule(f"word_emb.emb_projs.{i}", proj))
        for i, blk in enumerate(self.blocks):
            a, f = f"layers.{i}.dec_attn.", f"layers.{i}.pos_ff."
            r += dense_rules(a + "qkv_net", blk.qkv) + dense_rules(a + "r_net", blk.r_net)
            r += dense_rules(a + "o_net", blk.o_net) + norm_rules(a + "layer_norm", blk.attn_norm)
            r += [Rule(a + "r_w_bias", blk.r_w_bias), Rule(a + "r_r_bias", blk.r_r_bias)]
            r += dense_rules(f + "CoreNet.0", blk.ff1) + dense_rules(f + "CoreNet.3", blk.ff2)
            r += norm_rules(f + "layer_norm", blk.ff_norm)
        return r


def _inputs(inputs):
    if not isinstance(inputs, dict):
        return inputs, None
    return inputs["input_ids"], inputs.get("mems")


@_ser
@register_task(TransfoXLBackbone, "CausalLM", ("TransfoXLLMHeadModel",))
class TransfoXLCausalLM(CausalLM):
    """Log-probabilities (batch, seq, vocab) of the projected adaptive softmax (Transformers'
    ``prediction_scores``). ``call_with_mems`` gives them with the new memories. ``generate`` runs the
    shared engine with the memories as its cache (see ``call_with_cache``)."""

    hf_head_patterns = ("crit.*",)

    def __init__(self, backbone, preprocessor=None, **kwargs):
        Task.__init__(self, backbone, preprocessor=preprocessor, **kwargs)

    def build(self, input_shape=None):
        b = self.backbone
        b.build_from_dummy()
        s = b.spec
        ends = [0, *s.cutoffs, s.vocab_size]
        self.n_clusters = len(s.cutoffs)
        init = keras.initializers.RandomNormal(stddev=0.02)
        if self.n_clusters:
            self.cluster_weight = self.add_weight(name="cluster_weight", shape=(self.n_clusters, s.d_embed),
                                                  initializer="zeros")
            self.cluster_bias = self.add_weight(name="cluster_bias", shape=(self.n_clusters,), initializer="zeros")
        self.out_tables, self.out_biases, self.out_projs = [], [], []
        layers = b.clusters
        for i, (lo, hi, width) in enumerate(layers):
            self.out_tables.append(None if s.tie_word_embeddings else
                                   self.add_weight(name=f"out_{i}", shape=(hi - lo, width), initializer=init))
            self.out_biases.append(self.add_weight(name=f"out_bias_{i}", shape=(hi - lo,), initializer="zeros"))
        for i in range(len(ends) - 1):
            width = s.d_embed // s.div_val**i if s.div_val != 1 else s.d_embed
            if s.div_val == 1 and s.d_model == s.d_embed:
                self.out_projs.append(None)
            elif s.proj_tied(i):
                self.out_projs.append("tied")
            else:
                self.out_projs.append(self.add_weight(name=f"out_proj_{i}", shape=(s.d_model, width),
                                                      initializer=init))
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    def _table(self, i):
        return self.backbone.emb_tables[i] if self.out_tables[i] is None else self.out_tables[i]

    def _proj(self, i):
        p = self.out_projs[i]
        if isinstance(p, str):  # tied to the input projection (div_val 1: the only one)
            return self.backbone.emb_projs[i if self.backbone.spec.div_val != 1 else 0]
        return p

    def _logit(self, h, weight, bias, proj):
        if proj is not None:
            h = ops.matmul(h, ops.cast(proj, h.dtype))
        return ops.matmul(h, ops.transpose(ops.cast(weight, h.dtype))) + ops.cast(bias, h.dtype)

    def logits(self, hidden):
        s = self.backbone.spec
        ends = [0, *s.cutoffs, s.vocab_size]
        h = ops.cast(hidden, "float32")
        weights, biases = [], []
        for i in range(len(ends) - 1):
            if s.div_val == 1:
                weights.append(self._table(0)[ends[i]:ends[i + 1]])
                biases.append(self.out_biases[0][ends[i]:ends[i + 1]])
            else:
                weights.append(self._table(i))
                biases.append(self.out_biases[i])
        if not self.n_clusters:
            return ops.log_softmax(self._logit(h, weights[0], biases[0], self._proj(0)), axis=-1)
        head_w = ops.concatenate([ops.cast(weights[0], "float32"), ops.cast(self.cluster_weight, "float32")], 0)
        head_b = ops.concatenate([ops.cast(biases[0], "float32"), ops.cast(self.cluster_bias, "float32")], 0)
        head = ops.log_softmax(self._logit(h, head_w, head_b, self._proj(0)), axis=-1)
        parts = [head[..., : s.cutoffs[0]]]
        for i in range(1, len(ends) - 1):
            tail = ops.log_softmax(self._logit(h, weights[i], biases[i], self._proj(i)), axis=-1)
            parts.append(head[..., s.cutoffs[0] + i - 1: s.cutoffs[0] + i] + tail)
        return ops.concatenate(parts, axis=-1)

    def call(self, inputs, training=False):
        ids, mems = _inputs(inputs)
        return self.logits(self.backbone.call_with_mems(ids, mems)[0])

    def call_with_mems(self, input_ids, mems=None):
        hidden, mems = self.backbone.call_with_mems(input_ids, mems)
        return self.logits(hidden), mems

    # --- generation: the memories are the cache --------------------------------------------------
    def init_cache(self, batch_size, max_length):
        """Zero memories (layers, batch, mem_len, d_model), whatever ``max_length``: Transformer-XL
        keeps the last ``mem_len`` layer inputs, not every position."""
        return self.backbone.init_mems(batch_size)

    def call_with_cache(self, input_ids, cache, cache_index, attention_mask, last_only=False):
        """Log-probabilities of ``input_ids`` continuing the memories ``cache``, and the new memories:
        the prompt with zero memories, then one token per step with the memories the previous call
        returned, as Transformers' ``prepare_inputs_for_generation`` feeds the model. There is no
        attention mask (``attention_mask`` / ``cache_index`` are not read): padding is read as tokens."""
        hidden, mems = self.backbone.call_with_mems(input_ids, cache)
        if last_only:
            hidden = hidden[:, -1:, :]
        return self.logits(hidden), mems

    def default_loss(self):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-100)

    def head_rules(self):
        s = self.backbone.spec
        r = []
        if self.n_clusters:
            r += [Rule("crit.cluster_weight", self.cluster_weight, base=False),
                  Rule("crit.cluster_bias", self.cluster_bias, base=False)]
        for i, bias in enumerate(self.out_biases):
            r.append(Rule(f"crit.out_layers.{i}.bias", bias, base=False))
            if self.out_tables[i] is None:
                r.append(Rule(f"crit.out_layers.{i}.weight", self.backbone.emb_tables[i], base=False,
                              optional=True, export=False))
            else:
                r.append(Rule(f"crit.out_layers.{i}.weight", self.out_tables[i], base=False))
        for i, p in enumerate(self.out_projs):
            if p is None:
                continue
            if isinstance(p, str):
                r.append(Rule(f"crit.out_projs.{i}", self._proj(i), base=False, optional=True, export=False))
            else:
                r.append(Rule(f"crit.out_projs.{i}", p, base=False))
        del s
        return r


@_ser
@register_task(TransfoXLBackbone, "TextClassifier", ("TransfoXLForSequenceClassification",))
class TransfoXLTextClassifier(TextClassifier):
    """A bias-free ``score`` Linear on the token before the first ``pad_token_id`` (Transformers'
    rule: the last token when there is none); ``d_embed`` must equal ``d_model`` (the head is
    ``d_embed`` wide)."""

    hf_inner = None
    hf_out = "score"
    hf_head_patterns = ("score.*",)

    def __init__(self, backbone, num_classes=2, id2label=None, dropout=None, preprocessor=None, **kwargs):
        Task.__init__(self, backbone, preprocessor=preprocessor, **kwargs)
        self.num_classes = num_classes
        self.id2label = {int(k): v for k, v in id2label.items()} if id2label else None
        self.dropout = 0.0 if dropout is None else dropout
        if backbone.spec.d_embed != backbone.spec.d_model:
            raise ConfigError(f"config.json: d_embed={backbone.spec.d_embed} != d_model={backbone.spec.d_model}: "
                              "TransfoXLForSequenceClassification's score layer is d_embed wide")
        self.score = keras.layers.Dense(num_classes, use_bias=False, name="score", dtype=backbone.dtype_policy)

    def build(self, input_shape=None):
        self.backbone.build_from_dummy()
        self.score.build((None, self.backbone.spec.d_model))
        self.built = True

    def build_from_dummy(self):
        if not self.built:
            self.build()
        return self

    def pool(self, hidden, ids):
        pad = self.backbone.spec.pad_token_id
        seq = ops.shape(ids)[1]
        if pad is None:
            index = ops.full((ops.shape(ids)[0],), seq - 1, dtype="int32")
        else:
            first = ops.cast(ops.argmax(ops.cast(ops.equal(ids, pad), "int32"), axis=-1), "int32")
            index = ops.mod(first - 1 + seq, seq)
        return ops.take_along_axis(hidden, index[:, None, None], axis=1)[:, 0]

    def call(self, inputs, training=False):
        ids, mems = _inputs(inputs)
        ids = ops.cast(ids, "int32")
        return self.score(self.pool(self.backbone.call_with_mems(ids, mems)[0], ids))

    def head_rules(self):
        return [Rule("score.weight", self.score.kernel, TRANSPOSE, base=False)]


__all__ = ["TransfoXLSpec", "TransfoXLBackbone", "TransfoXLBlock", "TransfoXLCausalLM", "TransfoXLTextClassifier"]
