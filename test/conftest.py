"""Suite-wide test setup: loopback-only ROS, a private DDS domain, and the gpu marker.

ROS tests must never talk to a robot on the network, and two suites running at once on one
machine must not hear each other, so every pytest process gets its own random domain id
(set before anything imports rclpy).
"""
from __future__ import annotations

import os
import random

import pytest

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 101)))


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread per test: on a busy 2-core machine two OpenMP threads spin
    against other processes and make small-tensor tests up to 10x slower."""
    try:
        import torch
    except ImportError:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if _cuda_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device (run `make test-gpu` on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def rclpy_context():
    """A fresh rclpy context for one test; shut down afterwards even when the test fails."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        context.try_shutdown()


@pytest.fixture
def ros_subprocess_env():
    """Environment for a child process that must join this test's ROS graph."""
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_DOMAIN_ID"] = os.environ["ROS_DOMAIN_ID"]
    return env
