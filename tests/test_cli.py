"""The `mvreml` command line, run as a subprocess like a user would (python -m mvreml.cli)."""
import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import mvreml
from mvreml import cli
from mvreml.demo import simulate_trial

REPO = Path(__file__).resolve().parents[1]
BIVARIATE = ["--fixed", "cbind(velocity, density) ~ trait",
             "--random", "~ us(trait):Family + diag(trait):Block", "--residual", "~ units:us(trait)"]


def run(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "mvreml.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    """A small two-trait trial as CSV (4 blocks x 30 families x 3 trees, 5% missing per trait)."""
    d = tmp_path_factory.mktemp("cli")
    df = simulate_trial(seed=2, n_blocks=4, n_families=30, trees_per_plot=3)
    df["BlockNo"] = df["Block"].cat.codes + 1          # the block as a number, for --factors
    df.to_csv(d / "trial.csv", index=False)
    return d, df


@pytest.fixture(scope="module")
def fitted(trial):
    """The bivariate model through the CLI (exit 0) and in-process on the same file."""
    d, _ = trial
    proc = run("fit", "trial.csv", *BIVARIATE, "--out", "out", cwd=d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = mvreml.fit(BIVARIATE[1], random=BIVARIATE[3], residual=BIVARIATE[5],
                         data=pd.read_csv(d / "trial.csv"))
    return d / "out", proc, ref


def test_fit_success_exit_code_and_log(fitted):
    out, proc, ref = fitted
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    # iteration log (from the "mvreml" logger) on stderr, one line per iteration plus the start
    log_lines = [ln for ln in proc.stderr.splitlines() if "logL" in ln]
    assert len(log_lines) == ref.iterations + 1
    assert f"{ref.loglik:.4f}" in proc.stdout                   # the summary on stdout
    assert "Variance components" in proc.stdout


def test_fit_files(fitted):
    out, proc, ref = fitted
    assert sorted(p.name for p in out.iterdir()) == ["blup_Block.csv", "blup_Family.csv", "fixef.csv",
                                                     "result.json", "varcomp.csv"]
    vc = pd.read_csv(out / "varcomp.csv", index_col="component")
    assert list(vc.columns) == ["term", "estimate", "std_error", "z_ratio", "bound", "kind"]
    assert len(vc) == 3 + 2 + 3                        # us Family, diag Block, us units
    assert vc["term"].tolist() == ["Family"] * 3 + ["Block"] * 2 + ["units"] * 3
    np.testing.assert_allclose(vc["estimate"], ref.varcomp["estimate"], rtol=1e-10)
    np.testing.assert_allclose(vc["std_error"], ref.varcomp["std_error"], rtol=1e-8)
    fx = pd.read_csv(out / "fixef.csv", index_col="effect")
    np.testing.assert_allclose(fx["estimate"], ref.fixef["estimate"], rtol=1e-10)
    fam = pd.read_csv(out / "blup_Family.csv", index_col="Family")
    assert fam.shape == (30, 4)
    assert list(fam.columns) == ["velocity", "density", "pev_velocity", "pev_density"]
    np.testing.assert_allclose(fam.to_numpy(), ref.blup("Family").to_numpy(), rtol=1e-8, atol=1e-12)
    blk = pd.read_csv(out / "blup_Block.csv", index_col="Block")
    assert list(blk.index) == ["B01", "B02", "B03", "B04"]
    res = mvreml.Result.from_json((out / "result.json").read_text())
    assert res.converged
    assert res.loglik == pytest.approx(ref.loglik, abs=1e-9)
    assert res.covariance("Family").to_numpy() == pytest.approx(ref.covariance("Family").to_numpy(), rel=1e-10)


def test_nonconvergence_exit_3_files_written(trial, tmp_path):
    d, _ = trial
    proc = run("fit", d / "trial.csv", *BIVARIATE, "--maxiter", "1", "--out", tmp_path / "o", cwd=tmp_path)
    assert proc.returncode == 3
    assert "Traceback" not in proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("mvreml: did not converge")]
    res = mvreml.Result.from_json((tmp_path / "o" / "result.json").read_text())
    assert not res.converged and res.iterations == 1
    assert (tmp_path / "o" / "varcomp.csv").stat().st_size > 0


@pytest.mark.parametrize("case", ["bad_formula", "missing_file", "non_numeric_trait", "unknown_column",
                                  "bad_argument"])
def test_user_errors_exit_2(trial, tmp_path, case):
    d, _ = trial
    data = d / "trial.csv"
    args = {
        "bad_formula": ["fit", data, "--fixed", "velocity ~ 1 +", "--random", "~ Family", "--out", "o"],
        "missing_file": ["fit", tmp_path / "nope.csv", "--fixed", "velocity ~ 1", "--out", "o"],
        "non_numeric_trait": ["fit", data, "--fixed", "Family ~ 1", "--random", "~ Block", "--out", "o"],
        "unknown_column": ["fit", data, "--fixed", "velocity ~ 1", "--random", "~ Famly", "--out", "o"],
        "bad_argument": ["fit", data, "--fixed", "velocity ~ 1", "--out", "o", "--maxiter", "many"],
    }[case]
    proc = run(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    # ours: "mvreml: error: ..."; argparse's own: "mvreml fit: error: ..." after the usage line
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("mvreml") and ": error: " in ln]
    assert len(errors) == 1
    expected = {"bad_formula": "velocity ~ 1 +", "missing_file": "nope.csv", "non_numeric_trait": "'Family'",
                "unknown_column": "'Famly'", "bad_argument": "--maxiter"}[case]
    assert expected in errors[0]
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- in-process: main(argv)
def test_factors_turn_numeric_column_into_factor(trial, tmp_path, capsys):
    d, _ = trial
    base = ["fit", str(d / "trial.csv"), "--fixed", "velocity ~ 1 + BlockNo", "--random", "~ Family", "--quiet"]
    assert cli.main(base + ["--out", str(tmp_path / "cov")]) == 0
    assert cli.main(base + ["--factors", "BlockNo", "--out", str(tmp_path / "fac")]) == 0
    cov = pd.read_csv(tmp_path / "cov" / "fixef.csv")
    fac = pd.read_csv(tmp_path / "fac" / "fixef.csv")
    assert len(cov) == 2          # intercept + slope
    assert len(fac) == 4          # intercept + 3 block contrasts
    err = capsys.readouterr().err
    assert "logL" not in err      # --quiet: no iteration log


def test_init_and_fix(trial, tmp_path, capsys):
    d, _ = trial
    init = {"Block": [[30.0, 0.0], [0.0, 0.0004]],
            "Family": {"velocity": {"velocity": 80.0, "density": 0.1}, "density": {"density": 0.002}}}
    (tmp_path / "init.json").write_text(json.dumps(init))
    code = cli.main(["fit", str(d / "trial.csv"), *BIVARIATE, "--init", str(tmp_path / "init.json"),
                     "--fix", "Block", "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 0
    vc = pd.read_csv(tmp_path / "o" / "varcomp.csv", index_col="component")
    block = vc[vc["term"] == "Block"]
    assert block["bound"].tolist() == ["F", "F"]
    np.testing.assert_allclose(block["estimate"], [30.0, 0.0004], rtol=1e-12)


def test_read_init_forms(tmp_path):
    (tmp_path / "i.json").write_text(json.dumps({"animal": 2.5, "Block": [[1, 0.5], [0.5, 2]],
                                                 "units": {"a": {"a": 1.0}, "b": {"a": 0.2, "b": 3.0}}}))
    init = cli.read_init(str(tmp_path / "i.json"))
    assert init["animal"] == 2.5
    np.testing.assert_array_equal(init["Block"], [[1, 0.5], [0.5, 2]])
    assert init["units"].loc["a", "b"] == init["units"].loc["b", "a"] == 0.2     # one triangle is enough
    assert init["units"].loc["b", "b"] == 3.0


def test_bad_init_and_relmat_arguments_exit_2(trial, tmp_path, capsys):
    d, _ = trial
    (tmp_path / "bad.json").write_text("{not json")
    base = ["fit", str(d / "trial.csv"), "--fixed", "velocity ~ 1", "--out", str(tmp_path / "o")]
    assert cli.main(base + ["--init", str(tmp_path / "bad.json")]) == 2
    assert cli.main(base + ["--relmat", "pedigree.csv"]) == 2
    assert cli.main(base + ["--init", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [e.split(":")[1].strip() for e in err if e.startswith("mvreml:")] == ["error"] * 3
    assert "cannot read init file" in err[0] and "NAME=FILE" in err[1] and "not found" in err[2]


def test_bad_weights_and_out_exit_2(trial, tmp_path, capsys):
    d, df = trial
    bad = df.assign(w=np.where(df["Tree"] == 4, -1.0, 1.0))
    bad.to_csv(tmp_path / "w.csv", index=False)
    (tmp_path / "afile").write_text("")
    assert cli.main(["fit", str(tmp_path / "w.csv"), "--fixed", "velocity ~ 1", "--weights", "w",
                     "--out", str(tmp_path / "o")]) == 2
    assert cli.main(["fit", str(d / "trial.csv"), "--fixed", "velocity ~ 1", "--out", str(tmp_path / "afile")]) == 2
    err = [e for e in capsys.readouterr().err.splitlines() if e.startswith("mvreml: error: ")]
    assert "'w'" in err[0] and "positive" in err[0]
    assert "not a directory" in err[1]


def test_parquet(trial, tmp_path, capsys):
    d, df = trial
    path = tmp_path / "trial.parquet"
    have_engine = any(importlib.util.find_spec(m) for m in ("pyarrow", "fastparquet"))
    if have_engine:
        df.to_parquet(path)
    else:
        path.write_bytes(b"PAR1")
    code = cli.main(["fit", str(path), "--fixed", "velocity ~ 1", "--random", "~ Family",
                     "--out", str(tmp_path / "o"), "--quiet"])
    if have_engine:
        assert code == 0
    else:
        assert code == 2
        assert "pip install pyarrow" in capsys.readouterr().err


def test_pedigree_relmat(tmp_path, capsys):
    """vm(animal, ped) with a 3-column pedigree file: 10 founders, 40 offspring."""
    rng = np.random.default_rng(5)
    founders = [f"a{i}" for i in range(10)]
    kids = [f"k{i}" for i in range(40)]
    ped = pd.DataFrame({"animal": founders + kids,
                        "sire": [""] * 10 + list(rng.choice(founders[:5], 40)),
                        "dam": [""] * 10 + list(rng.choice(founders[5:], 40))})
    ped.to_csv(tmp_path / "ped.csv", index=False)
    data = pd.DataFrame({"animal": kids * 2, "y": rng.normal(10.0, 2.0, 80)})
    data.to_csv(tmp_path / "d.csv", index=False)
    code = cli.main(["fit", str(tmp_path / "d.csv"), "--fixed", "y ~ 1", "--random", "~ vm(animal, ped)",
                     "--relmat", f"ped={tmp_path / 'ped.csv'}", "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    blup = pd.read_csv(tmp_path / "o" / "blup_animal.csv", index_col="animal")
    assert len(blup) == 50                       # every animal of the pedigree gets a BLUP
    assert set(founders) <= set(blup.index)


def test_read_relmats_pedigree_or_matrix(tmp_path):
    (tmp_path / "ped.csv").write_text("animal,sire,dam\na,0,0\nb,0,0\nc,a,b\n")
    # a 2 x 2 matrix file also has three columns: it is recognised by its labels
    (tmp_path / "g2.csv").write_text(",x,y\nx,1.0,0.25\ny,0.25,1.0\n")
    (tmp_path / "g3.csv").write_text("id,x,y,z\nx,1,0.5,0\ny,0.5,1,0\nz,0,0,1\n")
    (tmp_path / "bad.csv").write_text("id,x,y,z\nx,1,0.5,0\n")
    rel = cli.read_relmats([f"ped={tmp_path / 'ped.csv'}"], g=[f"g2={tmp_path / 'g2.csv'}"],
                           inverse=[f"g3={tmp_path / 'g3.csv'}"])
    assert isinstance(rel["ped"], mvreml.Pedigree)
    assert list(rel["ped"].ids) == ["a", "b", "c"]
    assert rel["g2"].kind == "G" and list(rel["g2"].labels) == ["x", "y"]
    np.testing.assert_allclose(rel["g2"].kinv().toarray(), np.linalg.inv([[1.0, 0.25], [0.25, 1.0]]))
    assert rel["g3"].kind == "Ginv" and rel["g3"].kinv()[0, 1] == 0.5
    with pytest.raises(mvreml.errors.RelmatError, match="square"):
        cli.read_relmats(g=[f"bad={tmp_path / 'bad.csv'}"])
    with pytest.raises(cli.InputError, match="given twice"):
        cli.read_relmats([f"g2={tmp_path / 'ped.csv'}"], g=[f"g2={tmp_path / 'g2.csv'}"])


@pytest.mark.parametrize("layout", ["square", "giv"])
def test_matrix_file_given_as_pedigree_says_which_option(tmp_path, layout):
    """A G^-1 file after --relmat was read as a pedigree ("animals are their own parent") or as G."""
    if layout == "square":
        (tmp_path / "m").write_text(",x,y\nx,2.0,-1.0\ny,-1.0,2.0\n")
    else:
        (tmp_path / "m").write_text("1 1 2.0\n2 1 -1.0\n2 2 2.0\n")
    with pytest.raises(cli.InputError, match="not a pedigree") as err:
        cli.read_relmats([f"K={tmp_path / 'm'}"])
    msg = str(err.value)
    assert f"--relmat-g K={tmp_path / 'm'} for G" in msg and f"--relmat-inverse K={tmp_path / 'm'} for G^-1" in msg
    if layout == "giv":
        assert "line 1: '1 1 2.0' is a diagonal entry" in msg


def _animal_trial(tmp_path, seed=5):
    """A 50-animal pedigree file (10 founders), 80 records, and A, A^-1 of the pedigree."""
    rng = np.random.default_rng(seed)
    founders = [f"a{i}" for i in range(10)]
    kids = [f"k{i}" for i in range(40)]
    ped = pd.DataFrame({"animal": founders + kids,
                        "sire": [""] * 10 + list(rng.choice(founders[:5], 40)),
                        "dam": [""] * 10 + list(rng.choice(founders[5:], 40))})
    ped.to_csv(tmp_path / "ped.csv", index=False)
    data = pd.DataFrame({"animal": kids * 2, "y": rng.normal(10.0, 2.0, 80)})
    data.to_csv(tmp_path / "d.csv", index=False)
    pedigree = mvreml.Pedigree(tmp_path / "ped.csv")
    return pedigree, data


def test_relmat_inverse_and_g_options_give_the_pedigree_fit(tmp_path, capsys):
    """--relmat-inverse (square CSV, .giv with --relmat-labels, .giv with labels) and --relmat-g:
    the log L of --relmat ped to 1e-8."""
    ped, _ = _animal_trial(tmp_path)
    ids = list(ped.ids)
    Ainv = ped.ainv()
    pd.DataFrame(Ainv.toarray(), index=ids, columns=ids).to_csv(tmp_path / "ainv.csv")
    pd.DataFrame(np.linalg.inv(Ainv.toarray()), index=ids, columns=ids).to_csv(tmp_path / "a.csv")
    low = sp.coo_array(sp.tril(Ainv))
    lines = sorted(zip(low.row, low.col, low.data))
    (tmp_path / "a.giv").write_text("".join(f"{i + 1} {j + 1} {float(v)!r}\n" for i, j, v in lines))
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    (tmp_path / "named.giv").write_text("".join(f"{ids[i]}\t{ids[j]}\t{float(v)!r}\n" for i, j, v in lines))
    base = ["fit", str(tmp_path / "d.csv"), "--fixed", "y ~ 1", "--random", "~ vm(animal, K)", "--quiet"]
    runs = {"ped": ["--relmat", f"K={tmp_path / 'ped.csv'}"],
            "g": ["--relmat-g", f"K={tmp_path / 'a.csv'}"],
            "square_inverse": ["--relmat-inverse", f"K={tmp_path / 'ainv.csv'}"],
            "giv_indices": ["--relmat-inverse", f"K={tmp_path / 'a.giv'}", "--relmat-labels",
                            f"K={tmp_path / 'ids.txt'}"],
            "giv_labels": ["--relmat-inverse", f"K={tmp_path / 'named.giv'}"]}
    loglik = {}
    for name, opts in runs.items():
        assert cli.main(base + opts + ["--out", str(tmp_path / name)]) == 0, capsys.readouterr().err
        loglik[name] = mvreml.Result.from_json((tmp_path / name / "result.json").read_text()).loglik
    for name in runs:
        assert loglik[name] == pytest.approx(loglik["ped"], abs=1e-8), name
    # the same G^-1 given as a pedigree or as G is refused, not fitted
    assert cli.main(base + ["--relmat", f"K={tmp_path / 'a.giv'}", "--out", str(tmp_path / "x")]) == 2
    assert cli.main(base + ["--relmat", f"K={tmp_path / 'ainv.csv'}", "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert err.count("--relmat-inverse K=") == 2 and "own parent" not in err
    assert cli.main(base + ["--relmat-labels", f"Z={tmp_path / 'ids.txt'}", "--relmat-inverse",
                            f"K={tmp_path / 'a.giv'}", "--out", str(tmp_path / "z")]) == 2
    assert "--relmat-labels names ['Z']" in capsys.readouterr().err


@pytest.mark.parametrize("layout", ["tab_txt", "whitespace_txt", "semicolon_sep"])
def test_text_data_separators(trial, tmp_path, capsys, layout):
    """Tab- or blank-separated .txt data (detected) and --sep give the CSV fit."""
    d, df = trial
    extra = []
    if layout == "tab_txt":
        df.to_csv(tmp_path / "trial.txt", sep="\t", index=False)
    elif layout == "whitespace_txt":
        df.to_csv(tmp_path / "trial.txt", sep=" ", index=False, na_rep="NA")
    else:
        df.to_csv(tmp_path / "trial.txt", sep=";", index=False)
        extra = ["--sep", ";"]
    args = ["--fixed", "velocity ~ 1", "--random", "~ Family + Block", "--quiet"]
    assert cli.main(["fit", str(d / "trial.csv"), *args, "--out", str(tmp_path / "csv")]) == 0
    assert cli.main(["fit", str(tmp_path / "trial.txt"), *args, *extra, "--out", str(tmp_path / "txt")]) == 0, \
        capsys.readouterr().err
    a, b = (pd.read_csv(tmp_path / o / "varcomp.csv") for o in ("csv", "txt"))
    np.testing.assert_allclose(a["estimate"], b["estimate"], rtol=1e-10)


def test_blank_separated_data_with_empty_fields_refused(trial, tmp_path, capsys):
    """Between blanks an empty field vanishes and the line's values shift columns: an error."""
    d, df = trial
    assert df["velocity"].isna().any()
    df.to_csv(tmp_path / "trial.txt", sep=" ", index=False)          # NaN written as nothing
    code = cli.main(["fit", str(tmp_path / "trial.txt"), "--fixed", "velocity ~ 1", "--random", "~ Family",
                     "--quiet", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "write missing values as NA" in capsys.readouterr().err


def test_sep_option(trial, tmp_path, capsys):
    d, df = trial
    df.to_csv(tmp_path / "trial.tsv", sep="\t", index=False)
    args = ["--fixed", "velocity ~ 1", "--random", "~ Family", "--quiet"]
    assert cli.main(["fit", str(tmp_path / "trial.tsv"), "--sep", "tab", *args, "--out", str(tmp_path / "a")]) == 0
    assert cli.main(["fit", str(tmp_path / "trial.tsv"), "--sep", "ab", *args, "--out", str(tmp_path / "b")]) == 2
    assert "--sep 'ab'" in capsys.readouterr().err
    # the wrong separator reads one column: the error about 'velocity' comes with a warning
    assert cli.main(["fit", str(tmp_path / "trial.tsv"), "--sep", ",", *args, "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "'velocity'" in err and "read as a single column" in err and "give --sep" in err


def test_factors_before_the_data_file(trial, tmp_path, capsys):
    """`fit --factors BlockNo trial.csv ...`: --factors took the file as a column (argparse nargs)."""
    d, _ = trial
    model = ["--fixed", "velocity ~ 1 + BlockNo", "--random", "~ Family", "--quiet"]
    data = str(d / "trial.csv")
    assert cli.main(["fit", "--factors", "BlockNo", data, *model, "--out", str(tmp_path / "a")]) == 0
    assert cli.main(["fit", "--factors", "BlockNo", "--fix", data, *model, "--out", str(tmp_path / "b")]) == 0
    assert cli.main(["fit", data, "--factors", "BlockNo", *model, "--out", str(tmp_path / "c")]) == 0
    fixef = [pd.read_csv(tmp_path / o / "fixef.csv") for o in "abc"]
    assert [len(f) for f in fixef] == [4, 4, 4]           # intercept + 3 block contrasts each time
    with pytest.raises(SystemExit) as exc:
        cli.main(["fit", "--factors", "BlockNo", str(tmp_path / "absent.csv"), *model,
                  "--out", str(tmp_path / "e")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "DATA is missing" in err and "Give it first" in err


def test_messages_name_the_flags():
    """Hints written for Python callers name the command's flags when printed by `mvreml fit`."""
    assert cli.cli_words("3 levels ... (fit(..., missing_animals='founders') adds them to the pedigree "
                         "as founders)") == \
        "3 levels ... (--missing-animals founders adds them to the pedigree as founders)"
    assert cli.cli_words("x (pass allow_sire_dam=True, or --allow-sire-dam on the command line, if that is "
                         "right)") == "x (pass --allow-sire-dam if that is right)"
    assert cli.cli_words("fix= holds 'Block' but init= gives no value for it") == \
        "--fix holds 'Block' but --init gives no value for it"
    assert cli.cli_words("...; raise maxiter or give better starting values with init=") == \
        "...; raise --maxiter or give better starting values with --init"
    assert cli.cli_words("init= takes numbers, e.g. init=c(1, 0.5, 2)") == \
        "init= takes numbers, e.g. init=c(1, 0.5, 2)"        # formula syntax: unchanged


def test_demo_command(tmp_path):
    proc = run("demo", "--seed", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "logL" not in proc.stderr     # no iteration logs
    assert "on 3 df, p = " in proc.stdout
    assert "Model 4 with corgh(trait)" in proc.stdout


def test_pedigree_options(tmp_path, capsys):
    """--allow-sire-dam, --no-inbreeding and --missing-animals reach the pedigree and the fit."""
    rng = np.random.default_rng(6)
    founders = [f"a{i}" for i in range(10)]
    kids = [f"k{i}" for i in range(40)]
    sires = list(rng.choice(founders[:6], 40))
    dams = list(rng.choice(founders[5:], 40))          # a5 is a sire and a dam
    sires[0], dams[0] = "a5", "a6"
    dams[1] = "a5"
    ped = pd.DataFrame({"animal": founders + kids, "sire": [""] * 10 + sires, "dam": [""] * 10 + dams})
    ped.to_csv(tmp_path / "ped.csv", index=False)
    data = pd.DataFrame({"animal": kids * 2 + ["new1", "new2"], "y": rng.normal(10.0, 2.0, 82)})
    data.to_csv(tmp_path / "d.csv", index=False)
    base = ["fit", str(tmp_path / "d.csv"), "--fixed", "y ~ 1", "--random", "~ vm(animal, ped)",
            "--relmat", f"ped={tmp_path / 'ped.csv'}", "--quiet"]
    assert cli.main(base + ["--out", str(tmp_path / "o1")]) == 2
    assert "--allow-sire-dam" in capsys.readouterr().err
    assert cli.main(base + ["--out", str(tmp_path / "o2"), "--allow-sire-dam"]) == 2
    err = capsys.readouterr().err                                 # new1, new2 are not in the pedigree
    assert "(--missing-animals founders adds them" in err and "missing_animals" not in err
    code = cli.main(base + ["--out", str(tmp_path / "o3"), "--allow-sire-dam", "--no-inbreeding",
                            "--missing-animals", "founders"])
    assert code == 0, capsys.readouterr().err
    blup = pd.read_csv(tmp_path / "o3" / "blup_animal.csv", index_col="animal")
    assert {"new1", "new2"} <= set(blup.index) and len(blup) == 52


def test_threads_option_reaches_the_fit(trial, tmp_path):
    d, _ = trial
    proc = run("fit", d / "trial.csv", *BIVARIATE, "--threads", "1", "--out", tmp_path / "t", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    res = mvreml.Result.from_json((tmp_path / "t" / "result.json").read_text())
    assert res.model["blas_threads"] == 1
    bad = run("fit", d / "trial.csv", *BIVARIATE, "--threads", "0", "--out", tmp_path / "u", cwd=tmp_path)
    assert bad.returncode == 2 and "threads" in bad.stderr and "Traceback" not in bad.stderr
