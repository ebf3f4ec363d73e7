"""faice's reverse process and its diffusers pipeline, in one file that imports only torch and diffusers.

A latent model's export also holds its autoencoder (`vae`, with the measured scale factor as its
config's scaling_factor): the pipeline samples latents and decodes them.

faice samples through `reverse_process` below, and `faice export` copies this very file into every
exported folder of a class-conditional model or a DiT, so an export samples exactly as faice does:

    pipe = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)   # FaicePipeline
    images = pipe(batch_size=8, attributes={"Male": 1}, guidance_scale=3.0, generator=g).images

A model conditioned on k attributes (`pipe.config.attributes`) has 2^k + 1 classes: class sum_i a_i 2^i
for attribute values a_i in {0, 1}, and the null class 2^k that classifier-free guidance mixes in:
out = out_null + s * (out_label - out_null). A DiT always takes a label: class 0 when unconditional.
"""

from __future__ import annotations

import inspect

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput


def denoise(
    model: torch.nn.Module, xt: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """The raw network output for noisy images `xt` at integer timesteps `t` (B,), given class `labels`.

    A DiT always takes a label (adaLN-Zero): class 0 of an unconditional DiT."""
    core = getattr(model, "module", model)  # under DDP
    if labels is None and getattr(getattr(core, "config", None), "num_embeds_ada_norm", None):
        labels = torch.zeros(xt.shape[0], dtype=torch.long, device=xt.device)
    out = model(xt, t) if labels is None else model(xt, t, class_labels=labels)
    return out.sample if hasattr(out, "sample") else out


def guide(out_label: torch.Tensor, out_null: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022): out_null + scale * (out_label - out_null)."""
    return out_null + scale * (out_label - out_null)


def step_kwargs(scheduler, eta: float, generator: torch.Generator | None) -> dict:
    """The keyword arguments of `scheduler.step` among eta (DDIM) and generator (stochastic steps)."""
    accepted = inspect.signature(scheduler.step).parameters
    kwargs = {"eta": eta, "generator": generator}
    return {k: v for k, v in kwargs.items() if k in accepted}


@torch.no_grad()
def reverse_process(
    model: torch.nn.Module,
    scheduler,
    shape: tuple[int, ...],
    num_inference_steps: int,
    generator: torch.Generator,
    eta: float = 0.0,
    progress: bool = False,
    labels: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    null_label: int | None = None,
    clip: bool = True,
) -> torch.Tensor:
    """Images (B, C, H, W) in [-1, 1] (latents, unclipped, when `clip` is False) from the reverse
    process of `scheduler` with `model`.

    Conditional models get class `labels` (B,); with `guidance_scale` != 1 each step also evaluates the
    `null_label` class and mixes the two outputs (classifier-free guidance)."""
    device = next(model.parameters()).device
    # the timesteps first: a sigma-stepping scheduler's init_noise_sigma is that of its first step
    scheduler.set_timesteps(num_inference_steps, device=device)
    x = torch.randn(shape, generator=generator, device=generator.device).to(device)
    x = x * scheduler.init_noise_sigma
    kwargs = step_kwargs(scheduler, eta, generator)
    steps = scheduler.timesteps
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="sampling", leave=False)
    guided = labels is not None and guidance_scale != 1.0
    if guided and null_label is None:
        raise ValueError("classifier-free guidance needs the null class label")
    if labels is not None:
        labels = labels.to(device)
    for t in steps:
        inp = scheduler.scale_model_input(x, t)
        tt = t.expand(shape[0]).to(device)
        if guided:  # one batch: [labelled, null]
            both = denoise(model, torch.cat([inp, inp]), torch.cat([tt, tt]),
                           torch.cat([labels, torch.full_like(labels, null_label)]))  # fmt: skip
            out = guide(*both.chunk(2), guidance_scale)
        else:
            out = denoise(model, inp, tt, labels)
        x = scheduler.step(out, t, x, **kwargs).prev_sample
    return x.clamp(-1, 1) if clip else x


class FaicePipeline(DiffusionPipeline):
    """Samples a faice pixel model (UNet2DModel or DiTTransformer2DModel, conditional or not) with any
    diffusers scheduler, the loop faice itself runs. `attributes` names the model's conditioning."""

    model_cpu_offload_seq = "denoiser->vae"
    _optional_components = ["vae"]

    def __init__(self, denoiser, scheduler, vae=None, attributes: list | None = None):
        super().__init__()
        self.register_modules(denoiser=denoiser, scheduler=scheduler, vae=vae)
        self.register_to_config(attributes=list(attributes or []))

    def class_labels(
        self, batch_size: int, attributes: dict | None, generator: torch.Generator | None
    ) -> torch.Tensor | None:
        """Labels of `attributes` ({"Male": 1}); attributes not given are fair coins from `generator`."""
        names = list(self.config.attributes)
        if not names:
            if attributes:
                raise ValueError("this model is unconditional: it takes no attributes")
            return None
        unknown = sorted(set(attributes or {}) - set(names))
        if unknown:
            raise ValueError(f"unknown attributes {unknown}; this model's attributes: {names}")
        given = attributes or {}
        if set(names) <= set(given):  # fully fixed: the noise of `generator` stays as without attributes
            coins = torch.zeros(batch_size, len(names), dtype=torch.long)
        else:
            coins = torch.randint(0, 2, (batch_size, len(names)), generator=generator)
        for i, name in enumerate(names):
            if name in given:
                coins[:, i] = int(given[name])
        return (coins << torch.arange(len(names))).sum(1)

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        class_labels: torch.Tensor | list | None = None,
        attributes: dict | None = None,
        guidance_scale: float = 1.0,
        num_inference_steps: int = 50,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ):
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        if class_labels is None:
            class_labels = self.class_labels(batch_size, attributes, generator)
        elif not torch.is_tensor(class_labels):
            class_labels = torch.tensor(class_labels, dtype=torch.long)
        if class_labels is not None:
            batch_size = len(class_labels)
        k = len(self.config.attributes)
        model = self.denoiser
        size = model.config.sample_size
        size = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
        images = reverse_process(
            model,
            self.scheduler,
            (batch_size, model.config.in_channels, *size),
            num_inference_steps,
            generator,
            eta,
            progress=False,
            labels=class_labels,
            guidance_scale=guidance_scale if k else 1.0,
            null_label=2**k if k else None,
            clip=self.vae is None,
        )
        if self.vae is not None:  # latent diffusion: unscale, decode (a VQ decoder quantizes first)
            images = self.vae.decode(images / self.vae.config.scaling_factor).sample.clamp(-1, 1)
        images = (images / 2 + 0.5).clamp(0, 1).cpu().permute(0, 2, 3, 1).float().numpy()
        if output_type == "pil":
            images = self.numpy_to_pil(images)
        return ImagePipelineOutput(images=images) if return_dict else (images,)
