"""Image folders decoded and resized once: the same samples as decoding every epoch, and the
budget fallback."""
import numpy as np
import pytest
from mxnet import gluon
from PIL import Image

from utils.data import decoded
from utils.data.datasets import image_folder
from utils.pretrained.imagenet import IMAGENET_MEAN, IMAGENET_STD
from utils.data.transforms import augmentations, resize_side, transform

SIZE = 32
# (height, width): portrait, landscape, square, and one smaller than the crop
SHAPES = [(50, 70), (81, 40), (45, 45), (20, 27), (64, 90), (37, 52)]


@pytest.fixture
def folder(tmp_path):
    rng = np.random.RandomState(0)
    for i, (h, w) in enumerate(SHAPES):
        cls = ('a', 'b')[i % 2]
        (tmp_path / cls).mkdir(exist_ok=True)
        pixels = rng.randint(0, 256, size=(h, w, 3)).astype('uint8')
        suffix = '.png' if i % 3 else '.jpg'
        Image.fromarray(pixels).save(str(tmp_path / cls / ('%d%s' % (i, suffix))))
    return str(tmp_path)


def test_resized_shape_is_what_resize_short_gives(folder):
    side = resize_side(SIZE)
    plain = gluon.data.vision.ImageFolderDataset(folder)
    for i in range(len(plain)):
        img, _ = plain[i]
        expected = decoded.image.resize_short(img, side, decoded.RESIZE_INTERP).shape[:2]
        assert decoded.resized_shape(img.shape[0], img.shape[1], side) == expected
    paths = [p for p, _ in plain.items]
    assert decoded.estimated_bytes(paths, side) == sum(
        np.prod(decoded.resized_shape(h, w, side)) * 3 for h, w in SHAPES)
    assert decoded.estimated_bytes(paths) == sum(h * w * 3 for h, w in SHAPES)


def test_test_transform_gives_the_per_epoch_samples(folder):
    # per epoch, as before: decode, then the text's test_augs (resize, centre crop) on floats
    _, test_augs = augmentations(SIZE)
    per_epoch = image_folder(folder, transform=lambda X, y: transform(X, y, test_augs))
    # once: decoded and resized to uint8 in memory, then only the centre crop
    _, crop_only = augmentations(SIZE, resize=False)
    once = decoded.decode_once(image_folder(folder), resize_side(SIZE),
                               lambda X, y: transform(X, y, crop_only), budget_bytes=1 << 30,
                               print_fn=lambda *a: None)
    assert once.in_memory and once.items == per_epoch.items and once.synsets == ['a', 'b']
    # The only differences: the resized picture is rounded to whole pixel values, and clipped
    # to 0-255 where the float area resize overshoots at sharp edges (noise is full of them).
    mean = np.array(IMAGENET_MEAN).reshape((3, 1, 1))
    std = np.array(IMAGENET_STD).reshape((3, 1, 1))
    one_level = 1.0 / 255 / min(IMAGENET_STD)
    overshoots = 0
    for i in range(len(per_epoch)):
        (x0, y0), (x1, y1) = per_epoch[i], once[i]
        assert x1.shape == x0.shape == (3, SIZE, SIZE)
        assert y1 == y0
        reference = np.clip(x0.asnumpy(), -mean / std, (1 - mean) / std)
        overshoots += (reference != x0.asnumpy()).sum()
        np.testing.assert_allclose(x1.asnumpy(), reference, rtol=0, atol=one_level * 0.501)
    assert overshoots > 0  # the clipping case is exercised


def test_over_the_budget_decodes_every_time_and_says_so(folder, monkeypatch):
    lines = []
    _, crop_only = augmentations(SIZE, resize=False)
    fn = lambda X, y: transform(X, y, crop_only)  # noqa: E731
    lazy = decoded.decode_once(image_folder(folder), resize_side(SIZE), fn, budget_bytes=1000,
                               name='tiny', print_fn=lines.append)
    assert not lazy.in_memory and lazy._images is None
    assert len(lines) == 1 and lines[0].startswith('tiny: the decoded pictures would take')
    assert 'over the 0 MiB budget' in lines[0] and decoded.BUDGET_ENV in lines[0]
    kept = decoded.decode_once(image_folder(folder), resize_side(SIZE), fn,
                               budget_bytes=1 << 30, print_fn=lines.append)
    assert kept.in_memory and len(lines) == 2 and 'decoded and resized to 36 px' in lines[1]
    for i in range(len(kept)):  # both ways decode and resize alike: identical samples
        np.testing.assert_array_equal(lazy[i][0].asnumpy(), kept[i][0].asnumpy())
    # the budget from the environment, in MiB
    monkeypatch.setenv(decoded.BUDGET_ENV, '0')
    assert decoded.memory_budget() == 0
    assert not decoded.decode_once(image_folder(folder), None, print_fn=lines.append).in_memory
    monkeypatch.delenv(decoded.BUDGET_ENV)
    assert decoded.memory_budget() > 0  # a quarter of what /proc/meminfo says is available


def test_random_augmentation_still_differs_between_epochs(folder):
    train_augs, _ = augmentations(SIZE, resize=False)
    once = decoded.decode_once(image_folder(folder), resize_side(SIZE),
                               lambda X, y: transform(X, y, train_augs), budget_bytes=1 << 30,
                               print_fn=lambda *a: None)
    first = [once[i][0].asnumpy() for i in range(len(once))]
    second = [once[i][0].asnumpy() for i in range(len(once))]
    assert any(not np.array_equal(a, b) for a, b in zip(first, second))
