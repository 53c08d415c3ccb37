"""`w2svqa evaluate --predictions`: prediction tables from other tools scored against label files
alone (no video on disk), each format written in its exact layout; exact matches, exact misses."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from scipy.stats import pearsonr, spearmanr

from experiments.cli import main
from experiments.predictions import (
    LabelIndex,
    PredictionError,
    match_predictions,
    name_parts,
    read_predictions,
)
from experiments.zero_shot import DatasetRef, load_labels

# KoNViD-1k's official KoNViD_1k_mos.csv in miniature: 6 videos, MOS 1-5; no video files anywhere.
KONVID = {"3337642103": 4.64, "10053703034": 3.44, "10067700115": 2.12,
          "10072846625": 3.9, "10095521724": 1.22, "10099037305": 2.86}  # fmt: skip
PRED = {"3337642103": 0.91, "10053703034": 0.55, "10067700115": 0.61,
        "10072846625": 0.70, "10095521724": 0.10, "10099037305": 0.40}  # fmt: skip


@pytest.fixture
def konvid(tmp_path: Path) -> Path:
    root = tmp_path / "KoNViD_1k"
    root.mkdir()
    lines = ["flickr_id,mos", *(f"{k},{v}" for k, v in KONVID.items())]
    (root / "KoNViD_1k_mos.csv").write_text("\n".join(lines) + "\n")
    return root


def _evaluate(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "eval"
    main(["evaluate", *args, "--output_dir", str(out), "--no_mlflow"])
    return json.loads((out / "results.json").read_text())


def _row(results: dict, model: str, dataset: str) -> dict:
    return next(r for r in results["rows"] if r["model"] == model and r["set"] == dataset)


def test_our_score_csv_against_konvid_labels_without_videos(konvid, tmp_path, capsys) -> None:
    # `w2svqa score --output`'s layout: absolute paths of the machine that scored, a failed row
    ids = list(PRED)
    lines = ["path,score,error"]
    lines += [f"/scratch/konvid/KoNViD_1k_videos/{k}.mp4,{PRED[k]}," for k in ids[:5]]
    lines += [f"/scratch/konvid/KoNViD_1k_videos/{ids[5]}.mp4,,cannot decode: moov atom"]
    lines += ["/scratch/konvid/extra/not_in_konvid.mp4,0.5,"]
    scores = tmp_path / "ours.csv"
    scores.write_text("\n".join(lines) + "\n")
    results = _evaluate(tmp_path, "--predictions", str(scores), "--dataset", "konvid_1k",
                        "--root", str(konvid))  # fmt: skip
    row = _row(results, "predictions:ours", "konvid_1k")
    assert row["n"] == 5
    assert row["srcc"] == pytest.approx(
        spearmanr([PRED[k] for k in ids[:5]], [KONVID[k] for k in ids[:5]]).statistic
    )
    matching = results["matching"]["predictions:ours"]
    assert matching["rows"] == 7 and matching["matched"] == {"konvid_1k": 5}
    assert matching["unmatched"] == [
        "line 8 (/scratch/konvid/extra/not_in_konvid.mp4): no labelled video of that name"
    ]
    assert matching["skipped"] == [
        f"line 7 (/scratch/konvid/KoNViD_1k_videos/{ids[5]}.mp4): no score "
        "(error: cannot decode: moov atom)"
    ]
    assert matching["without_prediction"] == {"konvid_1k": [f"konvid_1k/{ids[5]}"]}
    out = capsys.readouterr().out
    assert "konvid_1k: 6 labelled videos" in out and "5 of 6 labelled videos matched" in out
    assert "1 rows match no labelled video" in out and "not_in_konvid.mp4" in out
    assert "| predictions:ours (file) |" in out
    assert "| W2S student stage 3 (published) | 0.902 / 0.901 |" in out  # its KoNViD-1k row


def test_dover_csv_and_its_other_columns(konvid, tmp_path) -> None:
    # DOVER's evaluate_a_set_of_videos.py output: relative paths as given, spaces after commas
    lines = ["path, aesthetic score, technical score, overall/final score"]
    lines += [f"./KoNViD_1k_videos/{k}.mp4, 0.1, {1 - v}, {v}" for k, v in PRED.items()]
    dover = tmp_path / "dover_konvid.csv"
    dover.write_text("\n".join(lines) + "\n")
    table = read_predictions(dover)
    assert table.score_column == "overall/final score" and len(table.rows) == 6
    results = _evaluate(tmp_path, "--predictions", str(dover), "--dataset", "konvid_1k",
                        "--root", str(konvid), "--predictions", str(dover), "--score_column",
                        "technical score")  # fmt: skip
    expected = spearmanr(list(PRED.values()), list(KONVID.values())).statistic
    assert _row(results, "predictions:dover_konvid", "konvid_1k")["srcc"] == pytest.approx(expected)
    assert len([r for r in results["rows"] if r["set"] == "konvid_1k"]) == 2
    technical = [r for r in results["rows"] if r["set"] == "konvid_1k"][1]
    assert technical["srcc"] == pytest.approx(-expected)  # 1 - v: the order reversed


@pytest.mark.parametrize("layout", ["parquet", "headerless", "labels_txt", "tsv"])
def test_name_score_tables(layout: str, konvid: Path, tmp_path: Path) -> None:
    names = [f"{k}" if i % 2 else f"{k}.MP4" for i, k in enumerate(PRED)]  # with and without ext
    file = tmp_path / f"pred.{'parquet' if layout == 'parquet' else 'csv'}"
    if layout == "parquet":
        pd.DataFrame({"name": names, "score": list(PRED.values())}).to_parquet(file)
    elif layout == "headerless":
        file.write_text("".join(f"{n},{v}\n" for n, v in zip(names, PRED.values(), strict=True)))
    elif layout == "labels_txt":
        file.write_text("".join(f"{n}, 0, 0, {v}\n" for n, v in zip(names, PRED.values(),
                                                                     strict=True)))  # fmt: skip
    else:
        lines = ["video\tpredicted_mos", *(f"{n}\t{v}" for n, v in zip(names, PRED.values(),
                                                                      strict=True))]  # fmt: skip
        file.write_text("\n".join(lines) + "\n")
    sets = load_labels([DatasetRef("konvid_1k", str(konvid))])
    match = match_predictions(read_predictions(file), sets)
    assert match.matched == {"konvid_1k": 6} and not match.unmatched and not match.repeated
    got = match.scores.set_index("video_id").score
    assert got.to_dict() == {f"konvid_1k/{k}": v for k, v in PRED.items()}


def test_our_own_prediction_csv_reproduces_its_table(konvid, tmp_path) -> None:
    scores = tmp_path / "first.csv"
    scores.write_text("name,score\n" + "".join(f"{k},{v}\n" for k, v in PRED.items()))
    first = _evaluate(tmp_path, "--predictions", str(scores), "--dataset", "konvid_1k",
                      "--root", str(konvid))  # fmt: skip
    written = tmp_path / "eval" / "predictions" / "predictions_first__konvid_1k.csv"
    assert list(pd.read_csv(written).columns) == ["video_id", "path", "mos", "prediction"]
    again = written.rename(tmp_path / "again.csv")
    second = _evaluate(tmp_path, "--predictions", str(again), "--dataset", "konvid_1k",
                       "--root", str(konvid))  # fmt: skip
    a, b = _row(first, "predictions:first", "konvid_1k"), _row(second, "predictions:again",
                                                                 "konvid_1k")  # fmt: skip
    assert a["n"] == b["n"] == 6
    for metric in ("srcc", "plcc", "krcc", "rmse"):
        assert a[metric] == pytest.approx(b[metric])
    assert a["plcc"] == pytest.approx(pearsonr(list(PRED.values()), list(KONVID.values()))[0])


def test_lsvq_names_folders_and_inner_extensions(tmp_path: Path) -> None:
    root = tmp_path / "LSVQ"
    root.mkdir()
    names = ["yfcc-batch1/747", "ia-batch2/747", "ia-batch2/Some_Name.mov", "yfcc-batch3/12"]
    rows = [f"{n},{40 + 10 * i}" for i, n in enumerate(names)]
    (root / "LSVQ_whole_test.csv").write_text("name,mos\n" + "\n".join(rows) + "\n")
    preds = tmp_path / "lsvq.csv"
    preds.write_text(
        "path,score\n"
        "/data/LSVQ/yfcc-batch1/747.mp4,1.0\n"  # the batch folder decides between the two 747s
        "/data/LSVQ/ia-batch2/747.mp4,2.0\n"
        "747.mp4,9.0\n"  # no folder: ambiguous
        "ia-batch2/Some_Name.mov.mp4,3.0\n"  # the file on disk carries the inner extension
        "/data/LSVQ/yfcc-batch1/747.mp4,1.5\n"  # again
    )
    sets = load_labels([DatasetRef("lsvq_test", str(root))])
    match = match_predictions(read_predictions(preds), sets)
    assert match.scores.set_index("video_id").score.to_dict() == {
        "lsvq_test/yfcc-batch1/747": 1.0, "lsvq_test/ia-batch2/747": 2.0,
        "lsvq_test/ia-batch2/Some_Name.mov": 3.0,
    }  # fmt: skip
    assert match.unmatched == ["line 4 (747.mp4): ambiguous: fits 2 labelled videos"]
    assert match.repeated == [
        "line 6 (/data/LSVQ/yfcc-batch1/747.mp4): lsvq_test/yfcc-batch1/747 again (first at "
        "line 2); left out"
    ]
    assert match.without == {"lsvq_test": ["lsvq_test/yfcc-batch3/12"]}


def test_youtube_ugc_transcode_names_and_two_sets_in_one_table(konvid, tmp_path) -> None:
    ugc = tmp_path / "ugc"
    ugc.mkdir()
    (ugc / "original_videos_MOS_for_YouTube_UGC_dataset.csv").write_text(
        "vid,category,resolution,MOSFull\nGaming_720P-25aa,Gaming,720,3.1\n"
        "Vlog_1080P-1e70,Vlog,1080,4.2\nSports_360P-2ace,Sports,360,2.0\n"
    )
    preds = tmp_path / "both.csv"
    lines = ["path,score", "h264/Gaming_720P-25aa_crf_10_ss_00_t_20.0.mp4,0.3",
             "orig/Vlog_1080P-1e70.mkv,0.8", "orig/Sports_360P-2ace.mkv,0.1",
             *(f"konvid/{k}.mp4,{v}" for k, v in PRED.items()), "other/clip.mp4,0.2"]  # fmt: skip
    preds.write_text("\n".join(lines) + "\n")
    sets = ["--dataset", "konvid_1k", "--root", str(konvid), "--dataset", "youtube_ugc",
            "--root", str(ugc)]  # fmt: skip
    results = _evaluate(tmp_path, "--predictions", str(preds), *sets)
    matching = results["matching"]["predictions:both"]
    assert matching["matched"] == {"konvid_1k": 6, "youtube_ugc": 3}
    assert matching["unmatched"] == ["line 11 (other/clip.mp4): no labelled video of that name"]
    assert _row(results, "predictions:both", "youtube_ugc")["srcc"] == pytest.approx(1.0, abs=1e-5)
    assert _row(results, "predictions:both", "overall")["n"] == 9


def test_name_parts_and_index() -> None:
    assert name_parts(r"C:\data\LSVQ\ia-batch2\Some_Name.mov.mp4") == (
        "c:", "data", "lsvq", "ia-batch2", "some_name",
    )  # fmt: skip
    assert name_parts("./a/x_crf_10_ss_00_t_20.0") == ("a", "x_crf_10_ss_00_t_20.0")
    index = LabelIndex([("a/1", "a/1.mp4"), ("b/1",), ("c/2",)])
    assert index.find("/x/a/1.mp4") == (0, None)
    assert index.find("2.webm") == (2, None)
    assert index.find("1.mp4") == (None, "ambiguous: fits 2 labelled videos")
    assert index.find("3") == (None, "no labelled video of that name")


def test_unreadable_tables_and_misuse_fail_naming_why(konvid, tmp_path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("path,mos,technical\na.mp4,3.0,0.5\n")
    with pytest.raises(PredictionError, match="no score column .*columns: path, mos, technical"):
        read_predictions(bad)
    three = tmp_path / "three.csv"
    three.write_text("a.mp4,1,2\n")
    with pytest.raises(PredictionError, match="no header row and 3 fields"):
        read_predictions(three)
    with pytest.raises(SystemExit, match="no column 'overall'"):
        main(["evaluate", "--predictions", str(bad), "--score_column", "overall", "--dataset",
              "konvid_1k", "--root", str(konvid), "--no_mlflow"])  # fmt: skip
    with pytest.raises(SystemExit, match="--predictions goes without"):
        main(["evaluate", "--predictions", str(bad), "--teacher", "blur", "--dataset",
              "konvid_1k", "--root", str(konvid)])  # fmt: skip
    with pytest.raises(SystemExit, match="--score_column belongs after a --predictions"):
        main(["evaluate", "--score_column", "x", "--predictions", str(bad)])


def test_a_calibrated_score_csv_is_read_raw_unless_told(tmp_path: Path) -> None:
    # `w2svqa score` of a calibrated student: the raw score and the MOS on a named scale
    file = tmp_path / "calibrated.csv"
    file.write_text("path,score,mos,scale,percentile,error\na.mp4,-1.5,61.2,VMAF 0-100,40.0,\n"
                    "b.mp4,0.25,80.5,VMAF 0-100,90.0,\n")  # fmt: skip
    raw, mos = read_predictions(file), read_predictions(file, score_column="mos")
    assert raw.score_column == "score" and raw.rows.score.tolist() == [-1.5, 0.25]
    assert mos.rows.score.tolist() == [61.2, 80.5]
    assert raw.rows.names.tolist() == [("a.mp4",), ("b.mp4",)]


def test_help_names_the_predictions_options(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--predictions FILE [--score_column C]" in out and "{name:, args:}" in out
