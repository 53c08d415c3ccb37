"""The suite's one video reader: PyAV, through the container the probe opened, keyframe-aware.

Every file is first probed with PyAV (container, video stream, packet index, display rotation),
which turns broken input into a `VideoReadError` naming the path and the reason. Frames come out as
uint8 RGB `(T, H, W, 3)`, upright (display rotation applied), in the order asked.
Only non-empty regular files are opened (a FIFO would block the open, a link to `/dev/zero` never
end), always by an absolute `file:` URL (so `x:y.mp4` is not ffmpeg's protocol `x`); a playlist
(ffconcat, HLS) is refused rather than followed, and pictures larger than 8K (`MAX_FRAME_PIXELS`)
are refused before any frame of theirs is decoded.

How it keeps up with the best of decord, PyAV and OpenCV used directly (`benchmarks/decode.py`:
540p, 1 fps, 8 uniform or 32 consecutive frames, long and short GOPs, bit-identical outputs):
- one open: the probe's container is kept for decoding (ffmpeg's stream analysis alone costs 12 ms
  at 540p), and MP4/MOV rotation is read from the header instead of by decoding an I-frame (15 ms);
- the probe's keyframe index gives each frame the shortest way there: decode on, or seek to the
  keyframe before it when that skips more frames than a seek throws away;
- on the way to a target, H.264 frames that no other frame references are skipped (about a fifth
  less CPU on long GOPs);
- one decoder thread per core, not ffmpeg's default of one more.
decord stays available as `backend="decord"`, for comparison.
"""

from __future__ import annotations

import bisect
import math
import os
import stat
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import av
import numpy as np

from datamodules._ffmpeg import file_url

Backend = Literal["auto", "decord", "pyav"]

# Broken files are reported through VideoReadError; libav's own console chatter adds nothing.
# None (PyAV's default) drops messages in C. A level would route them through a Python callback
# that takes the GIL inside decoder threads, which deadlocks when a frame-threaded decoder is freed
# (the main thread holds the GIL and waits for those threads): seen in benchmarks/decode.py.
av.logging.set_level(None)

# A seek flushes the decoder, throwing away the frames it holds for B-frame reordering and frame
# threading, which must then be decoded again: worth it only if it skips more frames than that.
_SEEK_COST = 4

# decord 0.6.0 ships no decoder for these; PyAV (through ffmpeg's dav1d/libaom) decodes them.
_DECORD_UNSUPPORTED_CODECS = {"av1"}

# Formats that are lists of other files: ffmpeg reads a text file that starts with
# "ffconcat version 1.0" or "#EXTM3U" as the videos it names, whatever the file is called, so a
# pool's `clip.mp4` could hand over another file's frames as its own.
_PLAYLIST_FORMATS = {"concat", "hls", "dash", "webm_dash_manifest", "imf"}

# The largest picture the reader decodes: 8192x4352, what H.264, H.265 and AV1 allow at their
# highest (8K) levels, so every camera's and streaming service's 8K is read. A bigger one is a
# stream outside every level, or a crafted one (ffmpeg opens up to 268 megapixels): at 3 bytes a
# pixel, eight such RGB frames would take gigabytes before any teacher saw them.
MAX_FRAME_PIXELS = 35_651_584


class VideoReadError(Exception):
    """A video could not be read; `path` and `reason` say which and why."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class VideoInfo:
    """What a caller needs to know to sample a video; sizes are as displayed (rotation applied)."""

    path: str
    width: int
    height: int
    fps: float  # average rate: frames / duration, so it is meaningful for variable frame rate
    num_frames: int
    duration: float  # seconds, first frame's start to last frame's end
    rotation: int  # degrees (0, 90, 180, 270) the reader rotates frames by to show them upright
    codec: str
    pix_fmt: str
    timestamps: tuple[float, ...]  # presentation time of each frame, seconds from the first
    keyframes: tuple[int, ...]  # indices of frames a decoder can start from
    start_pts: int  # the first frame's timestamp in stream time-base units (for seeking)


def _fail(path: str | os.PathLike, reason: str) -> VideoReadError:
    return VideoReadError(path, reason)


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read a video's metadata and frame index, decoding at most one frame: none for MP4/MOV,
    whose header holds the display rotation; a stream that demuxes but does not decode is then
    reported by `VideoReader.get_frames`, as a VideoReadError too."""
    info, decoder = _open(path, threads=1)
    decoder.close()
    return info


