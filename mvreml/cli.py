"""The ``mvreml`` command line: ``mvreml fit`` (a model on a CSV/Parquet file) and
``mvreml demo`` (the seed's trial end to end).

Exit codes: 0 converged; 1 internal error (a bug: traceback shown); 2 bad input (arguments,
files, formulas, data, pedigrees, starting values); 3 the fit did not converge or failed
numerically (when a fit was produced its files are still written).  User errors print one
line ``mvreml: error: <message>`` on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import re
import sys
import warnings
from pathlib import Path

from ._atomic import atomic_open

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_NOT_CONVERGED = 0, 1, 2, 3
PARQUET_SUFFIXES = (".parquet", ".pq")


class InputError(Exception):
    """A problem with the command's input found by the CLI itself (files, JSON, arguments)."""


# ---------------------------------------------------------------------- arguments
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mvreml", description="Multivariate linear mixed models by AI-REML.")
    sub = p.add_subparsers(dest="command", required=True, metavar="{fit,demo}")
    d = sub.add_parser("demo", help="the seed's two-trait trial on simulated data, LRT included",
                       description="Simulate a randomized complete block trial (velocity, density) and fit "
                                   "the univariate, diag (model 3), us (model 4) and corgh models.")
    d.add_argument("--seed", type=int, default=1, help="seed of the simulated trial (default 1)")
    d.add_argument("--plots", metavar="DIR", help="write PNG figures into DIR (needs matplotlib)")
    f = sub.add_parser("fit", help="fit a model to a CSV or Parquet file",
                       description="Fit a (multivariate) linear mixed model; write varcomp.csv, fixef.csv, "
                                   "blup_<term>.csv and result.json into --out.",
                       epilog='example: mvreml fit trial.csv --fixed "cbind(velocity, density) ~ trait" '
                              '--random "~ us(trait):Family + diag(trait):Block" '
                              '--residual "~ units:us(trait)" --out results/')
    # DATA is optional for argparse only: a file swallowed by --factors / --fix (nargs="+") is
    # recovered, or named in a clear error, by _data_argument
    f.add_argument("data", metavar="DATA", nargs="?",
                   help="data file: .csv, .txt / .tsv (separator detected; see --sep), or .parquet "
                        "(with pyarrow installed)")
    f.add_argument("--sep", metavar="SEP",
                   help="field separator of DATA: ',', ';', 'tab' or 'whitespace' (default: detected)")
    f.add_argument("--fixed", required=True, help='response and fixed effects, e.g. "y ~ 1 + sex"')
    f.add_argument("--random", help='random terms, e.g. "~ us(trait):Family + vm(animal, ped)"')
    f.add_argument("--residual", help='residual structure, e.g. "~ units:us(trait)"')
    f.add_argument("--relmat", action="append", default=[], metavar="NAME=FILE",
                   help="pedigree used as vm(factor, NAME): 3 columns animal, sire, dam; repeatable")
    f.add_argument("--relmat-g", action="append", default=[], metavar="NAME=FILE",
                   help="relationship matrix G used as vm(factor, NAME): a labelled square matrix file "
                        "(first column and header = labels) or a three-column row, column, value file "
                        "(ASReml .grm); repeatable")
    f.add_argument("--relmat-inverse", action="append", default=[], metavar="NAME=FILE",
                   help="inverse relationship matrix G^-1 used as vm(factor, NAME), in the same layouts "
                        "(ASReml .giv: row, column, value, lower triangle); repeatable")
    f.add_argument("--relmat-labels", action="append", default=[], metavar="NAME=FILE",
                   help="labels (one per line) that the 1-based indices of NAME's three-column file "
                        "count into (asreml-R's rowNames); without it the first two columns are labels")
    f.add_argument("--allow-sire-dam", action="store_true",
                   help="accept pedigrees where an animal is used both as sire and as dam (a warning)")
    f.add_argument("--no-inbreeding", action="store_true",
                   help="build A^-1 ignoring inbreeding (BLUPF90's default)")
    f.add_argument("--missing-animals", choices=["error", "founders"], default="error",
                   help="data animals absent from the pedigree: error (default) or add them as founders")
    f.add_argument("--weights", metavar="COLUMN", help="column of weights (residual variance / w)")
    f.add_argument("--init", metavar="JSON", help='starting values: {"term": number | [[...]] | '
                                                  '{"trait": {"trait": value}}}')
    f.add_argument("--fix", nargs="+", action="extend", default=[], metavar="TERM",
                   help="hold these terms at their --init values")
    f.add_argument("--factors", nargs="+", action="extend", default=[], metavar="COLUMN",
                   help="treat these columns as factors (numeric fixed-effect columns are covariates "
                        "otherwise; random-term columns are always factors)")
    f.add_argument("--maxiter", type=int, default=50, help="maximum number of iterations (default 50)")
    f.add_argument("--threads", type=int, default=None,
                   help="BLAS threads (default: 1 for small models, the available cores for large ones)")
    f.add_argument("--backend", choices=("cholmod", "mumps"), default="cholmod",
                   help="sparse solver: CHOLMOD (default) or MUMPS over MPI (mpirun -n N mvreml fit ... "
                        "--backend mumps; needs the mvreml[mpi] extra)")
    f.add_argument("--checkpoint", metavar="FILE", help="write the iteration state to FILE after every iterate")
    f.add_argument("--resume", metavar="FILE", help="continue an interrupted fit from its --checkpoint FILE")
    f.add_argument("--out", required=True, metavar="DIR", help="output directory (created)")
    f.add_argument("--quiet", action="store_true", help="no iteration log or summary, only warnings, errors "
                                                        "and a one-line result")
    p.fit_parser = f            # for errors about `fit` arguments found after parsing
    return p


