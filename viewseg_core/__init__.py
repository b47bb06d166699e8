"""viewseg_core: ViewSeg novel-view semantic segmentation and depth, without ROS.

Cameras and rays, volume rendering, the model, datasets, training and evaluation. Nothing
in this package imports ROS; the node lives in ``viewseg_ros``.
"""

__version__ = "0.1.0"
