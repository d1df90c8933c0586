"""sdn: Symmetrical Distillation Networks (Yuan & Peng, ACM MM 2018) for text-to-image synthesis."""

__version__ = "0.1.0"
