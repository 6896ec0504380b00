"""Tests for saunet.training.pipeline: scaling equal to the runtime's, joint image/mask augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import saunet.training  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
from saunet.runtime.preprocess import Preprocessing, resize_image, to_input
from saunet.training.dataset import find_cases, load_cases, stack
from saunet.training.pipeline import Augmentation, augment, make_dataset, random_contrast, sample_tumour_slices

STRONG = Augmentation(rotation=30, shift=0.2, shear=10, zoom=0.2, flip=True)
NONE = Augmentation(rotation=0, shift=0, shear=0, zoom=0, flip=False)
FLIP = Augmentation(rotation=0, shift=0, shear=0, zoom=0, flip=True)


def collect(data: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    images, masks = zip(*[(x.numpy(), y.numpy()) for x, y in data])
    return np.concatenate(images), np.concatenate(masks)


def rectangles(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks of one to three random rectangles; images whose channel 0 is mask*255, the rest noise."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), np.uint8)
    for k in range(n):
        for _ in range(rng.integers(1, 4)):
            y, x = rng.integers(2, size // 2, 2)
            h, w = rng.integers(size // 6, size // 2, 2)
            masks[k, y : y + h, x : x + w] = 1
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    images[..., 0] = masks * 255
    return images, masks


@pytest.fixture(scope="module")
def real(real_slices: Path) -> tuple[np.ndarray, np.ndarray]:
    return stack(load_cases(find_cases(real_slices), 256))


@pytest.mark.parametrize("size, scale", [(256, 1 / 255), (64, 1 / 255), (64, 1 / 127.5)])
def test_no_augmentation_equals_runtime_to_input_bit_for_bit(real, size: int, scale: float) -> None:
    images, masks = real
    images = np.stack([resize_image(i, size) for i in images])
    masks = masks[:, :size, :size]
    spec = Preprocessing(input_size=size, scale=scale)
    got_images, got_masks = collect(make_dataset(images, masks, batch_size=4, spec=spec))
    expected = np.stack([to_input(image, spec) for image in images])
    assert got_images.dtype == np.float32 and expected.dtype == np.float32
    assert got_images.shape == (9, size, size, 3)
    assert np.array_equal(got_images, expected)
    assert got_masks.dtype == np.float32 and got_masks.shape == (9, size, size, 1)
    assert set(np.unique(got_masks)) <= {0.0, 1.0}
    assert np.array_equal(got_masks[..., 0], masks.astype(np.float32))


def test_batches_and_shuffle_keep_image_and_mask_together() -> None:
    n, size = 10, 8
    images = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None, None] * 20, size * size * 3).reshape(
        n, size, size, 3
    )
    masks = np.zeros((n, size, size), np.uint8)
    for k in range(n):
        masks[k].flat[:k] = 1  # mask k has k ones
    spec = Preprocessing(input_size=size)
    data = make_dataset(images, masks, batch_size=4, spec=spec, shuffle=True, seed=1)
    assert [x.shape[0] for x, _ in data] == [4, 4, 2]
    got_images, got_masks = collect(data)
    ids = np.rint(got_images[:, 0, 0, 0] * 255 / 20).astype(int)
    assert sorted(ids) == list(range(n))
    assert [int(m.sum()) for m in got_masks] == list(ids)


def test_epochs_keep_their_order_without_tf_data_autotuning() -> None:
    """Autotuning off (its thread held every epoch's end up to a minute); the shuffle stays seeded."""
    n, size = 12, 4
    images = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None, None] * 20, size * size * 3).reshape(
        n, size, size, 3
    )
    masks = np.zeros((n, size, size), np.uint8)
    spec = Preprocessing(input_size=size)
    data = make_dataset(images, masks, batch_size=4, spec=spec, shuffle=True, seed=3)
    assert data.options().autotune.enabled is False
    again = make_dataset(images, masks, batch_size=4, spec=spec, shuffle=True, seed=3)
    first, second = collect(data)[0], collect(again)[0]
    np.testing.assert_array_equal(first, second)


