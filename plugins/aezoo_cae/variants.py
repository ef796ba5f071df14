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

# BCE, not MSE: MSE through the sigmoid saturates on mostly-black digits (every seed
# collapsed to an all-black output by epoch 3-4; benchmarks/quality.py, docs/benchmarks.md).
cae_strided = Variant(
    description="Strided-convolution encoder, ConvTranspose decoder, BCE.",
    encoder="strided",
    decoder="convtranspose",
    loss="bce",
    encoder_params={"channels": [16, 32, 8]},
    decoder_params={"channels": [32, 16, 16]},
    input_shape=(1, 28, 28),
    init="default",
    train={"optimizer": "adam", "lr": 2e-3, "batch_size": 256, "epochs": 30},
    param_count=16537,
    example_shapes=((3, 32, 32), (1, 27, 33)),
)

# --- the autoencoder family (aezoo_cae.family) ---

cae_denoising = Variant(
    description="The tutorial CAE (cae-upsample's parts) trained to denoise: inputs get "
    "Gaussian noise (sigma 0.5, clipped to [0, 1]), the target is the clean image.",
    encoder="pool",
    decoder="upsample",
    loss="bce",
    encoder_params={"channels": [16, 8, 8]},
    decoder_params={"channels": [8, 8, 16]},
    input_shape=(1, 28, 28),
    init="glorot",
    train={"optimizer": "adam", "lr": 1e-3, "eps": 1e-7, "batch_size": 256, "epochs": 50,
           "corrupt": {"name": "gaussian", "params": {"sigma": 0.5, "clip": True}}},
    param_count=4385,
    example_shapes=((3, 32, 32), (1, 64, 48)),
)

cae_sparse = Variant(
    description="The tutorial CAE with an activity L1 penalty on the code (a sparse code).",
    encoder="pool",
    decoder="upsample",
    loss="bce",
    encoder_params={"channels": [16, 8, 8]},
    decoder_params={"channels": [8, 8, 16]},
    input_shape=(1, 28, 28),
    init="glorot",
    regularizers=({"name": "l1", "weight": 0.01},),
    train={"optimizer": "adam", "lr": 1e-3, "eps": 1e-7, "batch_size": 256, "epochs": 50},
    param_count=4385,
    example_shapes=((3, 32, 32), (1, 64, 48)),
)

cae_vae = Variant(
    description="Convolutional VAE: a 16-d Gaussian latent (dense heads), ConvTranspose "
    "decoder, BCE + KL (weighted 1/784: the negative ELBO per pixel at 28x28).",
    encoder="gaussian-pool",
    decoder="convtranspose",
    loss="bce",
    encoder_params={"channels": [32, 32, 64], "latent_channels": 16, "dense": True},
    decoder_params={"channels": [64, 64, 32, 32, 16]},
    input_shape=(1, 28, 28),
    regularizers=({"name": "kl", "weight": 1 / 784},),
    train={"optimizer": "adam", "lr": 1e-3, "batch_size": 128, "epochs": 20},
    param_count=139553,
    example_shapes=((3, 32, 32), (1, 20, 30)),
)

cae_resnet = Variant(
    description="Residual CAE: stride-2 residual blocks with GroupNorm down to an 8x4x4 "
    "latent and back up, BCE.",
    encoder="resnet",
    decoder="resnet",
    loss="bce",
    encoder_params={"channels": [16, 32, 32], "latent_channels": 8, "norm": "group"},
    decoder_params={"channels": [32, 32, 16], "norm": "group"},
    input_shape=(1, 28, 28),
    train={"optimizer": "adam", "lr": 2e-3, "batch_size": 256, "epochs": 15},
    param_count=89433,
    example_shapes=((3, 32, 32), (1, 27, 33)),
)
