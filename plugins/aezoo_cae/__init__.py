"""aezoo's first-party convolutional autoencoders.

Registered through entry points only (see aezoo's pyproject.toml), exactly like a third
party's plugin: ``variants`` is torch-free metadata, ``components`` holds the params
models and builders, ``layers`` the torch modules (imported when a model is built).
The family (regularisers, transforms, the stochastic and residual parts) follows the same
split: ``family`` holds its descriptors, ``penalties``, ``corruptions`` and ``blocks``
its torch code.
"""
