"""admmlab: ADMM for sigmoid nets against SGD-type training (Zeng et al., JMLR 2021)."""

__version__ = "0.1.0"
