"""Records tests/models/removed_golden/mega/ and mega.npz (MEGA, removed from Transformers 5) with
Transformers 4.57.1, as record.py does for the other removed rows:
    PYTHONPATH=/tmp/tf4 python tests/models/removed_golden/record_mega.py

Four tiny configs over one padded batch (2 x 8, the second row padded after 3 tokens):
* ``base``: bidirectional EMA, rotary bias, softmax, ScaleNorm before the blocks, 3 token types,
  the MLM head's dense + tanh tied to the embeddings: every head (MaskedLM, TextClassifier,
  TokenClassifier, QuestionAnswerer);
* ``chunked``: chunks of 4 (the padded row's second chunk is all padding), simple bias, a
  one-sided EMA truncated at 3, LayerNorm after the blocks, gelu, an untied MLM
  head without the dense (MaskedLM, TextClassifier);
* ``causal``: is_decoder (causal attention), laplace attention, BatchNorm without affine (its running
  statistics perturbed), no normalised FFN, relu (MaskedLM);
* ``rms``: relu2 attention, Mega's RMSNorm (which scales by its weight and never divides: the
  result of its rsqrt is discarded in Transformers), feature dropout, simple bias (TokenClassifier).
Every float parameter and buffer is perturbed; outputs are computed after reloading the saved files.
"""

import shutil
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from record import HERE, outputs, text_inputs, write  # noqa: E402

BASE = dict(vocab_size=60, hidden_size=16, num_hidden_layers=2, intermediate_size=24, ema_projection_size=4,
            shared_representation_size=8, nffn_hidden_size=20, max_positions=16, initializer_range=0.4,
            pad_token_id=1, bos_token_id=0, eos_token_id=2)
CONFIGS = {
    "base": (dict(add_token_type_embeddings=True, type_vocab_size=3),
             ("MaskedLM", "TextClassifier", "TokenClassifier", "QuestionAnswerer")),
    "chunked": (dict(use_chunking=True, chunk_size=4, relative_positional_bias="simple", bidirectional=False,
                     truncation=3, normalization_type="layernorm", normalize_before_mega=False,
                     normalize_before_ffn=False, activation="gelu", add_lm_hidden_dense_layer=False,
                     tie_word_embeddings=False),
                ("MaskedLM", "TextClassifier")),
    "causal": (dict(is_decoder=True, bidirectional=False, attention_activation="laplace",
                    normalization_type="batchnorm", norm_affine=False, use_normalized_ffn=False, activation="relu"),
               ("MaskedLM",)),
    "rms": (dict(attention_activation="relu2", normalization_type="rmsnorm", use_feature_dropout=True,
                 relative_positional_bias="simple"),
            ("TokenClassifier",)),
}
ARCH = {"MaskedLM": "MegaForMaskedLM", "TextClassifier": "MegaForSequenceClassification",
        "TokenClassifier": "MegaForTokenClassification", "QuestionAnswerer": "MegaForQuestionAnswering"}


def save(cls, config, folder, seed=0):
    torch.manual_seed(seed)
    model = cls(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn_like(b) * 0.3)
            elif name.endswith("running_var"):
                b.copy_(torch.rand_like(b) + 0.5)
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(folder, safe_serialization=True)
    return cls.from_pretrained(folder).eval()


def main():
    import transformers
    from transformers import MegaConfig

    inputs = text_inputs(batch=2, seq=8, pad_id=1, pad_last=5)
    inputs["token_type_ids"][0, -2:] = 2
    no_types = {k: v for k, v in inputs.items() if k != "token_type_ids"}
    results = {}
    for name, (kwargs, tasks) in CONFIGS.items():
        for task in tasks:
            config = MegaConfig(**BASE, **kwargs, num_labels=2 if task == "QuestionAnswerer" else 3)
            model = save(getattr(transformers, ARCH[task]), config, HERE / "mega" / f"{name}_{task}")
            results[f"{name}_{task}"] = outputs(model, inputs if name == "base" else no_types)
    write("mega", inputs, results)


if __name__ == "__main__":
    main()
