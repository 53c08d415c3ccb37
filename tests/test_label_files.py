"""The label files public VQA code ships, read as they are laid out: VSFA-style `*info.mat`
(`video_names`, `scores`, `index`) and its published splits, LSVQ names with an extension of their
own, Waterloo-IVC-4K's CSV of absolute paths from another machine; formats found from content."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io

from datamodules._label_files import sniff
from datamodules.datasets import DatasetError, load_dataset, read_splits
from experiments import finetune
from experiments.finetune import FinetuneConfig, published_split_indices
from tests import test_datasets
from tests.test_datasets import cells, place, write, write_xlsx

clips = test_datasets.clips  # the module's tiny real clips, made once here too


def info_mat(path: Path, names: list[str], scores: list[float], **extra: object) -> Path:
    """A VSFA-style info .mat as `data_info_maker.m` saves it (MATLAB v5 through scipy): names a
    cell array, `index` one 1-based permutation per row (R x N), `ref_ids` N x 1."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"video_names": cells(names), "scores": np.array(scores), **extra}
    scipy.io.savemat(path, data, appendmat=False)
    return path


def test_konvid_info_mat_names_and_published_splits(clips: dict[str, Path], tmp_path: Path) -> None:
    names = [f"{i}_original_centercrop_960x540_8s.mp4" for i in (3337642103, 4587853541, 5)]
    index = np.array([[3, 1, 2], [2, 3, 1]], dtype=float)  # randperm: 1-based, one per row
    info_mat(
        tmp_path / "KoNViD-1kinfo.mat",
        names,
        [[3.42, 2.1, 4.0]],
        index=index,
        ref_ids=np.arange(1.0, 4.0)[:, None],
    )  # fmt: skip  (scores 1 x N)
    place(clips["a"], tmp_path / "KoNViD_1k_videos/3337642103.mp4")  # today's copies: <id>.mp4
    place(clips["b"], tmp_path / f"KoNViD_1k_videos/{names[1]}")  # older ones: file_name
    assert sniff(tmp_path / "KoNViD-1kinfo.mat") == "info_mat"
    with pytest.warns(UserWarning, match=r"1 of 3 videos .* e\.g\. 5;"):
        got = load_dataset("konvid_1k", tmp_path)  # the last of its default label files
    assert got.table.video_id.tolist() == ["3337642103", "4587853541"]  # flickr_id, as the CSV
    assert got.table.mos.tolist() == [3.42, 2.1]
    assert got.table.path.tolist() == [str(tmp_path / "KoNViD_1k_videos/3337642103.mp4"),
                                       str(tmp_path / f"KoNViD_1k_videos/{names[1]}")]  # fmt: skip
    assert read_splits("konvid_1k", got.labels) == [
        [("5",), ("3337642103",), ("4587853541",)],
        [("4587853541",), ("5",), ("3337642103",)],
    ]


def test_numeric_names_one_permutation_per_column_and_0_based(tmp_path: Path) -> None:
    # VSFA-UGC saves KoNViD's flickr_id column as numbers; a Python-made file may hold
    # np.random.permutation(N) (0-based) with one permutation per column.
    path = tmp_path / "k.mat"
    data = {"video_names": np.array([[11.0], [22.0], [33.0]]), "scores": [[1.5], [2.5], [3.5]]}
    scipy.io.savemat(path, {**data, "index": np.array([[2, 0], [0, 1], [1, 2]])})
    assert read_splits("konvid_1k", path) == [[("33",), ("11",), ("22",)],
                                              [("11",), ("22",), ("33",)]]  # fmt: skip
    scipy.io.savemat(path, {**data, "index": np.array([[2, 0], [0, 1], [1, 2], [2, 0]])})
    with pytest.raises(DatasetError, match=r"k\.mat: row 1 of 'index' \(4 x 2\) is not a perm"):
        read_splits("konvid_1k", path)  # neither 3 wide nor 3 tall


