"""Jukebox VQ-VAE: per-level encoders, nearest-neighbour codebooks and mirrored decoders."""


from keras import ops

from keras_models.models.jukebox.ops import _Net, _Params, conv1d


class JukeboxVQVAELayer(_Params):
    def __init__(self, cfg, **kwargs):
        super().__init__(**kwargs)
        self.cfg = cfg
        self.levels = int(cfg["levels"])

    def build(self, input_shape=None):
        c = self.cfg
        net = _Net(self, c)
        mult = c.get("multipliers") or [1] * self.levels
        self.encoders, self.decoders = [], []
        for level in range(self.levels):
            width, depth = c["res_conv_width"] * mult[level], c["res_conv_depth"] * mult[level]
            enc = []
            for i in range(level + 1):
                p = f"encoders.{level}.level_blocks.{i}."
                down, stride = c["res_downs_t"][i], c["res_strides_t"][i]
                stages = []
                for j in range(down):
                    cin = (c["conv_input_shape"] if i == 0 else c["embed_dim"]) if j == 0 else width
                    stages.append((net.conv(f"{p}downsample_block.{2 * j}", cin, width, 2 * stride),
                                   net.resnet(f"{p}downsample_block.{2 * j + 1}", width, depth, False)))
                enc.append((stages, stride, net.conv(p + "proj_out", width, c["embed_dim"], 3)))
            self.encoders.append(enc)
            dec = [net.decoder_block(f"decoders.{level}.level_blocks.{i}", c["embed_dim"], width, depth,
                                     c["res_downs_t"][i], c["res_strides_t"][i], reverse=True)
                   for i in range(level + 1)]
            self.decoders.append((dec, net.conv(f"decoders.{level}.out", c["embed_dim"], c["conv_input_shape"], 3)))
        self.codebooks = [self.param(f"bottleneck.level_blocks.{i}.codebook", (c["nb_discrete_codes"], c["embed_dim"]),
                                     "random_normal") for i in range(self.levels)]
        self.built = True

    def encode(self, audio, start_level=0, end_level=None):
        x = ops.cast(audio, "float32")
        codes = []
        for level in range(self.levels):
            h = x
            for stages, stride, proj in self.encoders[level]:
                for (w, b), res in stages:
                    h = _Net.run_resnet(conv1d(h, w, b, stride=stride, pad=stride // 2), res)
                h = conv1d(h, *proj, pad=1)
            book = self.codebooks[level]
            dist = (ops.sum(ops.square(h), axis=-1, keepdims=True) - 2 * ops.matmul(h, ops.transpose(book))
                    + ops.sum(ops.square(book), axis=-1))
            codes.append(ops.cast(ops.argmin(dist, axis=-1), "int32"))
        return codes[start_level:end_level]

    def decode(self, codes, start_level=0):
        h = ops.take(self.codebooks[start_level], ops.cast(ops.convert_to_tensor(codes[0]), "int32"), axis=0)
        dec, out = self.decoders[start_level]
        net = _Net(self, self.cfg)
        for blk in reversed(dec):
            h = net.run_decoder_block(h, blk)
        return conv1d(h, *out, pad=1)
