"""automatic-speech-recognition pipeline against Transformers' pipeline on the same tiny folders:
Whisper (text, language / task, max_new_tokens, batches), CTC timestamps (char and word offsets)
and CTC chunking with strides (``chunk_length_s`` / ``stride_length_s``). Pipeline
post-processing is backend-independent, so these tests run in the torch pass only (the models'
numerics are covered on every backend by their parity tests in tests/audio/)."""

import json

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import KerasModelsError
from tests.audio.test_whisper import EOS, FR, GENERATION, NO_TS, START
from tests.parity import _key, cached_folder
from tests.pipelines.refs import assert_same
from tests.pipelines.test_audio_pipelines import _hf_outputs

pytestmark = pytest.mark.backend_independent

RNG = np.random.RandomState(5)
WAVES = [(RNG.randn(n) * 0.5).astype("float32") for n in (9000, 6000, 16000)]
SPECIALS = ["<|startoftranscript|>", "<|en|>", "<|fr|>", "<|translate|>", "<|transcribe|>", "<|notimestamps|>"]
MAX_LENGTH = 9  # generation_config.json's max_length: a few new tokens


def _whisper_folder():
    """A tiny random Whisper (1 s windows: 100 mel frames, 50 encoder positions) saved with a
    WhisperProcessor: 93 one-character BPE tokens, then <|endoftext|> and the special tokens at the
    ids tests/audio/test_whisper.py uses."""

    def build(tmp):
        import torch
        import transformers as T

        torch.manual_seed(0)
        cfg = T.WhisperConfig(vocab_size=100, d_model=32, encoder_layers=2, decoder_layers=1,
                              encoder_attention_heads=4, decoder_attention_heads=2, encoder_ffn_dim=48,
                              decoder_ffn_dim=40, num_mel_bins=10, max_source_positions=50, max_target_positions=40,
                              decoder_start_token_id=START, eos_token_id=EOS, pad_token_id=EOS, bos_token_id=EOS,
                              suppress_tokens=None, begin_suppress_tokens=None)
        model = T.WhisperForConditionalGeneration(cfg).eval()
        with torch.no_grad():  # decisive logits
            for name, p in model.named_parameters():
                if "embed_positions" in name and "encoder" in name:
                    continue
                p.add_(torch.randn_like(p) * (0.3 if p.ndim == 1 else 0.5))
            model.model.decoder.embed_tokens.weight[EOS] *= 2.0
        for k, v in GENERATION.items():
            setattr(model.generation_config, k, v)
        model.generation_config.max_length = MAX_LENGTH
        model.generation_config._from_model_config = False  # else from_pretrained rebuilds it from config.json
        model.save_pretrained(tmp)
        tok_dir = tmp / "tok"
        tok_dir.mkdir()
        vocab = {chr(c): i for i, c in enumerate(range(33, 33 + EOS))}
        (tok_dir / "vocab.json").write_text(json.dumps(vocab))
        (tok_dir / "merges.txt").write_text("#version: 0.2\n")
        tok = T.WhisperTokenizer.from_pretrained(tok_dir, pad_token="<|endoftext|>")
        tok.add_special_tokens({"additional_special_tokens": SPECIALS})
        ids = tok.convert_tokens_to_ids(["<|endoftext|>"] + SPECIALS)
        assert ids == list(range(EOS, NO_TS + 1)), ids
        fe = T.WhisperFeatureExtractor(feature_size=10, chunk_length=1)
        T.WhisperProcessor(feature_extractor=fe, tokenizer=tok).save_pretrained(tmp)

    return cached_folder(_key("pipe-asr-whisper-v3", MAX_LENGTH), build)


