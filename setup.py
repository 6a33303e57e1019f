from setuptools import find_packages, setup

# torch and fairseq are installed by scripts/setup.sh, not declared here: a plain `torch`
# requirement pulls a multi-GB CUDA build, and fairseq-fixed must be built without isolation
# and without its torchaudio requirement.
setup(
    name="fairseq-synth",
    version="0.1.0",
    description="Synthesizer attention (Tay et al., ICML 2021) as a fairseq --user-dir plugin",
    packages=find_packages(include=["fairseq_synth", "fairseq_synth.*"]),
    python_requires=">=3.11",
    install_requires=["sacrebleu>=2.0", "sentencepiece"],
)
