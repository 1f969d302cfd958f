"""The production path (chapter 07): what happens to a model after training.

* :mod:`.bundle`: a checkpoint (:mod:`course_lib.models.checkpoint`, the one on-disk format) plus the
  task manifest, loaded with checks (:class:`ModelDeployment`), ONNX
* :mod:`.serving`: the bundle as an HTTP service (FastAPI)
* :mod:`.monitoring`: input drift (PSI), rolling forecast error, and the CUSUM error monitor fed under
  label delay (covariate vs concept drift)
* :mod:`.retraining`: re-fitting policies (calendar, error trigger, conformal-coverage trigger) on a stream
* :mod:`.shadow`: a challenger logged beside the champion, promoted by a pre-registered one-sided DM test
* :mod:`.latency`: the serving path of a batch timed stage by stage, with the garbage collector's share
* :mod:`.distributed`: data-parallel training with torchrun (DDP)
"""
