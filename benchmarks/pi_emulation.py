"""A Raspberry Pi without a Pi: saunet-run under aarch64 emulation, its masks compared with this machine's.

    python -m saunet.benchmarks.pi_emulation [--model M.tflite] [--image PNG ...] [--cache DIR] [--report FILE.json]

Builds once, and caches, the userland of 64-bit Raspberry Pi OS (bookworm): Debian bookworm's arm64
python3.11 and the few shared libraries it needs, unpacked with dpkg-deb, plus the aarch64 wheels that
`pip install "saunet[pi]"` puts on such a Pi (ai-edge-litert, pinned to this machine's version; or, with
`--backend tflite-runtime`, tflite-runtime 2.14 with numpy 1.26). Then runs `python -m saunet.runtime` on
the same scans twice, here with this venv's interpreter and under `qemu-aarch64-static -cpu cortex-a72`
(a Raspberry Pi 4's core; `--cpu cortex-a76` for a Pi 5), both with one thread, and compares every
`<stem>_pred.png` pixel by pixel. Emulation timings mean nothing; the outputs do. Needs Debian's
qemu-user-static, apt-get and dpkg-deb, and the network for the first run only. The host's apt and dpkg
configuration is never changed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

import saunet.runtime
from saunet.benchmarks.report import stamped, write_json
from saunet.runtime.files import write_text
from saunet.runtime.models import BUNDLED_MODEL

QEMU = "qemu-aarch64-static"
SLICES = Path(__file__).resolve().parents[1] / "examples" / "slices"
DEFAULT_IMAGES = ("TCGA_CS_6186_20000601_16.png", "TCGA_DU_5855_19951217_19.png")
DEFAULT_CACHE = Path("~/.cache/saunet/pi-emulation")
DONE = ".complete"  # marker written inside a cache folder as its last step, before it is renamed into place

SUITE = "bookworm"  # Raspberry Pi OS 12 is Debian bookworm
ARCHIVES = (
    ("http://deb.debian.org/debian", SUITE),
    ("http://deb.debian.org/debian", f"{SUITE}-updates"),
    ("http://deb.debian.org/debian-security", f"{SUITE}-security"),
)
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
#: The smallest set that runs saunet-run with either interpreter (found by removing packages until it
#: broke): python3.11 needs libexpat1 to start and libffi8 for ctypes, which both interpreters import;
#: libbz2-1.0 for bz2, which nibabel imports (NIfTI volumes); libssl3 and liblzma5 are optional for
#: Python (hashlib, lzma fall back or are never imported).
DEBS = (
    "libc6",
    "libgcc-s1",
    "libstdc++6",
    "zlib1g",
    "libexpat1",
    "libffi8",
    "libbz2-1.0",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "python3.11-minimal",
)
#: bookworm has glibc 2.36: wheels tagged manylinux_2_17 (= manylinux2014) up to manylinux_2_36 run there.
#: pip does not expand an explicit --platform to older tags, and tflite-runtime 2.14 is manylinux_2_34 only.
PLATFORMS = tuple(f"manylinux_2_{v}_aarch64" for v in range(36, 16, -1)) + ("manylinux2014_aarch64",)

BACKENDS = ("ai-edge-litert", "tflite-runtime")
#: What the `pi` extra installs on 64-bit Raspberry Pi OS, and the same release as here: identical
#: masks are expected. tflite-runtime (32-bit Pi OS's interpreter, here in its aarch64 build) has
#: other int8 kernels than ai-edge-litert's XNNPACK and may differ by a step at the threshold.
DEFAULT_BACKEND = "ai-edge-litert"
#: The cores qemu emulates, the board that has them, and what its kernel shows in /proc/cpuinfo.
CPUS = {
    "cortex-a72": ("Raspberry Pi 4", "0xd08", "0x0", "3", "fp asimd evtstrm crc32 cpuid"),
    "cortex-a76": (
        "Raspberry Pi 5",
        "0xd0b",
        "0x4",
        "1",
        ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"),
    ),
}


class SetupError(RuntimeError):
    """A missing tool, a failed download or a missing input: one line, naming the problem."""


def wheel_requirements(backend: str) -> list[str]:
    """The aarch64 wheels for one interpreter, with the runtime's other dependencies.

    tflite-runtime 2.14 is the last release and needs numpy<2. ai-edge-litert is pinned to this
    machine's version when it has one, so that both sides run the same interpreter release.
    """
    if backend == "tflite-runtime":
        interpreter = ["tflite-runtime==2.14.0", "numpy==1.26.*"]
    else:
        try:
            interpreter = [f"ai-edge-litert=={importlib.metadata.version('ai-edge-litert')}"]
        except importlib.metadata.PackageNotFoundError:
            interpreter = ["ai-edge-litert"]
    return interpreter + ["pillow", "click", "pypng", "nibabel", "pydicom"]


def short_hash(*parts: object) -> str:
    """Names a cache folder after what went into it, so a changed recipe builds a new one."""
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:10]


def problem_line(text: str) -> str:
    """The line of a tool's output that says what went wrong: apt's or pip's first error, else the last line.

    (apt's last line is a summary, "Some index files failed to download"; its first says why.)
    """
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("E: ", "ERROR: "))]
    return (errors or lines or ["no output"])[0 if errors else -1]


def run_tool(command: list[str], what: str, timeout: float = 1800, **kwargs) -> subprocess.CompletedProcess:
    """Runs a command; any failure becomes a one-line SetupError naming `what` failed."""
    try:
        result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout, **kwargs)
    except FileNotFoundError:
        raise SetupError(f"{command[0]} not found: {what} needs it") from None
    except subprocess.TimeoutExpired:
        raise SetupError(f"{what} did not finish in {timeout:.0f} s") from None
    if result.returncode:
        how = f"signal {-result.returncode}" if result.returncode < 0 else f"exit {result.returncode}"
        raise SetupError(f"{what} failed ({how}): {problem_line(result.stderr or result.stdout)}")
    return result


def require(tool: str, hint: str) -> str:
    """The path of a tool on PATH, or a SetupError saying how to install it."""
    found = shutil.which(tool)
    if not found:
        raise SetupError(f"{tool} not found on PATH: {hint}")
    return found


def is_done(folder: Path) -> bool:
    return (folder / DONE).is_file()


@contextlib.contextmanager
def building(final: Path, record: dict) -> Iterator[Path]:
    """Yields an empty folder beside `final`; renames it onto `final` only if the block succeeds.

    The marker (with `record`, filled in by the block) is written last, inside the folder, and
    the folder is renamed in one step, so an interrupted setup never leaves a `final` that looks
    finished; its `.partial` folder is removed by the next run.
    """
    for stale in final.parent.glob(f".{final.name}.partial-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or not Path(f"/proc/{pid}").exists():
            shutil.rmtree(stale, ignore_errors=True)
    partial = final.with_name(f".{final.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        yield partial
        (partial / DONE).write_text(json.dumps(record, indent=2) + "\n")
        try:
            os.rename(partial, final)
        except OSError:
            if not is_done(final):  # another run finished the same step first: keep its copy
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def apt_options(state: Path) -> list[str]:
    """apt-get options for a private arm64 package list: nothing of the host's apt state is touched.

    The arm64 index is fetched and checked by apt itself: InRelease against Debian's archive
    keyring, and every .deb against the SHA256 in that signed index.
    """
    options = {
        "Dir::Etc": state / "etc",
        "Dir::State": state / "state",
        "Dir::Cache": state / "cache",
        "Dir::State::status": state / "state" / "status",
        "APT::Architecture": "arm64",
        "APT::Architectures::": "arm64",
    }
    if os.geteuid() == 0:  # apt's _apt user cannot enter /root/.cache: download as root, without the warning
        options["APT::Sandbox::User"] = "root"
    return [arg for key, value in options.items() for arg in ("-o", f"{key}={value}")]


def download_debs(cache: Path) -> Path:
    """bookworm's arm64 .debs of DEBS, downloaded once into `cache` (verified by apt, see apt_options)."""
    folder = cache / f"debs-{SUITE}-arm64-{short_hash(ARCHIVES, DEBS)}"
    if is_done(folder):
        return folder
    require("apt-get", "the aarch64 root is built from Debian's packages with apt-get and dpkg-deb")
    require("dpkg-deb", "the aarch64 root is built from Debian's packages with apt-get and dpkg-deb")
    if not KEYRING.is_file():
        raise SetupError(f"{KEYRING} not found: apt-get install debian-archive-keyring")
    record: dict = {"suite": SUITE, "packages": {}}
    with building(folder, record) as partial:
        state = partial / ".apt"  # apt's lists (~20 MB), removed once the .debs are in
        for sub in ("etc/sources.list.d", "etc/preferences.d", "state/lists/partial", "cache/archives/partial"):
            (state / sub).mkdir(parents=True)
        (state / "state" / "status").touch()
        (state / "etc" / "sources.list").write_text(
            "".join(f"deb [arch=arm64 signed-by={KEYRING}] {url} {suite} main\n" for url, suite in ARCHIVES)
        )
        options = apt_options(state)
        run_tool(
            ["apt-get", *options, "--error-on=any", "update"], "downloading Debian's arm64 package index", timeout=600
        )
        run_tool(
            ["apt-get", *options, "download", *DEBS], f"downloading {SUITE} arm64 packages", timeout=600, cwd=partial
        )
        for deb in sorted(partial.glob("*.deb")):
            name, version = run_tool(
                ["dpkg-deb", "--showformat=${Package} ${Version}", "--show", str(deb)], f"reading {deb.name}"
            ).stdout.split()
            record["packages"][name] = {
                "version": version,
                "file": deb.name,
                "sha256": hashlib.sha256(deb.read_bytes()).hexdigest(),
            }
        shutil.rmtree(state)
        missing = set(DEBS) - set(record["packages"])
        if missing:
            raise SetupError(f"downloading {SUITE} arm64 packages failed: no {', '.join(sorted(missing))}")
    return folder


def build_root(cache: Path, debs: Path) -> Path:
    """The aarch64 root for `qemu -L`: every .deb unpacked (dpkg-deb -x, no maintainer scripts)."""
    folder = cache / f"root-{debs.name.removeprefix('debs-')}"
    if is_done(folder):
        return folder
    record = json.loads((debs / DONE).read_text())
    with building(folder, record) as partial:
        for deb in sorted(debs.glob("*.deb")):
            run_tool(["dpkg-deb", "-x", str(deb), str(partial)], f"unpacking {deb.name}")
        (partial / "proc").mkdir()  # for the board's cpuinfo, see write_cpuinfo
        if not (partial / "usr" / "bin" / "python3.11").is_file():
            raise SetupError(f"unpacking {SUITE} arm64 packages failed: no usr/bin/python3.11")
    return folder


def install_wheels(cache: Path, backend: str) -> Path:
    """The aarch64 wheels for `backend`, installed by pip into a folder that goes on PYTHONPATH."""
    requirements = wheel_requirements(backend)
    folder = cache / f"site-{backend}-{short_hash(requirements, PLATFORMS)}"
    if is_done(folder):
        return folder
    record: dict = {"requirements": requirements}
    with building(folder, record) as partial:
        platforms = [arg for tag in PLATFORMS for arg in ("--platform", tag)]
        run_tool(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-warn-conflicts",
                "--target",
                str(partial),
                "--only-binary=:all:",
                "--python-version",
                "3.11",
                "--implementation",
                "cp",
                "--abi",
                "cp311",
                *platforms,
                *requirements,
            ],
            "installing aarch64 wheels with pip",
            timeout=900,
        )
        record["wheels"] = wheel_versions(partial)
    return folder


