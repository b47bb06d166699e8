"""viewseg_ros: the ROS 2 node of viewseg and its ROS-only helpers (TF buffer, conversions)."""