class _PyAVDecoder:
    """Frames of one open container by index, decoding as few as its keyframes allow."""

    def __init__(
        self,
        info: VideoInfo,
        container: av.container.InputContainer,
        pts: np.ndarray,  # (num_frames,) sorted presentation timestamps, stream time-base units
        frames: Iterator[av.VideoFrame] | None,  # the probe's, if it decoded the first frame
        first: av.VideoFrame | None,
        lead: int,  # how far, in display order, the packets run ahead of the frame being decoded
    ) -> None:
        self.info, self.container, self.pts = info, container, pts
        self.stream = container.streams.video[0]
        self.frames = frames
        self.position = 0 if first is not None else -1  # index of the frame given last
        self.last = first
        # H.264 marks frames that no other frame references (nal_ref_idc 0): skipping them leaves
        # every other frame bit-exact. Other codecs' "non-reference" is looser, so not there.
        self.skip_ok = info.codec == "h264"
        self.lead = lead

    def frame(self, target: int) -> av.VideoFrame:
        """Frame `target`: decoded forward from where the decoder stands, or from the last keyframe
        at or before `target` when that saves decoding (or the decoder is past `target`)."""
        if target == self.position and self.last is not None:
            return self.last
        keyframes = self.info.keyframes
        key = keyframes[bisect.bisect_right(keyframes, target) - 1]
        if self.frames is None or target < self.position or key - self.position > _SEEK_COST:
            self._seek(key)
        frame = self._decode_up_to(target, skip=self.skip_ok)
        for restart in (key, 0):
            if self.position <= target:
                break
            # Missed: the target was a skipped frame (the margin was too small), or the seek
            # landed past the keyframe (a seek index that disagrees with the packets' flags).
            # Decoding everything from the keyframe, or else the first frame, is always right.
            self._seek(restart)
            frame = self._decode_up_to(target, skip=False)
        if self.position != target:
            raise _fail(self.info.path, f"decoder skipped frame {target} (reached {self.position})")
        self.last = frame
        return frame

    def _decode_up_to(self, target: int, skip: bool) -> av.VideoFrame:
        ctx = self.stream.codec_context
        for frame in self.frames:
            self.position = int(np.searchsorted(self.pts, frame.pts))
            if self.position >= target:
                return frame
            # Frames far enough ahead of the target are only passed through: drop the ones no
            # other frame references. Near the target every frame is decoded, since the decoder
            # takes packets ahead of what it outputs (reordering, frame threads).
            margin = self.lead + ctx.reorder_depth + self.stream.thread_count + 1
            nonref = skip and target - self.position > margin
            if nonref != (ctx.skip_frame == "NONREF"):
                ctx.skip_frame = "NONREF" if nonref else "DEFAULT"
        n = self.info.num_frames
        raise _fail(self.info.path, f"frame {target} of {n} could not be decoded")

    def _seek(self, key: int) -> None:
        self.stream.codec_context.skip_frame = "DEFAULT"
        # backward=True: land on the last keyframe at or before the keyframe's own timestamp.
        self.container.seek(int(self.pts[key]), stream=self.stream, backward=True)
        self.frames = self.container.decode(self.stream)
        self.position, self.last = -1, None

    def close(self) -> None:
        self.last = None
        self.container.close()


def _open(path: str | os.PathLike, threads: int) -> tuple[VideoInfo, _PyAVDecoder]:
    """Probe `path` and keep its container open for decoding: a second open would cost about as
    much as the probe itself (ffmpeg's stream analysis decodes frames of its own)."""
    path = Path(path)
    size = _regular_file_size(path)
    container = None
    try:
        # file_url: a name like `x:y.mp4` would otherwise name ffmpeg's protocol `x`. The
        # whitelist holds for what a playlist names too (playlists are refused, but after ffmpeg
        # opened their first entry): a local file, never a URL.
        options = {"protocol_whitelist": "file"}
        container = av.open(file_url(path), metadata_errors="ignore", container_options=options)
        return _probe_container(path, container, size, threads)
    except BaseException as err:
        if container is not None:
            container.close()
        if isinstance(err, av.FFmpegError | OSError | ValueError):
            raise _fail(path, f"not a readable video ({_reason(err)}{_mp4_hint(path)})") from err
        raise


def _mp4_hint(path: Path) -> str:
    """A hint for a file that ffmpeg refused: an MP4/MOV header (ftyp) without its index (moov)."""
    try:
        with open(path, "rb") as f:
            if f.read(8)[4:] != b"ftyp":
                return ""
            f.seek(0)
            if _top_level_box(f, b"moov") is not None:
                return ""
    except OSError:
        return ""
    return "; an MP4 without its index (moov box): cut short, or a recording never finished"