def wheel_versions(site: Path) -> dict[str, str]:
    """Name -> version of every distribution installed in a --target folder."""
    return {dist.metadata["Name"]: dist.version for dist in importlib.metadata.distributions(path=[str(site)])}


def runtime_shim(cache: Path) -> Path:
    """A PYTHONPATH folder whose `saunet/runtime` links to this install's runtime, not a copy.

    `saunet` is a namespace package (no __init__.py), so the link alone makes `saunet.runtime`
    importable under emulation, with the code that runs here, without installing it there.
    """
    shim = cache / "import"
    (shim / "saunet").mkdir(parents=True, exist_ok=True)
    link = shim / "saunet" / "runtime"
    target = Path(saunet.runtime.__file__).resolve().parent
    if not (link.is_symlink() and link.resolve() == target):
        partial = link.with_name(f".runtime.partial-{os.getpid()}")
        partial.unlink(missing_ok=True)
        partial.symlink_to(target, target_is_directory=True)
        os.replace(partial, link)
    return shim


def write_cpuinfo(root: Path, cpu: str) -> None:
    """Puts the board's /proc/cpuinfo in the root, where `qemu -L` shows it to the guest.

    qemu-user 7.2 passes the host's x86 /proc/cpuinfo through, and the cpuinfo library inside
    ai-edge-litert (XNNPACK, ruy) dereferences NULL when it finds no ARM core there (a
    segmentation fault in allocate_tensors). qemu looks up the guest's absolute paths under -L
    first, so ROOT/proc/cpuinfo is what the guest reads; the rest of /proc stays the host's.
    """
    board, part, variant, revision, features = CPUS[cpu]
    core = (
        f"BogoMIPS\t: 108.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
        f"CPU variant\t: {variant}\nCPU part\t: {part}\nCPU revision\t: {revision}\n\n"
    )
    text = "".join(f"processor\t: {n}\n{core}" for n in range(os.cpu_count() or 1))
    write_text(root / "proc" / "cpuinfo", text + f"Model\t\t: {board} (emulated)\n")


