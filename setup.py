"""pip/setuptools metadata for the Python side of openpixel_ros.

ROS users build the whole package (interfaces included) with colcon through
CMakeLists.txt; this file serves ``pip install -e .`` in the development venv
(see scripts/bootstrap.sh) and the console-script entry points.
"""
from setuptools import find_packages, setup

setup(
    name="openpixel_ros",
    version="0.1.0",
    description="ROS 2 camera segmentation: label image, masks, overlays, click-prompted segmentation, "
                "entropy-driven lighting adaptation; ONNX Runtime and TensorRT engines.",
    license="Apache-2.0",
    python_requires=">=3.10",
    # An explicit package_dir makes `pip install -e .` use a .pth path entry instead of an import
    # hook, so the source tree and the CMake-generated openpixel_ros.msg/.srv merge (extend_path).
    package_dir={"": "."},
    packages=find_packages(include=["openpixel_ros", "openpixel_ros.*"]),
    package_data={"openpixel_ros": ["py.typed", "models/*.onnx", "models/*.json", "models/*.md",
                                     "data/*.mp4", "data/*.md"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/openpixel_ros"]),
        ("share/openpixel_ros", ["package.xml"]),
    ],
    install_requires=["numpy", "opencv-python-headless", "onnxruntime", "onnx", "pyyaml"],
    extras_require={
        "train": ["torch==2.13.0"],
        "tensorrt": ["cuda-python"],
        "bag": ["rosbags>=0.11"],  # openpixel_bag
    },
    entry_points={
        "console_scripts": [
            "openpixel_node = openpixel_ros.node.openpixel_node:main",
            "openpixel_lifecycle_node = openpixel_ros.node.lifecycle_node:main",
            "camera_publisher = openpixel_ros.node.camera_publisher:main",
            "openpixel_demo = openpixel_ros.node.demo:main",
            "openpixel_fetch_model = openpixel_ros.selfie_model:main",
            "openpixel_bag = openpixel_ros.bag:main",
        ],
    },
)
