"""RagTokenizer: the question encoder's tokenizer (``question_encoder_tokenizer/``) for inputs and
the generator's (``generator_tokenizer/``) for targets and decoding, as Transformers' RagTokenizer."""

from pathlib import Path

from keras_models.errors import TokenizerFileError

PARTS = ("question_encoder_tokenizer", "generator_tokenizer")


class RagTokenizer:
    def __init__(self, question_encoder, generator):
        self.question_encoder, self.generator = question_encoder, generator
        self.current_tokenizer = question_encoder

    @staticmethod
    def present(folder):
        return all((Path(folder) / p).is_dir() for p in PARTS)

    @classmethod
    def from_preset(cls, preset):
        from keras_models.presets.resolve import resolve_preset
        from keras_models.tokenizers import Tokenizer

        folder = Path(resolve_preset(preset))
        missing = [p for p in PARTS if not (folder / p).is_dir()]
        if missing:
            raise TokenizerFileError(f"{folder}: a RAG tokenizer needs the sub-folders {list(PARTS)}; missing {missing}")
        return cls(Tokenizer.from_preset(folder / PARTS[0]), Tokenizer.from_preset(folder / PARTS[1]))

    from_pretrained = from_preset

    def save_pretrained(self, folder):
        self.question_encoder.save_pretrained(Path(folder) / PARTS[0])
        self.generator.save_pretrained(Path(folder) / PARTS[1])

    def __call__(self, *args, **kwargs):
        return self.current_tokenizer(*args, **kwargs)

    def as_target(self):
        """Switch to the generator's tokenizer (labels); ``as_input()`` switches back."""
        self.current_tokenizer = self.generator
        return self

    def as_input(self):
        self.current_tokenizer = self.question_encoder
        return self

    def batch_decode(self, *args, **kwargs):
        return self.generator.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.generator.decode(*args, **kwargs)


__all__ = ["RagTokenizer"]