def qemu_version() -> str:
    """E.g. 'qemu-aarch64 version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)'."""
    return run_tool([QEMU, "--version"], f"{QEMU} --version").stdout.splitlines()[0].strip()


def saunet_run(python: list[str], model: Path, images: list[Path], out: Path, what: str, **kwargs) -> dict:
    """saunet-run on the images with one thread, started by `python` (an interpreter command); its results.json."""
    command = [*python, "-m", "saunet.runtime", *map(str, images), "--model", str(model), "--out", str(out)]
    run_tool([*command, "--threads", "1"], what, cwd=out.parent, **kwargs)
    return json.loads((out / "results.json").read_text())


def run_x86(model: Path, images: list[Path], out: Path) -> dict:
    """saunet-run here, with this venv's interpreter."""
    return saunet_run([sys.executable], model, images, out, "saunet-run on x86-64")


def run_aarch64(root: Path, site: Path, shim: Path, cpu: str, model: Path, images: list[Path], out: Path) -> dict:
    """saunet-run under qemu-aarch64-static with the root's python3.11.

    A clean environment: no user site-packages (they would be this machine's x86 ones), no
    bytecode written into the linked runtime folder, and a scratch working directory so that
    nothing beside the scans shadows a module.
    """
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": f"{shim}{os.pathsep}{site}",
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    python = [QEMU, "-cpu", cpu, "-L", str(root), str(root / "usr" / "bin" / "python3.11")]
    return saunet_run(python, model, images, out, f"saunet-run under {QEMU}", timeout=3600, env=env)


