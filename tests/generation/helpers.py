"""Shared fixtures of the generation tests: a tiny byte-level BPE tokenizer, tiny random Llama and
GPT-2 checkpoints saved with it, and Transformers' generate outputs recorded once per cache key
(built under the first backend that runs, reused by the others)."""

from __future__ import annotations

import inspect
import json

import numpy as np

from tests.parity import _key, cached_folder

CORPUS = [
    "the quick brown fox jumps over the lazy dog. stop here, then go on.",
    "hello world! the end is near; STOP now. stopper stopping unstoppable.",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z 0 1 2 3 4 5 6 7 8 9",
    "User: hi\nAssistant: hello there, how can I help?\n",
] * 4
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def _train_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def tokenizer_folder():
    """A saved PreTrainedTokenizerFast (pad 0, bos 1, eos 2) with a chat template."""

    def build(tmp):
        from transformers import PreTrainedTokenizerFast

        hf = PreTrainedTokenizerFast(tokenizer_object=_train_tokenizer(), pad_token="<pad>", bos_token="<s>",
                                     eos_token="</s>")
        hf.chat_template = CHAT_TEMPLATE
        hf.save_pretrained(tmp)

    return cached_folder(_key("gen-tokenizer", inspect.getsource(_train_tokenizer), CORPUS, CHAT_TEMPLATE), build)


def hf_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_folder()))


def vocab_size():
    return json.loads((tokenizer_folder() / "tokenizer.json").read_text())["model"]["vocab"].__len__() + 0


def llama(vocab):
    import transformers

    cfg = transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=40, max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        rms_norm_eps=1e-5, tie_word_embeddings=False,
    )
    return transformers.LlamaForCausalLM(cfg)


def gpt2(vocab):
    import transformers

    cfg = transformers.GPT2Config(
        vocab_size=vocab, n_embd=24, n_layer=2, n_head=3, n_positions=48, pad_token_id=0, bos_token_id=1,
        eos_token_id=2, activation_function="gelu_new",
    )
    return transformers.GPT2LMHeadModel(cfg)


BUILDERS = {"llama": llama, "gpt2": gpt2}


def reference(family, cases, scale=1.0, generation_config=None):
    """(model folder, {"case<i>": HF output ids}) for ``cases``: a list of (inputs, kwargs).

    inputs: {"input_ids", "attention_mask"} arrays, or {"text": str or list}. kwargs go to HF
    generate; ``eos_token_id="auto"`` / ``stop_strings="auto"`` pick ids / a string that the
    unconstrained greedy output contains (stored as "case<i>_eos" / "case<i>_stop").

    The model's weights get extra noise of std ``0.02 * scale`` (larger -> more varied tokens).
    """
    src = inspect.getsource(inspect.getmodule(reference))
    case_repr = [({k: np.asarray(v).tolist() for k, v in inp.items()}, kw) for inp, kw in cases]
    key = _key(f"gen-{family}", src, case_repr, scale, generation_config)
    tok_dir = tokenizer_folder()

    def build(tmp):
        import shutil

        import torch

        torch.manual_seed(0)
        model = BUILDERS[family](vocab_size()).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.02 * scale)
        if generation_config:
            for k, v in generation_config.items():
                setattr(model.generation_config, k, v)
        model.save_pretrained(tmp / "model")
        for f in tok_dir.iterdir():
            if f.is_file() and f.name != ".complete":
                shutil.copy(f, tmp / "model" / f.name)
        outs = {}
        hf_tok = None
        with torch.no_grad():
            for i, (inp, kw) in enumerate(cases):
                kw = dict(kw)
                if "text" in inp:  # string prompt(s): tokenized like ours, left-padded
                    from transformers import AutoTokenizer

                    hf_tok = hf_tok or AutoTokenizer.from_pretrained(str(tok_dir), padding_side="left")
                    texts = [str(t) for t in np.atleast_1d(inp["text"])]
                    t = dict(hf_tok(texts, return_tensors="pt", padding=True))
                    kw["tokenizer"] = hf_tok
                else:
                    t = {k: torch.tensor(np.asarray(v)) for k, v in inp.items()}
                if kw.get("eos_token_id") == "auto":  # eos ids that greedy output really produces
                    free = model.generate(**t, **{**kw, "eos_token_id": None}).numpy()
                    width = t["input_ids"].shape[1]
                    eos = sorted({int(free[0, width + 2]), int(free[-1, width + 4])})
                    outs[f"case{i}_eos"] = np.asarray(eos)
                    kw["eos_token_id"] = eos
                if kw.get("stop_strings") == "auto":  # a stop string inside the greedy text
                    free = model.generate(**t, **{**kw, "stop_strings": None}).numpy()
                    text = hf_tok.decode(free[0, t["input_ids"].shape[1]:], skip_special_tokens=True)
                    stop = text[len(text) // 2: len(text) // 2 + 2]
                    outs[f"case{i}_stop"] = np.asarray(stop)
                    kw["stop_strings"] = [stop]
                outs[f"case{i}"] = model.generate(**t, **kw).numpy()
        np.savez(tmp / "expected.npz", **outs)

    folder = cached_folder(key, build)
    data = dict(np.load(folder / "expected.npz"))
    return folder / "model", data


def left_padded(batch, lengths, vocab, seed=0, pad=0, low=3):
    """Random prompts (ids >= low) of the given lengths, left-padded with ``pad``."""
    rng = np.random.RandomState(seed)
    width = max(lengths)
    ids = np.full((batch, width), pad, dtype=np.int64)
    mask = np.zeros((batch, width), dtype=np.int64)
    for i, n in enumerate(lengths):
        ids[i, width - n:] = rng.randint(low, vocab, size=n)
        mask[i, width - n:] = 1
    return {"input_ids": ids, "attention_mask": mask}
