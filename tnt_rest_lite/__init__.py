"""tnt_rest_lite: TNT and ResT, built component by component, with their supplements regenerated.

Importing the package registers every model with timm, so after ``import tnt_rest_lite`` both
``tnt_rest_lite.create_model("tnt_s")`` and ``timm.create_model("tnt_s")`` work. The layers of the
package and the direction of its imports are described in ARCHITECTURE.md.
"""

from __future__ import annotations

from .layers.attention import Attention, capture_attention
from .models import create_model, list_models  # importing models registers every entry point
from .profiles import get_profile

__version__ = "0.1.0"

__all__ = ["Attention", "capture_attention", "create_model", "get_profile", "list_models", "__version__"]
