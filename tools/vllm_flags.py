"""The `vllm serve` command lines the program renders, checked against the pinned vLLM's own parser.

    python -m tools.vllm_flags --extract   # where `import vllm` works: record the parser's options
    python -m tools.vllm_flags --check     # every committed stack's vLLM args against the record

The catalog pins the vLLM image (`vllm/vllm-openai:<tag>`). Its parser is
`vllm.entrypoints.openai.cli_args.make_arg_parser(FlexibleArgumentParser())`, the one
`vllm serve` builds. Building it needs the `vllm` wheel of that version and its Python
dependencies (torch on CPU is enough: no GPU is touched to build a parser), about 1.5 GB and
several minutes to install, too heavy for every CI run. So `--extract` runs that real parser
once and records what a command line is judged by: every option string, whether it takes a
value, how many (`nargs`), its `choices`, and its value type; `check_args` rebuilds an
argparse parser from the record and parses the rendered arguments with it, so an unknown
flag, a missing value, a value outside the choices or of the wrong type fails as `vllm serve`
would fail. The record names the vLLM version it came from; a test keeps it equal to the
catalog's image tag, so bumping the image without re-extracting fails.

Reproduce the record (CPU only):
    python3 -m venv /tmp/vllm-parser && /tmp/vllm-parser/bin/pip install torch --index-url
    https://download.pytorch.org/whl/cpu && /tmp/vllm-parser/bin/pip install vllm==<tag>
    && /tmp/vllm-parser/bin/python -m tools.vllm_flags --extract
(`pip install vllm==<tag> --no-deps` plus the modules its import asks for also works:
measured here, torch 2.13.0 CPU and the 438 MB vllm 0.11.0 wheel took 3.5 minutes, and
about thirty small dependencies followed.)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterable

RECORD = Path(__file__).resolve().parent / "data" / "vllm_serve_options.json"


class FlagError(ValueError):
    """A command line the pinned `vllm serve` would refuse."""


def _type_name(action: argparse.Action) -> str:
    kind = action.type
    if kind in (int, float, str):
        return kind.__name__
    name = getattr(kind, "__name__", "") or type(kind).__name__
    return "int" if name in ("human_readable_int",) else ("other:" + name if name else "other")


def extract() -> dict[str, Any]:
    """The real `vllm serve` parser's options (run where the pinned vllm imports)."""
    import vllm
    import vllm.platforms as platforms
    from vllm.platforms.cpu import CpuPlatform

    # Without a GPU vLLM cannot infer a platform (only CPU builds report one); the parser
    # only needs a platform object, and the CPU platform is one.
    if platforms._current_platform is None:  # noqa: SLF001
        platforms._current_platform = CpuPlatform()  # noqa: SLF001
    from vllm.entrypoints.openai.cli_args import make_arg_parser
    from vllm.utils import FlexibleArgumentParser

    parser = make_arg_parser(FlexibleArgumentParser())
    actions = []
    positionals = []
    for action in parser._actions:  # noqa: SLF001 - argparse has no public walk
        if isinstance(action, argparse._HelpAction):  # noqa: SLF001
            continue
        if not action.option_strings:
            positionals.append({"dest": action.dest, "nargs": action.nargs})
            continue
        takes_value = action.nargs != 0
        actions.append({"option_strings": sorted(action.option_strings), "dest": action.dest,
                        "takes_value": takes_value, "nargs": action.nargs if takes_value else 0,
                        "choices": sorted(map(str, action.choices)) if action.choices else None,
                        "type": _type_name(action) if takes_value else None})
    return {"vllm_version": vllm.__version__, "parser": "vllm.entrypoints.openai.cli_args.make_arg_parser",
            "positionals": positionals,
            "actions": sorted(actions, key=lambda a: a["option_strings"][0])}


def load_record(path: Path = RECORD) -> dict[str, Any]:
    return json.loads(path.read_text())


class _Raising(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would exit
        raise FlagError(message)


def parser_from(record: dict[str, Any]) -> argparse.ArgumentParser:
    parser = _Raising(prog="vllm serve", add_help=False, allow_abbrev=False)
    for positional in record["positionals"]:
        parser.add_argument(positional["dest"], nargs=positional["nargs"])
    types = {"int": int, "float": float, "other:loads": json.loads}
    for action in record["actions"]:
        if not action["takes_value"]:
            parser.add_argument(*action["option_strings"], dest=action["dest"], action="store_true")
            continue
        kwargs: dict[str, Any] = {"dest": action["dest"]}
        if action["nargs"] is not None:
            kwargs["nargs"] = action["nargs"]
        if action["type"] in types:
            kwargs["type"] = types[action["type"]]
        if action["choices"]:
            kwargs["choices"] = [kwargs.get("type", str)(c) for c in action["choices"]]
        parser.add_argument(*action["option_strings"], **kwargs)
    return parser


def check_args(args: Iterable[str], record: dict[str, Any] | None = None) -> argparse.Namespace:
    """Parse `vllm serve` arguments (model first) as the pinned version would; FlagError if not."""
    record = record or load_record()
    return parser_from(record).parse_args(list(args))


def rendered_command_lines() -> list[tuple[str, str, list[str]]]:
    """(stack, model, args) for every vLLM model of every committed stack."""
    from components.config import parse_inventory
    from components.serving.runtimes import render_for_inventory
    from tools import stack_files

    found = []
    for stack in stack_files.committed_stacks():
        loaded = stack_files.load(stack)
        inventory = parse_inventory(loaded.config.get("deepseek-serving:inventory"), stack=stack,
                                    secret_keys=set(loaded.secret_keys))
        for model in inventory.models:
            if model.runtime == "vllm":
                found.append((stack, model.name, render_for_inventory(inventory, model).args))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extract", action="store_true", help="record the installed vLLM's parser")
    parser.add_argument("--check", action="store_true", help="check every committed stack's vLLM args")
    options = parser.parse_args(argv)
    if options.extract:
        RECORD.parent.mkdir(parents=True, exist_ok=True)
        RECORD.write_text(json.dumps(extract(), indent=1, sort_keys=True) + "\n")
        print(f"wrote {RECORD}")
    if options.check:
        record = load_record()
        bad = 0
        for stack, model, args in rendered_command_lines():
            try:
                check_args(args, record)
                print(f"ok   {stack}/{model}: vllm {record['vllm_version']} accepts {len(args)} arguments")
            except FlagError as error:
                bad += 1
                print(f"FAIL {stack}/{model}: {error}", file=sys.stderr)
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
