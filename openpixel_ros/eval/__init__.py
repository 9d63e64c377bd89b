"""Evaluation tools: ``python -m openpixel_ros.eval {clicks,semantic,lighting} ...``."""
