"""Moved to course_lib.evaluation.conformal (kept for one release)."""

from course_lib._moved import alias

alias(__name__, "course_lib.evaluation.conformal")