def numbered_slices(n: int, tumour: int, size: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Slice k's pixels all equal k; the first `tumour` slices have one mask pixel, the rest none."""
    images = np.repeat(np.arange(n, dtype=np.uint8), size * size * 3).reshape(n, size, size, 3)
    masks = np.zeros((n, size, size), np.uint8)
    masks[:tumour, 0, 0] = 1
    return images, masks


def test_tumour_share_sets_the_share_of_tumour_slices_and_keeps_epoch_length() -> None:
    n, tumour = 200, 20
    images, masks = numbered_slices(n, tumour)
    data = make_dataset(
        images, masks, batch_size=16, spec=Preprocessing(input_size=4), shuffle=True, seed=3, tumour_share=0.5
    )
    epochs = [collect(data) for _ in range(10)]
    ids = [np.rint(x[:, 0, 0, 0] * 255).astype(int) for x, _ in epochs]
    assert all(len(i) == n for i in ids), "an epoch should keep the data's number of slices"
    for (_, got_masks), got_ids in zip(epochs, ids):
        assert np.array_equal(got_masks[:, 0, 0, 0] == 1, got_ids < tumour), "image and mask came apart"
    share = np.mean(np.concatenate(ids) < tumour)
    assert 0.45 < share < 0.55, f"tumour slices drawn {share:.3f} of the time, asked 0.5 (data: 0.1)"
    assert len(set(np.concatenate(ids)[np.concatenate(ids) < tumour])) == tumour, "every tumour slice should be drawn"
    assert not np.array_equal(ids[0], ids[1]), "each epoch should draw anew"


@pytest.mark.parametrize(
    "share, tumour, message",
    [
        (0.0, 5, "between 0 and 1"),
        (1.0, 5, "between 0 and 1"),
        (0.5, 0, "no tumour slice"),
        (0.5, 10, "no empty slice"),
    ],
)
def test_tumour_share_refuses_what_it_cannot_draw(share: float, tumour: int, message: str) -> None:
    images, masks = numbered_slices(10, tumour)
    with pytest.raises(ValueError, match=message):
        sample_tumour_slices(images, masks, share, seed=0)


def test_strong_augmentation_keeps_masks_binary_and_moves_image_and_mask_together() -> None:
    tf.random.set_seed(1234)
    images, masks = rectangles(24, 32, seed=5)
    spec = Preprocessing(input_size=32)
    got_images, got_masks = collect(make_dataset(images, masks, batch_size=8, spec=spec, augmentation=STRONG))
    assert got_images.shape == (24, 32, 32, 3) and got_masks.shape == (24, 32, 32, 1)
    assert set(np.unique(got_masks)) <= {0.0, 1.0}
    assert got_images.min() >= 0.0 and got_images.max() <= 1.0 + 1e-6
    # the same geometry: the thresholded image channel that carried the mask is the augmented mask
    agreement = np.mean((got_images[..., 0] > 0.5) == (got_masks[..., 0] > 0.5))
    assert agreement >= 0.98, agreement
    # ... and augmentation really did move things, in almost every sample
    changed = [not np.array_equal(got_masks[k, ..., 0], masks[k]) for k in range(len(masks))]
    assert sum(changed) >= 22, changed
    assert np.mean(got_masks[..., 0] != masks) > 0.05


def test_soft_masks_move_with_their_images_and_stay_shares() -> None:
    """Area targets are warped bilinearly: values stay in [0, 1], shares between 0 and 1 remain
    (nearest would make them 0/1 or drop them), and the tumour stays where the image shows it."""
    tf.random.set_seed(3)
    images, masks = rectangles(16, 32, seed=4)
    soft = masks.astype(np.float16) * np.float16(0.75)
    got_x, got_y = collect(
        make_dataset(images, soft, batch_size=8, spec=Preprocessing(input_size=32), augmentation=STRONG)
    )
    assert got_y.min() >= 0.0 and got_y.max() <= 0.75 + 1e-6
    assert ((got_y > 0.01) & (got_y < 0.74)).mean() > 0.005, "edges resampled bilinearly"
    assert np.mean((got_x[..., 0] > 0.5) == (got_y[..., 0] > 0.375)) >= 0.98
    plain_x, plain_y = collect(make_dataset(images, soft, batch_size=8, spec=Preprocessing(input_size=32)))
    assert np.array_equal(plain_y[..., 0], soft.astype(np.float32)), "without augmentation, the shares as given"


def test_augment_on_a_batch_of_tensors() -> None:
    tf.random.set_seed(7)
    images, masks = rectangles(8, 40, seed=9)
    x = tf.constant(images.astype(np.float32) / 255)
    y = tf.constant(masks[..., None].astype(np.float32))
    ax, ay = augment(x, y, STRONG)
    assert ax.shape == x.shape and ay.shape == y.shape
    ax, ay = ax.numpy(), ay.numpy()
    assert set(np.unique(ay)) <= {0.0, 1.0}
    assert np.mean((ax[..., 0] > 0.5) == (ay[..., 0] > 0.5)) >= 0.98
    assert not np.array_equal(ay, y.numpy())


def test_zero_augmentation_is_the_identity() -> None:
    images, masks = rectangles(12, 32, seed=3)
    spec = Preprocessing(input_size=32)
    plain = collect(make_dataset(images, masks, batch_size=5, spec=spec))
    for _ in range(2):
        same = collect(make_dataset(images, masks, batch_size=5, spec=spec, augmentation=NONE))
        assert np.array_equal(same[0], plain[0])
        assert np.array_equal(same[1], plain[1])


@pytest.mark.parametrize("size", [32, 33])
def test_flip_only_mirrors_or_keeps_each_slice(size: int) -> None:
    tf.random.set_seed(42)
    images, masks = rectangles(32, size, seed=11)
    spec = Preprocessing(input_size=size)
    plain_x, plain_y = collect(make_dataset(images, masks, batch_size=16, spec=spec))
    got_x, got_y = collect(make_dataset(images, masks, batch_size=16, spec=spec, augmentation=FLIP))
    mirrored = 0
    for k in range(len(images)):
        if np.array_equal(got_x[k], plain_x[k]):
            assert np.array_equal(got_y[k], plain_y[k])
        else:
            assert np.array_equal(got_x[k], plain_x[k][:, ::-1]), k
            assert np.array_equal(got_y[k], plain_y[k][:, ::-1]), k
            mirrored += 1
    assert 0 < mirrored < len(images)


def test_grey_shows_some_slices_as_flair_in_every_channel(real) -> None:
    """Grey slices are the FLAIR channel copied three times (as the data set's grey volumes);
    the others, and every mask, are untouched."""
    tf.random.set_seed(7)
    images, masks = real
    images = np.concatenate([images] * 4)
    masks = np.concatenate([masks] * 4)
    spec = Preprocessing(input_size=256)
    plain_x, plain_y = collect(make_dataset(images, masks, batch_size=12, spec=spec))
    grey = Augmentation(rotation=0, shift=0, shear=0, zoom=0, flip=False, grey=0.5)
    got_x, got_y = collect(make_dataset(images, masks, batch_size=12, spec=spec, augmentation=grey))
    assert np.array_equal(got_y, plain_y)
    greyed = 0
    for k in range(len(images)):
        if np.array_equal(got_x[k], plain_x[k]):
            continue
        assert np.array_equal(got_x[k], np.repeat(plain_x[k][..., 1:2], 3, axis=-1)), k
        greyed += 1
    assert 6 <= greyed <= 30, greyed  # of 36, each with probability 0.5


def test_augmentation_to_dict() -> None:
    assert STRONG.to_dict() == {
        "rotation": 30,
        "shift": 0.2,
        "shear": 10,
        "zoom": 0.2,
        "flip": True,
        "grey": 0.0,
        "contrast": 0.0,
    }
    assert Augmentation().to_dict() == {
        "rotation": 0.25,
        "shift": 0.05,
        "shear": 0.05,
        "zoom": 0.05,
        "flip": True,
        "grey": 0.0,
        "contrast": 0.0,
    }


def test_random_contrast_raises_each_channels_contrast_about_its_head_mean_to_a_bounded_power() -> None:
    """A bright region r times the head's mean level comes out r**power times it, power within
    [1/(1+c), 1+c], drawn per slice and channel; black stays black and pixel order is kept."""
    tf.random.set_seed(5)
    images = np.zeros((64, 16, 16, 3), np.float32)
    images[:, 2:14, 2:14] = 0.2  # the head
    images[:, 6:10, 6:10] = 0.4  # a region twice the head's level
    got = random_contrast(tf.constant(images), 0.5).numpy()
    assert np.all(got[:, :2] == 0) and got.min() >= 0 and got.max() <= 1
    inside, region = got[:, 3, 3], got[:, 7, 7]
    assert np.all(region > inside), "a channel's pixel order is kept"
    level = (0.2 * (144 - 16) + 0.4 * 16) / 144
    powers = np.log(region / level) / np.log(0.4 / level)
    assert powers.min() >= 1 / 1.5 - 1e-4 and powers.max() <= 1.5 + 1e-4
    assert powers.min() < 0.8 and powers.max() > 1.25, "the draws span the range"
    assert np.std(powers[:, 0] - powers[:, 1]) > 0.05, "each channel draws its own power"


def test_contrast_augmentation_comes_before_grey_so_a_grey_slice_stays_grey() -> None:
    tf.random.set_seed(9)
    images, masks = rectangles(8, 32, seed=2)
    both = Augmentation(rotation=0, shift=0, shear=0, zoom=0, flip=False, grey=1.0, contrast=0.5)
    x, y = augment(tf.constant(images, tf.float32) / 255.0, tf.constant(masks[..., None], tf.float32), both)
    x = x.numpy()
    assert np.array_equal(x[..., 0], x[..., 1]) and np.array_equal(x[..., 1], x[..., 2])
    assert np.array_equal(y.numpy()[..., 0], masks)
