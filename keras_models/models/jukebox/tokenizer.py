"""Jukebox's tokenizer: artist and genre ids from artists.json / genres.json and one id per lyric
character from lyrics.json, laid out as Transformers' JukeboxTokenizer does: per prior,
``[0, 0, 0, artist, genre x n_genres (-1 padded), lyric ids (first prior only)]``.

Version "v3" lower-cases the artist and keeps the genre whole; "v2" normalises names (non
alphanumerics to "_") with a ".v2" suffix and splits genres on "_"; a "v2" first version reads lyrics
with the built-in 80-character vocabulary instead of lyrics.json. Lyrics lose accents, "\\" becomes a
newline and characters outside the vocabulary's alphabet are dropped."""

import re
import unicodedata

from keras_models.errors import ConfigError
from keras_models.presets.resolve import resolve_preset
from keras_models.tokenizers.loading import read_json

_V2_VOCAB = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.,:;!?-+'\"()[] \t\n"
_OOV = re.compile(r"[^A-Za-z0-9.,:;!?\-+'\"()\[\] \t\n]+")
_OOV_V2 = re.compile(r"[^A-Za-z0-9.,:;!?\-'\"()\[\] \t\n]+")


class JukeboxTokenizer:
    def __init__(self, artists, genres, lyrics, version=("v3", "v2", "v2"), n_genres=5, max_n_lyric_tokens=512):
        for name, vocab in (("artists.json", artists), ("genres.json", genres), ("lyrics.json", lyrics)):
            if not isinstance(vocab, dict):
                raise ConfigError(f"{name}: expected a JSON object of name -> id")
        if not isinstance(version, (list, tuple)) or any(v not in ("v2", "v3") for v in version):
            raise ConfigError(f"tokenizer_config.json: version must be a list of 'v2' / 'v3', got {version!r}")
        self.artists, self.genres, self.version = artists, genres, list(version)
        self.n_genres, self.max_n_lyric_tokens = int(n_genres), max_n_lyric_tokens
        if self.version[0] == "v2":
            self.lyrics = {c: i + 1 for i, c in enumerate(_V2_VOCAB)}
            self.lyrics["<unk>"] = 0
            self.oov = _OOV_V2
        else:
            self.lyrics, self.oov = lyrics, _OOV

    @classmethod
    def from_preset(cls, preset):
        folder = resolve_preset(preset)
        cfg_path = folder / "tokenizer_config.json"
        cfg = read_json(cfg_path, "tokenizer config") if cfg_path.exists() else {}
        kwargs = {k: cfg[k] for k in ("version", "n_genres", "max_n_lyric_tokens") if k in cfg}
        return cls(*(read_json(folder / f"{n}.json", f"Jukebox {n} vocabulary") for n in ("artists", "genres", "lyrics")),
                   **kwargs)

    @staticmethod
    def _normalize(text):
        text = "".join(c if (c.isascii() and c.isalnum()) or c == "." else "_" for c in text.lower())
        return re.sub(r"_+", "_", text).strip("_")

    def __call__(self, artist, genres, lyrics=""):
        """-> ``{"input_ids": [one list of ids per prior]}``."""
        text = "".join(c for c in unicodedata.normalize("NFD", lyrics) if unicodedata.category(c) != "Mn")
        text = self.oov.sub("", text.replace("\\", "\n"))
        out = []
        for i, v in enumerate(self.version):
            if v == "v3":
                a, gs = artist.lower(), [genres.lower()]
            else:
                a, gs = self._normalize(artist) + ".v2", [self._normalize(g) + ".v2" for g in genres.split("_")]
            gids = [self.genres.get(g, 0) for g in gs]
            gids = gids + [-1] * (self.n_genres - len(gids))
            lyric_ids = [self.lyrics.get(c, 0) for c in text] if i == 0 else []
            out.append([0, 0, 0, self.artists.get(a, 0), *gids, *lyric_ids])
        return {"input_ids": out}


__all__ = ["JukeboxTokenizer"]
