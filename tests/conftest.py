"""Test session set-up.

Without an NVIDIA GPU (no ``nvidia-smi`` on PATH), numba's CUDA simulator is
enabled so that the CUDA kernels are tested on the CPU. The variable must be
set before numba is first imported, hence here, at collection start.
"""

import os
import shutil

if shutil.which("nvidia-smi") is None:
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
