"""Peak table lookup and MFU arithmetic."""

import pytest

from lm import throughput


@pytest.mark.parametrize("kind,peak", [
    ("TPU v4", 275e12), ("TPU v5 lite", 197e12), ("TPU v5", 459e12), ("TPU v5p", 459e12),
    ("TPU v6 lite", 918e12), ("NVIDIA A100-SXM4-80GB", 312e12),
    ("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H200", 989e12), ("cpu", None),
])
def test_table_peak(kind, peak):
  assert throughput.table_peak(kind) == peak


def test_override_wins_and_mfu_is_the_ratio():
  assert throughput.device_peak(1e12) == (1e12, "config")
  # 1000 tokens/s x 6e9 FLOPs/token on 2 devices of 1e13 FLOP/s: 6e12 / 2e13.
  assert throughput.mfu(1000, 6e9, 2, 1e13) == pytest.approx(0.3)


def test_cpu_peak_is_measured():
  peak, source = throughput.device_peak(None)
  assert peak > 1e8 and source.startswith("measured float32 matmul")
