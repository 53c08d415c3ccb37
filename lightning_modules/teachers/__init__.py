"""Teachers: classical no-reference metrics, score tables from other tools, vision-language models
and trained students, all behind one interface (`base.Teacher`)."""

from lightning_modules.teachers.base import (
    Teacher,
    VideoItem,
    create_teacher,
    describe_teachers,
    list_teachers,
    register_teacher,
)

__all__ = [
    "Teacher",
    "VideoItem",
    "create_teacher",
    "describe_teachers",
    "list_teachers",
    "register_teacher",
]
