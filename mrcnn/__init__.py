"""Mask R-CNN for Keras 3 (TensorFlow backend), with Matterport's public API.

Import the parts you need: ``from mrcnn.config import Config``, ``from mrcnn import utils``,
``from mrcnn import model as modellib``, ``from mrcnn import visualize``. Importing this
package alone does not import TensorFlow.
"""



def project_version() -> str:
    """The installed distribution's version (pyproject.toml's, one source for the CLI's
    ``--version``, checkpoints and DICOM outputs), or a note when run from an uninstalled
    checkout."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ftmtl")
    except PackageNotFoundError:
        return "(not installed: run from a checkout)"


__version__ = project_version()
