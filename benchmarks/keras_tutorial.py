"""The Keras tutorial model (shared/seeds) on the benchmarks' data: the speed to beat.

usage: python benchmarks/keras_tutorial.py [--n 20000] [--epochs 3] [--json FILE]
       python benchmarks/keras_tutorial.py --npz SPLIT.npz [--epochs 50]   (the seed job)

Needs TensorFlow (`pip install tensorflow-cpu`), which aezoo does not: run it from its
own environment. Same synthetic uint8 images as throughput.py (scaled to float32 once,
as the tutorial does), batch 256, Adam, binary cross-entropy; images/s over the epochs
after the first.

With ``--npz`` (arrays ``train`` and ``val``, uint8 (N, 28, 28)): the tutorial's whole job
on those images, as it is written: fit with validation_data each epoch (one line per
epoch), then predict the validation images; overhead.py times the process.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import make_images, median, write_json  # noqa: E402


def tutorial_model():  # the tutorial's layers, verbatim
    from keras.layers import Conv2D, Input, MaxPooling2D, UpSampling2D
    from keras.models import Model

    inp = Input(shape=(28, 28, 1))
    x = Conv2D(16, (3, 3), activation="relu", padding="same")(inp)
    x = MaxPooling2D((2, 2), padding="same")(x)
    x = Conv2D(8, (3, 3), activation="relu", padding="same")(x)
    x = MaxPooling2D((2, 2), padding="same")(x)
    x = Conv2D(8, (3, 3), activation="relu", padding="same")(x)
    encoded = MaxPooling2D((2, 2), padding="same")(x)
    x = Conv2D(8, (3, 3), activation="relu", padding="same")(encoded)
    x = UpSampling2D((2, 2))(x)
    x = Conv2D(8, (3, 3), activation="relu", padding="same")(x)
    x = UpSampling2D((2, 2))(x)
    x = Conv2D(16, (3, 3), activation="relu")(x)
    x = UpSampling2D((2, 2))(x)
    decoded = Conv2D(1, (3, 3), activation="sigmoid", padding="same")(x)
    return Model(inp, decoded)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--json", default="benchmarks/results/keras.json")
    p.add_argument("--npz", help="the seed job on these train/val images (see above)")
    a = p.parse_args()
    if a.npz:
        seed_job(a.npz, a.epochs)
        return

    import keras
    import tensorflow as tf
    from keras.optimizers import Adam

    x = make_images(a.n)[:, 0, :, :, None].astype("float32") / 255.0  # (N, 28, 28, 1)
    model = tutorial_model()
    model.compile(optimizer=Adam(), loss="binary_crossentropy")
    print(f"tensorflow {tf.__version__}, keras {keras.__version__}, "
          f"params {model.count_params()}, n={a.n}")

    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t0)
            print(f"epoch {epoch + 1}: {a.n / times[-1]:,.0f} img/s loss {logs['loss']:.4f}",
                  flush=True)

    model.fit(x, x, epochs=a.epochs, batch_size=256, shuffle=True, verbose=0,
              callbacks=[Timer()])
    speed = median([a.n / t for t in times[1:]])
    print(f"keras img/s: {speed:,.0f}")
    write_json(a.json, {"tensorflow": tf.__version__, "keras": keras.__version__,
                        "n": a.n, "images_per_s": speed,
                        "epochs": [a.n / t for t in times]})


def seed_job(path: str, epochs: int) -> None:
    import numpy as np
    from keras.optimizers import Adam

    with np.load(path) as npz:
        x_train = npz["train"].astype("float32")[..., None] / 255.0
        x_val = npz["val"].astype("float32")[..., None] / 255.0
    model = tutorial_model()
    model.compile(optimizer=Adam(), loss="binary_crossentropy")
    model.fit(x_train, x_train, epochs=epochs, batch_size=256, shuffle=True,
              validation_data=(x_val, x_val), verbose=2)
    model.predict(x_val, verbose=0)


if __name__ == "__main__":
    main()
