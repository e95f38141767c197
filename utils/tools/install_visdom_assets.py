"""Install visdom's web-page assets from the npm registry, so the dashboard works offline.

``python -m visdom.server`` first downloads the JavaScript, CSS and fonts its page needs
(from unpkg.com, cdn.plot.ly, d3js.org and cdnjs) into the installed package's
``static/`` folder; with no route to those hosts the MathJax download raises and the
server exits. The same files are published on the npm registry. This tool fetches the
package tarballs with ``npm pack`` (kept in a cache folder), extracts just the files
visdom wants under the names it wants, and writes ``static/version.built``; visdom then
starts without touching the network.

    python -m utils.tools.install_visdom_assets            # install what is missing (idempotent)
    python -m utils.tools.install_visdom_assets --check    # report what is missing; exit 1 if anything is

Which files visdom wants is read from its own ``visdom/server/build.py``. The list lives
in local variables of ``download_scripts()`` (``ext_files``, ``cdnjs_url``,
``mathjax_path``), which an import cannot reach, and calling the function downloads;
so the function's source is parsed with ``ast`` and those assignments are evaluated
(string literals, names and ``%`` only). ``NPM_FILES`` says where each file comes from
on npm; every entry also records the URL build.py uses, and a build.py whose URLs differ
(a newer visdom) stops the tool with a message instead of installing wrong versions.
"""
import argparse
import ast
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

DEFAULT_CACHE = "~/.cache/dfad-visdom-assets"
NPM_TIMEOUT_S = 300

# Target file under static/ -> (URL visdom 0.2.4's build.py downloads it from,
#                               npm package, version, file inside the package).
# unpkg.com URLs are "<package>@<version>/<file>" served straight from the npm tarball,
# so those entries are the same bytes; unpkg resolves a bare "classnames@2.2.5" to the
# package's "main" file (index.js), and drops the "#..." fragment of the svg font URL.
# The three other hosts publish builds that npm also carries:
#   cdn.plot.ly/plotly-2.11.1.min.js: plotly.js 2.11.1's minified bundle, which plotly
#     publishes on npm as plotly.js-dist-min@2.11.1 (plotly.min.js);
#   d3js.org/d3.v3.min.js: the last d3 v3 release, d3@3.5.17 (d3.min.js);
#   d3js.org/d3-selection-multi.v1.js: the last v1 release, d3-selection-multi@1.0.1
#     (build/d3-selection-multi.js);
#   cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.5/<path>: mathjax@2.7.5 (<path>), see MATHJAX.
_U = "https://unpkg.com/"
_BS = _U + "bootstrap@3.3.7/dist/"
NPM_FILES = {
    "js/jquery.min.js": (_U + "jquery@3.1.1/dist/jquery.min.js", "jquery", "3.1.1", "dist/jquery.min.js"),
    "js/bootstrap.min.js": (_BS + "js/bootstrap.min.js", "bootstrap", "3.3.7", "dist/js/bootstrap.min.js"),
    "js/react-react.min.js": (_U + "react@16.2.0/umd/react.production.min.js",
                              "react", "16.2.0", "umd/react.production.min.js"),
    "js/react-dom.min.js": (_U + "react-dom@16.2.0/umd/react-dom.production.min.js",
                            "react-dom", "16.2.0", "umd/react-dom.production.min.js"),
    "js/react-modal.min.js": (_U + "react-modal@3.1.10/dist/react-modal.min.js",
                              "react-modal", "3.1.10", "dist/react-modal.min.js"),
    "js/plotly-plotly.min.js": ("https://cdn.plot.ly/plotly-2.11.1.min.js",
                                "plotly.js-dist-min", "2.11.1", "plotly.min.js"),
    "js/sjcl.js": (_U + "sjcl@1.0.7/sjcl.js", "sjcl", "1.0.7", "sjcl.js"),
    "js/layout-bin-packer.js.map": (_U + "layout-bin-packer@1.4.0/dist/layout-bin-packer.js.map",
                                    "layout-bin-packer", "1.4.0", "dist/layout-bin-packer.js.map"),
    "js/layout_bin_packer.js": (_U + "layout-bin-packer@1.4.0/dist/layout-bin-packer.js",
                                "layout-bin-packer", "1.4.0", "dist/layout-bin-packer.js"),
    "js/d3.v3.min.js": ("http://d3js.org/d3.v3.min.js", "d3", "3.5.17", "d3.min.js"),
    "js/d3-selection-multi.v1.js": ("https://d3js.org/d3-selection-multi.v1.js",
                                    "d3-selection-multi", "1.0.1", "build/d3-selection-multi.js"),
    "js/saveSvgAsPng.js": (_U + "save-svg-as-png@1.4.17/lib/saveSvgAsPng.js",
                           "save-svg-as-png", "1.4.17", "lib/saveSvgAsPng.js"),
    "css/react-resizable-styles.css": (_U + "react-resizable@1.4.6/css/styles.css",
                                       "react-resizable", "1.4.6", "css/styles.css"),
    "css/react-grid-layout-styles.css": (_U + "react-grid-layout@0.16.3/css/styles.css",
                                         "react-grid-layout", "0.16.3", "css/styles.css"),
    "css/bootstrap.min.css": (_BS + "css/bootstrap.min.css", "bootstrap", "3.3.7", "dist/css/bootstrap.min.css"),
    "fonts/classnames": (_U + "classnames@2.2.5", "classnames", "2.2.5", "index.js"),
    **{f"fonts/glyphicons-halflings-regular.{ext}": (
        _BS + f"fonts/glyphicons-halflings-regular.{ext}", "bootstrap", "3.3.7",
        f"dist/fonts/glyphicons-halflings-regular.{ext}") for ext in ("eot", "woff2", "woff", "ttf")},
    "fonts/glyphicons-halflings-regular.svg#glyphicons_halflingsregular": (
        _BS + "fonts/glyphicons-halflings-regular.svg#glyphicons_halflingsregular", "bootstrap", "3.3.7",
        "dist/fonts/glyphicons-halflings-regular.svg"),
}

