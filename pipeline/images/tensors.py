"""Pictures as torch tensors and back; torch is imported only when these are called.

Probing a folder, planning a run or building a gallery must not pay for importing
torch, so nothing else in the package touches it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """An image as a float32 ``1x3xHxW`` tensor in [0, 1] (converted to RGB first)."""
    import torch

    rgb = img if img.mode == "RGB" else img.convert("RGB")
    arr = np.array(rgb, dtype=np.uint8, copy=True)  # writable, so torch shares no Pillow memory
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).float().div_(255.0).contiguous()


def tensor_to_pil(t: torch.Tensor) -> Image.Image:
    """A ``1x3xHxW`` or ``3xHxW`` float tensor in [0, 1] as an RGB image (clamped, rounded).

    Every picture an engine makes passes through here: one that is not finite anywhere
    (a network or an objective that overflowed) raises :class:`PictureError` rather than
    becoming a black picture written as if it were a result.
    """
    import torch

    from pipeline.errors import PictureError

    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {t.shape[0]}")
        t = t[0]
    if t.dim() != 3 or t.shape[0] != 3:
        raise ValueError(f"expected a 3xHxW or 1x3xHxW tensor, got shape {tuple(t.shape)}")
    # Out-of-place ops only: .to() may hand back the caller's own tensor.
    data = t.detach().to(device="cpu", dtype=torch.float32)
    if not bool(torch.isfinite(data).all()):
        bad = int((~torch.isfinite(data)).sum())
        raise PictureError(f"the picture came out with {bad} of {data.numel()} values not "
                           "finite (NaN or infinity): the network or the settings overflow; "
                           "nothing was written")
    data = data.clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    return Image.fromarray(data.permute(1, 2, 0).contiguous().numpy())


def resized(img: Image.Image, width: int, height: int) -> Image.Image:
    """``img`` at exactly ``width``×``height`` (Lanczos), or itself when it already is."""
    if img.size == (width, height):
        return img
    return img.resize((width, height), Image.Resampling.LANCZOS)


def with_strength(picture: Image.Image, photo: Image.Image, strength: float) -> Image.Image:
    """``picture`` mixed with the photo: ``strength`` of the picture, the rest of the photo
    (resized to the picture's size as the engines see it), for either method and for a
    video's steadied frames."""
    if strength >= 1.0:
        return picture
    return Image.blend(resized(photo.convert("RGB"), *picture.size), picture, strength)
