"""Moved to course_lib.production.bundle (kept for one release)."""

from course_lib._moved import alias

alias(__name__, "course_lib.production.bundle")