def _regular_file_size(path: Path) -> int:
    """The size of `path`, a non-empty regular file (or a link to one) we may read; else why not.

    Only regular files are opened: a FIFO named `.mp4` would block the open until some writer
    came, and a link to a device (`/dev/zero`) would never end."""
    try:
        st = path.stat()
    except FileNotFoundError as err:
        broken = " (a symbolic link to a missing target)" if path.is_symlink() else ""
        raise _fail(path, f"no such file{broken}") from err
    except OSError as err:  # ELOOP: a link loop; EACCES: a folder on the way we may not enter
        raise _fail(path, f"cannot stat ({err.strerror})") from err
    if stat.S_ISDIR(st.st_mode):
        raise _fail(path, "is a directory, not a video file")
    if not stat.S_ISREG(st.st_mode):
        raise _fail(path, f"not a regular file ({_file_kind(st.st_mode)})")
    if st.st_size == 0:
        raise _fail(path, "empty file (0 bytes)")
    if not os.access(path, os.R_OK):  # always True for root, whom permissions do not stop
        raise _fail(path, "permission denied (the file is not readable)")
    return st.st_size


def _file_kind(mode: int) -> str:
    kinds = {stat.S_ISFIFO: "a named pipe", stat.S_ISCHR: "a character device",
             stat.S_ISBLK: "a block device", stat.S_ISSOCK: "a socket"}  # fmt: skip
    return next((kind for test, kind in kinds.items() if test(mode)), "not a plain file")


def _probe_container(
    path: Path, container: av.container.InputContainer, size: int, threads: int
) -> tuple[VideoInfo, _PyAVDecoder]:
    playlist = set(container.format.name.split(",")) & _PLAYLIST_FORMATS
    if playlist:
        raise _fail(path, f"a playlist ({playlist.pop()}) that names other files, not a video")
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        raise _fail(path, f"no video stream (streams found: {', '.join(kinds) or 'none'})")
    stream = container.streams.video[0]
    _check_frame_size(path, stream.codec_context.width, stream.codec_context.height)
    # Threading is fixed when the decoder opens (the first frame decoded, here or later).
    stream.thread_type, stream.thread_count = _decoder_threads(threads)
    packets: list[tuple[int, bool]] = []
    truncated = 0
    for packet in container.demux(stream):
        if packet.pts is None or packet.size == 0:
            continue  # flush packets and packets without timing carry no frame of their own
        if packet.pos is not None and packet.pos >= 0 and packet.pos + packet.size > size:
            truncated += 1
        packets.append((packet.pts, packet.is_keyframe))
    listed = stream.frames  # the container's own frame count (0 where the format has none)
    if truncated or (listed and len(packets) < listed):
        have, total = len(packets) - truncated, max(listed, len(packets))
        raise _fail(path, f"truncated file: {have} of the {total} frames present")
    if not packets:
        raise _fail(path, "video stream holds no frames")
    # Packets come in decode order: a P-frame ahead of the B-frames shown before it.
    rank = np.argsort(np.argsort([p for p, _ in packets], kind="stable"))  # display index of each
    lead = int((np.maximum.accumulate(rank) - rank).max())
    packets.sort()
    pts = np.array([p for p, _ in packets], dtype=np.int64)
    tb = float(stream.time_base)
    times = (pts - pts[0]) * tb
    # A frame lasts until the next one; the last one as long as the median gap (or 1/rate).
    rate = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
    last = float(np.median(np.diff(times))) if len(times) > 1 else 1.0 / rate
    duration = float(times[-1] + last)
    ctx = stream.codec_context  # size and pixel format as ffmpeg's stream analysis found them
    rotation = _mp4_rotation(path, stream.id) if "mp4" in container.format.name.split(",") else None
    frames, first = None, None
    if rotation is not None and ctx.format is not None and ctx.width and ctx.height:
        # An I-frame costs as much as a dozen others (15 ms at 540p): the header says enough.
        width, height, pix_fmt = ctx.width, ctx.height, ctx.format.name
    else:  # the display rotation is known only to the decoder: decode the first frame
        container.seek(int(pts[0]), stream=stream)
        frames = container.decode(stream)
        first = next(frames, None)
        if first is None:
            raise _fail(path, "no frame could be decoded")
        rotation = _upright_rotation(first.rotation)
        width, height, pix_fmt = first.width, first.height, first.format.name
    _check_frame_size(path, width, height)
    if rotation in (90, 270):
        width, height = height, width
    info = VideoInfo(
        path=str(path),
        width=width,
        height=height,
        fps=len(pts) / duration,
        num_frames=len(pts),
        duration=duration,
        rotation=rotation,
        codec=stream.codec_context.codec.canonical_name,  # "av1", not the decoder "libdav1d"
        pix_fmt=pix_fmt,
        timestamps=tuple(float(t) for t in times),
        keyframes=tuple(i for i, (_, key) in enumerate(packets) if key) or (0,),
        start_pts=int(pts[0]),
    )
    return info, _PyAVDecoder(info, container, pts, frames, first, lead)


