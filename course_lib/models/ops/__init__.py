"""Numerical ops of the state space models, apart from the modules that use them (as state-spaces/mamba
keeps ``ops/`` apart from ``modules/``).

* :mod:`.convolution`: the causal convolution of S4D (FFT and direct) and a fast complex ``exp``;
* :mod:`.selective_scan`: Mamba's selective scan (sequential, chunked and fused) and its one-step form;
* :mod:`.scan_algebra`: the scan's associative operator, a parallel prefix scan, and the selective scan
  written as one (semiseparable) matrix;
* :mod:`.hippo`: the HiPPO-LegS matrices and the Legendre memory they give;
* :mod:`.fused_build`: the fused scan's C kernel (``selective_scan.c``), built once per machine and cached.
"""
