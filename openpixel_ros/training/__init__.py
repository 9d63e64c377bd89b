"""OpenPixel training: losses, data, configuration and the training loop (torch).

The click simulation, ground-truth reading and confusion matrix it shares with evaluation
live one floor down, in :mod:`openpixel_ros.inference`.
"""
