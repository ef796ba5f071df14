"""Variant presets. Imports nothing heavy: ``aezoo list`` reads this module."""

from aezoo.protocols import Variant

cae_upsample = Variant(
    description="The Keras MNIST tutorial CAE: max-pooling encoder, upsampling decoder, BCE.",
    encoder="pool",
    decoder="upsample",
    loss="bce",
    encoder_params={"channels": [16, 8, 8]},
    decoder_params={"channels": [8, 8, 16]},
    input_shape=(1, 28, 28),
    init="glorot",  # the tutorial's Keras defaults: Glorot-uniform weights, zero biases
    train={"optimizer": "adam", "lr": 1e-3, "eps": 1e-7, "batch_size": 256, "epochs": 50},
    param_count=4385,
    example_shapes=((3, 32, 32), (1, 64, 48)),
)

cae_strided = Variant(
    description="Strided-convolution encoder, ConvTranspose decoder, MSE.",
    encoder="strided",
    decoder="convtranspose",
    loss="mse",
    encoder_params={"channels": [16, 32, 8]},
    decoder_params={"channels": [32, 16, 16]},
    input_shape=(1, 28, 28),
    init="default",
    train={"optimizer": "adam", "lr": 2e-3, "batch_size": 256, "epochs": 30},
    param_count=16537,
    example_shapes=((3, 32, 32), (1, 27, 33)),
)
