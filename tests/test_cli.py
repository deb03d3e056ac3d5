"""`dgs`: a bad flag is one line on stderr and exit code 2, never a traceback or invalid JSON."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from service.cli import _print_json, main
from service.core.guiders.paper import SCALE_RANGE

SHIPPED_STORE = Path(__file__).resolve().parents[1] / "model_store"
DGS = Path(sys.executable).parent / "dgs"


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's exit
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


def strict_json(text: str) -> dict:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def no_work(monkeypatch) -> None:
    """Training, reproduce and bench fail the test if reached: bad flags are refused first."""

    def reached(*args, **kwargs):
        raise AssertionError("ran the work instead of refusing the flags first")

    for target in (
        "service.worker.train.train",
        "experiments.reproduce.reproduce",
        "experiments.bench.bench",
    ):
        monkeypatch.setattr(target, reached)


def sample_args(*extra: str) -> list[str]:
    store = ["--model-store", str(SHIPPED_STORE)]
    return ["sample", "--model", "moons-density", *store, "--n", "8", "--steps", "3", *extra]


@pytest.mark.parametrize("scale", ["nan", "NaN", "inf", "-inf", "10.5", "-11", "abc"])
def test_sample_refuses_a_non_finite_or_out_of_range_scale(capsys, scale):
    code, out, err = run(sample_args(f"--scale={scale}"), capsys)  # "-inf" alone reads as a flag
    assert_one_line_error(code, err, "dgs sample: error: argument --scale", repr(scale))
    assert out == ""


def test_the_cli_takes_the_apis_scale_range():
    from service.api.schemas import SCALE_RANGE as API_SCALE_RANGE
    from service.cli import SCALE_RANGE as CLI_SCALE_RANGE

    assert SCALE_RANGE == API_SCALE_RANGE == CLI_SCALE_RANGE


def test_sample_at_the_edge_of_the_range_prints_strict_json(capsys):
    code, out, err = run(sample_args("--variant", "fixed", "--scale", str(SCALE_RANGE[1])), capsys)
    assert code == 0, err
    result = strict_json(out)
    assert result["scale"] == SCALE_RANGE[1] and len(result["first_samples"]) == 5


def test_json_output_writes_non_finite_numbers_as_null(capsys):
    _print_json({"loss": math.nan, "rows": [[1.5, math.inf], [-math.inf, 2.0]], "n": 3})
    assert strict_json(capsys.readouterr().out) == {
        "loss": None,
        "rows": [[1.5, None], [None, 2.0]],
        "n": 3,
    }


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--n", "0"], "argument --n: must be >= 1, got 0"),
        (["--n", "ten"], "argument --n: expected an integer, got 'ten'"),
        (["--steps", "0"], "argument --steps: must be >= 1, got 0"),
        (["--seed", "-1"], "argument --seed: must be >= 0, got -1"),
    ],
)
def test_sample_refuses_bad_numbers(capsys, flags, fragment):
    code, _, err = run(sample_args(*flags), capsys)
    assert_one_line_error(code, err, fragment)


def test_sample_names_a_missing_store_or_model(capsys, tmp_path):
    missing = tmp_path / "no-such-store"
    code, _, err = run(["sample", "--model", "moons-plain", "--model-store", str(missing)], capsys)
    assert_one_line_error(code, err, "--model-store", str(missing))
    code, _, err = run(["sample", "--model", "moons-plain", "--model-store", str(tmp_path)], capsys)
    assert_one_line_error(code, err, "no model 'moons-plain'", str(tmp_path), "holds no models")
    code, _, err = run(["sample", "--model", "Moons/../x"], capsys)
    assert_one_line_error(code, err, "invalid model name 'Moons/../x'")


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--steps", "0"], "argument --steps: must be >= 1, got 0"),
        (["--steps", "-5"], "argument --steps: must be >= 1, got -5"),
        (["--kl-samples", "0"], "argument --kl-samples: must be >= 1, got 0"),
        (["--seed", "-1"], "argument --seed: must be >= 0, got -1"),
        (["--name", "Not A Name"], "invalid model name 'Not A Name'"),
    ],
)
def test_train_refuses_bad_flags_before_training(capsys, tmp_path, no_work, flags, fragment):
    code, _, err = run(["train", "--dataset", "moons", "--out", str(tmp_path), *flags], capsys)
    assert_one_line_error(code, err, fragment)
    assert list(tmp_path.iterdir()) == []


def test_train_refuses_one_name_for_every_dataset(capsys, tmp_path, no_work):
    argv = ["train", "--dataset", "all", "--name", "mine", "--out", str(tmp_path)]
    code, _, err = run(argv, capsys)
    assert_one_line_error(code, err, "--name", "--dataset all")


def unwritable(tmp_path: Path) -> list[Path]:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    return [Path("/proc/x"), a_file / "store", a_file]


@pytest.mark.parametrize("command", [["train", "--dataset", "moons"], ["reproduce"], ["bench"]])
def test_an_unwritable_out_is_named_at_once(capsys, tmp_path, no_work, command):
    for out in unwritable(tmp_path):
        code, _, err = run([*command, "--out", str(out)], capsys)
        assert_one_line_error(code, err, f"argument --out: cannot write to {out}")


@pytest.mark.parametrize(
    "flags", [["--n", "0"], ["--sweep-n", "0"], ["--seed", "-2"], ["--n", "1e3"]]
)
def test_reproduce_refuses_bad_numbers(capsys, tmp_path, no_work, flags):
    code, _, err = run(["reproduce", "--out", str(tmp_path), *flags], capsys)
    assert_one_line_error(code, err, f"argument {flags[0]}")


def test_an_os_error_while_running_is_one_line(capsys, monkeypatch, tmp_path):
    """A fault past the flags' checks (a disk filling up mid-save) still reads as one line."""
    import service.worker.train as train

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "moons-plain"))

    monkeypatch.setattr(train, "train", full_disk)
    code, _, err = run(["train", "--dataset", "moons", "--out", str(tmp_path)], capsys)
    assert_one_line_error(code, err, "dgs train: error:", "No space left", str(tmp_path))


