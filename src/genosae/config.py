"""Load and validate the workflow config against the packaged schema ``genosae/data/config.schema.yaml``.

Unknown keys, wrong types and missing input files are refused up front; every message names the
config file and the key's path (``designs.cohort.samples``). Defaults from the schema are filled in.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators

from genosae.errors import InputError

SCHEMA_NAME = "config.schema.yaml"


def schema_path() -> Path:
    """The config schema shipped inside the package (the one copy; the workflow validates with it too)."""
    return Path(str(resources.files("genosae") / "data" / SCHEMA_NAME))


def load_schema() -> dict:
    """The config schema as a dict."""
    return yaml.safe_load(schema_path().read_text())


def _with_defaults(cls):
    validate_props = cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_props(validator, properties, instance, schema)

    return validators.extend(cls, {"properties": set_defaults})


_DefaultFilling = _with_defaults(Draft202012Validator)


def key_path(parts) -> str:
    return ".".join(str(p) for p in parts) or "<top level>"


def validate_config(config: dict, *, source: str | Path = "<config>") -> dict:
    """Validate ``config`` (a dict) and return a copy with defaults filled in."""
    if not isinstance(config, dict):
        raise InputError("the config must be a YAML mapping of keys to values", path=source)
    config = copy.deepcopy(config)
    # fill defaults inside each design (additionalProperties sub-schemas are not default-filled)
    schema = load_schema()
    errors = sorted(_DefaultFilling(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        msg = err.message
        if err.validator == "additionalProperties":
            msg = f"unknown key(s): {msg.split('(')[-1].rstrip(')')}; see config/README.md for allowed keys"
        raise InputError(f"{msg}{more}", path=source, record=f"key '{key_path(err.absolute_path)}'")
    for name, design in config.get("designs", {}).items():
        fill_design_defaults(design, name, source=source, schema=schema)
        if design.get("simulate"):
            _set_simulated_paths(config, name, design, source)
    return config


def fill_design_defaults(design: dict, name: str, *, source: str | Path | None = "<config>",
                         schema: dict | None = None) -> dict:
    """Validate one design section against the schema and fill its defaults (in place; returned)."""
    design_schema = (schema or load_schema())["properties"]["designs"]["additionalProperties"]
    errs = list(_DefaultFilling(design_schema).iter_errors(design))
    if errs:
        raise InputError(errs[0].message, path=source,
                         record=f"key 'designs.{name}.{key_path(errs[0].absolute_path)}'")
    return design


def simulated_design_dir(outdir: str, design: str) -> str:
    """Where ``genosae simulate`` writes a simulated design's sample sheet, regions and truth table."""
    return f"{outdir}/simulate/{design}"


def _set_simulated_paths(config: dict, name: str, design: dict, source: str | Path) -> None:
    """A simulated cohort reads the sheet and regions the simulate step writes under ``outdir``."""
    sim_dir = simulated_design_dir(config.get("outdir", "results"), name)
    for key, file in (("samples", "samples.tsv"), ("regions", "regions.bed")):
        expected = f"{sim_dir}/{file}"
        given = design.get(key)
        if given is not None and Path(given) != Path(expected):
            msg = (f"'{given}' is not where `genosae simulate` writes it ({expected}); remove the key "
                   "(a simulated design's samples and regions follow outdir) or drop 'simulate'")
            raise InputError(msg, path=source, record=f"key 'designs.{name}.{key}'")
        design[key] = expected