def _check_frame_size(path: Path, width: int, height: int) -> None:
    if width * height > MAX_FRAME_PIXELS:
        raise _fail(
            path,
            f"frame size {width}x{height} is larger than the reader decodes "
            f"({MAX_FRAME_PIXELS / 1e6:.1f} megapixels: 8192x4352, the highest codec levels' 8K)",
        )


def _decoder_threads(threads: int) -> tuple[str, int]:
    """PyAV thread type and count for `threads`; 0: one thread per usable core.

    ffmpeg's own default is one more than the cores; on the 2-core machine that extra thread made
    every case of benchmarks/decode.py about 4% slower. OpenCV also uses one per core."""
    if threads == 0:
        try:
            cores = len(os.sched_getaffinity(0))  # what this process may use (taskset, cgroups)
        except AttributeError:  # not on Linux
            cores = os.cpu_count() or 1
        threads = min(cores, 16)  # 16: ffmpeg's own cap
    return "AUTO", threads  # frame threads (slice threads where a codec has no frame threading)


def _upright_rotation(angle: float) -> int:
    # PyAV reports the display matrix angle counter-clockwise; frames are shown after rotating
    # them by that angle, which np.rot90(k=angle/90) does (rot90 turns counter-clockwise too).
    return int(round(angle)) % 360


def _mp4_rotation(path: Path, track_id: int) -> int | None:
    """The display rotation that ffmpeg derives from an MP4/MOV header for track `track_id` (its
    tkhd matrix times the movie's mvhd matrix), or None where the header does not settle it."""
    try:
        with open(path, "rb") as f:
            moov = _top_level_box(f, b"moov")
    except OSError:
        return None
    if moov is None:
        return None
    movie, track = np.eye(3), None
    for kind, body in _boxes(moov):
        if kind == b"mvhd" and len(body) >= 84:
            movie = _matrix(body, 48 if body[0] == 1 else 36)
        elif kind == b"trak":
            tkhd = next((b for k, b in _boxes(body) if k == b"tkhd"), b"")
            id_at, matrix_at = (20, 52) if tkhd[:1] == b"\x01" else (12, 40)
            if len(tkhd) >= matrix_at + 36 and _u32(tkhd, id_at) == track_id:
                track = _matrix(tkhd, matrix_at)
    if track is None:
        return None
    m = track @ movie  # ffmpeg applies both; the movie's is the identity in practice
    # libavutil's av_display_rotation_get, truncated to int as PyAV's VideoFrame.rotation is
    scale0, scale1 = np.hypot(m[0, 0], m[1, 0]), np.hypot(m[0, 1], m[1, 1])
    if not (scale0 and scale1):
        return None
    angle = -math.degrees(math.atan2(m[0, 1] / scale1, m[0, 0] / scale0))
    return _upright_rotation(int(angle))


def _top_level_box(f: BinaryIO, wanted: bytes) -> bytes | None:
    """The body of the first top-level box of type `wanted`, skipping the others (mdat: GBs)."""
    while header := f.read(8):
        if len(header) < 8:
            return None
        size, kind, start = _u32(header, 0), header[4:], 8
        if size == 1:  # a 64-bit size follows the type
            size, start = int.from_bytes(f.read(8), "big"), 16
        if kind == wanted:
            return f.read(size - start) if size else f.read()
        if size < start:  # 0: "to the end of the file", and malformed sizes
            return None
        f.seek(size - start, os.SEEK_CUR)
    return None


