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

torch.set_num_threads(1); torch.manual_seed(0)
m = swin_t(weights=None).eval()
torch.nn.init.normal_(m.head.weight, std=0.02)
x = torch.randn(1, 3, 64, 64)
cam = cg.ScoreCAM(m, layer="norm")
cam.attribute(x, target=1, batch_size=64)
pr = cProfile.Profile(); pr.enable()
t = time.perf_counter(); cam.attribute(x, target=1, batch_size=64); print("ours", time.perf_counter() - t)
pr.disable()
pstats.Stats(pr).sort_stats("tottime").print_stats(14)
xs = x.repeat(64, 1, 1, 1)
t = time.perf_counter()
with torch.inference_mode():
    for _ in range(12): m(xs)
print("12 plain forwards of 64", time.perf_counter() - t)
