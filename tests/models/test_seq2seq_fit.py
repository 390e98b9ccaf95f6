"""Seq2SeqLM.fit on (source, target) text pairs through the seq2seq preprocessor."""

import numpy as np

import keras_models as km
from tests.models.test_seq2seq_parity import _t5
from tests.parity import cached_folder

WORDS = "one two three four five six un deux trois quatre cinq six".split()
PAIRS = [("one two", "un deux"), ("three four", "trois quatre"), ("five six", "cinq six"),
         ("two three", "deux trois"), ("four five", "quatre cinq"), ("one six", "un six"),
         ("six five", "six cinq"), ("three one", "trois un")]


def _folder():
    def build(tmp):
        import torch
        from tokenizers import Tokenizer, models, pre_tokenizers, processors
        from transformers import PreTrainedTokenizerFast

        vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(dict.fromkeys(WORDS))}}
        tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                       unk_token="<unk>")
        torch.manual_seed(0)
        model = _t5(vocab_size=len(vocab), d_model=16, d_kv=4, d_ff=24, num_layers=1, num_heads=2,
                    dropout_rate=0.0)
        model.save_pretrained(tmp / "model")
        fast.save_pretrained(tmp / "model")

    return cached_folder("s2sfit-t5-v2", build) / "model"


def test_fit_reduces_loss_on_toy_translation():
    import keras

    keras.utils.set_random_seed(0)
    model = km.Seq2SeqLM.from_preset(_folder())
    assert model.preprocessor is not None
    model.compile(optimizer=keras.optimizers.Adam(2e-2))
    src, tgt = [p[0] for p in PAIRS], [p[1] for p in PAIRS]
    history = model.fit(src, tgt, batch_size=4, epochs=6, verbose=0)
    losses = history.history["loss"]
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.8 * losses[0], losses
