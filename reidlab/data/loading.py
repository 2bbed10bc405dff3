"""Datasets and DataLoaders: decoding, frame caching, deterministic per-item randomness.

Determinism scheme (why results do not depend on the number of DataLoader workers): every random
choice an item makes — which frames (numpy) and which augmentation (torch) — is drawn from generators
seeded by ``(seed, epoch, index)`` alone. The torch part runs inside ``torch.random.fork_rng`` with
the CPU generator seeded to ``item_seed``; fork_rng saves and restores that generator, so it neither
depends on nor disturbs the process's global stream. This holds in the main process and in forked or
spawned workers alike.

The epoch lives in shared memory (``multiprocessing.RawValue``) so ``set_epoch`` in the main process
reaches persistent workers too; call ``dataset.set_epoch(e)`` and ``sampler.set_epoch(e)`` *before*
iterating the loader for epoch ``e`` (indices are dispatched when iteration starts). An epoch longer
than one sampler pass iterates the loader again after ``set_epoch(e, draw=d)`` (d = 1, 2, ...) on both:
items of a further draw are seeded by ``(seed, epoch, index, draw)``, so a tracklet drawn again in the
same epoch shows other frames and another augmentation.

Frame cache (``FrameCache``): an LRU of decoded uint8 frames keyed by path. With ``workers=0`` it is
one cache shared by everything in the process. With workers, each worker process holds its own copy
(forked workers start from whatever the main process had cached; entries added in a worker stay in
that worker), so the total memory is up to ``(workers + 1) x max_items`` frames, and the cache only
pays off across epochs when workers are persistent (``build_*_loader`` make them persistent).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from reidlab.data.records import Sample, Tracklet
from reidlab.data.sampling import PKSampler, dense_chunks, sample_frames


def read_image(path: str) -> np.ndarray:
    """Decode an image file to uint8 RGB ``(H, W, 3)``; errors name the file."""
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))  # a writable copy (np.asarray of PIL is read-only)
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"cannot decode image file {path}: {e}") from e


class FrameCache:
    """LRU cache of decoded uint8 frames ``(H, W, 3)``, keyed by path; thread-safe.

    ``max_items`` bounds the number of frames (a 64x32 frame is 6 KiB, a 256x128 MARS frame 96 KiB).
    See the module docstring for its behaviour with DataLoader workers.
    """

    def __init__(self, max_items: int):
        if max_items < 1:
            raise ValueError(f"FrameCache: max_items must be >= 1, got {max_items}")
        self.max_items = int(max_items)
        self._data: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, path: str, loader: Callable[[str], np.ndarray] = read_image) -> np.ndarray:
        with self._lock:
            arr = self._data.get(path)
            if arr is not None:
                self._data.move_to_end(path)
                self.hits += 1
                return arr
        arr = loader(path)
        arr.setflags(write=False)  # shared between items: nobody may modify a cached frame in place
        with self._lock:
            self.misses += 1
            self._data[path] = arr
            self._data.move_to_end(path)
            while len(self._data) > self.max_items:
                self._data.popitem(last=False)
        return arr

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, path: str) -> bool:
        return path in self._data

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.hits = self.misses = 0

    # the lock cannot be pickled (spawned workers): each process gets a fresh one
    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()


def _load_clip(paths: Sequence[str], cache: FrameCache | None) -> torch.Tensor:
    """uint8 ``(T, 3, H, W)``; frames of another size are resized to the first frame's size (Duke)."""
    frames = [cache.get(p) if cache is not None else read_image(p) for p in paths]
    h, w = frames[0].shape[:2]
    fixed = []
    for p, f in zip(paths, frames):
        if f.shape[:2] != (h, w):
            f = np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR))
        fixed.append(f)
    return torch.from_numpy(np.stack(fixed)).permute(0, 3, 1, 2).contiguous()


def _item_seeds(seed: int, epoch: int, index: int, draw: int = 0) -> tuple[np.random.Generator, int]:
    # draw 0 keeps the (seed, epoch, index) key of runs made before extra draws existed
    key = [int(seed), int(epoch), int(index)] + ([int(draw)] if draw else [])
    ss = np.random.SeedSequence(key)
    torch_seed = int(ss.generate_state(1, dtype=np.uint64)[0] & ((1 << 63) - 1))
    return np.random.default_rng(ss), torch_seed


