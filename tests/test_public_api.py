"""The public API: ``ks.__all__`` is the documented list, and nothing else is reachable as ``ks.*``.

The list is the table "Public API" of ``docs/ARCHITECTURE.md``, parsed here, so that the
code and the page cannot drift apart.
"""

import importlib
import re
from pathlib import Path

import pytest

import keras_skipae as ks

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "keras_skipae"
ROW = re.compile(r"^\|\s*`ks\.(\w+)`\s*\|")

# Names of the app aliases and the pre-0.2 leftovers that are gone (CHANGELOG, 0.2).
REMOVED_FROM_KS = ["demo", "workflows", "baselines", "callbacks", "metrics", "apps"]


def documented_api(text: str) -> list[str]:
    """The ``ks.<name>`` rows of the section "## Public API" of a markdown page."""
    match = re.search(r"^## Public API\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    if match is None:
        raise ValueError("The page has no section '## Public API'. Received: no such heading")
    return [m.group(1) for line in match.group(1).splitlines() if (m := ROW.match(line))]


def _sub_packages() -> list[str]:
    return sorted(".".join(p.parent.relative_to(ROOT).parts) for p in PACKAGE.rglob("__init__.py"))


def test_ks_all_is_the_documented_api():
    documented = documented_api((ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8"))
    assert len(documented) == len(set(documented)), "a name is listed twice"
    assert sorted(ks.__all__) == sorted(documented)
    assert dir(ks) == sorted(ks.__all__)


def test_every_public_name_resolves():
    for name in ks.__all__:
        assert getattr(ks, name) is not None, name
    assert callable(ks.export)  # the package module is also the entry point
    assert ks.keras_metrics.__name__ == "keras_skipae.keras_metrics"
    assert ks.evaluation.metrics.__name__ == "keras_skipae.evaluation.metrics"
    assert ks.training.callbacks.__name__ == "keras_skipae.training.callbacks"


@pytest.mark.parametrize("name", ["demo", "workflows", "baselines", "callbacks", "metrics"])
def test_removed_aliases_are_gone(name):
    assert name not in ks.__all__
    with pytest.raises(AttributeError, match=f"has no attribute '{name}'"):
        getattr(ks, name)


def test_apps_are_not_public():
    # keras_skipae.apps is a real sub-package (the CLI imports it), so once imported it is an
    # attribute of the package like any submodule; it is neither listed nor resolved lazily.
    assert set(REMOVED_FROM_KS).isdisjoint(ks.__all__)
    with pytest.raises(AttributeError, match="has no attribute 'apps'"):
        ks.__getattr__("apps")


@pytest.mark.parametrize("package", _sub_packages())
def test_every_sub_package_has_an_all_of_existing_names(package):
    module = importlib.import_module(package)
    assert isinstance(getattr(module, "__all__", None), list), package
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []
    assert len(module.__all__) == len(set(module.__all__))


def test_the_pre_0_2_leftovers_are_gone():
    from keras_skipae import data, scoring
    from keras_skipae.apps import demo

    assert "evaluate_run" not in demo.__all__  # it lives in apps.workflows
    assert not hasattr(scoring, "scoring_settings")  # ScoringConfig(...).to_dict()
    with pytest.raises(ModuleNotFoundError, match="keras_skipae.data.corruption'"):
        importlib.import_module("keras_skipae.data.corruption")  # now data.corruptions
    assert data.corruptions.__name__ == "keras_skipae.data.corruptions"


def test_the_parser_reads_only_the_public_api_section():
    text = (
        "# T\n\n## Public API\n\n| name | what |\n|---|---|\n| `ks.a` | x |\n| `ks.b_c` | y |\n"
        "not a row `ks.z`\n\n## Next\n\n| `ks.later` | z |\n"
    )
    assert documented_api(text) == ["a", "b_c"]
    assert documented_api("## Public API\n| `ks.last` | the page's last section |\n") == ["last"]
    with pytest.raises(ValueError, match="no section '## Public API'"):
        documented_api("# T\n\n## Other\n")


def test_the_changelog_lists_each_removed_name():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    unreleased = text.split("## Unreleased (0.2)", 1)[1].split("\n## ", 1)[0]
    removed = unreleased.split("### Removed", 1)[1].split("\n### ", 1)[0]
    for name in REMOVED_FROM_KS:
        assert f"`ks.{name}`" in removed, name
    for old in ("scoring_settings", "--method", "keras_skipae.data.corruption`", "**legacy"):
        assert old in removed, old
