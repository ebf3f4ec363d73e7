"""Architecture presets (plain data, no torch): the layouts of the original project's UNet study.

A config's `model.*` fields left null take these values; `faice config show` prints the result.
"""

# The original's baseline: diffusers' train_unconditional UNet (ch 128, 2 layers/block, 1 head,
# attention at 16 px). unet-adm combines its three winning knobs (more heads, attention at
# 32/16/8 px, BigGAN resampling) with a deeper stack and AdaGN time conditioning.
MODEL_PRESETS: dict[str, dict] = {
    "unet-ddpm": dict(
        base_channels=128,
        channel_mult=[1, 1, 2, 2, 4, 4],
        layers_per_block=2,
        attention_resolutions=[16],
        attention_head_dim=None,
        resample="conv",
        time_embedding_norm="default",
        min_level_size=4,
    ),
    "unet-adm": dict(
        base_channels=128,
        channel_mult=[1, 1, 2, 3, 4],
        layers_per_block=3,
        attention_resolutions=[32, 16, 8],
        attention_head_dim=64,
        resample="resnet",
        time_embedding_norm="scale_shift",
        min_level_size=4,
    ),
    "unet-resnet": dict(
        base_channels=64,
        channel_mult=[1, 2, 2, 2],
        layers_per_block=2,
        attention_resolutions=[],
        attention_head_dim=None,
        resample="resnet",
        time_embedding_norm="default",
        min_level_size=4,
    ),
    # ~1 M parameters: the demo's model, learns the synthetic faces at 32 px in minutes on a CPU.
    "unet-tiny": dict(
        base_channels=32,
        channel_mult=[1, 2, 2],
        layers_per_block=1,
        attention_resolutions=[8],
        attention_head_dim=None,
        resample="conv",
        time_embedding_norm="default",
        min_level_size=4,
    ),
    # For tests: a few thousand parameters, one attention block, runs a step in milliseconds.
    "debug": dict(
        base_channels=8,
        channel_mult=[1, 2],
        layers_per_block=1,
        attention_resolutions=[8],
        attention_head_dim=None,
        resample="conv",
        time_embedding_norm="default",
        min_level_size=4,
    ),
}


# Latent UNets of the original's LDM study (4, 5 and 6 blocks on the 32 px latents a 3-block autoencoder
# makes of 128 px faces, so 6 blocks reach 1 px): the LDM paper's CelebA-HQ widths, attention at 16 and 8 px.
for _blocks, _mult in ((4, [1, 2, 3, 4]), (5, [1, 2, 2, 3, 4]), (6, [1, 1, 2, 2, 3, 4])):
    MODEL_PRESETS[f"unet-ldm-{_blocks}"] = dict(
        base_channels=128,
        channel_mult=_mult,
        layers_per_block=2,
        attention_resolutions=[16, 8],
        attention_head_dim=32,
        resample="conv",
        time_embedding_norm="default",
        min_level_size=1,
    )

# The name the original's architecture study used for its baseline (the same layout as unet-ddpm).
MODEL_PRESETS["unet-base"] = dict(MODEL_PRESETS["unet-ddpm"])

# DiT (Peebles & Xie 2023) in pixel space: depth / width / heads of S, B, L, XL, each with patch 2, 4, 8,
# named like the paper (dit-b-4 = DiT-B/4). dit-debug is a test-size transformer.
DIT_SIZES = {"s": (12, 384, 6), "b": (12, 768, 12), "l": (24, 1024, 16), "xl": (28, 1152, 16)}
DIT_PRESETS: dict[str, dict] = {
    f"dit-{size}-{patch}": dict(depth=depth, width=width, heads=heads, patch_size=patch)
    for size, (depth, width, heads) in DIT_SIZES.items()
    for patch in (2, 4, 8)
}
DIT_PRESETS["dit-debug"] = dict(depth=2, width=32, heads=2, patch_size=4)
MODEL_PRESETS.update(DIT_PRESETS)


# Autoencoders of the original's latent study (diffusers AutoencoderKL / VQModel). n blocks downsample
# by 2^(n-1): the 3-block ones give 4x smaller latents (128 px -> 32), the 4-block ones 8x (-> 16).
AUTOENCODER_PRESETS: dict[str, dict] = {
    "kl-3block": dict(kind="kl", base_channels=64, channel_mult=[1, 2, 4], layers_per_block=2,
                      latent_channels=4, num_vq_embeddings=0),
    "kl-4block": dict(kind="kl", base_channels=64, channel_mult=[1, 2, 4, 4], layers_per_block=2,
                      latent_channels=4, num_vq_embeddings=0),
    "vq-3block": dict(kind="vq", base_channels=64, channel_mult=[1, 2, 4], layers_per_block=2,
                      latent_channels=3, num_vq_embeddings=8192),
    "vq-4block": dict(kind="vq", base_channels=64, channel_mult=[1, 2, 4, 4], layers_per_block=2,
                      latent_channels=4, num_vq_embeddings=16384),
    # for tests and the demo: thousands of parameters, 2x downsampling
    "kl-debug": dict(kind="kl", base_channels=8, channel_mult=[1, 2], layers_per_block=1,
                     latent_channels=4, num_vq_embeddings=0),
    "vq-debug": dict(kind="vq", base_channels=8, channel_mult=[1, 2], layers_per_block=1,
                     latent_channels=3, num_vq_embeddings=64),
}  # fmt: skip
