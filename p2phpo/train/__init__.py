"""Training: datasets, the JAX MLP objective and the worker subprocess.

Import the submodules directly (``p2phpo.train.data``, ``.mlp``, ``.worker``);
this package does not import JAX so that the node can start quickly.
"""
