"""Records tests/models/removed_golden/qdqbert/ and qdqbert.npz (QDQBert, removed from
Transformers 5) with Transformers 4.57.1 running on the pytorch-quantization stand-in
(pytorch_quantization_standin.py: NVIDIA's package is not installable here; the stand-in is
injected through sys.modules by this script only):
    PYTHONPATH=/tmp/tf4 python tests/models/removed_golden/record_qdqbert.py

One padded batch (2 x 9, the second row padded after 6 tokens), the library's default descriptors
(8-bit, inputs per tensor, weights per output row, dynamic amax):
* ``base``: 2 layers, gelu, 2 token types: QDQBertModel (Backbone: last hidden state and pooler
  output), ForMaskedLM, ForSequenceClassification, ForTokenClassification, ForQuestionAnswering;
* ``odd``: 1 layer, relu, layer_norm_eps 1e-6, 3 token types, 4 heads (TextClassifier; its inputs' token_type_ids are the recorded ones times 2);
* ``calibrated``: the base MaskedLM checkpoint with a stored ``_amax`` on every quantizer (as a
  checkpoint exported after calibration carries them): inputs' amax 0.7x or 1.3x the dynamic one
  (alternating, so some tensors clip), weights' 0.9x each row's max. Its outputs are those of the
  model that was saved (checked equal to those of the saved file's state dict loaded by torch's ``load_state_dict``,
  which hands the buffers to the quantizers; Transformers' ``from_pretrained`` drops them).
Every float parameter is perturbed; ``base``/``odd`` outputs are computed after reloading.
"""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import pytorch_quantization_standin as standin  # noqa: E402
from record import HERE, outputs, save, text_inputs, write  # noqa: E402

BASE = dict(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
            max_position_embeddings=32, initializer_range=0.3, pad_token_id=1)
CONFIGS = {
    "base": (dict(), ("Backbone", "MaskedLM", "TextClassifier", "TokenClassifier", "QuestionAnswerer")),
    "odd": (dict(num_hidden_layers=1, hidden_act="relu", layer_norm_eps=1e-6, type_vocab_size=3,
                 num_attention_heads=4),
            ("TextClassifier",)),
}
ARCH = {"Backbone": "QDQBertModel", "MaskedLM": "QDQBertForMaskedLM",
        "TextClassifier": "QDQBertForSequenceClassification", "TokenClassifier": "QDQBertForTokenClassification",
        "QuestionAnswerer": "QDQBertForQuestionAnswering"}


def calibrate(model, inputs):
    """Store an ``_amax`` on every quantizer (see the module docstring)."""
    seen = {}
    quantizers = [(n, m) for n, m in model.named_modules() if isinstance(m, standin.TensorQuantizer)]

    def hook(name):
        def record(module, args):  # returns None: the input goes on unchanged
            seen[name] = args[0].detach().abs().max()
        return record

    hooks = [m.register_forward_pre_hook(hook(n)) for n, m in quantizers]
    outputs(model, inputs)
    for h in hooks:
        h.remove()
    for i, (name, q) in enumerate(quantizers):
        if name.endswith("_weight_quantizer"):
            weight = model.get_submodule(name.rsplit(".", 1)[0]).weight.detach()
            q.amax = weight.abs().amax(dim=1, keepdim=True) * 0.9  # (out, 1), as the library stores it
        else:
            q.amax = seen[name] * (0.7 if i % 2 else 1.3)  # a 0-d tensor
    return len(quantizers)


def main():
    standin.install()
    from transformers.models.deprecated.qdqbert import modeling_qdqbert as mq

    inputs = text_inputs(batch=2, seq=9, pad_id=1, pad_last=3)
    odd_inputs = dict(inputs, token_type_ids=inputs["token_type_ids"] * 2)
    results = {}
    for name, (kwargs, tasks) in CONFIGS.items():
        for task in tasks:
            config = mq.QDQBertConfig(**{**BASE, **kwargs}, num_labels=2 if task == "QuestionAnswerer" else 3)
            model = save(getattr(mq, ARCH[task]), config, HERE / "qdqbert" / f"{name}_{task}")
            results[f"{name}_{task}"] = outputs(model, odd_inputs if name == "odd" else inputs)

    config = mq.QDQBertConfig(**BASE)
    model = save(mq.QDQBertForMaskedLM, config, HERE / "qdqbert" / "calibrated_MaskedLM")
    count = calibrate(model, inputs)
    folder = HERE / "qdqbert" / "calibrated_MaskedLM"
    model.save_pretrained(folder, safe_serialization=True)
    results["calibrated_MaskedLM"] = outputs(model, inputs)
    # Transformers' from_pretrained drops the ``_amax`` tensors (no such buffers in a fresh model);
    # torch's load_state_dict hands them to the quantizers, which register them (as the library does)
    from safetensors.torch import load_file

    reloaded = mq.QDQBertForMaskedLM.from_pretrained(folder).eval()
    result = reloaded.load_state_dict(load_file(folder / "model.safetensors"), strict=False)
    assert not result.unexpected_keys, result
    stored = sum(1 for m in reloaded.modules() if isinstance(m, standin.TensorQuantizer) and m.amax is not None)
    assert stored == count == 2 * (6 * 2 + 8), (stored, count)
    again = outputs(reloaded, inputs)
    assert all(np.array_equal(again[k], v) for k, v in results["calibrated_MaskedLM"].items())
    dynamic = outputs(save(mq.QDQBertForMaskedLM, config, HERE / "qdqbert" / "_tmp"), inputs)
    import shutil

    shutil.rmtree(HERE / "qdqbert" / "_tmp")
    diff = np.abs(dynamic["logits"] - results["calibrated_MaskedLM"]["logits"]).max()
    assert diff > 1e-2, diff  # the stored amax changes the outputs
    print("calibrated vs dynamic logits differ by", diff)
    write("qdqbert", inputs, results)


if __name__ == "__main__":
    with torch.no_grad():
        main()
