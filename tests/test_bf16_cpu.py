"""bf16 autocast leaves the complex Kohn–Sham physics in complex64/128 (the CPU twin of tests/gpu's check)."""

from bf16_check import assert_bf16_keeps_the_physics_complex


def test_bf16_autocast_keeps_the_physics_complex_on_cpu(small_store):
    assert_bf16_keeps_the_physics_complex(small_store, "cpu")