def check_inputs(config: dict, *, source: str | Path = "<config>", produced_prefixes: tuple[str, ...] = ()) -> None:
    """Refuse missing input files named by the config (except those a workflow step produces)."""
    from genosae.genome.designs import design_from_config

    outdir = config.get("outdir", "results")
    produced = (*produced_prefixes, outdir)

    def need(value: str | None, key: str, what: str) -> None:
        if value is None:
            return
        if any(str(value).startswith(p) for p in produced):
            return
        if not Path(value).exists():
            raise InputError(f"{what} '{value}' does not exist; fix the path or create the file",
                             path=source, record=f"key '{key}'")

    ref = config["reference"]
    if ref["source"] == "files":
        for key in ("fasta", "annotation"):
            if not ref.get(key):
                raise InputError("required when reference.source is 'files'", path=source,
                                 record=f"key 'reference.{key}'")
            need(ref[key], f"reference.{key}", "file")
    if config["motifs"]["source"] == "file":
        if not config["motifs"].get("file"):
            raise InputError("required when motifs.source is 'file'", path=source, record="key 'motifs.file'")
        need(config["motifs"]["file"], "motifs.file", "motif file")
    model_path = config["model"]["path"]
    looks_local = model_path.startswith((".", "/", "~")) or Path(model_path).exists() or model_path.count("/") != 1
    if looks_local and not model_path.startswith("evo2:"):  # Evo 2 names are resolved by genosae.model.evo2
        need(model_path, "model.path", "model folder")
    for name, d in config.get("designs", {}).items():
        for key in ("regions", "gene_set", "sequences", "samples"):
            if d.get("simulate") and key in ("regions", "samples"):
                continue
            need(d.get(key), f"designs.{name}.{key}", "file")
        for group, fasta in (d.get("fasta_by_group") or {}).items():
            need(fasta, f"designs.{name}.fasta_by_group.{group}", "FASTA")
        design_from_config(config, name, source=source).require_sources()


def load_config(path: str | Path, *, check_files: bool = True) -> dict:
    """Read, validate and default-fill a YAML config; optionally check that its inputs exist."""
    path = Path(path)
    if not path.exists():
        raise InputError("config file not found", path=path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise InputError(f"not valid YAML ({getattr(err, 'problem', err)})", path=path, record=line) from None
    if raw is None:
        raise InputError("the config file is empty", path=path)
    config = validate_config(raw, source=path)
    if check_files:
        check_inputs(config, source=path)
    return config


def section(config: dict[str, Any], name: str) -> dict[str, Any]:
    """A config section with schema defaults filled in (works on partial configs built in notebooks)."""
    return validate_config({name: config[name]} if name in config else {})[name]


def sae_trains_on_stream(config: dict) -> bool:
    """Whether the SAE trains on the model stream (``sae.source``; ``auto``: the atlas is the whole
    genome or holds more than ``sae.stream_min_tokens`` tokens = windows x size x strands)."""
    sae = config["sae"]
    source = sae.get("source", "auto")
    if source != "auto":
        return source == "stream"
    n_windows = config["atlas"]["n_windows"]
    if n_windows == "all":
        return True
    strands = 2 if config["model"].get("reverse_complement") else 1
    return int(n_windows) * int(config["windows"]["size"]) * strands > int(sae.get("stream_min_tokens", 20_000_000))


def schema_markdown(schema: dict | None = None) -> str:
    """Render every config key of the schema as a Markdown table (used for config/README.md)."""
    schema = schema or load_schema()
    rows: list[str] = []

    def walk(node: dict, prefix: str) -> None:
        for key, sub in node.get("properties", {}).items():
            path = f"{prefix}{key}"
            typ = sub.get("type", "")
            typ = " or ".join(typ) if isinstance(typ, list) else typ
            if "enum" in sub:
                typ += " (" + " \\| ".join(map(str, sub["enum"])) + ")"
            default = sub.get("default", "")
            default = "" if isinstance(default, dict) and default == {} and "properties" in sub else default
            rows.append(f"| `{path}` | {typ} | `{default}` | {sub.get('description', '')} |")
            if "properties" in sub:
                walk(sub, f"{path}.")
            extra = sub.get("additionalProperties")
            if isinstance(extra, dict) and "properties" in extra:
                rows.append(f"| `{path}.NAME` | object | | {extra.get('description', sub.get('description', ''))} |")
                walk(extra, f"{path}.NAME.")

    walk(schema, "")
    head = "| key | type | default | meaning |\n|---|---|---|---|\n"
    return head + "\n".join(rows) + "\n"
