"""Speech2TextFeatureExtractor in numpy: Kaldi-style log mel filter banks with per-utterance
cepstral mean / variance normalisation, as Transformers computes them without torchaudio.

``input_features`` (batch, frames, num_mel_bins) float32 and ``attention_mask`` (batch, frames)
int32. Each waveform is scaled to 16-bit range (x 2**15) and cut into 400-sample frames every 160
samples (no centering); DC removal, pre-emphasis 0.97, a Povey window (a symmetric Hann window to
the power 0.85), a 512-point power spectrum, Kaldi mel filters from 20 Hz to Nyquist, natural
log floored at float32 epsilon. With ``do_ceptral_normalize`` each utterance's real frames are
shifted to zero mean (``normalize_means``) and scaled to unit standard deviation
(``normalize_vars``) per mel bin; padded frames are ``padding_value``. ``padding``: True /
"longest" (default here), "max_length" (``max_length``), or False (a list of unpadded arrays,
normalised over all their frames, as Transformers' default).
"""

import numpy as np

from keras_models.errors import InputError
from keras_models.preprocessing.audio import ASTFeatureExtractor, _frames, _register

FRAME, HOP = 400, 160


@_register("Speech2TextFeatureExtractor")
class Speech2TextFeatureExtractor(ASTFeatureExtractor):
    feature_extractor_type = "Speech2TextFeatureExtractor"
    model_input_names = ("input_features", "attention_mask")
    defaults = {"feature_size": 80, "sampling_rate": 16000, "num_mel_bins": 80, "padding_value": 0.0,
                "dither": 0.0, "do_ceptral_normalize": True, "normalize_means": True, "normalize_vars": True,
                "return_attention_mask": True, "padding_side": "right"}

    def __init__(self, **config):
        super().__init__(**config)
        self.window = np.hanning(FRAME) ** 0.85
        if self.dither:
            raise InputError(f"{type(self).__name__}: dither={self.dither} (random noise) is not supported; "
                             "set dither to 0.0")

    def fbank(self, waveform):
        """(frames, num_mel_bins) float32 log mel filter banks of one waveform."""
        w = np.asarray(waveform, np.float32) * np.float32(2**15)
        w = w.astype(np.float64)
        if len(w) < FRAME:
            return np.zeros((0, int(self.num_mel_bins)), np.float32)
        frames = np.array(_frames(w, FRAME, HOP), dtype=np.float64)
        frames = frames - frames.mean(axis=1, keepdims=True)
        prev = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
        frames = (frames - 0.97 * prev) * self.window
        power = np.abs(np.fft.rfft(frames, n=512, axis=-1)) ** 2
        mel = np.maximum(1.192092955078125e-07, power @ self.mel_filters)
        return np.log(mel).astype(np.float32)

    def cmvn(self, x, length):
        x = np.array(x)
        if self.normalize_means:
            x = x - x[:length].mean(axis=0)
        if self.normalize_vars:
            x = x / x[:length].std(axis=0)
        x[length:] = self.padding_value
        return x.astype(np.float32)

    def __call__(self, waveforms, sampling_rate=None, padding=True, max_length=None, truncation=False,
                 pad_to_multiple_of=None, return_attention_mask=None, resample=True, **kwargs):
        waves, _ = self.prepare(waveforms, sampling_rate, resample, kwargs.pop("name", "waveforms"))
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected arguments {sorted(kwargs)}")
        feats = [self.fbank(w) for w in waves]
        if padding not in (True, False, "longest", "max_length", "do_not_pad"):
            raise InputError(f"padding must be True, False, 'longest' or 'max_length', got {padding!r}")
        if truncation:
            if max_length is None:
                raise InputError("truncation=True needs max_length")
            feats = [f[:max_length] for f in feats]
        want_mask = self.return_attention_mask if return_attention_mask is None else return_attention_mask
        if padding in (False, "do_not_pad"):
            if self.do_ceptral_normalize:
                feats = [self.cmvn(f, len(f)) for f in feats]
            out = {"input_features": feats}
            if want_mask:
                out["attention_mask"] = [np.ones(len(f), np.int32) for f in feats]
            return out
        if padding == "max_length":
            if max_length is None:
                raise InputError("padding='max_length' needs max_length")
            target = max_length
        else:
            target = max(len(f) for f in feats)
        if pad_to_multiple_of:
            target = -(-target // pad_to_multiple_of) * pad_to_multiple_of
        mels = int(self.num_mel_bins)
        batch = np.full((len(feats), target, mels), self.padding_value, np.float32)
        mask = np.zeros((len(feats), target), np.int32)
        for i, f in enumerate(feats):
            n = min(len(f), target)
            batch[i, :n] = f[:n]
            mask[i, :n] = 1
        if self.do_ceptral_normalize:
            batch = np.stack([self.cmvn(f, int(m.sum())) for f, m in zip(batch, mask)])
        out = {"input_features": batch}
        if want_mask:
            out["attention_mask"] = mask
        return out


__all__ = ["Speech2TextFeatureExtractor"]
