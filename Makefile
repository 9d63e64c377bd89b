# The two commands of the README. Both set up .venv (wheels, interfaces) first; the default model ships in the package;
# scripts/bootstrap.sh is idempotent and returns in about a second once everything is in place.
# Every ROS process they start keeps discovery on localhost (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST)
# on a private, random ROS_DOMAIN_ID.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
# Shared-memory-only Fast DDS transport (see config/fastdds_shm.xml): fast for images, host-local.
export FASTDDS_DEFAULT_PROFILES_FILE ?= $(CURDIR)/config/fastdds_shm.xml

.PHONY: setup demo lint test bench

setup:
	bash scripts/bootstrap.sh

demo: setup
	.venv/bin/openpixel_demo

lint: setup
	.venv/bin/ruff check .

test: setup lint
	.venv/bin/python -m pytest -q test

bench: setup
	.venv/bin/python bench/run_all.py
