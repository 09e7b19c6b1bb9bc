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

from bench.data import batching, files, images, text
from bench.data.batching import *  # noqa: F403
from bench.data.files import *  # noqa: F403
from bench.data.images import *  # noqa: F403
from bench.data.text import *  # noqa: F403

__all__ = [*batching.__all__, *files.__all__, *images.__all__, *text.__all__]
