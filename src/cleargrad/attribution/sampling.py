"""Random draws of the stochastic methods, made independent of batching and chunking.

Each image of a batch gets its own random stream: one seed per image is drawn from the
caller's generator (or torch's default one), and every draw for that image (reference
indices, path positions, noise) comes from a generator seeded with it, in a fixed
order. Hence the result for an image does not depend on ``internal_batch_size`` nor on
which other images are in the batch: explaining a batch equals explaining its images
one by one with the same generator passed to each successive call.
"""

from __future__ import annotations

from ..core.sampling import image_streams, standard_normal

__all__ = ["image_streams", "standard_normal"]
