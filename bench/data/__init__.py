"""Datasets: found on disk (or downloaded), checked once, decoded once, batched on the device.

Where the files come from, in order:

1. ``$BENCH_DATA_DIR``, with the layout of the shared data folder's README
   (``mnist/train-images-idx3-ubyte.gz``, ``fashion-mnist/...``,
   ``cifar10_subset/cifar10_first1017_per_batch.npz``, ``text/warpeace_input.txt``, and
   ``cifar-10-batches-py/`` for full CIFAR-10);
2. the user cache directory (``$XDG_CACHE_HOME/hypergrad-bench`` or
   ``~/.cache/hypergrad-bench``), in the layout torchvision downloads to;
3. a download into that cache (torchvision for MNIST, Fashion-MNIST and CIFAR-10, the char-rnn URL
   for *War and Peace*), unless ``$BENCH_NO_DOWNLOAD`` is set;
4. otherwise a ``DataError`` that names the missing files and both ways to provide them.

Every loader returns CPU tensors, cached per process (a worker runs many runs): the content is
checked and the files decoded once. Workloads move them to the training device per run; the
helpers of ``batching`` batch, augment and cut windows there, without per-sample Python.

The package: ``files`` (where the files are, the download, reading and rejecting them), ``images``
(MNIST, Fashion-MNIST, CIFAR-10 and its subset), ``text`` (*War and Peace*) and ``batching``.
"""

from bench.data.batching import (
    batch_bounds,
    random_crop_flip,
    random_windows,
    shuffled_batches,
    split_indices,
    text_windows,
    to_device_images,
)
from bench.data.files import ENV_DATA_DIR, ENV_NO_DOWNLOAD, cache_dir, data_dir, downloads_allowed
from bench.data.images import (
    CIFAR_MEAN,
    CIFAR_STD,
    CIFAR_SUBSET_MEAN,
    CIFAR_SUBSET_STD,
    FASHION_MEAN,
    FASHION_STD,
    MNIST_MEAN,
    MNIST_STD,
    Images,
    load_cifar10,
    load_cifar10_subset,
    load_fashion_mnist,
    load_mnist,
)
from bench.data.text import Text, load_warpeace

__all__ = [
    "CIFAR_MEAN", "CIFAR_STD", "CIFAR_SUBSET_MEAN", "CIFAR_SUBSET_STD", "ENV_DATA_DIR",
    "ENV_NO_DOWNLOAD", "FASHION_MEAN", "FASHION_STD", "MNIST_MEAN", "MNIST_STD", "Images", "Text",
    "batch_bounds", "cache_dir", "data_dir", "downloads_allowed", "load_cifar10",
    "load_cifar10_subset", "load_fashion_mnist", "load_mnist", "load_warpeace", "random_crop_flip",
    "random_windows", "shuffled_batches", "split_indices", "text_windows", "to_device_images",
]
