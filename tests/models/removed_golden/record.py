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


ENCODER_TASKS = (("MaskedLM", "ForMaskedLM"), ("TextClassifier", "ForSequenceClassification"),
                 ("TokenClassifier", "ForTokenClassification"), ("QuestionAnswerer", "ForQuestionAnswering"))


def encoder_tasks(name, prefix, config_cls, kwargs, inputs, tasks=ENCODER_TASKS):
    """BERT's heads of one tiny config (the backbone is checked on the first task's checkpoint)."""
    import transformers

    results = {}
    for task, suffix in tasks:
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


def greedy(model, prompt, mask, max_new_tokens):
    """``generate(do_sample=False)`` (through GenerationMixin where the 4.x class lacks it; with
    ``use_cache=False``: the 4.57.1 OpenLlama attention cannot read 4.57's cache objects) and, as a
    check, the same greedy tokens from full forward passes (argmax of the last logits)."""
    from transformers import GenerationConfig, GenerationMixin

    ids, mask = torch.tensor(prompt), torch.tensor(mask)
    if not hasattr(model, "generate"):
        model.__class__ = type(type(model).__name__, (type(model), GenerationMixin), {})
        model.generation_config = GenerationConfig.from_model_config(model.config)
    with torch.no_grad():
        out = model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new_tokens,
                             min_new_tokens=max_new_tokens, use_cache=False, pad_token_id=0).numpy()
        check = ids
        for _ in range(max_new_tokens):
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            nxt = model(input_ids=check, attention_mask=mask, position_ids=positions).logits[:, -1].argmax(-1)
            check = torch.cat([check, nxt[:, None]], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    assert (check.numpy() == out).all(), (out, check)
    return out


def open_llama():
    from transformers import OpenLlamaConfig, OpenLlamaForCausalLM

    base = dict(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
                max_position_embeddings=32, initializer_range=0.5, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    inputs = text_inputs(token_types=False)
    results = {}
    # defaults: stable embedding (LayerNorm after the embeddings), LM head = the embeddings
    model = save(OpenLlamaForCausalLM, OpenLlamaConfig(**base), HERE / "open_llama" / "CausalLM")
    results["CausalLM"] = outputs(model, inputs)
    prompt = np.random.RandomState(1).randint(3, 60, size=(2, 6)).astype("int64")
    mask = np.ones_like(prompt)
    prompt[1, :2] = mask[1, :2] = 0  # left-padded row
    results["generate"] = {"prompt": prompt, "mask": mask, "tokens": greedy(model, prompt, mask, 8)}
    # odd options: own lm_head, no stable embedding, linear rope scaling, gelu, eps 1e-5
    odd = OpenLlamaConfig(**base, shared_input_output_embedding=False, use_stable_embedding=False,
                          rope_scaling={"type": "linear", "factor": 2.0}, hidden_act="gelu", rms_norm_eps=1e-5)
    model = save(OpenLlamaForCausalLM, odd, HERE / "open_llama" / "CausalLM_odd")
    results["CausalLM_odd"] = outputs(model, inputs)
    write("open_llama", inputs, results)


XLM_TEXTS = [
    "The quick brown fox jumps over the lazy dog. Der schnelle braune Fuchs springt.",
    "Le renard brun rapide saute par-dessus le chien paresseux. El zorro marrón salta.",
    "Language models predict the next token, piece by piece, in many languages.",
    "Hello world! How are you? Fine, thanks. Bonjour le monde, ça va?",
    "Zwei Wörter, drei Sätze: wir zählen Stücke, Zeichen und Worte. Quatre mots, cinq phrases!",
]
XLM_QUERIES = ["The quick fox saute!", "  Hello   world,  ça va? ", "unknown ЖЖЖ 東京 pieces",
               "[SEP] inside [MASK] text", ""]


def xlm_prophetnet():
    import io

    import sentencepiece as spm
    from transformers import (GenerationConfig, GenerationMixin, XLMProphetNetConfig,
                              XLMProphetNetForConditionalGeneration, XLMProphetNetTokenizer)

    folder = HERE / "xlm_prophetnet" / "Seq2SeqLM"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    buf = io.BytesIO()
    # 87 pieces: with the 12 shifted ids, the model's vocabulary of 99
    spm.SentencePieceTrainer.train(sentence_iterator=iter(XLM_TEXTS * 3), model_writer=buf, vocab_size=87,
                                   model_type="unigram", hard_vocab_limit=True, num_threads=1, minloglevel=2,
                                   character_coverage=1.0, normalization_rule_name="identity")
    (HERE / "spm.tmp").write_bytes(buf.getvalue())
    tok = XLMProphetNetTokenizer(vocab_file=str(HERE / "spm.tmp"))
    (HERE / "spm.tmp").unlink()
    # odd options: 3 predict streams, relu, 8 buckets over distance 12, separate head counts. The sizes
    # and input shapes are those of tests/models/test_seq2seq_prophetnet.py's model (one layer each
    # side here): under JAX the two tests then share their compiled ops in a suite run
    assert len(tok) == 99, len(tok)
    config = XLMProphetNetConfig(
        vocab_size=len(tok), hidden_size=32, num_encoder_layers=1, num_decoder_layers=1,
        num_encoder_attention_heads=4, num_decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=41,
        max_position_embeddings=40, ngram=3, num_buckets=8, relative_max_distance=12, activation_function="relu",
        init_std=0.6, pad_token_id=tok.pad_token_id, bos_token_id=tok.sep_token_id,
        eos_token_id=tok.sep_token_id, decoder_start_token_id=tok.sep_token_id)
    model = save(XLMProphetNetForConditionalGeneration, config, folder)
    tok.save_pretrained(folder)
    tok = XLMProphetNetTokenizer.from_pretrained(folder)
    rng = np.random.RandomState(0)  # tests/models/test_seq2seq_parity.py's seq2seq_inputs shapes (2x9, 2x7)
    ids, dec = rng.randint(15, len(tok), size=(2, 9)), rng.randint(15, len(tok), size=(2, 7))
    mask, dmask = np.ones_like(ids), np.ones_like(dec)
    ids[1, 6:], mask[1, 6:] = tok.pad_token_id, 0
    dec[:, 0] = tok.sep_token_id
    dec[1, 5:], dmask[1, 5:] = tok.pad_token_id, 0
    inputs = {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": dec, "decoder_attention_mask": dmask}
    results = {"Seq2SeqLM": outputs(model, inputs)}
    # the tokenizer: ids (single, pair, padded batch), tokens and decoding
    tokens = {"single": np.array(tok(XLM_QUERIES[0])["input_ids"]),
              "pair": np.array(tok(XLM_QUERIES[0], XLM_QUERIES[1])["input_ids"])}
    batch = tok(XLM_QUERIES, padding=True, return_tensors="np")
    tokens.update(batch_ids=batch["input_ids"], batch_mask=batch["attention_mask"])
    extra = {"decode": [tok.decode(ids) for ids in batch["input_ids"]],
             "decode_skip": [tok.decode(ids, skip_special_tokens=True) for ids in batch["input_ids"]],
             "tokenize": [tok.tokenize(q) for q in XLM_QUERIES], "queries": XLM_QUERIES}
    results["tokenizer"] = tokens
    # greedy generation from text. ProphetNet's cached decoding and its full recomputation pick
    # different tokens (in Transformers too), and the 4.57.1 XLM class's cache is broken; so record
    # both: the XLM class through GenerationMixin without cache, and the same weights through
    # 4.57.1's ProphetNet class (the XLM class's code, renamed) with its KV cache
    from transformers import ProphetNetForConditionalGeneration

    model.__class__ = type(type(model).__name__, (type(model), GenerationMixin), {})
    model.generation_config = GenerationConfig.from_model_config(model.config)
    prompt = tok(XLM_TEXTS[2:4], padding=True, return_tensors="pt")
    gen = dict(do_sample=False, max_new_tokens=6, min_new_tokens=6)
    cached_model = ProphetNetForConditionalGeneration.from_pretrained(folder).eval()
    with torch.no_grad():
        uncached = model.generate(**prompt, **gen, use_cache=False)
        cached = cached_model.generate(**prompt, **gen)
    results["generate"] = {"tokens": cached.numpy(), "tokens_uncached": uncached.numpy()}
    extra["generate_text"] = tok.batch_decode(cached, skip_special_tokens=True)
    write("xlm_prophetnet", inputs, results)
    import json
    (HERE / "xlm_prophetnet.json").write_text(json.dumps(extra, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def retribert():
    from transformers import RetriBertConfig, RetriBertModel

    # odd options: separate query / document towers, projection 12, gelu_new, eps 1e-6. (4.57.1's
    # BertModel reads position_embedding_type, which RetriBertConfig no longer sets: given here)
    config = RetriBertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=20, max_position_embeddings=24, share_encoders=False,
                             projection_dim=12, hidden_act="gelu_new", layer_norm_eps=1e-6, initializer_range=0.2,
                             position_embedding_type="absolute")
    model = save(RetriBertModel, config, HERE / "retribert" / "TextEmbedder")
    inputs = text_inputs()
    t = {k: torch.tensor(v) for k, v in inputs.items()}
    with torch.no_grad():
        results = {tower: {"embedding": embed(t["input_ids"], t["attention_mask"]).numpy(),
                           "hidden": bert(**t).last_hidden_state.numpy()}
                   for tower, embed, bert in (("query", model.embed_questions, model.bert_query),
                                              ("doc", model.embed_answers, model.bert_doc))}
    write("retribert", inputs, results)


def ernie_m():
    from transformers import ErnieMConfig

    # odd options: relu, eps 1e-6, pad id 1 (positions still start at 2), no MLM head in the family
    kwargs = dict(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20,
                  max_position_embeddings=24, hidden_act="relu", layer_norm_eps=1e-6, initializer_range=0.2)
    inputs = text_inputs(pad_id=1, token_types=False)
    encoder_tasks("ernie_m", "ErnieM", ErnieMConfig, kwargs, inputs, ENCODER_TASKS[1:])


def realm():
    from transformers import RealmConfig, RealmEmbedder

    # odd options: projection 8, 3 token types, eps 1e-6 (REALM's own defaults: gelu_new, pad id 1)
    config = RealmConfig(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=20, max_position_embeddings=24, retriever_proj_size=8, type_vocab_size=3,
                         layer_norm_eps=1e-6, initializer_range=0.2)
    model = save(RealmEmbedder, config, HERE / "realm" / "TextEmbedder")
    inputs = text_inputs(pad_id=1)
    inputs["token_type_ids"][0, -2:] = 2
    with torch.no_grad():
        out = model(**{k: torch.tensor(v) for k, v in inputs.items()}, output_hidden_states=True)
    write("realm", inputs, {"TextEmbedder": {"embedding": out.projected_score.numpy(),
                                             "hidden": out.hidden_states[-1].numpy()}})


FAMILIES = {"nezha": nezha, "open_llama": open_llama, "xlm_prophetnet": xlm_prophetnet,
            "retribert": retribert, "ernie_m": ernie_m, "realm": realm}


def main(names):
    for name in names or FAMILIES:
        FAMILIES[name]()
        print("recorded", name)


if __name__ == "__main__":
    main(sys.argv[1:])
