"""The benchmark's arithmetic on a tiny config (speed itself is not tested)."""

from configs import shakespeare_char
from lm import benchmark
from lm.models import decoder


def test_throughput_and_peak_report_consistent_numbers():
  config = shakespeare_char.get_config("smoke")
  result = benchmark.train_step_throughput(config, vocab_size=65, steps_per_run=2, runs=2)
  assert len(result["tokens_per_s_runs"]) == 2 and result["tokens_per_s"] > 0
  model_cfg = decoder.ModelConfig(vocab_size=65, **config.model.to_dict())
  assert result["flops_per_token"] == decoder.flops_per_token(model_cfg)
  assert result["model_flops"] == result["tokens_per_s"] * result["flops_per_token"]
  assert result["tokens_per_s_per_device"] == result["tokens_per_s"] / result["devices"]
  peak = benchmark.matmul_peak(sizes=(64, 128))
  assert peak["size"] in (64, 128) and peak["flops"] > 0
