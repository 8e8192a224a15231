"""The layering rules of docs/decisions.md, checked on the source rather than trusted."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICE_CLIENTS = {"ray", "aiokafka", "asyncpg"}
# subpackages of `ecgstream` above the domain core: the service clients, and the tools and
# command line (evidence and operator tools apart from the product); the rest is domain code
TOOL_SUBPACKAGES = ("cli", "benchmarks", "planning", "audit", "fuzzing", "demo")
IO_SUBPACKAGES = {"io", *TOOL_SUBPACKAGES}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def _domain_modules_importing(forbidden: set[str]) -> dict[str, list[str]]:
    offenders = {}
    for path in (ROOT / "ecgstream").rglob("*.py"):
        relative = path.relative_to(ROOT / "ecgstream")
        if relative.parts[0] in IO_SUBPACKAGES:
            continue
        bad = _imported_roots(path) & forbidden
        if bad:
            offenders[str(relative)] = sorted(bad)
    return offenders


def test_domain_modules_import_no_service_client() -> None:
    assert _domain_modules_importing(SERVICE_CLIENTS) == {}


def test_domain_modules_import_no_service_package() -> None:
    assert _domain_modules_importing({"cluster", "actors", "serve_app", "tuning", "station"}) == {}


PROJECT_PACKAGES = ("ecgstream", "actors", "cluster", "serve_app", "tuning", "station")


def _project_modules() -> dict[str, Path]:
    modules = {}
    for package in PROJECT_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports, anywhere in it (imports inside functions too:
    they hide circles, they do not remove them). `from pkg import sub` is an edge to `sub`."""
    modules = _project_modules()

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{up}.{base}" if base else up
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
                names = subs if len(subs) == len(node.names) else [base, *subs]
            else:
                continue
            found |= {o for n in names if n.split(".")[0] in PROJECT_PACKAGES and (o := owner(n))}
        graph[module] = found - {module}
    return graph


def test_the_project_imports_have_no_circle() -> None:
    """A circle means neither module can be understood (or tested, or moved) without the other;
    the layers of docs/architecture.md are only real without them."""
    import graphlib

    try:
        graphlib.TopologicalSorter(_import_graph()).prepare()
    except graphlib.CycleError as exc:
        raise AssertionError(f"import circle: {' -> '.join(exc.args[1])}") from None


def test_the_circle_check_sees_a_circle_hidden_in_a_function() -> None:
    import graphlib

    graph = _import_graph()
    assert "ecgstream.lanes" in graph["serve_app.inference"]  # a top-level import
    assert "ecgstream.fuzzing._atheris_pass" in graph["ecgstream.fuzzing.runner"]  # in a def
    graph["ecgstream.lanes"].add("serve_app.inference")  # the circle this issue removed
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError:
        return
    raise AssertionError("a circle went unseen")


# docs/architecture.md: each layer imports only its own and lower layers
LAYERS = ("domain", "clients", "runtime", "control", "tools")
# modules whose layer is not their package's: the pipeline's control plane lives beside the
# actors it starts, the stream supervisor is a Serve app that starts the pool, and the edge
# runner's command line sits in the edge package that the edge device installs alone
LAYER_OF_MODULE = {
    "actors.pipeline": "control",
    "serve_app.stream_app": "control",
    "ecgstream.edge.cli": "tools",
}


def layer_of(module: str) -> str:
    if module in LAYER_OF_MODULE:
        return LAYER_OF_MODULE[module]
    if module.split(".")[:2] in [["ecgstream", sub] for sub in TOOL_SUBPACKAGES]:
        return "tools"
    if module.startswith(("cluster", "tuning")):
        return "control"
    if module.startswith(("actors", "serve_app", "station")):
        return "runtime"
    if module.startswith("ecgstream.io"):
        return "clients"
    return "domain"


def test_no_module_imports_a_higher_layer() -> None:
    upward = sorted(
        f"{module} ({layer_of(module)}) -> {dep} ({layer_of(dep)})"
        for module, deps in _import_graph().items()
        for dep in deps
        if LAYERS.index(layer_of(dep)) > LAYERS.index(layer_of(module))
    )
    assert upward == []


def _unit(name: str) -> str:
    """The unit a private name stays inside: a top-level package, or a subpackage of ecgstream."""
    parts = name.split(".")
    if parts[0] == "ecgstream" and len(parts) > 1 and (ROOT / "ecgstream" / parts[1]).is_dir():
        return ".".join(parts[:2])
    return parts[0]


