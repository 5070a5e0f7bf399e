"""Cache-key fingerprints of waveform day files: remembered across builds, never trusted
after the file changed."""

from __future__ import annotations

import ast
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import flows.caching as caching
from flows.build import STAGE_CODE


def _fingerprint_in_new_process(path: Path, env: dict[str, str]) -> str:
    """``file_fingerprint(path)`` computed by a fresh Python process (a later build)."""
    code = "import sys; from pathlib import Path; import flows.caching as c; " + (
        "print(c.file_fingerprint(Path(sys.argv[1])))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_day_file_hash_is_remembered_across_processes_and_redone_after_a_change(tmp_path):
    env = {**os.environ, "EQCAT_CACHE_DIR": str(tmp_path / "cache")}
    day = tmp_path / "XX.X01..HHZ.D.2000.282"
    day.write_bytes(b"A" * 4096)
    first = _fingerprint_in_new_process(day, env)
    assert first.endswith(":" + caching.sha256_file(day))
    assert (tmp_path / "cache" / "file_hashes.sqlite").is_file()

    # A later build takes the hash from the store instead of reading the file again: a
    # marker written into the store for this file state comes back.
    store = sqlite3.connect(tmp_path / "cache" / "file_hashes.sqlite")
    (count,) = store.execute("SELECT count(*) FROM file_hash").fetchone()
    assert count == 1
    store.execute("UPDATE file_hash SET sha256 = 'remembered'")
    store.commit()
    assert _fingerprint_in_new_process(day, env).endswith(":remembered")

    # Same size and mtime, other content (what `cp -p` or rsync -a can leave): hashed again.
    stat = day.stat()
    day.write_bytes(b"B" * 4096)
    os.utime(day, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = _fingerprint_in_new_process(day, env)
    assert again != first
    assert again.endswith(":" + caching.sha256_file(day))


def test_an_upgraded_library_changes_every_cache_key(monkeypatch):
    """The code version that enters every cache key covers the libraries that compute."""
    before = caching.code_version.__wrapped__()
    upgraded = {**caching.software_versions(), "tensorflow": "99.0"}
    monkeypatch.setattr(caching, "software_versions", lambda: upgraded)
    assert caching.code_version.__wrapped__() != before


def _copy_code(tmp_path: Path) -> Path:
    """A copy of the pipeline package and the templates, as :func:`code_version` reads them."""
    root = tmp_path / "code"
    source = caching.PIPELINE_ROOT.parent
    for folder in ("pipeline", "hypo_templates"):
        shutil.copytree(
            source / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    return root


def _versions(root: Path) -> dict[str, str]:
    stages = {
        stage: caching.code_version.__wrapped__(code, root) for stage, code in STAGE_CODE.items()
    }
    return {**stages, "all": caching.code_version.__wrapped__(None, root)}


def _changed(root: Path, relative: str, before: dict[str, str]) -> set[str]:
    """The keys of :func:`_versions` that a comment appended to ``relative`` changes."""
    path = root / relative
    path.write_text(path.read_text() + "\n# changed\n")
    after = _versions(root)
    path.write_text(path.read_text().removesuffix("\n# changed\n"))
    return {name for name in before if after[name] != before[name]}


def test_a_stage_code_change_changes_that_stage_and_those_that_import_it(tmp_path):
    """A stage's code version covers the modules its task runs and what they import, not the
    others: a changed report does not re-pick; shared modules and templates change all."""
    root = _copy_code(tmp_path)
    before = _versions(root)
    assert len(set(before.values())) == len(before)
    assert _changed(root, "pipeline/report/html.py", before) == {"report", "all"}
    assert _changed(root, "pipeline/picking/extract.py", before) == {"pick", "all"}
    assert _changed(root, "pipeline/location/runner.py", before) == {"locate", "all"}
    # the download code (FDSN, Hi-net, station queries) is the download stage's alone; the
    # stages reading the archive import the waveforms package, which imports it on first use
    for source in ("download", "fdsn", "hinet", "credentials", "station_sources"):
        assert _changed(root, f"pipeline/waveforms/{source}.py", before) == {"download", "all"}
    assert _changed(root, "pipeline/waveforms/reader.py", before) == {
        "download", "pick", "relocate", "magnitude", "all"
    }  # fmt: skip
    assert _changed(root, "pipeline/rundir.py", before) == set(before)
    assert _changed(root, "pipeline/velocity.py", before) == set(before) - {"pick"}
    assert _changed(root, "hypo_templates/velocity/tottori.yaml", before) == set(before)
    # a release that changes no stage's code (only the version) keeps the stage caches
    assert _changed(root, "pipeline/__init__.py", before) == {"all"}


def test_the_root_package_holds_only_its_docstring_and_version():
    """What :func:`code_version` leaves out of the stage hashes must stay code-free."""
    tree = ast.parse((caching.PIPELINE_ROOT / "__init__.py").read_text())
    docstring, version = tree.body
    assert isinstance(docstring, ast.Expr) and isinstance(docstring.value, ast.Constant)
    assert isinstance(version, ast.Assign) and ast.unparse(version.targets[0]) == "__version__"
    assert isinstance(version.value, ast.Constant)


def test_imported_modules_follow_relative_lazy_and_function_imports(tmp_path):
    package = tmp_path / "pipeline" / "alpha"
    package.mkdir(parents=True)
    for name in ("__init__", "one", "two", "three", "four"):
        (package / f"{name}.py").write_text("")
    (tmp_path / "pipeline" / "__init__.py").write_text("")
    (package / "one.py").write_text(
        "from . import two\n"
        "def f():\n    from pipeline.alpha.three import x\n"
        "LAZY = {'y': 'pipeline.alpha.four', 'text': 'pipeline is not a module'}\n"
        "import numpy\n"
    )
    found = caching.imported_modules("pipeline.alpha.one", tmp_path)
    assert found == {
        "pipeline",
        "pipeline.alpha",
        "pipeline.alpha.two",
        "pipeline.alpha.three",
        "pipeline.alpha.four",
    }


def test_a_name_a_package_imports_on_first_use_counts_where_it_is_imported(tmp_path):
    """``pipeline.waveforms`` serves ``download_waveforms`` from its download module on first
    use (``_LAZY``): importing the package leaves the module out, importing the name takes it."""
    package = tmp_path / "pipeline" / "alpha"
    package.mkdir(parents=True)
    (tmp_path / "pipeline" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("_LAZY = {'heavy_name': 'heavy'}\n")
    for name in ("heavy", "light", "uses_name", "uses_package"):
        (package / f"{name}.py").write_text("")
    (package / "uses_name.py").write_text("from pipeline.alpha import heavy_name\n")
    (package / "uses_package.py").write_text("from pipeline.alpha.light import x\n")
    closure = caching.module_closure(("pipeline.alpha.uses_package",), tmp_path)
    assert closure == {
        "pipeline",
        "pipeline.alpha",
        "pipeline.alpha.light",
        "pipeline.alpha.uses_package",
    }
    assert "pipeline.alpha.heavy" in caching.imported_modules("pipeline.alpha.uses_name", tmp_path)


def test_the_waveforms_package_keeps_its_names_and_imports_no_download_code():
    """Its public names still import; a fresh interpreter importing it (as the stages that
    read the archive do) loads neither the download module nor the FDSN / Hi-net clients."""
    import pipeline.waveforms as waveforms
    from pipeline.waveforms.download import download_waveforms

    assert waveforms.download_waveforms is download_waveforms
    for name in waveforms.__all__:
        getattr(waveforms, name)  # AttributeError for a name the package lost
    code = (
        "import sys, pipeline.waveforms, pipeline.waveforms.reader, pipeline.waveforms.inventory\n"
        "print(sorted(m for m in sys.modules if m.startswith('pipeline.waveforms.')))"
    )
    env = {**os.environ, "PYTHONPATH": str(caching.PIPELINE_ROOT.parent)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    loaded = done.stdout.strip()
    assert done.returncode == 0 and "pipeline.waveforms.reader" in loaded, done.stderr
    for module in ("download", "fdsn", "hinet", "credentials", "station_sources"):
        assert f"pipeline.waveforms.{module}'" not in loaded


def _task_imports(function: ast.FunctionDef) -> dict[str | None, set[str]]:
    """Pipeline modules a task function of ``flows/build.py`` imports: under ``None`` those
    of every call, under a stage name those inside its ``if stage == "..."`` branch."""
    found: dict[str | None, set[str]] = {None: set()}

    def visit(nodes: list[ast.stmt], branch: str | None) -> None:
        for node in nodes:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipeline"):
                found.setdefault(branch, set()).update(
                    {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
                )
            elif isinstance(node, ast.If):
                test = node.test
                inner = branch
                if isinstance(test, ast.Compare) and isinstance(test.comparators[0], ast.Constant):
                    inner = test.comparators[0].value
                visit(node.body, inner)
                visit(node.orelse, branch)

    visit(function.body, None)
    return found


def test_stage_code_lists_every_pipeline_module_the_tasks_call():
    """Each module a task of ``flows/build.py`` imports is inside its stage's code version
    (a task calling a module its stage does not list would be served from a stale cache)."""
    import flows.build

    tree = ast.parse(Path(flows.build.__file__).read_text())
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    calls = {
        "download": _task_imports(functions["download_task"])[None],
        "pick": set().union(
            *(
                _task_imports(functions[name])[None]
                for name in ("pick_station_day_task", "_load_model")
            )
        ),
    }
    stage_imports = _task_imports(functions["_stage_task"])
    for stage in ("associate", "locate", "relocate", "magnitude", "report"):
        calls[stage] = stage_imports[None] | stage_imports[stage]
    root = caching.PIPELINE_ROOT.parent
    for stage, modules in calls.items():
        closure = caching.module_closure(STAGE_CODE[stage], root)
        real = {m for m in modules if caching._module_file(m, root) is not None}
        assert real and real <= closure, (stage, real - closure)


def test_a_scenario_download_is_keyed_on_its_station_list_and_velocity_model(tmp_path):
    """The files a synthetic scenario is generated from enter the download's key: an edited
    velocity model or station list (same paths) generates the data again."""
    from flows.build import download_cache, download_task
    from pipeline.config import load_config
    from pipeline.rundir import RunDir
    from pipeline.synthetic.params import DEFAULT_STATIONS_CSV
    from pipeline.velocity import model_path

    model, stations = tmp_path / "vm.yaml", tmp_path / "stations.csv"
    shutil.copy(model_path("tottori"), model)
    shutil.copy(DEFAULT_STATIONS_CSV, stations)
    config = tmp_path / "build.yaml"
    config.write_text(
        "name: t\nstarttime: 2000-10-08T05:00:00\nendtime: 2000-10-08T06:00:00\n"
        f"output_dir: {tmp_path / 'runs'}\n"
        f"scenario: {{velocity_model: {model}, stations_csv: {stations}}}\n"
    )
    cfg = load_config(str(config))
    run = RunDir(tmp_path / "runs" / "t")

    def key() -> str:
        return caching.description_key(download_task.name, download_cache(cfg, run))

    first = key()
    assert key() == first
    model.write_text(model.read_text().replace("vp: 5.20", "vp: 5.30"))
    second = key()
    assert second != first
    stations.write_text(stations.read_text().replace("\n", "\r\n", 1))
    assert key() not in (first, second)


def test_the_keras_config_file_enters_the_picking_key(tmp_path, monkeypatch):
    """Keras reads ``keras.json`` (float type, epsilon, backend) when imported: a changed
    setting or ``KERAS_BACKEND`` must not serve picks made under another; the file Keras
    writes on its first import (its defaults) must not re-pick what was picked without it."""
    from flows.build import KERAS_DEFAULTS, keras_settings

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    missing = keras_settings()
    (tmp_path / "keras.json").write_text(json.dumps(KERAS_DEFAULTS, indent=4))
    assert keras_settings() == missing
    (tmp_path / "keras.json").write_text(json.dumps({**KERAS_DEFAULTS, "floatx": "float16"}))
    float16 = keras_settings()
    (tmp_path / "keras.json").write_text("{not json")
    unreadable = keras_settings()
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    jax = keras_settings()
    assert len({json.dumps(v, sort_keys=True) for v in (missing, float16, unreadable, jax)}) == 4