def _data_argument(args, parser: argparse.ArgumentParser) -> None:
    """Recover DATA swallowed by a list option: `fit --factors a b data.csv` reads data.csv as a
    third factor (argparse's nargs="+" takes every word up to the next option).  The last word
    of --factors or --fix is taken as DATA when DATA is missing and that word is an existing file;
    otherwise the error says how to write the command."""
    if args.data is not None:
        return
    for option, values in (("--factors", args.factors), ("--fix", args.fix)):
        if values and Path(values[-1]).is_file():
            args.data = values.pop()
            return
    parser.fit_parser.error("the data file DATA is missing. Give it first (mvreml fit DATA --fixed ...): "
                            "--factors and --fix take every following word up to the next option")


# ---------------------------------------------------------------------- inputs
def _file(path: str, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} {path!r} not found")
    if not p.is_file():
        raise InputError(f"{what} {path!r} is not a file")
    return p


_SEP_WORDS = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "whitespace": r"\s+",
              "space": r"\s+", r"\s+": r"\s+"}


def _separator(sep: str | None) -> str | None:
    """--sep as given ("tab", "whitespace", ",", ...) -> the pandas separator (None: detect)."""
    if sep is None:
        return None
    if sep in _SEP_WORDS:
        return _SEP_WORDS[sep]
    if len(sep) == 1 and not sep.isalnum() and sep not in "\"'":
        return sep
    raise InputError(f"--sep {sep!r}: give one character such as ',' or ';', or 'tab' or 'whitespace'")


def _check_whitespace_fields(path: Path) -> None:
    """Blank-separated data cannot hold an empty field: a line with fewer fields than the header
    would shift its values into the wrong columns (pandas pads it with NaN), so it is an error."""
    token = re.compile(r'"[^"]*"|\S+')
    with open(path, errors="replace") as fh:
        lines = ((k, ln) for k, ln in enumerate(fh, start=1) if ln.strip())
        first = next(lines, None)
        if first is None:
            return
        width = len(token.findall(first[1]))
        for k, line in lines:
            n = len(token.findall(line))
            if n != width:
                raise InputError(f"data file {str(path)!r} is separated by blanks, and line {k} has {n} fields "
                                 f"where the header has {width}: write missing values as NA (an empty field "
                                 "cannot be seen between blanks), or give --sep")