def read_mask(path: str | Path) -> np.ndarray:
    """A `_pred.png`, or a volume's `_seg.nii.gz` (voxels in the input's own order)."""
    if str(path).endswith(".nii.gz"):
        import nibabel as nib

        return np.asanyarray(nib.load(path).dataobj)
    return np.asarray(Image.open(path))


def mask_figures(entry: dict) -> tuple[str, int, float | None]:
    """(mask file, tumour pixels or voxels, mean probability inside) of a slice's or a NIfTI volume's entry."""
    if "seg" in entry:
        return entry["seg"], entry["volume"]["tumour_voxels"], entry["volume"]["mean_probability_inside"]
    return entry["mask"], entry["tumour_pixels"], entry["mean_probability_inside"]


def compare(x86: dict, arm: dict) -> list[dict]:
    """Per scan: equal pixels of the two masks, and how far the mean probabilities inside are apart.

    The two runs got the same inputs in the same order, so their results line up one to one.
    """
    rows = []
    for ours, theirs in zip(x86["results"], arm["results"], strict=True):
        row = {"image": ours["input"]}
        if "error" in ours or "error" in theirs:
            rows.append({**row, "compared": False, "error": ours.get("error") or theirs.get("error")})
            continue
        (mask_a, tumour_a, mean_a), (mask_b, tumour_b, mean_b) = mask_figures(ours), mask_figures(theirs)
        a, b = read_mask(mask_a), read_mask(mask_b)
        if a.shape != b.shape:
            rows.append({**row, "compared": False, "error": f"mask shapes differ: {a.shape} vs {b.shape}"})
            continue
        differing = int((a != b).sum())
        means = mean_a, mean_b
        rows.append(
            {
                **row,
                "compared": True,
                "pixels": int(a.size),
                "differing_pixels": differing,
                "agreement": 1 - differing / a.size,
                "identical": differing == 0,
                "tumour_pixels": {"x86_64": tumour_a, "aarch64": tumour_b},
                "mean_probability_inside": {"x86_64": means[0], "aarch64": means[1]},
                "mean_probability_difference": abs(means[0] - means[1]) if None not in means else None,
            }
        )
    return rows


