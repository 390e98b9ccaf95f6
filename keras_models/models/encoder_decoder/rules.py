"""Weight-map helpers: one Seq2SeqBlock <-> a family's per-layer HF tensor names.

A family describes its layer naming as a dict from our sub-layer names to HF names:
attentions map to ``(prefix, (q, k, v, o))``; ``ffn_in`` may be ``(plain, gated)``; the
placeholder ``{ffn}`` is the feed-forward sub-layer index (T5: 1 in encoders, 2 in decoders).
Sparse (mixture-of-experts) feed-forwards use ``moe_router`` and ``moe_expert`` (with ``{e}``,
the expert index) plus ``moe_expert_dense`` (the names of an expert's up / down projections).
"""

from keras_models.layers.seq2seq_block import norm_rules
from keras_models.presets.weight_map import TRANSPOSE, Rule


def dense_rules(name, dense):
    out = [Rule(f"{name}.weight", dense.kernel, TRANSPOSE)]
    if dense.use_bias:
        out.append(Rule(f"{name}.bias", dense.bias))
    return out


def attention_rules(prefix, attention, names):
    q, k, v, o = names
    return (dense_rules(f"{prefix}.{q}", attention.query) + dense_rules(f"{prefix}.{k}", attention.key)
            + dense_rules(f"{prefix}.{v}", attention.value)
            + dense_rules(f"{prefix}.{o}", attention.output_dense))


def block_rules(prefix, blk, names):
    ffn = "2" if blk.cross_attention else "1"

    def n(key):
        return f"{prefix}.{names[key].format(ffn=ffn)}"

    attn_prefix, proj = names["self_attention"]
    r = attention_rules(f"{prefix}.{attn_prefix}", blk.self_attention, proj)
    r += norm_rules(n("self_attention_norm"), blk.self_attention_norm)
    if blk.cross_attention:
        attn_prefix, proj = names["cross_attention"]
        r += attention_rules(f"{prefix}.{attn_prefix}", blk.cross_attention_layer, proj)
        r += norm_rules(n("cross_attention_norm"), blk.cross_attention_norm)
    if blk.moe is not None:
        r += dense_rules(n("moe_router"), blk.moe.router)
        up, down = names["moe_expert_dense"]
        for e, expert in enumerate(blk.moe.experts):
            p = f"{prefix}.{names['moe_expert'].format(ffn=ffn, e=e)}"
            r += dense_rules(f"{p}.{up}", expert.up) + dense_rules(f"{p}.{down}", expert.down)
        return r + norm_rules(n("ffn_norm"), blk.ffn_norm)
    ffn_in = names["ffn_in"]
    if isinstance(ffn_in, tuple):
        ffn_in = ffn_in[1] if blk.ffn_gate is not None else ffn_in[0]
    r += dense_rules(f"{prefix}.{ffn_in.format(ffn=ffn)}", blk.ffn_in)
    if blk.ffn_gate is not None:
        r += dense_rules(n("ffn_gate"), blk.ffn_gate)
    r += dense_rules(n("ffn_out"), blk.ffn_out)
    r += norm_rules(n("ffn_norm"), blk.ffn_norm)
    return r
