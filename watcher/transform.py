"""What the informer keeps of an object: without ``metadata.managedFields`` and the last-applied
annotation, unless a watch asks for them.

Since server-side apply every object carries managedFields (one entry per writer), and objects made
with ``kubectl apply`` / ``oc apply`` a second copy of their manifest in the annotation
``kubectl.kubernetes.io/last-applied-configuration``: about two thirds of a typical Route's JSON, and
nothing a plugin here reads. controller-runtime's ``TransformStripManagedFields`` drops the first
from its caches; this drops both, so the cache, the relist diff, the work queues and the events the
plugins get all work from the smaller object. Nothing else of the object is touched.

The watch path tests the raw line for the two keys first (``MANAGED_FIELDS_KEY``,
``LAST_APPLIED_KEY``: two substring searches in C), so a line without either costs no more than
before, and only a line that has them pays for ``strip`` and one re-encoding. A hit inside some
string value only costs a ``strip`` that finds nothing.
"""

from __future__ import annotations

from typing import Any

MANAGED_FIELDS = "managedFields"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# How they appear in JSON: the informer's watch path looks for these in a line before anything else.
MANAGED_FIELDS_KEY = b'"managedFields"'
LAST_APPLIED_KEY = b'"kubectl.kubernetes.io/last-applied-configuration"'
_ABSENT = object()


def strip(obj: dict[str, Any]) -> bool:
    """Remove managedFields and the last-applied annotation from ``obj`` in place; True when either
    was there. The annotations mapping stays, even when that was its only entry."""
    meta = obj.get("metadata")
    if type(meta) is not dict:
        return False
    removed = meta.pop(MANAGED_FIELDS, _ABSENT) is not _ABSENT
    annotations = meta.get("annotations")
    if type(annotations) is dict and annotations.pop(LAST_APPLIED, _ABSENT) is not _ABSENT:
        removed = True
    return removed