def _apply(transform: Callable | None, x: torch.Tensor, torch_seed: int | None) -> torch.Tensor:
    if transform is None:
        return x.float().div_(255.0)
    if torch_seed is None:
        return transform(x)
    with torch.random.fork_rng(devices=[]):
        # seed only the CPU generator the transforms draw from: torch.manual_seed would also queue
        # lazy CUDA/MPS seeding (with a formatted traceback) on every item
        torch.default_generator.manual_seed(torch_seed)
        return transform(x)


class _EpochMixin:
    _SHARED = ("_epoch", "_draw")

    def _init_epoch(self) -> None:
        # shared memory so persistent workers see set_epoch from the main process
        self._epoch = multiprocessing.RawValue("q", 0)
        self._draw = multiprocessing.RawValue("q", 0)

    @property
    def epoch(self) -> int:
        return int(self._epoch.value)

    @property
    def draw(self) -> int:
        return int(self._draw.value)

    def set_epoch(self, epoch: int, draw: int = 0) -> None:
        """Frame choice and augmentation of every item become a function of (seed, epoch, index) for
        ``draw`` 0, of (seed, epoch, index, draw) for a further pass ``draw >= 1`` of the same epoch."""
        if draw < 0:
            raise ValueError(f"{type(self).__name__}: draw must be >= 0, got {draw}")
        self._epoch.value = int(epoch)
        self._draw.value = int(draw)

    # shared memory can only travel to a process being started (DataLoader workers, fork or spawn);
    # any other pickling or deepcopy gets a private copy holding the current values
    def __getstate__(self):
        state = self.__dict__.copy()
        if multiprocessing.context.get_spawning_popen() is None:
            for name in self._SHARED:
                state[name] = int(getattr(self, name).value)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        for name in self._SHARED:
            value = state.get(name, 0)  # "_draw" is missing from objects pickled before it existed
            if isinstance(value, int):
                setattr(self, name, multiprocessing.RawValue("q", value))


class VideoTrainDataset(_EpochMixin, Dataset):
    """One clip per tracklet: item -> (frames float ``(seq_len, C, H, W)``, pid: int, camid: int)."""

    def __init__(self, tracklets: Sequence[Tracklet], seq_len: int, sampling: str, transform: Callable | None, *,
                 seed: int = 0, cache: FrameCache | None = None):
        if len(tracklets) == 0:
            raise ValueError("VideoTrainDataset: no tracklets")
        sample_frames(1, seq_len, sampling, np.random.default_rng(0))  # validates seq_len and mode early
        self.tracklets = list(tracklets)
        self.seq_len, self.sampling, self.transform = int(seq_len), sampling, transform
        self.seed, self.cache = int(seed), cache
        self.pids = [t.pid for t in self.tracklets]
        self._init_epoch()

    def __len__(self) -> int:
        return len(self.tracklets)

    def frame_indices(self, index: int, epoch: int | None = None, draw: int | None = None) -> list[int]:
        """The frames item ``index`` uses in ``epoch`` and ``draw`` (default: the current ones)."""
        rng, _ = _item_seeds(self.seed, self.epoch if epoch is None else epoch, index,
                             self.draw if draw is None else draw)
        return sample_frames(len(self.tracklets[index].paths), self.seq_len, self.sampling, rng)

    def __getitem__(self, index: int):
        t = self.tracklets[index]
        rng, torch_seed = _item_seeds(self.seed, self.epoch, index, self.draw)
        idx = sample_frames(len(t.paths), self.seq_len, self.sampling, rng)
        clip = _load_clip([t.paths[i] for i in idx], self.cache)
        return _apply(self.transform, clip, torch_seed), t.pid, t.camid


