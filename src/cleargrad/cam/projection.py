"""Principal-component maps of a stack of channel maps (EigenCAM, KPCA-CAM, eigen_smooth).

Each image's ``(K, h, w)`` stack is read as ``h·w`` samples of ``K`` features, centred per
channel (the mean over positions is subtracted: pytorch-grad-cam's centring), and projected
onto its first (kernel) principal component, which gives one value per position.

Sign: a principal component is defined up to sign (an SVD solver returns either). Our
convention, the one of pytorch-grad-cam's ``get_2d_projection_with_sign_correction``
(Seg-Eigen-CAM, eq. 13): the projection is flipped when ``|min| > |max|``, so the larger
excursion is positive. Scale: the linear projection is ``M v_1`` with ``||v_1|| = 1``, so its
Euclidean norm is the first singular value of the centred matrix ``M``. Kernel PCA follows
scikit-learn's ``KernelPCA(n_components=1)``: the centred kernel matrix's top eigenvector
times the square root of its eigenvalue, with scikit-learn's sign rule (the entry of
largest magnitude positive).
"""

from __future__ import annotations

from contextvars import ContextVar

import torch

from ..errors import ConfigError

__all__ = [
    "EIGEN_SMOOTH",
    "KERNELS",
    "check_kernel",
    "combine_channels",
    "correct_sign",
    "first_component",
    "kernel_component",
]

#: kernels of :func:`kernel_component` (scikit-learn's names and defaults)
KERNELS = ("linear", "poly", "rbf", "sigmoid", "cosine")


def _samples(stack: torch.Tensor) -> torch.Tensor:
    """``(N, K, *grid)`` -> centred ``(N, P, K)`` samples (NaN read as 0)."""
    n, k = stack.shape[:2]
    m = torch.nan_to_num(stack, nan=0.0).reshape(n, k, -1).transpose(1, 2)
    return m - m.mean(dim=1, keepdim=True)


def correct_sign(proj: torch.Tensor) -> torch.Tensor:
    """Flip each row of ``(N, P)`` whose ``|min|`` exceeds its ``|max|``."""
    flip = proj.amin(dim=1).abs() > proj.amax(dim=1).abs()
    return torch.where(flip[:, None], -proj, proj)


def first_component(stack: torch.Tensor) -> torch.Tensor:
    """Projection of each image's centred ``(K, *grid)`` stack on its first principal
    component, ``(N, 1, *grid)``, signed so that ``|max| >= |min|`` (module docstring).

    Computed in float64 for float32 input (the SVD of a ``P x K`` matrix per image, batched),
    returned in the input's dtype.
    """
    work = torch.float64 if stack.dtype in (torch.float16, torch.bfloat16, torch.float32) else stack.dtype
    m = _samples(stack.to(work))
    u, s, _ = torch.linalg.svd(m, full_matrices=False)
    proj = correct_sign(u[:, :, 0] * s[:, :1])
    return proj.to(stack.dtype).view(stack.shape[0], 1, *stack.shape[2:])


def _kernel(m: torch.Tensor, kernel: str, gamma: float | None, degree: int, coef0: float) -> torch.Tensor:
    g = 1.0 / m.shape[2] if gamma is None else float(gamma)
    dot = m @ m.transpose(1, 2)
    if kernel == "linear":
        return dot
    if kernel == "poly":
        return (g * dot + coef0) ** degree
    if kernel == "sigmoid":
        return torch.tanh(g * dot + coef0)
    if kernel == "rbf":
        sq = dot.diagonal(dim1=1, dim2=2)
        d2 = (sq[:, :, None] + sq[:, None, :] - 2 * dot).clamp_min(0)
        return torch.exp(-g * d2)
    norm = m.norm(dim=2).clamp_min(torch.finfo(m.dtype).tiny)  # cosine
    return dot / (norm[:, :, None] * norm[:, None, :])


def check_kernel(kernel: str, gamma: float | None) -> None:
    """Validate KPCA-CAM's kernel options (before any pass runs)."""
    if kernel not in KERNELS:
        raise ConfigError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if gamma is not None and (isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or gamma <= 0):
        raise ConfigError(f"gamma must be a positive number or None (1/channels), got {gamma!r}")


def kernel_component(
    stack: torch.Tensor, kernel: str = "sigmoid", gamma: float | None = None, degree: int = 3, coef0: float = 1.0
) -> torch.Tensor:
    """First kernel principal component of each image's centred stack, ``(N, 1, *grid)``.

    As ``sklearn.decomposition.KernelPCA(n_components=1, kernel=kernel, gamma=gamma,
    degree=degree, coef0=coef0).fit_transform``: ``gamma=None`` is ``1/K``; the kernel
    matrix is double-centred; the result is ``sqrt(lambda_1) v_1`` with the entry of largest
    magnitude of ``v_1`` positive. Computed in float64 (a ``P x P`` eigenproblem per image).
    """
    check_kernel(kernel, gamma)
    m = _samples(stack.to(torch.float64))
    kmat = _kernel(m, kernel, gamma, int(degree), float(coef0))
    kc = kmat - kmat.mean(dim=1, keepdim=True) - kmat.mean(dim=2, keepdim=True) + kmat.mean(dim=(1, 2), keepdim=True)
    vals, vecs = torch.linalg.eigh(kc)
    v = vecs[:, :, -1]
    lam = vals[:, -1].clamp_min(0)
    pick = v.abs().argmax(dim=1, keepdim=True)
    v = v * torch.sign(v.gather(1, pick))
    proj = v * lam.sqrt()[:, None]
    return proj.to(stack.dtype).view(stack.shape[0], 1, *stack.shape[2:])


#: set for the duration of a call with ``eigen_smooth=True`` (:mod:`cleargrad.cam.smoothing`)
EIGEN_SMOOTH: ContextVar[bool] = ContextVar("cleargrad_eigen_smooth", default=False)


def combine_channels(weighted: torch.Tensor) -> torch.Tensor:
    """``(N, K, *grid)`` weighted activations -> ``(N, 1, *grid)`` map: their channel sum,
    or their first principal component while ``eigen_smooth`` is on."""
    if EIGEN_SMOOTH.get():
        return first_component(weighted)
    return weighted.sum(dim=1, keepdim=True)
