"""Moved to course_lib.data.corpus (kept for one release)."""

from course_lib._moved import alias

alias(__name__, "course_lib.data.corpus")
