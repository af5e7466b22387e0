"""Triton kernels of mmssm (installed as ``mmssm.kernels``)."""
