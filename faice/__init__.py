"""faice: diffusion models of human faces, from synthetic faces to CelebA-HQ."""

__version__ = "0.1.0"
