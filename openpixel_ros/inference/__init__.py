"""The floor below the run-time, training and evaluation: numpy, SciPy and OpenCV only (no torch).

* :mod:`.prompt_maps`: clicks, scribbles, boxes and the previous mask rendered into a network's
  ``prompts`` input (the prompt engines and training render them identically);
* :mod:`.click_simulation`: the simulated user, the next click (or stroke) in the largest error
  (training samples it, the standard protocol takes its deterministic form);
* :mod:`.ground_truth`: object and ignore masks of a ground-truth mask file (GrabCut, DAVIS);
* :mod:`.confusion_matrix`: pixel counts per class and the mIoU, accuracy and per-class IoU.

Like RITM's ``isegm/inference``, these sit under both training and evaluation, so neither
imports the other and the two cannot drift apart.
"""
