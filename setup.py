"""viewseg: the ROS 2 package viewseg_ros (ament_python) and the library viewseg_core."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "viewseg_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Semantic segmentation and depth at novel camera poses (ViewSeg) for ROS 2",
    license="BSD-3-Clause",
    python_requires=">=3.10",
    packages=find_packages(include=["viewseg_core", "viewseg_core.*", "viewseg_ros", "viewseg_ros.*",
                                    "training", "training.*"]),
    package_data={"training": ["configs/*.yaml"], "viewseg_core": ["cuda/*.cu", "cuda/*.cpp"]},
    data_files=[
        # ament index registration + package manifest: `ros2 pkg prefix viewseg_ros` finds us.
        # A colcon-style install (`setup.py install`, as ament_python runs it) copies these;
        # scripts/setup.sh symlinks the same list into the venv, as `--symlink-install` does.
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", sorted(glob("config/*.yaml") + glob("config/*.xml"))),
        # The demo model, so an installed node runs without the source tree
        # (viewseg_ros.node.resolve_checkpoint looks in share/viewseg_ros/checkpoints).
        (f"share/{PACKAGE}/checkpoints", glob("checkpoints/*.pt") + glob("checkpoints/*.confidence.json")),
    ],
    install_requires=["numpy", "torch", "torchvision", "opencv-python-headless", "h5py", "pyyaml",
                      "tqdm", "tensorboard", "rosbags"],
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "viewseg = viewseg_core.cli:main",
            "viewseg_node = viewseg_ros.node:main",
            "viewseg_sim_camera = viewseg_ros.sim_camera:main",
        ],
    },
)
