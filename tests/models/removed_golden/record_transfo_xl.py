"""Records tests/models/removed_golden/transfo_xl/ and transfo_xl.npz (Transformer-XL, removed from
Transformers 5) with Transformers 4.57.1, as record.py does for the other removed rows:
    PYTHONPATH=/tmp/tf4 python tests/models/removed_golden/record_transfo_xl.py

Two language-model checkpoints (adaptive embeddings div_val 2 with three clusters, clamp_len below
the key length, same_length, untied r-biases, post-norm; and div_val 1 with a projected embedding,
pre-norm, no same_length, own output projections) called on a 9-token segment
(zero memories) and then on a 4-token segment with the memories the first call returned; and a
sequence classifier (pad id 0, the last row padded)."""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from record import HERE, save  # noqa: E402

BASE = dict(vocab_size=60, d_model=16, n_head=2, d_head=6, d_inner=20, n_layer=2, dropout=0.0,
            init_range=0.3, init_std=0.3, proj_init_std=0.3, pad_token_id=0, eos_token_id=2)
CONFIGS = {
    "CausalLM": dict(cutoffs=[20, 40], d_embed=24, div_val=2, mem_len=5, clamp_len=6, same_length=True,
                     untie_r=True, pre_lnorm=False, layer_norm_epsilon=1e-6),
    "CausalLM_odd": dict(cutoffs=[30], d_embed=12, div_val=1, mem_len=4, clamp_len=1000, same_length=False,
                         untie_r=True, pre_lnorm=True, proj_share_all_but_first=False, layer_norm_epsilon=1e-5),
    "TextClassifier": dict(cutoffs=[], d_embed=16, div_val=1, mem_len=3, clamp_len=4, same_length=True,
                           untie_r=True, pre_lnorm=False, num_labels=3),
}


def run(model, ids, mems=None):
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids), mems=mems, output_hidden_states=True)
    res = {"hidden": out.hidden_states[-1].numpy()}
    if hasattr(out, "prediction_scores"):
        res["logits"] = out.prediction_scores.numpy()
    else:
        res["logits"] = out.logits.numpy()
    if out.mems is not None:
        res["mems"] = torch.stack([m.transpose(0, 1) for m in out.mems]).numpy()  # (layers, batch, mem, d)
    return res, out.mems


def _type_as_dtype():
    """4.57.1's TransfoXLModel.forward calls ``tensor.type_as(dtype=...)``, which torch rejects (the
    deprecated model cannot run there at all). For the recording only, ``type_as(dtype=d)`` is read
    as the intended ``.to(d)``; every other call is torch's own."""
    original = torch.Tensor.type_as

    def type_as(self, other=None, dtype=None):
        return self.to(dtype) if other is None else original(self, other)

    torch.Tensor.type_as = type_as
    return original


def main():
    original = _type_as_dtype()
    try:
        record()
    finally:
        torch.Tensor.type_as = original


def record():
    from transformers import TransfoXLConfig, TransfoXLForSequenceClassification, TransfoXLLMHeadModel

    rng = np.random.RandomState(0)
    ids = rng.randint(3, 60, size=(2, 9)).astype("int64")
    ids[1, 6:] = 0  # right padding (pad id 0); Transformer-XL has no attention mask
    ids2 = rng.randint(3, 60, size=(2, 4)).astype("int64")
    arrays = {"in_input_ids": ids, "in_input_ids2": ids2}
    for task, extra in CONFIGS.items():
        cls = TransfoXLForSequenceClassification if task == "TextClassifier" else TransfoXLLMHeadModel
        model = save(cls, TransfoXLConfig(**BASE, **extra), HERE / "transfo_xl" / task)
        first, mems = run(model, ids)
        arrays.update({f"{task}__{k}": v for k, v in first.items()})
        if task != "TextClassifier":
            second, _ = run(model, ids2, mems)
            arrays.update({f"{task}__{k}2": v for k, v in second.items()})
    np.savez(HERE / "transfo_xl.npz", **arrays)


if __name__ == "__main__":
    main()
