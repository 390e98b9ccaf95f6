"""Records tests/audio/removed_golden/jukebox/ and jukebox.npz (Jukebox, removed from Transformers 5)
with Transformers 4.57.1, once:
    PYTHONPATH=/tmp/tf4 python tests/audio/removed_golden/record_jukebox.py [sampling]
(``sampling``: only the sampling references, jukebox_sample.npz, from the saved ``merged`` checkpoint.)

One tiny JukeboxModel checkpoint ``merged`` (as openai/jukebox-1b-lyrics; a 3-level VQ-VAE with
16-entry codebooks, 3 priors of width 8): the top prior is the merged lyrics+music decoder (16 layers
of enc_dec_with_lyrics, the released checkpoints' top prior pattern: block / transpose-block /
previous-block attention and prime attention at layer 15, over the lyrics and the first music
positions), two upsamplers
(raw_column_previous_row_attention) conditioned on the upper level's codes; causal masks (``mask``),
timing conditioning on the top level.
Recorded: the VQ-VAE codes of a waveform and the audio decoded from each start level; every prior's
logits (``forward_tokens(get_preds=True)``; for the upsamplers, which have no lyric encoder and whose
forward_tokens fails in 4.57.1, the same computation: get_cond + the decoder) and losses on those
codes with the tokenizer's labels.
Sampling (jukebox_sample.npz): 4.57.1's ``_sample`` passes no ``top_k`` to the priors, so each prior's
``sample`` is wrapped to pass ``top_k=1`` (greedy, deterministic: the filtered distribution keeps only
the argmax). Recorded for two rows with different artists/genres: ``ancestral_sample`` of 32 samples
(one n_ctx window per level: 4 / 8 / 16 codes), ``continue_sample`` from the VQ-VAE codes of the
waveform's first 16 samples (each level primed with its half of the codes; 4.57.1's ``primed_sample``
hands ``_sample`` the codes finest level first, where it expects the top prior's first, so it is not used), and the top level alone over 48 samples
(``sample_levels=[0]``: two overlapping windows at hop 2, each primed with the previous window's
codes and its own lyric window). Also the top prior's raw lyrics+music tokens of each window
(before the shift back to music ids and the clamp at 0, which maps every lyric id it picks to 0). The audio is the VQ-VAE decoding of the finest sampled level's codes
(``_sample``'s save_results decodes the coarsest codes' list entry with level 0's decoder instead).
``merged48``: the same with a 48-layer top prior (every type of the pattern: prime attention at layers
15 and 31, dense at 47): the top prior's logits and losses, and its greedy ancestral sample of one window
(``l48__`` keys).
The tokenizer (tiny artists/genres/lyrics vocabularies, v3 and v2 versions) ids for a few inputs.
Every parameter is drawn afresh (4.57.1's init leaves some torch.empty ones as garbage) and the
codebooks are random; outputs are computed after reloading the saved files.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
SR = 16  # a toy sampling rate: the timing embeddings' bins vary over these few samples

VQVAE = dict(levels=3, embed_dim=8, nb_discrete_codes=16, res_conv_width=4, res_conv_depth=1, multipliers=[1, 1, 2],
             res_downs_t=[1, 1, 1], res_strides_t=[2, 2, 2], res_dilation_growth_rate=3, sample_length=32,
             conv_input_shape=1, hop_fraction=[0.5, 0.5, 0.5])  # windows of whole n_ctx
PRIOR = dict(hidden_size=8, n_heads=2, attention_multiplier=1.0, mlp_multiplier=1.5, blocks=2, mask=True,
             music_vocab_size=16, lyric_vocab_size=12, metadata_dims=[6, 5], res_conv_width=8, res_conv_depth=2,
             res_downs_t=[1, 1, 1], res_strides_t=[2, 2, 2], res_dilation_growth_rate=3, timing_dims=8,
             init_scale=1.0)


def priors(kind):
    # enc_dec_with_lyrics: 16 layers reach prime attention (layer 15), 48 every type (prime at 15 and 31,
    # dense at 47); prime attention's keys are the first (4 // 2 + 1) * 2 = 6 of the 8 lyrics+music positions
    top = dict(PRIOR, level=0, n_ctx=4, num_layers=48 if kind == "merged48" else 16, nb_relevant_lyric_tokens=4,
               is_encoder_decoder=True, attention_pattern="enc_dec_with_lyrics")
    if kind == "separated":
        top.update(is_encoder_decoder=False, num_layers=19, attention_pattern="large_separated_enc_dec_w_lyrics",
                   merged_decoder=False, attn_res_scale=True, conv_res_scale=True,
                   encoder_config=dict(PRIOR, hidden_size=6, n_heads=2, num_layers=2, n_ctx=4, blocks=2,
                                       attention_pattern="raw_column_previous_row_attention",
                                       nb_relevant_lyric_tokens=4, is_encoder_decoder=False, level=0))
    ups = [dict(PRIOR, level=lvl, n_ctx=n, num_layers=3, nb_relevant_lyric_tokens=0, is_encoder_decoder=False,
                attention_pattern="raw_column_previous_row_attention", blocks=4)
           for lvl, n in ((1, 8), (2, 16))]
    if kind == "separated":
        ups[0].update(res_dilation_cycle=1, act_fn="gelu")
    return [top, *ups]


def tokenizer_files(folder, version):
    folder.mkdir(parents=True, exist_ok=True)
    artists = {"<unknown>": 0, "alan jackson": 1, "frank sinatra": 2, "the beatles": 3, "queen.v2": 4}
    genres = {"unknown": 0, "country": 1, "jazz": 2, "rock.v2": 3, "pop.v2": 4, "rock": 5}
    lyrics = {c: i + 1 for i, c in enumerate("abcdefghijk")}
    lyrics["<unk>"] = 0
    for name, vocab in (("artists", artists), ("genres", genres), ("lyrics", lyrics)):
        (folder / f"{name}.json").write_text(json.dumps(vocab))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "JukeboxTokenizer", "version": version, "n_genres": 2, "max_n_lyric_tokens": 512}))


def build(kind):
    from transformers import JukeboxConfig, JukeboxModel

    config = JukeboxConfig(vqvae_config=VQVAE, prior_config_list=priors(kind), nb_priors=3, sampling_rate=SR,
                           timing_dims=8, min_duration=0, max_duration=4.0, max_nb_genres=2)
    torch.manual_seed(0)
    model = JukeboxModel(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():  # 4.57.1 leaves some torch.empty parameters uninitialised
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if "layer_norm" in name and name.endswith("weight") else 0.0))
        for level in model.vqvae.bottleneck.level_blocks:
            level.codebook.copy_(torch.randn_like(level.codebook))
    folder = HERE / "jukebox" / kind
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer_files(folder, ["v3", "v2", "v2"])
    return JukeboxModel.from_pretrained(folder).eval(), folder


LYRICS = "a bcd, ef!"


def record_sampling(model, model48, tok, audio):
    import functools

    for prior in [*model.priors, *model48.priors]:  # greedy: 4.57.1's _sample passes no top_k to the priors
        prior.sample = functools.partial(prior.sample, top_k=1)
    merged = []  # the top prior's raw lyrics+music tokens, before the shift back and clamp
    for top in (model.priors[0], model48.priors[0]):
        top.prior_postprocess = functools.partial(
            lambda post, tokens: (merged.append(tokens.clone()), post(tokens))[1], top.prior_postprocess)
    rows = [tok("Alan Jackson", "Country", LYRICS)["input_ids"], tok("Frank Sinatra", "Jazz", LYRICS)["input_ids"]]
    labels = [torch.cat([a, b], 0) for a, b in zip(*rows)]
    out = {f"labels_{lvl}": x.numpy() for lvl, x in enumerate(labels)}
    with torch.no_grad():
        primes = model.vqvae.encode(audio[:, :16], start_level=0, end_level=3)[::-1]  # prior order: top first
        for lvl, c in enumerate(primes):
            out[f"primes_{lvl}"] = c.numpy()
        cases = {"ancestral": lambda: model.ancestral_sample(labels, n_samples=2, sample_length=32, save_results=False),
                 "l48__ancestral_top": lambda: model48.ancestral_sample(labels, n_samples=2, sample_length=32,
                                                                        sample_levels=[0], save_results=False),
                 "primed": lambda: model.continue_sample([c.clone() for c in primes], labels, sample_length=32,
                                                         save_results=False),
                 "top_windows": lambda: model.ancestral_sample(labels, n_samples=2, sample_length=48,
                                                               sample_levels=[0], save_results=False)}
        for name, run in cases.items():
            merged.clear()
            codes = run()
            for lvl, c in enumerate(codes):
                out[f"{name}__codes_{lvl}"] = c.numpy()
            for i, m in enumerate(merged):
                out[f"{name}__top_merged_{i}"] = m.numpy()
            last = max(lvl for lvl, c in enumerate(codes) if c.shape[1])
            out[f"{name}__audio"] = (model48 if name.startswith("l48") else model).vqvae.decode([codes[last]], start_level=len(codes) - 1 - last).numpy()
    np.savez_compressed(HERE / "jukebox_sample.npz", **out)
    print({k: v.shape for k, v in out.items()})


def main_sampling():
    from transformers import JukeboxModel, JukeboxTokenizer

    folder = HERE / "jukebox" / "merged"
    t = torch.arange(32, dtype=torch.float32)
    audio = (0.5 * torch.sin(t * 0.7) + 0.3 * torch.cos(t * 0.23 + 1.0)).view(1, 32, 1)
    audio = torch.cat([audio, -0.8 * audio.flip(1)], 0)
    record_sampling(JukeboxModel.from_pretrained(folder).eval(), JukeboxModel.from_pretrained(HERE / "jukebox" / "merged48").eval(),
                    JukeboxTokenizer.from_pretrained(folder), audio)


def main():
    from transformers import JukeboxTokenizer

    results = {}
    t = torch.arange(32, dtype=torch.float32)
    audio = (0.5 * torch.sin(t * 0.7) + 0.3 * torch.cos(t * 0.23 + 1.0)).view(1, 32, 1)
    audio = torch.cat([audio, -0.8 * audio.flip(1)], 0)  # (batch 2, 32 samples, 1 channel)
    results["in_audio"] = audio.numpy()
    for kind in ("merged", "merged48"):
        model, folder = build(kind)
        tok = JukeboxTokenizer.from_pretrained(folder)
        labels = tok("Alan Jackson", "Country", LYRICS)["input_ids"]
        results[f"{kind}__labels"] = np.stack([np.pad(x[0].numpy(), (0, 20 - x.shape[1]), constant_values=-9)
                                               for x in labels])
        with torch.no_grad():
            codes = model.vqvae.encode(audio, start_level=0, end_level=3, bs_chunks=2)
            for lvl, c in enumerate(codes):
                results[f"{kind}__codes_{lvl}"] = c.numpy()
            for start in range(3):
                results[f"{kind}__decoded_{start}"] = model.vqvae.decode(codes[start:], start_level=start).numpy()
            # priors: prior level L models vqvae level 2 - L; labels of both rows alike
            music = codes[::-1]
            for lvl, prior in enumerate(model.priors[:1] if kind == "merged48" else model.priors):
                meta = prior.get_metadata(labels[lvl].repeat(2, 1), start=0, total_length=32, offset=0)
                conds = prior.get_music_tokens_conds(music, 0, prior.n_ctx) if lvl else []
                if lvl:  # get_music_tokens_conds pads a single row only; these windows are whole
                    conds = [music[lvl - 1]]
                if prior.lyric_conditioning or prior.is_encoder_decoder:
                    loss, metrics = prior.forward_tokens(music[lvl], conds, meta, get_preds=True)
                else:  # forward_tokens fails without a lyric encoder (get_encoder_loss of None): its parts
                    audio_cond, meta_cond, _ = prior.get_cond(conds, meta)
                    loss, preds = prior.prior(music[lvl], audio_cond, meta_cond, None, get_preds=True)
                    metrics = {"preds": preds, "encoder_loss": torch.tensor(0.0), "next_token_prediction_loss": loss}
                results[f"{kind}__prior{lvl}_metadata"] = meta.numpy()
                results[f"{kind}__prior{lvl}_logits"] = metrics["preds"].numpy()
                for k in ("encoder_loss", "next_token_prediction_loss"):
                    results[f"{kind}__prior{lvl}_{k}"] = metrics[k].numpy()
                results[f"{kind}__prior{lvl}_loss"] = loss.numpy()
    # tokenizer ids: v3 (lower-cased names, one genre) and v2 (normalised, ".v2", genres split on "_")
    tok_dir = HERE / "jukebox" / "tokenizer_v2"
    tokenizer_files(tok_dir, ["v2", "v2", "v2"])
    cases = [("Alan Jackson", "Country", "a bcd, ef!"), ("The Beatles", "Rock", "Héllo\\wörld [x]+k"),
             ("Nobody", "Jazz", ""), ("queen", "rock_pop", "abc")]
    tokenizers = {"v3": JukeboxTokenizer.from_pretrained(HERE / "jukebox" / "merged"),
                  "v2": JukeboxTokenizer.from_pretrained(tok_dir)}
    tok_out = {}
    for name, tok in tokenizers.items():
        tok_out[name] = [[x[0].tolist() for x in tok(*case)["input_ids"]] for case in cases]
    (HERE / "jukebox" / "tokenizer_ids.json").write_text(json.dumps({"cases": cases, "ids": tok_out}, indent=0))
    np.savez_compressed(HERE / "jukebox.npz", **results)
    print({k: v.shape for k, v in results.items()})
    main_sampling()


if __name__ == "__main__":
    import sys

    main_sampling() if sys.argv[1:] == ["sampling"] else main()
