"""Shared tiny checkpoints for the preset / loading tests (built once per run, see tests/parity.py)."""

from tests.parity import hf_reference, text_inputs

WORDS = (
    "the a an is was good bad great terrible movie film food service slow fast love hate "
    "it this that and or not very really i you we they he she of to in on for with at by "
    "fun boring awful lovely nice plot actors music price staff room hotel would again"
).split()


def tiny_vocab():
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = list("abcdefghijklmnopqrstuvwxyz.,!?'")
    pieces = ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]
    vocab = specials + WORDS + letters + pieces
    return vocab


def save_tiny_tokenizer(folder, model=None):
    import tempfile
    from pathlib import Path

    from transformers import BertTokenizerFast

    with tempfile.TemporaryDirectory() as d:
        vocab_file = Path(d) / "vocab.txt"
        vocab_file.write_text("\n".join(tiny_vocab()) + "\n")
        tok = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True, model_max_length=32)
        tok.save_pretrained(str(folder))


def _tiny_bert_classifier():
    import transformers

    cfg = transformers.BertConfig(
        vocab_size=len(tiny_vocab()), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=64, num_labels=3,
        id2label={0: "neg", 1: "neutral", 2: "pos"}, label2id={"neg": 0, "neutral": 1, "pos": 2},
    )
    return transformers.BertForSequenceClassification(cfg)


def _tiny_bert_mlm_untied():
    import transformers

    cfg = transformers.BertConfig(
        vocab_size=len(tiny_vocab()), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=20, max_position_embeddings=32, tie_word_embeddings=False,
    )
    return transformers.BertForMaskedLM(cfg)


def tiny_classifier():
    inputs = text_inputs(vocab=len(tiny_vocab()), seq=8)
    folder, expected = hf_reference("presets-bert-cls", _tiny_bert_classifier, inputs,
                                    extra_save=save_tiny_tokenizer)
    return folder, inputs, expected["logits"]


def tiny_mlm_untied():
    inputs = text_inputs(vocab=len(tiny_vocab()), seq=8)
    folder, expected = hf_reference("presets-bert-mlm-untied", _tiny_bert_mlm_untied, inputs)
    return folder, inputs, expected["logits"]
