# SPDX-License-Identifier: GPL-3.0-or-later
"""Files going out and coming back: what kind a file is, whether a result GLB can be
imported, the model inside a result ZIP, and inputs encoded for a request. bpy-free.

One sniffer (`sniff`) decides by content, never by name or Content-Type, everywhere in
Recon3D: result downloads, Segmind's loosely typed output, input photos.
"""
from __future__ import annotations

import base64
import json
import os
import struct
import zipfile

from ..errors import ResultError

MAX_RESULT_BYTES = 1 << 30          # 1 GiB: far above any real result, well below trouble
#: how many leading bytes `sniff` wants to see
SNIFF_BYTES = 16
_MAGIC = ((b"glTF", "glb"), (b"PK\x03\x04", "zip"), (b"\x89PNG", "png"),
          (b"\xff\xd8\xff", "jpeg"), (b"ply\n", "ply"), (b"ply\r\n", "ply"))
MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "glb": "model/gltf-binary",
              "zip": "application/zip", "ply": "application/octet-stream"}
MODEL_KINDS = frozenset({"glb", "zip"})


def sniff(head: bytes) -> str | None:
    """The kind of a file from its first bytes: "glb", "zip", "png", "jpeg", "ply", "html",
    "json", or None when unknown."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    text = head[:SNIFF_BYTES].lstrip().lower()
    if text.startswith((b"<", b"<!doctype")):
        return "html"
    if text.startswith((b"{", b"[")):
        return "json"
    return None


def sniff_file(path: str) -> str | None:
    with open(path, "rb") as fh:
        return sniff(fh.read(SNIFF_BYTES))


def check_model_bytes(head: bytes, service: str) -> None:
    """Refuse a download that is neither a GLB nor a ZIP as soon as its first bytes arrive."""
    kind = sniff(head)
    if kind in MODEL_KINDS:
        return
    what = {"html": "a web page", "json": "JSON text"}.get(kind or "", "something else")
    raise ResultError(f"{service} sent {what} instead of a 3D model. Nothing was imported; "
                      f"try the import again later.")


def check_glb(path: str) -> None:
    """Refuse a file the glTF importer would choke on or half-import."""
    name = os.path.basename(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            header = fh.read(12)
            if len(header) < 12 or sniff(header) != "glb":
                raise ResultError(f"The result '{name}' is not a GLB model. Nothing was "
                                  f"imported; generate again or report it to the service.")
            version, length = struct.unpack("<II", header[4:12])
            if version != 2:
                raise ResultError(f"The result '{name}' is glTF version {version}; Blender "
                                  f"reads version 2.")
            if length != size:
                raise ResultError(f"The result '{name}' is cut off ({size:,} of {length:,} "
                                  f"bytes). Nothing was imported; download it again.")
            chunk = fh.read(8)
            if len(chunk) < 8:
                raise ResultError(f"The result '{name}' is damaged (no content). Nothing was "
                                  f"imported.")
            chunk_len, chunk_type = struct.unpack("<II", chunk)
            if chunk_type != 0x4E4F534A or chunk_len > size:      # 'JSON'
                raise ResultError(f"The result '{name}' is damaged (bad JSON chunk). Nothing "
                                  f"was imported.")
            doc = json.loads(fh.read(chunk_len).decode("utf-8"))
    except OSError as exc:
        raise ResultError(f"Recon3D could not read the result '{name}' ({exc.strerror}).") \
            from None
    except (UnicodeDecodeError, ValueError):
        raise ResultError(f"The result '{name}' is damaged (unreadable description). Nothing "
                          f"was imported.") from None
    if not isinstance(doc, dict) or not doc.get("meshes"):
        raise ResultError(f"The result '{name}' holds no mesh: the service found nothing to "
                          f"model. Try another prompt, mask or photo.")


def remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def write_capped(path: str, chunks, *, max_bytes: int = MAX_RESULT_BYTES,
                 service: str = "The service") -> int:
    """Write an iterable of byte chunks to `path` (via `path + '.part'`), refusing more than
    `max_bytes`; `path` only ever exists complete. Returns the bytes written."""
    part = path + ".part"
    written = 0
    try:
        with open(part, "wb") as fh:
            for chunk in capped(chunks, max_bytes, service):
                written += len(chunk)
                fh.write(chunk)
        os.replace(part, path)
    except BaseException:
        remove_quietly(part)
        raise
    return written


def capped(chunks, max_bytes: int, service: str = "The service"):
    """The chunks, until more than `max_bytes` came: then a ResultError (nothing more read)."""
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise ResultError(f"The result from {service} is larger than Recon3D accepts "
                              f"({max_bytes / 1e6:.0f} MB).")
        yield chunk


def extract_glb_from_zip(zip_path: str, dest: str, *, max_bytes: int = MAX_RESULT_BYTES) -> str:
    """Take the .glb out of a result ZIP without trusting names: the member is read as a
    stream and written to `dest`, so no path in the archive is used (no zip slip), and its
    size is capped while reading (no zip bomb). A damaged, encrypted or CRC-failing archive
    is a ResultError that leaves no partial file."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = [m for m in archive.infolist()
                       if not m.is_dir() and m.filename.lower().endswith(".glb")]
            if not members:
                raise ResultError("The result archive holds no .glb model. Nothing was "
                                  "imported.")
            member = max(members, key=lambda m: m.file_size)
            if member.flag_bits & 0x1:
                raise ResultError("The result archive is encrypted; Recon3D cannot open it. "
                                  "Nothing was imported.")
            with archive.open(member) as src:
                write_capped(dest, iter(lambda: src.read(1 << 20), b""), max_bytes=max_bytes,
                             service="the result archive")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError,
            EOFError, OSError) as exc:
        # BadZipFile covers a bad CRC; RuntimeError an encrypted member; NotImplementedError
        # an unsupported compression method.
        raise ResultError(f"The result archive is damaged ({type(exc).__name__}). Nothing "
                          f"was imported; use Retry Download to fetch it again.") from None
    if sniff_file(dest) != "glb":
        remove_quietly(dest)
        raise ResultError("The .glb inside the result archive is not a valid model.")
    return dest


def read_base64(path: str) -> str:
    """A file's bytes as base64 text, for services that take inputs inline."""
    with open(path, "rb") as fh:
        return base64.b64encode(fh.read()).decode("ascii")


def data_uri(path: str) -> str:
    """A file as a `data:` URI, its type decided by content."""
    kind = sniff_file(path) or "png"
    return f"data:{MIME_TYPES.get(kind, 'application/octet-stream')};base64,{read_base64(path)}"