# MathJax: build.py fetches 8 files from cdnjs into static/js/mathjax/2.7.5/, but MathJax
# loads more of its own tree at run time (output jax, fonts, extensions), which the CDN
# would have served. So the whole run-time tree of the npm package is installed there
# (everything but its unpacked/ sources, tests and build scripts): about 40 MB on disk.
MATHJAX = {"url": "https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.5/", "package": "mathjax",
           "version": "2.7.5", "target": "js/mathjax/2.7.5"}
MATHJAX_TREE = ("MathJax.js", "LICENSE", "config", "extensions", "fonts", "jax", "localization")


class AssetError(Exception):
    """A problem the user must fix; the message says how."""


class UnsafeTarball(AssetError):
    pass


# ---- what visdom wants ---------------------------------------------------------------
def visdom_dir():
    spec = importlib.util.find_spec("visdom")
    if spec is None or spec.origin is None:
        raise AssetError("visdom is not installed in this Python environment "
                         f"({sys.executable}). Install the project's requirements first "
                         "(pip install -r requirements.txt).")
    return Path(spec.origin).parent


def visdom_version():
    """The version string visdom compares static/version.built with (visdom/__init__.py)."""
    try:
        return (visdom_dir() / "VERSION").read_text().strip()
    except OSError:
        return "no_version_file"


def _subdir(name):
    """build.py's rule for where a downloaded file goes."""
    if name.endswith(".js") or name.endswith(".js.map"):
        return "js"
    if name.endswith(".css"):
        return "css"
    return "fonts"


def _evaluate(node, names):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return names[node.id]
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
        left, right = _evaluate(node.left, names), _evaluate(node.right, names)
        return left % right if isinstance(node.op, ast.Mod) else left + right
    if isinstance(node, (ast.Tuple, ast.List)):
        values = [_evaluate(e, names) for e in node.elts]
        return tuple(values) if isinstance(node, ast.Tuple) else values
    if isinstance(node, ast.Dict):
        return {_evaluate(k, names): _evaluate(v, names) for k, v in zip(node.keys, node.values)}
    raise ValueError(f"unsupported expression at line {node.lineno}")


def build_py_lists(build_py=None):
    """(ext_files, cdnjs_url, mathjax_path) as visdom's download_scripts() defines them."""
    build_py = Path(build_py) if build_py else visdom_dir() / "server" / "build.py"
    wanted = {"b", "bb", "ext_files", "cdnjs_url", "mathjax_path"}
    try:
        tree = ast.parse(build_py.read_text(), filename=str(build_py))
        func = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "download_scripts")
        names = {}
        for stmt in func.body:
            if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                    and isinstance(stmt.targets[0], ast.Name) and stmt.targets[0].id in wanted):
                names[stmt.targets[0].id] = _evaluate(stmt.value, names)
        return names["ext_files"], names["cdnjs_url"], names["mathjax_path"]
    except (OSError, SyntaxError, StopIteration, KeyError, ValueError, TypeError) as e:
        raise AssetError(f"Cannot read the list of files visdom downloads from {build_py} "
                         f"({type(e).__name__}: {e}). This tool was written for visdom 0.2.4's "
                         "build.py (download_scripts() with ext_files, cdnjs_url and mathjax_path); "
                         "update utils/visdom_assets.py for this visdom version.") from None


