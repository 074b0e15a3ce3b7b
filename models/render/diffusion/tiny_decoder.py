"""The draft's video decoder: TAEHV's decoder, for Wan latents. No Prefect here; imports torch.

TAEHV (Ollin Boer Bohan, https://github.com/madebyollin/taehv, MIT licence) is a family of small
causal video autoencoders distilled from the big video VAEs. Its decoder turns the latents a Wan
transformer produces into frames in a small fraction of the time and memory of Wan's VAE (11.4 vs
275 TFLOP for one 480x832x81 clip), at a visible cost in fine detail: right for a draft, wrong for
a final. diffusers 0.42.1 has no class for it; this is a clean re-implementation of the decoder
half, laid out so that the published weight files load as they are:

- ``taew2_1`` for Wan 2.1 (T2V, VACE) and Wan 2.2 A14B (which kept Wan 2.1's VAE): 16 latent
  channels, no pixel shuffle;
- ``taew2_2`` for Wan 2.2 TI2V-5B: 48 latent channels, pixel shuffle 2.

File format (``.pth``: a pickled ``OrderedDict`` of fp16 tensors, read with
``torch.load(weights_only=True)``; ``.safetensors``: the same keys). Keys are the indices of two
``nn.Sequential`` stacks, ``encoder.N.*`` and ``decoder.N.*``; only the ``decoder.*`` keys are
read. Decoder layout, index: layer (``C`` = latent channels, ``p`` = pixel shuffle)::

    0 clamp (tanh(x/3)*3)    1 conv3x3 C->256          2 ReLU
    3-5 MemBlock(256)        6 upsample x2 (nearest)   7 TGrow(256, 1)   8 conv3x3 256->128 (no bias)
    9-11 MemBlock(128)       12 upsample x2            13 TGrow(128, 2)  14 conv3x3 128->64 (no bias)
    15-17 MemBlock(64)       18 upsample x2            19 TGrow(64, 2)   20 conv3x3 64->64 (no bias)
    21 ReLU                  22 conv3x3 64->3*p*p

MemBlock(n): ``relu(conv(relu(conv(relu(conv(cat(x_t, x_{t-1}))))) + x_t)`` with keys
``conv.0`` (2n->n), ``conv.2``, ``conv.4`` (n->n); ``x_{t-1}`` is the block's input one frame
earlier (zeros before the first frame): the only place frames talk to each other. TGrow(n, s):
a bias-free 1x1 conv n->n*s (key ``conv.weight``) whose output is read as s consecutive frames.

Latents and frames, as diffusers' Wan pipelines hold them: the decoder takes the *normalized*
latents the transformer produces (what ``output_type="latent"`` returns; the pipeline's own
``latents / latents_std + latents_mean`` step belongs to the big VAE only) and gives frames in
[0, 1]. Time: each latent frame grows into 4 frames and the first 3 frames of the clip are
dropped, so T latent frames give 4T - 3 frames -- exactly what Wan's VAE gives: 21 latent frames
-> 81 frames. Space: x8 (x16 with ``taew2_2``'s pixel shuffle).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - torch's own convention

__all__ = [
    "DECODE_CHUNK",
    "TAE_CONFIGS",
    "TinyDecoderConfig",
    "TinyVideoDecoder",
    "decode_latents",
    "load_tiny_decoder",
]

# Latent frames per decoder pass in the renderer: a 480x832x81 clip (21 latent frames) in one pass
# holds ~4 GB per 64-channel activation; 6 at a time bound that to a third, at the same result.
DECODE_CHUNK = 6


@dataclass(frozen=True)
class TinyDecoderConfig:
    """The shape of one TAEHV decoder.

    Attributes
    ----------
    latent_channels : int
        Channels of the video model's latents (Wan 2.1: 16; Wan 2.2 TI2V-5B: 48).
    patch_size : int
        Pixel-shuffle factor after the last conv (Wan 2.2's VAE: 2).
    widths : tuple of int
        Channels after the input conv and after each of the three blocks (published: 256, 128, 64, 64).
    time_upscale : tuple of bool
        Whether each block doubles the frames (published: False, True, True -> x4).
    """

    latent_channels: int = 16
    patch_size: int = 1
    widths: tuple[int, int, int, int] = (256, 128, 64, 64)
    time_upscale: tuple[bool, bool, bool] = (False, True, True)

    @property
    def time_factor(self) -> int:
        """Frames per latent frame (4 for the published decoders)."""
        return 2 ** sum(self.time_upscale)


# The published checkpoints' shapes, by file name stem (loading reads the shape off the weights).
TAE_CONFIGS: dict[str, TinyDecoderConfig] = {
    "taew2_1": TinyDecoderConfig(latent_channels=16, patch_size=1),
    "taew2_2": TinyDecoderConfig(latent_channels=48, patch_size=2),
}


def _conv(n_in: int, n_out: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, bias=bias)


class _Clamp(nn.Module):
    """Soft clamp of the latents to (-3, 3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class _MemBlock(nn.Module):
    """Residual block that also sees its input one frame earlier (``conv.0``, ``conv.2``, ``conv.4``)."""

    def __init__(self, n: int):
        super().__init__()
        self.conv = nn.Sequential(_conv(2 * n, n), nn.ReLU(), _conv(n, n), nn.ReLU(), _conv(n, n))

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(torch.cat([x, past], 1)) + x)


class _TGrow(nn.Module):
    """Each frame becomes `stride` consecutive frames: a 1x1 conv to ``stride * n`` channels, read as frames."""

    def __init__(self, n: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n, n * stride, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nt, c, h, w = x.shape
        return self.conv(x).reshape(nt * self.stride, c, h, w)


class TinyVideoDecoder(nn.Module):
    """TAEHV's decoder: (B, T, C, h, w) normalized latents -> (B, 4T - 3, 3, 8h, 8w) frames in [0, 1].

    Parameters
    ----------
    config : TinyDecoderConfig
        Channels, pixel shuffle and time upscaling (`TAE_CONFIGS` holds the published ones).
    """

    def __init__(self, config: TinyDecoderConfig = TinyDecoderConfig()):
        super().__init__()
        self.config = config
        c0, c1, c2, c3 = config.widths
        layers: list[nn.Module] = [_Clamp(), _conv(config.latent_channels, c0), nn.ReLU()]
        for n_in, n_out, grow in zip((c0, c1, c2), (c1, c2, c3), config.time_upscale):
            layers += [_MemBlock(n_in), _MemBlock(n_in), _MemBlock(n_in), nn.Upsample(scale_factor=2)]
            layers += [_TGrow(n_in, 2 if grow else 1), _conv(n_in, n_out, bias=False)]
        layers += [nn.ReLU(), _conv(c3, 3 * config.patch_size**2)]
        self.decoder = nn.Sequential(*layers)  # the attribute name is the checkpoint's key prefix

    def forward(self, latents: torch.Tensor, chunk: int = 0) -> torch.Tensor:
        """Decode (B, T, C, h, w) latents; `chunk` > 0 decodes that many latent frames at a time.

        Chunks carry each MemBlock's last input frame to the next chunk, so the result is the
        same as one pass (up to float rounding) with peak memory bounded by the chunk.
        """
        t = latents.shape[1]
        step = chunk if chunk > 0 else t
        memory: dict[int, torch.Tensor] = {}
        frames = torch.cat([self._run(latents[:, i : i + step], memory) for i in range(0, t, step)], 1)
        if self.config.patch_size > 1:
            frames = F.pixel_shuffle(frames.flatten(0, 1), self.config.patch_size).unflatten(0, frames.shape[:2])
        return frames.clamp(0, 1)[:, self.config.time_factor - 1 :]

    def _run(self, latents: torch.Tensor, memory: dict[int, torch.Tensor]) -> torch.Tensor:
        b = latents.shape[0]
        x = latents.flatten(0, 1)
        for i, layer in enumerate(self.decoder):
            if isinstance(layer, _MemBlock):
                frames = x.unflatten(0, (b, -1))
                first = memory.get(i, torch.zeros_like(frames[:, :1]))
                memory[i] = frames[:, -1:]
                x = layer(x, torch.cat([first, frames[:, :-1]], 1).flatten(0, 1))
            else:
                x = layer(x)
        return x.unflatten(0, (b, -1))


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def _config_of(weights: dict[str, torch.Tensor], name: str) -> TinyDecoderConfig:
    """The decoder's shape, read off its weights (published files and narrower ones alike)."""
    need = ["decoder.1.weight", "decoder.8.weight", "decoder.14.weight", "decoder.20.weight", "decoder.22.weight"]
    need += [f"decoder.{i}.conv.weight" for i in (7, 13, 19)]
    missing = [k for k in need if k not in weights]
    if missing:
        raise ValueError(f"{name} is not a TAEHV video decoder: it has no {missing[0]}")
    widths = tuple(int(weights[f"decoder.{i}.weight"].shape[0]) for i in (1, 8, 14, 20))
    grows = tuple(
        int(weights[f"decoder.{i}.conv.weight"].shape[0]) == 2 * width for i, width in zip((7, 13, 19), widths)
    )
    return TinyDecoderConfig(
        latent_channels=int(weights["decoder.1.weight"].shape[1]),
        patch_size=int(round((weights["decoder.22.weight"].shape[0] / 3) ** 0.5)),
        widths=widths,  # type: ignore[arg-type]
        time_upscale=grows,  # type: ignore[arg-type]
    )


def load_tiny_decoder(
    path: str | Path,
    latent_channels: int | None = None,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> TinyVideoDecoder:
    """A `TinyVideoDecoder` from a published TAEHV weight file (``.pth`` or ``.safetensors``).

    Parameters
    ----------
    path : str or pathlib.Path
        The weight file; the decoder's shape is read off its weights.
    latent_channels : int, optional
        The video model's latent channels: a decoder made for others is refused.
    device, dtype
        Where and in which dtype the decoder runs.

    Returns
    -------
    TinyVideoDecoder
        In eval mode, gradients off.

    Raises
    ------
    ValueError
        The file is not a TAEHV decoder (keys or shapes differ), or not one for these latents;
        the message names the first mismatch.
    """
    path = Path(path)
    weights = {k: v for k, v in _read_state_dict(path).items() if k.startswith("decoder.")}
    model = TinyVideoDecoder(_config_of(weights, path.name))
    want = model.state_dict()
    missing = sorted(set(want) - set(weights))
    wrong = [k for k in want if k in weights and tuple(weights[k].shape) != tuple(want[k].shape)]
    if missing or wrong:
        what = (
            f"it has no {missing[0]}"
            if missing
            else f"{wrong[0]} is {tuple(weights[wrong[0]].shape)}, not {tuple(want[wrong[0]].shape)}"
        )
        raise ValueError(f"{path.name} is not a TAEHV video decoder: {what}")
    if latent_channels is not None and model.config.latent_channels != latent_channels:
        raise ValueError(
            f"{path.name} decodes {model.config.latent_channels}-channel latents; this model's have "
            f"{latent_channels} (Wan 2.2 TI2V-5B needs taew2_2, the other Wan models taew2_1)"
        )
    model.load_state_dict({k: weights[k] for k in want})
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


@torch.no_grad()
def decode_latents(
    decoder: TinyVideoDecoder, latents: torch.Tensor, skip_frames: int = 0, chunk: int = 0
) -> torch.Tensor:
    """Frames of one clip from a Wan pipeline's ``output_type="latent"`` result, on the decoder's device.

    Parameters
    ----------
    decoder : TinyVideoDecoder
    latents : torch.Tensor
        (1, C, T, h, w): the normalized latents the pipeline returns (a batch of one clip).
    skip_frames : int
        Leading latent frames that are not part of the clip (Wan VACE: one per reference image;
        its pipeline strips them only on its own VAE path).
    chunk : int
        Latent frames per decoder pass (0: all at once).

    Returns
    -------
    torch.Tensor
        (4T - 3, 8h, 8w, 3) floats in [0, 1], where ``pipe(..., output_type="np").frames[0]``
        holds the same shape from Wan's VAE.
    """
    p = next(decoder.parameters())
    x = latents[:, :, skip_frames:].to(device=p.device, dtype=p.dtype).transpose(1, 2)  # NCTHW -> NTCHW
    return decoder(x, chunk=chunk)[0].permute(0, 2, 3, 1)
