"""Real-data loaders on small files in each published format, made here in tmp_path."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import savemat

from admmlab.config import validate
from admmlab.data import DataError, Dataset, load_dataset
from admmlab.data.formats import read_pgm
from admmlab.data.real import DEFAULTS, PTB_FILES, REAL_DATASETS

NOAA = [
    "EQ_LATITUDE",
    "EQ_LONGITUDE",
    "CITY_LATITUDE",
    "CITY_LONGITUDE",
    "EQ_MAGNITUDE",
    "EQ_DEPTH",
    "MMI",
]


def all_rows(d: Dataset) -> torch.Tensor:
    return torch.cat([t for t in (d.x_train, d.x_val, d.x_test) if t is not None])


def assert_disjoint(d: Dataset) -> None:
    """No sample appears twice across train/validation/test (samples are distinct)."""
    rows = all_rows(d)
    assert torch.unique(rows, dim=0).shape[0] == rows.shape[0]


def assert_one_hot(y: torch.Tensor, classes: int) -> None:
    assert y.shape[1] == classes
    assert torch.equal(y.sum(dim=1), torch.ones(y.shape[0], dtype=y.dtype))


def assert_zscored_columns(x: torch.Tensor) -> None:
    varying = x.std(dim=0) > 0
    assert torch.allclose(x.mean(dim=0), torch.zeros(x.shape[1], dtype=x.dtype), atol=1e-9)
    std = x[:, varying].std(dim=0, correction=0)
    assert torch.allclose(std, torch.ones_like(std), atol=1e-9)


# ---------------------------------------------------------------- earthquake


def earthquake_rows(n: int = 60, seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        values = [
            rng.uniform(30, 45),
            rng.uniform(-120, -70),
            rng.uniform(30, 45),
            rng.uniform(-120, -70),
            rng.uniform(3, 8),
            rng.uniform(0, 40),
        ]
        rows.append([str(i), *(f"{v:.4f}" for v in values), str(1 + i % 12), f"Town {i}, CA"])
    rows.append(["60", "34.1", "-118.2", "34.0", "-118.0", "5.1", "", "7", "No depth"])
    rows.append(["61", "34.1", "-118.2", "34.0", "-118.0", "5.1", "10", "", "No intensity"])
    return rows


def write_earthquake(path: Path, delimiter: str, rows: list[list[str]] | None = None) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(["ID", *NOAA, "CITY_NAME"])
        writer.writerows(earthquake_rows() if rows is None else rows)
    return path


@pytest.mark.parametrize("delimiter", ["\t", ","])
def test_earthquake_export_loads_two_classes_with_proportional_split(tmp_path, delimiter):
    file = write_earthquake(tmp_path / "intensity.txt", delimiter)
    d = load_dataset("earthquake", seed=3, path=str(file), val_fraction=0.2)
    # 60 complete records of 62; the paper's 4173/4000 proportions: 31 train, 29 test.
    assert d.kind == "classification"
    assert (d.x_train.shape, d.x_val.shape, d.x_test.shape) == ((25, 6), (6, 6), (29, 6))
    labels = torch.cat([d.y_train, d.y_val, d.y_test]).argmax(dim=1)
    mmi = np.array([1 + i % 12 for i in range(60)])
    assert int(labels.sum()) == int((mmi > 4).sum())  # class 1: MMI 5–12
    assert_one_hot(d.y_train, 2)
    assert_zscored_columns(d.x_train)
    assert_disjoint(d)


def test_earthquake_tab_and_comma_exports_give_the_same_data(tmp_path):
    tsv = write_earthquake(tmp_path / "a.tsv", "\t")
    comma = write_earthquake(tmp_path / "a.csv", ",")
    a = load_dataset("earthquake", seed=1, path=str(tsv), val_fraction=0.2)
    b = load_dataset("earthquake", seed=1, path=str(comma), val_fraction=0.2)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)


def test_earthquake_column_names_and_sizes_are_options(tmp_path):
    file = tmp_path / "renamed.csv"
    rows = earthquake_rows()
    with file.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "lat", "lon", "clat", "clon", "mag", "depth", "intensity", "c"])
        writer.writerows(rows)
    options = {
        "features": ["lat", "lon", "clat", "clon", "mag", "depth"],
        "label": "intensity",
        "n_train": 40,
        "n_test": 10,
    }
    d = load_dataset("earthquake", seed=0, path=str(file), val_fraction=0.0, options=options)
    assert d.x_val is None
    assert (d.x_train.shape[0], d.x_test.shape[0]) == (40, 10)


def test_earthquake_malformed_row_names_file_and_line(tmp_path):
    rows = earthquake_rows()
    rows[2][6] = "deep"  # EQ_DEPTH of the fourth line (header is line 1)
    file = write_earthquake(tmp_path / "bad.tsv", "\t", rows)
    with pytest.raises(DataError) as err:
        load_dataset("earthquake", seed=0, path=str(file))
    message = str(err.value)
    assert str(file) in message and "line 4" in message and "EQ_DEPTH" in message
    assert "\n" not in message


def test_earthquake_missing_column_names_the_header(tmp_path):
    file = tmp_path / "wrong.csv"
    file.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="no column 'EQ_LATITUDE'"):
        load_dataset("earthquake", seed=0, path=str(file))


# ---------------------------------------------------------------- Extended Yale B


def write_pgm(path: Path, image: np.ndarray, plain: bool) -> None:
    height, width = image.shape
    if plain:
        body = "\n".join(" ".join(str(v) for v in row) for row in image)
        path.write_text(f"P2\n# plain\n{width} {height}\n255\n{body}\n")
    else:
        path.write_bytes(
            b"P5\n# binary\n%d %d\n255\n" % (width, height) + image.astype(np.uint8).tobytes()
        )


def write_cropped_yale(root: Path, subjects: int = 3, per_subject: int = 6) -> Path:
    rng = np.random.default_rng(0)
    folder = root / "CroppedYale"
    for s in range(subjects):
        subject = folder / f"yaleB{s + 1:02d}"
        subject.mkdir(parents=True)
        for i in range(per_subject):
            image = rng.integers(0, 256, size=(12, 10))
            write_pgm(subject / f"yaleB{s + 1:02d}_P00A+{i:03d}E+00.pgm", image, plain=i % 2 == 0)
        write_pgm(subject / f"yaleB{s + 1:02d}_P00_Ambient.pgm", np.zeros((12, 10)), plain=False)
    return folder


def test_pgm_reader_reads_binary_plain_and_16_bit(tmp_path):
    image = np.arange(12).reshape(3, 4)
    write_pgm(tmp_path / "b.pgm", image, plain=False)
    write_pgm(tmp_path / "p.pgm", image, plain=True)
    (tmp_path / "w.pgm").write_bytes(b"P5 4 3 65535\n" + (image * 1000).astype(">u2").tobytes())
    assert np.array_equal(read_pgm(tmp_path / "b.pgm"), image)
    assert np.array_equal(read_pgm(tmp_path / "p.pgm"), image)
    assert np.array_equal(read_pgm(tmp_path / "w.pgm"), image * 1000)
    (tmp_path / "x.pgm").write_bytes(b"P6 1 1 255\n\0\0\0")
    with pytest.raises(DataError, match="not a PGM"):
        read_pgm(tmp_path / "x.pgm")


def test_eyb_folder_splits_each_subject_half_and_half(tmp_path):
    write_cropped_yale(tmp_path)
    options = {"image_size": [6, 5]}
    d = load_dataset("eyb", seed=2, path=str(tmp_path), val_fraction=0.0, options=options)
    assert (d.x_train.shape, d.x_test.shape) == ((9, 30), (9, 30))  # Ambient images skipped
    assert_one_hot(d.y_test, 3)
    assert d.y_train.sum(dim=0).tolist() == [3.0, 3.0, 3.0]
    assert d.y_test.sum(dim=0).tolist() == [3.0, 3.0, 3.0]
    # Each image is z-scored on its own (the paper).
    assert torch.allclose(d.x_train.mean(dim=1), torch.zeros(9, dtype=d.x_train.dtype), atol=1e-9)
    assert torch.allclose(d.x_test.std(dim=1, correction=0), torch.ones(9, dtype=d.x_test.dtype))
    assert_disjoint(d)


def test_eyb_validation_comes_from_the_training_half(tmp_path):
    folder = write_cropped_yale(tmp_path, per_subject=10)
    d = load_dataset(
        "eyb",
        seed=0,
        path=str(folder),
        val_fraction=0.2,
        options={"image_size": 4, "normalize": "feature"},
    )
    assert (d.x_train.shape[0], d.x_val.shape[0], d.x_test.shape[0]) == (12, 3, 15)
    assert_zscored_columns(d.x_train)


def test_eyb_mat_file_with_fea_and_gnd(tmp_path):
    rng = np.random.default_rng(1)
    fea = rng.integers(0, 256, size=(12, 64)).astype(np.uint8)
    gnd = np.repeat([[5], [7], [9]], 4, axis=0)  # labels need not start at 0
    savemat(tmp_path / "YaleB_8x8.mat", {"fea": fea, "gnd": gnd})
    d = load_dataset(
        "eyb", seed=0, path=str(tmp_path / "YaleB_8x8.mat"), options={"image_size": [4, 4]}
    )
    assert (d.x_train.shape, d.x_test.shape) == ((6, 16), (6, 16))
    assert d.y_test.sum(dim=0).tolist() == [2.0, 2.0, 2.0]
    full = load_dataset(
        "eyb",
        seed=0,
        path=str(tmp_path / "YaleB_8x8.mat"),
        options={"image_size": 8, "normalize": "none"},
    )
    assert set(all_rows(full)[:, 0].tolist()) <= set(fea[:, 0].astype(float).tolist())


def test_eyb_folder_without_images_says_what_was_expected(tmp_path):
    (tmp_path / "CroppedYale" / "yaleB01").mkdir(parents=True)
    with pytest.raises(DataError, match=r"CroppedYale holds no subject folders.*UCSD"):
        load_dataset("eyb", seed=0, path=str(tmp_path))


# ---------------------------------------------------------------- PTB


def write_ptb(folder: Path, normal: int = 20, abnormal: int = 30) -> Path:
    rng = np.random.default_rng(2)
    folder.mkdir(exist_ok=True)
    for name, rows, label in zip(PTB_FILES, (normal, abnormal), (0, 1), strict=True):
        beats = np.hstack([rng.uniform(0, 1, size=(rows, 187)), np.full((rows, 1), label)])
        np.savetxt(folder / name, beats, delimiter=",", fmt="%.18e")
    return folder


def test_ptb_csvs_load_with_the_papers_proportions(tmp_path):
    folder = write_ptb(tmp_path / "ptb")
    d = load_dataset("ptb", seed=0, path=str(folder), val_fraction=0.2)
    # 50 beats in 7000:7552 proportions: 24 train (5 of them validation), 26 test.
    assert (d.x_train.shape, d.x_val.shape, d.x_test.shape) == ((19, 187), (5, 187), (26, 187))
    labels = torch.cat([d.y_train, d.y_val, d.y_test]).sum(dim=0)
    assert labels.tolist() == [20.0, 30.0]
    assert float(d.x_train.min()) >= 0 and float(d.x_train.max()) <= 1  # published scale kept
    assert_disjoint(d)


def test_ptb_path_from_the_environment_variable(tmp_path, monkeypatch, make_cfg):
    monkeypatch.setenv("ADMMLAB_PTB", str(write_ptb(tmp_path / "ptb")))
    cfg = validate(
        make_cfg("dataset=ptb", "dataset.options.n_train=10", "dataset.options.n_test=20")
    )
    d = load_dataset("ptb", seed=0, **{k: v for k, v in vars(cfg.dataset).items() if k != "name"})
    assert (d.x_train.shape[0] + d.x_val.shape[0], d.x_test.shape[0]) == (10, 20)


def test_ptb_missing_file_names_path_files_and_source(tmp_path):
    folder = write_ptb(tmp_path / "ptb")
    (folder / "ptbdb_abnormal.csv").unlink()
    with pytest.raises(DataError) as err:
        load_dataset("ptb", seed=0, path=str(folder))
    message = str(err.value)
    assert str(folder / "ptbdb_abnormal.csv") in message
    assert "ptbdb_normal.csv" in message and "Kaggle" in message and "PhysioNet" in message
    assert "\n" not in message


def test_ptb_malformed_row_names_file_and_line(tmp_path):
    folder = write_ptb(tmp_path / "ptb")
    file = folder / "ptbdb_normal.csv"
    lines = file.read_text().splitlines()
    lines[6] = lines[6].replace(",", ",oops,", 1)
    file.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"{file} line 7: expected 188 comma-separated values"):
        load_dataset("ptb", seed=0, path=str(folder))


def test_ptb_label_must_be_zero_or_one(tmp_path):
    folder = write_ptb(tmp_path / "ptb")
    file = folder / "ptbdb_abnormal.csv"
    lines = file.read_text().splitlines()
    lines[2] = lines[2].rsplit(",", 1)[0] + ",2"
    file.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"{file} line 3: the last column must be the label"):
        load_dataset("ptb", seed=0, path=str(folder))


# ---------------------------------------------------------------- shared behaviour


@pytest.mark.parametrize(
    "name, env",
    [("earthquake", "ADMMLAB_EARTHQUAKE"), ("eyb", "ADMMLAB_EYB"), ("ptb", "ADMMLAB_PTB")],
)
def test_no_path_and_no_variable_says_how_to_set_one(name, env, monkeypatch):
    monkeypatch.delenv(env, raising=False)
    with pytest.raises(DataError) as err:
        load_dataset(name, seed=0, path=None)
    assert "dataset.path=" in str(err.value) and env in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["earthquake", "eyb", "ptb"])
def test_missing_path_names_the_path_and_the_publisher(name, tmp_path):
    with pytest.raises(DataError, match=rf"{tmp_path / 'nowhere'} does not exist; {name} reads"):
        load_dataset(name, seed=0, path=str(tmp_path / "nowhere"))


def test_unknown_option_is_refused():
    with pytest.raises(DataError, match=r"dataset\.options\.test_fractoin is not an option"):
        load_dataset("digits", seed=0, options={"test_fractoin": 0.5})


def test_same_seed_same_split_other_seed_other_split(tmp_path):
    folder = write_ptb(tmp_path / "ptb")
    a, b, c = (load_dataset("ptb", seed=s, path=str(folder), val_fraction=0.2) for s in (4, 4, 5))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.x_val, b.x_val)
    assert torch.equal(a.x_test, b.x_test)
    assert not torch.equal(a.x_test, c.x_test)


@pytest.mark.parametrize("name, size, classes", [("digits", 1797, 10), ("breast_cancer", 569, 2)])
def test_bundled_sets_split_stratified(name, size, classes):
    d = load_dataset(name, seed=0, val_fraction=0.2)
    assert d.kind == "classification"
    assert d.x_train.shape[0] + d.x_val.shape[0] + d.x_test.shape[0] == size
    assert_one_hot(d.y_train, classes)
    per_class = torch.cat([d.y_train, d.y_val, d.y_test]).sum(dim=0)
    assert torch.equal(d.y_test.sum(dim=0), torch.floor(0.3 * per_class))
    assert_zscored_columns(d.x_train)
    assert_disjoint(d)


@pytest.mark.parametrize("name", REAL_DATASETS)
def test_yaml_documents_the_loaders_defaults(name, make_cfg):
    cfg = validate(make_cfg(f"dataset={name}"))
    assert cfg.dataset.name == name and cfg.dataset.val_fraction == 0.2
    assert cfg.dataset.options == DEFAULTS[name]


COMPETITORS = ["admm_sigmoid", "sgd_sigmoid", "sgd_relu", "sgdm_relu", "adam_relu"]


@pytest.mark.parametrize("competitor", COMPETITORS)
@pytest.mark.parametrize("name", REAL_DATASETS)
def test_competitor_presets_find_a_structure_for_every_real_set(name, competitor, make_cfg):
    cfg = validate(make_cfg(f"experiment={competitor}", f"dataset={name}"))
    assert cfg.model.depth >= 1 and cfg.model.width >= 1


@pytest.mark.parametrize("preset", ["real_digits_admm", "real_digits_adam"])
def test_training_on_digits_reports_validation_and_test_accuracy(preset, make_cfg):
    from admmlab.setting import run

    cfg = make_cfg(
        f"experiment={preset}", "solver.epochs=2", "model.width=20", "tracking.enabled=false"
    )
    outcome = run(cfg)
    assert outcome.objective_name == "val_acc"
    assert {"final_val_acc", "final_test_acc"} <= set(outcome.summary)
    assert 0.0 <= outcome.summary["final_test_acc"][0] <= 1.0
