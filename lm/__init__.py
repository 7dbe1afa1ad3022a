"""lm: language models in JAX/Flax."""