def read_data(path: str, factors=(), sep: str | None = None):
    """Read a data file; ``factors`` columns become categoricals of labels.

    A text file's separator is ``sep`` (see ``--sep``) or detected: tab, comma, semicolon or
    bar when it splits every line alike, else runs of whitespace.
    """
    import pandas as pd

    from ._relmat_io import sniff_sep

    p = _file(path, "data file")
    sep = _separator(sep)
    try:
        if p.suffix.lower() in PARQUET_SUFFIXES:
            if not any(importlib.util.find_spec(m) for m in ("pyarrow", "fastparquet")):
                raise InputError(f"reading the Parquet file {path!r} needs pyarrow: pip install pyarrow "
                                 f"(or give the data as CSV)")
            df = pd.read_parquet(p)
        else:
            sep = sep or sniff_sep(p)
            if sep == r"\s+":
                _check_whitespace_fields(p)
            df = pd.read_csv(p, sep=sep)
    except InputError:
        raise
    except (ValueError, UnicodeDecodeError, OSError) as exc:   # pandas' parser and empty-data errors
        raise InputError(f"cannot read data file {path!r}: {exc}") from None
    if df.shape[1] == 0 or len(df) == 0:
        raise InputError(f"data file {path!r} has no rows or no columns")
    if df.shape[1] == 1 and p.suffix.lower() not in PARQUET_SUFFIXES:
        warnings.warn(f"data file {path!r} was read as a single column {str(df.columns[0])!r}; give --sep "
                      "if its fields are separated otherwise", stacklevel=2)
    missing = [c for c in factors if c not in df.columns]
    if missing:
        raise InputError(f"--factors names columns {missing} that are not in {path!r} "
                         f"(columns: {', '.join(map(str, df.columns[:20]))})")
    for col in factors:
        labels = df[col].astype("string")
        # 3.0 and 3 are the same level (a numeric column with NaN is read as float)
        labels = labels.str.replace(r"^(-?\d+)\.0+$", r"\1", regex=True)
        df[col] = labels.astype("category")
    return df


def _name_file(spec: str, option: str) -> tuple[str, str]:
    name, sep, path = spec.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise InputError(f"{option} expects NAME=FILE (e.g. ped=pedigree.csv), got {spec!r}")
    return name.strip(), path.strip()


def read_relmats(specs=(), allow_sire_dam: bool = False, inbreeding: bool = True, *, g=(), inverse=(),
                 labels=()) -> dict:
    """NAME=FILE pairs -> {NAME: Pedigree or RelationshipMatrix}.

    ``specs`` are pedigrees (``--relmat``), ``g`` G matrices (``--relmat-g``), ``inverse``
    G^-1 matrices (``--relmat-inverse``); ``labels`` the label files of three-column matrices
    (``--relmat-labels``).  A matrix file given as a pedigree is an InputError that says
    which option to use: whether a matrix is G or G^-1 is never guessed.
    """
    from . import _relmat_io
    from . import relmat as rm
    from .pedigree import Pedigree

    label_files = {}
    for spec in labels:
        name, path = _name_file(spec, "--relmat-labels")
        label_files[name] = _file(path, f"labels file for {name!r}")
    out = {}
    for option, given in (("--relmat", specs), ("--relmat-g", g), ("--relmat-inverse", inverse)):
        for spec in given:
            name, path = _name_file(spec, option)
            if name in out:
                raise InputError(f"relationship {name!r} is given twice ({option} {spec!r} and an earlier one)")
            p = _file(path, f"relationship file for {name!r}")
            if option == "--relmat":
                if name in label_files:
                    raise InputError(f"--relmat-labels {name}=...: {name!r} is a pedigree, whose labels are "
                                     "its animal column")
                kind = _relmat_io.file_kind(p)
                if kind != "table":
                    what = ("a labelled square matrix" if kind == "square" else
                            "a three-column (row, column, value) sparse matrix such as ASReml's .giv / .grm "
                            f"({_relmat_io.diagonal_example(p)})")
                    raise InputError(f"--relmat {spec}: the file is {what}, not a pedigree. Say which matrix "
                                     f"it is: --relmat-g {name}={path} for G, --relmat-inverse {name}={path} "
                                     "for G^-1")
                out[name] = Pedigree(p, inbreeding=inbreeding, allow_sire_dam=allow_sire_dam)
            else:
                build = rm.matrix if option == "--relmat-g" else rm.inverse
                out[name] = build(p, labels=label_files.get(name), name=name)
    unused = sorted(set(label_files) - set(out))
    if unused:
        raise InputError(f"--relmat-labels names {unused}, which no --relmat-g / --relmat-inverse gives")
    return out


