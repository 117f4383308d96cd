"""asm-tf: adversarial score matching and consistent annealed sampling in TensorFlow 2 / Keras 3."""

import setuptools

# One TensorFlow distribution in every install: the universal `tensorflow` wheel, which runs on the CPU anywhere;
# the `gpu` extra adds its CUDA libraries (NVIDIA's wheels) to the same distribution. A `tensorflow-cpu` base with
# a `tensorflow[and-cuda]` extra would put two distributions into one tensorflow/ folder.
TENSORFLOW = "tensorflow==2.21.0"

INSTALL_REQUIRES = [
    TENSORFLOW,
    "keras==3.15.1",
    "tensorboard==2.21.0",
    "tensorflow-datasets==4.9.10",
    "tqdm==4.70.1",
    "importlib_resources==7.1.0",
    "gin-config==0.5.0",
    "absl-py==2.5.1",
    "numpy==2.4.6",
    "scipy==1.17.1",
    "pillow==13.0.0",
    "matplotlib==3.11.2",
    "scikit-learn==1.9.1",
]

IMPORT_REQUIRES = ["torch==2.13.0", "pyyaml==6.0.4"]

setuptools.setup(
    name="asm-tf",
    version="0.1.0",
    description=__doc__,
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["asm_tf", "asm_tf.*"]),
    package_data={"asm_tf.evaluation": ["assets/*.keras"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "gpu": ["tensorflow[and-cuda]==2.21.0"],
        # asm-import reads the reference's PyTorch checkpoints (torch's CPU build) and config.yml (PyYAML)
        "import": IMPORT_REQUIRES,
        # nbclient, nbformat and ipykernel execute docs/toy2d.ipynb in the tests; the importer's tests need its extra
        "test": ["pytest==9.2.0", "pytest-xdist==3.8.0", "nbclient==0.11.0", "nbformat==5.11.1", "ipykernel==7.4.0",
                 *IMPORT_REQUIRES],
    },
    entry_points={
        "console_scripts": [
            "asm-train=asm_tf.cli.train:run",
            "asm-sample=asm_tf.cli.sample:run",
            "asm-eval=asm_tf.cli.evaluate:run",
            "asm-export=asm_tf.cli.export:run",
            "asm-import=asm_tf.cli.import_reference:run",
        ],
    },
)
