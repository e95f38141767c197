"""utils/tools/install_visdom_assets.py without the network: the mapping, safe extraction, --check, the cache."""
import io
import os
import tarfile
from pathlib import Path

import pytest

from utils.tools import install_visdom_assets as va


def unpkg_parts(url):
    """(package, version, file) of an unpkg.com URL; file '' for a bare package@version."""
    spec = url[len("https://unpkg.com/"):].split("#")[0]
    name_version, _, inner = spec.partition("/")
    package, _, version = name_version.rpartition("@")
    return package, version, inner


def make_tgz(path, members):
    """A gzipped tarball of {member name: bytes}; a value of None makes a symlink."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def content(package, version, inner):
    return f"{package}@{version}:{inner}".encode()


@pytest.fixture
def fake_cache(tmp_path):
    """The npm tarballs of every package the tool needs, tiny, built here."""
    cache = tmp_path / "cache"
    cache.mkdir()
    packages = {}
    for url, target in va.required_files():
        package, version, inner = va.source_for(url, target)
        packages.setdefault((package, version), set()).add(inner)
    for (package, version), inners in packages.items():
        members = {f"package/{inner}": content(package, version, inner) for inner in inners}
        members["package/package.json"] = b"{}"
        if package == "mathjax":   # more of the run-time tree, and sources that are left out
            for inner in ("fonts/HTML-CSS/TeX/woff/Main-Regular.woff", "jax/output/HTML-CSS/jax.js",
                          "unpacked/MathJax.js", "test/index.html"):
                members[f"package/{inner}"] = content(package, version, inner)
        make_tgz(cache / va.tarball_name(package, version), members)
    return cache


@pytest.fixture
def no_npm(monkeypatch):
    """Any attempt to fetch a package fails the test."""
    def forbidden(spec, workdir):
        raise AssertionError(f"npm pack {spec} was called")
    monkeypatch.setattr(va, "_npm_pack", forbidden)


def test_every_file_build_py_wants_has_an_npm_source():
    files = va.required_files()
    targets = {target for _, target in files}
    assert len(files) == 29 and len(targets) == 29   # visdom 0.2.4: 21 ext_files + 8 MathJax files
    for url, target in files:
        package, version, inner = va.source_for(url, target)
        if url.startswith("https://unpkg.com/"):
            # unpkg serves npm tarballs: the URL itself names package, version and file
            u_package, u_version, u_inner = unpkg_parts(url)
            assert (package, version) == (u_package, u_version), target
            assert inner == (u_inner or "index.js"), target   # classnames' "main" is index.js
        elif target.startswith("js/mathjax/2.7.5/"):
            assert (package, version) == ("mathjax", "2.7.5")
            assert url.split("?")[0] == "https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.5/" + inner
        else:   # cdn.plot.ly and d3js.org: explicit entries of the table
            assert target in {"js/plotly-plotly.min.js", "js/d3.v3.min.js", "js/d3-selection-multi.v1.js"}
    assert set(va.NPM_FILES) <= targets, "the table maps files build.py no longer wants"


def test_a_changed_build_py_url_stops_the_tool(tmp_path):
    build_py = Path(va.visdom_dir(), "server", "build.py").read_text()
    changed = tmp_path / "build.py"
    changed.write_text(build_py.replace("jquery@3.1.1", "jquery@3.7.1"))
    url, target = next((u, t) for u, t in va.required_files(changed) if t == "js/jquery.min.js")
    with pytest.raises(va.AssetError, match="jquery@3.7.1.*update NPM_FILES"):
        va.source_for(url, target)


@pytest.mark.parametrize("name", ["package/../../evil.js", "/etc/evil.js", "package/a/../../evil.js"])
def test_safe_extraction_rejects_paths_leaving_the_package(tmp_path, name):
    tgz = tmp_path / "evil-1.0.0.tgz"
    make_tgz(tgz, {"package/ok.js": b"ok", name: b"evil"})
    with pytest.raises(va.UnsafeTarball, match="refusing tarball member"):
        va.open_package(tgz)


def test_safe_extraction_rejects_links(tmp_path):
    tgz = tmp_path / "evil-1.0.0.tgz"
    make_tgz(tgz, {"package/ok.js": b"ok", "package/link.js": None})
    with pytest.raises(va.UnsafeTarball, match="links"):
        va.open_package(tgz)


def test_an_unsafe_cached_tarball_installs_nothing(tmp_path, fake_cache, no_npm, capsys):
    make_tgz(fake_cache / va.tarball_name("jquery", "3.1.1"),
             {"package/dist/jquery.min.js": b"x", "package/../../../escaped.js": b"evil"})
    static = tmp_path / "static"
    assert va.main(["--static", str(static), "--cache", str(fake_cache)]) == 2
    assert "refusing tarball member" in capsys.readouterr().err
    assert not (static / "version.built").exists()
    assert not any(p.name == "escaped.js" for p in tmp_path.rglob("*"))


def test_check_on_an_empty_static_dir_lists_what_is_missing(tmp_path, no_npm, capsys):
    assert va.main(["--check", "--static", str(tmp_path / "static")]) == 1
    out = capsys.readouterr().out
    assert "missing: js/plotly-plotly.min.js (npm plotly.js-dist-min@2.11.1)" in out
    assert "missing: js/mathjax/2.7.5/MathJax.js (npm mathjax@2.7.5)" in out
    assert "missing: version.built" in out
    assert out.count("missing: ") == 30
    assert not (tmp_path / "static").exists()   # --check writes nothing


def test_install_from_the_cache_then_nothing_to_do(tmp_path, fake_cache, no_npm, capsys):
    static = tmp_path / "static"
    assert va.main(["--static", str(static), "--cache", str(fake_cache)]) == 0
    for url, target in va.required_files():
        assert (static / target).read_bytes() == content(*va.source_for(url, target)), target
    assert (static / "fonts/classnames").read_bytes() == b"classnames@2.2.5:index.js"
    mathjax = static / "js/mathjax/2.7.5"
    assert (mathjax / "fonts/HTML-CSS/TeX/woff/Main-Regular.woff").is_file()   # the run-time tree
    assert (mathjax / "jax/output/HTML-CSS/jax.js").is_file()
    assert not (mathjax / "unpacked").exists() and not (mathjax / "test").exists()
    assert (static / "version.built").read_text() == va.visdom_version()
    assert va.main(["--check", "--static", str(static)]) == 0

    # second run: nothing is written, and neither npm nor the cache is touched
    stamps = {p: p.stat().st_mtime_ns for p in static.rglob("*")}
    for tgz in fake_cache.iterdir():
        tgz.unlink()
    capsys.readouterr()
    assert va.main(["--static", str(static), "--cache", str(fake_cache)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in static.rglob("*")} == stamps


def test_a_stale_version_built_counts_as_missing_like_visdom_says(tmp_path, fake_cache, no_npm):
    static = tmp_path / "static"
    va.install(static, fake_cache)
    (static / "version.built").write_text("0.0.1")
    todo, built_ok, _ = va.plan(static)
    assert not built_ok
    # visdom re-downloads every ext_files entry then (MathJax's files only when absent)
    assert {t for t, *_ in todo} == set(va.NPM_FILES)
    assert va.install(static, fake_cache) == len(va.NPM_FILES)
    assert va.plan(static)[:2] == ([], True)


def test_a_missing_npm_is_one_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert va.main(["--static", str(tmp_path / "static"), "--cache", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert "npm is not installed" in err and "apt-get install -y npm" in err and "Traceback" not in err


def test_a_package_npm_cannot_fetch_is_one_clear_error(tmp_path, monkeypatch, capsys):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text("#!/bin/sh\necho 'npm error 404 Not Found - GET https://registry.npmjs.org/x' >&2\nexit 1\n")
    npm.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    cache = tmp_path / "cache"
    assert va.main(["--static", str(tmp_path / "static"), "--cache", str(cache)]) == 2
    err = capsys.readouterr().err
    assert "Could not fetch jquery@3.1.1" in err and "404 Not Found" in err
    assert list(cache.iterdir()) == []   # no partial download left behind