def test_ref_ids_group_videos_of_one_content(tmp_path: Path) -> None:
    names = ["A_1.mp4", "A_2.mp4", "B_1.mp4", "C_1.mp4"]
    path = info_mat(tmp_path / "w.mat", names, [1, 2, 3, 4], ref_ids=np.array([[1], [1], [2], [3]]),
                    index=np.array([[2, 3, 1], [1, 2, 3]]))  # fmt: skip
    assert read_splits("generic", path) == [
        [("B_1.mp4",), ("C_1.mp4",), ("A_1.mp4", "A_2.mp4")],
        [("A_1.mp4", "A_2.mp4"), ("B_1.mp4",), ("C_1.mp4",)],
    ]
    no_index = info_mat(tmp_path / "n.mat", names, [1, 2, 3, 4])
    with pytest.raises(DatasetError, match=r"n\.mat: no 'index' variable \(variables: video_na"):
        read_splits("generic", no_index)
    write(tmp_path / "labels.csv", "path,mos\na.mp4,1\n")
    with pytest.raises(
        DatasetError, match=r"labels\.csv: a CSV table .* splits are read from a VS"
    ):
        read_splits("generic", tmp_path / "labels.csv")


def test_youtube_ugc_info_mat_with_absolute_windows_paths(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    # Made by a MATLAB script with fullfile(root_path, name): paths of the maker's machine.
    ugc = r"E:\VQADatabase\YouTube-UGC"
    names = [rf"{ugc}\original_videos_h264\Gaming_720P-25aa_crf_10_ss_00_t_20.0.mp4",
             rf"{ugc}\original_videos\Vlog\480P\Vlog_480P-0001.mkv",
             rf"{ugc}\original_videos\Sports_360P-2a3b.mkv"]  # fmt: skip
    info_mat(tmp_path / "ugc.dat", names, [[2.25], [4.0], [3.0]])  # N x 1; any file name
    h264 = place(
        clips["a"], tmp_path / "original_videos_h264/Gaming_720P-25aa_crf_10_ss_00_t_20.0.mp4"
    )
    place(clips["mkv"], tmp_path / "original_videos/Vlog/480P/Vlog_480P-0001.mkv")
    with pytest.warns(UserWarning, match=r"1 of 3 videos .* e\.g\. Sports_360P-2a3b;"):
        got = load_dataset("youtube_ugc", tmp_path, "ugc.dat")
    assert got.table.video_id.tolist() == ["Gaming_720P-25aa", "Vlog_480P-0001"]  # the vid
    assert got.table.path.tolist() == [
        str(h264),
        str(tmp_path / "original_videos/Vlog/480P/Vlog_480P-0001.mkv"),
    ]
    assert got.table.mos.tolist() == [2.25, 4.0]


def test_live_vqc_and_cvd2014_info_mats_give_the_official_ids(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    info_mat(tmp_path / "vqc/LIVE-VQCinfo.mat", ["A001.mp4", "B101.mp4"], [[80.27], [59.24]])
    place(clips["a"], tmp_path / "vqc/Video/A001.mp4")
    place(clips["b"], tmp_path / "vqc/Video/B101.mp4")
    vqc = load_dataset("live_vqc", tmp_path / "vqc")
    assert vqc.table.video_id.tolist() == ["A001.mp4", "B101.mp4"]  # as data.mat names them
    assert vqc.table.mos.tolist() == [80.27, 59.24]

    # VSFA's CVD2014info.mat: Test<n>/<content>/<File_name>.avi, scores = Realignment MOS / 100
    names = ["Test1/City/Test01_City_D01.avi", "Test6/Talking head/Test06_Talking_head_D07.avi"]
    info_mat(tmp_path / "cvd/CVD2014info.mat", names, [[0.7182], [-0.035]])
    place(clips["avi"], tmp_path / "cvd/Test1/City/Test01_City_D01.avi")
    place(clips["avi"], tmp_path / "cvd/Test6/Talking_head/Test06_Talking_head_D07.avi")
    cvd = load_dataset("cvd2014", tmp_path / "cvd", mos_range=(0, 1))
    assert cvd.table.video_id.tolist() == ["Test01_City_D01", "Test06_Talking_head_D07"]
    assert cvd.table.mos.tolist() == [0.7182, -0.035]


def test_info_mat_v73_through_h5py(clips: dict[str, Path], tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "LIVE-VQCinfo.mat"
    with h5py.File(path, "w", userblock_size=512) as f:  # as MATLAB's save -v7.3 lays it out
        refs = []
        for i, name in enumerate(["A001.mp4", "A002.mp4", "A003.mp4"]):
            ds = f.create_dataset(f"#refs#/{i}", data=np.array([[ord(c)] for c in name], "u2"))
            ds.attrs["MATLAB_class"] = np.bytes_("char")
            refs.append(ds.ref)
        f.create_dataset("video_names", data=np.array([refs]).T, dtype=h5py.ref_dtype)  # N x 1
        f.create_dataset("scores", data=np.array([[61.0, 40.0, 52.5]]))  # N x 1, axes reversed
        index = np.array([[3.0, 1.0, 2.0], [1.0, 2.0, 3.0]])  # MATLAB's 2 x 3
        f.create_dataset("index", data=index.T)  # HDF5 holds it 3 x 2
    with path.open("r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file".ljust(116) + b"\0" * 8 + b"\x00\x02IM")
    for name in ("A001", "A002", "A003"):
        place(clips["a"], tmp_path / f"Video/{name}.mp4")
    got = load_dataset("live_vqc", tmp_path, "LIVE-VQCinfo.mat")
    assert got.table.mos.tolist() == [61.0, 40.0, 52.5]
    assert read_splits("live_vqc", path)[0] == [("A003.mp4",), ("A001.mp4",), ("A002.mp4",)]


def test_lsvq_names_with_an_inner_extension(clips: dict[str, Path], tmp_path: Path) -> None:
    write(tmp_path / "LSVQ_whole_test.csv", "name,mos\nia-batch2/Some_Name.mov,55.5\n"
          "yfcc-batch1/747,61.25\nia-batch4/Other.avi,30\nia-batch4/Gone.mov,40\n")  # fmt: skip
    place(clips["a"], tmp_path / "ia-batch2/Some_Name.mov.mp4")  # name + ".mp4", as shipped
    place(clips["b"], tmp_path / "yfcc-batch1/747.mp4")
    place(clips["avi"], tmp_path / "ia-batch4/Other.avi")  # a copy that kept the name as listed
    with pytest.warns(UserWarning, match=r"1 of 4 videos .* e\.g\. ia-batch4/Gone\.mov;"):
        got = load_dataset("lsvq_test", tmp_path)
    assert got.table.video_id.tolist() == ["ia-batch2/Some_Name.mov", "yfcc-batch1/747",
                                           "ia-batch4/Other.avi"]  # fmt: skip
    assert got.table.path.tolist() == [str(tmp_path / "ia-batch2/Some_Name.mov.mp4"),
                                       str(tmp_path / "yfcc-batch1/747.mp4"),
                                       str(tmp_path / "ia-batch4/Other.avi")]  # fmt: skip
    assert got.table.mos.tolist() == [55.5, 61.25, 30.0]


def test_waterloo_csv_with_paths_of_another_machine(clips: dict[str, Path], tmp_path: Path) -> None:
    write(tmp_path / "Waterloo_IVC_4K.csv",
          "Encoder, Video Number, Resolution, Distortion Level, MOS, path\n"
          "AV1, 1, 540p, 1, 45.3, /home/someone/data/Waterloo4K/AV1/540p/01_1.mp4\n"
          "HEVC, 12, 2160p, 4, 20.0, /home/someone/data/Waterloo4K/HEVC/2160p/12_4.mp4\n"
          "VP9, 3, 1080p, 2, 50, /home/someone/data/Waterloo4K/VP9/1080p/03_2.mp4\n"
          "H264, 3, 1080p, 2, 61, /home/someone/data/Waterloo4K/H264/1080p/03_2.mp4\n")  # fmt: skip
    place(clips["a"], tmp_path / "AV1/540p/01_1.mp4")
    place(clips["b"], tmp_path / "Waterloo4K/HEVC/2160p/12_4.mp4")  # a deeper copy of the tree
    place(clips["a"], tmp_path / "H264/1080p/03_2.mp4")  # same file name as VP9's: by its path
    assert sniff(tmp_path / "Waterloo_IVC_4K.csv") == "csv"
    with pytest.warns(UserWarning, match=r"1 of 4 videos .* e\.g\. VP9_3_1080p_2;"):
        got = load_dataset("waterloo_ivc_4k", tmp_path, "Waterloo_IVC_4K.csv")
    assert got.table.video_id.tolist() == ["AV1_1_540p_1", "HEVC_12_2160p_4", "H264_3_1080p_2"]
    assert got.table.path.tolist() == [str(tmp_path / "AV1/540p/01_1.mp4"),
                                       str(tmp_path / "Waterloo4K/HEVC/2160p/12_4.mp4"),
                                       str(tmp_path / "H264/1080p/03_2.mp4")]  # fmt: skip
    assert got.table.mos.tolist() == [45.3, 20.0, 61.0]
    assert got.problems == []


def test_format_is_found_from_content(tmp_path: Path) -> None:
    parquet = tmp_path / "t.bin"
    pd.DataFrame({"path": ["a.mp4"], "mos": [1.0]}).to_parquet(parquet)
    write_xlsx(tmp_path / "x.csv", {"MOS": [["vid", "MOS full"]]})  # a workbook named .csv
    scipy.io.savemat(
        tmp_path / "m.txt", {"video_list": cells(["a.mp4"]), "mos": [[1.0]]}, appendmat=False
    )
    write(tmp_path / "labels.csv", "train/a.mp4, -1, -1, 3.25\n")
    write(tmp_path / "scores.txt", "flickr_id;mos\n1;2\n")
    kinds = {
        p: sniff(tmp_path / p) for p in ("t.bin", "x.csv", "m.txt", "labels.csv", "scores.txt")
    }
    assert kinds == {"t.bin": "parquet", "x.csv": "xlsx", "m.txt": "mat", "labels.csv": "list",
                     "scores.txt": "csv"}  # fmt: skip


def test_wrong_format_names_what_was_found_and_what_is_accepted(tmp_path: Path) -> None:
    write(tmp_path / "labels.txt", "path,a,t,score\nx.mp4,-1,-1,3\n")
    write(tmp_path / "train.csv", "a.mp4, -1, -1, 3\n")
    info_mat(tmp_path / "info.mat", ["a.mp4"], [[1.0]])
    write_xlsx(tmp_path / "ugc.xlsx", {"MOS": [["vid", "MOS full"]]})
    cases = [
        ("labels_txt", "labels.txt", {"mos_range": (1, 5)},
         r"labels\.txt: a CSV table with a header; labels_txt reads: headerless text list$"),
        ("kvq", "train.csv", {}, r"train\.csv: a headerless text list; kvq reads: CSV table"),
        ("lsvq_test", "info.mat", {},
         r"info\.mat: a VSFA-style \.mat \(video_names, scores, index\); lsvq_test reads: CSV "),
        ("konvid_1k", "ugc.xlsx", {}, r"ugc\.xlsx: a \.xlsx workbook; konvid_1k reads: CSV table "
         r"with a header; VSFA-style \.mat"),
        ("live_vqc", "labels.txt", {},
         r"a CSV table .*; live_vqc reads: LIVE-style \.mat \(video_list, mos\)"),
        ("waterloo_ivc_4k", "info.mat", {"pattern": "{video}"}, r"waterloo_ivc_4k reads: headerl"),
        ("youtube_ugc", "info.mat", {"sheet": "MOS"},
         r"info\.mat: option sheet does not apply to a VSFA-style \.mat"),
    ]  # fmt: skip
    for name, labels, options, message in cases:
        with pytest.raises(DatasetError, match=message):
            load_dataset(name, tmp_path, labels, **options)


def test_published_split_cut_as_vsfa_cuts_it() -> None:
    groups = [(f"v{i}",) for i in range(10)]
    config = FinetuneConfig(test_fraction=0.2, val_fraction=0.25)  # VSFA's 60/20/20
    ids = [f"v{i}" for i in range(10) if i != 4]  # v4 listed but not in this copy
    parts = published_split_indices(ids, groups, config)
    named = {k: [ids[i] for i in v] for k, v in parts.items()}
    assert named == {"fit": ["v0", "v1", "v2", "v3", "v5"], "val": ["v6", "v7"],
                     "test": ["v8", "v9"]}  # fmt: skip
    # 1,200 KoNViD videos: the test part is index[960:], as ceil((1 - 0.2) * 1200) in VSFA.py
    big = published_split_indices([str(i) for i in range(1200)], [(str(i),) for i in range(1200)],
                                  FinetuneConfig())  # fmt: skip
    assert [len(big[k]) for k in ("fit", "val", "test")] == [768, 192, 240]
    with pytest.raises(ValueError, match="too few videos in a part"):
        published_split_indices(["v0", "v1"], groups, config)


def test_finetune_takes_published_splits_from_the_file(
    clips: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"{i}.mp4" for i in range(1, 11)]
    perms = np.array([np.roll(np.arange(1, 11), -k) for k in range(3)])  # 3 published splits
    info_mat(tmp_path / "KoNViD-1kinfo.mat", names, [[float(i)] for i in range(1, 11)],
             index=perms)  # fmt: skip
    for n in names[:9]:
        place(clips["a"], tmp_path / n)
    shutil.copyfile(clips["b"], tmp_path / "99.mp4")
    write(
        tmp_path / "KoNViD_1k_mos.csv",  # labels from the official CSV, splits from the .mat
        "flickr_id,mos\n" + "".join(f"{i},{i / 3:.3f}\n" for i in (*range(1, 11), 99)),
    )
    with pytest.warns(UserWarning, match=r"1 of 11 videos .* e\.g\. 10;"):  # not in this copy
        videos = load_dataset("konvid_1k", tmp_path).table
    seen: list[dict[str, list[str]]] = []

    def record(checkpoint, table, folder, config, split, workers, indices):  # noqa: ANN001
        seen.append({k: table.video_id[v].tolist() for k, v in indices.items()})
        return {"split": split, "srcc": 0.5, "plcc": 0.5, "krcc": 0.5}

    monkeypatch.setattr(finetune, "_one_split", record)
    config = FinetuneConfig(splits=2, splits_from=str(tmp_path / "KoNViD-1kinfo.mat"))
    with pytest.warns(
        UserWarning, match=r"1 of 10 videos are not in .*KoNViD-1kinfo\.mat, e\.g\. 99"
    ):
        finetune.finetune_protocol("student.safetensors", videos, tmp_path / "ft", config)
    assert seen == [
        {"fit": ["1", "2", "3", "4", "5", "6"], "val": ["7", "8"], "test": ["9"]},  # 10: missing
        {"fit": ["2", "3", "4", "5", "6", "7"], "val": ["8", "9"], "test": ["1"]},
    ]
    with pytest.raises(ValueError, match=r"3 published splits, fewer than splits=4"):
        finetune.finetune_protocol("s", videos, tmp_path / "ft", FinetuneConfig(
            splits=4, splits_from=config.splits_from))  # fmt: skip
