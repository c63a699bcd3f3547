"""The same functions give the same numbers on CUDA as on the CPU (skipped without a GPU).

CI has no GPU; these run on the lent GPU machine (see the closing notes for the runs). Each test
computes on both devices from the same inputs and compares.
"""

import pytest
import torch

from cryomine_core.fourier import fsc, missing_wedge_mask
from cryomine_core.geometry import random_rotations, rotate_volume, shift_volume_fourier
from cryomine_core.simulate.acquisition import AcquisitionParams
from cryomine_core.simulate.structures import load_structure
from cryomine_core.simulate.subtomograms import SubtomogramSimulator

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")


def _volume(n=24, seed=0):
    return torch.randn(n, n, n, generator=torch.Generator().manual_seed(seed))


def test_rotate_and_shift_match_cpu():
    vol = _volume()
    rot = random_rotations(4, generator=torch.Generator().manual_seed(1))
    shift = torch.tensor([[1.5, -0.5, 2.0]]).expand(4, 3)
    cpu = rotate_volume(vol, rot, shift)
    gpu = rotate_volume(vol.to(CUDA), rot.to(CUDA), shift.to(CUDA))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(shift_volume_fourier(vol.to(CUDA), shift[0].to(CUDA)).cpu(),
                               shift_volume_fourier(vol, shift[0]), atol=1e-4, rtol=1e-4)


def test_wedge_and_fsc_match_cpu():
    cpu_mask = missing_wedge_mask((24, 24, 24), -50.0, 60.0)
    gpu_mask = missing_wedge_mask((24, 24, 24), -50.0, 60.0, device=CUDA)
    assert gpu_mask.device.type == "cuda"
    assert torch.equal(gpu_mask.cpu(), cpu_mask)
    a, b = _volume(seed=2), _volume(seed=3)
    torch.testing.assert_close(fsc(a.to(CUDA), (a + b).to(CUDA)).cpu(), fsc(a, a + b), atol=1e-4, rtol=1e-4)


def test_simulator_runs_on_cuda_and_matches_noise_free_cpu():
    structures = [load_structure("phantom:0", 12.0, 24)]
    params = AcquisitionParams(tilt_min_deg=-60, tilt_max_deg=60, tilt_step_deg=3)
    classes = torch.zeros(3, dtype=torch.long)
    out = {}
    for device in ("cpu", "cuda"):
        sim = SubtomogramSimulator(structures, 24, params, device=device)
        rot, shift = sim.random_poses(classes, torch.Generator().manual_seed(4))
        assert sim.device.type == device and sim._ffts[0].device.type == device
        _, clean = sim.simulate(classes, rot, shift, torch.Generator().manual_seed(5), snr=0.1, sigma=1.0, clean=True)
        out[device] = clean
    cpu = out["cpu"]  # batches come back on the CPU, whatever device simulated them
    err = (out["cuda"].cpu() - cpu).abs().max() / cpu.abs().max()
    assert err < 1e-3, f"CUDA and CPU noise-free subtomograms differ by {err:.2e} of the peak"
