"""CLIP score (Hessel et al. 2021) of images and their prompts with a local CLIP model folder (no download):
100 * max(cos(image embedding, text embedding), 0), averaged over pairs. Images go through the CLIP
preprocessing (bicubic resize to the vision tower's size, CLIP's mean/std)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def load_clip(path: str | Path):
    """(CLIPModel, CLIPTokenizer) from a local folder; a ConfigError says what is missing."""
    from transformers import CLIPModel, CLIPTokenizer

    from faice.errors import ConfigError

    path = Path(path).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(f"text.clip_path: {path} is not a CLIP model folder (no config.json; save one with "
                          "CLIPModel.save_pretrained and its tokenizer beside it)")  # fmt: skip
    return CLIPModel.from_pretrained(path).eval(), CLIPTokenizer.from_pretrained(path)


def preprocess(images: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> CLIP pixel values (N, 3, size, size)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def clip_score(model, tokenizer, images: np.ndarray, prompts: list[str], batch_size: int = 64) -> float:
    """The mean CLIP score (100 x cosine, floored at 0) of `images` against their `prompts`."""
    scores = []
    for i in range(0, len(images), batch_size):
        pixels = preprocess(images[i : i + batch_size], model.config.vision_config.image_size)
        tokens = tokenizer(prompts[i : i + batch_size], padding=True, truncation=True, return_tensors="pt")
        img = model.get_image_features(pixel_values=pixels)
        txt = model.get_text_features(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask)
        img = getattr(img, "pooler_output", img)
        txt = getattr(txt, "pooler_output", txt)
        scores.append(100 * F.cosine_similarity(img, txt).clamp(min=0))
    return float(torch.cat(scores).mean())