def _boxes(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(type, body) of the boxes packed in `data`, each `size, type, body` (32-bit sizes)."""
    at = 0
    while at + 8 <= len(data):
        size = _u32(data, at)
        if size < 8 or at + size > len(data):
            return
        yield data[at + 4 : at + 8], data[at + 8 : at + size]
        at += size


def _u32(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 4], "big")


def _matrix(body: bytes, at: int) -> np.ndarray:
    """An MP4 transformation matrix {a b u, c d v, x y w}: 16.16 fixed point, u v w 2.30."""
    m = np.array(struct.unpack(">9i", body[at : at + 36]), dtype=np.float64).reshape(3, 3)
    return m / np.array([[65536.0, 65536.0, 2.0**30]] * 3)


def _reason(err: BaseException) -> str:
    text = getattr(err, "strerror", None) or str(err)
    return text.split(": '", 1)[0] if text else type(err).__name__


class VideoReader:
    """Random access to one video's frames as uint8 RGB `(T, H, W, 3)`, upright.

    `backend="auto"` and `"pyav"` decode with PyAV through the probe's open container.
    `backend="decord"` raises where decord cannot decode the file; auto never picks it: decord 0.6.0
    has no AV1 decoder, mis-sizes some rotated videos (180 degrees at 48x32), pays a second open,
    and was slower than this reader in every case of `benchmarks/decode.py`.
    `threads`: decoder threads, 0 for one per core; pass 1 in many-worker data loaders."""

    def __init__(self, path: str | os.PathLike, backend: Backend = "auto", threads: int = 0):
        self.info, pyav = _open(path, threads)
        self.path = self.info.path
        self._threads = threads
        self._pyav: _PyAVDecoder | None = pyav
        self._decord = None
        self.backend: str = "pyav"
        if backend == "decord":
            pyav.close()  # decord opens the file itself
            self._pyav = None
            self._decord = self._open_decord()
            if self._decord is None:
                raise _fail(self.path, f"decord cannot decode this file (codec {self.info.codec})")
            self.backend = "decord"

    def _open_decord(self):  # -> decord.VideoReader | None
        if self.info.codec in _DECORD_UNSUPPORTED_CODECS:
            return None
        import decord

        try:
            # absolute: decord hands the name to ffmpeg, which reads `x:y.mp4` as protocol `x`
            where = str(Path(self.path).absolute())
            reader = decord.VideoReader(where, ctx=decord.cpu(0), num_threads=self._threads)
        except (decord.DECORDError, RuntimeError):
            return None
        # decord indexes frames by its own count; a disagreement means one of them misreads the
        # stream (broken metadata, edit lists), and PyAV's packet index is the one we trust.
        return reader if len(reader) == self.info.num_frames else None

    def __len__(self) -> int:
        return self.info.num_frames

    def get_frames(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Frames at `indices` (any order, repeats allowed) as uint8 `(T, H, W, 3)`."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = self.info.num_frames
        if idx.size == 0:
            raise ValueError("no frame indices given")
        if idx.min() < 0 or idx.max() >= n:
            raise IndexError(f"{self.path}: frame index out of range [0, {n}): {idx.tolist()}")
        if self._pyav is None and self._decord is None:  # close() frees the decoder, not the
            self._pyav = _open(self.path, self._threads)[1]  # reader: it reopens on demand
        wanted, inverse = np.unique(idx, return_inverse=True)  # decoded once each, in order
        expected = (len(wanted), self.info.height, self.info.width, 3)
        try:
            if self._decord is not None:  # decord applies the display rotation itself
                frames = self._decord.get_batch(wanted.tolist()).asnumpy()
            else:
                frames = self._decode_pyav(wanted, expected)
        except VideoReadError:
            raise
        except Exception as err:  # decoders raise many types; all mean this file failed here
            raise _fail(self.path, f"decoding failed ({type(err).__name__}: {err})") from err
        if frames.shape != expected or frames.dtype != np.uint8:
            got = f"{frames.dtype} {frames.shape}"
            raise _fail(self.path, f"decoder returned {got}, not {expected}")
        if len(wanted) == len(idx) and (wanted == idx).all():
            return frames  # asked in order without repeats: no copy (a 540p frame is 1.5 MB)
        return frames[inverse]

    def _decode_pyav(self, wanted: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        # Each frame goes straight into the output (T, H, W, 3): np.stack would copy it again.
        out = np.empty(shape, dtype=np.uint8)
        k = self.info.rotation // 90
        for t, i in enumerate(wanted.tolist()):
            # the same swscale conversion to RGB that decord and OpenCV use: identical pixels
            rgb = self._pyav.frame(i).to_ndarray(format="rgb24")  # (H, W, 3) as stored
            out[t] = np.rot90(rgb, k=k) if k else rgb  # upright: (H, W) swap for 90 and 270
        return out

    def close(self) -> None:
        self._decord = None
        if self._pyav is not None:
            self._pyav.close()
            self._pyav = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
