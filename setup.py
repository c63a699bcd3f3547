"""CryoMine: a ScipionTomo plugin (cryomine_scipion) over a standalone PyTorch core (cryomine_core)."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "cryomine_core" / "__init__.py").read_text()).group(1)

# The core's own needs. Versions must stay compatible with Scipion's pins (see constraints.txt):
# install with `pip install -c constraints.txt .`.
CORE_REQUIRES = [
    "numpy>=1.24,<2",
    "scipy>=1.9,<=1.10.0",
    "mrcfile>=1.4,<=1.4.3",
    "torch>=2.1",
    "pandas",
    "starfile>=0.5",
    "dynamotable>=0.3",
    "imodmodel>=0.1",
    "gemmi>=0.6",
    "scikit-learn>=1.3",
    "matplotlib>=3.7",
    "tqdm",
    # the teamtomo packages CryoMine imports (declare what is imported, import what is declared)
    "torch-ctf>=0.6",
    "torch-grid-utils>=0.6",
    # copick projects (CZ cryoET data portal layout); 1.3 and later need numpy>=2 and mrcfile>=1.5.4,
    # which Scipion's pins exclude, so the 1.2 series
    "copick>=1.2,<1.3",
]
# The Scipion plugin needs Scipion itself (normally already present in Scipion's environment).
SCIPION_REQUIRES = ["scipion-pyworkflow>=3.11", "scipion-em>=3.11", "scipion-em-tomo>=3.12"]

setup(
    name="cryomine",
    version=VERSION,
    description="Mining cryo-electron tomograms: CNN classification, template-free subdivision, "
                "subtomogram alignment/averaging and segmentation, with a Scipion plugin.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["cryomine_core", "cryomine_core.*", "cryomine_scipion", "cryomine_scipion.*"]),
    package_data={"cryomine_scipion": ["protocols.conf", "*.png"]},
    install_requires=CORE_REQUIRES,
    extras_require={
        "scipion": SCIPION_REQUIRES,
        # Peer plugins read CryoMine's RELION/Dynamo exports in the interoperability tests (pure Python,
        # no RELION/Dynamo program needed); reliontomo's converters need scipion-app.
        # eulerangles: an independent check of the Euler-angle conventions in the geometry tests.
        # The teamtomo packages CryoMine does not use are compared with its own code number by number
        # (cryomine_core/tests/test_teamtomo_choices.py; the README's layout section says why each stays).
        "test": SCIPION_REQUIRES + ["pytest>=7", "ruff", "scipion-em-reliontomo==4.0.5", "scipion-em-dynamo==3.5.3",
                                    "scipion-app==3.8.3", "eulerangles>=1.0", "torch-fourier-filter>=0.6",
                                    "torch-so3>=0.6", "torch-subpixel-crop>=0.6", "torch-fourier-slice>=0.6",
                                    "torch-fourier-shell-correlation>=0.6"],
    },
    entry_points={
        "console_scripts": ["cryomine = cryomine_core.cli:main"],
        "pyworkflow.plugin": ["cryomine_scipion = cryomine_scipion"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Bio-Informatics",
    ],
)
