"""Records tests/models/removed_golden/ (the references of tests/models/test_removed_text.py).

These architectures were removed from Transformers 5, so their outputs were recorded once with
Transformers 4.57.1 (models/deprecated/...), e.g.:
    pip install --no-deps --target /tmp/tf4 transformers==4.57.1 huggingface_hub==0.36.0 tokenizers==0.22.1
    PYTHONPATH=/tmp/tf4 python tests/models/removed_golden/record.py [family ...]

Each family gets a folder <family>/ with one tiny checkpoint per task (<family>/<Task>/: config.json
and model.safetensors, a few KB) and <family>.npz holding the inputs (``in_*``) and the reference
outputs (``<Task>__<output name>``). Models are seeded, every float parameter is perturbed by
randn * 0.02 (as tests/parity.py does) and outputs are computed after reloading the saved files.
"""

import shutil
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent


def text_inputs(batch=2, seq=9, vocab=60, pad_id=0, pad_last=3, seed=0, low=3, token_types=True):
    rng = np.random.RandomState(seed)
    ids = rng.randint(low, vocab, size=(batch, seq)).astype("int64")
    mask = np.ones_like(ids)
    ids[-1, seq - pad_last:] = pad_id
    mask[-1, seq - pad_last:] = 0
    out = {"input_ids": ids, "attention_mask": mask}
    if token_types:
        tt = np.zeros_like(ids)
        tt[:, seq // 2:] = 1
        out["token_type_ids"] = tt * mask
    return out


def save(cls, config, folder, seed=0):
    """Build ``cls(config)`` seeded and perturbed, save it to ``folder``, reload it from there."""
    torch.manual_seed(seed)
    model = cls(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point():
                p.add_(torch.randn_like(p) * 0.02)
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(folder, safe_serialization=True)
    return cls.from_pretrained(folder).eval()


def outputs(model, inputs, **kwargs):
    with torch.no_grad():
        out = model(**{k: torch.tensor(v) for k, v in inputs.items()}, output_hidden_states=True, **kwargs)
    result = {}
    hidden = out.get("hidden_states") or out.get("decoder_hidden_states")
    if hidden is not None:  # the base model's last hidden state, from a task checkpoint
        result["hidden"] = hidden[-1].detach().float().numpy()
    for k in ("logits", "start_logits", "end_logits", "last_hidden_state", "encoder_last_hidden_state",
              "pooler_output", "logits_ngram"):
        v = out.get(k) if isinstance(out, dict) else getattr(out, k, None)
        if v is not None:
            result[k] = v.detach().float().numpy()
    return result


def write(name, inputs, results):
    arrays = {f"in_{k}": v for k, v in inputs.items()}
    for task, outs in results.items():
        arrays.update({f"{task}__{k}": v for k, v in outs.items()})
    np.savez(HERE / f"{name}.npz", **arrays)


def encoder_tasks(name, prefix, config_cls, kwargs, inputs):
    """BERT's four heads of one tiny config (the backbone is checked on the MaskedLM checkpoint)."""
    import transformers

    results = {}
    for task, suffix in (("MaskedLM", "ForMaskedLM"),
                         ("TextClassifier", "ForSequenceClassification"),
                         ("TokenClassifier", "ForTokenClassification"), ("QuestionAnswerer", "ForQuestionAnswering")):
        config = config_cls(**kwargs, num_labels=2 if task == "QuestionAnswerer" else 3)
        model = save(getattr(transformers, prefix + suffix), config, HERE / name / task)
        results[task] = outputs(model, inputs)
    write(name, inputs, results)


def nezha():
    from transformers import NezhaConfig

    # odd options: offsets clipped at 3 (< the 9-token inputs), gelu_new, 3 token types, eps 1e-6
    kwargs = dict(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20,
                  max_position_embeddings=24, max_relative_position=3, type_vocab_size=3, hidden_act="gelu_new",
                  layer_norm_eps=1e-6, initializer_range=0.2)
    inputs = text_inputs()
    inputs["token_type_ids"][0, -2:] = 2
    encoder_tasks("nezha", "Nezha", NezhaConfig, kwargs, inputs)


FAMILIES = {"nezha": nezha}


def main(names):
    for name in names or FAMILIES:
        FAMILIES[name]()
        print("recorded", name)


if __name__ == "__main__":
    main(sys.argv[1:])
