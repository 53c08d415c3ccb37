"""Benchmark dataset readers: each official label format written in miniature beside tiny real
videos, read back through the registry; and every way a label file can be wrong."""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from datamodules._ffmpeg import encode_frames
from datamodules.datasets import DATASETS, DatasetError, load_dataset
from datamodules.video_reader import probe
from tests.videos import real_clip

# The official LSVQ_whole_*.csv header (the 1080p list has no is_test).
LSVQ_COLUMNS = [
    "name", "p1", "p2", "p3", "height", "width", "mos_p1", "mos_p2", "mos_p3", "mos",
    "frame_number", "fn_last_frame",
    *(f"{s}_p{i}" for i in (1, 2, 3) for s in ("left", "right", "top", "bottom", "start", "end")),
    "is_test", "is_valid",
]  # fmt: skip


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """4-frame real clips, made once: two .mp4 (H.264), an .avi (MPEG-4 part 2) and an .mkv."""
    out = tmp_path_factory.mktemp("clips")
    bikes, carphone = (real_clip(name, frames=4, height=32) for name in ("bikes", "carphone"))
    return {
        "a": encode_frames(bikes, 10, out / "a.mp4"),
        "b": encode_frames(carphone, 10, out / "b.mp4"),
        "avi": encode_frames(bikes, 10, out / "a.avi", ("-c:v", "mpeg4", "-q:v", "4")),
        "mkv": encode_frames(carphone, 10, out / "b.mkv"),
    }


