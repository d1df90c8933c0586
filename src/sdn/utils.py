"""Small decisions every part of sdn makes alike, made once here: the default device, how a file is
replaced without ever leaving a half-written one, which output file names are accepted, and the
input conventions of the ImageNet-trained networks."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable

import torch

from sdn.errors import DISK_FULL_ADVICE, UserError, out_of_space

# torchvision's ImageNet networks (VGG, Inception-v3) expect RGB in [0, 1] normalised by these.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The EfficientNet-Lite models' own input convention: 8-bit pixel values u as (u - 127) / 128.
LITE_INPUT_CENTRE = 127
LITE_INPUT_SCALE = 128

PRECISIONS = ("bf16", "fp32")  # a network's arithmetic: bf16 autocast, or plain fp32
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_IMAGE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read, then put back: the process's umask, for the permissions of new files


def default_device(device: str | torch.device | None = None) -> torch.device:
    """`device` as given, else CUDA when available, else the CPU."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def autocast(device: torch.device, precision: str):
    """The context a network runs in: bf16 autocast (AMX on CPU, tensor cores on CUDA) or plain fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise UserError(f"precision must be 'bf16' or 'fp32', not {precision!r}")


def lite_input(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] -> the EfficientNet-Lite input scaling, (255 x - 127) / 128."""
    return (images * 255 - LITE_INPUT_CENTRE) / LITE_INPUT_SCALE


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable: without this a power cut can forget it even after the file's own fsync."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not possible everywhere (e.g. Windows); the rename itself is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable, durable: bool = False) -> None:
    """Replace `path` only by a complete file: `write(f)` fills a binary temporary file beside it
    (named `.<name>.<random>.tmp`), which is then renamed over `path`; a failure removes it.
    durable: also flush file and rename to disk (checkpoints: a power cut must not lose them)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide the files from other users
        with os.fdopen(fd, "wb") as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if out_of_space(error):
            raise UserError(f"no space left on the disk holding {path.parent} (writing {path.name}); nothing was "
                            f"half-written and the files written before are kept: {DISK_FULL_ADVICE}") from error
        raise
    if durable:
        _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def ensure_writable(folder: str | Path) -> None:
    """Create `folder` if need be and check that files can be written in it, before anything slow."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to output folder {folder}: {e.strerror or e}") from None


def image_format(path: str | Path) -> str:
    """The image format a file name asks for ("png" or "jpeg"), for writers given a file object."""
    return _IMAGE_FORMATS.get(Path(path).suffix.lower(), "png")


def image_output(out: str | Path) -> Path:
    """An image file to write (`--out`): a .png or .jpg name in a folder that exists and is writable."""
    return output_file(out, IMAGE_SUFFIXES, ".png or .jpg")


def output_file(out: str | Path, suffixes: tuple[str, ...], shown: str) -> Path:
    """`out` checked before anything slow: it ends in one of `suffixes` (named `shown` in the error)
    and its folder can be written."""
    path = Path(out)
    if path.suffix.lower() not in suffixes:
        raise UserError(f"--out must end in {shown}, not {path.name!r}")
    if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise UserError(f"cannot write to folder {path.parent}")
    return path
