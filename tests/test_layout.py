"""The layout holds: layers import downward only, no code branches on a method's name, scripts stay thin."""
import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = REPO / "simplepose"
SCRIPTS = ["training/coco_masks_hdf5.py", "training/train_pose.py", "testing/evaluation.py", "demo_image.py",
           "demo_video.py"]
COMMANDS = sorted((PACKAGE / "commands").glob("*.py"))

#: Modules every layer may use: they import nothing above themselves.
FOUNDATION = {"simplepose._version", "simplepose.errors", "simplepose.atomic", "simplepose.skeleton",
              "simplepose.pose", "simplepose.headmeta"}
#: Package (or module) -> what its modules may import from simplepose besides themselves and the foundation.
LAYERS = {
    "simplepose.data": set(),
    "simplepose.decode": set(),
    "simplepose.models": {"simplepose.losses", "simplepose.optimizers"},  # Keras objects, one layer
    "simplepose.losses": set(), "simplepose.optimizers": set(),
    "simplepose._version": set(), "simplepose.errors": set(), "simplepose.atomic": set(),
    "simplepose.skeleton": set(), "simplepose.pose": set(), "simplepose.headmeta": set(),
}
#: The only modules that may name a method or architecture in a comparison: the registry and the methods.
METHOD_MODULES = {"simplepose/methods.py", "simplepose/bottomup/method.py", "simplepose/topdown/method.py"}
NAMES = {"bottomup", "topdown", "model3", "openpose"}


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: pathlib.Path) -> set:
    """Every simplepose module ``path`` imports, at module level or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return {name for name in out if name == "simplepose" or name.startswith("simplepose.")}


def allowed(importer: str, imported: str) -> bool:
    """Whether a module of a lower layer may import ``imported`` (modules outside the layers may import anything)."""
    layer = next((k for k in LAYERS if importer == k or importer.startswith(k + ".")), None)
    if layer is None:
        return True
    return any(imported == m or imported.startswith(m + ".") for m in FOUNDATION | LAYERS[layer] | {layer})


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_lower_layers_import_nothing_above_them(path):
    name = module_name(path)
    bad = sorted(m for m in imports(path) if not allowed(name, m))
    assert not bad, f"{name} imports {bad} from above its layer"


def test_no_code_outside_the_registry_branches_on_a_method_name():
    offenders = []
    for path in list(PACKAGE.rglob("*.py")) + [REPO / s for s in SCRIPTS]:
        rel = str(path.relative_to(REPO))
        if rel in METHOD_MODULES:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                consts = [c for c in [node.left, *node.comparators] if isinstance(c, ast.Constant)]
                for c in consts:
                    if c.value in NAMES or (isinstance(c.value, (tuple, frozenset)) and NAMES & set(c.value)):
                        offenders.append(f"{rel}:{node.lineno}")
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "isinstance":
                text = ast.unparse(node.args[1]) if len(node.args) > 1 else ""
                if "TopDownSamples" in text or "SimplePoseNet" in text or "TopDownNet" in text:
                    offenders.append(f"{rel}:{node.lineno}")
    assert not offenders, f"method-name branches outside the registry: {offenders}"


@pytest.mark.parametrize("script", SCRIPTS + [str(p.relative_to(REPO)) for p in COMMANDS])
def test_scripts_are_thin(script):
    """Entry points parse, call the library and report: the four scripts wrap the commands, each <= 80 lines."""
    text = (REPO / script).read_text()
    assert len(text.splitlines()) <= 80, f"{script}: {len(text.splitlines())} lines"
    assert "sys.path" not in text


def test_benchmarks_do_not_patch_the_import_path():
    for path in (REPO / "benchmarks").glob("*.py"):
        assert "sys.path" not in path.read_text(), path.name


def test_no_module_prints_or_exits():
    """Library code logs, never prints or exits; simplepose/commands and the __main__ modules are scripts."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "commands" or path.name in ("cli.py", "__main__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = ast.unparse(node.func)
                if func in ("print", "sys.exit", "exit", "quit", "cv2.imshow"):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {func}")
    assert not offenders, offenders
