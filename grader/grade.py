from course_lib._moved import alias

alias(__name__, "grader.driver")
