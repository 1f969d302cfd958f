"""The production path (chapter 07): what happens to a model after training.

* :mod:`.bundle`: a checkpoint (:mod:`course_lib.models.checkpoint`, the one on-disk format) plus the
  task manifest, loaded with checks (:class:`ModelDeployment`), ONNX
* :mod:`.serving`: the bundle as an HTTP service (FastAPI)
* :mod:`.monitoring`: input drift (PSI) and rolling forecast error
* :mod:`.distributed`: data-parallel training with torchrun (DDP)
"""
