"""Mask R-CNN for Keras 3 (TensorFlow backend), with Matterport's public API.

Import the parts you need: ``from mrcnn.config import Config``, ``from mrcnn import utils``,
``from mrcnn import model as modellib``, ``from mrcnn import visualize``. Importing this
package alone does not import TensorFlow.
"""

__version__ = "0.1.0"