def required_files(build_py=None):
    """[(url, target)] for every file build.py downloads; target is relative to static/."""
    ext_files, cdnjs_url, mathjax_path = build_py_lists(build_py)
    files = [(url, f"{_subdir(name)}/{name}") for url, name in ext_files.items()]
    mathjax_dir = "/".join(p for p in cdnjs_url.split("/")[-3:] if p)
    for path in mathjax_path:
        files.append((cdnjs_url + path, f"js/{mathjax_dir}/{path.split('?')[0]}"))
    return files


def source_for(url, target):
    """(package, version, file in package) for one of build.py's files; AssetError if unknown."""
    if target in NPM_FILES:
        table_url, package, version, inner = NPM_FILES[target]
        if table_url == url:
            return package, version, inner
        raise AssetError(f"visdom's build.py downloads {target} from {url}, but utils/visdom_assets.py "
                         f"maps it to {package}@{version} for {table_url}. This visdom version is "
                         "newer than the table; update NPM_FILES to the versions build.py names.")
    prefix = MATHJAX["url"]
    if url.startswith(prefix) and target.startswith(MATHJAX["target"] + "/"):
        return MATHJAX["package"], MATHJAX["version"], target[len(MATHJAX["target"]) + 1:]
    raise AssetError(f"visdom's build.py downloads {target} from {url}, which utils/visdom_assets.py "
                     "does not know; add it to NPM_FILES (npm package, version, file inside it).")


def _present(path):
    return path.is_file() and path.stat().st_size > 0


def plan(static_dir, build_py=None):
    """What to install: ([(target, package, version, inner)], version_built_ok, version).

    Mirrors build.py: without a matching version.built, visdom downloads every ext_files
    entry again (MathJax files only when absent), so those count as missing too.
    """
    static_dir = Path(static_dir)
    version = visdom_version()
    built = static_dir / "version.built"
    built_ok = version == "no_version_file" or (built.is_file() and built.read_text().strip() == version)
    todo = []
    for url, target in required_files(build_py):
        package, pkg_version, inner = source_for(url, target)
        stale = not built_ok and package != MATHJAX["package"]
        if stale or not _present(static_dir / target):
            todo.append((target, package, pkg_version, inner))
    return todo, built_ok, version


# ---- tarballs -----------------------------------------------------------------------
def tarball_name(package, version):
    """The file name ``npm pack`` gives a package's tarball."""
    return f"{package.lstrip('@').replace('/', '-')}-{version}.tgz"


def _npm_pack(spec, workdir):
    """Run ``npm pack spec`` in workdir (tests replace this to forbid network use)."""
    npm = shutil.which("npm")
    if npm is None:
        raise AssetError(
            "npm is not installed, and visdom's page needs files that are not in the cache "
            f"(starting with {spec}). Install Node.js and npm (Debian/Ubuntu: apt-get install -y npm), "
            "or put the package tarballs (npm pack <package>@<version> on a machine with access "
            "to registry.npmjs.org) into the --cache folder, then run python -m utils.tools.install_visdom_assets again.")
    env = dict(os.environ, npm_config_update_notifier="false", npm_config_fund="false",
               npm_config_audit="false")
    try:
        result = subprocess.run([npm, "pack", "--silent", spec], cwd=workdir, env=env,
                                capture_output=True, text=True, timeout=NPM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        result = None
    if result is None or result.returncode != 0:
        detail = ("it did not finish within %d s" % NPM_TIMEOUT_S if result is None else
                  " ".join((result.stderr or result.stdout).split())[-600:] or f"exit status {result.returncode}")
        raise AssetError(
            f"Could not fetch {spec} from the npm registry with `npm pack` ({detail}). Check that this "
            "machine reaches the registry (npm config get registry; a proxy is set with "
            "npm config set proxy ...), or put the tarball into the --cache folder by hand, "
            "then run python -m utils.tools.install_visdom_assets again.")


def fetch_tarball(package, version, cache_dir):
    """Path of the package's tarball in cache_dir, fetched with ``npm pack`` if absent."""
    cache_dir = Path(cache_dir)
    path = cache_dir / tarball_name(package, version)
    if path.is_file():
        return path
    spec = f"{package}@{version}"
    print(f"fetching {spec} (npm pack)", flush=True)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".pack-", dir=cache_dir))
    except OSError as e:
        raise AssetError(f"Cannot write to the cache folder {cache_dir}: {e.strerror}. "
                         "Choose another one with --cache DIR.") from None
    try:
        _npm_pack(spec, work)
        packed = work / path.name
        if not packed.is_file():
            raise AssetError(f"`npm pack {spec}` finished but left no {path.name}; "
                             f"found {sorted(p.name for p in work.iterdir())}.")
        os.replace(packed, path)    # a run killed mid-download leaves no torn tarball behind
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


