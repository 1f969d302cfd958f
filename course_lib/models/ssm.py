"""Old path of the S4D and Mamba models, split for v3 into s4d, mamba and ops (kept for one release)."""

from course_lib._moved import split

split(
    __name__,
    "course_lib.models.s4d",
    "course_lib.models.mamba",
    "course_lib.models.ops.convolution",
    "course_lib.models.ops.selective_scan",
    "course_lib.models.ops.fused_build",
)