class VideoTestDataset(Dataset):
    """One item per dense chunk: item -> (frames ``(seq_len, C, H, W)``, tracklet_index: int).

    ``chunk_owner[i]`` is the tracklet of chunk ``i``; a tracklet's feature is usually the mean of its
    chunks' features. ``sampling="evenly"`` instead gives one evenly sampled clip per tracklet (fast).
    """

    def __init__(self, tracklets: Sequence[Tracklet], seq_len: int, transform: Callable | None, *,
                 cache: FrameCache | None = None, sampling: str = "dense"):
        if sampling not in ("dense", "evenly"):
            raise ValueError(f"VideoTestDataset: sampling must be 'dense' or 'evenly', got {sampling!r}")
        self.tracklets = list(tracklets)
        self.seq_len, self.transform, self.cache = int(seq_len), transform, cache
        self.chunks: list[list[int]] = []
        self.chunk_owner: list[int] = []
        for ti, t in enumerate(self.tracklets):
            if sampling == "dense":
                parts = dense_chunks(len(t.paths), self.seq_len)
            else:
                parts = [sample_frames(len(t.paths), self.seq_len, "evenly", np.random.default_rng(0))]
            self.chunks += parts
            self.chunk_owner += [ti] * len(parts)

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, index: int):
        ti = self.chunk_owner[index]
        paths = self.tracklets[ti].paths
        clip = _load_clip([paths[i] for i in self.chunks[index]], self.cache)
        return _apply(self.transform, clip, None), ti


class ImageDataset(_EpochMixin, Dataset):
    """item -> (image float ``(C, H, W)``, pid: int, camid: int); augmentation seeded by (seed, epoch, index)
    (plus ``draw`` for a further pass of the epoch)."""

    def __init__(self, samples: Sequence[Sample], transform: Callable | None, *, seed: int = 0,
                 cache: FrameCache | None = None):
        self.samples = list(samples)
        self.transform, self.seed, self.cache = transform, int(seed), cache
        self.pids = [s.pid for s in self.samples]
        self._init_epoch()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        s = self.samples[index]
        img = self.cache.get(s.path) if self.cache is not None else read_image(s.path)
        x = torch.from_numpy(np.array(img)).permute(2, 0, 1)  # copy: cached frames are read-only
        _, torch_seed = _item_seeds(self.seed, self.epoch, index, self.draw)
        return _apply(self.transform, x, torch_seed), s.pid, s.camid


def _worker_init(worker_id: int) -> None:
    # torch seeds each worker with base_seed + worker_id (base from the loader's generator); give
    # numpy and random the same, for any user code that draws from them inside a worker
    s = torch.initial_seed() % (2**32)
    np.random.seed(s)
    random.seed(s)


def build_train_loader(dataset: Dataset, sampler: torch.utils.data.Sampler | None, batch_size: int, workers: int,
                       seed: int) -> DataLoader:
    """Training DataLoader: seeded workers, persistent when ``workers > 0`` (keeps frame caches warm),
    ``drop_last=True`` (P x K batches must stay whole). With ``sampler=None`` items are shuffled by a
    generator seeded with ``seed``."""
    if isinstance(sampler, PKSampler) and batch_size != sampler.batch_size:
        raise ValueError(f"build_train_loader: batch_size {batch_size} != PKSampler p*k = {sampler.batch_size}")
    if workers < 0:
        raise ValueError(f"build_train_loader: workers must be >= 0, got {workers}")
    g = torch.Generator()
    g.manual_seed(int(seed))
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, shuffle=sampler is None, drop_last=True,
        num_workers=workers, persistent_workers=workers > 0, worker_init_fn=_worker_init, generator=g,
        pin_memory=torch.cuda.is_available(), prefetch_factor=4 if workers > 0 else None,
    )


def build_test_loader(dataset: Dataset, batch_size: int, workers: int) -> DataLoader:
    """Evaluation DataLoader: fixed order, every item, persistent workers when ``workers > 0``."""
    if workers < 0:
        raise ValueError(f"build_test_loader: workers must be >= 0, got {workers}")
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=False, drop_last=False, num_workers=workers,
        persistent_workers=workers > 0, worker_init_fn=_worker_init, pin_memory=torch.cuda.is_available(),
        prefetch_factor=4 if workers > 0 else None,
    )


def default_workers() -> int:
    """Workers that keep the machine's cores busy without oversubscribing: cores - 1, at most 8."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))
