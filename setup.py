"""espnet2_pse: personalized speech enhancement as an ESPnet2 task and recipe.

The metadata deliberately names neither torch/torchaudio nor espnet: declaring them lets pip
replace the pinned torch when it resolves espnet. `make -C tools` installs the tested set.
"""

from setuptools import find_packages, setup

setup(
    name="espnet2_pse",
    version="0.1.0",
    description="Personalized speech enhancement (self-supervised and speaker-conditioned) on ESPnet2",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["espnet2_pse", "espnet2_pse.*"]),
    package_data={"espnet2_pse": ["data/resources/*", "pretrained/*", "app/static/*"]},
    # The perceptual metrics (DNSMOS, pDNSMOS, GE2E speaker similarity) are an extra:
    # pip install "espnet2_pse[metrics]" (make -C tools installs them, resemblyzer without its deps).
    # The local web page (pse-app) is another: pip install "espnet2_pse[app]".
    extras_require={"metrics": ["speechmos==0.0.1.1", "onnxruntime", "librosa", "soxr"], "app": ["aiohttp"]},
    install_requires=[
        "numpy",
        "scipy",
        "soundfile",
        "kaldiio",
        "PyYAML",
        "pystoi",
        "pesq",
        "huggingface_hub",
        "tqdm",
    ],
    entry_points={
        "console_scripts": [
            "pse-train=espnet2_pse.bin.pse_train:main",
            "pse-inference=espnet2_pse.bin.pse_inference:main",
            "pse-enhance=espnet2_pse.bin.enhance:main",
            "pse-personalize=espnet2_pse.bin.personalize:main",
            "pse-export=espnet2_pse.bin.export:main",
            "pse-score=espnet2_pse.bin.score:cli",
            "pse-app=espnet2_pse.app.server:main",
        ]
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Multimedia :: Sound/Audio :: Speech",
    ],
)
