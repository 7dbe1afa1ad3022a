"""Perplexity and bits per byte of a Hugging Face checkpoint on a text file.

Protocol (what `experiments/evaluate.py --hf_checkpoint=DIR --text_file=F` reports):
  * The whole file is one document: its UTF-8 text is tokenized in one piece, and the
    checkpoint's BOS token (config.json `bos_token_id`, <|endoftext|> for GPT-2) is put in
    front, so that every text token is scored, the first one too.
  * Tokens are scored in disjoint windows of the model's context (n_positions): window i
    predicts tokens i*n+1 .. (i+1)*n from the tokens before them within the window, with
    no overlap (as `lm.evaluation.evaluate_tokens` does for native runs). This is the
    "stride = max_length" evaluation of the transformers perplexity guide; a sliding
    window with overlap gives lower perplexity.
  * perplexity = exp(total NLL / text tokens); bits per byte = total NLL / (ln 2 * UTF-8
    bytes of the text), a number comparable across tokenizers.
"""

import math

import jax

from lm import evaluation, losses
from lm.errors import ConfigError, DataError
from lm.hf import load, safetensors_io


def bits_per_byte(nll_sum: float, num_bytes: int) -> float:
  """Total negative log-likelihood in nats over the text's UTF-8 bytes, in bits."""
  return nll_sum / (math.log(2) * num_bytes)


def evaluate_text(model_cfg, params, tokenizer, text: str, *, bos: int | None,
                  batch_size: int = 4) -> dict:
  """Metrics of a Decoder on `text` with the protocol above (without `bos` the first token
  is context only and not scored)."""
  from lm.models import decoder  # Deferred: the GPT-2 family is a Decoder; others add theirs.
  if not text:
    raise DataError("the text to evaluate is empty")
  ids = ([] if bos is None else [bos]) + tokenizer.encode(text)
  result = evaluation.evaluate_tokens(
      jax.device_put(params), ids, model=decoder.Decoder(model_cfg),
      loss_fn=losses.get("cross_entropy"), context=model_cfg.max_len, batch_size=batch_size)
  num_bytes = len(text.encode("utf-8"))
  result.update(bytes=num_bytes, context=model_cfg.max_len, bos=bos,
                bits_per_byte=bits_per_byte(result["nll"] * result["tokens"], num_bytes))
  return result


def evaluate_file(directory: str, text_file: str, *, batch_size: int = 4) -> dict:
  """`evaluate_text` of the checkpoint in `directory` on the UTF-8 file `text_file`."""
  model_cfg, params, tokenizer = load(directory)
  if model_cfg.family != "decoder":
    model_type = safetensors_io.read_config(directory).get("model_type")
    raise ConfigError(f"{directory} is a {model_type} checkpoint ({model_cfg.family}): the "
                      "perplexity of a text is defined for decoder checkpoints (GPT-2); BERT "
                      "scores masked tokens and T5 a target given a source (see lm.hf.load "
                      "and the models' own losses)")
  if tokenizer is None:
    raise DataError(f"{directory} has no tokenizer (tokenizer.json, or vocab.json + "
                    "merges.txt): cannot turn the text into tokens")
  try:
    with open(text_file, encoding="utf-8") as f:
      text = f.read()
  except (OSError, UnicodeDecodeError) as e:
    raise DataError(f"cannot read --text_file {text_file}: {e}") from None
  bos = safetensors_io.read_config(directory).get("bos_token_id")
  if bos is not None and not (isinstance(bos, int) and 0 <= bos < model_cfg.vocab_size):
    raise DataError(f"{directory}: config.json bos_token_id={bos!r} is not a token id of "
                    f"the model (vocab_size={model_cfg.vocab_size})")
  result = evaluate_text(model_cfg, params, tokenizer, text, bos=bos, batch_size=batch_size)
  result.update(checkpoint=directory, text_file=text_file)
  return result
