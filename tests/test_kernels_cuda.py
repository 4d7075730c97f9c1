"""CUDA back-projection (numba.cuda; the simulator without a GPU) against the CPU kernel."""

import os
import subprocess
import sys

import numpy as np
import pytest

from stasnake.kernels.backproject_cuda import cuda_available
from stasnake.tilt.reconstruct import reconstruct_wbp

needs_cuda = pytest.mark.skipif(not cuda_available(), reason="no CUDA device and no simulator")


@needs_cuda
def test_cuda_matches_cpu():
    """Tiny case (simulator speed): 5 tilts of 16 x 16 into 8 x 16 x 16, two y-slabs."""
    rng = np.random.default_rng(3)
    angles = np.array([-50.0, -20.0, 0.0, 25.0, 55.0])
    stack = rng.standard_normal((5, 16, 16)).astype(np.float32)
    cpu = reconstruct_wbp(stack, angles, 8, slab_size=9, filter="ramp")
    gpu = reconstruct_wbp(stack, angles, 8, slab_size=9, filter="ramp", device="cuda")
    assert gpu.shape == cpu.shape == (8, 16, 16)
    np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-5 * float(np.abs(cpu).max()))


@needs_cuda
def test_cuda_to_mrc(tmp_path):
    from stasnake.io.mrc import read_mrc
    from stasnake.tilt.reconstruct import reconstruct_wbp_to_mrc

    rng = np.random.default_rng(4)
    angles = np.array([-40.0, 0.0, 40.0])
    stack = rng.standard_normal((3, 6, 12)).astype(np.float32)
    reconstruct_wbp_to_mrc(stack, angles, 4, tmp_path / "g.mrc", 1.0, slab_size=4, device="cuda")
    data, _ = read_mrc(tmp_path / "g.mrc")
    np.testing.assert_allclose(data, reconstruct_wbp(stack, angles, 4), rtol=1e-4, atol=1e-5)


def assert_cuda_call_fails_clearly(code: str) -> None:
    """Run ``code`` without a GPU and without the simulator: its device='cuda' call, caught as
    RuntimeError and printed, must say that there is no CUDA device (not crash)."""
    import shutil

    if shutil.which("nvidia-smi") is not None:
        pytest.skip("a GPU is present")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "RuntimeError:" in res.stdout and "no CUDA device" in res.stdout


def test_cuda_without_device_raises_clear_error():
    """Without a GPU and without the simulator, device='cuda' is a RuntimeError, not a crash."""
    assert_cuda_call_fails_clearly(
        "import numpy as np\n"
        "from stasnake.tilt.reconstruct import reconstruct_wbp\n"
        "try:\n"
        "    reconstruct_wbp(np.zeros((3, 4, 8), np.float32), [0, 1, 2], 4, device='cuda')\n"
        "except RuntimeError as e:\n"
        "    print('RuntimeError:', e)\n"
    )