def read_init(path: str) -> dict:
    """init JSON -> {term: float | ndarray | trait-labelled DataFrame}."""
    import numpy as np
    import pandas as pd

    p = _file(path, "init file")
    try:
        raw = json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise InputError(f"cannot read init file {path!r}: {exc}") from None
    if not isinstance(raw, dict):
        raise InputError(f"init file {path!r} must hold a JSON object {{term: value}}")
    out = {}
    for term, value in raw.items():
        if isinstance(value, bool) or value is None:
            raise InputError(f"init for {term!r} must be a number, a matrix or {{trait: {{trait: value}}}}")
        if isinstance(value, (int, float)):
            out[term] = float(value)
        elif isinstance(value, list):
            try:
                out[term] = np.array(value, dtype=float)
            except (TypeError, ValueError):
                raise InputError(f"init for {term!r} is not a numeric matrix: {value!r}") from None
        elif isinstance(value, dict):
            try:
                m = pd.DataFrame(value, dtype=float).T     # outer key = row trait
            except (TypeError, ValueError):
                raise InputError(f"init for {term!r} is not a {{trait: {{trait: number}}}} table") from None
            traits = sorted(set(m.index) | set(m.columns), key=lambda t: (t not in m.index, str(t)))
            m = m.reindex(index=traits, columns=traits)
            m = m.fillna(m.T)          # one triangle is enough
            if m.isna().any().any():
                raise InputError(f"init for {term!r} lacks some (trait, trait) entries")
            out[term] = m
        else:
            raise InputError(f"init for {term!r} must be a number, a matrix or {{trait: {{trait: value}}}}")
    return out


# ---------------------------------------------------------------------- outputs
def _safe_name(term: str) -> str:
    return re.sub(r"[^\w.-]+", "_", str(term)).strip("_") or "term"


def write_outputs(res, out: Path) -> list:
    """varcomp.csv, fixef.csv, blup_<term>.csv and result.json into ``out``; the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "varcomp.csv", out / "fixef.csv"]
    # each file whole or not at all: Ctrl-C while writing leaves no half-written table
    with atomic_open(paths[0], newline="") as fh:
        res.varcomp.to_csv(fh, index_label="component")
    with atomic_open(paths[1], newline="") as fh:
        res.fixef.to_csv(fh, index_label="effect")
    for term in res.blups:
        path = out / f"blup_{_safe_name(term)}.csv"
        with atomic_open(path, newline="") as fh:
            res.blup(term).to_csv(fh, index_label=term)
        paths.append(path)
    paths.append(out / "result.json")
    with atomic_open(paths[-1]) as fh:
        fh.write(res.to_json(indent=1))
    return paths


# ---------------------------------------------------------------------- commands
def _configure_logging(quiet: bool) -> logging.Handler:
    """A stderr handler on the "mvreml" logger (INFO: the iteration log; WARNING if quiet)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.setLevel(logging.WARNING if quiet else logging.INFO)
    logger = logging.getLogger("mvreml")
    logger.addHandler(handler)
    handler.previous_level = logger.level
    if logger.getEffectiveLevel() > handler.level:
        logger.setLevel(handler.level)
    return handler


