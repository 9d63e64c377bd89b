"""The ROS edge: rclpy nodes and message adapters. Everything else in openpixel_ros is ROS-free."""
