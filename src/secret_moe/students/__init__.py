"""Student models distilled from the teacher MLP: dense MLPs and sparsely gated mixtures of experts."""

from secret_moe.students.spec import STUDENT_PATTERN, active_neurons, build_student, parse_student, student_name

__all__ = ["STUDENT_PATTERN", "active_neurons", "build_student", "parse_student", "student_name"]