def place(clip: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(clip, dst)
    return dst


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_xlsx(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


def cells(names: list[str]) -> np.ndarray:
    """A MATLAB cell array (n x 1) of strings, as scipy.io.savemat writes it."""
    out = np.empty((len(names), 1), dtype=object)
    out[:, 0] = names
    return out


@dataclass
class Layout:
    """A dataset copy in miniature: ids in label order -> (path under the root, MOS)."""

    expected: dict[str, tuple[str, float]]
    missing: str  # the id listed whose video is not on disk
    options: dict = field(default_factory=dict)


def lsvq(split: str) -> Callable[[Path, dict[str, Path]], Layout]:
    def make(root: Path, clips: dict[str, Path]) -> Layout:
        columns = LSVQ_COLUMNS if split != "test_1080p" else LSVQ_COLUMNS[:-2] + ["is_valid"]
        lines = [",".join(columns)]
        for name, mos in (
            ("yfcc-batch1/747", 61.25),
            ("ia-batch3/12", 40.5),
            ("yfcc-batch1/9", 50),
        ):
            values = [name] + ["1"] * (len(columns) - 1)
            values[columns.index("mos")] = str(mos)
            lines.append(",".join(values))
        write(root / f"LSVQ_whole_{split}.csv", "\n".join(lines) + "\n")
        place(clips["a"], root / "yfcc-batch1/747.mp4")
        place(clips["b"], root / "ia-batch3/12.mp4")
        expected = {"yfcc-batch1/747": ("yfcc-batch1/747.mp4", 61.25),
                    "ia-batch3/12": ("ia-batch3/12.mp4", 40.5)}  # fmt: skip
        return Layout(expected, "yfcc-batch1/9")

    return make


def konvid(root: Path, clips: dict[str, Path]) -> Layout:
    write(root / "KoNViD_1k_mos.csv", "flickr_id,mos\n3337642103,3.42\n4587853541,2.1\n5,4\n")
    place(clips["a"], root / "KoNViD_1k_videos/3337642103.mp4")
    place(clips["b"], root / "KoNViD_1k_videos/4587853541.mp4")
    expected = {"3337642103": ("KoNViD_1k_videos/3337642103.mp4", 3.42),
                "4587853541": ("KoNViD_1k_videos/4587853541.mp4", 2.1)}  # fmt: skip
    return Layout(expected, "5")


def youtube_ugc(root: Path, clips: dict[str, Path]) -> Layout:
    header = ["vid", "category", "MOS full", "MOS chunk00", "MOS chunk05", "MOS chunk10"]
    rows = [header, ["Animation_1080P-01b3", "Animation", 3.5, 3.4, 3.6, 3.5],
            ["Gaming_720P-25aa", "Gaming", 2.25, 2.2, 2.3, 2.3],
            ["Vlog_480P-0001", "Vlog", 4.0, 4.1, 3.9, 4.0]]  # fmt: skip
    write_xlsx(
        root / "original_videos_MOS_for_YouTube_UGC_dataset.xlsx",
        {"MOS": rows, "diff2": [header, *rows[1:2]]},
    )
    place(clips["mkv"], root / "original_videos/Animation/1080P/Animation_1080P-01b3.mkv")
    transcoded = "original_videos_h264/Gaming_720P-25aa_crf_10_ss_00_t_20.0.mp4"
    place(clips["a"], root / transcoded)
    expected = {
        "Animation_1080P-01b3": ("original_videos/Animation/1080P/Animation_1080P-01b3.mkv", 3.5),
        "Gaming_720P-25aa": (transcoded, 2.25),
    }
    return Layout(expected, "Vlog_480P-0001")


def live_vqc(root: Path, clips: dict[str, Path]) -> Layout:
    mos = np.array([[80.27], [55.1], [60.0]])
    scipy.io.savemat(root / "data.mat", {"video_list": cells(["A001.mp4", "A002.mp4", "B101.mp4"]),
                                         "mos": mos})  # fmt: skip
    place(clips["a"], root / "Video/A001.mp4")
    place(clips["b"], root / "Video/A002.mp4")
    return Layout({"A001.mp4": ("Video/A001.mp4", 80.27), "A002.mp4": ("Video/A002.mp4", 55.1)},
                  "B101.mp4")  # fmt: skip


def live_yt_gaming(root: Path, clips: dict[str, Path]) -> Layout:
    names = ["AoE_1080p60_01", "Fortnite_720p30_02", "Dota_480p30_03"]
    scipy.io.savemat(root / "LIVEYTGaming.mat", {"video_list": cells(names),
                                                 "MOS": np.array([[71.5], [33.0], [50.0]]),
                                                 "index": np.arange(1, 4)[None]})  # fmt: skip
    place(clips["a"], root / "AoE_1080p60_01.mp4")
    place(clips["b"], root / "videos/Fortnite_720p30_02.mp4")  # found by name
    expected = {"AoE_1080p60_01": ("AoE_1080p60_01.mp4", 71.5),
                "Fortnite_720p30_02": ("videos/Fortnite_720p30_02.mp4", 33.0)}  # fmt: skip
    return Layout(expected, "Dota_480p30_03")


def kvq(root: Path, clips: dict[str, Path]) -> Layout:
    write(root / "train_data.csv", "filename,score\ntrain/0001.mp4,3.1\ntrain/0002.mp4,1.8\n"
                                   "train/0003.mp4,2.0\n")  # fmt: skip
    place(clips["a"], root / "train/0001.mp4")
    place(clips["b"], root / "train/0002.mp4")
    return Layout({"train/0001.mp4": ("train/0001.mp4", 3.1),
                   "train/0002.mp4": ("train/0002.mp4", 1.8)}, "train/0003.mp4")  # fmt: skip


def waterloo(root: Path, clips: dict[str, Path]) -> Layout:
    write(
        root / "scores.txt",
        "AV1, 1, 540p, 1, 45.3\nHEVC, 12, 2160p, 4, 20.0\nVP9, 3, 1080p, 2, 50\n",
    )
    place(clips["a"], root / "AV1_1_540p_1.mp4")
    place(clips["b"], root / "HEVC/HEVC_12_2160p_4.mp4")
    expected = {"AV1_1_540p_1": ("AV1_1_540p_1.mp4", 45.3),
                "HEVC_12_2160p_4": ("HEVC/HEVC_12_2160p_4.mp4", 20.0)}  # fmt: skip
    return Layout(expected, "VP9_3_1080p_2")


def cvd2014(root: Path, clips: dict[str, Path]) -> Layout:
    # Reconstructed from the public code that reads it (the file itself is not public): ";",
    # decimal commas, blank ";;;;;;;" rows, File_name / Realignment MOS / Content columns.
    text = ("Test;File_name;Realignment MOS;Content;;;;\n"
            "1;Test01_City_D01;71,82;City;;;;\n"
            ";;;;;;;\n"
            "6;Test06_Talking_head_D07;-3,5;Talking head;;;;\n"
            "2;Test02_Traffic_D03;40,0;Traffic;;;;\n")  # fmt: skip
    write(root / "CVD2014_ratings/Realignment_MOS.csv", text)
    place(clips["avi"], root / "Test1/City/Test01_City_D01.avi")
    place(clips["avi"], root / "Test6/Talking_head/Test06_Talking_head_D07.avi")
    expected = {
        "Test01_City_D01": ("Test1/City/Test01_City_D01.avi", 71.82),
        "Test06_Talking_head_D07": ("Test6/Talking_head/Test06_Talking_head_D07.avi", -3.5),
    }
    return Layout(expected, "Test02_Traffic_D03")


def labels_txt(root: Path, clips: dict[str, Path]) -> Layout:
    write(root / "labels.txt", "train/a.mp4, -1, -1, 3.25\ntrain/b.mp4, -1, -1, 1.5\n"
                               "train/c.mp4, -1, -1, 2\n")  # fmt: skip
    place(clips["a"], root / "train/a.mp4")
    place(clips["b"], root / "train/b.mp4")
    return Layout({"train/a.mp4": ("train/a.mp4", 3.25), "train/b.mp4": ("train/b.mp4", 1.5)},
                  "train/c.mp4", {"mos_range": (1, 5)})  # fmt: skip


def generic(root: Path, clips: dict[str, Path]) -> Layout:
    write(root / "my_scores.csv", "path,mos,extra\nx/a.mp4,7.5,1\nb.mp4,2,1\nc.mp4,3,1\n")
    place(clips["a"], root / "x/a.mp4")
    place(clips["b"], root / "b.mp4")
    return Layout({"x/a.mp4": ("x/a.mp4", 7.5), "b.mp4": ("b.mp4", 2.0)}, "c.mp4",
                  {"labels": "my_scores.csv", "mos_range": (0, 10)})  # fmt: skip


LAYOUTS: dict[str, Callable[[Path, dict[str, Path]], Layout]] = {
    "lsvq_train": lsvq("train"), "lsvq_test": lsvq("test"), "lsvq_test_1080p": lsvq("test_1080p"),
    "konvid_1k": konvid, "youtube_ugc": youtube_ugc, "live_vqc": live_vqc,
    "live_yt_gaming": live_yt_gaming, "kvq": kvq, "waterloo_ivc_4k": waterloo, "cvd2014": cvd2014,
    "labels_txt": labels_txt, "generic": generic,
}  # fmt: skip


def test_every_registered_dataset_has_a_layout() -> None:
    assert set(LAYOUTS) == set(DATASETS)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_reads_the_official_format(name: str, clips: dict[str, Path], tmp_path: Path) -> None:
    layout = LAYOUTS[name](tmp_path, clips)
    with pytest.warns(
        UserWarning, match=rf"{name}: 1 of 3 videos .* e\.g\. {re.escape(layout.missing)};"
    ):
        got = load_dataset(name, tmp_path, **layout.options)
    assert list(got.table.columns) == ["video_id", "path", "mos", "mos01"]
    assert list(got.table.video_id) == list(layout.expected)
    low, high = layout.options.get("mos_range") or DATASETS[name].mos_range
    for row in got.table.itertuples():
        rel, mos = layout.expected[row.video_id]
        assert Path(row.path) == tmp_path / rel
        assert probe(row.path).num_frames == 4
        assert row.mos == pytest.approx(mos)
        assert row.mos01 == pytest.approx((mos - low) / (high - low))  # not clipped (CVD2014 < 0)
    assert got.missing == [layout.missing]
    assert got.problems == []
    assert got.labels.is_file()


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_no_video_on_disk_is_an_error(name: str, clips: dict[str, Path], tmp_path: Path) -> None:
    layout = LAYOUTS[name](tmp_path, clips)
    for rel, _ in layout.expected.values():
        (tmp_path / rel).unlink()
    with pytest.raises(
        DatasetError, match=rf"none of the 3 videos .* expected e\.g\. {re.escape(str(tmp_path))}/"
    ):
        load_dataset(name, tmp_path, **layout.options)


def test_konvid_attributes_file_of_older_copies(clips: dict[str, Path], tmp_path: Path) -> None:
    video = "8536919744_original_centercrop_960x540_8s.mp4"
    write(tmp_path / "KoNViD_1k_metadata/KoNViD_1k_attributes.csv",
          "flickr_id,download_id,file_name,MOS,ti,si,colorfulness,contrast,blur,vniqe\n"
          f"8536919744,1,{video},3.8,1,1,1,1,1,1\n")  # fmt: skip
    place(clips["a"], tmp_path / "KoNViD_1k_videos" / video)
    got = load_dataset("konvid_1k", tmp_path)
    assert got.labels.name == "KoNViD_1k_attributes.csv"
    assert list(got.table.video_id) == ["8536919744"]
    assert got.table.mos01.tolist() == pytest.approx([(3.8 - 1) / 4])


def test_youtube_ugc_csv_mirror_and_videos_folder(clips: dict[str, Path], tmp_path: Path) -> None:
    write(tmp_path / "original_videos_MOS_for_YouTube_UGC_dataset.csv",
          "vid,category,resolution,MOSFull,MOSChunk00\n"
          "Sports_360P-2a3b,Sports,360,2.8,2.9\n")  # fmt: skip
    place(clips["mkv"], tmp_path / "original_videos/Sports/360P/Sports_360P-2a3b.mkv")
    h264 = place(clips["a"], tmp_path / "h264/Sports_360P-2a3b_crf_10_ss_00_t_20.0.mp4")
    got = load_dataset("youtube_ugc", tmp_path)  # both there: the original first
    assert got.table.path.tolist() == [
        str(tmp_path / "original_videos/Sports/360P/Sports_360P-2a3b.mkv")
    ]
    got = load_dataset("youtube_ugc", tmp_path, videos="h264")  # unless told where to look
    assert got.table.path.tolist() == [str(h264)]
    assert got.table.mos01.tolist() == pytest.approx([(2.8 - 1) / 4])


def test_cvd2014_plain_csv_and_generic_parquet(clips: dict[str, Path], tmp_path: Path) -> None:
    import pandas as pd

    write(tmp_path / "cvd.csv", "File_name,MOS\nTest03_Newspaper_D05,55.5\n")
    place(clips["avi"], tmp_path / "videos/Test03_Newspaper_D05.avi")
    got = load_dataset("cvd2014", tmp_path, "cvd.csv")
    assert got.table.video_id.tolist() == ["Test03_Newspaper_D05"]
    assert got.table.mos.tolist() == [55.5]

    pd.DataFrame({"clip": ["videos/Test03_Newspaper_D05.avi"], "quality": [0.25]}).to_parquet(
        tmp_path / "t.parquet"
    )
    got = load_dataset("generic", tmp_path, "t.parquet", path_column="clip",
                       mos_column="quality", mos_range=(0, 0.5))  # fmt: skip
    assert got.table.mos01.tolist() == [0.5]
    with pytest.raises(
        DatasetError, match=r"t\.parquet: no 'path' or 'name' or .* \(columns: clip"
    ):
        load_dataset("generic", tmp_path, "t.parquet", mos_range=(0, 1))


def test_malformed_lines(clips: dict[str, Path], tmp_path: Path) -> None:
    place(clips["a"], tmp_path / "a.mp4")
    write(tmp_path / "labels.txt", "a.mp4, -1, -1, 3\nb.mp4, 2\n")
    write(tmp_path / "scores.txt", "AV1, 1, 540p, 1, 45.3\nAV1, 2, 540p, 60\n")
    place(clips["a"], tmp_path / "AV1_1_540p_1.mp4")
    with pytest.warns(UserWarning, match=r"1 row\(s\) left out"):
        txt = load_dataset("labels_txt", tmp_path, mos_range=(1, 5))
    assert txt.problems == [
        f"{tmp_path / 'labels.txt'}: line 2: expected 'path, a, t, score': 'b.mp4, 2'; left out"
    ]
    with pytest.warns(UserWarning, match=r"1 row\(s\) left out"):
        waterloo = load_dataset("waterloo_ivc_4k", tmp_path)
    assert waterloo.problems == [
        f"{tmp_path / 'scores.txt'}: line 2: expected 5 fields (encoder, video, resolution, "
        "distortion level, mos), got 4; left out"
    ]


def test_duplicate_names(clips: dict[str, Path], tmp_path: Path) -> None:
    write(tmp_path / "LSVQ_whole_test.csv", "name,mos\na,50\nb,40\na,50\nb,41\nc,10\n")
    for name in "abc":
        place(clips["a"], tmp_path / f"{name}.mp4")
    with pytest.warns(UserWarning, match=r"3 row\(s\) left out"):
        got = load_dataset("lsvq_test", tmp_path)
    assert got.table.video_id.tolist() == ["a", "c"]
    label = str(tmp_path / "LSVQ_whole_test.csv")
    assert got.problems == [
        f"{label}: line 3 (b): listed 2 times with different MOS: 40 (line 3), 41 (line 5); "
        "all left out",
        f"{label}: line 4 (a): listed again (first at line 2); left out",
        f"{label}: line 5 (b): listed 2 times with different MOS: 40 (line 3), 41 (line 5); "
        "all left out",
    ]


def test_missing_and_non_numeric_mos(clips: dict[str, Path], tmp_path: Path) -> None:
    write(tmp_path / "KoNViD_1k_mos.csv", "flickr_id,mos\n1,3.5\n2,\n3,abc\n4,nan\n")
    for name in "1234":
        place(clips["a"], tmp_path / f"{name}.mp4")
    with pytest.warns(UserWarning, match=r"3 row\(s\) left out"):
        got = load_dataset("konvid_1k", tmp_path)
    assert got.table.video_id.tolist() == ["1"]
    assert [p.split(": ", 1)[1] for p in got.problems] == [
        "line 3 (2): no MOS; left out",
        "line 4 (3): MOS 'abc' is not a number; left out",
        "line 5 (4): MOS is nan; left out",
    ]
    assert all(p.startswith(str(tmp_path / "KoNViD_1k_mos.csv")) for p in got.problems)


def test_mos_problems_in_xlsx_and_mat(clips: dict[str, Path], tmp_path: Path) -> None:
    write_xlsx(tmp_path / "ugc.xlsx", {"MOS": [["vid", "MOS full"], ["v1", 3.0], ["v2", None]]})
    scipy.io.savemat(tmp_path / "data.mat", {"video_list": cells(["v1.mp4", "v2.mp4"]),
                                             "mos": np.array([[50.0], [np.nan]])})  # fmt: skip
    place(clips["a"], tmp_path / "v1.mp4")
    place(clips["b"], tmp_path / "v2.mp4")
    with pytest.warns(UserWarning, match=r"1 row\(s\) left out"):
        ugc = load_dataset("youtube_ugc", tmp_path, "ugc.xlsx")
    assert ugc.problems == [f"{tmp_path / 'ugc.xlsx'}: row 3 (v2): no MOS; left out"]
    with pytest.warns(UserWarning, match=r"1 row\(s\) left out"):
        vqc = load_dataset("live_vqc", tmp_path)
    assert vqc.problems == [f"{tmp_path / 'data.mat'}: entry 2 (v2.mp4): MOS is nan; left out"]


def test_wrong_sheet_names_the_sheets(tmp_path: Path) -> None:
    write_xlsx(tmp_path / "ugc.xlsx", {"Sheet1": [["vid", "MOS full"]], "diff2": [["vid"]]})
    with pytest.raises(DatasetError, match=r"ugc\.xlsx: no sheet 'MOS' \(sheets: Sheet1, diff2\)"):
        load_dataset("youtube_ugc", tmp_path, "ugc.xlsx")
    with pytest.raises(DatasetError, match=r"no sheet 'scores' \(sheets: Sheet1, diff2\)"):
        load_dataset("youtube_ugc", tmp_path, "ugc.xlsx", sheet="scores")


def test_paths_leaving_the_root(clips: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "set"
    outside = place(clips["a"], tmp_path / "outside.mp4")  # exists, so only the check stops it
    inside = place(clips["b"], root / "in.mp4")
    lines = ["../outside.mp4", str(outside), str(inside), "in/../../set2/a.mp4"]
    write(root / "labels.txt", "".join(f"{p}, -1, -1, {i}\n" for i, p in enumerate(lines, 1)))
    with pytest.warns(UserWarning, match=r"3 row\(s\) left out"):
        got = load_dataset("labels_txt", root, mos_range=(0, 5))
    assert got.table.path.tolist() == [str(inside)]
    assert len(got.problems) == 3
    for problem, line in zip(got.problems, (1, 2, 4), strict=True):
        assert problem.startswith(f"{root / 'labels.txt'}: line {line} (")
        assert f"leaves the dataset folder {root}; left out" in problem


def test_same_name_in_two_folders_is_reported(clips: dict[str, Path], tmp_path: Path) -> None:
    write(tmp_path / "KoNViD_1k_mos.csv", "flickr_id,mos\n7,3\n8,4\n")
    place(clips["a"], tmp_path / "copy1/7.mp4")
    place(clips["a"], tmp_path / "copy2/7.mp4")
    place(clips["b"], tmp_path / "copy1/8.mkv")
    place(clips["b"], tmp_path / "copy1/8.mp4")  # two extensions in one folder: .mp4 first
    with pytest.warns(UserWarning, match=r"1 row\(s\) left out"):
        got = load_dataset("konvid_1k", tmp_path)
    assert got.table.path.tolist() == [str(tmp_path / "copy1/8.mp4")]
    assert "(7): found in several places" in got.problems[0]
    assert "choose the folder with videos=" in got.problems[0]
    with pytest.warns(UserWarning, match=r"1 of 2 videos .* not under .*copy2, e\.g\. 8;"):
        assert load_dataset("konvid_1k", tmp_path, videos="copy2").table.video_id.tolist() == ["7"]


def test_files_that_cannot_be_read(tmp_path: Path) -> None:
    write(tmp_path / "bad.xlsx", "not a workbook")
    write(tmp_path / "bad.mat", "not a mat file at all, just some text to fill the header" * 4)
    write(tmp_path / "LSVQ_whole_train.csv", "file,score\na,1\n")
    scipy.io.savemat(tmp_path / "short.mat", {"video_list": cells(["a", "b"]), "mos": [[1.0]]})
    scipy.io.savemat(tmp_path / "nomos.mat", {"video_list": cells(["a"])})
    cases = [
        ("youtube_ugc", "bad.xlsx", r"bad\.xlsx: cannot read as an \.xlsx workbook"),
        ("live_vqc", "bad.mat", r"bad\.mat: cannot read as a MATLAB \.mat file"),
        ("lsvq_train", None, r"LSVQ_whole_train\.csv: no 'name' column \(columns: file, score\)"),
        ("live_vqc", "short.mat", r"short\.mat: 2 names in 'video_list' but 1 in 'mos'"),
        ("live_vqc", "nomos.mat", r"nomos\.mat: no 'mos' variable \(variables: video_list\)"),
    ]
    for name, labels, message in cases:
        with pytest.raises(DatasetError, match=message):
            load_dataset(name, tmp_path, labels)


def test_mat_v73_without_h5py_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5"
    header = header.ljust(116) + b"\0" * 8 + b"\x00\x02IM"  # version 2 (v7.3), little endian
    (tmp_path / "data.mat").write_bytes(header + b"\0" * 384)
    monkeypatch.setitem(sys.modules, "h5py", None)  # import fails as if not installed
    with pytest.raises(DatasetError, match=r"data\.mat: a MATLAB v7\.3 .*pip install h5py"):
        load_dataset("live_vqc", tmp_path)


def test_mat_v73_through_h5py(clips: dict[str, Path], tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "LIVEYTGaming.mat"
    with h5py.File(path, "w", userblock_size=512) as f:  # how MATLAB lays out -v7.3 files
        refs = []
        for i, name in enumerate(["g1", "g2"]):
            ds = f.create_dataset(f"#refs#/{i}", data=np.array([[ord(c)] for c in name], "u2"))
            ds.attrs["MATLAB_class"] = np.bytes_("char")
            refs.append(ds.ref)
        f.create_dataset("video_list", data=np.array([refs]), dtype=h5py.ref_dtype)
        f.create_dataset("MOS", data=np.array([[61.0, 40.0]]))
    with path.open("r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file".ljust(116) + b"\0" * 8 + b"\x00\x02IM")
    place(clips["a"], tmp_path / "g1.mp4")
    place(clips["b"], tmp_path / "g2.mp4")
    got = load_dataset("live_yt_gaming", tmp_path)
    assert got.table.video_id.tolist() == ["g1", "g2"]
    assert got.table.mos.tolist() == [61.0, 40.0]


def test_waterloo_naming_is_configurable(clips: dict[str, Path], tmp_path: Path) -> None:
    write(tmp_path / "scores.txt", "H264 5 1080p 3 62.5\n")  # blank-separated also reads
    place(clips["a"], tmp_path / "H264/1080p/05-3.mp4")
    got = load_dataset(
        "waterloo_ivc_4k", tmp_path, pattern="{encoder}/{resolution}/0{video}-{level}"
    )
    assert got.table.video_id.tolist() == ["H264/1080p/05-3"]
    with pytest.raises(DatasetError, match=r"pattern '\{codec\}': KeyError.*encoder, video"):
        load_dataset("waterloo_ivc_4k", tmp_path, pattern="{codec}")


def test_caller_mistakes(tmp_path: Path) -> None:
    write(tmp_path / "scores.csv", "path,mos\na.mp4,1\n")
    cases = [
        (("imagenet", tmp_path), {}, r"unknown dataset 'imagenet'; known: lsvq_train, "),
        (("kvq", tmp_path / "nowhere"), {}, r"nowhere: no such dataset folder"),
        (("kvq", tmp_path), {}, r"no kvq label file; looked for train_data\.csv, truth\.csv"),
        (("generic", tmp_path), {"mos_range": (0, 1)}, r"generic: no default label file"),
        (("generic", tmp_path, "scores.csv"), {}, r"give mos_range=\(low, high\)"),
        (("kvq", tmp_path, "other.csv"), {}, r"other\.csv: no such label file"),
        (("kvq", tmp_path, "scores.csv"), {"sheet": "MOS"}, r"kvq: unknown option sheet"),
        (("konvid_1k", tmp_path, "scores.csv"), {"mos_range": (5, 1)}, r"mos_range .* is empty"),
    ]
    for args, options, message in cases:
        with pytest.raises(DatasetError, match=message):
            load_dataset(*args, **options)
