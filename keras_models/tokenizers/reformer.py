"""Reformer's tokenizer (``ReformerTokenizer`` / ``ReformerTokenizerFast``) from a lone
``spiece.model``, as Transformers 5 converts it: the pieces keep their ids as a BPE vocabulary
whose merges are ranked from the vocabulary itself (unknown pieces fused, no byte fallback),
the model's precompiled normalizer then runs of spaces collapsed to one, a metaspace ("▁") on
every word, no special tokens added around the text. Control and user-defined pieces are both
special tokens (Transformers passes them as additional special tokens: decoding skips them)."""

from __future__ import annotations

from tokenizers import Regex
from tokenizers import Tokenizer as RustTokenizer
from tokenizers import decoders, normalizers, pre_tokenizers
from tokenizers.models import BPE

from keras_models.tokenizers import sentencepiece_model as spm


def pipeline(backend, config: dict, charsmap: bytes | None = None):
    """The stages ReformerTokenizer sets (over tokenizer.json's too): with a character map, the map
    then runs of spaces made one; a metaspace on every word, decoded back."""
    if charsmap:
        backend.normalizer = normalizers.Sequence([normalizers.Precompiled(charsmap),
                                                   normalizers.Replace(Regex(" {2,}"), " ")])
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")


def spm_backend(model, config):
    from keras_models.tokenizers.spm_convert import ranked_merges

    vocab = {}
    for i, p in enumerate(model.pieces):
        vocab.setdefault(p.piece, i)
    unk = config.get("unk_token") or "<unk>"
    unk = unk.get("content", "<unk>") if isinstance(unk, dict) else str(unk)
    backend = RustTokenizer(BPE(vocab=vocab, merges=ranked_merges(vocab), unk_token=unk, fuse_unk=True,
                                byte_fallback=False, dropout=None))
    pipeline(backend, config, model.normalizer_spec.precompiled_charsmap)
    config.setdefault("extra_special_tokens", [
        {"content": p.piece, "special": True, "normalized": False}
        for p in model.pieces if p.type in (spm.CONTROL, spm.USER_DEFINED)])
    return backend