def test_whisper_matches_transformers():
    folder = _whisper_folder()
    greedy = {"num_beams": 1}  # the pipeline's default 5 beams once (with max_new_tokens), greedy elsewhere
    calls = [([WAVES[0]], {"generate_kwargs": greedy}),
             ([WAVES[1]], {"generate_kwargs": {"language": "fr", "task": "translate", **greedy}}),
             ([WAVES[2]], {"max_new_tokens": 3}), ([WAVES[:2]], {"batch_size": 2, "generate_kwargs": greedy})]
    expected = _hf_outputs("automatic-speech-recognition", folder, calls)
    pipe = km.pipeline("automatic-speech-recognition", model=folder)
    assert type(pipe.model).__name__ == "WhisperSeq2SeqLM"
    for (args, kwargs), theirs in zip(calls, expected):
        assert_same(pipe(*args, **kwargs), theirs, path=f"asr-whisper {kwargs}")
    assert expected[3][0] == expected[0] and expected[0]["text"]  # batching changes nothing
    with pytest.raises(KerasModelsError, match="return_timestamps='char'"):
        pipe(WAVES[0], return_timestamps="char")

    # long-form through chunk_length_s: 1 s windows (the extractor's), overlapping windows merged
    long = np.concatenate([WAVES[2], WAVES[0], WAVES[2][:5000]])
    calls = [([long], {"chunk_length_s": 1, "generate_kwargs": greedy}),
             ([long], {"chunk_length_s": 1, "stride_length_s": [0.3, 0.2], "batch_size": 2,
                       "generate_kwargs": greedy})]
    expected = _hf_outputs("automatic-speech-recognition", folder, calls)
    for (args, kwargs), theirs in zip(calls, expected):
        assert_same(pipe(*args, **kwargs), theirs, path=f"asr-whisper chunked {kwargs}")
    with pytest.raises(KerasModelsError, match="generate_kwargs"):
        pipe(WAVES[0], generate_kwargs=3)


def _whisper_ts_folder():
    """The tiny Whisper above with 51 timestamp ids (0.00 .. 1.00 s, as <|0.00|> ... tokens of
    the tokenizer) after <|notimestamps|>, their embeddings scaled up so that windows close several
    segments and the sequential long-form transcription seeks back."""
    vocab = [chr(c) for c in range(33, 33 + EOS)]
    return cached_folder(_key("pipe-asr-whisper-ts-v1", MAX_LENGTH), lambda tmp: _build_ts(tmp, vocab))


