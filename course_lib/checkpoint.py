"""Moved to course_lib.models.checkpoint (kept for one release)."""

from course_lib._moved import alias

alias(__name__, "course_lib.models.checkpoint")
