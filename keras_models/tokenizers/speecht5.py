"""SpeechT5Tokenizer (a python-only SentencePiece class in Transformers): its ``spm_char.model`` run as
SentencePiece runs it (the model's own normaliser, dummy prefix and pieces), ``</s>`` appended after
the text (after both texts of a pair, with nothing between them), decoded as SentencePiece decodes.
The class's optional English number normaliser (``normalize=True``) is not implemented and is refused.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer as RustTokenizer
from tokenizers import processors

from keras_models.errors import TokenizerFileError

MODEL_FILE = "spm_char.model"


def speecht5_backend(folder: Path, config: dict, class_name: str, info: dict) -> RustTokenizer:
    from keras_models.tokenizers import sentencepiece_model as spm
    from keras_models.tokenizers.spm_convert import _generic

    path = folder / MODEL_FILE
    if not path.is_file():
        raise TokenizerFileError(f"{folder} has no {MODEL_FILE}: tokenizer class {class_name} reads it")
    if config.get("normalize"):
        raise TokenizerFileError(f"{folder / 'tokenizer_config.json'} sets normalize=True ({class_name}'s English "
                                 "number normaliser), which is not implemented; refusing rather than guessing")
    try:
        model = spm.load_model(path)
    except TokenizerFileError:  # a char model (model_type 4): one piece per character, run as unigram
        model = spm.parse_model(path.read_bytes())
        if model.trainer_spec.model_type != spm.CHAR or not model.pieces:
            raise
    return _generic(model, {})


def finish_speecht5(tok, folder: Path):
    """``</s>`` after the text (a pair: A B </s>)."""
    eos = tok.eos_token
    tok._backend.post_processor = processors.TemplateProcessing(
        single=f"$A:0 {eos}:0", pair=f"$A:0 $B:0 {eos}:0", special_tokens=[(eos, tok.eos_token_id)])
    tok.source_files = {MODEL_FILE: folder / MODEL_FILE}


__all__ = ["speecht5_backend", "finish_speecht5"]