def overall(rows: list[dict]) -> dict:
    compared = [r for r in rows if r["compared"]]
    pixels = sum(r["pixels"] for r in compared)
    differing = sum(r["differing_pixels"] for r in compared)
    gaps = [r["mean_probability_difference"] for r in compared if r["mean_probability_difference"] is not None]
    return {
        "images": len(rows),
        "compared": len(compared),
        "identical": sum(r["identical"] for r in compared),
        "pixels": pixels,
        "differing_pixels": differing,
        "agreement": 1 - differing / pixels if pixels else None,
        "max_mean_probability_difference": max(gaps) if gaps else None,
    }


def host_backend_version(backend: str) -> str | None:
    try:
        return importlib.metadata.version(backend)
    except importlib.metadata.PackageNotFoundError:
        return None


def pick_model(model: Path | None) -> Path:
    """--model, else the bundled int8 model; a one-line error if neither is there."""
    if model is None:
        if not BUNDLED_MODEL.is_file():
            raise SetupError(
                "no model is bundled with this install yet; pass --model FILE.tflite (export one with saunet-export)"
            )
        return BUNDLED_MODEL
    if not model.is_file():
        raise SetupError(f"{model}: no such model file")
    return model.resolve()


def pick_images(images: list[Path] | None) -> list[Path]:
    """--image files, else two of the bundled real slices (examples/slices)."""
    chosen = images or [SLICES / name for name in DEFAULT_IMAGES]
    for image in chosen:
        if not image.is_file():
            raise SetupError(f"{image}: no such image")
    return [image.resolve() for image in chosen]


