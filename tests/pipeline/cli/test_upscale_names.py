"""Output names of ``esrgan upscale``, for any input stem and any suffix (issue 21, case 9).

A property test (hypothesis): whatever the stem (long, unicode, undecodable bytes) and the
suffix (accepted templates and arbitrary text), ``plan_outputs`` either returns a name this file
system accepts (at most 255 bytes, no separator, inside ``-o``), which is then created for real,
or refuses the run with one short line. ``atomic_write``'s temporary name never grows with the
final name, so a final name the file system allows always has a writable temporary one.
"""

from __future__ import annotations

import os
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from esrgan.fileio import TMP_NAME_BYTES, atomic_write
from pipeline.cli.upscale import UpscaleError, check_suffix, name_max, plan_outputs

#: A refusal quotes little of the user's text: one line, never longer than this.
MAX_ERROR = 300

# Characters a file name may hold on POSIX: anything but "/" and NUL; lone surrogates only as
# os.fsdecode produces them (undecodable bytes, U+DC80..U+DCFF).
name_chars = st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)) | st.sampled_from(
    [chr(0xDC80 + i) for i in range(0, 128, 17)]
)
stems = st.text(name_chars, min_size=1, max_size=300) | st.text(st.sampled_from("aé日🙂"), min_size=60, max_size=260)
literal = st.text(st.characters(blacklist_characters="{}/\0", blacklist_categories=("Cs", "Cc")), max_size=40)
accepted_suffixes = st.lists(literal | st.just("{scale}") | st.just("{{") | st.just("}}"), max_size=8).map("".join)
any_suffixes = accepted_suffixes | st.text(max_size=80) | st.builds(lambda n: "_" * n, st.integers(0, 400))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("names")


def nbytes(name: str) -> int:
    return len(os.fsencode(name))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stem=stems, suffix=any_suffixes, scale=st.sampled_from([2, 4, 8]))
@example(stem="b" * 245, suffix="_x{scale}", scale=4)  # 252 bytes: allowed (the temporary name was not)
@example(stem="b" * 249, suffix="_x{scale}", scale=4)  # 256 bytes: refused
@example(stem="a", suffix="{scale!r:>99999999}", scale=4)
@example(stem="a", suffix="{scale}" * 3000, scale=4)
def test_an_output_name_is_valid_or_refused_in_one_line(folder: Path, stem: str, suffix: str, scale: int) -> None:
    out_dir = folder / "out"
    src = folder / "in" / f"{stem}.png"
    try:
        [out] = plan_outputs([src], out_dir, suffix, scale, overwrite=True)
    except UpscaleError as exc:
        message = str(exc)
        assert "\n" not in message and len(message) <= MAX_ERROR
        event("refused: name too long" if "limit of" in message else "refused: suffix")
        return
    event("accepted, over 200 bytes" if nbytes(out.name) > 200 else "accepted")
    check_suffix(suffix)  # accepted: the template itself passed
    assert out.parent == out_dir and "/" not in out.name and "\0" not in out.name
    assert out.name.endswith(".png") and out.name.startswith(src.stem)
    assert nbytes(out.name) <= min(255, name_max(out_dir))
    # Valid for real: the file and atomic_write's temporary file beside it can be created.
    out_dir.mkdir(exist_ok=True)
    atomic_write(out, lambda tmp: Path(tmp).write_bytes(b""))
    out.unlink()


@settings(max_examples=200, deadline=None)
@given(suffix=accepted_suffixes)
def test_accepted_suffixes_render_to_plain_text(suffix: str) -> None:
    check_suffix(suffix)
    fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(suffix) if f is not None]
    assert all(field == ("scale", "", None) for field in fields)
    assert "/" not in suffix.format(scale=4)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stem=stems)
def test_the_temporary_name_never_outgrows_the_final_one(folder: Path, stem: str) -> None:
    while nbytes(stem + ".png") > 255:  # the longest name the file system allows, or shorter
        stem = stem[:-1]
    name = stem + ".png"
    seen: list[str] = []
    target = folder / "tmpnames" / name
    atomic_write(target, lambda tmp: (seen.append(Path(tmp).name), Path(tmp).write_bytes(b"x")))
    [tmp_name] = seen
    assert nbytes(tmp_name) == TMP_NAME_BYTES <= nbytes(name) + 16
    assert tmp_name.startswith(".tmp-") and tmp_name.endswith(".tmp")
    assert target.read_bytes() == b"x" and not [p for p in target.parent.iterdir() if p.name == tmp_name]
    target.unlink()