def _cmd_fit(args) -> int:
    if args.maxiter < 0:
        raise InputError(f"--maxiter must be 0 or more, got {args.maxiter}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise InputError(f"--out {args.out!r} exists and is not a directory")
    from .errors import ConvergenceWarning

    # warnings (rows dropped, founders added, boundaries) become one-line notes on stderr;
    # non-convergence gets its own message below
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        def flush():
            _report_warnings(caught, ConvergenceWarning)
            caught.clear()
        try:
            return _fit_and_write(args, flush)
        finally:
            flush()


def _fit_and_write(args, flush) -> int:
    from .api import fit
    from .errors import FactorizationError

    data = read_data(args.data, args.factors, sep=args.sep)
    relmat = read_relmats(args.relmat, allow_sire_dam=args.allow_sire_dam, inbreeding=not args.no_inbreeding,
                          g=args.relmat_g, inverse=args.relmat_inverse, labels=args.relmat_labels)
    init = read_init(args.init) if args.init else None
    logging.getLogger("mvreml").info(f"mvreml fit: {args.data}: {len(data)} rows, {data.shape[1]} columns")
    try:
        res = fit(args.fixed, random=args.random, residual=args.residual, data=data, relmat=relmat or None,
                  init=init, fix=args.fix or None, weights=args.weights, maxiter=args.maxiter,
                  missing_animals=args.missing_animals, checkpoint=args.checkpoint, resume=args.resume,
                  threads=args.threads, backend=args.backend)
    except FactorizationError as exc:
        flush()
        print(f"mvreml: the fit failed: {cli_words(exc)}", file=sys.stderr)
        return EXIT_NOT_CONVERGED
    flush()
    try:
        paths = write_outputs(res, Path(args.out))
    except OSError as exc:
        raise InputError(f"cannot write the results into {args.out!r}: {exc}") from None
    if args.quiet:
        print(f"log L {res.loglik:.6f}, {'converged' if res.converged else 'NOT converged'} after "
              f"{res.iterations} iterations; files in {args.out}")
    else:
        print(cli_words(res.summary()))
        if (res.model.get("mumps") or {}).get("message"):     # the memory MUMPS forecast per rank
            print("\n" + res.model["mumps"]["message"])
        print("\nwritten: " + ", ".join(str(p) for p in paths))
    if not res.converged:
        print(f"mvreml: did not converge: {cli_words(res.reason)}", file=sys.stderr)
        return EXIT_NOT_CONVERGED
    return EXIT_OK


# The library's messages name Python arguments; run from `mvreml fit`, name the flags instead.
_CLI_WORDS = [
    (r"fit\(\.\.\., missing_animals='founders'\)", "--missing-animals founders"),
    (r"pass allow_sire_dam=True, or --allow-sire-dam on the command line,", "pass --allow-sire-dam"),
    (r"\ballow_sire_dam=True\b", "--allow-sire-dam"),
    (r"\bmissing_animals='founders'", "--missing-animals founders"),
    (r"\bfix= (names|holds)\b", r"--fix \1"),
    (r"\binit= gives\b", "--init gives"),
    (r"starting values with init=(?!\S)", "starting values with --init"),
    (r"\braise maxiter\b", "raise --maxiter"),
    (r"\bweights= names\b", "--weights names"),
    (r"which is not in relmat= ", "which no --relmat, --relmat-g or --relmat-inverse gives "),
]


def cli_words(text) -> str:
    """A library message with its Python argument names replaced by the command's flags."""
    text = str(text)
    for pattern, flag in _CLI_WORDS:
        text = re.sub(pattern, flag, text)
    return text


def _report_warnings(caught, skip) -> None:
    seen = set()
    for w in caught:
        text = str(w.message)
        if issubclass(w.category, skip) or text in seen:
            continue
        seen.add(text)
        print(f"mvreml: warning: {cli_words(text)}", file=sys.stderr)


def _cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(seed=args.seed, plots=args.plots)
    return EXIT_OK


def main(argv=None) -> int:
    """Entry point of the ``mvreml`` console script; returns the exit code."""
    from .errors import MvremlError

    parser = _parser()
    args = parser.parse_args(argv)          # bad arguments: argparse prints usage and exits 2
    if args.command == "fit":
        _data_argument(args, parser)
    if args.command == "fit" and args.backend != "cholmod":
        from .backends import mpi           # MPI: the ranks other than 0 only serve rank 0's solver
        try:
            comm = mpi.world()
        except MvremlError as exc:
            print(f"mvreml: error: {exc}", file=sys.stderr)
            return EXIT_INPUT
        if comm.rank != 0:
            mpi.serve(comm)
            return EXIT_OK
        with mpi.session(comm):             # whatever rank 0 does, the others are released
            return _main(args)
    return _main(args)


def _main(args) -> int:
    from .errors import MvremlError

    # the demo's eight fits would flood stderr with iteration logs: only warnings there
    handler = _configure_logging(args.command == "demo" or args.quiet)
    try:
        if args.command == "demo":
            return _cmd_demo(args)
        return _cmd_fit(args)
    except (InputError, MvremlError) as exc:
        print(f"mvreml: error: {cli_words(exc)}", file=sys.stderr)
        return EXIT_INPUT
    except ImportError as exc:          # optional dependency missing (matplotlib for --plots)
        if "pip install" not in str(exc):
            raise
        print(f"mvreml: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("mvreml: interrupted", file=sys.stderr)
        return 130
    finally:
        logger = logging.getLogger("mvreml")
        logger.removeHandler(handler)
        logger.setLevel(handler.previous_level)


if __name__ == "__main__":
    raise SystemExit(main())