def print_table(report: dict) -> None:
    arm, x86 = report["aarch64"], report["x86_64"]
    print(f"{report['date']}, {report['machine']}")
    shown = {arm["backend"], "numpy", "pillow"}
    wheels = ", ".join(f"{name} {version}" for name, version in sorted(arm["wheels"].items()) if name.lower() in shown)
    print(f"x86-64: Python {x86['python']}, {x86['backend']} {x86['backend_version']}, numpy {x86['numpy']}")
    print(
        f"aarch64: qemu {arm['qemu'].split()[2]} -cpu {arm['cpu']} ({arm['board']}), bookworm python3.11 "
        f"{arm['python']}, {wheels}"
    )
    print(f"{'image':<34} {'pixels':>7} {'differing':>9} {'agreement':>10} {'mean p diff':>11}")
    for row in report["results"]:
        name = Path(row["image"]).name
        if not row["compared"]:
            print(f"{name:<34} not compared: {row['error']}")
            continue
        gap = row["mean_probability_difference"]
        print(
            f"{name:<34} {row['pixels']:>7} {row['differing_pixels']:>9} {100 * row['agreement']:>9.4f}% "
            f"{'-' if gap is None else f'{gap:.6f}':>11}"
        )
    total = report["overall"]
    agreement = "n/a" if total["agreement"] is None else f"{100 * total['agreement']:.4f}%"
    print(
        f"overall: {total['identical']} of {total['images']} masks identical, {total['differing_pixels']} of "
        f"{total['pixels']} pixels differ, agreement {agreement}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m saunet.benchmarks.pi_emulation", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model", type=Path, default=None, help="a .tflite model [default: the bundled int8 one]")
    parser.add_argument(
        "--image",
        type=Path,
        nargs="+",
        default=None,
        help="scans to segment, slices or NIfTI volumes [default: two of examples/slices]",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help=f"where the aarch64 root and wheels are kept [default: $SAUNET_PI_CACHE or {DEFAULT_CACHE}]",
    )
    parser.add_argument("--report", type=Path, default=None, help="JSON report [default: CACHE/report.json]")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=DEFAULT_BACKEND,
        help=f"the interpreter installed under emulation [default: {DEFAULT_BACKEND}]",
    )
    parser.add_argument(
        "--cpu",
        choices=sorted(CPUS),
        default="cortex-a72",
        help="the core qemu emulates: cortex-a72 (Pi 4) or cortex-a76 (Pi 5) [default: cortex-a72]",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="keep both runs' outputs here (x86_64/ and aarch64/) [default: a temporary folder]",
    )
    return parser.parse_args(argv)


def cache_folder(cache: Path | None) -> Path:
    chosen = cache or Path(os.environ.get("SAUNET_PI_CACHE") or DEFAULT_CACHE)
    return chosen.expanduser().resolve()


def emulate(args: argparse.Namespace, work: Path) -> dict:
    """Sets up (or reuses) the root and wheels, runs both sides into `work`, returns the report."""
    model, images = pick_model(args.model), pick_images(args.image)
    require(QEMU, "apt-get install qemu-user-static")
    work.mkdir(parents=True, exist_ok=True)
    cache = cache_folder(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    debs = download_debs(cache)
    root, site = build_root(cache, debs), install_wheels(cache, args.backend)
    shim = runtime_shim(cache)
    write_cpuinfo(root, args.cpu)
    ready = time.perf_counter()
    x86 = run_x86(model, images, work / "x86_64")
    ran_x86 = time.perf_counter()
    arm = run_aarch64(root, site, shim, args.cpu, model, images, work / "aarch64")
    ran_arm = time.perf_counter()
    if arm["backend"] != args.backend:
        raise SetupError(f"the emulated saunet-run used {arm['backend']}, not {args.backend}")
    packages = json.loads((debs / DONE).read_text())["packages"]
    rows = compare(x86, arm)
    return stamped(
        {
            "model": str(model),
            "images": [str(image) for image in images],
            "threads": 1,
            "threshold": x86["threshold"],
            "x86_64": {
                "python": platform.python_version(),
                "backend": x86["backend"],
                "backend_version": host_backend_version(x86["backend"]),
                "numpy": np.__version__,
                "pillow": Image.__version__,
            },
            "aarch64": {
                "qemu": qemu_version(),
                "cpu": args.cpu,
                "board": CPUS[args.cpu][0],
                "python": packages["python3.11-minimal"]["version"],
                "backend": arm["backend"],
                "wheels": wheel_versions(site),
                "debs": {k: v["version"] for k, v in packages.items()},
                "root": str(root),
            },
            "results": rows,
            "overall": overall(rows),
            "seconds": {
                "setup": round(ready - started, 1),
                "x86_64": round(ran_x86 - ready, 1),
                "aarch64_emulated": round(ran_arm - ran_x86, 1),
            },
        }
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        if args.out:
            report = emulate(args, args.out.resolve())
        else:
            with tempfile.TemporaryDirectory(prefix="saunet-pi-") as work:
                report = emulate(args, Path(work))
    except SetupError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    path = args.report or cache_folder(args.cache) / "report.json"
    write_json(path, report)
    print_table(report)
    print(f"report: {path}")


if __name__ == "__main__":
    main()