def test_the_installed_command_exits_2_with_one_line(tmp_path):
    done = subprocess.run(
        [str(DGS), "sample", "--model", "moons-plain", "--scale", "nan"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert_one_line_error(done.returncode, done.stderr, "argument --scale", "'nan'")


@pytest.mark.parametrize(
    ("command", "package"),
    [("bench", "aiohttp"), ("bench", "httpx"), ("reproduce", "matplotlib")],
)
def test_experiments_without_their_extra_name_it(capsys, monkeypatch, tmp_path, command, package):
    """The served image has no experiment packages; `dgs bench` then raised an
    ImportError traceback for httpx instead of saying what to install."""
    for name in [m for m in sys.modules if m.startswith(("experiments", package))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, package, None)  # what importing an absent package does
    assert main([command, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"dgs {command}: error:") and "\n" not in err
    assert package in err and "[experiments]" in err


def test_sample_progress_bar_goes_to_stderr_and_stdout_stays_json(capsys):
    code, out, err = run(sample_args("--progress"), capsys)
    assert code == 0, err
    assert strict_json(out)["n"] == 8
    assert "3/3" in err and "eval" in err, err  # the bar reached the last of 3 evaluations
    code, out, err = run(sample_args("--no-progress"), capsys)
    assert code == 0 and err == "", err
    assert strict_json(out)["n"] == 8


def test_bench_offers_every_section_the_bench_has():
    """`--sections stream` was refused once: the CLI's list had not been told of it."""
    from experiments.bench import SECTIONS
    from service.cli import BENCH_SECTIONS

    assert tuple(BENCH_SECTIONS) == SECTIONS


def test_dgs_help_and_bench_help_need_no_experiments_package():
    """The served image has no `experiments`: service.cli must not import it to build --help."""
    code = (
        "import sys; sys.modules['experiments'] = None\n"
        "from service.cli import main\n"
        "for argv in (['--help'], ['bench', '--help'], ['reproduce', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, (argv, e.code)\n"
        "assert sys.modules['experiments'] is None\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--sections" in done.stdout


@pytest.mark.parametrize("command", ["bench", "reproduce"])
def test_no_experiments_package_says_so(capsys, monkeypatch, tmp_path, command):
    """No experiments package at all (the served image): one line, not a traceback."""
    for name in [m for m in sys.modules if m == "experiments" or m.startswith("experiments.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "experiments", None)
    assert main([command, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"dgs {command}: error:") and "\n" not in err
    assert "'experiments' package" in err and "checkout" in err


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--guider-param", "momentum=1.5"], ["guider_params.momentum", "momentum <= 0.99"]),
        (["--guider-param", "norm_threshold=0"], ["guider_params.norm_threshold", "0 <"]),
        (["--guider-param", "momentum"], ["--guider-param expects name=number"]),
        (
            ["--guider-param", "zero_init_steps=1"],
            ["guider_params.zero_init_steps", "only with guider cfg_zero_star"],
        ),
        (
            ["--guidance-schedule", "linear", "--guidance-interval", "3", "0.3"],
            ["guidance_interval", "sigma_lo < sigma_hi"],
        ),
        (["--sampler", "dpmpp_2m"], ["sampler:", "ddpm or ddim or heun"]),
    ],
)
def test_sample_refuses_bad_guider_parameters_naming_the_field(capsys, flags, fragments):
    argv = ["--model", "gaussians-conditional-improved", "--class", "0", "--n", "4"]
    variant = "cfg_plus_plus" if "dpmpp_2m" in flags else "apg"
    code, out, err = run(sample_args(*argv, "--variant", variant, *flags), capsys)
    assert_one_line_error(code, err, "dgs sample: error:", *fragments)
    assert out == ""


def test_sample_takes_guider_parameters(capsys):
    argv = ["--model", "gaussians-conditional-improved", "--class", "left", "--n", "8"]
    flags = ["--variant", "apg", "--guider-param", "momentum=-0.25", "--steps", "5"]
    code, out, err = run(sample_args(*argv, *flags), capsys)
    assert code == 0, err
    assert strict_json(out)["variant"] == "apg"


def test_sample_takes_a_spacing_and_says_what_it_ran(capsys):
    code, out, err = run(
        sample_args("--model", "moons-plain-improved", "--sampler", "ddim", "--spacing", "karras"),
        capsys,
    )
    assert code == 0, err
    got = strict_json(out)
    assert (got["sampler"], got["spacing"], got["sampler_params"]) == ("ddim", "karras", {"eta": 0})


def test_sample_with_only_steps_runs_the_few_step_default(capsys):
    from service.core.few_step import FEW_STEP, spacing_for
    from service.core.store import CheckpointStore

    model = CheckpointStore(SHIPPED_STORE).load_ready("moons-plain-improved")
    code, out, err = run(sample_args("--model", "moons-plain-improved"), capsys)
    assert code == 0, err
    got = strict_json(out)
    assert (got["sampler"], got["spacing"]) == (FEW_STEP.sampler, spacing_for(model))


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--steps", "1,5"], "step counts must be at least 2"),
        (["--steps", "5,x"], "expected step counts like 5,10,20"),
        (["--steps", "5,100"], "--steps must be below the model's T = 100"),
        (["--sampler", "lms"], "invalid choice: 'lms'"),
    ],
)
def test_tune_spacing_refuses_bad_flags_before_searching(capsys, monkeypatch, flags, fragment):
    monkeypatch.setattr("service.worker.spacing_search.tune", no_search)
    store = ["--model-store", str(SHIPPED_STORE)]
    code, out, err = run(
        ["tune-spacing", "--model", "moons-plain-improved", *store, *flags], capsys
    )
    assert_one_line_error(code, err, "dgs tune-spacing: error:", fragment)
    assert out == ""


def no_search(*args, **kwargs):
    raise AssertionError("searched instead of refusing the flags first")
