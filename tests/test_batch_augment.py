"""The numpy crop and the per-batch normalisation (utils.data.transforms) against gluon's own
transforms, picture by picture."""
import random

import numpy as np
import pytest
from mxnet import gluon, image, nd
from mxnet.gluon.data.dataloader import default_batchify_fn
from mxnet.gluon.data.vision import transforms

from utils.data import decoded
from utils.data.datasets import image_folder
from utils.pretrained.imagenet import IMAGENET_MEAN, IMAGENET_STD
from utils.data.transforms import CroppedBatches, RandomResizedCropFlip, normalised_batch


def pictures(count=6, seed=0):
    rng = np.random.RandomState(seed)
    return [rng.randint(0, 256, size=(rng.randint(20, 90), rng.randint(20, 90), 3))
            .astype('uint8') for _ in range(count)]


def test_regions_lie_inside_the_picture_within_the_area_and_aspect_ranges():
    crop = RandomResizedCropFlip(16, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
    random.seed(0)
    for height, width in [(50, 70), (81, 40), (20, 20), (300, 17)]:
        for _ in range(200):
            top, left, h, w = crop.region(height, width)
            assert 0 <= top and top + h <= height and 0 <= left and left + w <= width
            if (h, w) != (min(height, width),) * 2:  # not the fallback
                # rounding each side to whole pixels moves area and aspect a little
                assert 0.08 * 0.8 <= h * w / (height * width) <= 1.0
                assert 3 / 4 * 0.8 <= w / h <= 4 / 3 * 1.25


def test_impossible_ranges_fall_back_to_the_centred_square():
    crop = RandomResizedCropFlip(16, scale=(2.0, 3.0))
    assert crop.region(50, 70) == (0, 10, 50, 50)
    assert crop.region(81, 40) == (20, 0, 40, 40)


@pytest.mark.parametrize('flip', [False, True])
def test_a_crop_is_gluons_fixed_crop_of_the_same_region(monkeypatch, flip):
    crop = RandomResizedCropFlip(24)
    monkeypatch.setattr(crop, 'region', lambda h, w: (3, 5, h - 7, w - 9))
    monkeypatch.setattr(random, 'random', lambda: 0.0 if flip else 0.9)
    for picture in pictures():
        mine = crop(nd.array(picture, dtype='uint8'))
        h, w = picture.shape[:2]
        theirs = image.fixed_crop(nd.array(picture, dtype='uint8'), 5, 3, w - 9, h - 7,
                                  (24, 24), 1).asnumpy()
        if flip:
            theirs = theirs[:, ::-1]
        assert mine.dtype == np.uint8 and mine.shape == (24, 24, 3)
        np.testing.assert_array_equal(mine, theirs)


def test_same_seed_same_crops():
    crop = RandomResizedCropFlip(16)
    runs = []
    for _ in range(2):
        random.seed(7)
        runs.append([crop(p) for p in pictures()])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_the_batch_is_totensor_and_normalize_of_each_picture():
    samples = [(p[:16, :16], i % 2) for i, p in enumerate(pictures())]
    batch, labels = normalised_batch(samples)
    per_picture = transforms.Compose([transforms.ToTensor(),
                                      transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    expected = nd.stack(*[per_picture(nd.array(p, dtype='uint8')) for p, _ in samples])
    assert batch.shape == (6, 3, 16, 16) and batch.dtype == np.float32
    np.testing.assert_allclose(batch.asnumpy(), expected.asnumpy(), atol=1e-6)
    assert labels.asnumpy().tolist() == [0, 1, 0, 1, 0, 1]


def test_a_loader_of_numpy_pictures_gives_normalised_batches(tmp_path):
    from PIL import Image
    for i, p in enumerate(pictures()):
        (tmp_path / 'ab'[i % 2]).mkdir(exist_ok=True)
        Image.fromarray(p).save(str(tmp_path / 'ab'[i % 2] / ('%d.png' % i)))
    folder = image_folder(str(tmp_path))
    as_arrays = decoded.decode_once(folder, print_fn=lambda *a: None, as_numpy=True)
    as_nd = decoded.decode_once(folder, print_fn=lambda *a: None)
    for i in range(len(folder)):
        assert isinstance(as_arrays[i][0], np.ndarray)
        np.testing.assert_array_equal(as_arrays[i][0], as_nd[i][0].asnumpy())
    loader = gluon.data.DataLoader(as_arrays.transform_first(RandomResizedCropFlip(16)), 4,
                                   batchify_fn=normalised_batch)
    shapes = [x.shape for x, _ in loader]
    assert shapes == [(4, 3, 16, 16), (2, 3, 16, 16)]


def test_the_batch_owns_its_memory_and_labels_keep_the_default_dtype():
    samples = [(p[:16, :16].copy(), i % 2) for i, p in enumerate(pictures())]
    batch, labels = normalised_batch(samples)
    before = batch.asnumpy()
    for picture, _ in samples:  # the pictures a dataset keeps in memory are not the batch's
        picture[:] = 0
    np.testing.assert_array_equal(batch.asnumpy(), before)
    default = default_batchify_fn([label for _, label in samples])
    assert labels.dtype == default.dtype and labels.shape == default.shape
    assert labels.asnumpy().tolist() == default.asnumpy().tolist()


def test_cropped_batches_equal_cropping_each_picture_then_batching():
    samples = [(p, i % 2) for i, p in enumerate(pictures())]
    crop = RandomResizedCropFlip(24)
    random.seed(3)
    expected, expected_labels = normalised_batch([(crop(p), y) for p, y in samples])
    random.seed(3)
    batch, labels = CroppedBatches(crop)(samples)
    assert batch.shape == (6, 3, 24, 24)
    np.testing.assert_array_equal(batch.asnumpy(), expected.asnumpy())
    assert labels.asnumpy().tolist() == expected_labels.asnumpy().tolist()
