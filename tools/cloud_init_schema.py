"""EC2 user data checked by cloud-init's own schema validator, as the instance would read it.

    python -m tools.cloud_init_schema --stack dev        (make cloud-init-schema STACK=dev)

The validator is cloud-init's (`cloudinit.config.schema.validate_cloudconfig_schema`,
strict), from Debian's cloud-init package unpacked into tools/cloud_init/root by
tools/cloud_init/install.sh (`make` runs it): a key cloud-init would ignore or misread
(a misspelt module, a mode given as a number, an unknown encoding) is an error here
rather than a host that boots without its model.

User data is taken from every launch template the stack's offline preview registers,
decoded as EC2 hands it to cloud-init (base64, then gzip when compressed); a MIME
multipart message is split as cloud-init splits it, and its `text/cloud-config` parts
are checked (an EKS node's `application/node.eks.aws` part belongs to nodeadm and is
listed as not checked).

Exit codes: 0 every document valid; 1 a document invalid (listed); 2 bad input or the
validator missing.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import email
import gzip
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

ROOT = Path(__file__).resolve().parent / "cloud_init" / "root"
PACKAGES = ROOT / "usr" / "lib" / "python3" / "dist-packages"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
HEADER = "#cloud-config"


class ValidatorUnavailable(Exception):
    """cloud-init is not unpacked where the validator is looked for."""


@dataclass(frozen=True)
class Verdict:
    name: str
    size_bytes: int
    errors: tuple[str, ...]
    # The parts cloud-init hands to another reader (nodeadm's NodeConfig, shell scripts):
    # their content types, not checked here.
    other_parts: tuple[str, ...] = ()
    cloud_config_parts: int = 1

    @property
    def valid(self) -> bool:
        return not self.errors


def _schema_module():
    if not (ROOT / ".installed").is_file():
        raise ValidatorUnavailable(f"{ROOT} is missing: run `make cloud-init-schema` or "
                                   "`bash tools/cloud_init/install.sh` (Debian's cloud-init package)")
    if str(PACKAGES) not in sys.path:
        sys.path.append(str(PACKAGES))
    # cloud-init skips validation silently when jsonschema cannot be imported: fail instead.
    import jsonschema  # noqa: F401, PLC0415
    from cloudinit.config import schema  # noqa: PLC0415 - only importable once unpacked

    return schema


def validator_version() -> str:
    _schema_module()
    return (ROOT / ".version").read_text().strip()


def decode_user_data(encoded: str) -> str:
    """EC2's `user_data` as cloud-init receives it: base64-decoded, gunzipped if gzip."""
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("user data is not base64") from None
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw.decode("utf-8")


def split_parts(text: str) -> tuple[list[str], list[str]]:
    """(cloud-config documents, other parts' content types) of user data as cloud-init splits
    it: a MIME multipart message part by part (`text/cloud-config` parts are cloud-config),
    otherwise one document whose first line says what it is."""
    if text.startswith(("MIME-Version:", "Content-Type:")):
        message = email.message_from_string(text)
        configs, others = [], []
        for part in message.walk():
            if part.is_multipart():
                continue
            content_type = part.get_content_type()
            if content_type == "text/cloud-config":
                configs.append(part.get_payload(decode=True).decode("utf-8"))
            else:
                others.append(content_type)
        return configs, others
    if text.split("\n", 1)[0].rstrip() == HEADER:
        return [text], []
    first = text.split("\n", 1)[0]
    return [], ["text/x-shellscript" if first.startswith("#!") else f"unrecognised ({first[:40]!r})"]


def validate_text(text: str) -> tuple[str, ...]:
    """cloud-init's verdict on a `#cloud-config` document: () when valid, else the errors."""
    schema = _schema_module()
    if text.split("\n", 1)[0].rstrip() != HEADER:
        return (f"the first line is not {HEADER!r}, so cloud-init would not read the document as "
                "cloud-config",)
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as error:
        return (f"not YAML: {error}",)
    if not isinstance(config, dict):
        return (f"the document is a {type(config).__name__}, not a mapping",)
    full_schema = schema.get_schema()
    # cloud-init's schema leaves top-level keys open (an unknown key is ignored at boot), so
    # a misspelt module would pass: every key must be one some module's schema declares.
    declared = module_keys(full_schema)
    problems = tuple(f"{key}: no cloud-init module declares this key, so cloud-init would ignore it"
                     for key in config if key not in declared)
    try:
        schema.validate_cloudconfig_schema(config, full_schema, strict=True, log_details=False)
    except schema.SchemaValidationError as error:
        # Strict mode raises for deprecated keys too: they stop working in a later release.
        problems += (tuple(f"{path}: {message}" for path, message in error.schema_errors or ())
                     + tuple(f"{path}: deprecated: {message}"
                             for path, message in error.schema_deprecations or ()))
    return problems


def module_keys(full_schema: dict) -> frozenset[str]:
    """The top-level keys the modules' schemas declare (the `$defs` the schema's `allOf` joins)."""
    keys: set[str] = set()
    for reference in full_schema.get("allOf", []):
        definition = full_schema["$defs"][reference["$ref"].rsplit("/", 1)[-1]]
        keys.update(definition.get("properties", {}))
    return frozenset(keys)


def launch_template_user_data(registrations: Iterable[Any]) -> list[tuple[str, str]]:
    """(resource name, decoded user data) of every launch template that carries user data."""
    found = []
    for registration in registrations:
        if registration.type != LAUNCH_TEMPLATE:
            continue
        encoded = (registration.inputs or {}).get("userData")
        if isinstance(encoded, str) and encoded:
            found.append((registration.name, decode_user_data(encoded)))
    return found


def validate_stack(stack: str, stack_file: Optional[Path] = None) -> list[Verdict]:
    from tools.preview import run_program

    _, run = run_program(stack, stack_file)
    verdicts = []
    for name, text in launch_template_user_data(run.registrations):
        configs, others = split_parts(text)
        errors = tuple(error for config in configs for error in validate_text(config))
        verdicts.append(Verdict(name, len(text.encode()), errors, tuple(others), len(configs)))
    return verdicts


def main(argv: Optional[list[str]] = None) -> int:
    from components.config import InventoryError
    from tools.preview import PreviewError
    from tools.stack_files import StackFileError

    parser = argparse.ArgumentParser(prog="python -m tools.cloud_init_schema", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", required=True, help="stack name: stacks/Pulumi.<stack>.yaml")
    parser.add_argument("--stack-file", type=Path, help="read this stack file instead")
    args = parser.parse_args(argv)
    try:
        version = validator_version()
        verdicts = validate_stack(args.stack, args.stack_file)
    except (ValidatorUnavailable, PreviewError, InventoryError, StackFileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not verdicts:
        print(f"Stack {args.stack} has no launch template with user data: nothing to validate.")
        return 0
    for verdict in verdicts:
        others = (f"; not cloud-config, not checked: {', '.join(verdict.other_parts)}"
                  if verdict.other_parts else "")
        state = ("no cloud-config part" if not verdict.cloud_config_parts
                 else "valid" if verdict.valid else "INVALID")
        print(f"  {verdict.name}: {verdict.size_bytes} bytes, {state}{others}")
        for error in verdict.errors:
            print(f"error: {verdict.name}: {error}", file=sys.stderr)
    invalid = sum(not v.valid for v in verdicts)
    documents = sum(v.cloud_config_parts for v in verdicts)
    print(f"{documents} cloud-config documents in {len(verdicts)} user data checked with cloud-init "
          f"{version}'s schema (strict): {invalid} invalid.")
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main())
