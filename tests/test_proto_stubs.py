from pathlib import Path

from laser_serve import protogen


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    fresh = protogen.generate(tmp_path)
    committed = protogen.PACKAGE_DIR / "laser" / "v1"
    for name, text in fresh.items():
        assert (committed / name).read_text() == text, (
            f"{name} is stale: run `python -m laser_serve.protogen` and commit the result"
        )