def _build_ts(tmp, vocab, alignment_heads=None):
    import torch
    import transformers as T

    torch.manual_seed(0)
    cfg = T.WhisperConfig(vocab_size=NO_TS + 52, d_model=32, encoder_layers=1, decoder_layers=1,
                          encoder_attention_heads=4, decoder_attention_heads=2, encoder_ffn_dim=48,
                          decoder_ffn_dim=40, num_mel_bins=10, max_source_positions=50, max_target_positions=40,
                          decoder_start_token_id=START, eos_token_id=EOS, pad_token_id=EOS, bos_token_id=EOS,
                          suppress_tokens=None, begin_suppress_tokens=None)
    model = T.WhisperForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embed_positions" in name and "encoder" in name:
                continue
            p.add_(torch.randn_like(p) * (0.3 if p.ndim == 1 else 0.5))
        model.model.decoder.embed_tokens.weight[NO_TS + 1:] *= 3.0
    for k, v in dict(GENERATION, max_initial_timestamp_index=10).items():
        setattr(model.generation_config, k, v)
    if alignment_heads is not None:
        model.generation_config.alignment_heads = alignment_heads
    model.generation_config.max_length = MAX_LENGTH
    model.generation_config._from_model_config = False
    model.save_pretrained(tmp)
    tok_dir = tmp / "tok"
    tok_dir.mkdir()
    assert len(vocab) == EOS == len(set(vocab))
    (tok_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    tok = T.WhisperTokenizer.from_pretrained(tok_dir, pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": SPECIALS})
    tok.add_tokens([f"<|{i * 0.02:.2f}|>" for i in range(51)])
    assert tok.convert_tokens_to_ids("<|1.00|>") == NO_TS + 51
    fe = T.WhisperFeatureExtractor(feature_size=10, chunk_length=1)
    T.WhisperProcessor(feature_extractor=fe, tokenizer=tok).save_pretrained(tmp)


def test_whisper_timestamps_and_long_form_match_transformers():
    """return_timestamps=True (segment chunks) on one window, on sequential long-form audio (> 1 s:
    the windows seek by their timestamps) and on chunked audio; long-form text without timestamps."""
    folder = _whisper_ts_folder()
    greedy = {"num_beams": 1}
    long = np.concatenate([WAVES[2], WAVES[0], WAVES[1]])  # 1.9 s
    calls = [([WAVES[0]], {"return_timestamps": True, "generate_kwargs": greedy, "max_new_tokens": 8}),
             ([long], {"return_timestamps": True, "generate_kwargs": greedy, "max_new_tokens": 6}),
             ([long], {"generate_kwargs": {"language": "fr", **greedy}, "max_new_tokens": 6}),
             ([long], {"return_timestamps": True, "chunk_length_s": 1, "generate_kwargs": greedy,
                       "max_new_tokens": 6})]
    expected = _hf_outputs("automatic-speech-recognition", folder, calls)
    pipe = km.pipeline("automatic-speech-recognition", model=folder)
    for (args, kwargs), theirs in zip(calls, expected):
        assert_same(pipe(*args, **kwargs), theirs, path=f"asr-whisper timestamps {kwargs}")
    assert len(expected[1]["chunks"]) > 2 and "chunks" not in expected[2]


# a byte-level vocabulary with words: letters, space-led letters and words, punctuation (closing,
# and space-led opening), digits, and the two byte pieces of "é" ("Ã", "©": apart they decode to
# a replacement character)
WORD_VOCAB = ([chr(c) for c in range(97, 123)] + ["\u0120" + chr(c) for c in range(97, 123)]
              + list(".,!?'\"()-:") + ["\u0120(", "\u0120\"", "\u0120-", "\u0120'"]
              + ["\u00c3", "\u00a9", "\u0120", "\u0120\u00c3"] + [str(d) for d in range(10)]
              + ["\u0120the", "ing", "ed", "\u0120and", "er", "\u0120I", "ly", "\u01201", "\u0120.", "\u0120,", "s.",
                 "\u0120!", "\u0120?"])


def _whisper_word_folder():
    """The timestamp Whisper above with alignment heads in its generation config and WORD_VOCAB."""
    return cached_folder(_key("pipe-asr-whisper-word-v1", MAX_LENGTH),
                         lambda tmp: _build_ts(tmp, WORD_VOCAB, alignment_heads=[[0, 1], [0, 0]]))


def test_whisper_word_timestamps_match_transformers():
    """return_timestamps="word": DTW token times grouped into words, on one window, on sequential
    long-form audio and on chunked audio (windows merged where the token times are in order)."""
    folder = _whisper_word_folder()
    greedy = {"num_beams": 1}
    long = np.concatenate([WAVES[2], WAVES[0], WAVES[1]])  # 1.9 s
    calls = [([WAVES[0]], {"return_timestamps": "word", "generate_kwargs": greedy, "max_new_tokens": 8}),
             ([WAVES[1]], {"return_timestamps": "word", "generate_kwargs": {"language": "fr", **greedy},
                           "max_new_tokens": 8}),
             ([long], {"return_timestamps": "word", "generate_kwargs": greedy, "max_new_tokens": 6}),
             ([long], {"return_timestamps": "word", "chunk_length_s": 1, "generate_kwargs": greedy,
                       "max_new_tokens": 6}),
             ([long], {"return_timestamps": "word", "chunk_length_s": 1, "stride_length_s": [0.3, 0.2],
                       "batch_size": 2, "generate_kwargs": greedy, "max_new_tokens": 6}),
             ([WAVES[2]], {"return_timestamps": "word", "max_new_tokens": 8})]  # the pipeline's 5 beams
    expected = _hf_outputs("automatic-speech-recognition", folder, calls)
    pipe = km.pipeline("automatic-speech-recognition", model=folder)
    for (args, kwargs), theirs in zip(calls, expected):
        assert_same(pipe(*args, **kwargs), theirs, path=f"asr-whisper words {kwargs}")
    assert expected[-1]["chunks"][0]["text"] == "ed"  # a word of two pieces
    assert all(len(e["chunks"]) > 1 for e in expected)
    with pytest.raises(KerasModelsError, match="alignment_heads"):
        km.pipeline("automatic-speech-recognition", model=_whisper_ts_folder())(WAVES[0], return_timestamps="word")


def _ids(*pieces):
    """Token ids of WORD_VOCAB pieces ("_" for the space mark)."""
    return [WORD_VOCAB.index(p.replace("_", "\u0120")) for p in pieces]


def test_whisper_word_grouping_matches_transformers():
    """Word grouping and merging on crafted outputs, against Transformers' Whisper tokenizer:
    ``_combine_tokens_into_words`` (multi-piece words, opening / closing punctuation, the two byte
    pieces of a character, English and Japanese) and ``_decode_asr(return_timestamps="word")`` on
    windows with strides (overlaps merged by tokens and times), a language token and an unclosed
    segment."""
    import torch
    import transformers as T

    from keras_models.pipelines.speech_text import _whisper_words

    folder = _whisper_word_folder()
    theirs = T.WhisperTokenizer.from_pretrained(folder)
    pipe = km.pipeline("automatic-speech-recognition", model=folder)
    ours = pipe.tokenizer
    words = [_ids("_I", "_s", "a", "i", "d", ":", "_\"", "h", "i", "\"", "_and", "_(", "_c", "a", "t", ")", "s."),
             _ids("_the", "_", "\u00c3", "\u00a9", "t", "e", "_\u00c3", "\u00a9", "!", "_.", "_1", "2"),
             _ids("a", "'", "s", "_-", "_w", "ing", ",", "_,", "_!", "?", "-", "x"),
             _ids("\u00c3", "_b", "\u00a9", "\u00c3", "\u00a9", "\u00c3")]
    for ids in words:
        for language in (None, "english", "japanese", "french"):
            expected = T.models.whisper.tokenization_whisper._combine_tokens_into_words(theirs, ids, language)
            got = _whisper_words(ours.decode, ids, language, ours.eos_token_id)
            assert [w for w, _ in got] == expected[0], (ids, language)
            assert [i for _, i in got] == expected[2], (ids, language)

    ts = lambda k: NO_TS + 1 + k  # noqa: E731  <|k * 0.02|>
    windows = [  # (ids, token times, stride in seconds)
        ([ts(0)] + _ids("_I", "_s", "a", "i", "d") + [ts(20), ts(20)] + _ids("_(", "_c", "a", "t", ")")
         + [ts(40), ts(42)] + _ids("_the", "_w", "ing", ","),
         [0.0, 0.0, 0.06, 0.1, 0.12, 0.2, 0.4, 0.4, 0.42, 0.5, 0.56, 0.6, 0.7, 0.8, 0.84, 0.86, 0.9, 0.94, 0.96],
         (1.0, 0.0, 0.2)),
        ([ts(0)] + _ids("_the", "_w", "ing", ",", "_and") + [ts(30), ts(30)] + [FR] + _ids("_\u00c3", "\u00a9", "!")
         + [ts(45)],
         [0.0, 0.02, 0.1, 0.12, 0.2, 0.3, 0.6, 0.6, 0.6, 0.62, 0.7, 0.8, 0.9],
         (1.0, 0.2, 0.2)),
        ([ts(0)] + _ids("_b", "_", "x", "s.") + [ts(10)] + _ids("_I"),
         [0.0, 0.1, 0.2, 0.25, 0.3, 0.3, 0.5],
         (0.6, 0.2, 0.0)),
    ]
    for cut in (1, 2, 3):
        outputs = [{"tokens": torch.tensor([ids]), "token_timestamps": torch.tensor([times]), "stride": stride}
                   for ids, times, stride in windows[:cut]]
        text, optional = theirs._decode_asr(outputs, return_timestamps="word", return_language=False,
                                            time_precision=0.02)
        got = pipe._whisper_decode([w[0] for w in windows[:cut]], [w[2] for w in windows[:cut]], "word",
                                   [w[1] for w in windows[:cut]])
        assert_same({"text": got[0], "chunks": got[1]}, json.loads(json.dumps({"text": text, **optional})),
                    path=f"decode_asr words, {cut} windows")


def _ctc_folder():
    """A tiny random Wav2Vec2ForCTC (tests/audio/test_wav2vec2.py's sizes) whose head biases favour
    the blank and the word delimiter, so that transcripts have several words and gaps."""

    def build(tmp):
        import torch
        import transformers as T

        from tests.audio.test_wav2vec2 import COMMON, VOCAB

        torch.manual_seed(0)
        cfg = T.Wav2Vec2Config(**{**COMMON, "feat_extract_norm": "layer", "do_stable_layer_norm": True})
        model = T.Wav2Vec2ForCTC(cfg).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * (0.3 if p.ndim == 1 else 0.5))
            model.lm_head.bias.zero_()
            model.lm_head.bias[1:4] = -30.0  # no <s>, </s>, <unk>
            model.lm_head.bias[0], model.lm_head.bias[4] = 2.0, 3.0  # blank, "|"
        model.save_pretrained(tmp)
        (tmp / "vocab.json").write_text(json.dumps(VOCAB))
        T.Wav2Vec2CTCTokenizer(str(tmp / "vocab.json")).save_pretrained(tmp)
        T.Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(tmp)

    return cached_folder(_key("pipe-asr-ctc-v1"), build)


def _wave(seed, n):
    t = np.arange(n) / 16000
    noise = np.random.RandomState(seed).randn(n)
    return (noise * np.sin(2 * np.pi * 7 * t) ** 2 + 0.3 * np.sin(2 * np.pi * 300 * t)).astype("float32")


def test_ctc_timestamps_and_chunking_match_transformers():
    folder = _ctc_folder()
    short, LONG = _wave(1, 700), _wave(2, 2100)  # LONG: several 0.04-0.06 s windows
    calls = [([short], {"return_timestamps": "char"}), ([short], {"return_timestamps": "word"}),
             ([LONG], {"chunk_length_s": 0.05, "stride_length_s": 0.01}),
             ([LONG], {"chunk_length_s": 0.06, "stride_length_s": [0.02, 0.005], "return_timestamps": "word"}),
             ([[LONG, short]], {"chunk_length_s": 0.04, "return_timestamps": "char"})]
    expected = _hf_outputs("automatic-speech-recognition", folder, calls)
    pipe = km.pipeline("automatic-speech-recognition", model=folder)
    for (args, kwargs), theirs in zip(calls, expected):
        assert_same(pipe(*args, **kwargs), theirs, path=f"asr-ctc {kwargs}")
    assert len(expected[1]["chunks"]) > 1 and len(expected[0]["chunks"]) > len(expected[1]["chunks"])
    with pytest.raises(KerasModelsError, match="return_timestamps"):
        pipe(short, return_timestamps=True)
    with pytest.raises(KerasModelsError, match="stride_length_s"):
        pipe(LONG, chunk_length_s=0.02, stride_length_s=0.01)
    with pytest.raises(KerasModelsError, match="chunk_length_s"):
        pipe(LONG, chunk_length_s="long")
