"""Score-table teachers: each format written by hand as its tool writes it, path and stem lookup,
and the errors a user meets with a bad table or a video the table lacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightning_modules.teachers import VideoItem, create_teacher, list_teachers
from lightning_modules.teachers.tables import ScoreNotFoundError, ScoreTableTeacher


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def item(path: str | Path, video_id: str = "v") -> VideoItem:
    return VideoItem(video_id=video_id, path=str(path))


# DOVER's evaluate_a_set_of_videos.py: header, then `path, a, t,o` (spacing varies by version).
DOVER_CSV = """path, aesthetic score, technical score, overall/final score
./demo/17734.mp4, 61.250000, 48.500000,55.125000
./demo/1724.mp4, 30.000000, 42.000000, 35.500000
"""


def test_dover_csv_picks_the_chosen_column(tmp_path: Path) -> None:
    table = write(tmp_path, "dover.csv", DOVER_CSV)
    overall = ScoreTableTeacher(table, "dover_csv")
    assert overall.score_native(item("./demo/17734.mp4")) == 55.125
    assert overall.score_native(item("demo/1724.mp4")) == 35.5  # normalised path
    technical = ScoreTableTeacher(table, "dover_csv", score_column="technical")
    assert technical.score_native(item("./demo/1724.mp4")) == 42.0
    aesthetic = ScoreTableTeacher(table, "dover_csv", score_column="aesthetic score")
    assert aesthetic.score_native(item("./demo/17734.mp4")) == 61.25
    assert (overall.name, technical.name) == ("dover", "dover:technical")
    assert overall.sampler() is None and len(overall) == 2


def test_dover_csv_older_header(tmp_path: Path) -> None:
    text = "path, aesthetic score, technical score, overall score\n/abs/a.mp4, 1, 2, 3\n"
    teacher = ScoreTableTeacher(write(tmp_path, "d.csv", text), "dover_csv")
    assert teacher.score_native(item("/abs/a.mp4")) == 3.0


@pytest.mark.parametrize("fmt", ["labels_txt", "fastvqa"])
def test_labels_txt_relative_to_root(tmp_path: Path, fmt: str) -> None:
    text = (
        "Test3/City/Test03_City_D12.avi, 14.948471, 29.09, 20.65\nTest5/City/D05.avi, -1, -1, 4\n"
    )
    root = tmp_path / "CVD2014"
    teacher = ScoreTableTeacher(write(tmp_path, "labels.txt", text), fmt, root=root)
    assert teacher.score_native(item(root / "Test3/City/Test03_City_D12.avi")) == 20.65
    assert teacher.score_native(item(root / "Test5" / "City" / "D05.avi")) == 4.0


def test_generic_with_and_without_header(tmp_path: Path) -> None:
    plain = ScoreTableTeacher(write(tmp_path, "plain.csv", "a.mp4,1.5\nb.mp4, 2.5\n"))
    assert plain.score_native(item("a.mp4")) == 1.5 and plain.score_native(item("b.mp4")) == 2.5
    named = write(tmp_path, "named.csv", 'mos,video\n3.25,"clips/with, comma.mp4"\n4,x.mp4\n')
    teacher = ScoreTableTeacher(named, path_column="video", score_column="mos")
    assert teacher.score_native(item("clips/with, comma.mp4")) == 3.25
    numbered = write(tmp_path, "numbered.csv", "x.mp4, 9, 0.75\n")
    by_number = ScoreTableTeacher(numbered, "generic", score_column=2)
    assert by_number.score_native(item("x.mp4")) == 0.75


def test_lookup_falls_back_to_the_file_stem(tmp_path: Path) -> None:
    text = "/cluster/lsvq/yfcc-batch1/747.mp4, -1, -1, 61.2\n"
    teacher = ScoreTableTeacher(write(tmp_path, "labels.txt", text), "labels_txt")
    assert teacher.score_native(item("/home/me/pool/747.mp4")) == 61.2
    # LSVQ-style names without an extension have the same stem.
    stemless = ScoreTableTeacher(write(tmp_path, "s.csv", "yfcc-batch1/747, 50\n"))
    assert stemless.score_native(item(tmp_path / "747.mp4")) == 50.0


def test_ambiguous_stem_names_both_rows_unless_the_path_matches(tmp_path: Path) -> None:
    text = "x/a.mp4, -1, -1, 1\ny/a.mp4, -1, -1, 2\n"
    table = write(tmp_path, "labels.txt", text)
    teacher = ScoreTableTeacher(table, "labels_txt", root=tmp_path / "pool")
    with pytest.raises(KeyError) as err:
        teacher.score_native(item("/elsewhere/a.mp4"))
    message = str(err.value)
    assert "line 1 (x/a.mp4)" in message and "line 2 (y/a.mp4)" in message
    assert teacher.score_native(item(tmp_path / "pool/y/a.mp4")) == 2.0


def test_missing_video_is_a_clear_key_error(tmp_path: Path) -> None:
    teacher = ScoreTableTeacher(write(tmp_path, "t.csv", "path,score\na.mp4,1\n"))
    with pytest.raises(
        ScoreNotFoundError, match=r"video clip7 \(/pool/b\.mp4\) is not in .*t\.csv"
    ):
        teacher.score_native(item("/pool/b.mp4", "clip7"))
    assert isinstance(ScoreNotFoundError("x"), KeyError)


@pytest.mark.parametrize(
    ("fmt", "text", "reason"),
    [
        ("generic", "path,score\na.mp4,1\nb.mp4,abc\n", r"t:3: score 'abc' is not a number"),
        ("generic", "a.mp4,1\nb.mp4,nan\n", r"t:2: score is nan, not a finite number"),
        ("generic", "path,score\na.mp4,1,7\n", r"t:2: expected 2 fields, found 3"),
        ("generic", "video,mos\na.mp4,1\n", r"t:1: no column 'path'; columns: video, mos"),
        ("generic", "a.mp4,1\n", r"no header row, so column 'mos'"),
        ("labels_txt", "a.mp4, -1, -1, 1\nb.mp4, 2\n", r"t:2: expected 4 .* found 2"),
        ("labels_txt", "a.mp4, -1, -1, inf\n", r"t:1: score is inf"),
        ("labels_txt", ", -1, -1, 1\n", r"t:1: empty path"),
        ("dover_csv", "a.mp4, 1, 2, 3\n", r"t:1: expected DOVER's header"),
        ("dover_csv", DOVER_CSV + "b.mp4, 1, 2\n", r"t:4: expected 4"),
        ("generic", "\n\n", r"t: holds no scores"),
        ("generic", "a.mp4,1\na.mp4,2\n", r"t:2: a.mp4 is listed again with another score"),
    ],
)
def test_bad_tables_fail_at_creation_naming_file_and_line(
    tmp_path: Path, fmt: str, text: str, reason: str
) -> None:
    table = write(tmp_path, "t", text)
    kwargs = {"score_column": "mos"} if "'mos'" in reason else {}
    with pytest.raises(ValueError, match=reason):
        ScoreTableTeacher(table, fmt, **kwargs)


def test_bad_arguments(tmp_path: Path) -> None:
    table = write(tmp_path, "d.csv", DOVER_CSV)
    with pytest.raises(ValueError, match="no such score table"):
        ScoreTableTeacher(tmp_path / "absent.csv")
    with pytest.raises(ValueError, match="no column 'quality'; columns: path, aesthetic"):
        ScoreTableTeacher(table, "dover_csv", score_column="quality")
    with pytest.raises(ValueError, match="unknown score table format"):
        ScoreTableTeacher(table, "dover")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="has one score column"):
        ScoreTableTeacher(table, "labels_txt", score_column="overall")


def test_registered_and_flips_lower_is_better(tmp_path: Path) -> None:
    assert "score_table" in list_teachers()
    table = write(tmp_path, "niqe.csv", "path,score\na.mp4,4.5\n")
    # `name` is create_teacher's own first argument; the table's stem names the teacher here.
    teacher = create_teacher("score_table", table=table, higher_is_better=False)
    native = teacher.score_native(item("a.mp4"))
    assert (teacher.name, native, teacher.to_score(native)) == ("niqe", 4.5, -4.5)
    assert ScoreTableTeacher(table, name="NIQE").name == "NIQE"
    with pytest.raises(TypeError):
        create_teacher("score_table")  # a table is required
