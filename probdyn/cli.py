"""Command line: ``probdyn list | run NAME | report PATH``.

Case-study contract: a module ``probdyn.case_studies.NAME`` whose docstring's first line
is a one-line description and which defines ``main(argv: list[str] | None = None) -> int``,
parsing ``--smoke``, ``--quick``, ``--seed N``, ``--out DIR`` (default ``results/NAME``) and
``--overwrite`` with argparse, refusing an existing non-empty ``--out`` unless
``--overwrite`` (``probdyn.report.output.prepare_output_dir``), writing ``idata.nc``,
``metrics.json``, ``report.md`` and PNG figures there and listing them in the folder's
manifest (``probdyn.report.output.record_outputs``; ``probdyn run`` does it for a study
that does not). ``--overwrite`` only ever removes files such a manifest lists.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import pkgutil
import sys

__all__ = ["available_case_studies", "main"]

_PACKAGE = "probdyn.case_studies"


def available_case_studies() -> dict[str, str]:
    """Case studies and the first line of each module docstring, without importing them.

    Returns
    -------
    dict of str to str
        Module name -> one-line description ("" when the module has no docstring).
    """
    pkg = importlib.import_module(_PACKAGE)
    out = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        out[info.name] = _first_doc_line(info.name)
    return out


def _first_doc_line(name: str) -> str:
    spec = importlib.util.find_spec(f"{_PACKAGE}.{name}")
    doc = None
    if spec is not None and spec.origin and spec.origin.endswith(".py"):
        try:
            with open(spec.origin, encoding="utf-8") as fh:
                doc = ast.get_docstring(ast.parse(fh.read()))
        except (OSError, SyntaxError):
            doc = None
    if doc is None and spec is not None and spec.origin and not spec.origin.endswith(".py"):
        doc = importlib.import_module(f"{_PACKAGE}.{name}").__doc__
    return doc.strip().splitlines()[0].strip() if doc and doc.strip() else ""


def _parser() -> argparse.ArgumentParser:
    from probdyn import __version__

    parser = argparse.ArgumentParser(
        prog="probdyn", description="Generative dynamical models for NumPyro."
    )
    parser.add_argument("--version", action="version", version=f"probdyn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("list", help="list the case studies")
    run = sub.add_parser(
        "run",
        help="run a case study",
        description="Run probdyn.case_studies.NAME; arguments after the known flags are "
        "passed on to the case study's main().",
    )
    run.add_argument("name", metavar="NAME")
    size = run.add_mutually_exclusive_group()
    size.add_argument("--smoke", action="store_true", help="tiny sizes for tests (seconds)")
    size.add_argument("--quick", action="store_true", help="smaller sizes (under 2 minutes)")
    run.add_argument("--out", metavar="DIR", help="output folder (default results/NAME)")
    run.add_argument("--seed", type=int, metavar="N", help="random seed")
    run.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    rep = sub.add_parser("report", help="render report.md for an output folder or idata.nc")
    rep.add_argument("path", metavar="PATH")
    return parser


def _run(args: argparse.Namespace, extra: list[str]) -> int:
    from probdyn.report.output import finish_outputs

    studies = available_case_studies()
    if args.name not in studies:
        names = ", ".join(studies) or "(none)"
        print(
            f"probdyn run: unknown case study {args.name!r}; available: {names}",
            file=sys.stderr,
        )
        return 2
    module = importlib.import_module(f"{_PACKAGE}.{args.name}")
    if not callable(getattr(module, "main", None)):
        print(f"probdyn run: {_PACKAGE}.{args.name} has no main(argv)", file=sys.stderr)
        return 2
    argv: list[str] = []
    if args.smoke:
        argv.append("--smoke")
    if args.quick:
        argv.append("--quick")
    if args.out is not None:
        argv += ["--out", args.out]
    if args.seed is not None:
        argv += ["--seed", str(args.seed)]
    if args.overwrite:
        argv.append("--overwrite")
    try:
        code = module.main(argv + extra)
    except OSError as err:  # refused or unwritable --out, disk full, ...
        print(f"probdyn run: {err}", file=sys.stderr)
        return 1
    except SystemExit as err:  # argparse inside the case study
        code = err.code
    # list what the study wrote in its folder's manifest, if it did not do so itself
    finish_outputs(args.out if args.out is not None else f"results/{args.name}")
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def _report(args: argparse.Namespace) -> int:
    from probdyn.report.render import render_report

    try:
        target = render_report(args.path)
    except (OSError, ValueError) as err:
        print(f"probdyn report: {err}", file=sys.stderr)
        return 1
    print(f"wrote {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``probdyn`` console script.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status: 0 on success, 1 on a failed run or report, 2 on a usage error.
    """
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "list":
        studies = available_case_studies()
        width = max((len(n) for n in studies), default=0)
        for name, doc in studies.items():
            print(f"{name:<{width}}  {doc}".rstrip())
        return 0
    if args.command == "run":
        return _run(args, extra)
    if args.command == "report":
        return _report(args)
    parser.print_help()
    return 2
