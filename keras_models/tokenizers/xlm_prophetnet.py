"""XLM-ProphetNet's tokenizer (Transformers 4.x ``XLMProphetNetTokenizer``, python-only, removed in 5).

Its vocabulary file ``prophetnet.tokenizer`` is a SentencePiece model (despite the name). Ids follow
fairseq's layout shifted for ProphetNet: [PAD] [CLS] [SEP] [UNK] [MASK] and [unused0] .. [unused9]
take ids 0 to 14, and SentencePiece piece ``i`` (from the fourth on) takes id ``i + 12``; an unknown
piece is [UNK]. Pieces come from the model's own normalizer spec (as ``sp_model.encode``); a
sequence is followed by [SEP] (pairs: ``A [SEP] B [SEP]``, keras_models.tokenizers.builders.sep_processor);
decoding joins the pieces, turns the metaspace into spaces and strips the ends.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Regex
from tokenizers import Tokenizer as RustTokenizer
from tokenizers import decoders
from tokenizers.models import Unigram

from keras_models.errors import TokenizerFileError
from keras_models.tokenizers import sentencepiece_model as spm

FILE = "prophetnet.tokenizer"
SPECIALS = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"] + [f"[unused{i}]" for i in range(10)]
OFFSET = 12  # SentencePiece id + OFFSET = model id (pieces 0..2, <unk> <s> </s>, are not used)


def xlm_prophetnet_backend(folder: Path, config: dict, class_name: str, info: dict) -> RustTokenizer:
    from keras_models.tokenizers.python_bpe import PY_WHITESPACE
    from keras_models.tokenizers.spm_convert import _generic

    path = folder / FILE
    if not path.is_file():
        raise TokenizerFileError(f"{folder} has no {FILE}: tokenizer class {class_name} reads its SentencePiece "
                                 "model from that file")
    try:
        model = spm.load_model(path)
    except Exception as e:
        raise TokenizerFileError(f"{path} is not a SentencePiece model ({class_name} reads one from it): {e}") from e
    if model.trainer_spec.model_type != spm.UNIGRAM:
        raise TokenizerFileError(f"SentencePiece model {path} is BPE; {class_name} expects a unigram model")
    if len(model.pieces) < 4 or model.pieces[0].type != spm.UNKNOWN:
        raise TokenizerFileError(f"SentencePiece model {path} does not start with its unknown piece: "
                                 f"{class_name}'s id layout (piece id + {OFFSET}) does not apply")
    vocab = [(t, 0.0) for t in SPECIALS] + [(p.piece, p.score) for p in model.pieces[3:]]
    try:
        backend = RustTokenizer(Unigram(vocab, unk_id=SPECIALS.index("[UNK]"), byte_fallback=False))
        stages = _generic(model, {})
    except Exception as e:  # the Rust constructors raise bare Exceptions
        raise TokenizerFileError(f"Cannot build a tokenizer from SentencePiece model {path}: {e}") from e
    backend.normalizer = stages.normalizer
    backend.pre_tokenizer = stages.pre_tokenizer
    backend.decoder = decoders.Sequence([
        decoders.Replace("\u2581", " "),
        decoders.Fuse(),
        decoders.Replace(Regex(f"\\A[{PY_WHITESPACE}]+|[{PY_WHITESPACE}]+\\z"), ""),
    ])
    return backend
