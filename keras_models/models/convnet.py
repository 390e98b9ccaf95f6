"""The shape most ConvNet backbones share: a stem, then stages of blocks.

A subclass builds ``self.stem`` (or overrides :meth:`stem_output`) and ``self.stages`` (a list of
lists of blocks). The backbone's output is the last stage's; ``feature_maps`` are every stage's
output (channels_last), as Transformers' ``hidden_states[1:]``; ``pooled`` is the global average.
"""

import numpy as np
from keras import ops

from keras_models.models.backbone import Backbone
from keras_models.models.vit.backbone import pixel_values_of


class StagedConvBackbone(Backbone):
    num_channels = 3

    def dummy_inputs(self):
        return {"pixel_values": np.zeros((1, 32, 32, self.num_channels), "float32")}

    def stem_output(self, pixel_values, training=False):
        return self.stem(pixel_values, training=training)

    def stage_outputs(self, inputs, training=False):
        x = self.stem_output(pixel_values_of(inputs), training=training)
        outs = []
        for layers in self.stages:
            for layer in layers:
                x = layer(x, training=training)
            outs.append(x)
        return outs

    def call(self, inputs, training=False):
        return self.stage_outputs(inputs, training=training)[-1]

    def feature_maps(self, inputs, training=False):
        return self.stage_outputs(inputs, training=training)

    def pooled(self, hidden):
        return ops.mean(hidden, axis=(1, 2))
