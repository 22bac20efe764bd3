"""Step 2: tf.data pipelines from the parsed dataset.

Images are decoded to float32 RGB pixels in [0, 255] at the requested size; the
networks rescale internally, so the exported TFLite model takes raw uint8 pixels.
Decoded images are cached in memory as uint8 (a quarter of float32) when
``cache`` is set; augmentation runs after the cache so each epoch differs.

Under ``MultiWorkerMirroredStrategy`` each pipeline is sharded by element
(``AutoShardPolicy.DATA``): every worker reads the same file list in the same seeded
order and keeps its share of each global batch. The default (FILE) would look for
input files to split and find one tensor of paths.
"""

from __future__ import annotations

from forja_trainer_tf.config import AugmentationConfig
from forja_trainer_tf.dataset import Split
from forja_trainer_tf.tfenv import tf

__all__ = ["augment", "decode_resize", "make_pipeline"]

AUTOTUNE = tf.data.AUTOTUNE


def decode_resize(path: tf.Tensor, size: int) -> tf.Tensor:
    raw = tf.io.read_file(path)
    img = tf.io.decode_image(raw, channels=3, expand_animations=False)
    img = tf.image.resize(tf.cast(img, tf.float32), (size, size), antialias=True)
    img = tf.clip_by_value(tf.round(img), 0.0, 255.0)
    img.set_shape((size, size, 3))
    return img


def augment(img: tf.Tensor, aug: AugmentationConfig, seed: int) -> tf.Tensor:
    if aug.horizontal_flip:
        img = tf.image.random_flip_left_right(img, seed=seed)
    if aug.vertical_flip:
        img = tf.image.random_flip_up_down(img, seed=seed + 1)
    if aug.brightness > 0:
        img = tf.image.random_brightness(img, aug.brightness * 255.0, seed=seed + 2)
    if aug.contrast > 0:
        img = tf.image.random_contrast(img, 1 - aug.contrast, 1 + aug.contrast, seed=seed + 3)
    return tf.clip_by_value(img, 0.0, 255.0)


def make_pipeline(
    split: Split,
    size: int,
    batch_size: int,
    *,
    training: bool,
    aug: AugmentationConfig | None = None,
    seed: int = 1337,
    cache: bool = True,
) -> tf.data.Dataset:
    """(images, multi-hot targets) batches of the global ``batch_size``; shuffled and
    augmented when training."""
    ds = tf.data.Dataset.from_tensor_slices((split.paths, split.targets))
    ds = ds.map(lambda p, y: (decode_resize(p, size), y), num_parallel_calls=AUTOTUNE,
                deterministic=True)
    if cache:
        ds = ds.map(lambda x, y: (tf.cast(x, tf.uint8), y)).cache()
        ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y))
    if training:
        ds = ds.shuffle(max(len(split), 1), seed=seed, reshuffle_each_iteration=True)
        if aug is not None:
            ds = ds.map(lambda x, y: (augment(x, aug, seed), y), num_parallel_calls=AUTOTUNE,
                        deterministic=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.batch(batch_size).prefetch(AUTOTUNE).with_options(options)
