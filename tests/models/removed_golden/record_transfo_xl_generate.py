"""Records tests/models/removed_golden/transfo_xl_generate.npz: greedy decoding of the two
Transformer-XL LM checkpoints record_transfo_xl.py wrote (loaded, not rebuilt) with Transformers
4.57.1, once:
    PYTHONPATH=/tmp/tf4 python tests/models/removed_golden/record_transfo_xl_generate.py

4.57.1's ``generate`` cannot run this model: TransfoXLLMHeadModel no longer inherits
GenerationMixin (no ``generate`` attribute), and with the mixin added generate hands a Cache object
to ``forward`` as ``mems`` (AttributeError: 'tuple' object has no attribute 'size'). So the reference
is the loop the model's own ``prepare_inputs_for_generation`` defines, run by hand: the whole prompt
with no memories (zero ones, inside forward), then each step only the last token with the ``mems``
the previous call returned; the next token is the argmax of the last position's
``prediction_scores``. A 2 x 6 prompt (no padding: Transformer-XL reads every token), 5 new tokens;
also stored, the smallest top-1 / top-2 gap of the step scores (a 1e-4 difference cannot flip a
token)."""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from record import HERE  # noqa: E402
from record_transfo_xl import _type_as_dtype  # noqa: E402

CASES = ("CausalLM", "CausalLM_odd")
NEW = 5


def record():
    from transformers import TransfoXLLMHeadModel

    rng = np.random.RandomState(7)
    prompt = rng.randint(3, 60, size=(2, 6)).astype("int64")
    arrays = {"in_prompt": prompt}
    for case in CASES:
        model = TransfoXLLMHeadModel.from_pretrained(HERE / "transfo_xl" / case).eval()
        ids, mems, gaps = torch.tensor(prompt), None, []
        with torch.no_grad():
            for _ in range(NEW):
                inputs = model.prepare_inputs_for_generation(ids, past_key_values=mems)
                out = model(**inputs)
                scores = out.prediction_scores[:, -1]
                top = torch.topk(scores, 2, dim=-1).values
                gaps.append(float((top[:, 0] - top[:, 1]).min()))
                mems = out.mems
                ids = torch.cat([ids, scores.argmax(-1, keepdim=True)], dim=1)
        arrays[f"{case}__sequences"] = ids.numpy()
        arrays[f"{case}__margin"] = np.asarray(min(gaps))
        print(case, ids.numpy().tolist(), "margin", min(gaps))
    np.savez(HERE / "transfo_xl_generate.npz", **arrays)


if __name__ == "__main__":
    original = _type_as_dtype()
    try:
        record()
    finally:
        torch.Tensor.type_as = original