def _private_references(module: str, path: Path) -> list[str]:
    """The names `module` imports that are private to another unit: a leading underscore on the
    imported name or on any part of the module path it comes from."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] not in PROJECT_PACKAGES or _unit(name) == _unit(module):
                continue
            if any(part.startswith("_") for part in name.split(".")[1:]):
                found.append(f"{module} imports {name}")
    return found


def test_no_module_imports_another_packages_private_names() -> None:
    """A leading underscore means "may change without notice": only its own package uses it."""
    offenders = [
        found
        for module, path in _project_modules().items()
        for found in _private_references(module, path)
    ]
    assert offenders == []


def test_the_private_name_check_sees_a_private_module_and_a_private_name() -> None:
    here = "serve_app.api"
    assert _private_references(here, _write("from actors._consumer import ConsumerActor")) == [
        f"{here} imports actors._consumer.ConsumerActor"
    ]
    assert _private_references(here, _write("from cluster import _ray_head")) == [
        f"{here} imports cluster._ray_head"
    ]
    assert _private_references(here, _write("from serve_app._rate_limit import Budget")) == []


def _write(source: str) -> Path:
    import tempfile

    path = Path(tempfile.mkstemp(suffix=".py")[1])
    path.write_text(source)
    return path


# modules that nothing in the project imports because something outside Python names them: the
# console scripts of pyproject.toml, the Serve application path, the uvicorn app, `python -m`
ENTRY_POINTS = {
    "ecgstream.cli.app": "console script `ecgstream`",
    "ecgstream.edge.cli": "console script `ecgstream-edge`",
    "serve_app.stream_app": "import_path of k8s/base/rayservice.yaml",
}


def test_implementation_modules_are_private_by_name() -> None:
    """A module of a package that no other package imports is the package's own business: its
    name starts with an underscore, so a reader sees the package's surface in the file names. The
    flat domain core (`ecgstream/*.py`) is the shared vocabulary and is exempt."""
    modules = _project_modules()
    graph = _import_graph()
    importers: dict[str, set[str]] = {m: set() for m in modules}
    for module, deps in graph.items():
        for dep in deps:
            importers[dep].add(module)
    should_be_private = []
    for module, path in modules.items():
        if path.name == "__init__.py" or path.stem.startswith("_") or module in ENTRY_POINTS:
            continue
        package = module.rpartition(".")[0]
        if package in ("ecgstream", ""):
            continue
        outside = {m for m in importers[module] if _unit(m) != _unit(module) or m == package}
        if not outside:
            should_be_private.append(module)
    assert should_be_private == []


def test_every_package_declares_its_public_surface() -> None:
    """`__all__` in each package's __init__ names what is public (modules, or names it defines);
    every public module is listed, and nothing listed is missing."""
    problems = []
    for init in [p for package in PROJECT_PACKAGES for p in (ROOT / package).rglob("__init__.py")]:
        tree = ast.parse(init.read_text())
        declared = next(
            (
                ast.literal_eval(node.value)
                for node in tree.body
                if isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
            ),
            None,
        )
        where = init.parent.relative_to(ROOT)
        if declared is None:
            problems.append(f"{where}: no __all__")
            continue
        folder = init.parent
        modules = {p.stem for p in folder.glob("*.py") if not p.name.startswith("_")}
        modules |= {p.name for p in folder.iterdir() if (p / "__init__.py").exists()}
        defined = {
            alias.asname or alias.name
            for node in tree.body
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        if missing := sorted(set(declared) - modules - defined):
            problems.append(f"{where}: __all__ names what is not there: {missing}")
        if unlisted := sorted(modules - set(declared)) if not defined else []:
            problems.append(f"{where}: public modules not in __all__: {unlisted}")
    assert problems == []


def test_the_type_checker_is_strict_on_exactly_the_domain_core() -> None:
    """`make lint` runs mypy with [tool.mypy]: strict flags on `ecgstream.*`, relaxed on its
    subpackages above the domain core; a new such subpackage must be named in both places."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert set(config["files"]) == set(PROJECT_PACKAGES)
    strict, relaxed = config["overrides"]
    assert strict["module"] == ["ecgstream.*"] and strict["disallow_untyped_defs"] is True
    assert strict["disallow_any_generics"] is True and strict["no_implicit_reexport"] is True
    assert set(relaxed["module"]) == {f"ecgstream.{sub}.*" for sub in IO_SUBPACKAGES}
    assert relaxed["disallow_untyped_defs"] is False
    assert "mypy" in (ROOT / "Makefile").read_text().split("lint:")[1].split("\n\n")[0]


def test_unit_tests_mirror_the_packages() -> None:
    """tests/unit/<package path>/test_*.py: a module's tests sit under its package's path (the
    manifests' under k8s/); only the whole-project checks here stay at the top."""
    unit = ROOT / "tests" / "unit"
    misplaced = []
    for path in unit.rglob("test_*.py"):
        folder = path.parent.relative_to(unit)
        if folder == Path():
            if path.name != Path(__file__).name:
                misplaced.append(str(path.relative_to(unit)))
        elif not (ROOT / folder).is_dir():
            misplaced.append(str(path.relative_to(unit)))
    assert misplaced == []
