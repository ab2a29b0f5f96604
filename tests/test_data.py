"""Datasets: SyntheticShapes is deterministic and well-formed; real data loads or fails clearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tnt_rest_lite.core.normalization import denormalize
from tnt_rest_lite.data.datasets import build_dataset, num_classes
from tnt_rest_lite.data.synthetic import DIFFICULTIES, SHAPES, TEXTURES, SyntheticShapes
from tnt_rest_lite.profiles import PROFILES


def test_synthetic_sample_fields():
    data = SyntheticShapes(8, 32, seed=3)
    sample = data[0]
    assert sample["image"].shape == (3, 32, 32) and sample["image"].dtype == torch.float32
    assert sample["mask"].shape == (32, 32) and sample["mask"].dtype == torch.bool
    assert 0 <= sample["label"] < len(SHAPES) * len(TEXTURES) == num_classes(data) >= 20
    # the box is the tight box of the visible mask
    ys, xs = torch.nonzero(sample["mask"], as_tuple=True)
    assert sample["box"].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    shown = denormalize(sample["image"], data.mean, data.std)
    assert shown.min() >= 0 and shown.max() <= 1


def test_synthetic_is_deterministic_per_index():
    a, b = SyntheticShapes(50, 32, seed=7), SyntheticShapes(50, 32, seed=7)
    # index 37 of b is generated without generating 0..36 first
    assert np.array_equal(a.generate(37)["image"], b.raw(37)["image"])
    assert torch.equal(a[37]["image"], b[37]["image"]) and torch.equal(a[37]["mask"], b[37]["mask"])
    assert not np.array_equal(a.raw(1)["image"], SyntheticShapes(50, 32, seed=8).raw(1)["image"])
    assert not np.array_equal(a.raw(1)["image"], SyntheticShapes(50, 32, split="val", seed=7).raw(1)["image"])


def test_materialize_fills_the_cache():
    data = SyntheticShapes(12, 32, seed=2)
    assert data.materialize() is data and sorted(data._cache) == list(range(12))
    assert np.array_equal(data.raw(5)["image"], SyntheticShapes(12, 32, seed=2).generate(5)["image"])


# sha256 (first 16 hex digits) of the uint8 image, label and box of three samples, recorded from the
# generator as it was before the difficulty knob existed (commit d140d21): "standard" must not drift
_STANDARD_BEFORE_THE_KNOB = {
    (0, "train", 0): ("ed5183f8125e46f7", 9, [10.0, 2.0, 29.0, 23.0]),
    (0, "train", 1): ("ed9073a2c2044d84", 15, [14.0, 2.0, 32.0, 23.0]),
    (7, "val", 5): ("2749ffaea2a6dcce", 16, [12.0, 0.0, 32.0, 20.0]),
}


def test_standard_difficulty_is_the_original_generator():
    import hashlib

    for (seed, split, index), (digest, label, box) in _STANDARD_BEFORE_THE_KNOB.items():
        for data in (
            SyntheticShapes(10, 32, split=split, seed=seed),
            SyntheticShapes(10, 32, split=split, seed=seed, difficulty="standard"),
        ):
            sample = data.generate(index)
            assert hashlib.sha256(sample["image"].tobytes()).hexdigest()[:16] == digest
            assert int(sample["label"]) == label and sample["box"].tolist() == box


@pytest.mark.parametrize("difficulty", sorted(DIFFICULTIES))
def test_every_difficulty_is_deterministic_and_keeps_the_classes(difficulty):
    a = SyntheticShapes(30, 32, seed=4, difficulty=difficulty)
    b = SyntheticShapes(30, 32, seed=4, difficulty=difficulty)
    assert np.array_equal(a.generate(17)["image"], b.raw(17)["image"])  # per index, without the others
    assert a.classes == b.classes and num_classes(a) == len(SHAPES) * len(TEXTURES)
    assert not np.array_equal(a.raw(3)["image"], SyntheticShapes(30, 32, seed=5, difficulty=difficulty).raw(3)["image"])
    labels = {int(a.raw(i)["label"]) for i in range(30)}
    assert len(labels) > 10  # many classes drawn, not one per level
    assert f"difficulty='{difficulty}'" in repr(a)


def test_easy_differs_from_standard_as_documented():
    easy, standard = SyntheticShapes(200, 32, seed=0, difficulty="easy"), SyntheticShapes(200, 32, seed=0)
    assert easy.distractors == 1 and easy.occlusion == 0.0 and standard.distractors == 3
    differ = 0
    easy_area, standard_area = [], []
    for index in range(200):
        e, s = easy.raw(index), standard.raw(index)
        differ += not np.array_equal(e["image"], s["image"])
        assert len(e["all_labels"]) <= 2  # the object and at most one distractor
        easy_area.append(e["mask"].sum())
        standard_area.append(s["mask"].sum())
    assert differ == 200
    # larger objects and no occlusion: more visible object pixels on average
    assert np.mean(easy_area) > 1.3 * np.mean(standard_area)


def test_unknown_difficulty_lists_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown difficulty 'medium'.*easy, standard, hard"):
        SyntheticShapes(4, 32, difficulty="medium")
    with pytest.raises(ValueError, match="Unknown difficulty"):
        build_dataset("synthetic", "train", 32, num_samples=4, difficulty="trivial")


def test_profiles_choose_a_valid_difficulty_and_build_dataset_passes_it():
    assert PROFILES["ci"].data_difficulty == PROFILES["cpu"].data_difficulty == "easy"
    assert PROFILES["full"].data_difficulty == "standard"
    for profile in PROFILES.values():
        assert profile.data_difficulty in DIFFICULTIES
    data = build_dataset("synthetic", "val", 32, num_samples=5, difficulty="hard")
    assert data.difficulty == "hard" and data.split == "val"


def test_synthetic_classes_are_balanced_and_all_used():
    labels = [SyntheticShapes(600, 32, seed=0).raw(i)["label"] for i in range(600)]
    counts = np.bincount(labels, minlength=20)
    assert (counts > 0).all() and counts.max() < 3 * counts.min()


def test_detection_view():
    data = SyntheticShapes(20, 48, seed=1)
    view = data.detection_view()
    for index in range(20):
        image, target = view[index]
        assert image.shape == (3, 48, 48) and 0 <= image.min() and image.max() <= 1
        boxes, labels = target["boxes"], target["labels"]
        assert boxes.shape == (len(labels), 4) and labels.dtype == torch.int64
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        # the classified object is the last one, and its label is shifted by 1 (0 = background)
        assert labels[-1].item() == data[index]["label"] + 1
        assert boxes[-1].tolist() == data[index]["box"].tolist()
    images, targets = view.collate([view[0], view[1]])
    assert len(images) == len(targets) == 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="split must be one of"):
        SyntheticShapes(4, 32, split="holdout")
    with pytest.raises(ValueError, match="at least 24"):
        SyntheticShapes(4, 16)
    with pytest.raises(ValueError, match="Unknown dataset 'mnist'.*imagefolder"):
        build_dataset("mnist", "train", 32)
    with pytest.raises(ValueError, match="num_samples"):
        build_dataset("synthetic", "train", 32)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_missing_cifar_is_a_clear_error(name, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"not on disk.*download=True"):
        build_dataset(name, "train", 32, root=tmp_path)


def test_missing_image_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train.*imagenette"):
        build_dataset(f"imagefolder:{tmp_path}", "train", 32)


def test_image_folder_tree_loads(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("cat", "dog", "fish"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(2):
                pixels = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    train = build_dataset(f"imagefolder:{tmp_path}", "train", 32)
    val = build_dataset(f"imagefolder:{tmp_path}", "val", 32)
    test = build_dataset(f"imagefolder:{tmp_path}", "test", 32)
    # val is a tenth of train/ (here 1 of 6 images), test the published val/ folder
    assert (len(train), len(val), len(test)) == (5, 1, 6) and train.classes == ["cat", "dog", "fish"]
    image, label = test[5]
    assert image.shape == (3, 32, 32) and label == 2
    subset = build_dataset(f"imagefolder:{tmp_path}", "test", 32, num_samples=4)
    assert len(subset) == 4 and num_classes(subset) == 3


def test_fake_cifar10_loads(tmp_path, monkeypatch):
    # torchvision's on-disk format: pickled dicts of uint8 rows under the real file names; the
    # files are checked by md5, so the expected checksums become those of our small fakes
    import hashlib
    import pickle

    from torchvision.datasets import CIFAR10

    folder = tmp_path / CIFAR10.base_folder
    folder.mkdir()
    rng = np.random.default_rng(0)

    def write(name: str, content: dict) -> list[str]:
        data = pickle.dumps(content)
        (folder / name).write_bytes(data)
        return [name, hashlib.md5(data).hexdigest()]

    batch = lambda: {"data": rng.integers(0, 256, (5, 3072), dtype=np.uint8), "labels": list(range(5))}
    monkeypatch.setattr(CIFAR10, "train_list", [write(name, batch()) for name, _ in CIFAR10.train_list])
    monkeypatch.setattr(CIFAR10, "test_list", [write(name, batch()) for name, _ in CIFAR10.test_list])
    name, md5 = write(CIFAR10.meta["filename"], {"label_names": [f"class{i}" for i in range(10)]})
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5})

    train = build_dataset("cifar10", "train", 32, root=tmp_path)
    val = build_dataset("cifar10", "val", 32, root=tmp_path)
    test = build_dataset("cifar10", "test", 32, root=tmp_path)
    # val: a tenth of CIFAR's 25 (fake) training images, disjoint from train; test: CIFAR's test set
    assert (len(train), len(val), len(test)) == (23, 2, 5) and num_classes(train) == 10
    assert not set(train.indices) & set(val.indices)
    image, label = test[3]
    assert image.shape == (3, 32, 32) and label == 3


def test_materialize_in_processes_draws_the_same_samples():
    # the full profile's splits are drawn in worker processes: they must be the samples one process draws
    serial = SyntheticShapes(160, 32, split="train", seed=3).materialize()
    parallel = SyntheticShapes(160, 32, split="train", seed=3).materialize(workers=2)
    assert len(parallel._cache) == 160
    for i in range(160):
        a, b = serial.raw(i), parallel.raw(i)
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=f"sample {i}, {key}")
