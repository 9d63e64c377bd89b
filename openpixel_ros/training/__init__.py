"""OpenPixel training: losses, click simulation, data, configuration and the training loop.

``losses``, ``train``, ``config`` and ``data`` use torch; ``click_simulation``
is numpy + OpenCV only, so evaluation code can use the same click protocol.
"""
