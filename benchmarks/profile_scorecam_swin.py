"""Where Score-CAM's time goes on torchvision swin_t at 64x64 (768 channels at ``norm``):
one cProfile'd call (batch_size 64) against 12 plain no-grad forwards of 64 images, the same
768 images' worth of model work.

    OMP_NUM_THREADS=1 python benchmarks/profile_scorecam_swin.py
"""

import cProfile
import pstats
import time

import torch
from torchvision.models import swin_t

import cleargrad as cg


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = swin_t(weights=None).eval()
    torch.nn.init.normal_(model.head.weight, std=0.02)  # a non-zero head, so gradients and scores exist
    x = torch.randn(1, 3, 64, 64)
    cam = cg.ScoreCAM(model, layer="norm")
    cam.attribute(x, target=1, batch_size=64)  # warm-up
    profile = cProfile.Profile()
    profile.enable()
    t0 = time.perf_counter()
    cam.attribute(x, target=1, batch_size=64)
    print(f"Score-CAM call: {time.perf_counter() - t0:.2f} s")
    profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(14)
    batch = x.repeat(64, 1, 1, 1)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for _ in range(12):
            model(batch)
    print(f"12 plain forwards of 64 images: {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