def member_path(member):
    """A tarball member's path inside its package (npm's top folder dropped); unsafe ones raise."""
    name = member.name
    parts = PurePosixPath(name).parts
    if (name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or "\\" in name
            or ".." in parts):
        raise UnsafeTarball(f"refusing tarball member {name!r}: absolute path or '..'")
    if not (member.isfile() or member.isdir()):
        raise UnsafeTarball(f"refusing tarball member {name!r}: links and special files are not extracted")
    return "/".join(parts[1:])


def _open_checked(path):
    tar = None
    try:
        tar = tarfile.open(path, "r:gz")
        members = {}
        for m in tar.getmembers():
            inner = member_path(m)
            if m.isfile() and inner:
                members[inner] = m
    except BaseException:
        if tar is not None:
            tar.close()
        raise
    return tar, members


def open_package(path):
    """(TarFile, {path inside package: member}) with every member checked by member_path()."""
    try:
        return _open_checked(path)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise AssetError(f"The cached tarball {path} is unreadable ({e}); delete it and run again "
                         "to fetch it anew.") from None
    except UnsafeTarball as e:
        raise UnsafeTarball(f"{path}: {e}. The tarball was not extracted; delete it and run again.") from None


def _write(tar, member, dest, static_dir):
    dest = Path(dest)
    root = Path(static_dir).resolve()
    if root not in dest.resolve().parents:
        raise UnsafeTarball(f"refusing to write {dest}: outside {root}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, tar.extractfile(member) as src:
            shutil.copyfileobj(src, out)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


# ---- the tool -------------------------------------------------------------------------
def install(static_dir=None, cache_dir=DEFAULT_CACHE, build_py=None):
    """Install whatever is missing; returns the number of files written (0: nothing to do)."""
    static_dir = Path(static_dir) if static_dir else visdom_dir() / "static"
    cache_dir = Path(os.path.expanduser(str(cache_dir)))
    todo, built_ok, version = plan(static_dir, build_py)
    if not todo and built_ok:
        return 0
    by_package = {}
    for target, package, pkg_version, inner in todo:
        by_package.setdefault((package, pkg_version), []).append((target, inner))
    written = 0
    try:
        for (package, pkg_version), files in by_package.items():
            tar, members = open_package(fetch_tarball(package, pkg_version, cache_dir))
            with tar:
                if package == MATHJAX["package"]:
                    tree = [(f"{MATHJAX['target']}/{inner}", inner) for inner in members
                            if inner.split("/")[0] in MATHJAX_TREE]
                    files = list(dict(files + tree).items())
                for target, inner in files:
                    if inner not in members:
                        raise AssetError(f"{package}@{pkg_version} has no file {inner} (wanted for "
                                         f"{target}); the table in utils/visdom_assets.py is wrong.")
                    _write(tar, members[inner], static_dir / target, static_dir)
                    written += 1
        (static_dir / "version.built").write_text(version)
    except PermissionError as e:
        raise AssetError(f"Cannot write into {static_dir} ({e.strerror}: {e.filename}). Run as a user "
                         "who can write to the visdom package, or pass --static DIR.") from None
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m utils.tools.install_visdom_assets",
        description="Install visdom's web-page scripts, styles and fonts from the npm registry, "
                    "so that python -m visdom.server starts and serves its page offline.")
    parser.add_argument("--check", action="store_true",
                        help="only report what is missing; exit status 1 if anything is")
    parser.add_argument("--cache", default=DEFAULT_CACHE, metavar="DIR",
                        help="folder for the npm package tarballs")
    parser.add_argument("--static", default=None, metavar="DIR",
                        help="visdom's static folder (default: the installed visdom package's static/)")
    args = parser.parse_args(argv)
    try:
        static_dir = Path(args.static) if args.static else visdom_dir() / "static"
        if args.check:
            todo, built_ok, version = plan(static_dir)
            for target, package, pkg_version, _ in todo:
                print(f"missing: {target} (npm {package}@{pkg_version})")
            if not built_ok:
                print(f"missing: version.built = {version}")
            if todo or not built_ok:
                print(f"{len(todo) + (not built_ok)} visdom asset(s) missing in {static_dir}; "
                      "install them with: python -m utils.tools.install_visdom_assets")
                return 1
            print(f"all visdom assets present in {static_dir} (version.built = {version})")
            return 0
        written = install(static_dir, args.cache)
        if written:
            print(f"installed {written} file(s) into {static_dir}")
        else:
            print(f"all visdom assets already present in {static_dir}; nothing to do")
        return 0
    except AssetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
