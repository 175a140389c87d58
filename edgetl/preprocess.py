"""The image preprocessing under its earlier name: `edgetl.preprocess` is the module
`edgetl.modality.image` itself (one object, so setting MAX_PIXELS here sets it there)."""
import sys

from edgetl.modality import image

sys.modules[__name__] = image
